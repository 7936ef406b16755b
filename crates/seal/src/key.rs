//! The master key and the data key.

use std::{fmt, sync::OnceLock};

use secp256k1::{Keypair, Message, SecretKey, ecdsa::RecoverableSignature, schnorr};
use zeroize::Zeroizing;

use crate::SealError;

/// Length of a SEC1 compressed public key.
pub const PUBLIC_KEY_LEN: usize = 33;

/// The enclave's secp256k1 master key. Lives only in enclave memory.
pub struct MasterKey {
    secret: SecretKey,
    /// For BIP340; derived at most once, when first needed.
    keypair: OnceLock<Keypair>,
    public_key: [u8; PUBLIC_KEY_LEN],
    xonly: [u8; 32],
}

/// Draws [`MasterKey::generate`] makes before it declares the random source broken.
pub const MAX_KEY_DRAWS: usize = 16;

impl MasterKey {
    /// Generates a key from `fill`, a source of uniformly random bytes (the NSM in an
    /// enclave). Draws again in the negligible case (below 2^-127) that 32 bytes are not a
    /// valid scalar; a source that keeps producing invalid scalars is broken (all zeros, all
    /// ones), and after [`MAX_KEY_DRAWS`] draws that is an error rather than an endless loop.
    pub fn generate<E: fmt::Display>(mut fill: impl FnMut(&mut [u8]) -> Result<(), E>) -> Result<Self, SealError> {
        for _ in 0..MAX_KEY_DRAWS {
            let mut bytes = Zeroizing::new([0u8; 32]);
            fill(bytes.as_mut()).map_err(|e| SealError::Randomness(e.to_string()))?;
            if let Ok(key) = Self::from_secret_bytes(&bytes) {
                return Ok(key);
            }
        }
        Err(SealError::Randomness(format!(
            "{MAX_KEY_DRAWS} draws in a row were not a valid secp256k1 scalar; the random source is broken"
        )))
    }

    /// Builds the key from its 32 secret bytes (after opening a seal or a wrapped keyring row).
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Result<Self, SealError> {
        let secret = SecretKey::from_secret_bytes(*bytes).map_err(|_| SealError::InvalidKey)?;
        let keypair = Keypair::from_secret_key(&secret);
        let public_key = keypair.public_key().serialize();
        let xonly = keypair.x_only_public_key().0.to_byte_array();
        Ok(Self { secret, keypair: OnceLock::from(keypair), public_key, xonly })
    }

    /// Builds the key from its 32 secret bytes and its SEC1 compressed public key, without
    /// deriving the public key (a generator multiplication, as costly as a signature). Only
    /// for a public key that was authenticated together with the secret: a keyring row, whose
    /// AES-GCM AAD binds the public key that [`MasterKey::from_secret_bytes`] derived when it
    /// was wrapped. The key pair BIP340 needs is derived on first use.
    pub fn from_authenticated_parts(bytes: &[u8; 32], public_key: &[u8]) -> Result<Self, SealError> {
        let secret = SecretKey::from_secret_bytes(*bytes).map_err(|_| SealError::InvalidKey)?;
        let public_key: [u8; PUBLIC_KEY_LEN] = public_key.try_into().map_err(|_| SealError::InvalidKey)?;
        if !matches!(public_key[0], 0x02 | 0x03) {
            return Err(SealError::InvalidKey);
        }
        // The x-only key is the x coordinate of the compressed point.
        let mut xonly = [0u8; 32];
        xonly.copy_from_slice(&public_key[1..]);
        let key = Self { secret, keypair: OnceLock::new(), public_key, xonly };
        debug_assert_eq!(
            Keypair::from_secret_key(&key.secret).public_key().serialize(),
            key.public_key,
            "from_authenticated_parts was given a public key that is not the secret's"
        );
        Ok(key)
    }

    /// The secret bytes, for sealing or wrapping, inside the enclave only. Zeroized when the
    /// returned value drops.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_secret_bytes())
    }

    /// SEC1 compressed public key.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public_key
    }

    /// BIP340 x-only public key.
    pub fn xonly_public_key(&self) -> [u8; 32] {
        self.xonly
    }

    /// ECDSA over a 32-byte digest with RFC 6979 nonces. Returns the compact low-S
    /// signature `r || s` and the recovery id.
    pub fn sign_ecdsa(&self, digest: &[u8; 32]) -> ([u8; 64], u8) {
        let sig = RecoverableSignature::sign_ecdsa_recoverable(Message::from_digest(*digest), &self.secret);
        let (recid, compact) = sig.serialize_compact();
        (compact, recid.to_u8())
    }

    /// BIP340 Schnorr signature over a 32-byte message with the given auxiliary randomness.
    pub fn sign_bip340(&self, digest: &[u8; 32], aux_rand: &[u8; 32]) -> [u8; 64] {
        let keypair = self.keypair.get_or_init(|| Keypair::from_secret_key(&self.secret));
        schnorr::sign_with_aux_rand(digest, keypair, aux_rand).to_byte_array()
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.secret.non_secure_erase();
        if let Some(keypair) = self.keypair.get_mut() {
            keypair.non_secure_erase();
        }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("public_key", &HexBytes(&self.public_key))
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// A 32-byte AES-256 data key (DEK) from KMS. Zeroized on drop; never printed.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// Takes ownership of a plaintext data key; `None` unless it is exactly 32 bytes. The
    /// caller's buffer should itself be zeroizing.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(DataKey(Zeroizing::new(array)))
    }

    /// The key bytes, for sealing (the master key, the keyring root), inside the enclave only.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

struct HexBytes<'a>(&'a [u8]);

impl fmt::Debug for HexBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use secp256k1::{PublicKey, XOnlyPublicKey, ecdsa::RecoveryId};

    use super::*;

    fn os_random(buf: &mut [u8]) -> Result<(), getrandom::Error> {
        getrandom::fill(buf)
    }

    #[test]
    fn ecdsa_signatures_verify_and_recover_the_public_key() {
        let key = MasterKey::generate(os_random).unwrap();
        let digest = [0x5au8; 32];
        let (sig, recid) = key.sign_ecdsa(&digest);
        let public = PublicKey::from_slice(&key.public_key()).unwrap();
        let parsed = secp256k1::ecdsa::Signature::from_compact(&sig).unwrap();
        parsed.verify(Message::from_digest(digest), &public).unwrap();
        let mut normalized = parsed;
        normalized.normalize_s();
        assert_eq!(normalized, parsed, "signature is low-S");
        let recoverable =
            RecoverableSignature::from_compact(&sig, RecoveryId::try_from(i32::from(recid)).unwrap()).unwrap();
        assert_eq!(recoverable.recover_ecdsa(Message::from_digest(digest)).unwrap(), public);
    }

    #[test]
    fn bip340_signatures_verify_against_the_xonly_key() {
        let key = MasterKey::generate(os_random).unwrap();
        let digest = [0x11u8; 32];
        let sig = key.sign_bip340(&digest, &[0x22; 32]);
        let xonly = XOnlyPublicKey::from_byte_array(key.xonly_public_key()).unwrap();
        schnorr::Signature::from_byte_array(sig).verify(&digest, &xonly).unwrap();
        let mut wrong = digest;
        wrong[0] ^= 1;
        assert!(schnorr::Signature::from_byte_array(sig).verify(&wrong, &xonly).is_err());
    }

    #[test]
    fn generation_redraws_invalid_scalars() {
        // First draw: zero (invalid); second: all 0xff (above the order, invalid); third: 7.
        let mut draws = [[0u8; 32], [0xff; 32], {
            let mut k = [0u8; 32];
            k[31] = 7;
            k
        }]
        .into_iter();
        let key = MasterKey::generate(|buf: &mut [u8]| -> Result<(), String> {
            buf.copy_from_slice(&draws.next().ok_or("exhausted")?);
            Ok(())
        })
        .unwrap();
        assert_eq!(*key.secret_bytes(), {
            let mut k = [0u8; 32];
            k[31] = 7;
            k
        });
    }

    #[test]
    fn randomness_failure_is_an_error_not_a_weak_key() {
        let err = MasterKey::generate(|_: &mut [u8]| Err("nsm unavailable")).unwrap_err();
        assert!(matches!(err, SealError::Randomness(ref m) if m == "nsm unavailable"), "{err}");
    }

    #[test]
    fn a_source_of_only_invalid_scalars_is_an_error_after_a_bounded_number_of_draws() {
        let mut draws = 0;
        let err = MasterKey::generate(|buf: &mut [u8]| -> Result<(), String> {
            draws += 1;
            buf.fill(0);
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, SealError::Randomness(ref m) if m.contains("random source is broken")), "{err}");
        assert_eq!(draws, MAX_KEY_DRAWS);
    }

    #[test]
    fn debug_output_never_contains_secret_bytes() {
        let key = MasterKey::generate(os_random).unwrap();
        let secret_hex: String = key.secret_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&secret_hex));
        assert!(shown.contains("[redacted]"));
        let dek = DataKey::from_slice(&[0xabu8; 32]).unwrap();
        assert_eq!(format!("{dek:?}"), "DataKey([redacted])");
    }

    #[test]
    fn a_key_from_authenticated_parts_is_the_same_key_and_malformed_public_keys_are_refused() {
        let key = MasterKey::generate(os_random).unwrap();
        let bytes = key.secret_bytes();
        let again = MasterKey::from_authenticated_parts(&bytes, &key.public_key()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(again.xonly_public_key(), key.xonly_public_key());
        let digest = [3u8; 32];
        assert_eq!(again.sign_ecdsa(&digest), key.sign_ecdsa(&digest), "RFC 6979: the same key signs alike");
        assert_eq!(again.sign_bip340(&digest, &[1; 32]), key.sign_bip340(&digest, &[1; 32]));
        assert!(MasterKey::from_authenticated_parts(&bytes, &key.public_key()[..32]).is_err(), "short");
        let mut uncompressed_prefix = key.public_key();
        uncompressed_prefix[0] = 0x04;
        assert!(MasterKey::from_authenticated_parts(&bytes, &uncompressed_prefix).is_err(), "prefix");
    }

    #[test]
    #[should_panic(expected = "not the secret's")]
    fn in_debug_builds_another_keys_public_key_is_caught() {
        let key = MasterKey::generate(os_random).unwrap();
        let other = MasterKey::generate(os_random).unwrap();
        let _ = MasterKey::from_authenticated_parts(&key.secret_bytes(), &other.public_key());
    }
}

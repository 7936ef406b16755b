//! The secret of one key version, for each key type. Every type's secret is 32 bytes (a
//! secp256k1 or P-256 scalar, an Ed25519 seed, a BIP32 seed, an AES or HMAC key), which is
//! what gets wrapped.

use std::fmt;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use keyward_proto::KeyType;
use keyward_seal::MasterKey;
use zeroize::Zeroizing;

use crate::KeyringError;

/// Length of every key type's secret.
pub const SECRET_LEN: usize = 32;
/// Draws [`KeyMaterial::generate`] makes before it declares the random source broken.
const MAX_DRAWS: usize = 16;

/// The secret of one key version. Lives only in enclave memory; zeroized on drop (the
/// libraries underneath erase their own copies), never printed.
pub struct KeyMaterial {
    key_type: KeyType,
    secret: Secret,
    public_key: Vec<u8>,
}

enum Secret {
    Secp256k1(MasterKey),
    Ed25519 {
        seed: Zeroizing<[u8; SECRET_LEN]>,
        pair: Ed25519KeyPair,
    },
    P256(p256::ecdsa::SigningKey),
    /// The BIP32 seed and the master key it derives (the chain code is public: it is in the
    /// public key).
    Bip32 {
        seed: Zeroizing<[u8; SECRET_LEN]>,
        master: MasterKey,
    },
    Symmetric(Zeroizing<[u8; SECRET_LEN]>),
    /// An X25519 private key (any 32 bytes; the function clamps them).
    X25519(Zeroizing<[u8; SECRET_LEN]>),
}

/// BIP32's master key derivation: HMAC-SHA512 keyed "Bitcoin seed" over the seed; the left
/// half is the master secret key, the right half its chain code.
fn bip32_master(seed: &[u8; SECRET_LEN]) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, b"Bitcoin seed"), seed);
    let out = Zeroizing::new(tag.as_ref().to_vec());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&out[..32]);
    let mut chain_code = [0u8; 32];
    chain_code.copy_from_slice(&out[32..]);
    (key, chain_code)
}

impl KeyMaterial {
    /// New material of `key_type` from `fill`, a source of uniformly random bytes (the NSM).
    /// Draws again in the negligible case that 32 bytes are not a valid scalar, at most
    /// [`MAX_DRAWS`] times.
    pub fn generate<E: fmt::Display>(
        key_type: KeyType,
        mut fill: impl FnMut(&mut [u8]) -> Result<(), E>,
    ) -> Result<Self, KeyringError> {
        for _ in 0..MAX_DRAWS {
            let mut bytes = Zeroizing::new([0u8; SECRET_LEN]);
            fill(bytes.as_mut()).map_err(|e| KeyringError::Randomness(e.to_string()))?;
            match Self::from_secret(key_type, &bytes) {
                Ok(material) => return Ok(material),
                Err(KeyringError::InvalidSecret(_)) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(KeyringError::Randomness(format!("{MAX_DRAWS} draws in a row were not a valid {key_type} secret")))
    }

    /// Material from its 32 secret bytes (unwrapping, importing).
    pub fn from_secret(key_type: KeyType, bytes: &[u8; SECRET_LEN]) -> Result<Self, KeyringError> {
        let invalid = || KeyringError::InvalidSecret(key_type);
        let (secret, public_key) = match key_type {
            KeyType::Secp256k1 => {
                let key = MasterKey::from_secret_bytes(bytes).map_err(|_| invalid())?;
                let public_key = key.public_key().to_vec();
                (Secret::Secp256k1(key), public_key)
            }
            KeyType::Ed25519 => {
                let pair = Ed25519KeyPair::from_seed_unchecked(bytes).map_err(|_| invalid())?;
                let public_key = pair.public_key().as_ref().to_vec();
                (Secret::Ed25519 { seed: Zeroizing::new(*bytes), pair }, public_key)
            }
            KeyType::P256 => {
                let key = p256::ecdsa::SigningKey::from_slice(bytes).map_err(|_| invalid())?;
                let public_key = key.verifying_key().to_encoded_point(true).as_bytes().to_vec();
                (Secret::P256(key), public_key)
            }
            KeyType::Bip32 => {
                // BIP32: a master key outside the curve's order is an invalid seed (redrawn).
                let (key, chain_code) = bip32_master(bytes);
                let master = MasterKey::from_secret_bytes(&key).map_err(|_| invalid())?;
                let public_key = [&master.public_key()[..], &chain_code[..]].concat();
                (Secret::Bip32 { seed: Zeroizing::new(*bytes), master }, public_key)
            }
            KeyType::X25519 => {
                let private = aws_lc_rs::agreement::PrivateKey::from_private_key(&aws_lc_rs::agreement::X25519, bytes)
                    .map_err(|_| invalid())?;
                let public_key = private.compute_public_key().map_err(|_| invalid())?.as_ref().to_vec();
                (Secret::X25519(Zeroizing::new(*bytes)), public_key)
            }
            KeyType::Aes256Gcm | KeyType::HmacSha256 | KeyType::Secret => {
                (Secret::Symmetric(Zeroizing::new(*bytes)), Vec::new())
            }
            _ => return Err(KeyringError::UnsupportedType(key_type)),
        };
        Ok(KeyMaterial { key_type, secret, public_key })
    }

    /// Material from its 32 secret bytes and the public key they were wrapped with
    /// (unwrapping: the row's AAD authenticated the two together). For secp256k1 the public
    /// key is taken as given instead of derived again, which halves the cost of signing with
    /// a key that is not cached; the other types derive it as [`KeyMaterial::from_secret`] does.
    pub fn from_authenticated(
        key_type: KeyType,
        bytes: &[u8; SECRET_LEN],
        public_key: &[u8],
    ) -> Result<Self, KeyringError> {
        match key_type {
            KeyType::Secp256k1 => {
                let key = MasterKey::from_authenticated_parts(bytes, public_key)
                    .map_err(|_| KeyringError::InvalidSecret(key_type))?;
                Ok(KeyMaterial { key_type, secret: Secret::Secp256k1(key), public_key: public_key.to_vec() })
            }
            KeyType::Bip32 => {
                // The HMAC is cheap; the curve multiplication is what the stored key saves.
                let (key, chain_code) = bip32_master(bytes);
                let (compressed, stored_chain_code) =
                    public_key.split_at_checked(33).ok_or(KeyringError::InvalidSecret(key_type))?;
                if stored_chain_code != chain_code {
                    return Err(KeyringError::InvalidSecret(key_type));
                }
                let master = MasterKey::from_authenticated_parts(&key, compressed)
                    .map_err(|_| KeyringError::InvalidSecret(key_type))?;
                let secret = Secret::Bip32 { seed: Zeroizing::new(*bytes), master };
                Ok(KeyMaterial { key_type, secret, public_key: public_key.to_vec() })
            }
            _ => Self::from_secret(key_type, bytes),
        }
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The public key: SEC1 compressed (33 bytes) for secp256k1 and P-256, the 32-byte key
    /// for Ed25519, the master's compressed key and chain code (65 bytes) for BIP32, empty
    /// for symmetric keys and secrets.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// The 32 secret bytes, for wrapping. Zeroized when the returned value drops.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; SECRET_LEN]> {
        match &self.secret {
            Secret::Secp256k1(key) => key.secret_bytes(),
            Secret::Ed25519 { seed, .. } => Zeroizing::new(**seed),
            Secret::P256(key) => {
                let mut out = Zeroizing::new([0u8; SECRET_LEN]);
                out.copy_from_slice(&key.to_bytes());
                out
            }
            Secret::Bip32 { seed, .. } => Zeroizing::new(**seed),
            Secret::Symmetric(key) | Secret::X25519(key) => Zeroizing::new(**key),
        }
    }

    pub(crate) fn symmetric(&self) -> Option<&[u8; SECRET_LEN]> {
        match &self.secret {
            Secret::Symmetric(key) => Some(key),
            _ => None,
        }
    }

    /// The secp256k1 key that signs: the key itself, or a BIP32 key's master.
    pub(crate) fn secp256k1(&self) -> Option<&MasterKey> {
        match &self.secret {
            Secret::Secp256k1(key) | Secret::Bip32 { master: key, .. } => Some(key),
            _ => None,
        }
    }

    pub(crate) fn ed25519(&self) -> Option<&Ed25519KeyPair> {
        match &self.secret {
            Secret::Ed25519 { pair, .. } => Some(pair),
            _ => None,
        }
    }

    /// The private key of an agreement: X25519's, or a P-256 key's scalar.
    pub(crate) fn agreement_key(&self) -> Option<aws_lc_rs::agreement::PrivateKey> {
        use aws_lc_rs::agreement::{ECDH_P256, PrivateKey, X25519};
        match &self.secret {
            Secret::X25519(key) => PrivateKey::from_private_key(&X25519, key.as_ref()).ok(),
            Secret::P256(key) => {
                use zeroize::Zeroize;
                let mut scalar = key.to_bytes();
                let private = PrivateKey::from_private_key(&ECDH_P256, &scalar).ok();
                scalar.as_mut_slice().zeroize();
                private
            }
            _ => None,
        }
    }

    pub(crate) fn p256(&self) -> Option<&p256::ecdsa::SigningKey> {
        match &self.secret {
            Secret::P256(key) => Some(key),
            _ => None,
        }
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("key_type", &self.key_type)
            .field("public_key", &hex_lower(&self.public_key))
            .field("secret", &"[redacted]")
            .finish()
    }
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os_random(out: &mut [u8]) -> Result<(), getrandom::Error> {
        getrandom::fill(out)
    }

    #[test]
    fn every_type_generates_and_comes_back_from_its_secret() {
        for key_type in KeyType::ALL {
            let material = KeyMaterial::generate(key_type, os_random).unwrap();
            let again = KeyMaterial::from_secret(key_type, &material.secret_bytes()).unwrap();
            assert_eq!(again.public_key(), material.public_key(), "{key_type}");
            let expected_len = match key_type {
                KeyType::Secp256k1 | KeyType::P256 => 33,
                KeyType::Ed25519 | KeyType::X25519 => 32,
                KeyType::Bip32 => 65,
                _ => 0,
            };
            assert_eq!(material.public_key().len(), expected_len, "{key_type}");
        }
    }

    #[test]
    fn a_bip32_key_is_bip32s_master_of_its_seed() {
        // BIP32 test vector 2's master key comes from a 64-byte seed; the derivation is the
        // same for 32 bytes. Checked against RustCrypto's HMAC over the documented constant.
        use hmac::{Hmac, Mac};
        let seed = [0x11u8; 32];
        let material = KeyMaterial::from_secret(KeyType::Bip32, &seed).unwrap();
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(b"Bitcoin seed").unwrap();
        mac.update(&seed);
        let out = mac.finalize().into_bytes();
        let expected = k256::SecretKey::from_slice(&out[..32]).unwrap().public_key();
        let expected = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&expected, true);
        assert_eq!(&material.public_key()[..33], expected.as_bytes());
        assert_eq!(&material.public_key()[33..], &out[32..], "the chain code follows the key");
        let back = KeyMaterial::from_authenticated(KeyType::Bip32, &seed, material.public_key()).unwrap();
        assert_eq!(back.public_key(), material.public_key());
        let mut wrong = material.public_key().to_vec();
        wrong[40] ^= 1;
        assert!(
            KeyMaterial::from_authenticated(KeyType::Bip32, &seed, &wrong).is_err(),
            "a chain code that is not the seed's"
        );
    }

    #[test]
    fn invalid_scalars_are_redrawn_and_a_broken_source_is_an_error() {
        for key_type in [KeyType::Secp256k1, KeyType::P256] {
            let mut draws = [[0u8; 32], [0xff; 32], [7u8; 32]].into_iter();
            let material = KeyMaterial::generate(key_type, |out: &mut [u8]| -> Result<(), String> {
                out.copy_from_slice(&draws.next().ok_or("exhausted")?);
                Ok(())
            })
            .unwrap();
            assert_eq!(*material.secret_bytes(), [7u8; 32], "{key_type}");
            let err = KeyMaterial::generate(key_type, |out: &mut [u8]| -> Result<(), String> {
                out.fill(0);
                Ok(())
            })
            .unwrap_err();
            assert!(matches!(err, KeyringError::Randomness(_)), "{key_type}: {err}");
        }
    }

    #[test]
    fn debug_shows_the_public_key_never_the_secret() {
        for key_type in KeyType::ALL {
            let material = KeyMaterial::from_secret(key_type, &[0x42; 32]).unwrap();
            let shown = format!("{material:?}");
            assert!(shown.contains("[redacted]") && !shown.contains(&"42".repeat(32)), "{shown}");
        }
    }
}

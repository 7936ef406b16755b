//! Key material in transit, never readable by the host on the way.
//!
//! - **Import**: the client verifies an attestation document, takes its `public_key` (the
//!   enclave's transfer key, made fresh at each start), and encrypts the 32 secret bytes to it.
//! - **Export**: only for keys created exportable, and only encrypted to a public key the
//!   caller supplies.
//!
//! Both directions are HPKE (RFC 9180), base mode, with the suite DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256 and AES-256-GCM. The `info` string binds the ciphertext to the key it is for:
//! its name, type and flags, and also its version on export. If the host moves the ciphertext
//! to another name, or turns a non-exportable import into an exportable one, it does not open.
//!
//! ```text
//! import info = "keyward/import/v1" ‖ name length (1) ‖ name ‖ type code (1) ‖ flag bits (1)
//! export info = "keyward/export/v1" ‖ name length (1) ‖ name ‖ version (4, BE) ‖ type code (1)
//!               ‖ flag bits (1)
//! ```

use std::fmt;

use hpke::{
    Deserializable, Kem as _, OpModeR, OpModeS, Serializable, aead::AesGcm256, kdf::HkdfSha256, kem::X25519HkdfSha256,
};
use keyward_proto::{KeyFlags, KeyIdentity, KeyName, KeyType};
use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
use zeroize::Zeroizing;

use crate::{KeyringError, material::SECRET_LEN};

/// The HPKE suite, as the API and CLI name it.
pub const TRANSFER_SUITE: &str = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM";
/// Length of a transfer public key and of an encapsulated key (X25519).
pub const TRANSFER_PUBLIC_KEY_LEN: usize = 32;
/// Length of the ciphertext of one secret: 32 bytes and the 16-byte tag.
pub const TRANSFER_CIPHERTEXT_LEN: usize = SECRET_LEN + 16;

type Kem = X25519HkdfSha256;
const IMPORT_LABEL: &[u8] = b"keyward/import/v1";
const EXPORT_LABEL: &[u8] = b"keyward/export/v1";

/// A secret encrypted to a transfer key.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The encapsulated key (`enc`), 32 bytes.
    pub encapsulated_key: Vec<u8>,
    /// The ciphertext with its tag, 48 bytes.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("encapsulated_key", &hex::encode(&self.encapsulated_key))
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// An X25519 key pair to receive secrets: the enclave's import key, or a client's key for
/// an export. The private half never leaves the value and is erased when it drops.
pub struct TransferKey {
    private: <Kem as hpke::Kem>::PrivateKey,
    public: [u8; TRANSFER_PUBLIC_KEY_LEN],
}

impl fmt::Debug for TransferKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferKey").field("public", &hex::encode(self.public)).finish_non_exhaustive()
    }
}

impl TransferKey {
    /// The key pair derived (RFC 9180 `DeriveKeyPair`) from 32 fresh random bytes.
    pub fn derive(ikm: &Zeroizing<[u8; 32]>) -> Self {
        let (private, public) = Kem::derive_keypair(ikm.as_ref());
        let mut bytes = [0u8; TRANSFER_PUBLIC_KEY_LEN];
        bytes.copy_from_slice(&public.to_bytes());
        TransferKey { private, public: bytes }
    }

    /// The public key, 32 bytes: what goes into the attestation document's `public_key`.
    pub fn public_key(&self) -> [u8; TRANSFER_PUBLIC_KEY_LEN] {
        self.public
    }

    /// Opens a secret sealed to this key with `info`. Every failure is the same error: a
    /// wrong key, another `info` (name, type, flags), or altered bytes look alike.
    pub fn open(&self, info: &[u8], sealed: &Sealed) -> Result<Zeroizing<[u8; SECRET_LEN]>, KeyringError> {
        let refused = || KeyringError::TransferDoesNotOpen;
        let encapsulated =
            <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.encapsulated_key).map_err(|_| refused())?;
        if sealed.ciphertext.len() != TRANSFER_CIPHERTEXT_LEN {
            return Err(KeyringError::BadInput(format!(
                "a transferred key is {TRANSFER_CIPHERTEXT_LEN} bytes of ciphertext, not {}",
                sealed.ciphertext.len()
            )));
        }
        let plaintext = Zeroizing::new(
            hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
                &OpModeR::Base,
                &self.private,
                &encapsulated,
                info,
                &sealed.ciphertext,
                &[],
            )
            .map_err(|_| refused())?,
        );
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        if plaintext.len() != SECRET_LEN {
            return Err(refused());
        }
        secret.copy_from_slice(&plaintext);
        Ok(secret)
    }
}

/// Seals `secret` to `recipient` (32 bytes) with `info`. `ephemeral_seed` is 32 fresh random
/// bytes: they seed the generator of the ephemeral X25519 key.
pub fn seal(
    recipient: &[u8],
    info: &[u8],
    secret: &[u8; SECRET_LEN],
    ephemeral_seed: Zeroizing<[u8; 32]>,
) -> Result<Sealed, KeyringError> {
    let recipient = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient).map_err(|_| {
        KeyringError::BadInput(format!("a transfer public key is {TRANSFER_PUBLIC_KEY_LEN} bytes of X25519"))
    })?;
    let mut rng = ChaCha20Rng::from_seed(*ephemeral_seed);
    let (encapsulated, ciphertext) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem, _>(
        &OpModeS::Base,
        &recipient,
        info,
        secret,
        &[],
        &mut rng,
    )
    .map_err(|_| KeyringError::BadInput("the transfer public key is not usable (a low-order point)".into()))?;
    Ok(Sealed { encapsulated_key: encapsulated.to_bytes().to_vec(), ciphertext })
}

/// The `info` of an import of key `name`.
pub fn import_info(name: &KeyName, key_type: KeyType, flags: KeyFlags) -> Vec<u8> {
    let mut info = labelled(IMPORT_LABEL, name);
    info.push(key_type.code());
    info.push(flags.bits());
    info
}

/// The `info` of an export of the key version `identity`.
pub fn export_info(identity: &KeyIdentity) -> Vec<u8> {
    let mut info = labelled(EXPORT_LABEL, &identity.name);
    info.extend_from_slice(&identity.version.get().to_be_bytes());
    info.push(identity.key_type.code());
    info.push(identity.flags.bits());
    info
}

fn labelled(label: &[u8], name: &KeyName) -> Vec<u8> {
    let name = name.as_str().as_bytes();
    let mut info = Vec::with_capacity(label.len() + 1 + name.len() + 6);
    info.extend_from_slice(label);
    // Fits: full names are at most 161 ASCII characters (`keyward_proto::MAX_FULL_KEY_NAME_LEN`).
    info.push(name.len() as u8);
    info.extend_from_slice(name);
    info
}

#[cfg(test)]
mod tests {
    use keyward_proto::{KeyVersion, Origin};

    use super::*;

    fn key(byte: u8) -> TransferKey {
        TransferKey::derive(&Zeroizing::new([byte; 32]))
    }

    fn name(s: &str) -> KeyName {
        KeyName::parse(s).unwrap()
    }

    const IMPORTED: KeyFlags = KeyFlags { exportable: false, origin: Origin::Imported };

    #[test]
    fn a_secret_sealed_to_a_key_opens_with_the_same_info_only() {
        let receiver = key(1);
        let info = import_info(&name("wallet-1"), KeyType::Secp256k1, IMPORTED);
        let sealed = seal(&receiver.public_key(), &info, &[7; 32], Zeroizing::new([9; 32])).unwrap();
        assert_eq!((sealed.encapsulated_key.len(), sealed.ciphertext.len()), (32, TRANSFER_CIPHERTEXT_LEN));
        assert_eq!(*receiver.open(&info, &sealed).unwrap(), [7; 32]);

        // Another name, type or flags: refused alike.
        let exportable = KeyFlags { exportable: true, ..IMPORTED };
        for other in [
            import_info(&name("wallet-2"), KeyType::Secp256k1, IMPORTED),
            import_info(&name("wallet-1"), KeyType::P256, IMPORTED),
            import_info(&name("wallet-1"), KeyType::Secp256k1, exportable),
        ] {
            assert!(matches!(receiver.open(&other, &sealed), Err(KeyringError::TransferDoesNotOpen)));
        }
        // Another receiver, or any flipped byte.
        assert!(matches!(key(2).open(&info, &sealed), Err(KeyringError::TransferDoesNotOpen)));
        for i in 0..sealed.ciphertext.len() + sealed.encapsulated_key.len() {
            let mut bad = sealed.clone();
            match i.checked_sub(sealed.encapsulated_key.len()) {
                None => bad.encapsulated_key[i] ^= 1,
                Some(j) => bad.ciphertext[j] ^= 1,
            }
            assert!(receiver.open(&info, &bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn import_and_export_infos_differ_so_one_cannot_stand_for_the_other() {
        let identity = KeyIdentity {
            name: name("k"),
            version: KeyVersion::FIRST,
            key_type: KeyType::Ed25519,
            flags: KeyFlags { exportable: true, origin: Origin::Generated },
        };
        let export = export_info(&identity);
        assert_ne!(export, import_info(&identity.name, identity.key_type, identity.flags));
        let next = KeyIdentity { version: KeyVersion::new(2).unwrap(), ..identity.clone() };
        assert_ne!(export, export_info(&next), "the version is bound");
    }

    #[test]
    fn bad_public_keys_and_lengths_are_clear_errors() {
        assert!(matches!(seal(&[1; 31], b"i", &[0; 32], Zeroizing::new([0; 32])), Err(KeyringError::BadInput(_))));
        let receiver = key(3);
        let sealed = seal(&receiver.public_key(), b"i", &[5; 32], Zeroizing::new([4; 32])).unwrap();
        let short = Sealed { ciphertext: sealed.ciphertext[..40].to_vec(), ..sealed.clone() };
        assert!(matches!(receiver.open(b"i", &short), Err(KeyringError::BadInput(_))));
        let no_enc = Sealed { encapsulated_key: vec![0; 5], ..sealed };
        assert!(matches!(receiver.open(b"i", &no_enc), Err(KeyringError::TransferDoesNotOpen)));
    }

    #[test]
    fn debug_shows_public_parts_only() {
        let receiver = key(8);
        let shown = format!("{receiver:?}");
        assert!(shown.contains(&hex::encode(receiver.public_key())));
        let sealed = seal(&receiver.public_key(), b"i", &[0xAB; 32], Zeroizing::new([1; 32])).unwrap();
        assert!(!format!("{sealed:?}").contains(&hex::encode(&sealed.ciphertext)));
    }
}

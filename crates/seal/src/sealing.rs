//! AES-256-GCM sealing of the master key under a KMS data key.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use zeroize::Zeroizing;

use crate::{DataKey, MasterKey, PUBLIC_KEY_LEN, SealError};

/// Format version written as the first byte of every sealed blob and bound into the AAD.
pub const SEAL_VERSION: u8 = 1;
/// Length of a version-1 sealed blob: version, nonce, ciphertext, tag.
pub const SEALED_LEN: usize = 1 + NONCE_LEN + 32 + TAG_LEN;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const AAD_LABEL: &[u8] = b"keyward/seal";
const MAX_KEY_ID_LEN: usize = 2048;

/// The row columns a sealed key is bound to.
#[derive(Debug, Clone, Copy)]
pub struct SealBinding<'a> {
    /// The enclave the key belongs to.
    pub enclave_id: u32,
    /// The data-key generation.
    pub key_epoch: u32,
    /// The master public key (SEC1 compressed).
    pub public_key: &'a [u8; PUBLIC_KEY_LEN],
    /// ARN of the KMS key that wraps the data key.
    pub kms_key_id: &'a str,
}

impl SealBinding<'_> {
    fn aad(&self) -> Result<Vec<u8>, SealError> {
        let key_id = self.kms_key_id.as_bytes();
        if key_id.len() > MAX_KEY_ID_LEN {
            return Err(SealError::KeyIdTooLong(key_id.len()));
        }
        let mut aad = Vec::with_capacity(AAD_LABEL.len() + 1 + 8 + PUBLIC_KEY_LEN + 2 + key_id.len());
        aad.extend_from_slice(AAD_LABEL);
        aad.push(SEAL_VERSION);
        aad.extend_from_slice(&self.enclave_id.to_be_bytes());
        aad.extend_from_slice(&self.key_epoch.to_be_bytes());
        aad.extend_from_slice(self.public_key);
        // Fits: checked against MAX_KEY_ID_LEN above.
        aad.extend_from_slice(&(key_id.len() as u16).to_be_bytes());
        aad.extend_from_slice(key_id);
        Ok(aad)
    }
}

/// Seals `key` under `dek`, bound to `binding`. `nonce` must be fresh randomness (a data key
/// seals at most a few blobs, one per epoch, so random 96-bit nonces are far from reuse).
pub fn seal(
    key: &MasterKey,
    dek: &DataKey,
    binding: &SealBinding<'_>,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, SealError> {
    if binding.public_key != &key.public_key() {
        return Err(SealError::PublicKeyMismatch { enclave_id: binding.enclave_id });
    }
    let aad = binding.aad()?;
    let cipher = Aes256Gcm::new(dek.bytes().into());
    let secret = key.secret_bytes();
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.as_ref(), aad: &aad })
        // AES-GCM encryption fails only for inputs longer than 64 GiB.
        .map_err(|_| SealError::InvalidKey)?;
    let mut out = Vec::with_capacity(SEALED_LEN);
    out.push(SEAL_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens a sealed blob with `dek`, checks it against `binding`, and returns the key.
pub fn open(sealed: &[u8], dek: &DataKey, binding: &SealBinding<'_>) -> Result<MasterKey, SealError> {
    if sealed.len() != SEALED_LEN {
        return Err(SealError::Malformed { len: sealed.len(), expected: SEALED_LEN });
    }
    if sealed[0] != SEAL_VERSION {
        return Err(SealError::UnsupportedVersion(sealed[0]));
    }
    let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
    let aad = binding.aad()?;
    let cipher = Aes256Gcm::new(dek.bytes().into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| SealError::Authentication { enclave_id: binding.enclave_id })?,
    );
    let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(plain.as_slice().try_into().map_err(|_| SealError::InvalidKey)?);
    let key = MasterKey::from_secret_bytes(&bytes)?;
    if &key.public_key() != binding.public_key {
        return Err(SealError::PublicKeyMismatch { enclave_id: binding.enclave_id });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        key: MasterKey,
        dek: DataKey,
        public_key: [u8; 33],
        sealed: Vec<u8>,
    }

    const KMS_KEY: &str = "arn:aws:kms:us-east-1:000000000000:key/0b9a5c8e-1111-2222-3333-444455556666";

    fn binding(public_key: &[u8; 33]) -> SealBinding<'_> {
        SealBinding { enclave_id: 1, key_epoch: 1, public_key, kms_key_id: KMS_KEY }
    }

    fn fixture() -> Fixture {
        let key = MasterKey::generate(getrandom::fill).unwrap();
        let dek = DataKey::from_slice(&[0x42; 32]).unwrap();
        let public_key = key.public_key();
        let sealed = seal(&key, &dek, &binding(&public_key), [9; 12]).unwrap();
        Fixture { key, dek, public_key, sealed }
    }

    #[test]
    fn seal_then_open_returns_the_same_key() {
        let f = fixture();
        assert_eq!(f.sealed.len(), SEALED_LEN);
        assert_eq!(f.sealed[0], SEAL_VERSION);
        let opened = open(&f.sealed, &f.dek, &binding(&f.public_key)).unwrap();
        assert_eq!(opened.public_key(), f.key.public_key());
        assert_eq!(*opened.secret_bytes(), *f.key.secret_bytes());
    }

    #[test]
    fn sealed_blob_does_not_contain_the_secret() {
        let f = fixture();
        let secret = f.key.secret_bytes();
        assert!(!f.sealed.windows(32).any(|w| w == secret.as_slice()));
    }

    #[test]
    fn every_bound_column_is_checked() {
        let f = fixture();
        let other_pk = MasterKey::generate(getrandom::fill).unwrap().public_key();
        let cases: [(&str, SealBinding<'_>); 4] = [
            ("enclave_id", SealBinding { enclave_id: 2, ..binding(&f.public_key) }),
            ("key_epoch", SealBinding { key_epoch: 2, ..binding(&f.public_key) }),
            ("public_key", SealBinding { public_key: &other_pk, ..binding(&f.public_key) }),
            (
                "kms_key_id",
                SealBinding { kms_key_id: "arn:aws:kms:us-east-1:000000000000:key/other", ..binding(&f.public_key) },
            ),
        ];
        for (column, b) in cases {
            let err = open(&f.sealed, &f.dek, &b).unwrap_err();
            assert!(matches!(err, SealError::Authentication { .. }), "{column}: {err}");
        }
    }

    #[test]
    fn wrong_data_key_fails_authentication() {
        let f = fixture();
        let wrong = DataKey::from_slice(&[0x43; 32]).unwrap();
        let err = open(&f.sealed, &wrong, &binding(&f.public_key)).unwrap_err();
        assert!(matches!(err, SealError::Authentication { enclave_id: 1 }), "{err}");
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let f = fixture();
        for i in 0..f.sealed.len() {
            for bit in 0..8 {
                let mut tampered = f.sealed.clone();
                tampered[i] ^= 1 << bit;
                assert!(open(&tampered, &f.dek, &binding(&f.public_key)).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn truncated_or_extended_blobs_are_malformed() {
        let f = fixture();
        for len in [0, 1, SEALED_LEN - 1, SEALED_LEN + 1] {
            let mut blob = f.sealed.clone();
            blob.resize(len, 0);
            let err = open(&blob, &f.dek, &binding(&f.public_key)).unwrap_err();
            assert!(matches!(err, SealError::Malformed { expected: SEALED_LEN, .. }), "{len}: {err}");
        }
    }

    #[test]
    fn unknown_version_is_named() {
        let f = fixture();
        let mut blob = f.sealed.clone();
        blob[0] = 2;
        let err = open(&blob, &f.dek, &binding(&f.public_key)).unwrap_err();
        assert!(matches!(err, SealError::UnsupportedVersion(2)), "{err}");
    }

    #[test]
    fn sealing_refuses_a_binding_for_another_public_key() {
        let f = fixture();
        let other_pk = MasterKey::generate(getrandom::fill).unwrap().public_key();
        let err = seal(&f.key, &f.dek, &binding(&other_pk), [0; 12]).unwrap_err();
        assert!(matches!(err, SealError::PublicKeyMismatch { .. }), "{err}");
    }
}

//! The keyring root: an AES-256 key born in an enclave, which wraps every key version. It is
//! sealed under a KMS data key exactly like the master key (KMS releases that data key only to
//! attested enclaves), bound to its root id, its epoch and the KMS key.
//!
//! ```text
//! sealed = format (1) ‖ nonce (12) ‖ AES-256-GCM(data key, root (32)) ‖ tag (16)
//! AAD    = "keyward/keyring/root" ‖ format ‖ root id (16) ‖ epoch (4, BE) ‖ KMS key id length (2) ‖ KMS key id
//! ```

use std::fmt;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use keyward_proto::RootId;
use keyward_seal::DataKey;
use zeroize::Zeroizing;

use crate::KeyringError;

/// Format version of sealed roots.
pub const ROOT_SEAL_VERSION: u8 = 1;
/// Length of a sealed root.
pub const SEALED_ROOT_LEN: usize = 1 + 12 + 32 + 16;
const AAD_LABEL: &[u8] = b"keyward/keyring/root";
const MAX_KEY_ID_LEN: usize = 2048;

/// The keyring root. Lives only in enclave memory; zeroized on drop, never printed.
pub struct RootKey(Zeroizing<[u8; 32]>);

impl RootKey {
    /// A new root from `fill` (the NSM's randomness).
    pub fn generate<E: fmt::Display>(mut fill: impl FnMut(&mut [u8]) -> Result<(), E>) -> Result<Self, KeyringError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill(bytes.as_mut()).map_err(|e| KeyringError::Randomness(e.to_string()))?;
        Ok(RootKey(bytes))
    }

    /// The root from its bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RootKey(Zeroizing::new(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `other` is the same root (compared in constant time).
    pub fn same_as(&self, other: &RootKey) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.as_ref(), other.0.as_ref()).is_ok()
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey([redacted])")
    }
}

/// What a sealed root is bound to.
#[derive(Debug, Clone, Copy)]
pub struct RootBinding<'a> {
    /// The root's id.
    pub root_id: &'a RootId,
    /// The data-key generation.
    pub epoch: u32,
    /// ARN of the KMS key that wraps the data key.
    pub kms_key_id: &'a str,
}

impl RootBinding<'_> {
    fn aad(&self) -> Result<Vec<u8>, KeyringError> {
        let key_id = self.kms_key_id.as_bytes();
        if key_id.len() > MAX_KEY_ID_LEN {
            return Err(KeyringError::BadInput(format!("kms_key_id of {} bytes", key_id.len())));
        }
        let mut aad = Vec::with_capacity(AAD_LABEL.len() + 1 + 16 + 4 + 2 + key_id.len());
        aad.extend_from_slice(AAD_LABEL);
        aad.push(ROOT_SEAL_VERSION);
        aad.extend_from_slice(&self.root_id.0);
        aad.extend_from_slice(&self.epoch.to_be_bytes());
        // Fits: checked against MAX_KEY_ID_LEN above.
        aad.extend_from_slice(&(key_id.len() as u16).to_be_bytes());
        aad.extend_from_slice(key_id);
        Ok(aad)
    }
}

/// Seals `root` under `dek`, bound to `binding`; `nonce` must be fresh randomness.
pub fn seal_root(
    root: &RootKey,
    dek: &DataKey,
    binding: &RootBinding<'_>,
    nonce: [u8; 12],
) -> Result<Vec<u8>, KeyringError> {
    let aad = binding.aad()?;
    let ciphertext = Aes256Gcm::new(dek.bytes().into())
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: root.bytes().as_ref(), aad: &aad })
        // AES-GCM encryption fails only for inputs longer than 64 GiB.
        .map_err(|_| KeyringError::BadInput("root sealing failed".into()))?;
    Ok([&[ROOT_SEAL_VERSION][..], &nonce, &ciphertext].concat())
}

/// Opens a sealed root with `dek`, checking it against `binding`.
pub fn open_root(sealed: &[u8], dek: &DataKey, binding: &RootBinding<'_>) -> Result<RootKey, KeyringError> {
    if sealed.len() != SEALED_ROOT_LEN || sealed[0] != ROOT_SEAL_VERSION {
        return Err(KeyringError::RootDoesNotOpen(format!(
            "sealed root is {} bytes of format {}, expected {SEALED_ROOT_LEN} of format {ROOT_SEAL_VERSION}",
            sealed.len(),
            sealed.first().copied().unwrap_or(0)
        )));
    }
    let (nonce, ciphertext) = sealed[1..].split_at(12);
    let aad = binding.aad()?;
    let plain = Zeroizing::new(
        Aes256Gcm::new(dek.bytes().into())
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| {
                KeyringError::RootDoesNotOpen(
                    "authentication failed: the data key is wrong or the row (root id, epoch, KMS key, blob) was altered".into(),
                )
            })?,
    );
    let bytes: [u8; 32] =
        plain.as_slice().try_into().map_err(|_| KeyringError::RootDoesNotOpen("root length".into()))?;
    Ok(RootKey(Zeroizing::new(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KMS_KEY: &str = "arn:aws:kms:us-east-1:000000000000:key/0b9a5c8e-1111-2222-3333-444455556666";

    #[test]
    fn a_sealed_root_opens_only_with_its_binding_and_data_key() {
        let root = RootKey::generate(getrandom::fill).unwrap();
        let dek = DataKey::from_slice(&[7; 32]).unwrap();
        let id = RootId([1; 16]);
        let binding = RootBinding { root_id: &id, epoch: 1, kms_key_id: KMS_KEY };
        let sealed = seal_root(&root, &dek, &binding, [3; 12]).unwrap();
        assert_eq!(sealed.len(), SEALED_ROOT_LEN);
        assert_eq!(open_root(&sealed, &dek, &binding).unwrap().bytes(), root.bytes());
        let other_id = RootId([2; 16]);
        for (what, wrong) in [
            ("another root id", RootBinding { root_id: &other_id, ..binding }),
            ("another epoch", RootBinding { epoch: 2, ..binding }),
            ("another KMS key", RootBinding { kms_key_id: "arn:aws:kms:us-east-1:000000000000:key/other", ..binding }),
        ] {
            assert!(matches!(open_root(&sealed, &dek, &wrong), Err(KeyringError::RootDoesNotOpen(_))), "{what}");
        }
        assert!(open_root(&sealed, &DataKey::from_slice(&[8; 32]).unwrap(), &binding).is_err());
        for byte in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[byte] ^= 0x10;
            assert!(open_root(&flipped, &dek, &binding).is_err(), "byte {byte}");
        }
        assert!(open_root(&sealed[..60], &dek, &binding).is_err());
        assert_eq!(format!("{root:?}"), "RootKey([redacted])");
    }
}

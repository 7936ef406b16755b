#![doc = include_str!("../README.md")]

mod key;
mod sealing;

pub use key::{DataKey, MasterKey, PUBLIC_KEY_LEN};
pub use sealing::{SEAL_VERSION, SEALED_LEN, SealBinding, open, seal};

/// What can go wrong generating, sealing or opening key material. No variant carries
/// secret bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The sealed blob has the wrong length.
    #[error("sealed private key is {len} bytes, expected {expected}; the row was truncated or altered")]
    Malformed {
        /// Actual length.
        len: usize,
        /// Expected length.
        expected: usize,
    },
    /// The blob is of a format version this build does not know.
    #[error("sealed private key has format version {0}, this build reads only version 1")]
    UnsupportedVersion(u8),
    /// AES-GCM authentication failed: the data key is wrong, or the blob or one of the bound
    /// columns (enclave id, key epoch, public key, KMS key id) was altered.
    #[error(
        "sealed private key for enclave {enclave_id} failed authentication: the data key is wrong or the row (enclave_id, key_epoch, public_key, kms_key_id or the blob) was altered"
    )]
    Authentication {
        /// The enclave id the row claims.
        enclave_id: u32,
    },
    /// The opened bytes are not a valid secp256k1 secret key.
    #[error("sealed private key opened but is not a valid secp256k1 key")]
    InvalidKey,
    /// The opened key's public key differs from the stored one.
    #[error("sealed key for enclave {enclave_id} does not match its stored public key; the row was altered")]
    PublicKeyMismatch {
        /// The enclave id the row claims.
        enclave_id: u32,
    },
    /// The KMS key id is longer than the seal format allows.
    #[error("kms_key_id is {0} bytes; at most 2048 are allowed")]
    KeyIdTooLong(usize),
    /// The randomness source failed.
    #[error("randomness source failed: {0}")]
    Randomness(String),
}

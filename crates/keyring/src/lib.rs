#![doc = include_str!("../README.md")]

mod agree;
mod crypt;
mod material;
mod policy_tag;
mod psbt;
mod root;
mod sign;
mod sign_body;
mod stream;
mod transfer;
mod wrap;

use keyward_proto::{KeyType, RootId};

pub use agree::{
    Curve, JOSE_ALG, JoseWrapped, MAX_CEK_LEN, derive_shared_secret, jose_unwrap, jose_wrap, peer_public_key,
};
pub use crypt::{
    CIPHERTEXT_FORMAT, CIPHERTEXT_HEADER_LEN, CIPHERTEXT_OVERHEAD, CiphertextError, MAC_LEN, TAG_LEN,
    ciphertext_version, decrypt, encrypt, mac, new_data_key, open_secret, seal_secret, verify_mac,
};
pub use material::{KeyMaterial, SECRET_LEN};
pub use policy_tag::PolicyRowFields;
pub use psbt::{SignedPsbt, sign_psbt};
pub use root::{ROOT_SEAL_VERSION, RootBinding, RootKey, SEALED_ROOT_LEN, open_root, seal_root};
pub use sign::{MAX_MESSAGE_LEN, SignInput, Signed, check_request, default_algorithm, sign, verify};
pub use sign_body::{SignFields, SignFieldsError, parse_sign_fields};
pub use stream::{
    MAX_STREAM_SEGMENT_LEN, STREAM_FORMAT, STREAM_HEADER_LEN, STREAM_SEGMENT_LEN, StreamHeader, open_segment,
    seal_segment,
};
pub use transfer::{
    Sealed, TRANSFER_CIPHERTEXT_LEN, TRANSFER_PUBLIC_KEY_LEN, TRANSFER_SUITE, TransferKey, export_info, import_info,
    seal,
};
pub use wrap::{WRAP_VERSION, WRAPPED_LEN, unwrap, wrap};

/// What can go wrong with keyring material. No variant carries secret bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The randomness source failed or kept producing unusable values.
    #[error("randomness source failed: {0}")]
    Randomness(String),
    /// 32 bytes that are not a valid secret of the type (a scalar out of range).
    #[error("not a valid {0} secret")]
    InvalidSecret(KeyType),
    /// A key type this build does not handle.
    #[error("key type {0} is not supported here")]
    UnsupportedType(KeyType),
    /// A symmetric key was asked to sign.
    #[error("a {0} key does not sign")]
    NotASigningKey(KeyType),
    /// The request cannot be done with this key (the message says why).
    #[error("{0}")]
    BadInput(String),
    /// The key type does not sign with this scheme, or not in this format.
    #[error("{0}")]
    UnsupportedScheme(String),
    /// A message longer than [`MAX_MESSAGE_LEN`].
    #[error("a message is at most {max} bytes, this one has {len}")]
    MessageTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Transferred key material does not open: sealed to another key, for another key name,
    /// type or flags, or altered.
    #[error(
        "the transferred key does not open: it was sealed to another transfer key (the enclave restarted since the attestation?), for another name, type or exportability, or altered"
    )]
    TransferDoesNotOpen,
    /// A key wrapped with JOSE's ECDH-ES+A256KW does not open with this key.
    #[error(
        "the wrapped key does not open with this key: it was wrapped to another key, with other apu or apv, or altered"
    )]
    UnwrapFailed,
    /// The row names another keyring root than the one loaded.
    #[error(
        "key {name} is wrapped under keyring root {row}, but this enclave holds root {loaded}; the row belongs to another deployment"
    )]
    WrongRoot {
        /// The key's name.
        name: String,
        /// The row's root id.
        row: RootId,
        /// The loaded root's id.
        loaded: RootId,
    },
    /// The row does not open: it was moved to another name, version, type or flags, or its
    /// public key or blob was altered.
    #[error(
        "key {name} version {version} does not open under the keyring root: the row was altered or moved from another key"
    )]
    RowDoesNotOpen {
        /// The key's name.
        name: String,
        /// The version.
        version: u32,
    },
    /// The row's blob has the wrong length or format.
    #[error("key {name}: the stored row is damaged ({reason})")]
    RowDamaged {
        /// The key's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The key type does not do this operation (the message says which).
    #[error("{0}")]
    UnsupportedOperation(String),
    /// A ciphertext that is malformed or does not open.
    #[error("{0}")]
    Ciphertext(CiphertextError),
    /// The sealed root does not open.
    #[error("the keyring root does not open: {0}")]
    RootDoesNotOpen(String),
}

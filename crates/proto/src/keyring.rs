//! Keyring requests and replies on the link: the root's lifecycle (provision, commit, unseal,
//! rotate) and the key operations. The gateway sends the stored row with every key request;
//! the enclave opens it only if it names the loaded root and its AAD matches.

use serde::{Deserialize, Serialize};

use crate::{AwsCredentials, Digest, KeyIdentity, RootId, SealedRoot, WrappedKey};

/// Most keys created in one request.
pub const MAX_KEYS_PER_BATCH: usize = 1000;

/// First start of the keyring: a new root, sealed under a new data key.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootProvision {
    /// The KMS key the gateway expects (checked against the enclave's pinned key).
    pub kms_key_id: String,
    /// The region the gateway expects (checked the same way).
    pub region: String,
    /// Credentials for the KMS calls.
    pub credentials: AwsCredentials,
}

/// The root (or a root rotation) is stored: use it.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCommit {
    /// The stored root's id.
    pub root_id: RootId,
    /// The stored epoch.
    pub root_epoch: u32,
}

/// Open the stored root.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootUnseal {
    /// The stored row.
    pub sealed: SealedRoot,
    /// Credentials for the KMS call.
    pub credentials: AwsCredentials,
}

/// Reseal the root under a new data key (`root_epoch + 1`).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRotate {
    /// The stored row the rotation starts from.
    pub sealed: SealedRoot,
    /// Credentials for the KMS calls.
    pub credentials: AwsCredentials,
}

/// Where the keyring is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyringPhase {
    /// No root in memory.
    Empty,
    /// A new root awaits `RootCommit`; no key is made or used yet.
    AwaitingCommit,
    /// The root is loaded: keys are made and used.
    Ready,
}

/// The keyring's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringStatus {
    /// Its phase.
    pub phase: KeyringPhase,
    /// The loaded root.
    pub root_id: Option<RootId>,
    /// Its data-key epoch.
    pub root_epoch: Option<u32>,
}

/// A signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignAlgorithm {
    /// ECDSA (secp256k1, P-256).
    Ecdsa,
    /// BIP340 Schnorr (secp256k1).
    Bip340,
    /// Ed25519.
    Ed25519,
}

/// How a message becomes the bytes that are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageHash {
    /// SHA-256.
    Sha256,
    /// Keccak-256.
    Keccak256,
    /// Signed as it is.
    None,
}

/// How a signature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignFormat {
    /// `r‖s`, or the 64-byte BIP340 / Ed25519 signature.
    Compact,
    /// ASN.1 DER (ECDSA).
    Der,
    /// `r‖s‖v` with `v = 27 + recovery id` (ECDSA on secp256k1).
    Ethereum,
}

/// What to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignPayload {
    /// A 32-byte digest.
    Digest(Digest),
    /// A message, hashed as asked.
    Message {
        /// The message (at most 64 KiB).
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        /// How it is hashed.
        hash: MessageHash,
    },
}

/// Sign with one key version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySign {
    /// The stored row of the version to sign with.
    pub row: WrappedKey,
    /// The scheme.
    pub algorithm: SignAlgorithm,
    /// What to sign.
    pub payload: SignPayload,
    /// The encoding.
    pub format: SignFormat,
    /// The principal's signed request (required when the enclave has owners).
    pub auth: Option<crate::Authorization>,
}

/// Signatures with one key, authorized together: `auth`'s body is the batch as the principal
/// signed it (`POST /v1/keys/{name}/sign-batch`), and each item's own `auth` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySignBatchSigned {
    pub items: Vec<KeySign>,
    pub auth: crate::Authorization,
}

/// A keyring signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySignature {
    /// The encoded signature.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// ECDSA recovery id on secp256k1.
    pub recovery_id: Option<u8>,
    /// The audit record of a signed request (when the enclave has owners).
    pub receipt: Option<crate::AuditReceipt>,
}

/// New key versions to generate: each identity names the key, its version (1 for a new key,
/// `n + 1` for a rotation), type and flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCreate {
    /// What to make (1 to [`MAX_KEYS_PER_BATCH`]).
    pub keys: Vec<KeyIdentity>,
    /// The principal's signed request: to create the keys, or to rotate the one key (required
    /// when the enclave has owners).
    #[serde(default)]
    pub auth: Option<Box<crate::Authorization>>,
}

/// Key material sealed with HPKE (RFC 9180): the encapsulated key and the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferSealed {
    /// The encapsulated key (`enc`).
    #[serde(with = "serde_bytes")]
    pub encapsulated_key: Vec<u8>,
    /// The ciphertext and tag.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// Import a key: material a client sealed to this enclave's transfer key (the `public_key` of
/// its attestation documents), with the key's name, type and flags bound in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyImport {
    /// The key version to make: version 1, origin imported.
    pub identity: KeyIdentity,
    /// The transfer public key the client sealed to.
    #[serde(with = "serde_bytes")]
    pub transfer_public_key: Vec<u8>,
    /// The sealed material.
    pub sealed: TransferSealed,
    /// The principals' signed request (required when the enclave has owners).
    #[serde(default)]
    pub auth: Option<Box<crate::Authorization>>,
}

/// Export a key version, sealed to `recipient_public_key` (X25519, 32 bytes). Only for keys
/// whose row says exportable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyExport {
    /// The stored row of the version.
    pub row: WrappedKey,
    /// The caller's public key.
    #[serde(with = "serde_bytes")]
    pub recipient_public_key: Vec<u8>,
    /// The principals' signed request (required when the enclave has owners).
    #[serde(default)]
    pub auth: Option<Box<crate::Authorization>>,
}

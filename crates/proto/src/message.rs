//! Requests the gateway sends and the replies the enclave returns.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    keyring::{
        KeyCreate, KeyExport, KeyImport, KeySign, KeySignature, KeyringStatus, RootCommit, RootProvision, RootRotate,
        RootUnseal, TransferSealed,
    },
    keys::{SealedRoot, WrappedKey},
    types::{AwsCredentials, CompressedPublicKey, Digest, EnclaveId, Scheme, SealedKey},
};

/// A request with the id its reply will carry.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Chosen by the gateway, unique per connection, never [`crate::CONNECTION_ERROR_ID`].
    pub id: u64,
    /// The request itself.
    pub request: Request,
}

/// A reply, tagged with the id of the request it answers.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The id of the request this answers, or [`crate::CONNECTION_ERROR_ID`].
    pub id: u64,
    /// Success or a typed error.
    pub reply: Reply,
}

/// Every request gets exactly one of these.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The request succeeded.
    Ok(Response),
    /// The request failed; the message says why and what to do.
    Err(ErrorReply),
}

/// Requests from the gateway to the enclave.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Request {
    /// Version handshake; must be the first request on a connection.
    Hello(Hello),
    /// Proof that the peer holds the gateway's link key; must follow `Hello`. Until it
    /// succeeds the enclave answers nothing else.
    Authenticate(Authenticate),
    /// Generate a new master key and seal it under a fresh KMS data key.
    Provision(Provision),
    /// The gateway has durably stored the sealed key: start signing with it.
    Commit(Commit),
    /// Restore a stored sealed key.
    Unseal(Unseal),
    /// Sign one digest.
    Sign(SignRequest),
    /// Sign several digests in one round trip; each item gets its own result.
    SignBatch(Vec<SignRequest>),
    /// Several digests with the master key under one signed request over the whole batch
    /// (`POST /v1/sign-batch`'s body); answered with `Signatures`, each with the batch's
    /// audit receipt.
    SignBatchSigned(Box<SignBatchSigned>),
    /// The master public key.
    PublicKey,
    /// State of the enclave.
    Status,
    /// A fresh attestation document binding the master public key.
    Attest(AttestRequest),
    /// Reseal the master key under a new data key (`key_epoch + 1`).
    Rotate(Rotate),
    /// Keyring: a new root, sealed; answered with `RootSealed`.
    RootProvision(RootProvision),
    /// Keyring: the new root (or root rotation) is stored; use it.
    RootCommit(RootCommit),
    /// Keyring: open the stored root.
    RootUnseal(RootUnseal),
    /// Keyring: reseal the root under a new data key; answered with `RootSealed`.
    RootRotate(RootRotate),
    /// Keyring: its state.
    KeyringStatus,
    /// Keyring: generate key versions; answered with `WrappedKeys`, one per identity.
    KeyCreate(KeyCreate),
    /// Keyring: sign with a key version.
    KeySign(Box<KeySign>),
    /// Keyring: several signatures in one round trip, each with its own result.
    KeySignBatch(Vec<KeySign>),
    /// Keyring: a batch with one key, authorized by one signed request over the whole batch;
    /// answered with `KeySignatures`, each carrying the batch's audit receipt.
    KeySignBatchSigned(Box<crate::KeySignBatchSigned>),
    /// Keyring: a key whose material a client sealed to the enclave's transfer key; answered
    /// with `WrappedKeys` (one row).
    KeyImport(Box<KeyImport>),
    /// Keyring: an exportable key version sealed to the caller's public key; answered with
    /// `ExportedKey`.
    KeyExport(Box<KeyExport>),
    /// Keyring: encrypt, decrypt, rewrap, a data key, a MAC; answered with `Crypt`.
    KeyCrypt(Box<crate::KeyCrypt>),
    /// Random bytes from the NSM or KMS; answered with `Random`.
    Random(crate::RandomRequest),
    /// Audit records the enclave still holds; answered with `AuditRecords`.
    AuditRead(crate::AuditRead),
    /// A key's new policy, signed by those the current policy lets set it; answered with
    /// `PolicySealed`.
    PolicySet(Box<crate::PolicySet>),
    /// A key's new state (disable, enable, schedule or cancel a deletion), signed by those the
    /// policies let do it; answered with `PolicySealed`.
    KeyStateSet(Box<crate::KeyStateSet>),
    /// Keyring: that each row opens under the loaded root, so that its identity and public
    /// key are the ones bound into it (before the enclave's TLS API shows a public key the
    /// host's store gave it); answered with `KeysChecked`.
    KeyCheck(Vec<crate::WrappedKey>),
    /// With owners: that the policy row the host presents for a key or keystore is the newest
    /// this enclave knows and was tagged under its keyring (before the enclave's TLS API shows
    /// it); answered with `KeysChecked`.
    PolicyCheck(Box<crate::PolicyCheck>),
}

/// Version handshake.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`crate::PROTOCOL_VERSION`] of the sender.
    pub protocol_version: u16,
}

/// The gateway's answer to the enclave's challenge: an Ed25519 signature by the link key over
/// [`crate::link_auth_message`] of this connection's challenge. The enclave accepts it only
/// for a public key its own (measured) configuration lists.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authenticate {
    /// The signer's Ed25519 public key.
    #[serde(with = "serde_bytes")]
    pub public_key: [u8; 32],
    /// Ed25519 signature over the challenge message.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

/// First start: generate and seal a master key.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provision {
    /// The id the key belongs to; bound into the seal and the KMS encryption context.
    pub enclave_id: EnclaveId,
    /// The KMS key the gateway expects; the enclave refuses if it differs from the key its
    /// own (measured) configuration pins.
    pub kms_key_id: String,
    /// The AWS region the gateway expects; checked the same way.
    pub region: String,
    /// Credentials for this one KMS call.
    pub credentials: AwsCredentials,
}

/// The sealed key is stored; the enclave may start signing.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Must match the pending (or current) key.
    pub enclave_id: EnclaveId,
    /// Must match the pending (or current) key.
    pub public_key: CompressedPublicKey,
    /// The epoch now stored.
    pub key_epoch: u32,
}

/// Restart: open a stored sealed key.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unseal {
    /// The stored row.
    pub sealed: SealedKey,
    /// Credentials for this one KMS call.
    pub credentials: AwsCredentials,
}

/// Data-key rotation: reseal the current master key under a new data key.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotate {
    /// The stored row the rotation starts from; its public key and epoch must match the
    /// enclave's current key.
    pub sealed: SealedKey,
    /// Credentials for this one KMS call.
    pub credentials: AwsCredentials,
}

/// One digest to sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    /// The 32-byte digest.
    pub digest: Digest,
    /// ECDSA or BIP340.
    pub scheme: Scheme,
    /// A principal's signed request (when the enclave has owners; a signed batch carries one
    /// for all its items instead).
    #[serde(default)]
    pub auth: Option<Box<crate::Authorization>>,
}

/// Master-key signatures authorized together: `auth`'s body is the batch as the principal
/// signed it, and each item's own `auth` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignBatchSigned {
    pub items: Vec<SignRequest>,
    pub auth: crate::Authorization,
}

/// A nonce for a fresh attestation document.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestRequest {
    /// Up to 512 bytes chosen by the client; echoed in the document's `nonce`.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
}

/// Successful replies.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    /// Answer to `Hello`.
    Hello(HelloReply),
    /// Answer to `Provision`: the row to store before sending `Commit`.
    Provisioned(SealedKey),
    /// Answer to `Authenticate`, `Commit`, `Unseal` and `Status`.
    Status(Status),
    /// Answer to `Sign`.
    Signature(SignatureReply),
    /// Answer to `SignBatch`, one entry per item in order.
    Signatures(Vec<Result<SignatureReply, ErrorReply>>),
    /// Answer to `PublicKey`.
    PublicKey(PublicKeyInfo),
    /// Answer to `Attest`: raw COSE_Sign1 bytes.
    Attestation(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Answer to `Rotate`: the new row to compare-and-swap in before committing it.
    Rotated(SealedKey),
    /// Answer to `RootProvision` and `RootRotate`: the row to store before `RootCommit`.
    RootSealed(SealedRoot),
    /// Answer to `RootCommit`, `RootUnseal` and `KeyringStatus`.
    Keyring(KeyringStatus),
    /// Answer to `KeyCreate`, in request order.
    WrappedKeys(Vec<WrappedKey>),
    /// Answer to `KeySign`.
    KeySignature(KeySignature),
    /// Answer to `KeySignBatch` and `KeySignBatchSigned`, one entry per item in order.
    KeySignatures(Vec<Result<KeySignature, ErrorReply>>),
    /// Answer to `KeyCheck`: every row opened.
    KeysChecked,
    /// Answer to `KeyExport`.
    ExportedKey(TransferSealed),
    /// A `KeyCrypt` answer.
    Crypt(crate::CryptOutput),
    /// Random bytes.
    Random(crate::SecretBytes),
    /// Answer to `AuditRead`, oldest first.
    AuditRecords(Vec<crate::AuditRecord>),
    /// Answer to `PolicySet`: the row to store.
    PolicySealed(Box<crate::PolicySealed>),
}

impl Response {
    /// The variant's name, for error messages about an unexpected answer. Unlike `Debug` it
    /// never prints the payload (attestation documents, sealed blobs).
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Hello(_) => "Hello",
            Response::Provisioned(_) => "Provisioned",
            Response::Status(_) => "Status",
            Response::Signature(_) => "Signature",
            Response::Signatures(_) => "Signatures",
            Response::PublicKey(_) => "PublicKey",
            Response::Attestation(_) => "Attestation",
            Response::Rotated(_) => "Rotated",
            Response::RootSealed(_) => "RootSealed",
            Response::Keyring(_) => "Keyring",
            Response::WrappedKeys(_) => "WrappedKeys",
            Response::KeySignature(_) => "KeySignature",
            Response::KeySignatures(_) => "KeySignatures",
            Response::KeysChecked => "KeysChecked",
            Response::ExportedKey(_) => "ExportedKey",
            Response::Crypt(_) => "Crypt",
            Response::Random(_) => "Random",
            Response::AuditRecords(_) => "AuditRecords",
            Response::PolicySealed(_) => "PolicySealed",
        }
    }
}

/// What the enclave says about itself on connect, to anyone: its pinned configuration and
/// a fresh challenge the peer must sign with the link key before anything else is answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The enclave's protocol version (equal to the gateway's, or the hello fails).
    pub protocol_version: u16,
    /// The enclave's fixed configuration.
    pub info: EnclaveInfo,
    /// 32 random bytes, new for every connection.
    #[serde(with = "serde_bytes")]
    pub challenge: [u8; 32],
}

/// The enclave's own configuration. In production it is part of the measured image, so the
/// gateway can check it but cannot change it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnclaveInfo {
    /// `enclave` crate version.
    pub software_version: String,
    /// Which NSM the enclave uses.
    pub nsm: NsmKind,
    /// The KMS key the enclave is pinned to (ARN or alias).
    pub kms_key_id: String,
    /// The region of that key.
    pub kms_region: String,
    /// The KMS endpoint the enclave talks to, through the relay.
    pub kms_endpoint: String,
    /// Whether KMS calls carry a `Recipient` attestation document.
    pub attestation: bool,
    /// The owners and audit key, when authorization is on.
    pub authorization: Option<crate::AuthorizationInfo>,
}

/// The enclave's NSM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsmKind {
    /// `/dev/nsm` inside a Nitro Enclave.
    Nitro,
    /// The development stand-in with its own PKI. Production refuses it.
    Mock,
}

/// Lifecycle of the master key inside the enclave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnclaveState {
    /// No key in memory.
    Empty,
    /// A key was provisioned and awaits `Commit`; it does not sign yet.
    AwaitingCommit,
    /// A committed or unsealed key; signing.
    Ready,
}

/// State of the enclave and, when it has one, its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Key lifecycle state.
    pub state: EnclaveState,
    /// The enclave id of the key in memory.
    pub enclave_id: Option<EnclaveId>,
    /// The master public key in memory.
    pub public_key: Option<CompressedPublicKey>,
    /// The data-key epoch of the key in memory.
    pub key_epoch: Option<u32>,
}

/// A signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureReply {
    /// The scheme used.
    pub scheme: Scheme,
    /// 64 bytes: compact `r || s` (ECDSA, low-S) or the BIP340 signature.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
    /// ECDSA recovery id (0..=3); `None` for BIP340.
    pub recovery_id: Option<u8>,
    /// The audit record of a signed request (when the enclave has owners).
    #[serde(default)]
    pub receipt: Option<crate::AuditReceipt>,
}

/// The master public key in both encodings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    /// Enclave id of the key.
    pub enclave_id: EnclaveId,
    /// SEC1 compressed key (ECDSA).
    pub public_key: CompressedPublicKey,
    /// 32-byte x-only key (BIP340).
    #[serde(with = "serde_bytes")]
    pub xonly_public_key: [u8; 32],
    /// Data-key epoch.
    pub key_epoch: u32,
}

/// A failed request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Machine-readable category.
    pub code: ErrorCode,
    /// Human-readable explanation; never contains secret bytes.
    pub message: String,
}

impl ErrorReply {
    /// Builds an error reply.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl fmt::Debug for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Stable error codes. They travel unchanged from the enclave to the gateway's HTTP answer
/// and health report (as [`ErrorCode::as_str`]), so clients and tests match codes, never
/// message text. Never rename one: add a new code instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed or not allowed in the current state.
    BadRequest,
    /// The first request was not `Hello`.
    HandshakeRequired,
    /// Protocol versions differ.
    VersionMismatch,
    /// The peer has not proven it holds the gateway's link key (or its proof was wrong).
    Unauthenticated,
    /// The enclave already serves as many connections as it allows.
    TooManyConnections,
    /// A bounded resource (such as the attestation workers) is saturated; retry later.
    Busy,
    /// No committed key: provision/unseal (and commit) first.
    NotReady,
    /// A key is already loaded; provisioning again would replace it.
    AlreadyProvisioned,
    /// The request names a KMS key or region other than the enclave's pinned one.
    ConfigMismatch,
    /// KMS refused the call (access denied by the key policy, disabled key...).
    KmsDenied,
    /// KMS could not be reached or failed; retrying may help.
    KmsUnavailable,
    /// KMS could not decrypt the stored data key: the row's `kms_encrypted_dek` or a column
    /// of its encryption context (enclave id, epoch, public key) was altered or swapped.
    KmsInvalidCiphertext,
    /// KMS's answer to an attested request was not acceptable (a `Plaintext` data key, no
    /// `CiphertextForRecipient`, a blob that does not open, a key of the wrong size).
    KmsAnswerRefused,
    /// The row's KMS key differs from the key KMS says encrypted its data key, or from the
    /// enclave's pinned key.
    KmsKeyMismatch,
    /// The sealed private key does not open under its data key (AES-GCM authentication
    /// failed, or it has the wrong length or format version): the row was altered.
    SealOpenFailed,
    /// The sealed key opened but is not the row's public key: the row was altered.
    PublicKeyMismatch,
    /// A newly sealed row did not open again (attested `Decrypt`, open, compare) before it
    /// was handed out, so it was discarded; the stored row is unchanged.
    RoundTripFailed,
    /// Attestation could not be produced.
    Attestation,
    /// The keyring has no committed root yet.
    KeyringNotReady,
    /// The stored keyring root does not open under its data key: the row was altered.
    RootDoesNotOpen,
    /// A key row names another keyring root than the loaded one.
    WrongKeyringRoot,
    /// A key row does not open under the root: it was altered, or moved to another name,
    /// version, type or flags.
    KeyRowDoesNotOpen,
    /// A key row has the wrong length or format.
    KeyRowDamaged,
    /// A symmetric key was asked to sign.
    NotASigningKey,
    /// The key type does not sign with this scheme or format, or the payload does not fit it.
    UnsupportedScheme,
    /// An import names a transfer key this enclave does not hold (it restarted since the
    /// client's attestation, or the document came from another enclave).
    UnknownTransferKey,
    /// Imported key material does not open: sealed for another name, type or exportability,
    /// or altered on the way.
    TransferDoesNotOpen,
    /// Imported bytes are not a valid secret of the key type (a scalar out of range).
    InvalidKeyMaterial,
    /// An export of a key not created exportable.
    KeyNotExportable,
    /// A ciphertext does not decrypt: another key, other associated data, or altered.
    DecryptionFailed,
    /// A ciphertext is too short or of an unknown format.
    CiphertextMalformed,
    /// The key's type does not do this operation (encrypting with a signing key, ...).
    UnsupportedOperation,
    /// Authorization is on and the key operation carries no principal's signature.
    SignatureRequired,
    /// A principal's key or signature does not verify over the request.
    BadRequestSignature,
    /// The signed request's timestamp is outside the accepted window.
    RequestExpired,
    /// The signed request was already accepted once, and repeating it would change something.
    RequestReplayed,
    /// The typed request the enclave received is not the one the principal signed (the host
    /// changed it).
    RequestMismatch,
    /// The policy does not let this principal do this.
    NotPermitted,
    /// The policy needs more approvals for this.
    QuorumNotMet,
    /// A policy document is malformed or cannot be met.
    InvalidPolicy,
    /// A policy row's tag does not verify under the keyring root: it was edited, forged, or
    /// moved to another key.
    PolicyTampered,
    /// A policy row older than one this enclave has seen (or none, after one was seen).
    PolicyRollback,
    /// A new policy's version does not follow the current one.
    PolicyVersionConflict,
    /// The key's policy row says it is disabled.
    KeyDisabled,
    /// The key's policy row says it is scheduled for deletion.
    KeyPendingDeletion,
    /// The key's policy row says its deletion is due.
    KeyDeleted,
    /// A state change that does not apply to the key's current state.
    InvalidKeyState,
    /// A signed rotation names another version than the one it would make: it is stale (the
    /// key was rotated since) or replayed.
    KeyVersionConflict,
    /// Anything else; the message has details.
    Internal,
}

impl ErrorCode {
    /// Every code (the property tests check each one round-trips).
    pub const ALL: [ErrorCode; 49] = [
        ErrorCode::BadRequest,
        ErrorCode::HandshakeRequired,
        ErrorCode::VersionMismatch,
        ErrorCode::Unauthenticated,
        ErrorCode::TooManyConnections,
        ErrorCode::Busy,
        ErrorCode::NotReady,
        ErrorCode::AlreadyProvisioned,
        ErrorCode::ConfigMismatch,
        ErrorCode::KmsDenied,
        ErrorCode::KmsUnavailable,
        ErrorCode::KmsInvalidCiphertext,
        ErrorCode::KmsAnswerRefused,
        ErrorCode::KmsKeyMismatch,
        ErrorCode::SealOpenFailed,
        ErrorCode::PublicKeyMismatch,
        ErrorCode::RoundTripFailed,
        ErrorCode::Attestation,
        ErrorCode::KeyringNotReady,
        ErrorCode::RootDoesNotOpen,
        ErrorCode::WrongKeyringRoot,
        ErrorCode::KeyRowDoesNotOpen,
        ErrorCode::KeyRowDamaged,
        ErrorCode::NotASigningKey,
        ErrorCode::UnsupportedScheme,
        ErrorCode::UnknownTransferKey,
        ErrorCode::TransferDoesNotOpen,
        ErrorCode::InvalidKeyMaterial,
        ErrorCode::KeyNotExportable,
        ErrorCode::DecryptionFailed,
        ErrorCode::CiphertextMalformed,
        ErrorCode::UnsupportedOperation,
        ErrorCode::SignatureRequired,
        ErrorCode::BadRequestSignature,
        ErrorCode::RequestExpired,
        ErrorCode::RequestReplayed,
        ErrorCode::RequestMismatch,
        ErrorCode::NotPermitted,
        ErrorCode::QuorumNotMet,
        ErrorCode::InvalidPolicy,
        ErrorCode::PolicyTampered,
        ErrorCode::PolicyRollback,
        ErrorCode::PolicyVersionConflict,
        ErrorCode::KeyDisabled,
        ErrorCode::KeyPendingDeletion,
        ErrorCode::KeyDeleted,
        ErrorCode::InvalidKeyState,
        ErrorCode::KeyVersionConflict,
        ErrorCode::Internal,
    ];

    /// The stable name, as the HTTP API and `/v1/health` report it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::HandshakeRequired => "handshake_required",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Busy => "busy",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::AlreadyProvisioned => "already_provisioned",
            ErrorCode::ConfigMismatch => "config_mismatch",
            ErrorCode::KmsDenied => "kms_denied",
            ErrorCode::KmsUnavailable => "kms_unavailable",
            ErrorCode::KmsInvalidCiphertext => "kms_invalid_ciphertext",
            ErrorCode::KmsAnswerRefused => "kms_answer_refused",
            ErrorCode::KmsKeyMismatch => "kms_key_mismatch",
            ErrorCode::SealOpenFailed => "seal_open_failed",
            ErrorCode::PublicKeyMismatch => "public_key_mismatch",
            ErrorCode::RoundTripFailed => "round_trip_failed",
            ErrorCode::Attestation => "attestation",
            ErrorCode::KeyringNotReady => "keyring_not_ready",
            ErrorCode::RootDoesNotOpen => "root_does_not_open",
            ErrorCode::WrongKeyringRoot => "wrong_keyring_root",
            ErrorCode::KeyRowDoesNotOpen => "key_row_does_not_open",
            ErrorCode::KeyRowDamaged => "key_row_damaged",
            ErrorCode::NotASigningKey => "not_a_signing_key",
            ErrorCode::UnsupportedScheme => "unsupported_scheme",
            ErrorCode::UnknownTransferKey => "unknown_transfer_key",
            ErrorCode::TransferDoesNotOpen => "transfer_does_not_open",
            ErrorCode::InvalidKeyMaterial => "invalid_key_material",
            ErrorCode::KeyNotExportable => "key_not_exportable",
            ErrorCode::DecryptionFailed => "decryption_failed",
            ErrorCode::CiphertextMalformed => "ciphertext_malformed",
            ErrorCode::UnsupportedOperation => "unsupported_operation",
            ErrorCode::SignatureRequired => "signature_required",
            ErrorCode::BadRequestSignature => "bad_request_signature",
            ErrorCode::RequestExpired => "request_expired",
            ErrorCode::RequestReplayed => "request_replayed",
            ErrorCode::RequestMismatch => "request_mismatch",
            ErrorCode::NotPermitted => "not_permitted",
            ErrorCode::QuorumNotMet => "quorum_not_met",
            ErrorCode::InvalidPolicy => "invalid_policy",
            ErrorCode::PolicyTampered => "policy_tampered",
            ErrorCode::PolicyRollback => "policy_rollback",
            ErrorCode::PolicyVersionConflict => "policy_version_conflict",
            ErrorCode::KeyDisabled => "key_disabled",
            ErrorCode::KeyPendingDeletion => "key_pending_deletion",
            ErrorCode::KeyDeleted => "key_deleted",
            ErrorCode::InvalidKeyState => "invalid_key_state",
            ErrorCode::KeyVersionConflict => "key_version_conflict",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code an HTTP answer carries: [`Self::as_str`], except that an enclave without its
    /// key is `enclave_not_ready`, as the gateway reports an enclave it cannot use yet.
    pub fn api_code(self) -> &'static str {
        match self {
            ErrorCode::NotReady => "enclave_not_ready",
            other => other.as_str(),
        }
    }

    /// The HTTP status of an API answer refused with this code (the gateway's API and the
    /// enclave's TLS API answer alike); a code no client request can cause is 502.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::NotASigningKey
            | ErrorCode::UnsupportedScheme
            | ErrorCode::TransferDoesNotOpen
            | ErrorCode::InvalidKeyMaterial
            | ErrorCode::DecryptionFailed
            | ErrorCode::CiphertextMalformed
            | ErrorCode::UnsupportedOperation
            | ErrorCode::InvalidPolicy
            | ErrorCode::RequestMismatch => 400,
            ErrorCode::SignatureRequired | ErrorCode::BadRequestSignature | ErrorCode::RequestExpired => 401,
            ErrorCode::NotPermitted | ErrorCode::QuorumNotMet => 403,
            ErrorCode::KeyNotExportable
            | ErrorCode::UnknownTransferKey
            | ErrorCode::RequestReplayed
            | ErrorCode::PolicyVersionConflict
            | ErrorCode::KeyDisabled
            | ErrorCode::KeyPendingDeletion
            | ErrorCode::KeyDeleted
            | ErrorCode::InvalidKeyState
            | ErrorCode::KeyVersionConflict => 409,
            ErrorCode::KeyringNotReady | ErrorCode::NotReady | ErrorCode::Busy | ErrorCode::TooManyConnections => 503,
            _ => 502,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_FRAME_LEN, decode, encode, read_frame};

    #[tokio::test]
    async fn sign_reply_round_trips_with_its_id() {
        let frame = ResponseFrame {
            id: 42,
            reply: Reply::Ok(Response::Signature(SignatureReply {
                scheme: Scheme::Bip340,
                signature: [7u8; 64],
                recovery_id: None,
                receipt: None,
            })),
        };
        let bytes = encode(&frame).unwrap();
        let body = read_frame(&mut bytes.as_slice(), MAX_FRAME_LEN).await.unwrap();
        let back: ResponseFrame = decode(&body).unwrap();
        assert_eq!(back.id, 42);
        match back.reply {
            Reply::Ok(Response::Signature(s)) => {
                assert_eq!(s.signature, [7u8; 64]);
                assert_eq!(s.scheme, Scheme::Bip340);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn kind_names_the_variant_without_its_payload() {
        let document = Response::Attestation(vec![0xAB; 16]);
        assert_eq!(document.kind(), "Attestation");
        assert!(format!("{document:?}").contains("171"), "Debug prints the bytes, which is why kind() exists");
        let signature = Response::Signature(SignatureReply {
            scheme: Scheme::Ecdsa,
            signature: [9u8; 64],
            recovery_id: Some(1),
            receipt: None,
        });
        assert_eq!(signature.kind(), "Signature");
    }

    #[test]
    fn error_code_names_are_their_wire_names() {
        for code in ErrorCode::ALL {
            let wire: String = serde_cbor::from_slice(&serde_cbor::to_vec(&code).unwrap()).unwrap();
            assert_eq!(wire, code.as_str());
        }
    }

    #[test]
    fn batch_results_keep_per_item_errors() {
        let frame = ResponseFrame {
            id: 3,
            reply: Reply::Ok(Response::Signatures(vec![
                Err(ErrorReply::new(ErrorCode::BadRequest, "bad item")),
                Ok(SignatureReply { scheme: Scheme::Ecdsa, signature: [1; 64], recovery_id: Some(1), receipt: None }),
            ])),
        };
        let bytes = encode(&frame).unwrap();
        let back: ResponseFrame = decode(&bytes[4..]).unwrap();
        let Reply::Ok(Response::Signatures(items)) = back.reply else { panic!("wrong reply") };
        assert_eq!(items[0].as_ref().unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(items[1].as_ref().unwrap().recovery_id, Some(1));
    }
}

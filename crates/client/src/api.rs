//! The HTTP API's JSON shapes.
//!
//! | method | path | auth | body → answer |
//! |---|---|---|---|
//! | POST | `/v1/sign` | bearer | [`SignRequest`] → [`SignResponse`] |
//! | POST | `/v1/sign-batch` | bearer | [`SignBatchRequest`] → [`SignBatchResponse`] |
//! | GET | `/v1/public-key?enclave_id=` | — | [`PublicKeyResponse`] |
//! | GET | `/v1/attestation?nonce=<hex>&enclave_id=` | — | [`AttestationResponse`] |
//! | GET | `/v1/health` | — | [`HealthResponse`] (200 when every enclave is ready and the database answers, else 503; `?outage=serve`: see the gateway's README) |
//! | POST | `/v1/admin/rotate` | admin bearer | [`RotateRequest`] → [`RotateResponse`] |
//!
//! Errors are [`ErrorResponse`] with a 4xx/5xx status.

use serde::{Deserialize, Serialize};

/// Sign one 32-byte digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// 64 hex characters.
    pub digest_hex: String,
    /// `"ecdsa"` or `"bip340"`.
    pub scheme: String,
    /// Which enclave's key; optional when the gateway serves exactly one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enclave_id: Option<u32>,
}

/// One signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// `"ecdsa"` or `"bip340"`.
    pub scheme: String,
    /// 64 bytes: compact `r || s` (ECDSA, low-S) or the BIP340 signature.
    pub signature_hex: String,
    /// ECDSA recovery id (0-3); absent for BIP340.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<u8>,
}

/// Answer to [`SignRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignResponse {
    pub enclave_id: u32,
    #[serde(flatten)]
    pub signature: Signature,
    /// SEC1 compressed public key (verify ECDSA with this).
    pub public_key_hex: String,
    /// BIP340 x-only public key (verify BIP340 with this).
    pub xonly_public_key_hex: String,
    pub key_epoch: Option<u32>,
    /// The audit record of a signed request (when the enclave has owners): keep it to check
    /// the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<crate::keys::AuditReceiptInfo>,
}

/// Sign several digests with one round trip to the enclave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignBatchRequest {
    /// 1 to 1000 items.
    pub items: Vec<SignItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enclave_id: Option<u32>,
}

/// One digest of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignItem {
    pub digest_hex: String,
    pub scheme: String,
}

/// Answer to [`SignBatchRequest`]: one result per item, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignBatchResponse {
    pub enclave_id: u32,
    pub public_key_hex: String,
    pub xonly_public_key_hex: String,
    pub results: Vec<BatchResult>,
    /// A signed batch's one audit record (when the enclave has owners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<crate::keys::AuditReceiptInfo>,
}

/// A batch item's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchResult {
    /// Signed.
    Ok(Signature),
    /// This item failed; the others are unaffected.
    Err {
        /// Why.
        error: ErrorBody,
    },
}

/// The master public key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicKeyResponse {
    pub enclave_id: u32,
    pub public_key_hex: String,
    pub xonly_public_key_hex: String,
    pub key_epoch: Option<u32>,
}

/// A fresh attestation document from the enclave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestationResponse {
    pub enclave_id: u32,
    /// Raw COSE_Sign1 bytes, base64 (standard alphabet, padded).
    pub document_b64: String,
    /// The master public key the document's `user_data` carries.
    pub public_key_hex: String,
    /// The nonce that was asked for.
    pub nonce_hex: String,
}

/// `/v1/attestation` on the enclave's TLS listener: a document whose `user_data` binds the
/// certificate this connection was served with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TlsAttestationResponse {
    /// Raw COSE_Sign1 bytes, base64 (standard alphabet, padded). Its `user_data` is
    /// `keyward-tls-spki-sha256:` and the 32-byte SHA-256 of the certificate's
    /// SubjectPublicKeyInfo.
    pub document_b64: String,
    /// The enclave's TLS certificate, DER, base64.
    pub certificate_b64: String,
    /// The SHA-256 of the certificate's SubjectPublicKeyInfo, hex: the pin.
    pub spki_sha256_hex: String,
    /// The nonce that was asked for.
    pub nonce_hex: String,
}

/// `/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `"ok"`; `"database_outage"` while the database cannot be reached and the keys in use are
    /// still served (PostgreSQL's outage grace; 503, or 200 with `?outage=serve`); else
    /// `"degraded"` (503).
    pub status: String,
    /// `"ok"`, or a code such as `database_read_only` or `database_file_gone` (the details
    /// are in the gateway's log).
    pub database: String,
    pub enclaves: Vec<EnclaveHealth>,
}

/// One enclave in `/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnclaveHealth {
    pub enclave_id: u32,
    /// `connecting`, `provisioning`, `unsealing`, `ready`, `failed` or `refused`.
    pub state: String,
    /// Why it is not ready: a stable code such as `kms_denied`, `seal_open_failed`,
    /// `attestation_rejected` or `database_lost_its_row` (the details are in the gateway's log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_hex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_epoch: Option<u32>,
    pub since_unix: u64,
    /// The keyring in this enclave.
    pub keyring: KeyringHealth,
    /// The Ed25519 key that signs the enclave's audit chain, hex (when it has owners), as the
    /// enclave reported it to the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_public_key_hex: Option<String>,
}

/// One enclave's keyring in `/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyringHealth {
    /// `connecting`, `ready` or `failed`.
    pub state: String,
    /// Why it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The keyring root's id, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_id: Option<String>,
    /// Its data-key epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_epoch: Option<u32>,
}

/// Data-key rotation (admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enclave_id: Option<u32>,
}

/// Answer to [`RotateRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotateResponse {
    pub enclave_id: u32,
    pub public_key_hex: String,
    pub previous_key_epoch: u32,
    pub key_epoch: u32,
}

/// Every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// What failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `bad_request`, `unauthorized`, `enclave_not_ready`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

//! The enclave's audit log as the gateway exports it (`GET /v1/admin/audit`, one JSON object
//! per line), and its verification against the audit public key and the receipts a client kept.

use serde::{Deserialize, Serialize};

/// One signed audit record; byte fields are hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditLine {
    pub seq: u64,
    /// Unix seconds, the enclave's clock.
    pub time: u64,
    /// The principal's id (32 hex digits); absent when the request carried no valid signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    pub operation: String,
    pub keystore: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// `ok`, or the refusal's code.
    pub outcome: String,
    pub request_digest: String,
    pub prev_hash: String,
    pub hash: String,
    pub signature: String,
}

/// `GET /v1/admin/audit`: records after `after`, oldest first, at most 1,000.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The chain's audit key: the one the enclave reported when it connected, unless the
    /// request named an older chain.
    pub audit_public_key_hex: String,
    pub records: Vec<AuditLine>,
}

/// One stored audit chain (`GET /v1/admin/audit/chains`): an enclave's chain from one start,
/// under its own audit key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditChainInfo {
    pub audit_public_key_hex: String,
    pub enclave_id: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    /// When its first record was stored (Unix seconds).
    pub first_stored_at: i64,
    /// Whether it is the chain the enclave signs now.
    pub current: bool,
}

/// `GET /v1/admin/audit/chains`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditChains {
    pub chains: Vec<AuditChainInfo>,
}

#[cfg(feature = "http")]
mod verify {
    use keyward_authz::{AuditEntry, PrincipalId, Receipt, SignedRecord};

    use super::AuditLine;
    use crate::keys::AuditReceiptInfo;

    /// Why a log could not be checked, or where it goes wrong: a stable code, the record it
    /// concerns, and an explanation.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
    pub struct AuditFinding {
        pub code: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub seq: Option<u64>,
        pub message: String,
    }

    fn bytes<const N: usize>(seq: u64, field: &str, text: &str) -> Result<[u8; N], AuditFinding> {
        let mut out = [0u8; N];
        hex::decode_to_slice(text, &mut out).map_err(|_| AuditFinding {
            code: "malformed_record",
            seq: Some(seq),
            message: format!("record {seq}: {field} is not {} hex digits", N * 2),
        })?;
        Ok(out)
    }

    impl AuditLine {
        /// The record as `keyward-authz` checks it.
        pub fn to_record(&self) -> Result<SignedRecord, AuditFinding> {
            let seq = self.seq;
            let principal = match &self.principal {
                Some(text) => Some(PrincipalId(bytes::<16>(seq, "principal", text)?)),
                None => None,
            };
            let signature = hex::decode(&self.signature).map_err(|_| AuditFinding {
                code: "malformed_record",
                seq: Some(seq),
                message: format!("record {seq}: signature is not hex"),
            })?;
            Ok(SignedRecord {
                seq,
                entry: AuditEntry {
                    time: self.time,
                    principal,
                    operation: self.operation.clone(),
                    keystore: self.keystore.clone(),
                    key: self.key.clone(),
                    version: self.version,
                    outcome: self.outcome.clone(),
                    request_digest: bytes(seq, "request_digest", &self.request_digest)?,
                },
                prev_hash: bytes(seq, "prev_hash", &self.prev_hash)?,
                hash: bytes(seq, "hash", &self.hash)?,
                signature,
            })
        }
    }

    /// Checks a whole exported log (from record 1) against the audit public key (32 bytes,
    /// Ed25519) and the receipts kept; returns the last record's receipt.
    pub fn verify_audit_log(
        public_key: &[u8],
        lines: &[AuditLine],
        receipts: &[AuditReceiptInfo],
    ) -> Result<AuditReceiptInfo, AuditFinding> {
        let records = lines.iter().map(AuditLine::to_record).collect::<Result<Vec<_>, _>>()?;
        let receipts: Vec<Receipt> = receipts.iter().map(|r| Receipt { seq: r.seq, hash: r.hash }).collect();
        keyward_authz::verify_log(public_key, &records, &receipts)
            .map(|head| AuditReceiptInfo { seq: head.seq, hash: head.hash })
            .map_err(|e| {
                use keyward_authz::AuditError::*;
                let seq = match e {
                    Edited { seq } | Forged { seq } | ChainBroken { seq } | Truncated { seq, .. } => seq,
                    ReceiptMismatch { seq } => seq,
                    OutOfSequence { found, .. } => found,
                };
                AuditFinding { code: e.code(), seq: Some(seq), message: e.to_string() }
            })
    }
}

#[cfg(feature = "http")]
pub use verify::{AuditFinding, verify_audit_log};

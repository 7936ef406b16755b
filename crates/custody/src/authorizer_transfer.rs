//! Signed imports and exports. Both move key material across the enclave's boundary (sealed
//! with HPKE), so the owners' policy gives them to the quorum. The enclave compares the signed
//! body with the typed request: an export goes only to the recipient key the principals signed
//! for, and an import brings in only the sealed material, type and exportability they signed.

use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_authz::Operation;
use keyward_client::keys::{ExportKey, ImportKey};
use keyward_proto::{AuditReceipt, ErrorCode, ErrorReply, KeyExport, KeyImport};

use super::{Authorizer, Subject, refuse};
use crate::policies::Tagger;

const MISMATCH: &str = "the request the enclave received is not the one the principals signed";

impl Authorizer {
    /// Checks an export: the signed body (`POST /v1/keys/{name}/export`'s) names the recipient
    /// key and, optionally, the version.
    pub fn authorize_export(&self, request: &KeyExport, now: u64, tag: Tagger<'_>) -> Result<AuditReceipt, ErrorReply> {
        let identity = &request.row.identity;
        let subject = Subject::key(Operation::Export, &identity.name, Some(identity.version.get()));
        self.authorize(&subject, request.auth.as_deref(), now, tag, |auth, _| {
            let body: ExportKey = serde_json::from_slice(&auth.body)
                .map_err(|e| refuse(ErrorCode::RequestMismatch, format!("the signed body is not an export: {e}")))?;
            let recipient = hex::decode(&body.public_key_hex).unwrap_or_default();
            let same =
                recipient == request.recipient_public_key && body.version.is_none_or(|v| v == identity.version.get());
            if same { Ok(()) } else { Err(refuse(ErrorCode::RequestMismatch, MISMATCH)) }
        })
    }

    /// Checks an import: the key name is the signed request's, and the type, exportability,
    /// transfer key and sealed bytes are the signed body's (`POST /v1/keys/{name}/import`).
    pub fn authorize_import(&self, request: &KeyImport, now: u64, tag: Tagger<'_>) -> Result<AuditReceipt, ErrorReply> {
        let identity = &request.identity;
        let subject = Subject::key(Operation::Import, &identity.name, Some(identity.version.get()));
        self.authorize(&subject, request.auth.as_deref(), now, tag, |auth, _| {
            let body: ImportKey = serde_json::from_slice(&auth.body)
                .map_err(|e| refuse(ErrorCode::RequestMismatch, format!("the signed body is not an import: {e}")))?;
            let decoded = |v: &str| STANDARD.decode(v).unwrap_or_default();
            let same = body.key_type == identity.key_type.as_str()
                && body.exportable == identity.flags.exportable
                && hex::decode(&body.transfer_public_key_hex).unwrap_or_default() == request.transfer_public_key
                && decoded(&body.encapsulated_key_b64) == request.sealed.encapsulated_key
                && decoded(&body.ciphertext_b64) == request.sealed.ciphertext;
            if same { Ok(()) } else { Err(refuse(ErrorCode::RequestMismatch, MISMATCH)) }
        })
    }
}

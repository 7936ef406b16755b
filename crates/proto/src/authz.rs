//! Authorization as it crosses the link: a principal's signature over a request (checked by
//! the enclave, never by the gateway) and the audit receipt the enclave answers with.

use serde::{Deserialize, Serialize};

/// A principal's key and its signature over the canonical request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalSignature {
    /// `p256` (SEC1 key, DER ECDSA over SHA-256) or `ed25519`.
    pub algorithm: String,
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// What a client sent to authorize one key operation: the request body as it signed it, the
/// fields of the canonical encoding that are not in the body, and its signatures. The body
/// may hold a plaintext (an encryption request), so `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// The keystore the request addresses (`default` for `/v1/keys/…`).
    pub keystore: String,
    /// The HTTP body as the client sent and signed it; the enclave parses it itself.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Random, per request.
    pub request_id: [u8; 16],
    /// Unix seconds, as the client signed it.
    pub timestamp: u64,
    /// The principal making the request.
    pub requester: PrincipalSignature,
    /// Other principals approving the same request (M-of-N rules).
    pub approvals: Vec<PrincipalSignature>,
    /// The latest policy row the gateway's database holds for the key addressed (its tag is
    /// checked by the enclave; none when the key has no policy of its own).
    #[serde(default)]
    pub policy: Option<PolicyRow>,
    /// The latest policy row the gateway's database holds for the keystore itself (the row
    /// whose key name is empty): grants on every key of the keystore, creation included.
    #[serde(default)]
    pub keystore_policy: Option<PolicyRow>,
    /// The requester as the enclave itself authenticated it on the request's channel (a
    /// client certificate on its TLS API), in place of a signature. Never on the wire: the
    /// link's decoder always leaves it empty, so only code inside the enclave can set it.
    #[serde(skip)]
    pub channel: Option<ChannelPrincipal>,
}

/// A principal whose key the enclave's TLS handshake proved (see [`Authorization::channel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPrincipal {
    /// `p256` or `ed25519`.
    pub algorithm: String,
    /// The key, as a principal names it (SEC1 for P-256).
    pub public_key: Vec<u8>,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("keystore", &self.keystore)
            .field("body_len", &self.body.len())
            .field("timestamp", &self.timestamp)
            .field("requester", &self.requester)
            .field("approvals", &self.approvals.len())
            .field("policy", &self.policy)
            .field("keystore_policy", &self.keystore_policy)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_never_shows_the_signed_body() {
        let auth = super::Authorization {
            keystore: "default".into(),
            body: br#"{"plaintext_b64":"c2VjcmV0LXNhbGFyeQ=="}"#.to_vec(),
            request_id: [1; 16],
            timestamp: 7,
            requester: super::PrincipalSignature { algorithm: "ed25519".into(), public_key: vec![], signature: vec![] },
            approvals: vec![],
            policy: None,
            keystore_policy: None,
            channel: None,
        };
        let shown = format!("{auth:?}");
        assert!(!shown.contains("c2VjcmV0") && !shown.contains("plaintext") && shown.contains("body_len"), "{shown}");
    }

    /// What makes a channel principal trustworthy: it cannot come over the link. A request
    /// encoded with one (as a host would send it) arrives without it.
    #[test]
    fn a_channel_principal_never_crosses_the_link() {
        let auth = super::Authorization {
            keystore: "default".into(),
            body: b"{}".to_vec(),
            request_id: [1; 16],
            timestamp: 7,
            requester: super::PrincipalSignature {
                algorithm: "p256".into(),
                public_key: vec![4; 65],
                signature: vec![],
            },
            approvals: vec![],
            policy: None,
            keystore_policy: None,
            channel: Some(super::ChannelPrincipal { algorithm: "p256".into(), public_key: vec![4; 65] }),
        };
        let back: super::Authorization = crate::decode(&crate::encode(&auth).unwrap()[4..]).unwrap();
        assert_eq!(back.channel, None);
        assert_eq!(back.requester, auth.requester);
    }
}

/// A key's policy (or, with an empty `key`, a keystore's) as the database keeps it: the
/// document its owners signed, and the tag an enclave made over it under a key derived from the
/// keyring root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRow {
    pub keystore: String,
    pub key: String,
    pub version: u64,
    /// The policy document (JSON), exactly as signed.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub tag: [u8; 32],
}

/// A policy row to check (`Request::PolicyCheck`): `row` is what the host's store holds for
/// `keystore`/`key` (none: it says there is none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCheck {
    pub keystore: String,
    pub key: String,
    pub row: Option<PolicyRow>,
}

/// Set a key's policy (an empty `key`: the keystore's): the signed request's body is the new
/// policy document, whose version follows the current one's (1 when there is none). Answered
/// with `PolicySealed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySet {
    pub keystore: String,
    pub key: String,
    /// The signed request; its `policy` is the key's current row, its `keystore_policy` the
    /// keystore's.
    pub auth: Option<Authorization>,
}

/// A change of a key's state, as a new version of the key's policy row (the rules kept, the
/// state changed): the enclave checks the signed request (operation `disable` for disable and
/// enable, `delete` for scheduling and cancelling a deletion) and the transition against the
/// state of the current row. Answered with `PolicySealed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStateSet {
    pub keystore: String,
    pub key: String,
    pub change: KeyStateChange,
    /// The signed request; its `policy` is the key's current row, its `keystore_policy` the
    /// keystore's.
    pub auth: Option<Authorization>,
}

/// What a [`KeyStateSet`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStateChange {
    /// Enabled → disabled.
    Disable,
    /// Disabled → enabled.
    Enable,
    /// Enabled or disabled → pending deletion, due this many seconds after the enclave's now.
    ScheduleDeletion { waiting_seconds: u64 },
    /// Pending deletion (not yet due) → disabled.
    CancelDeletion,
}

/// The new policy row to store, and the audit receipt of the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySealed {
    pub row: PolicyRow,
    pub receipt: AuditReceipt,
}

/// The audit record an answer produced: its place in the chain and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReceipt {
    pub seq: u64,
    pub hash: [u8; 32],
}

/// What the enclave's owners are (in `Hello`'s `EnclaveInfo`, from its measured settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationInfo {
    /// The owners' principal ids, hex.
    pub owners: Vec<String>,
    /// How many owners approve administrative operations together.
    pub quorum: u8,
    /// The Ed25519 key that signs this enclave's audit chain.
    #[serde(with = "serde_bytes")]
    pub audit_public_key: Vec<u8>,
}

/// Audit records after `after`, at most `max` (`AuditRecords`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRead {
    pub after: u64,
    pub max: u32,
}

/// One signed audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub time: u64,
    pub principal: Option<[u8; 16]>,
    pub operation: String,
    pub keystore: String,
    pub key: String,
    pub version: Option<u32>,
    pub outcome: String,
    pub request_digest: [u8; 32],
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

//! Authorization inside the enclave: the owners pinned in the enclave's measured settings, the
//! checks every signed key operation passes before a key is touched, and the audit chain every
//! decision is appended to.
//!
//! The gateway forwards what the client sent (the body it signed, its signatures); the enclave
//! verifies the signatures over the canonical request it rebuilds itself, parses the body
//! itself and refuses a typed request that differs from it, checks the time window, evaluates
//! the policy and only then signs. Every outcome, refusals included, becomes an audit record.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::signature::Ed25519KeyPair;
use keyward_authz::{
    AuditChain, AuditEntry, Decision, DenyReason, KeyState, Operation, Policy, Principal, PrincipalId, PrincipalKey,
    ReplayError, ReplayGuard, RequestToSign, Rule, SignedRecord,
};
use keyward_client::keys::SignWithKey;
use keyward_keyring::parse_sign_fields;
use keyward_proto::{
    AuditReceipt, Authorization, CryptOutput, ErrorCode, ErrorReply, KeyCrypt, KeyName, KeySign, KeystoreId, PolicyRow,
    PolicySealed, PolicySet, PrincipalSignature, Scheme, SignRequest,
};

use crate::policies::{Current, PolicyBook, Tagger};

/// Signed requests are accepted this long either side of their timestamp (seconds).
pub const REQUEST_WINDOW: u64 = 300;
/// Audit records the enclave keeps for the gateway to fetch.
pub const AUDIT_RETAINED: usize = 100_000;
pub use keyward_proto::{DEFAULT_KEYSTORE, MASTER_KEYSTORE};

/// The owners of a deployment: principals and how many of them must approve administrative
/// operations together.
#[derive(Debug, Clone)]
pub struct Owners {
    pub principals: Vec<Principal>,
    pub quorum: u8,
}

impl Owners {
    /// Parses `ed25519:<64 hex>` or `p256:<SEC1 hex>`.
    pub fn parse_principal(text: &str) -> Result<Principal, String> {
        PrincipalKey::parse(text).map(Principal::new)
    }

    /// The policy the owners hold: each may use keys, create them and add versions alone;
    /// operations that remove, release or import keys, and policy changes, take the quorum.
    fn policy(&self) -> Result<Policy, String> {
        let ids: std::collections::BTreeSet<PrincipalId> = self.principals.iter().map(Principal::id).collect();
        if ids.is_empty() {
            return Err("authorization needs at least one owner".into());
        }
        if self.quorum == 0 || usize::from(self.quorum) > ids.len() {
            return Err(format!("an owner quorum of {} cannot be met by {} distinct owners", self.quorum, ids.len()));
        }
        use Operation::*;
        let rule = |operations: &[Operation], quorum| Rule {
            key_prefix: None,
            principals: ids.clone(),
            operations: operations.iter().copied().collect(),
            quorum,
        };
        Ok(Policy {
            version: 1,
            rules: vec![
                rule(&[Sign, Verify, Encrypt, Decrypt, DataKey, Agree, Create, Rotate], 1),
                rule(&[Import, Export, Disable, Enable, Delete, SetPolicy], self.quorum),
            ],
            state: keyward_authz::KeyState::Enabled,
        })
    }
}

struct AuditLog {
    chain: AuditChain,
    recent: VecDeque<SignedRecord>,
}

/// The enclave's authorizer (present only when the enclave has owners).
pub struct Authorizer {
    owners: Owners,
    policy: Policy,
    replay: Mutex<ReplayGuard>,
    audit: Mutex<AuditLog>,
    audit_public_key: Vec<u8>,
    policies: PolicyBook,
    streams: stream::Streams,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("owners", &self.owner_ids())
            .field("quorum", &self.owners.quorum)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(code, message)
}

/// Unix seconds now, by the enclave's clock.
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Authorizer {
    /// An authorizer for `owners`, with a new audit chain signed by `audit_key`.
    pub fn new(owners: Owners, audit_key: Ed25519KeyPair) -> Result<Self, String> {
        let policy = owners.policy()?;
        let chain = AuditChain::new(audit_key);
        let audit_public_key = chain.public_key();
        Ok(Authorizer {
            owners,
            policy,
            replay: Mutex::new(ReplayGuard::new(REQUEST_WINDOW)),
            audit: Mutex::new(AuditLog { chain, recent: VecDeque::new() }),
            audit_public_key,
            policies: PolicyBook::default(),
            streams: stream::Streams::new()?,
        })
    }

    /// An authorizer whose audit key is made from `random` (the NSM's, in the enclave); the
    /// key never leaves this process.
    pub fn with_new_audit_key(owners: Owners, random: &dyn crate::Randomness) -> Result<Self, String> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        random.fill(seed.as_mut()).map_err(|e| format!("no randomness for the audit key: {e}"))?;
        let key =
            Ed25519KeyPair::from_seed_unchecked(seed.as_ref()).map_err(|_| "the audit key was refused".to_owned())?;
        Self::new(owners, key)
    }

    /// What `Hello` tells about authorization.
    pub fn info(&self) -> keyward_proto::AuthorizationInfo {
        keyward_proto::AuthorizationInfo {
            owners: self.owner_ids(),
            quorum: self.owners.quorum,
            audit_public_key: self.audit_public_key.clone(),
        }
    }

    /// The owners' principal ids, hex.
    pub fn owner_ids(&self) -> Vec<String> {
        self.owners.principals.iter().map(|p| p.id().to_string()).collect()
    }

    pub fn quorum(&self) -> u8 {
        self.owners.quorum
    }

    /// The audit chain's public key (Ed25519).
    pub fn audit_public_key(&self) -> &[u8] {
        &self.audit_public_key
    }

    /// Records after `after` (oldest first, at most `max`), from those still retained.
    pub fn audit_records(&self, after: u64, max: usize) -> Vec<SignedRecord> {
        let log = lock(&self.audit);
        log.recent.iter().filter(|r| r.seq > after).take(max).cloned().collect()
    }

    /// Checks a signing request and appends the decision to the audit chain. `Ok` carries the
    /// receipt of the record; a refusal is recorded as well.
    pub fn authorize_sign(&self, request: &KeySign, now: u64, tag: Tagger<'_>) -> Result<AuditReceipt, ErrorReply> {
        let identity = &request.row.identity;
        let subject = Subject::key(Operation::Sign, &identity.name, Some(identity.version.get()));
        self.authorize(&subject, request.auth.as_ref(), now, tag, |auth, _| body_matches(auth, request))
    }

    /// Checks a signing request for the master key of enclave `enclave_id` (keystore
    /// [`MASTER_KEYSTORE`], the empty key name; the signed body is `/v1/sign`'s).
    pub fn authorize_master_sign(
        &self,
        request: &SignRequest,
        enclave_id: Option<u32>,
        now: u64,
    ) -> Result<AuditReceipt, ErrorReply> {
        let subject = Subject::master();
        let no_policies = |_: &PolicyRow| Err(refuse(ErrorCode::PolicyTampered, "master keys have no stored policies"));
        self.authorize(&subject, request.auth.as_deref(), now, &no_policies, |auth, _| {
            master_body_matches(auth, request, enclave_id)
        })
    }

    /// The ticket of a signed stream whose begin (`BeginSeal`, `BeginOpen`) was authorized,
    /// from the keyring's answer to it.
    pub fn stream_ticket(&self, request: &KeyCrypt, output: CryptOutput, now: u64) -> Result<CryptOutput, ErrorReply> {
        self.streams.issue(request, output, now)
    }

    /// Whether a stream segment may be sealed or opened (its ticket; sealing, its order and,
    /// for the last, the plaintext's digest).
    /// Whether `check.row` is the policy of its key or keystore this enclave would act on: tagged
    /// under the keyring, of that key, not older than one seen (nor withheld when one was).
    pub fn check_policy(&self, check: &keyward_proto::PolicyCheck, tag: Tagger<'_>) -> Result<(), ErrorReply> {
        self.policies.current(&check.keystore, &check.key, check.row.as_ref(), tag).map(drop)
    }

    pub fn check_segment(&self, request: &KeyCrypt, now: u64) -> Result<(), ErrorReply> {
        // A key disabled or deleted (on this enclave, the only one its ticket works on) since
        // its stream began stops the stream too.
        let name = &request.row.identity.name;
        if let Some(policy) = self.policies.seen(name.keystore(), name.local())
            && let Some(e) = state::unusable(policy.state, name.as_str(), now)
        {
            return Err(e);
        }
        self.streams.check_segment(request, now)
    }

    /// Checks a new policy for a key, or with an empty key name for the keystore (the signed
    /// body is the policy document) and, when it is allowed, seals it under the root: the row
    /// for the gateway to store.
    pub fn authorize_set_policy(
        &self,
        request: &PolicySet,
        now: u64,
        tag: Tagger<'_>,
    ) -> Result<PolicySealed, ErrorReply> {
        let subject = Subject::named(Operation::SetPolicy, &request.keystore, &request.key)?;
        let mut sealed = None;
        let receipt = self.authorize(&subject, request.auth.as_ref(), now, tag, |auth, current| {
            let policy = Policy::from_json(&auth.body).map_err(|e| refuse(ErrorCode::InvalidPolicy, e.to_string()))?;
            let expected = current.map_or(1, |c| c.version + 1);
            if policy.state != current.map_or(KeyState::Enabled, |c| c.policy.state) {
                return Err(refuse(
                    ErrorCode::InvalidPolicy,
                    "a policy keeps the key's state: it changes only with disable, enable and delete",
                ));
            }
            if policy.version != expected {
                return Err(refuse(
                    ErrorCode::PolicyVersionConflict,
                    format!(
                        "the new policy is version {}; the next version of {} is {expected}",
                        policy.version,
                        crate::policies::describe(&request.keystore, &request.key)
                    ),
                ));
            }
            let mut row = PolicyRow {
                keystore: request.keystore.clone(),
                key: request.key.clone(),
                version: policy.version,
                body: auth.body.clone(),
                tag: [0; 32],
            };
            row.tag = tag(&row)?;
            sealed = Some((row, policy));
            Ok(())
        })?;
        let (row, policy) = sealed.ok_or_else(|| refuse(ErrorCode::Internal, "an allowed policy was not sealed"))?;
        self.policies.sealed(&row, policy);
        Ok(PolicySealed { row, receipt })
    }

    fn authorize(
        &self,
        subject: &Subject,
        auth: Option<&Authorization>,
        now: u64,
        tag: Tagger<'_>,
        body_matches: impl FnOnce(&Authorization, Option<&Current>) -> Result<(), ErrorReply>,
    ) -> Result<AuditReceipt, ErrorReply> {
        let (principal, digest, outcome) = match self.check(subject, auth, now, tag, body_matches) {
            Ok((principal, digest)) => (Some(principal), digest, Ok(())),
            Err((principal, digest, e)) => (principal, digest, Err(e)),
        };
        let entry = AuditEntry {
            time: now,
            principal,
            operation: subject.operation.as_str().to_owned(),
            keystore: subject.keystore.clone(),
            key: subject.key.clone(),
            version: subject.version,
            outcome: outcome.as_ref().map_or_else(|e| e.code.as_str(), |()| "ok").to_owned(),
            request_digest: digest,
        };
        let receipt = self.append(entry);
        outcome.map(|()| receipt)
    }

    fn append(&self, entry: AuditEntry) -> AuditReceipt {
        let mut log = lock(&self.audit);
        let (record, receipt) = log.chain.append(entry);
        if log.recent.len() == AUDIT_RETAINED {
            log.recent.pop_front();
        }
        log.recent.push_back(record);
        AuditReceipt { seq: receipt.seq, hash: receipt.hash }
    }

    #[allow(clippy::type_complexity)]
    fn check(
        &self,
        subject: &Subject,
        auth: Option<&Authorization>,
        now: u64,
        tag: Tagger<'_>,
        body_matches: impl FnOnce(&Authorization, Option<&Current>) -> Result<(), ErrorReply>,
    ) -> Result<(PrincipalId, [u8; 32]), (Option<PrincipalId>, [u8; 32], ErrorReply)> {
        let no_digest = [0u8; 32];
        let Some(auth) = auth else {
            return Err((
                None,
                no_digest,
                refuse(
                    ErrorCode::SignatureRequired,
                    "authorization is on: a key operation needs a principal's signature",
                ),
            ));
        };
        let to_sign = RequestToSign {
            operation: subject.operation,
            keystore: auth.keystore.clone(),
            key: subject.key.clone(),
            body_digest: RequestToSign::digest(&auth.body),
            request_id: auth.request_id,
            timestamp: auth.timestamp,
        };
        let canonical =
            to_sign.canonical().map_err(|e| (None, no_digest, refuse(ErrorCode::BadRequest, e.to_string())))?;
        let digest = RequestToSign::digest(&canonical);
        let fail = |principal, code, message: String| Err((principal, digest, refuse(code, message)));
        // A principal this enclave authenticated on the request's channel (its TLS API's
        // client certificate) needs no signature; one can only be set inside the enclave.
        let requester = match &auth.channel {
            Some(channel) => match PrincipalKey::from_parts(&channel.algorithm, &channel.public_key) {
                Ok(key) => Principal::new(key),
                Err(e) => return fail(None, ErrorCode::BadRequestSignature, format!("the channel's principal: {e}")),
            },
            None => match verified(&auth.requester, &canonical) {
                Ok(p) => p,
                Err(message) => {
                    return fail(None, ErrorCode::BadRequestSignature, format!("the requester's {message}"));
                }
            },
        };
        let id = requester.id();
        let mut approvers = Vec::with_capacity(auth.approvals.len());
        for (i, approval) in auth.approvals.iter().enumerate() {
            match verified(approval, &canonical) {
                Ok(p) => approvers.push(p.id()),
                Err(message) => {
                    return fail(Some(id), ErrorCode::BadRequestSignature, format!("approval {i}: {message}"));
                }
            }
        }
        if let Err(e) = lock(&self.replay).check_time(auth.timestamp, now) {
            return fail(Some(id), ErrorCode::RequestExpired, e.to_string());
        }
        if auth.keystore != subject.keystore {
            return fail(
                Some(id),
                ErrorCode::NotPermitted,
                format!("keystore {:?} is not the one this request addresses", auth.keystore),
            );
        }
        // The keystore's own policy (the row with an empty key name), and the key's when the
        // request names one key; a request about the keystore as a whole (a batch creation, a
        // keystore policy) has only the first.
        let keystore_policy = self.policies.current(&subject.keystore, "", auth.keystore_policy.as_ref(), tag);
        let keystore_current = keystore_policy.map_err(|e| (Some(id), digest, e))?;
        let key_current = match subject.key.as_str() {
            "" => None,
            key => self
                .policies
                .current(&subject.keystore, key, auth.policy.as_ref(), tag)
                .map_err(|e| (Some(id), digest, e))?,
        };
        let own = if subject.key.is_empty() { keystore_current.as_ref() } else { key_current.as_ref() };
        if let Err(e) = body_matches(auth, own) {
            return Err((Some(id), digest, e));
        }
        let stored = [&key_current, &keystore_current]
            .into_iter()
            .flatten()
            .map(|c| c.policy.evaluate_on(&subject.key, subject.operation, id, &approvers));
        match combine(self.policy.evaluate(subject.operation, id, &approvers), stored) {
            Decision::Allow => {
                // A key its own policy row disables (or deletes) is not used, whoever asks.
                if KeyState::uses_key(subject.operation)
                    && let Some(e) =
                        key_current.as_ref().and_then(|c| state::unusable(c.policy.state, &subject.key, now))
                {
                    return Err((Some(id), digest, e));
                }
                if subject.operation.refuses_replay()
                    && let Err(e) = lock(&self.replay).accept(auth.request_id, auth.timestamp, now)
                {
                    let code = match e {
                        ReplayError::Replayed => ErrorCode::RequestReplayed,
                        _ => ErrorCode::RequestExpired,
                    };
                    return fail(Some(id), code, e.to_string());
                }
                Ok((id, digest))
            }
            Decision::Deny(reason) => {
                let code = match reason {
                    DenyReason::NotPermitted => ErrorCode::NotPermitted,
                    DenyReason::QuorumNotMet { .. } => ErrorCode::QuorumNotMet,
                    DenyReason::InvalidRule => ErrorCode::Internal,
                };
                let message = match reason {
                    DenyReason::QuorumNotMet { have, need } => {
                        format!("{have} of the {need} approvals the policy needs for {}", subject.describe())
                    }
                    _ => format!("principal {id} may not {}", subject.describe()),
                };
                fail(Some(id), code, message)
            }
        }
    }
}

/// The owners' decision joined with the stored policies' (the key's, the keystore's): any may
/// allow; a denial reports the closest miss (a quorum short rather than no grant at all),
/// preferring the owners' and then the key's.
fn combine(owners: Decision, stored: impl IntoIterator<Item = Decision>) -> Decision {
    let mut best = owners;
    for decision in stored {
        match (&best, decision) {
            (Decision::Allow, _) | (_, Decision::Allow) => return Decision::Allow,
            (Decision::Deny(DenyReason::NotPermitted), other) => best = other,
            _ => {}
        }
    }
    best
}

/// What a request addresses, as the enclave sees it (never as the gateway says): the keystore
/// comes from the key's own name, which its wrapped row binds.
struct Subject {
    operation: Operation,
    keystore: String,
    /// The name within the keystore; empty for the keystore as a whole (and the master keys).
    key: String,
    version: Option<u32>,
}

impl Subject {
    /// A request about key `name` (its keystore and its name within it).
    fn key(operation: Operation, name: &KeyName, version: Option<u32>) -> Self {
        Subject { operation, keystore: name.keystore().to_owned(), key: name.local().to_owned(), version }
    }

    /// A request about keystore `keystore` as a whole.
    fn keystore(operation: Operation, keystore: &str) -> Self {
        Subject { operation, keystore: keystore.to_owned(), key: String::new(), version: None }
    }

    /// A request for the master keys (`/v1/sign`).
    fn master() -> Self {
        Self::keystore(Operation::Sign, MASTER_KEYSTORE)
    }

    /// A request naming a keystore and a key in it (empty: the keystore) as the gateway sent
    /// them, checked: a named key must be a key name, the keystore an id (never `master`).
    fn named(operation: Operation, keystore: &str, key: &str) -> Result<Self, ErrorReply> {
        let keystore = KeystoreId::parse(keystore).map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
        if key.is_empty() {
            return Ok(Self::keystore(operation, keystore.as_str()));
        }
        let name = KeyName::qualified(&keystore, key).map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
        Ok(Self::key(operation, &name, None))
    }

    fn describe(&self) -> String {
        let operation = self.operation.as_str();
        match (self.keystore.as_str(), self.key.as_str()) {
            (MASTER_KEYSTORE, _) => format!("{operation} with the master key"),
            (keystore, "") => format!("{operation} in keystore {keystore}"),
            (DEFAULT_KEYSTORE, key) => format!("{operation} with {key}"),
            (keystore, key) => format!("{operation} with {keystore}/{key}"),
        }
    }
}

/// Whether the master-key request is the one the body (`/v1/sign`'s) asks for.
fn master_body_matches(auth: &Authorization, request: &SignRequest, enclave_id: Option<u32>) -> Result<(), ErrorReply> {
    master_body_check(auth, request, enclave_id).map_err(|m| refuse(ErrorCode::RequestMismatch, m))
}

fn master_body_check(auth: &Authorization, request: &SignRequest, enclave_id: Option<u32>) -> Result<(), String> {
    let body: keyward_client::api::SignRequest =
        serde_json::from_slice(&auth.body).map_err(|e| format!("the signed body is not a signing request: {e}"))?;
    if body.enclave_id.is_some_and(|id| Some(id) != enclave_id) {
        return Err("the signed body names another enclave".into());
    }
    master_item_check(&body.digest_hex, &body.scheme, request)
}

/// Whether `request` signs the digest and scheme the principal signed for.
fn master_item_check(digest_hex: &str, scheme: &str, request: &SignRequest) -> Result<(), String> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(digest_hex, &mut digest).map_err(|_| "the signed body's digest_hex is not 64 hex digits")?;
    let scheme = match scheme {
        "ecdsa" => Scheme::Ecdsa,
        "bip340" => Scheme::Bip340,
        other => return Err(format!("the signed body's scheme {other:?} is neither ecdsa nor bip340")),
    };
    if digest != request.digest.0 || scheme != request.scheme {
        return Err("the request the enclave received is not the one the principal signed".into());
    }
    Ok(())
}

/// The principal of a signature that verifies over `canonical`.
fn verified(signature: &PrincipalSignature, canonical: &[u8]) -> Result<Principal, String> {
    let key = PrincipalKey::from_parts(&signature.algorithm, &signature.public_key).map_err(|e| format!("key: {e}"))?;
    if !key.verifies(canonical, &signature.signature) {
        return Err("signature does not verify over the request".into());
    }
    Ok(Principal::new(key))
}

/// Whether the typed request is the one the body asks for.
fn body_matches(auth: &Authorization, request: &KeySign) -> Result<(), ErrorReply> {
    body_check(auth, request).map_err(|m| refuse(ErrorCode::RequestMismatch, m))
}

fn body_check(auth: &Authorization, request: &KeySign) -> Result<(), String> {
    let body: SignWithKey =
        serde_json::from_slice(&auth.body).map_err(|e| format!("the signed body is not a signing request: {e}"))?;
    item_check(&body, request)
}

/// Whether `request` is what `body` (one signing request, as the principal signed it) asks.
fn item_check(body: &SignWithKey, request: &KeySign) -> Result<(), String> {
    let identity = &request.row.identity;
    if body.version.is_some_and(|v| v != identity.version.get()) {
        return Err(format!("the signed body names another version than {}", identity.version.get()));
    }
    let parsed = parse_sign_fields(body.fields(), identity.key_type).map_err(|e| format!("the signed body: {e}"))?;
    if parsed != (request.algorithm, request.payload.clone(), request.format) {
        return Err("the request the enclave received is not the one the principal signed".into());
    }
    Ok(())
}

#[path = "authorizer_admin.rs"]
mod admin;
#[path = "authorizer_batch.rs"]
mod batch;
#[path = "authorizer_crypt.rs"]
mod crypt;
#[path = "authorizer_state.rs"]
mod state;
#[path = "authorizer_stream.rs"]
mod stream;
#[path = "authorizer_transfer.rs"]
mod transfer;

#[cfg(test)]
#[path = "authorizer_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "authorizer_policy_tests.rs"]
mod policy_tests;

#[cfg(test)]
#[path = "authorizer_keystore_tests.rs"]
mod keystore_tests;

#[cfg(test)]
#[path = "authorizer_tenant_tests.rs"]
mod tenant_tests;

#[cfg(test)]
#[path = "authorizer_stream_tests.rs"]
mod stream_tests;

//! One supervisor per configured enclave: connect and authenticate, check who answers, bring
//! the key up (the decision is [`crate::bringup::next_step`]), keep the health current, and
//! start over when the connection drops.
//!
//! Health reports a stable code for every state that is not `ready`; the details (KMS's
//! messages with account ids and PCRs, file paths) go to the gateway's log only.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use keyward_attest::{Measurements, Pcr, RootCertificate, UnixTime, VerifyOptions};
use keyward_proto::{
    AttestRequest, Commit, EnclaveId, ErrorCode, HelloReply, NsmKind, Provision, Request, Response, SealedKey, Status,
    Unseal, fault::crash_point,
};
use keyward_store::StoreError;
use keyward_telemetry::event;
use keyward_transport::{Address, LinkKey};
use serde::Serialize;

use crate::{
    bringup::{Step, next_step},
    config::{Environment, PcrSet},
    credentials::CredentialSource,
    db::{Db, row_from_sealed, sealed_from_row},
    keyring,
    link::{EnclaveLink, LinkError, unexpected_reply},
};

/// Deadline for lifecycle requests, which include a KMS round trip (two for a provision or
/// rotation, which proves its new row opens).
pub const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(90);
/// First reconnect delay. Short, because the usual cause is an enclave restart that is listening
/// again within tens of milliseconds; the delay doubles up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_millis(25);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Where an enclave is in its life, as `/v1/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not connected yet, or reconnecting.
    Connecting,
    /// Generating and storing a new key.
    Provisioning,
    /// Restoring the stored key.
    Unsealing,
    /// Signing.
    Ready,
    /// Bring-up failed; retrying with backoff. `code` says why.
    Failed,
    /// The enclave is not one this gateway may use (wrong pinning, unknown image, mock NSM in
    /// production, link key not accepted...).
    Refused,
}

impl Phase {
    /// The name `/v1/health` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Provisioning => "provisioning",
            Phase::Unsealing => "unsealing",
            Phase::Ready => "ready",
            Phase::Failed => "failed",
            Phase::Refused => "refused",
        }
    }
}

/// Why an enclave is not ready: a stable code for callers, the details for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: &'static str,
    pub detail: String,
}

impl Problem {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Problem { code, detail: detail.into() }
    }
}

/// What `/v1/health` shows of one enclave. Never the details: they can name accounts, roles,
/// PCRs and paths, and the endpoint is unauthenticated.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub enclave_id: EnclaveId,
    pub state: Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_epoch: Option<u32>,
    pub since_unix: u64,
    /// The keyring in this enclave.
    pub keyring: KeyringHealth,
}

/// The keyring of one enclave, as `/v1/health` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyringHealth {
    /// `connecting` (the enclave is not up yet), `ready` or `failed`.
    pub state: &'static str,
    /// Why it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// The root, hex, and its data-key epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_epoch: Option<u32>,
}

impl KeyringHealth {
    fn connecting() -> Self {
        KeyringHealth { state: "connecting", code: None, root_id: None, root_epoch: None }
    }
}

/// The shared view of one enclave.
#[derive(Debug)]
pub struct EnclaveSlot {
    pub id: EnclaveId,
    pub address: Address,
    health: RwLock<Health>,
    link: RwLock<Option<Arc<EnclaveLink>>>,
    /// One rotation at a time per enclave through this gateway (the database's
    /// compare-and-swap guards against anything else).
    pub(crate) rotation: tokio::sync::Mutex<()>,
}

impl EnclaveSlot {
    pub fn new(id: EnclaveId, address: Address) -> Self {
        EnclaveSlot {
            id,
            address,
            health: RwLock::new(Health {
                enclave_id: id,
                state: Phase::Connecting,
                code: None,
                public_key_hex: None,
                key_epoch: None,
                since_unix: now_unix(),
                keyring: KeyringHealth::connecting(),
            }),
            link: RwLock::new(None),
            rotation: tokio::sync::Mutex::new(()),
        }
    }

    pub fn health(&self) -> Health {
        read(&self.health).clone()
    }

    /// The link, if the enclave is ready to sign.
    pub fn ready_link(&self) -> Option<Arc<EnclaveLink>> {
        read(&self.link).clone().filter(|l| !l.is_closed())
    }

    /// The link, if the enclave's keyring is ready.
    pub fn keyring_link(&self) -> Option<Arc<EnclaveLink>> {
        (read(&self.health).keyring.state == "ready").then(|| self.ready_link()).flatten()
    }

    fn set_keyring(&self, keyring: KeyringHealth, problem: Option<&Problem>) {
        let mut health = write(&self.health);
        if health.keyring.state != keyring.state || health.keyring.code != keyring.code {
            match problem {
                Some(p) => {
                    tracing::error!(event = event::KEYRING_STATE, enclave_id = %self.id, state = keyring.state, code = p.code, "{}", p.detail)
                }
                None => {
                    tracing::info!(event = event::KEYRING_STATE, enclave_id = %self.id, state = keyring.state, root_id = ?keyring.root_id, "keyring state")
                }
            }
        }
        health.keyring = keyring;
    }

    fn set(&self, state: Phase, problem: Option<Problem>) {
        let code = problem.as_ref().map(|p| p.code);
        let mut health = write(&self.health);
        if health.state != state || health.code != code {
            let name = state.as_str();
            let code_name = code.unwrap_or("");
            match (&problem, state) {
                (Some(p), Phase::Failed | Phase::Refused) => {
                    tracing::error!(event = event::ENCLAVE_STATE, enclave_id = %self.id, state = name, code = code_name, "{}", p.detail)
                }
                (Some(p), _) => {
                    tracing::info!(event = event::ENCLAVE_STATE, enclave_id = %self.id, state = name, code = code_name, "{}", p.detail)
                }
                (None, _) => {
                    tracing::info!(event = event::ENCLAVE_STATE, enclave_id = %self.id, state = name, "enclave state")
                }
            }
            health.since_unix = now_unix();
        }
        health.state = state;
        health.code = code;
    }

    fn set_ready(&self, link: Arc<EnclaveLink>, status: &Status) {
        *write(&self.link) = Some(link);
        let mut health = write(&self.health);
        health.public_key_hex = status.public_key.map(|k| k.to_hex());
        health.key_epoch = status.key_epoch;
        drop(health);
        self.set(Phase::Ready, None);
    }

    /// Records a committed rotation's new epoch.
    pub fn set_epoch(&self, epoch: u32) {
        write(&self.health).key_epoch = Some(epoch);
    }

    /// Records a committed root rotation's new epoch.
    pub fn set_root_epoch(&self, epoch: u32) {
        write(&self.health).keyring.root_epoch = Some(epoch);
    }

    fn clear_link(&self) {
        *write(&self.link) = None;
        write(&self.health).keyring = KeyringHealth::connecting();
    }
}

/// What the supervisors need to know.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub environment: Environment,
    pub kms_key_id: String,
    pub kms_region: String,
    pub kms_endpoint: String,
    pub attestation: bool,
    /// When set, an enclave must prove its image before it gets credentials.
    pub image: Option<ExpectedImage>,
}

/// The enclave images this gateway trusts.
#[derive(Debug, Clone)]
pub struct ExpectedImage {
    /// PEM file of the attestation root; `None` for the AWS Nitro Enclaves Root-G1.
    pub root_pem: Option<std::path::PathBuf>,
    /// Acceptable PCR0-2 sets, one per build.
    pub pcr_sets: Vec<PcrSet>,
}

#[derive(Debug)]
enum BringUpError {
    /// Talking to the enclave failed; reconnect.
    Link(LinkError),
    /// Bring-up cannot proceed; report and retry later.
    Failed(Problem),
}

impl From<LinkError> for BringUpError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Remote(reply) => BringUpError::Failed(Problem::new(reply.code.as_str(), reply.message)),
            other => BringUpError::Link(other),
        }
    }
}

fn unexpected(request: &str, answer: &Response) -> BringUpError {
    BringUpError::Link(unexpected_reply(request, answer))
}

pub struct Supervisor {
    pub slot: Arc<EnclaveSlot>,
    pub db: Db,
    pub credentials: Arc<CredentialSource>,
    pub expect: Expectations,
    pub link_key: Arc<LinkKey>,
}

impl Supervisor {
    /// Runs forever.
    pub async fn run(self) {
        let mut retry = FIRST_RETRY;
        loop {
            let (link, hello, status) = match EnclaveLink::connect(&self.slot.address, &self.link_key).await {
                Ok(connected) => connected,
                Err(LinkError::Remote(reply)) if reply.code == ErrorCode::TooManyConnections => {
                    // Evicted while waiting to authenticate (something floods the enclave's
                    // port), or the authenticated slots are taken: try again soon, without
                    // growing the delay, since each attempt has a fair chance.
                    let detail = format!("enclave at {}: {}", self.slot.address, reply.message);
                    self.slot.set(Phase::Connecting, Some(Problem::new(reply.code.as_str(), detail)));
                    tokio::time::sleep(FIRST_RETRY).await;
                    continue;
                }
                Err(LinkError::Remote(reply)) => {
                    // The enclave answered, and refused: a link key it does not accept, another
                    // protocol version.
                    let detail = format!("enclave at {} refused the link: {}", self.slot.address, reply.message);
                    self.slot.set(Phase::Refused, Some(Problem::new(reply.code.as_str(), detail)));
                    tokio::time::sleep(MAX_RETRY).await;
                    continue;
                }
                Err(e) => {
                    let detail = format!("enclave at {}: {e}", self.slot.address);
                    self.slot.set(Phase::Connecting, Some(Problem::new("enclave_unreachable", detail)));
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
            };
            let checked = match self.check_identity(&hello) {
                Ok(()) => self.check_image(&link).await,
                Err(problem) => Err(problem),
            };
            if let Err(problem) = checked {
                self.slot.set(Phase::Refused, Some(problem));
                drop(link);
                tokio::time::sleep(MAX_RETRY).await;
                continue;
            }
            match self.bring_up(&link, &status).await {
                Ok(status) => {
                    retry = FIRST_RETRY;
                    self.slot.set_ready(link.clone(), &status);
                    let reason = tokio::select! {
                        reason = link.closed() => reason,
                        () = self.keep_keyring_up(&link) => "keyring supervision ended".to_owned(),
                    };
                    self.slot.clear_link();
                    let detail = format!("connection lost ({reason}); reconnecting");
                    self.slot.set(Phase::Connecting, Some(Problem::new("link_lost", detail)));
                }
                Err(BringUpError::Link(e)) => {
                    let code = match e {
                        LinkError::Timeout(_) => "enclave_timeout",
                        LinkError::Protocol(_) => "enclave_protocol",
                        _ => "link_lost",
                    };
                    self.slot.set(Phase::Connecting, Some(Problem::new(code, format!("bring-up interrupted: {e}"))));
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
                Err(BringUpError::Failed(problem)) => {
                    self.slot.set(Phase::Failed, Some(problem));
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Brings the enclave's keyring up, retrying with backoff while it fails; then waits for
    /// ever (the caller stops it when the link closes). The master key signs meanwhile.
    async fn keep_keyring_up(&self, link: &EnclaveLink) {
        let mut retry = FIRST_RETRY;
        loop {
            match keyring::bring_up(link, &self.db, &self.credentials, &self.expect.kms_key_id, &self.expect.kms_region)
                .await
            {
                Ok(status) => {
                    let ready = KeyringHealth {
                        state: "ready",
                        code: None,
                        root_id: status.root_id.map(|id| id.to_string()),
                        root_epoch: status.root_epoch,
                    };
                    self.slot.set_keyring(ready, None);
                    return std::future::pending().await;
                }
                Err(problem) => {
                    let failed =
                        KeyringHealth { state: "failed", code: Some(problem.code), root_id: None, root_epoch: None };
                    self.slot.set_keyring(failed, Some(&problem));
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// The enclave's pinned configuration must be what this gateway expects.
    fn check_identity(&self, hello: &HelloReply) -> Result<(), Problem> {
        let info = &hello.info;
        let expect = &self.expect;
        if self.expect.environment == Environment::Production && info.nsm == NsmKind::Mock {
            return Err(Problem::new(
                "mock_nsm_refused",
                "production refuses an enclave running the development (mock) NSM",
            ));
        }
        let mismatch = |what: &str, enclave: &dyn std::fmt::Display, ours: &dyn std::fmt::Display| {
            Err(Problem::new(
                "enclave_config_mismatch",
                format!("enclave is pinned to {what} {enclave} but this gateway expects {ours}"),
            ))
        };
        if info.kms_key_id != expect.kms_key_id {
            return mismatch("KMS key", &info.kms_key_id, &expect.kms_key_id);
        }
        if info.kms_region != expect.kms_region {
            return mismatch("region", &info.kms_region, &expect.kms_region);
        }
        if info.kms_endpoint != expect.kms_endpoint {
            return mismatch("KMS endpoint", &info.kms_endpoint, &expect.kms_endpoint);
        }
        if info.attestation != expect.attestation {
            return mismatch("attestation", &info.attestation, &expect.attestation);
        }
        Ok(())
    }

    /// Asks the enclave for an attestation document with a fresh nonce and checks it against
    /// the trusted root and the listed builds (PCR0-2 as whole sets), so credentials only
    /// ever reach a known image.
    async fn check_image(&self, link: &EnclaveLink) -> Result<(), Problem> {
        let Some(image) = &self.expect.image else { return Ok(()) };
        let rejected = |detail: String| Problem::new("attestation_rejected", detail);
        let mut nonce = [0u8; 32];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| rejected("no randomness for the attestation nonce".into()))?;
        let document =
            match link.call(Request::Attest(AttestRequest { nonce: nonce.to_vec() }), LIFECYCLE_TIMEOUT).await {
                Ok(Response::Attestation(document)) => document,
                Ok(other) => return Err(rejected(format!("enclave answered Attest with {}", other.kind()))),
                Err(e) => return Err(rejected(format!("enclave could not attest: {e}"))),
            };
        let root = match &image.root_pem {
            None => RootCertificate::aws_nitro_root_g1(),
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read attestation root {}: {e}", path.display()))
                .and_then(|pem| {
                    RootCertificate::from_pem(&pem).map_err(|e| format!("attestation root {}: {e}", path.display()))
                })
                .map_err(rejected)?,
        };
        let builds = image
            .pcr_sets
            .iter()
            .map(|set| {
                Ok(Measurements {
                    pcr0: Pcr::from_hex(&set.pcr0)?,
                    pcr1: Pcr::from_hex(&set.pcr1)?,
                    pcr2: Pcr::from_hex(&set.pcr2)?,
                })
            })
            .collect::<Result<Vec<_>, keyward_attest::VerifyError>>()
            .map_err(|e| rejected(format!("attestation.expected_pcrs: {e}")))?;
        let mut options = VerifyOptions::new(root, UnixTime::now()).expect_nonce(nonce.to_vec()).expect_builds(builds);
        if self.expect.environment == Environment::Production {
            options = options.refuse_debug_mode();
        }
        keyward_attest::verify(&document, &options)
            .map_err(|e| rejected(format!("enclave attestation rejected: {e}")))?;
        Ok(())
    }

    async fn bring_up(&self, link: &EnclaveLink, status: &Status) -> Result<Status, BringUpError> {
        let id = self.slot.id;
        let row = self.db.get(id).await.map_err(|e| {
            BringUpError::Failed(Problem::new(
                e.code(),
                format!("cannot read the key row of enclave {id}: {e}; not generating a key"),
            ))
        })?;
        let stored = row.map(sealed_from_row).transpose().map_err(|e| {
            BringUpError::Failed(Problem::new(
                "row_damaged",
                format!("stored row of enclave {id} is damaged: {e}; left untouched"),
            ))
        })?;
        match (next_step(id, stored.as_ref(), status), stored) {
            (Step::Provision, _) => self.provision(link).await,
            (Step::Unseal, Some(sealed)) => self.unseal(link, sealed).await,
            (Step::Ready, _) => Ok(status.clone()),
            (Step::CommitStoredEpoch(key_epoch), Some(sealed)) => {
                // The enclave runs from before a gateway restart, and a rotation was stored but
                // not committed: commit the stored epoch now.
                let commit = Commit { enclave_id: id, public_key: sealed.public_key, key_epoch };
                match link.call(Request::Commit(commit), LIFECYCLE_TIMEOUT).await? {
                    Response::Status(status) => Ok(status),
                    other => Err(unexpected("Commit", &other)),
                }
            }
            (Step::Refuse(refusal), _) => Err(BringUpError::Failed(Problem::new(refusal.code(), refusal.explain(id)))),
            (Step::Unseal | Step::CommitStoredEpoch(_), None) => {
                Err(BringUpError::Failed(Problem::new("internal", "bring-up step needs a row that is not there")))
            }
        }
    }

    async fn unseal(&self, link: &EnclaveLink, sealed: SealedKey) -> Result<Status, BringUpError> {
        self.slot.set(Phase::Unsealing, None);
        let credentials = self.credentials.get().await.map_err(|e| BringUpError::Failed(credentials_problem(e)))?;
        match link.call(Request::Unseal(Unseal { sealed, credentials }), LIFECYCLE_TIMEOUT).await? {
            Response::Status(status) => Ok(status),
            other => Err(unexpected("Unseal", &other)),
        }
    }

    async fn provision(&self, link: &EnclaveLink) -> Result<Status, BringUpError> {
        let id = self.slot.id;
        self.slot.set(Phase::Provisioning, None);
        tracing::info!(enclave_id = %id, "no key stored for enclave {id}: generating one");
        let credentials = self.credentials.get().await.map_err(|e| BringUpError::Failed(credentials_problem(e)))?;
        let request = Provision {
            enclave_id: id,
            kms_key_id: self.expect.kms_key_id.clone(),
            region: self.expect.kms_region.clone(),
            credentials,
        };
        crash_point("gateway:provision:before-kms");
        let sealed = match link.call(Request::Provision(request), LIFECYCLE_TIMEOUT).await? {
            Response::Provisioned(sealed) if sealed.enclave_id == id => sealed,
            Response::Provisioned(sealed) => {
                return Err(BringUpError::Failed(Problem::new(
                    "provisioned_for_another_enclave",
                    format!(
                        "enclave sealed a key for enclave {} when asked for enclave {id}; nothing stored",
                        sealed.enclave_id
                    ),
                )));
            }
            other => return Err(unexpected("Provision", &other)),
        };
        crash_point("gateway:provision:before-insert");
        self.db.insert(row_from_sealed(&sealed)).await.map_err(|e| {
            let detail = match e {
                StoreError::AlreadyExists(_) => format!(
                    "a row for enclave {id} appeared while provisioning; the new key is discarded and the stored one will be unsealed"
                ),
                ref other => {
                    format!("cannot store the new key of enclave {id}: {other}; it was not committed and will never sign")
                }
            };
            BringUpError::Failed(Problem::new(e.code(), detail))
        })?;
        tracing::info!(event = event::ROW_STORED, enclave_id = %id, key_epoch = sealed.key_epoch, public_key = %sealed.public_key.to_hex(), "stored the sealed key; committing");
        crash_point("gateway:provision:before-commit");
        let commit = Commit { enclave_id: id, public_key: sealed.public_key, key_epoch: sealed.key_epoch };
        match link.call(Request::Commit(commit), LIFECYCLE_TIMEOUT).await? {
            Response::Status(status) => Ok(status),
            other => Err(unexpected("Commit", &other)),
        }
    }
}

fn credentials_problem(detail: String) -> Problem {
    Problem::new("credentials_unavailable", detail)
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Values behind these locks are replaced whole; a poisoned lock still holds a valid one.
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

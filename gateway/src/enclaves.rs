//! One supervisor per configured enclave: connect and authenticate, admit who answers, bring
//! the key and keyring up (all three in `keyward_admission`), keep the health current, and
//! start over when the connection drops.
//!
//! Health reports a stable code for every state that is not `ready`; the details (KMS's
//! messages with account ids and PCRs, file paths) go to the gateway's log only.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use keyward_admission::{
    Db, Expectations, Problem, check_identity, check_image, keyring,
    master::{BringUpError, MasterBringUp, Progress},
    rotation::{RotateError, Rotated},
};
use keyward_attest::UnixTime;
use keyward_proto::{EnclaveId, ErrorCode, Status};
use keyward_telemetry::event;
use keyward_transport::{Address, LinkKey};
use serde::Serialize;

use crate::{
    credentials::CredentialSource,
    link::{EnclaveLink, LinkError},
};
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
    /// The key that signs the enclave's audit chain (when it has owners), as it reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_public_key_hex: Option<String>,
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
    /// One rotation at a time per enclave through this gateway.
    rotation: tokio::sync::Mutex<()>,
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
                audit_public_key_hex: None,
            }),
            link: RwLock::new(None),
            rotation: tokio::sync::Mutex::new(()),
        }
    }

    /// The slot of the enclave this code runs in (its TLS API): always linked to its own
    /// core; [`Self::mirror`] keeps its state.
    pub fn local(id: EnclaveId, link: Arc<EnclaveLink>) -> Self {
        let slot = EnclaveSlot::new(id, Address::Unix(std::path::PathBuf::from("(in process)")));
        *write(&slot.link) = Some(link);
        slot
    }

    /// Takes the state of the core beside it: ready once it holds its master key, its keyring
    /// ready once the root is loaded.
    pub fn mirror(&self, status: &Status, keyring: &keyward_proto::KeyringStatus, audit_public_key: Option<&[u8]>) {
        {
            let mut health = write(&self.health);
            health.public_key_hex = status.public_key.map(|k| k.to_hex());
            health.key_epoch = status.key_epoch;
            health.audit_public_key_hex = audit_public_key.map(hex::encode);
        }
        self.set(if status.public_key.is_some() { Phase::Ready } else { Phase::Connecting }, None);
        let ready = keyring.phase == keyward_proto::KeyringPhase::Ready;
        self.set_keyring(
            KeyringHealth {
                state: if ready { "ready" } else { "connecting" },
                code: None,
                root_id: keyring.root_id.map(|id| id.to_string()),
                root_epoch: keyring.root_epoch,
            },
            None,
        );
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

    /// Data-key rotation of this enclave's master key, one at a time through this gateway
    /// (the database's compare-and-swap guards against anything else).
    pub async fn rotate(&self, db: &Db, credentials: &CredentialSource) -> Result<Rotated, RotateError> {
        let _one_at_a_time = self.rotation.lock().await;
        let link = self.ready_link().ok_or(RotateError::NotReady(self.id))?;
        let rotated = keyward_admission::rotation::rotate(link.as_ref(), self.id, db, credentials).await?;
        write(&self.health).key_epoch = Some(rotated.epoch);
        Ok(rotated)
    }

    /// Rotation of the keyring root's data key through this enclave, one rotation at a time.
    pub async fn rotate_root(
        &self,
        link: &EnclaveLink,
        db: &Db,
        credentials: &CredentialSource,
    ) -> Result<keyring::RootRotated, Problem> {
        let _one_at_a_time = self.rotation.lock().await;
        let rotated = keyring::rotate_root(link, db, credentials).await?;
        write(&self.health).keyring.root_epoch = Some(rotated.root_epoch);
        Ok(rotated)
    }

    fn clear_link(&self) {
        *write(&self.link) = None;
        write(&self.health).keyring = KeyringHealth::connecting();
    }
}

#[derive(Debug)]
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
            let checked = match check_identity(&self.expect, &hello) {
                Ok(()) => check_image(&self.expect, link.as_ref(), UnixTime::now()).await,
                Err(problem) => Err(problem),
            };
            let audit_key = hello.info.authorization.as_ref().map(|a| a.audit_public_key.clone());
            write(&self.slot.health).audit_public_key_hex = audit_key.as_ref().map(hex::encode);
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
                    let collecting = async {
                        match &audit_key {
                            Some(key) => crate::audit::keep_collecting(&self.db, &self.slot, &link, key.clone()).await,
                            None => std::future::pending().await,
                        }
                    };
                    let reason = tokio::select! {
                        reason = link.closed() => reason,
                        () = self.keep_keyring_up(&link) => "keyring supervision ended".to_owned(),
                        () = collecting => "audit collection ended".to_owned(),
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
            match keyring::bring_up(
                link,
                &self.db,
                self.credentials.as_ref(),
                &self.expect.kms_key_id,
                &self.expect.kms_region,
            )
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

    async fn bring_up(&self, link: &EnclaveLink, status: &Status) -> Result<Status, BringUpError> {
        let master = MasterBringUp {
            id: self.slot.id,
            enclave: link,
            db: &self.db,
            credentials: self.credentials.as_ref(),
            expect: &self.expect,
        };
        master
            .run(status, |progress| match progress {
                Progress::Provisioning => self.slot.set(Phase::Provisioning, None),
                Progress::Unsealing => self.slot.set(Phase::Unsealing, None),
            })
            .await
    }
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

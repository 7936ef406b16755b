//! One supervisor per configured enclave: connect, check who answers, bring the key up
//! (unseal the stored row, or provision → INSERT → commit when there is none), keep the
//! health current, and start over when the connection drops.
//!
//! The rule that protects the money: a new key is generated only when the database was read
//! successfully, holds no row for this enclave id, and the enclave holds no committed key.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use keyward_attest::{Pcr, RootCertificate, UnixTime, VerifyOptions};
use keyward_proto::{
    AttestRequest, Commit, EnclaveId, EnclaveState, HelloReply, NsmKind, Provision, Request, Response, Rotate,
    SealedKey, Status, Unseal,
    fault::{crash_point, pause_point},
};
use keyward_store::StoreError;
use keyward_transport::Address;
use serde::Serialize;

use crate::{
    config::{Environment, PcrSet},
    credentials::CredentialSource,
    db::{Db, row_from_sealed, sealed_from_row},
    link::{EnclaveLink, LinkError},
};

/// Deadline for lifecycle requests, which include a KMS round trip.
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
    /// Bring-up failed; retrying with backoff. `detail` says why.
    Failed,
    /// The enclave is not one this gateway may use (wrong pinning, mock NSM in production...).
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

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub enclave_id: EnclaveId,
    pub state: Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_epoch: Option<u32>,
    pub since_unix: u64,
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
                detail: None,
                public_key_hex: None,
                key_epoch: None,
                since_unix: now_unix(),
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

    fn set(&self, state: Phase, detail: Option<String>) {
        let mut health = write(&self.health);
        if health.state != state || health.detail != detail {
            match (&detail, state) {
                (Some(d), Phase::Failed | Phase::Refused) => tracing::error!(enclave_id = %self.id, ?state, "{d}"),
                (Some(d), _) => tracing::info!(enclave_id = %self.id, ?state, "{d}"),
                (None, _) => tracing::info!(enclave_id = %self.id, ?state, "enclave state"),
            }
            health.since_unix = now_unix();
        }
        health.state = state;
        health.detail = detail;
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

    fn clear_link(&self) {
        *write(&self.link) = None;
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
    /// Acceptable PCR0-2 sets.
    pub pcr_sets: Vec<PcrSet>,
}

#[derive(Debug)]
enum BringUpError {
    /// Talking to the enclave failed; reconnect.
    Link(LinkError),
    /// Bring-up cannot proceed; report and retry later.
    Failed(String),
}

impl From<LinkError> for BringUpError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Remote(reply) => BringUpError::Failed(reply.message),
            other => BringUpError::Link(other),
        }
    }
}

pub struct Supervisor {
    pub slot: Arc<EnclaveSlot>,
    pub db: Db,
    pub credentials: Arc<CredentialSource>,
    pub expect: Expectations,
}

impl Supervisor {
    /// Runs forever.
    pub async fn run(self) {
        let mut retry = FIRST_RETRY;
        loop {
            let (link, hello) = match EnclaveLink::connect(&self.slot.address).await {
                Ok(connected) => connected,
                Err(e) => {
                    self.slot.set(Phase::Connecting, Some(format!("enclave at {}: {e}", self.slot.address)));
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
            };
            let checked = match self.check_identity(&hello) {
                Ok(()) => self.check_image(&link).await,
                Err(reason) => Err(reason),
            };
            if let Err(reason) = checked {
                self.slot.set(Phase::Refused, Some(reason));
                drop(link);
                tokio::time::sleep(MAX_RETRY).await;
                continue;
            }
            match self.bring_up(&link, &hello.status).await {
                Ok(status) => {
                    retry = FIRST_RETRY;
                    self.slot.set_ready(link.clone(), &status);
                    let reason = link.closed().await;
                    self.slot.clear_link();
                    self.slot.set(Phase::Connecting, Some(format!("connection lost ({reason}); reconnecting")));
                }
                Err(BringUpError::Link(e)) => {
                    self.slot.set(Phase::Connecting, Some(format!("bring-up interrupted: {e}")));
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
                Err(BringUpError::Failed(reason)) => {
                    self.slot.set(Phase::Failed, Some(reason));
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// The enclave's pinned configuration must be what this gateway expects.
    fn check_identity(&self, hello: &HelloReply) -> Result<(), String> {
        let info = &hello.info;
        let expect = &self.expect;
        if self.expect.environment == Environment::Production && info.nsm == NsmKind::Mock {
            return Err("production refuses an enclave running the development (mock) NSM".into());
        }
        if info.kms_key_id != expect.kms_key_id {
            return Err(format!(
                "enclave is pinned to KMS key {} but kms.key_id is {}",
                info.kms_key_id, expect.kms_key_id
            ));
        }
        if info.kms_region != expect.kms_region {
            return Err(format!(
                "enclave is pinned to region {} but kms.region is {}",
                info.kms_region, expect.kms_region
            ));
        }
        if info.kms_endpoint != expect.kms_endpoint {
            return Err(format!(
                "enclave is pinned to KMS endpoint {} but the relay only forwards to {}",
                info.kms_endpoint, expect.kms_endpoint
            ));
        }
        if info.attestation != expect.attestation {
            return Err(format!(
                "enclave has attestation {} but kms.enable_attestation is {}",
                info.attestation, expect.attestation
            ));
        }
        Ok(())
    }

    /// Asks the enclave for an attestation document with a fresh nonce and checks it against
    /// the trusted root and PCRs, so credentials only ever reach a known image.
    async fn check_image(&self, link: &EnclaveLink) -> Result<(), String> {
        let Some(image) = &self.expect.image else { return Ok(()) };
        let mut nonce = [0u8; 32];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness for the attestation nonce".to_owned())?;
        let document =
            match link.call(Request::Attest(AttestRequest { nonce: nonce.to_vec() }), LIFECYCLE_TIMEOUT).await {
                Ok(Response::Attestation(document)) => document,
                Ok(other) => return Err(format!("enclave answered Attest with {}", other.kind())),
                Err(e) => return Err(format!("enclave could not attest: {e}")),
            };
        let root = match &image.root_pem {
            None => RootCertificate::aws_nitro_root_g1(),
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read attestation root {}: {e}", path.display()))
                .and_then(|pem| {
                    RootCertificate::from_pem(&pem).map_err(|e| format!("attestation root {}: {e}", path.display()))
                })?,
        };
        let mut options = VerifyOptions::new(root, UnixTime::now()).expect_nonce(nonce.to_vec());
        for index in 0..3u16 {
            let acceptable = image
                .pcr_sets
                .iter()
                .map(|set| Pcr::from_hex([&set.pcr0, &set.pcr1, &set.pcr2][usize::from(index)]))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("attestation.expected_pcrs: {e}"))?;
            options = options.expect_pcr(index, acceptable);
        }
        let verified =
            keyward_attest::verify(&document, &options).map_err(|e| format!("enclave attestation rejected: {e}"))?;
        // Each PCR matched some listed build; together they must match one build. (During a
        // migration, PCR0 of the old build with PCR1-2 of the new one is neither.)
        let attested = [0u16, 1, 2].map(|index| verified.payload().pcr(index).map(Pcr::to_hex));
        let one_build = image.pcr_sets.iter().any(|set| {
            [&set.pcr0, &set.pcr1, &set.pcr2]
                .iter()
                .zip(&attested)
                .all(|(expected, got)| got.as_deref().is_some_and(|got| got.eq_ignore_ascii_case(expected)))
        });
        if !one_build {
            return Err(format!(
                "enclave attestation rejected: its PCR0-2 mix values of different builds in attestation.expected_pcrs; \
                 no single listed build has all three (PCR0 {}, PCR1 {}, PCR2 {})",
                attested[0].as_deref().unwrap_or("-"),
                attested[1].as_deref().unwrap_or("-"),
                attested[2].as_deref().unwrap_or("-"),
            ));
        }
        Ok(())
    }

    async fn bring_up(&self, link: &EnclaveLink, status: &Status) -> Result<Status, BringUpError> {
        let id = self.slot.id;
        let row = self.db.get(id).await.map_err(|e| {
            BringUpError::Failed(format!("cannot read the key row of enclave {id}: {e}; not generating a key"))
        })?;
        match (row, status.state) {
            (Some(row), EnclaveState::Ready) => {
                if status.enclave_id == Some(id)
                    && status.public_key.map(|k| k.0.to_vec()) == Some(row.public_key.clone())
                {
                    // Still running from before a gateway restart. If a rotation was stored
                    // but not committed, commit the stored epoch now.
                    let stored = u32::try_from(row.key_epoch).ok();
                    if let (Some(key_epoch), Some(public_key)) = (stored, status.public_key)
                        && status.key_epoch != stored
                    {
                        let commit = Commit { enclave_id: id, public_key, key_epoch };
                        return match link.call(Request::Commit(commit), LIFECYCLE_TIMEOUT).await? {
                            Response::Status(status) => Ok(status),
                            other => Err(BringUpError::Link(LinkError::Protocol(format!(
                                "Commit answered with {}",
                                other.kind()
                            )))),
                        };
                    }
                    return Ok(status.clone());
                }
                Err(BringUpError::Failed(format!(
                    "enclave already holds a different key than the stored row of enclave {id}; restart the enclave"
                )))
            }
            (Some(row), _) => {
                let sealed = sealed_from_row(row).map_err(|e| {
                    BringUpError::Failed(format!("stored row of enclave {id} is damaged: {e}; left untouched"))
                })?;
                self.unseal(link, sealed).await
            }
            (None, EnclaveState::Ready) => Err(BringUpError::Failed(format!(
                "enclave holds a committed key but the database has no row for enclave {id}; refusing to provision another (restore the database)"
            ))),
            (None, _) => self.provision(link).await,
        }
    }

    async fn unseal(&self, link: &EnclaveLink, sealed: SealedKey) -> Result<Status, BringUpError> {
        self.slot.set(Phase::Unsealing, None);
        let credentials = self.credentials.get().await.map_err(BringUpError::Failed)?;
        match link.call(Request::Unseal(Unseal { sealed, credentials }), LIFECYCLE_TIMEOUT).await? {
            Response::Status(status) => Ok(status),
            other => Err(BringUpError::Link(LinkError::Protocol(format!("Unseal answered with {}", other.kind())))),
        }
    }

    async fn provision(&self, link: &EnclaveLink) -> Result<Status, BringUpError> {
        let id = self.slot.id;
        self.slot.set(Phase::Provisioning, Some(format!("no key stored for enclave {id}: generating one")));
        let credentials = self.credentials.get().await.map_err(BringUpError::Failed)?;
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
                return Err(BringUpError::Failed(format!(
                    "enclave sealed a key for enclave {} when asked for enclave {id}; nothing stored",
                    sealed.enclave_id
                )));
            }
            other => {
                return Err(BringUpError::Link(LinkError::Protocol(format!(
                    "Provision answered with {}",
                    other.kind()
                ))));
            }
        };
        crash_point("gateway:provision:before-insert");
        self.db.insert(row_from_sealed(&sealed)).await.map_err(|e| match e {
            StoreError::AlreadyExists(_) => BringUpError::Failed(format!(
                "a row for enclave {id} appeared while provisioning; the new key is discarded and the stored one will be unsealed"
            )),
            other => BringUpError::Failed(format!("cannot store the new key of enclave {id}: {other}; it was not committed and will never sign")),
        })?;
        tracing::info!(enclave_id = %id, public_key = %sealed.public_key.to_hex(), "stored the sealed key; committing");
        crash_point("gateway:provision:before-commit");
        let commit = Commit { enclave_id: id, public_key: sealed.public_key, key_epoch: sealed.key_epoch };
        match link.call(Request::Commit(commit), LIFECYCLE_TIMEOUT).await? {
            Response::Status(status) => Ok(status),
            other => Err(BringUpError::Link(LinkError::Protocol(format!("Commit answered with {}", other.kind())))),
        }
    }
}

/// Why a rotation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The enclave is not ready.
    #[error("enclave {0} is not ready; rotate once it signs")]
    NotReady(EnclaveId),
    /// Reading or writing the row failed; nothing changed.
    #[error("database: {0}")]
    Store(StoreError),
    /// Another rotation won the compare-and-swap; nothing changed.
    #[error("{0}")]
    Conflict(StoreError),
    /// The enclave refused or failed.
    #[error("{0}")]
    Enclave(LinkError),
    /// The new row is stored, but the enclave did not confirm it. The key is the same, so
    /// signing is unaffected; the enclave adopts the stored epoch on its next bring-up.
    #[error(
        "the new row (key_epoch {epoch}) is stored, but the enclave did not commit it: {error}; \
         it is committed when the enclave is next brought up (restart the enclave if /v1/health keeps showing the old epoch)"
    )]
    NotCommitted { epoch: u32, error: LinkError },
    /// Credentials could not be obtained.
    #[error("{0}")]
    Credentials(String),
    /// The row is damaged or does not match the enclave.
    #[error("{0}")]
    Invalid(String),
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub public_key_hex: String,
    pub previous_epoch: u32,
    pub epoch: u32,
}

/// Data-key rotation: the enclave reseals its key under a new data key (`epoch + 1`), the
/// row is replaced by compare-and-swap on the old epoch, then the enclave commits. A crash
/// between the steps leaves either the old row (which still opens) or the new row (which
/// opens too, and is committed on the next bring-up). Signing continues throughout.
pub async fn rotate(slot: &EnclaveSlot, db: &Db, credentials: &CredentialSource) -> Result<Rotated, RotateError> {
    let _one_at_a_time = slot.rotation.lock().await;
    let link = slot.ready_link().ok_or(RotateError::NotReady(slot.id))?;
    let row = db.get(slot.id).await.map_err(RotateError::Store)?.ok_or(RotateError::NotReady(slot.id))?;
    let sealed = sealed_from_row(row).map_err(RotateError::Invalid)?;
    let previous_epoch = sealed.key_epoch;
    let credentials = credentials.get().await.map_err(RotateError::Credentials)?;
    let request = Request::Rotate(Rotate { sealed: sealed.clone(), credentials });
    crash_point("gateway:rotate:before-kms");
    let new = match link.call(request, LIFECYCLE_TIMEOUT).await {
        Ok(Response::Rotated(new)) => new,
        Ok(other) => {
            return Err(RotateError::Enclave(LinkError::Protocol(format!("Rotate answered with {}", other.kind()))));
        }
        Err(e) => return Err(RotateError::Enclave(e)),
    };
    if new.enclave_id != sealed.enclave_id || new.public_key != sealed.public_key || new.key_epoch != previous_epoch + 1
    {
        return Err(RotateError::Invalid("the enclave's rotated row does not continue the stored one".into()));
    }
    crash_point("gateway:rotate:before-store");
    pause_point("gateway:rotate:before-store").await;
    db.rotate(row_from_sealed(&new), i64::from(previous_epoch)).await.map_err(|e| match e {
        e @ StoreError::EpochConflict { .. } => RotateError::Conflict(e),
        other => RotateError::Store(other),
    })?;
    tracing::info!(enclave_id = %slot.id, key_epoch = new.key_epoch, "stored the rotated row; committing");
    crash_point("gateway:rotate:before-commit");
    let commit = Commit { enclave_id: slot.id, public_key: new.public_key, key_epoch: new.key_epoch };
    link.call(Request::Commit(commit), LIFECYCLE_TIMEOUT)
        .await
        .map_err(|error| RotateError::NotCommitted { epoch: new.key_epoch, error })?;
    slot.set_epoch(new.key_epoch);
    Ok(Rotated { public_key_hex: new.public_key.to_hex(), previous_epoch, epoch: new.key_epoch })
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

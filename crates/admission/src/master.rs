//! Bringing an enclave's master key up. What the gateway does next for one enclave is decided
//! from facts alone ([`next_step`]): what the database holds for its id and what the enclave
//! says it holds. A pure function, so every case is a line of the table test below; then
//! [`bring_up`] carries the step out: provision → store → commit, or unseal, or commit a
//! stored rotation.
//!
//! The rule that protects the money: a new key is generated only when the database was read
//! successfully and holds no row for this enclave id, and the enclave holds no committed key.

use keyward_proto::{
    Commit, EnclaveId, EnclaveState, Provision, Request, Response, SealedKey, Status, Unseal, fault::crash_point,
};
use keyward_store::StoreError;
use keyward_telemetry::event;

use crate::{
    Credentials, Db, Enclave, Expectations, LIFECYCLE_TIMEOUT, LinkError, Problem, row_from_sealed, sealed_from_row,
    unexpected_reply,
};

/// The next step for one enclave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No row and no committed key: generate, store, commit.
    Provision,
    /// A row and no committed key: open the stored row.
    Unseal,
    /// The enclave already signs with the stored key (the gateway restarted).
    Ready,
    /// The enclave signs with the stored key, but the row has a newer epoch (a rotation was
    /// stored and not committed before a crash): commit the stored epoch.
    CommitStoredEpoch(u32),
    /// Nothing may be done; the operator must look.
    Refuse(Refusal),
}

/// Why bring-up refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The enclave holds a committed key that is not the stored row's (or is another id's).
    EnclaveHoldsAnotherKey,
    /// The enclave holds a committed key but the database has no row: the database lost it.
    /// Provisioning another key would replace a key that may hold money.
    DatabaseLostItsRow,
}

impl Refusal {
    /// The stable code `/v1/health` reports.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::EnclaveHoldsAnotherKey => "enclave_holds_another_key",
            Refusal::DatabaseLostItsRow => "database_lost_its_row",
        }
    }

    /// What the operator should know and do.
    pub fn explain(self, id: EnclaveId) -> String {
        match self {
            Refusal::EnclaveHoldsAnotherKey => format!(
                "enclave already holds a different key than the stored row of enclave {id}; nothing was changed (restart the enclave to load the stored key)"
            ),
            Refusal::DatabaseLostItsRow => format!(
                "enclave holds a committed key but the database has no row for enclave {id}; refusing to provision another (restore the database)"
            ),
        }
    }
}

/// Decides the next step for enclave `id` from its stored row and the enclave's status.
pub fn next_step(id: EnclaveId, stored: Option<&SealedKey>, enclave: &Status) -> Step {
    let committed = match enclave.state {
        EnclaveState::Ready => Some((enclave.enclave_id, enclave.public_key, enclave.key_epoch)),
        EnclaveState::Empty | EnclaveState::AwaitingCommit => None,
    };
    match (stored, committed) {
        (None, None) => Step::Provision,
        (Some(_), None) => Step::Unseal,
        (None, Some(_)) => Step::Refuse(Refusal::DatabaseLostItsRow),
        (Some(row), Some((enclave_id, public_key, epoch))) => {
            if enclave_id != Some(id) || public_key != Some(row.public_key) {
                Step::Refuse(Refusal::EnclaveHoldsAnotherKey)
            } else if epoch != Some(row.key_epoch) {
                Step::CommitStoredEpoch(row.key_epoch)
            } else {
                Step::Ready
            }
        }
    }
}

/// Why bring-up stopped.
#[derive(Debug)]
pub enum BringUpError {
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

/// What bring-up is doing, for health reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Generating and storing a new key.
    Provisioning,
    /// Restoring the stored key.
    Unsealing,
}

/// The gateway's side of one enclave's master key.
#[derive(Debug)]
pub struct MasterBringUp<'a, E, C> {
    pub id: EnclaveId,
    pub enclave: &'a E,
    pub db: &'a Db,
    pub credentials: &'a C,
    pub expect: &'a Expectations,
}

impl<E: Enclave, C: Credentials> MasterBringUp<'_, E, C> {
    /// Brings the master key of an enclave whose state is `status` up: the stored row
    /// unsealed, or a new key provisioned, stored and committed when there is none; returns
    /// the enclave's state once it signs. `progress` hears which of the two is under way.
    pub async fn run(&self, status: &Status, progress: impl Fn(Progress)) -> Result<Status, BringUpError> {
        let id = self.id;
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
            (Step::Provision, _) => {
                progress(Progress::Provisioning);
                self.provision().await
            }
            (Step::Unseal, Some(sealed)) => {
                progress(Progress::Unsealing);
                self.unseal(sealed).await
            }
            (Step::Ready, _) => Ok(status.clone()),
            (Step::CommitStoredEpoch(key_epoch), Some(sealed)) => {
                // The enclave runs from before a gateway restart, and a rotation was stored but
                // not committed: commit the stored epoch now.
                self.commit(Commit { enclave_id: id, public_key: sealed.public_key, key_epoch }).await
            }
            (Step::Refuse(refusal), _) => Err(BringUpError::Failed(Problem::new(refusal.code(), refusal.explain(id)))),
            (Step::Unseal | Step::CommitStoredEpoch(_), None) => {
                Err(BringUpError::Failed(Problem::new("internal", "bring-up step needs a row that is not there")))
            }
        }
    }

    async fn commit(&self, commit: Commit) -> Result<Status, BringUpError> {
        match self.enclave.call(Request::Commit(commit), LIFECYCLE_TIMEOUT).await? {
            Response::Status(status) => Ok(status),
            other => Err(BringUpError::Link(unexpected_reply("Commit", &other))),
        }
    }

    async fn unseal(&self, sealed: SealedKey) -> Result<Status, BringUpError> {
        let credentials = self.credentials.get().await.map_err(|e| BringUpError::Failed(credentials_problem(e)))?;
        match self.enclave.call(Request::Unseal(Unseal { sealed, credentials }), LIFECYCLE_TIMEOUT).await? {
            Response::Status(status) => Ok(status),
            other => Err(BringUpError::Link(unexpected_reply("Unseal", &other))),
        }
    }

    async fn provision(&self) -> Result<Status, BringUpError> {
        let id = self.id;
        tracing::info!(enclave_id = %id, "no key stored for enclave {id}: generating one");
        let credentials = self.credentials.get().await.map_err(|e| BringUpError::Failed(credentials_problem(e)))?;
        let request = Provision {
            enclave_id: id,
            kms_key_id: self.expect.kms_key_id.clone(),
            region: self.expect.kms_region.clone(),
            credentials,
        };
        crash_point("gateway:provision:before-kms");
        let sealed = match self.enclave.call(Request::Provision(request), LIFECYCLE_TIMEOUT).await? {
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
            other => return Err(BringUpError::Link(unexpected_reply("Provision", &other))),
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
        self.commit(Commit { enclave_id: id, public_key: sealed.public_key, key_epoch: sealed.key_epoch }).await
    }
}

/// The problem of credentials that could not be had.
pub fn credentials_problem(detail: String) -> Problem {
    Problem::new("credentials_unavailable", detail)
}

#[cfg(test)]
mod tests {
    use keyward_proto::CompressedPublicKey;

    use super::*;

    const ID: EnclaveId = EnclaveId(1);

    fn row(key: u8, epoch: u32) -> SealedKey {
        SealedKey {
            enclave_id: ID,
            kms_encrypted_dek: vec![1; 8],
            encrypted_private_key: vec![2; 8],
            public_key: CompressedPublicKey([key; 33]),
            kms_key_id: "arn:k".into(),
            key_epoch: epoch,
        }
    }

    fn enclave(state: EnclaveState, id: u32, key: u8, epoch: u32) -> Status {
        let loaded = state != EnclaveState::Empty;
        Status {
            state,
            enclave_id: loaded.then_some(EnclaveId(id)),
            public_key: loaded.then_some(CompressedPublicKey([key; 33])),
            key_epoch: loaded.then_some(epoch),
        }
    }

    #[test]
    fn every_combination_of_row_and_enclave_state_has_one_step() {
        use EnclaveState::*;
        let refuse_other = Step::Refuse(Refusal::EnclaveHoldsAnotherKey);
        let cases: Vec<(&str, Option<SealedKey>, Status, Step)> = vec![
            ("first start", None, enclave(Empty, 0, 0, 0), Step::Provision),
            ("a provision that was never stored", None, enclave(AwaitingCommit, 1, 7, 1), Step::Provision),
            ("the database lost its row", None, enclave(Ready, 1, 7, 1), Step::Refuse(Refusal::DatabaseLostItsRow)),
            ("restart", Some(row(7, 1)), enclave(Empty, 0, 0, 0), Step::Unseal),
            ("stored, not committed", Some(row(7, 1)), enclave(AwaitingCommit, 1, 7, 1), Step::Unseal),
            ("gateway restart", Some(row(7, 3)), enclave(Ready, 1, 7, 3), Step::Ready),
            ("rotation stored, not committed", Some(row(7, 3)), enclave(Ready, 1, 7, 2), Step::CommitStoredEpoch(3)),
            ("another key in the enclave", Some(row(7, 1)), enclave(Ready, 1, 8, 1), refuse_other.clone()),
            ("another id's key in the enclave", Some(row(7, 1)), enclave(Ready, 2, 7, 1), refuse_other),
        ];
        for (what, stored, status, expected) in cases {
            assert_eq!(next_step(ID, stored.as_ref(), &status), expected, "{what}");
        }
    }

    #[test]
    fn refusals_have_stable_codes() {
        assert_eq!(Refusal::EnclaveHoldsAnotherKey.code(), "enclave_holds_another_key");
        assert_eq!(Refusal::DatabaseLostItsRow.code(), "database_lost_its_row");
    }
}

//! What the gateway does next for one enclave, decided from facts alone: what the database
//! holds for its id and what the enclave says it holds. A pure function, so every case is a
//! line of the table test below instead of a three-process test.
//!
//! The rule that protects the money: a new key is generated only when the database was read
//! successfully and holds no row for this enclave id, and the enclave holds no committed key.

use keyward_proto::{EnclaveId, EnclaveState, SealedKey, Status};

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

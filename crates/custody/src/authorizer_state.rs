//! A key's state, bound to the keyring root: disabling, enabling, scheduling and cancelling a
//! deletion are signed requests (operations `disable`, `enable`, and `delete` for the other
//! two), and each makes a new version of the key's policy row with the rules kept and the
//! state changed. The enclave refuses to use a key whose current row is not enabled, so a
//! host that flips its own `keys.state` column gains nothing, and one that withholds or rolls
//! back the row meets `policy_rollback` (within the enclave's life; docs/security.md).
//!
//! The signed body names the action and the row version it makes (`{"action": "disable",
//! "version": 4}`), so an owner's signature for one change cannot be spent on another of the
//! same operation, nor applied twice by two enclaves of a fleet (each keeps its own replay
//! memory; the version is the database's). A deletion's body carries its waiting time
//! (`"waiting_days"`): the host does not choose when a deletion becomes final.

use keyward_authz::{KeyState, Operation, Policy};
use keyward_client::keys::KeyStateAction;
use keyward_proto::{ErrorCode, ErrorReply, KeyStateChange, KeyStateSet, PolicyRow, PolicySealed};

use super::{Authorizer, Subject, refuse};
use crate::policies::Tagger;

/// The action a signed body must name for `change`.
fn action(change: KeyStateChange) -> &'static str {
    match change {
        KeyStateChange::Disable => "disable",
        KeyStateChange::Enable => "enable",
        KeyStateChange::ScheduleDeletion { .. } => "delete",
        KeyStateChange::CancelDeletion => "cancel-deletion",
    }
}

/// Longest deletion waiting time a body may ask for.
const MAX_WAITING_DAYS: u32 = 3650;

/// The state after `change` from `state` at `now` (a deletion due `waiting_days` later), or
/// why it does not apply.
fn next_state(state: KeyState, change: KeyStateChange, waiting_days: u32, now: u64) -> Result<KeyState, String> {
    let name = state.name(now);
    match (change, name) {
        (KeyStateChange::Disable, "enabled") | (KeyStateChange::CancelDeletion, "pending_deletion") => {
            Ok(KeyState::Disabled)
        }
        (KeyStateChange::Enable, "disabled") => Ok(KeyState::Enabled),
        (KeyStateChange::ScheduleDeletion { .. }, "enabled" | "disabled") => {
            Ok(KeyState::PendingDeletion { due: now.saturating_add(u64::from(waiting_days) * 86_400) })
        }
        (change, state) => Err(format!("the key is {state}; {} does not apply", action(change))),
    }
}

/// The signed body checked against the change: the action, the version it makes, and a
/// deletion's waiting time (returned; 0 for the other changes).
fn check_body(body: &KeyStateAction, change: KeyStateChange, next_version: u64) -> Result<u32, ErrorReply> {
    if body.action != action(change) {
        return Err(refuse(
            ErrorCode::RequestMismatch,
            format!("the principal signed {:?}, not {}", body.action, action(change)),
        ));
    }
    if body.version != next_version {
        return Err(refuse(
            ErrorCode::PolicyVersionConflict,
            format!("the signed change makes version {}; the key's next version is {next_version}", body.version),
        ));
    }
    match (change, body.waiting_days) {
        (KeyStateChange::ScheduleDeletion { .. }, Some(days)) if (1..=MAX_WAITING_DAYS).contains(&days) => Ok(days),
        (KeyStateChange::ScheduleDeletion { .. }, _) => Err(refuse(
            ErrorCode::RequestMismatch,
            format!("a signed deletion names its waiting_days, 1 to {MAX_WAITING_DAYS}"),
        )),
        (_, None) => Ok(0),
        (_, Some(_)) => Err(refuse(ErrorCode::RequestMismatch, "waiting_days goes only with delete")),
    }
}

/// The operation a policy must grant for `change`. Cancelling a deletion leaves the key
/// disabled, so it is `delete`'s; using the key again takes `enable`.
fn operation_of(change: KeyStateChange) -> Operation {
    match change {
        KeyStateChange::Disable => Operation::Disable,
        KeyStateChange::Enable => Operation::Enable,
        KeyStateChange::ScheduleDeletion { .. } | KeyStateChange::CancelDeletion => Operation::Delete,
    }
}

/// Why a key in `state` may not be used at `now` (`None`: it may).
pub(super) fn unusable(state: KeyState, key: &str, now: u64) -> Option<ErrorReply> {
    let code = match state.name(now) {
        "enabled" => return None,
        "disabled" => ErrorCode::KeyDisabled,
        "pending_deletion" => ErrorCode::KeyPendingDeletion,
        _ => ErrorCode::KeyDeleted,
    };
    Some(refuse(code, format!("key {key} is {} by its policy row; it cannot be used", state.name(now))))
}

impl Authorizer {
    /// Checks a state change of a key and, when it is allowed and applies, seals the key's
    /// next policy row (its rules kept, the new state) under the root: the row to store.
    pub fn authorize_state_change(
        &self,
        request: &KeyStateSet,
        now: u64,
        tag: Tagger<'_>,
    ) -> Result<PolicySealed, ErrorReply> {
        if request.key.is_empty() {
            return Err(refuse(ErrorCode::BadRequest, "key states are set on keys, not on keystores"));
        }
        let subject = Subject::named(operation_of(request.change), &request.keystore, &request.key)?;
        let mut sealed = None;
        let receipt = self.authorize(&subject, request.auth.as_ref(), now, tag, |auth, current| {
            let body: KeyStateAction = serde_json::from_slice(&auth.body).map_err(|e| {
                refuse(ErrorCode::RequestMismatch, format!("the signed body is not a state change: {e}"))
            })?;
            let mut policy = current.map_or_else(Policy::default, |c| (*c.policy).clone());
            let waiting_days = check_body(&body, request.change, policy.version + 1)?;
            policy.state = next_state(policy.state, request.change, waiting_days, now)
                .map_err(|m| refuse(ErrorCode::InvalidKeyState, format!("key {}: {m}", request.key)))?;
            policy.version += 1;
            let mut row = PolicyRow {
                keystore: request.keystore.clone(),
                key: request.key.clone(),
                version: policy.version,
                body: policy.to_json(),
                tag: [0; 32],
            };
            row.tag = tag(&row)?;
            sealed = Some((row, policy));
            Ok(())
        })?;
        let (row, policy) =
            sealed.ok_or_else(|| refuse(ErrorCode::Internal, "an allowed state change was not sealed"))?;
        self.policies.sealed(&row, policy);
        Ok(PolicySealed { row, receipt })
    }
}

#[cfg(test)]
mod tests {
    use keyward_proto::{DEFAULT_KEYSTORE, SignPayload};

    use super::super::policy_tests::{auth, authorizer, policy};
    use super::super::tests::{request_for, tagger};
    use super::*;

    const NOW: u64 = 1_764_547_200;

    fn change(
        a: &Authorizer,
        change: KeyStateChange,
        body: &str,
        signers: &[u8],
        id: u8,
        current: Option<PolicyRow>,
        now: u64,
    ) -> Result<PolicyRow, ErrorCode> {
        let operation = operation_of(change);
        let request = KeyStateSet {
            keystore: DEFAULT_KEYSTORE.into(),
            key: "treasury".into(),
            change,
            auth: Some(auth(operation, "treasury", body, signers, id, current)),
        };
        a.authorize_state_change(&request, now, &tagger()).map(|s| s.row).map_err(|e| e.code)
    }

    fn sign(a: &Authorizer, row: Option<PolicyRow>, id: u8, now: u64) -> Result<(), ErrorCode> {
        let mut request = request_for("treasury");
        request.payload = SignPayload::Digest(keyward_proto::Digest([id; 32]));
        let body = format!(r#"{{"digest_hex":"{}"}}"#, hex::encode([id; 32]));
        request.auth = Some(auth(Operation::Sign, "treasury", &body, &[1], id, row));
        a.authorize_sign(&request, now, &tagger()).map(|_| ()).map_err(|e| e.code)
    }

    /// The body of `action` making row version `version` (`days` for a deletion).
    fn body(action: &str, version: u64, days: Option<u32>) -> String {
        let days = days.map(|d| format!(r#","waiting_days":{d}"#)).unwrap_or_default();
        format!(r#"{{"action":"{action}","version":{version}{days}}}"#)
    }

    #[test]
    fn a_disabled_key_is_refused_whatever_the_host_says_and_only_the_quorum_changes_it() {
        let a = authorizer();
        assert_eq!(sign(&a, None, 1, NOW), Ok(()));
        let disable = body("disable", 1, None);
        let one = change(&a, KeyStateChange::Disable, &disable, &[1], 2, None, NOW);
        assert_eq!(one, Err(ErrorCode::QuorumNotMet), "one owner of two");
        let stranger = change(&a, KeyStateChange::Disable, &disable, &[4, 5], 3, None, NOW);
        assert_eq!(stranger, Err(ErrorCode::NotPermitted));
        let spent = change(&a, KeyStateChange::Disable, &body("enable", 1, None), &[1, 2], 4, None, NOW);
        assert_eq!(spent, Err(ErrorCode::RequestMismatch), "a signature for another action");
        let ahead = change(&a, KeyStateChange::Disable, &body("disable", 2, None), &[1, 2], 4, None, NOW);
        assert_eq!(ahead, Err(ErrorCode::PolicyVersionConflict), "a version that is not the next");
        let v1 = change(&a, KeyStateChange::Disable, &disable, &[1, 2], 5, None, NOW).expect("the quorum disables");
        assert_eq!(
            (v1.version, String::from_utf8(v1.body.clone()).unwrap()),
            (1, r#"{"version":1,"rules":[],"state":"disabled"}"#.into())
        );
        assert_eq!(sign(&a, Some(v1.clone()), 6, NOW), Err(ErrorCode::KeyDisabled));
        assert_eq!(sign(&a, None, 7, NOW), Err(ErrorCode::PolicyRollback), "the row withheld");
        let again = change(&a, KeyStateChange::Disable, &body("disable", 2, None), &[1, 2], 8, Some(v1.clone()), NOW);
        assert_eq!(again, Err(ErrorCode::InvalidKeyState));

        let enable = body("enable", 2, None);
        let v2 = change(&a, KeyStateChange::Enable, &enable, &[1, 2], 9, Some(v1.clone()), NOW).unwrap();
        assert_eq!(sign(&a, Some(v2.clone()), 10, NOW), Ok(()));
        assert_eq!(sign(&a, Some(v1), 11, NOW), Err(ErrorCode::PolicyRollback), "the disabled row replayed");
        // A request id seen before is refused by this enclave's replay memory; on another
        // enclave, or once the row moved on, an earlier request's version no longer follows.
        let v3 = change(&a, KeyStateChange::Disable, &body("disable", 3, None), &[1, 2], 12, Some(v2.clone()), NOW);
        let v3 = v3.unwrap();
        let replayed = change(&a, KeyStateChange::Enable, &body("enable", 4, None), &[1, 2], 13, Some(v3.clone()), NOW);
        let v4 = replayed.unwrap();
        let twice = change(&a, KeyStateChange::Disable, &body("disable", 5, None), &[1, 2], 12, Some(v4.clone()), NOW);
        assert_eq!(twice, Err(ErrorCode::RequestReplayed));
        let stale = change(&a, KeyStateChange::Enable, &body("enable", 4, None), &[1, 2], 21, Some(v4.clone()), NOW);
        assert_eq!(stale, Err(ErrorCode::PolicyVersionConflict));
        let fresh = authorizer();
        let elsewhere = change(&fresh, KeyStateChange::Enable, &enable, &[1, 2], 9, Some(v4.clone()), NOW);
        assert_eq!(elsewhere, Err(ErrorCode::PolicyVersionConflict), "an earlier enable on another enclave");

        // A deletion: pending until the days the owners signed; cancelled back to disabled; due,
        // the key is deleted and the deletion final.
        let waiting = KeyStateChange::ScheduleDeletion { waiting_seconds: 0 };
        let no_days = change(&a, waiting, &body("delete", 5, None), &[1, 2], 14, Some(v4.clone()), NOW);
        assert_eq!(no_days, Err(ErrorCode::RequestMismatch), "a deletion names its waiting time");
        let v5 = change(&a, waiting, &body("delete", 5, Some(2)), &[1, 2], 15, Some(v4), NOW).unwrap();
        let due = NOW + 2 * 86_400;
        assert_eq!(Policy::from_json(&v5.body).unwrap().state, KeyState::PendingDeletion { due }, "not the host's 0");
        assert_eq!(NOW - 1, 1_764_547_199, "the due row below");
        assert_eq!(sign(&a, Some(v5.clone()), 16, NOW), Err(ErrorCode::KeyPendingDeletion));
        let cancel = body("cancel-deletion", 6, None);
        let v6 = change(&a, KeyStateChange::CancelDeletion, &cancel, &[1, 2], 19, Some(v5), NOW + 50).unwrap();
        assert_eq!(sign(&a, Some(v6), 20, NOW + 50), Err(ErrorCode::KeyDisabled));

        // Once due (a row the root tagged, due a second ago): deleted, and the deletion final.
        let fresh = authorizer();
        let mut due_row = PolicyRow {
            keystore: DEFAULT_KEYSTORE.into(),
            key: "treasury".into(),
            version: 1,
            body: br#"{"version":1,"rules":[],"state":"pending_deletion","deletion_due":1764547199}"#.to_vec(),
            tag: [0; 32],
        };
        due_row.tag = tagger()(&due_row).unwrap();
        assert_eq!(sign(&fresh, Some(due_row.clone()), 21, NOW), Err(ErrorCode::KeyDeleted));
        let late = change(
            &fresh,
            KeyStateChange::CancelDeletion,
            &body("cancel-deletion", 2, None),
            &[1, 2],
            22,
            Some(due_row),
            NOW,
        );
        assert_eq!(late, Err(ErrorCode::InvalidKeyState), "a due deletion is final");
    }

    #[test]
    fn a_disable_grant_does_not_enable() {
        let a = authorizer();
        let grant = policy(1, &[(&[3], r#""disable""#, 1)]);
        let request = keyward_proto::PolicySet {
            keystore: DEFAULT_KEYSTORE.into(),
            key: "treasury".into(),
            auth: Some(auth(Operation::SetPolicy, "treasury", &grant, &[1, 2], 1, None)),
        };
        let v1 = a.authorize_set_policy(&request, NOW, &tagger()).unwrap().row;
        let v2 = change(&a, KeyStateChange::Disable, &body("disable", 2, None), &[3], 2, Some(v1), NOW);
        let v2 = v2.expect("the kill switch disables alone");
        let undo = change(&a, KeyStateChange::Enable, &body("enable", 3, None), &[3], 3, Some(v2), NOW);
        assert_eq!(undo, Err(ErrorCode::NotPermitted), "but cannot enable");
    }

    #[test]
    fn a_state_change_keeps_the_rules_and_set_policy_cannot_change_the_state() {
        let a = authorizer();
        let grant = policy(1, &[(&[3], r#""sign""#, 1)]);
        let set = |body: &str, id: u8, current: Option<PolicyRow>| {
            let request = keyward_proto::PolicySet {
                keystore: DEFAULT_KEYSTORE.into(),
                key: "treasury".into(),
                auth: Some(auth(Operation::SetPolicy, "treasury", body, &[1, 2], id, current)),
            };
            a.authorize_set_policy(&request, NOW, &tagger()).map(|s| s.row).map_err(|e| e.code)
        };
        let v1 = set(&grant, 1, None).unwrap();
        let v2 = change(&a, KeyStateChange::Disable, &body("disable", 2, None), &[1, 2], 2, Some(v1), NOW).unwrap();
        let kept = Policy::from_json(&v2.body).unwrap();
        assert_eq!((kept.rules.len(), kept.state), (1, KeyState::Disabled));
        // A new policy written without the state would enable the key: refused.
        let v3 = policy(3, &[(&[3], r#""sign""#, 1)]);
        assert_eq!(set(&v3, 3, Some(v2.clone())), Err(ErrorCode::InvalidPolicy));
        let v3_disabled = v3.replacen(r#""rules""#, r#""state":"disabled","rules""#, 1);
        assert!(set(&v3_disabled, 4, Some(v2)).is_ok(), "the same state, new rules");
    }
}

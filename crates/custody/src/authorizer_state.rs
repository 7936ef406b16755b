//! A key's state, bound to the keyring root: disabling, enabling, scheduling and cancelling a
//! deletion are signed requests (operation `disable` for the first two, `delete` for the
//! others), and each makes a new version of the key's policy row with the rules kept and the
//! state changed. The enclave refuses to use a key whose current row is not enabled, so a
//! host that flips its own `keys.state` column gains nothing, and one that withholds or rolls
//! back the row meets `policy_rollback` (within the enclave's life; docs/security.md).
//!
//! The signed body names the action (`{"action": "disable"}`), so an owner's signature for one
//! change cannot be spent on another of the same operation.

use keyward_authz::{KeyState, Operation, Policy};
use keyward_client::keys::KeyStateAction;
use keyward_proto::{ErrorCode, ErrorReply, KeyStateChange, KeyStateSet, PolicyRow, PolicySealed};

use super::{Authorizer, DEFAULT_KEYSTORE, Subject, refuse};
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

/// The state after `change` from `state` at `now`, or why it does not apply.
fn next_state(state: KeyState, change: KeyStateChange, now: u64) -> Result<KeyState, String> {
    let name = state.name(now);
    match (change, name) {
        (KeyStateChange::Disable, "enabled") | (KeyStateChange::CancelDeletion, "pending_deletion") => {
            Ok(KeyState::Disabled)
        }
        (KeyStateChange::Enable, "disabled") => Ok(KeyState::Enabled),
        (KeyStateChange::ScheduleDeletion { waiting_seconds }, "enabled" | "disabled") => {
            Ok(KeyState::PendingDeletion { due: now.saturating_add(waiting_seconds) })
        }
        (change, state) => Err(format!("the key is {state}; {} does not apply", action(change))),
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
        if request.keystore != DEFAULT_KEYSTORE || request.key.is_empty() {
            return Err(refuse(ErrorCode::BadRequest, "key states are set on keys of the default keystore"));
        }
        let operation = match request.change {
            KeyStateChange::Disable | KeyStateChange::Enable => Operation::Disable,
            KeyStateChange::ScheduleDeletion { .. } | KeyStateChange::CancelDeletion => Operation::Delete,
        };
        let subject = Subject { operation, keystore: DEFAULT_KEYSTORE, key: request.key.clone(), version: None };
        let mut sealed = None;
        let receipt = self.authorize(&subject, request.auth.as_ref(), now, tag, |auth, current| {
            let body: KeyStateAction = serde_json::from_slice(&auth.body).map_err(|e| {
                refuse(ErrorCode::RequestMismatch, format!("the signed body is not a state change: {e}"))
            })?;
            if body.action != action(request.change) {
                return Err(refuse(
                    ErrorCode::RequestMismatch,
                    format!("the principal signed {:?}, not {}", body.action, action(request.change)),
                ));
            }
            let mut policy = current.map_or_else(Policy::default, |c| (*c.policy).clone());
            policy.state = next_state(policy.state, request.change, now)
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
    use keyward_proto::SignPayload;

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
        let operation = match change {
            KeyStateChange::Disable | KeyStateChange::Enable => Operation::Disable,
            _ => Operation::Delete,
        };
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

    #[test]
    fn a_disabled_key_is_refused_whatever_the_host_says_and_only_the_quorum_changes_it() {
        let a = authorizer();
        let disable = r#"{"action":"disable"}"#;
        assert_eq!(sign(&a, None, 1, NOW), Ok(()));
        let one = change(&a, KeyStateChange::Disable, disable, &[1], 2, None, NOW);
        assert_eq!(one, Err(ErrorCode::QuorumNotMet), "one owner of two");
        let stranger = change(&a, KeyStateChange::Disable, disable, &[4, 5], 3, None, NOW);
        assert_eq!(stranger, Err(ErrorCode::NotPermitted));
        let spent = change(&a, KeyStateChange::Disable, r#"{"action":"enable"}"#, &[1, 2], 4, None, NOW);
        assert_eq!(spent, Err(ErrorCode::RequestMismatch), "a signature for another action");
        let v1 = change(&a, KeyStateChange::Disable, disable, &[1, 2], 5, None, NOW).expect("the quorum disables");
        assert_eq!(
            (v1.version, String::from_utf8(v1.body.clone()).unwrap()),
            (1, r#"{"version":1,"rules":[],"state":"disabled"}"#.into())
        );
        assert_eq!(sign(&a, Some(v1.clone()), 6, NOW), Err(ErrorCode::KeyDisabled));
        assert_eq!(sign(&a, None, 7, NOW), Err(ErrorCode::PolicyRollback), "the row withheld");
        assert_eq!(
            change(&a, KeyStateChange::Disable, disable, &[1, 2], 8, Some(v1.clone()), NOW),
            Err(ErrorCode::InvalidKeyState)
        );

        let v2 =
            change(&a, KeyStateChange::Enable, r#"{"action":"enable"}"#, &[1, 2], 9, Some(v1.clone()), NOW).unwrap();
        assert_eq!(sign(&a, Some(v2.clone()), 10, NOW), Ok(()));
        let replayed = change(&a, KeyStateChange::Disable, disable, &[1, 2], 5, Some(v2.clone()), NOW);
        assert_eq!(replayed, Err(ErrorCode::RequestReplayed), "the first disable, replayed once enabled again");
        assert_eq!(sign(&a, Some(v1), 11, NOW), Err(ErrorCode::PolicyRollback), "the disabled row replayed");

        // A deletion: pending until due, cancelled back to disabled; due, the key is deleted.
        let delete = r#"{"action":"delete"}"#;
        let waiting = KeyStateChange::ScheduleDeletion { waiting_seconds: 100 };
        let v3 = change(&a, waiting, delete, &[1, 2], 12, Some(v2), NOW).unwrap();
        assert_eq!(sign(&a, Some(v3.clone()), 13, NOW), Err(ErrorCode::KeyPendingDeletion));
        assert_eq!(sign(&a, Some(v3.clone()), 14, NOW + 100), Err(ErrorCode::KeyDeleted));
        let cancel = r#"{"action":"cancel-deletion"}"#;
        let late = change(&a, KeyStateChange::CancelDeletion, cancel, &[1, 2], 15, Some(v3.clone()), NOW + 100);
        assert_eq!(late, Err(ErrorCode::InvalidKeyState), "a due deletion is final");
        let v4 = change(&a, KeyStateChange::CancelDeletion, cancel, &[1, 2], 16, Some(v3), NOW + 50).unwrap();
        assert_eq!(sign(&a, Some(v4), 17, NOW + 50), Err(ErrorCode::KeyDisabled));
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
        let v2 = change(&a, KeyStateChange::Disable, r#"{"action":"disable"}"#, &[1, 2], 2, Some(v1), NOW).unwrap();
        let kept = Policy::from_json(&v2.body).unwrap();
        assert_eq!((kept.rules.len(), kept.state), (1, KeyState::Disabled));
        // A new policy written without the state would enable the key: refused.
        let v3 = policy(3, &[(&[3], r#""sign""#, 1)]);
        assert_eq!(set(&v3, 3, Some(v2.clone())), Err(ErrorCode::InvalidPolicy));
        let v3_disabled = v3.replacen(r#""rules""#, r#""state":"disabled","rules""#, 1);
        assert!(set(&v3_disabled, 4, Some(v2)).is_ok(), "the same state, new rules");
    }
}

//! Policies: which principals may do which operations, and how many of them must sign
//! together (M of N). Anything no rule grants is denied.

use std::collections::BTreeSet;

use crate::{Operation, PrincipalId};

/// One grant: `principals` may do `operations`, when `quorum` distinct ones of them signed
/// the request (1: the requester alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub principals: BTreeSet<PrincipalId>,
    pub operations: BTreeSet<Operation>,
    pub quorum: u8,
    /// When set, the rule grants only on keys whose name begins with it (a front door's
    /// keys, `bitgo.` say), never on a request about the keystore as a whole.
    pub key_prefix: Option<String>,
}

/// A key's or keystore's policy, versioned: an enclave never accepts an older version than
/// one it has seen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub version: u64,
    pub rules: Vec<Rule>,
    /// A key's state (always enabled for a keystore): it changes only with `disable` and
    /// `delete` requests, each a new version of the key's policy row.
    pub state: KeyState,
}

/// A key's state as its policy row carries it. An enclave refuses to use a key that is not
/// enabled, whatever the host's own row of the key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyState {
    #[default]
    Enabled,
    Disabled,
    /// Deleted from `due` (Unix seconds) on; until then the deletion can be cancelled.
    PendingDeletion {
        due: u64,
    },
}

impl KeyState {
    /// The state's stable name at `now`: `enabled`, `disabled`, `pending_deletion`, or
    /// `deleted` once a pending deletion is due.
    pub fn name(self, now: u64) -> &'static str {
        match self {
            KeyState::Enabled => "enabled",
            KeyState::Disabled => "disabled",
            KeyState::PendingDeletion { due } if due <= now => "deleted",
            KeyState::PendingDeletion { .. } => "pending_deletion",
        }
    }

    /// The name as a policy document stores it (a due deletion is still `pending_deletion`).
    pub fn stored_name(self) -> &'static str {
        match self {
            KeyState::Enabled => "enabled",
            KeyState::Disabled => "disabled",
            KeyState::PendingDeletion { .. } => "pending_deletion",
        }
    }

    /// Whether `operation` uses the key's material (refused unless the key is enabled); state
    /// changes and policy changes do not.
    pub fn uses_key(operation: Operation) -> bool {
        use Operation::*;
        matches!(operation, Sign | Verify | Encrypt | Decrypt | DataKey | Agree | Export | Rotate)
    }
}

/// Why a request was denied (the stable reason codes the API will answer with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No rule grants the operation to the requester.
    NotPermitted,
    /// A rule grants it, but fewer of its principals signed than it needs.
    QuorumNotMet {
        /// Distinct principals of the closest rule who signed.
        have: u8,
        /// What that rule needs.
        need: u8,
    },
    /// A rule with quorum 0, or none of whose principals could ever meet its quorum: refused
    /// rather than read as "anyone".
    InvalidRule,
}

impl DenyReason {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            DenyReason::NotPermitted => "not_permitted",
            DenyReason::QuorumNotMet { .. } => "quorum_not_met",
            DenyReason::InvalidRule => "invalid_policy",
        }
    }
}

/// The outcome of evaluating a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(DenyReason),
}

impl Rule {
    /// Whether the rule can be met at all.
    pub fn is_valid(&self) -> bool {
        self.quorum >= 1 && usize::from(self.quorum) <= self.principals.len()
    }

    /// Whether the rule covers key `key` (empty: the keystore as a whole).
    pub fn covers(&self, key: &str) -> bool {
        self.key_prefix.as_deref().is_none_or(|prefix| !key.is_empty() && key.starts_with(prefix))
    }
}

impl Policy {
    /// `operation` requested by `requester`, with the request also signed by `approvers` (the
    /// signatures already verified; duplicates and the requester count once), on no key in
    /// particular: rules with a key prefix do not apply.
    pub fn evaluate(&self, operation: Operation, requester: PrincipalId, approvers: &[PrincipalId]) -> Decision {
        self.evaluate_on("", operation, requester, approvers)
    }

    /// [`Self::evaluate`] for a request about key `key` (empty: the keystore as a whole).
    pub fn evaluate_on(
        &self,
        key: &str,
        operation: Operation,
        requester: PrincipalId,
        approvers: &[PrincipalId],
    ) -> Decision {
        let signers: BTreeSet<PrincipalId> = std::iter::once(requester).chain(approvers.iter().copied()).collect();
        let mut closest: Option<(u8, u8)> = None;
        let applies =
            |r: &&Rule| r.operations.contains(&operation) && r.principals.contains(&requester) && r.covers(key);
        for rule in self.rules.iter().filter(applies) {
            if !rule.is_valid() {
                return Decision::Deny(DenyReason::InvalidRule);
            }
            // Fits: at most 255 are counted, and the quorum is a u8.
            let have = u8::try_from(signers.iter().filter(|s| rule.principals.contains(s)).count()).unwrap_or(u8::MAX);
            if have >= rule.quorum {
                return Decision::Allow;
            }
            if closest.is_none_or(|(h, n)| rule.quorum - have < n - h) {
                closest = Some((have, rule.quorum));
            }
        }
        match closest {
            Some((have, need)) => Decision::Deny(DenyReason::QuorumNotMet { have, need }),
            None => Decision::Deny(DenyReason::NotPermitted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: PrincipalId = PrincipalId([1; 16]);
    const BOB: PrincipalId = PrincipalId([2; 16]);
    const CAROL: PrincipalId = PrincipalId([3; 16]);
    const MALLORY: PrincipalId = PrincipalId([9; 16]);

    fn rule(principals: &[PrincipalId], operations: &[Operation], quorum: u8) -> Rule {
        Rule {
            key_prefix: None,
            principals: principals.iter().copied().collect(),
            operations: operations.iter().copied().collect(),
            quorum,
        }
    }

    /// Alice signs alone; Alice, Bob and Carol rotate and export 2 of 3; set-policy takes all three.
    fn treasury() -> Policy {
        Policy {
            version: 3,
            rules: vec![
                rule(&[ALICE], &[Operation::Sign, Operation::Verify], 1),
                rule(&[ALICE, BOB, CAROL], &[Operation::Rotate, Operation::Export], 2),
                rule(&[ALICE, BOB, CAROL], &[Operation::SetPolicy], 3),
            ],
            state: KeyState::Enabled,
        }
    }

    #[test]
    fn a_rule_with_a_key_prefix_grants_only_on_those_keys() {
        let mut front_door = rule(&[BOB], &[Operation::Sign, Operation::Create], 1);
        front_door.key_prefix = Some("bitgo.".into());
        let policy = Policy { version: 1, rules: vec![front_door], ..Policy::default() };
        let deny = Decision::Deny(DenyReason::NotPermitted);
        let cases = [
            ("bitgo.user.1", Operation::Sign, Decision::Allow),
            ("bitgo.data-keys", Operation::Create, Decision::Allow),
            ("bitgo.user.1", Operation::Export, deny),
            ("treasury", Operation::Sign, deny),
            ("bitgo", Operation::Sign, deny),
            ("xbitgo.user", Operation::Sign, deny),
            ("", Operation::Create, deny),
        ];
        for (key, op, expected) in cases {
            assert_eq!(policy.evaluate_on(key, op, BOB, &[]), expected, "{key} {op:?}");
        }
        assert_eq!(policy.evaluate(Operation::Sign, BOB, &[]), deny, "no key named");
    }

    #[test]
    fn the_table() {
        use Decision::{Allow, Deny};
        use DenyReason::{NotPermitted, QuorumNotMet};
        use Operation::*;
        let cases: Vec<(Operation, PrincipalId, Vec<PrincipalId>, Decision)> = vec![
            (Sign, ALICE, vec![], Allow),
            (Verify, ALICE, vec![], Allow),
            (Sign, BOB, vec![], Deny(NotPermitted)),
            (Sign, BOB, vec![ALICE], Deny(NotPermitted)), // an approval does not lend a right
            (Sign, MALLORY, vec![], Deny(NotPermitted)),
            (Decrypt, ALICE, vec![], Deny(NotPermitted)),
            (Rotate, ALICE, vec![], Deny(QuorumNotMet { have: 1, need: 2 })),
            (Rotate, ALICE, vec![ALICE], Deny(QuorumNotMet { have: 1, need: 2 })), // oneself twice
            (Rotate, ALICE, vec![MALLORY], Deny(QuorumNotMet { have: 1, need: 2 })), // an outsider
            (Rotate, ALICE, vec![BOB], Allow),
            (Export, CAROL, vec![BOB], Allow),
            (Rotate, MALLORY, vec![ALICE, BOB], Deny(NotPermitted)),
            (SetPolicy, ALICE, vec![BOB], Deny(QuorumNotMet { have: 2, need: 3 })),
            (SetPolicy, ALICE, vec![BOB, CAROL], Allow),
            (Delete, ALICE, vec![BOB, CAROL], Deny(NotPermitted)),
        ];
        let policy = treasury();
        for (operation, requester, approvers, expected) in cases {
            assert_eq!(
                policy.evaluate(operation, requester, &approvers),
                expected,
                "{operation:?} by {requester} with {approvers:?}"
            );
        }
    }

    #[test]
    fn an_empty_policy_denies_everything_and_an_unmeetable_rule_is_refused() {
        for op in Operation::ALL {
            assert_eq!(Policy::default().evaluate(op, ALICE, &[]), Decision::Deny(DenyReason::NotPermitted));
        }
        let zero = Policy { version: 1, rules: vec![rule(&[ALICE], &[Operation::Sign], 0)], ..Policy::default() };
        assert_eq!(zero.evaluate(Operation::Sign, ALICE, &[]), Decision::Deny(DenyReason::InvalidRule));
        let too_many = Policy { version: 1, rules: vec![rule(&[ALICE], &[Operation::Sign], 2)], ..Policy::default() };
        assert_eq!(too_many.evaluate(Operation::Sign, ALICE, &[BOB]), Decision::Deny(DenyReason::InvalidRule));
        assert_eq!(DenyReason::QuorumNotMet { have: 1, need: 2 }.code(), "quorum_not_met");
    }
}

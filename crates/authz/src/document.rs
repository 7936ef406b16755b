//! A policy as JSON, the form owners sign in a set-policy request and the database keeps:
//!
//! ```json
//! {"version": 2, "rules": [
//!   {"principals": ["<32 hex: a principal id>"], "operations": ["sign", "verify"], "quorum": 1}
//! ]}
//! ```
//!
//! A key's row also carries its state when the key is not enabled: `"state": "disabled"`, or
//! `"state": "pending_deletion", "deletion_due": <Unix seconds>` (absent: enabled).
//!
//! Parsing is strict: unknown fields, unknown operations, ids that are not 16 bytes of hex, an
//! empty rule and a rule whose quorum its principals cannot meet are refused with a reason, so a
//! stored policy never means something its signers did not write.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{KeyState, Operation, Policy, PrincipalId, Rule};

/// Rules one policy holds at most.
pub const MAX_RULES: usize = 32;
/// Principals one rule names at most.
pub const MAX_RULE_PRINCIPALS: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDocument {
    principals: Vec<String>,
    operations: Vec<String>,
    quorum: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_prefix: Option<String>,
}

/// The longest key prefix a rule may name.
pub const MAX_KEY_PREFIX_LEN: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDocument {
    version: u64,
    rules: Vec<RuleDocument>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deletion_due: Option<u64>,
}

fn parse_state(state: Option<&str>, deletion_due: Option<u64>) -> Result<KeyState, String> {
    match (state, deletion_due) {
        (None | Some("enabled"), None) => Ok(KeyState::Enabled),
        (Some("disabled"), None) => Ok(KeyState::Disabled),
        (Some("pending_deletion"), Some(due)) => Ok(KeyState::PendingDeletion { due }),
        (Some("pending_deletion"), None) => Err("state pending_deletion needs deletion_due".into()),
        (Some(other), None) => Err(format!(
            "unknown state {:?}; enabled, disabled or pending_deletion",
            other.chars().take(24).collect::<String>()
        )),
        (_, Some(_)) => Err("deletion_due goes only with state pending_deletion".into()),
    }
}

/// Why a policy document was refused (code `invalid_policy`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy: {0}")]
pub struct PolicyDocumentError(pub String);

impl Policy {
    /// Parses and checks a policy document.
    pub fn from_json(bytes: &[u8]) -> Result<Policy, PolicyDocumentError> {
        let fail = |m: String| Err(PolicyDocumentError(m));
        let doc: PolicyDocument = match serde_json::from_slice(bytes) {
            Ok(doc) => doc,
            Err(e) => return fail(e.to_string()),
        };
        if doc.version == 0 {
            return fail("versions start at 1".into());
        }
        if doc.rules.len() > MAX_RULES {
            return fail(format!("{} rules; at most {MAX_RULES}", doc.rules.len()));
        }
        let state = parse_state(doc.state.as_deref(), doc.deletion_due).map_err(PolicyDocumentError)?;
        let mut rules = Vec::with_capacity(doc.rules.len());
        for (i, rule) in doc.rules.into_iter().enumerate() {
            rules.push(parse_rule(rule).map_err(|m| PolicyDocumentError(format!("rules[{i}]: {m}")))?);
        }
        Ok(Policy { version: doc.version, rules, state })
    }

    /// The document of this policy (principals and operations sorted).
    pub fn to_json(&self) -> Vec<u8> {
        let doc = PolicyDocument {
            version: self.version,
            rules: self
                .rules
                .iter()
                .map(|r| RuleDocument {
                    principals: r.principals.iter().map(ToString::to_string).collect(),
                    operations: r.operations.iter().map(|o| o.as_str().to_owned()).collect(),
                    quorum: r.quorum,
                    key_prefix: r.key_prefix.clone(),
                })
                .collect(),
            state: (self.state != KeyState::Enabled).then(|| self.state.stored_name().to_owned()),
            deletion_due: match self.state {
                KeyState::PendingDeletion { due } => Some(due),
                _ => None,
            },
        };
        // Serializing strings, numbers and lists cannot fail.
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

fn parse_rule(rule: RuleDocument) -> Result<Rule, String> {
    if rule.principals.is_empty() || rule.principals.len() > MAX_RULE_PRINCIPALS {
        return Err(format!("names {} principals; 1 to {MAX_RULE_PRINCIPALS}", rule.principals.len()));
    }
    let mut principals = BTreeSet::new();
    for text in &rule.principals {
        let mut id = [0u8; 16];
        hex::decode_to_slice(text, &mut id).map_err(|_| {
            format!("principal {:?} is not an id (32 hex digits)", text.chars().take(40).collect::<String>())
        })?;
        if !principals.insert(PrincipalId(id)) {
            return Err(format!("principal {text} is named twice"));
        }
    }
    let mut operations = BTreeSet::new();
    for name in &rule.operations {
        let op = Operation::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
            format!("unknown operation {:?}; known: {}", name.chars().take(24).collect::<String>(), known.join(", "))
        })?;
        operations.insert(op);
    }
    if operations.is_empty() {
        return Err("grants no operation".into());
    }
    if let Some(prefix) = &rule.key_prefix {
        let fits = !prefix.is_empty()
            && prefix.len() <= MAX_KEY_PREFIX_LEN
            && prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !prefix.starts_with('.');
        if !fits {
            return Err(format!(
                "key_prefix {:?} does not begin a key name (1 to {MAX_KEY_PREFIX_LEN} of A-Z a-z 0-9 . _ -, not first .)",
                prefix.chars().take(24).collect::<String>()
            ));
        }
    }
    let rule = Rule { principals, operations, quorum: rule.quorum, key_prefix: rule.key_prefix };
    if !rule.is_valid() {
        return Err(format!("a quorum of {} cannot be met by {} principals", rule.quorum, rule.principals.len()));
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "01010101010101010101010101010101";
    const BOB: &str = "02020202020202020202020202020202";

    #[test]
    fn a_document_round_trips() {
        let text = format!(
            r#"{{"version":2,"rules":[{{"principals":["{ALICE}","{BOB}"],"operations":["sign","set-policy"],"quorum":2}}]}}"#
        );
        let policy = Policy::from_json(text.as_bytes()).unwrap();
        assert_eq!(policy.version, 2);
        assert_eq!(policy.rules[0].quorum, 2);
        assert!(policy.rules[0].operations.contains(&Operation::SetPolicy));
        assert_eq!(Policy::from_json(&policy.to_json()).unwrap(), policy);
        assert_eq!(policy.state, KeyState::Enabled);
        let scoped = text.replace(r#""quorum""#, r#""key_prefix":"bitgo.","quorum""#);
        let scoped = Policy::from_json(scoped.as_bytes()).unwrap();
        assert_eq!(scoped.rules[0].key_prefix.as_deref(), Some("bitgo."));
        assert_eq!(Policy::from_json(&scoped.to_json()).unwrap(), scoped);
        assert!(!String::from_utf8(policy.to_json()).unwrap().contains("state"), "enabled is not written");
        for state in [KeyState::Disabled, KeyState::PendingDeletion { due: 1_900_000_000 }] {
            let with_state = Policy { state, ..policy.clone() };
            assert_eq!(Policy::from_json(&with_state.to_json()).unwrap(), with_state);
        }
        let pending = Policy::from_json(br#"{"version":3,"rules":[],"state":"pending_deletion","deletion_due":100}"#);
        let state = pending.unwrap().state;
        assert_eq!(
            (state.name(99), state.name(100), state.stored_name()),
            ("pending_deletion", "deleted", "pending_deletion")
        );
    }

    #[test]
    fn each_bad_document_is_refused_with_its_reason() {
        let rule = |principals: &str, operations: &str, quorum: u8| {
            format!(
                r#"{{"version":1,"rules":[{{"principals":[{principals}],"operations":[{operations}],"quorum":{quorum}}}]}}"#
            )
        };
        let cases = [
            ("not json".to_owned(), "expected"),
            (r#"{"version":0,"rules":[]}"#.to_owned(), "versions start at 1"),
            (r#"{"version":1,"rules":[],"extra":1}"#.to_owned(), "unknown field"),
            (rule(&format!("\"{ALICE}\""), "\"sing\"", 1), "unknown operation"),
            (rule("\"abcd\"", "\"sign\"", 1), "is not an id"),
            (rule(&format!("\"{ALICE}\",\"{ALICE}\""), "\"sign\"", 1), "named twice"),
            (rule("", "\"sign\"", 1), "names 0 principals"),
            (rule(&format!("\"{ALICE}\""), "", 1), "grants no operation"),
            (rule(&format!("\"{ALICE}\""), "\"sign\"", 0), "cannot be met"),
            (rule(&format!("\"{ALICE}\""), "\"sign\"", 2), "cannot be met"),
            (r#"{"version":1,"rules":[],"state":"paused"}"#.to_owned(), "unknown state"),
            (
                rule(&format!("\"{ALICE}\""), "\"sign\"", 1).replace(r#""quorum""#, r#""key_prefix":"","quorum""#),
                "key_prefix",
            ),
            (
                rule(&format!("\"{ALICE}\""), "\"sign\"", 1)
                    .replace(r#""quorum""#, r#""key_prefix":"bit/go","quorum""#),
                "key_prefix",
            ),
            (r#"{"version":1,"rules":[],"state":"pending_deletion"}"#.to_owned(), "needs deletion_due"),
            (r#"{"version":1,"rules":[],"state":"disabled","deletion_due":5}"#.to_owned(), "only with state"),
            (r#"{"version":1,"rules":[],"deletion_due":5}"#.to_owned(), "only with state"),
        ];
        for (text, reason) in cases {
            let err = Policy::from_json(text.as_bytes()).unwrap_err();
            assert!(err.0.contains(reason), "{text}: {err}");
        }
        let one = format!(r#"{{"principals":["{ALICE}"],"operations":["sign"],"quorum":1}}"#);
        let many = format!(r#"{{"version":1,"rules":[{}]}}"#, vec![one; MAX_RULES + 1].join(","));
        assert!(Policy::from_json(many.as_bytes()).unwrap_err().0.contains("at most 32"));
        let empty = Policy::from_json(br#"{"version":1,"rules":[]}"#).unwrap();
        assert!(empty.rules.is_empty(), "no rules is a valid policy that grants nothing");
    }
}

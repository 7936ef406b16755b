//! The key and keystore policies this enclave has seen (a keystore's is the row whose key name
//! is empty). The database keeps each key's policy rows, tagged
//! under the keyring root (`keyward_keyring::PolicyRowFields`); the gateway presents the latest
//! with each signed request. A row whose tag does not verify, or that belongs to another key, is
//! refused (`policy_tampered`). Once a version of a key's policy was seen or sealed here, an
//! older one, or none at all, is refused (`policy_rollback`) for the rest of this enclave's life.
//!
//! A freshly started enclave has seen nothing: the host can then present any row an enclave ever
//! tagged, an old version included, or withhold the row. docs/security.md says what that allows.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use keyward_authz::Policy;
use keyward_proto::{ErrorCode, ErrorReply, PolicyRow};

/// Makes the tag of a policy row under the loaded root.
pub type Tagger<'a> = &'a (dyn Fn(&PolicyRow) -> Result<[u8; 32], ErrorReply> + Sync);

struct Seen {
    version: u64,
    tag: [u8; 32],
    body: Vec<u8>,
    policy: Arc<Policy>,
}

/// The newest policy version seen per `(keystore, key)`.
#[derive(Default)]
pub struct PolicyBook {
    seen: Mutex<HashMap<(String, String), Seen>>,
}

/// A key's policy as checked.
#[derive(Debug, Clone)]
pub struct Current {
    pub version: u64,
    pub policy: Arc<Policy>,
}

fn tampered(message: String) -> ErrorReply {
    ErrorReply::new(ErrorCode::PolicyTampered, message)
}

fn rollback(message: String) -> ErrorReply {
    ErrorReply::new(ErrorCode::PolicyRollback, message)
}

/// A key by its name; a keystore's own policy (an empty key name) as `keystore NAME`.
pub(crate) fn describe(keystore: &str, key: &str) -> String {
    match key {
        "" => format!("keystore {keystore}"),
        key => key.to_owned(),
    }
}

fn same_tag(a: &[u8; 32], b: &[u8; 32]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

impl std::fmt::Debug for PolicyBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seen = self.seen.lock().map_or(0, |s| s.len());
        f.debug_struct("PolicyBook").field("keys_seen", &seen).finish()
    }
}

impl PolicyBook {
    /// The policy of `keystore`/`key` (an empty key: the keystore's own), from the row the host
    /// presented (`None`: the key has no policy of its own).
    pub fn current(
        &self,
        keystore: &str,
        key: &str,
        row: Option<&PolicyRow>,
        tag: Tagger<'_>,
    ) -> Result<Option<Current>, ErrorReply> {
        let what = describe(keystore, key);
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = (keystore.to_owned(), key.to_owned());
        let known = seen.get(&id);
        let Some(row) = row else {
            return match known {
                None => Ok(None),
                Some(s) => Err(rollback(format!(
                    "no policy row was presented for {what}, but this enclave has seen its version {}",
                    s.version
                ))),
            };
        };
        if row.keystore != keystore || row.key != key {
            return Err(tampered(format!("the policy row presented belongs to another key or keystore than {what}")));
        }
        if let Some(s) = known {
            if row.version < s.version {
                return Err(rollback(format!(
                    "the policy row of {what} is version {}; this enclave has seen version {}",
                    row.version, s.version
                )));
            }
            if row.version == s.version {
                return if same_tag(&row.tag, &s.tag) && row.body == s.body {
                    Ok(Some(Current { version: s.version, policy: s.policy.clone() }))
                } else {
                    Err(tampered(format!("version {} of the policy of {what} was altered", row.version)))
                };
            }
        }
        if !same_tag(&tag(row)?, &row.tag) {
            return Err(tampered(format!(
                "the policy row of {what} (version {}) was not made by this keyring: edited, forged or moved",
                row.version
            )));
        }
        // A row with a valid tag is one an enclave sealed after parsing it.
        let policy = Policy::from_json(&row.body)
            .ok()
            .filter(|p| p.version == row.version)
            .ok_or_else(|| tampered(format!("the policy row of {what} has a valid tag but no valid document")))?;
        let policy = Arc::new(policy);
        seen.insert(id, Seen { version: row.version, tag: row.tag, body: row.body.clone(), policy: policy.clone() });
        Ok(Some(Current { version: row.version, policy }))
    }

    /// The newest policy of `keystore`/`key` this enclave has seen, if any.
    pub fn seen(&self, keystore: &str, key: &str) -> Option<Arc<Policy>> {
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.get(&(keystore.to_owned(), key.to_owned())).map(|s| s.policy.clone())
    }

    /// A policy this enclave just sealed: from now on, older rows of the key are refused.
    pub fn sealed(&self, row: &PolicyRow, policy: Policy) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = (row.keystore.clone(), row.key.clone());
        if seen.get(&id).is_none_or(|s| s.version < row.version) {
            let seen_row =
                Seen { version: row.version, tag: row.tag, body: row.body.clone(), policy: Arc::new(policy) };
            seen.insert(id, seen_row);
        }
    }
}

//! `authorization:` — the owners every enclave of this gateway must have (docs/authorization.md).
//! The enclave image pins them (`gateway nitro-build-args` passes them on), the gateway checks
//! each enclave's `Hello` against them, and production refuses a file without them.

use std::collections::BTreeSet;

use anyhow::bail;
use keyward_authz::PrincipalKey;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationSection {
    /// `ed25519:<64 hex>` or `p256:<SEC1 hex>`, one per owner.
    pub owners: Vec<String>,
    /// How many owners approve administrative operations together (default 1).
    #[serde(default = "one")]
    pub quorum: u8,
}

fn one() -> u8 {
    1
}

/// The owners, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owners {
    /// As written (the enclave's `--owner` values).
    pub keys: Vec<String>,
    /// Their principal ids, hex (what an enclave's `Hello` reports).
    pub ids: Vec<String>,
    pub quorum: u8,
}

impl AuthorizationSection {
    pub fn validate(self) -> anyhow::Result<Owners> {
        if self.owners.is_empty() {
            bail!(
                "authorization.owners is empty: list the owners, or leave the section out (authorization off, which production refuses)"
            );
        }
        let mut ids = Vec::with_capacity(self.owners.len());
        let mut seen = BTreeSet::new();
        for (i, text) in self.owners.iter().enumerate() {
            let key =
                PrincipalKey::parse(text.trim()).map_err(|e| anyhow::anyhow!("authorization.owners[{i}]: {e}"))?;
            let id = key.id().to_string();
            if !seen.insert(id.clone()) {
                bail!("authorization.owners[{i}] is listed twice");
            }
            ids.push(id);
        }
        if self.quorum == 0 || usize::from(self.quorum) > ids.len() {
            bail!("authorization.quorum {} cannot be met by {} owners", self.quorum, ids.len());
        }
        let keys = self.owners.iter().map(|o| o.trim().to_owned()).collect();
        Ok(Owners { keys, ids, quorum: self.quorum })
    }
}

impl Owners {
    /// Whether an owner is one of RFC 8032's Ed25519 test keys, whose private keys are published.
    pub fn has_published_test_key(&self) -> bool {
        self.keys.iter().any(|key| {
            key.strip_prefix("ed25519:")
                .and_then(|hex| keyward_transport::LinkPublicKey::from_hex(hex).ok())
                .is_some_and(|k| k.is_published_test_key())
        })
    }

    /// What the gateway expects each enclave to report.
    pub fn expected(&self) -> keyward_admission::ExpectedOwners {
        keyward_admission::ExpectedOwners { ids: self.ids.clone(), quorum: self.quorum }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511b";
    const BOB: &str = "ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

    fn section(owners: &[&str], quorum: u8) -> AuthorizationSection {
        AuthorizationSection { owners: owners.iter().map(|s| (*s).to_owned()).collect(), quorum }
    }

    #[test]
    fn owners_parse_to_the_ids_enclaves_report_and_bad_lists_are_refused() {
        let owners = section(&[ALICE, BOB], 2).validate().unwrap();
        assert_eq!(owners.ids.len(), 2);
        assert_eq!(owners.ids[0].len(), 32);
        assert_eq!(owners.keys, [ALICE, BOB]);
        for (bad, needle) in [
            (section(&[], 1), "is empty"),
            (section(&[ALICE, ALICE], 1), "listed twice"),
            (section(&[ALICE], 2), "cannot be met"),
            (section(&[ALICE], 0), "cannot be met"),
            (section(&["ed25519:abcd"], 1), "owners[0]"),
            (section(&["rsa:00"], 1), "unknown principal algorithm"),
        ] {
            let err = format!("{:#}", bad.validate().unwrap_err());
            assert!(err.contains(needle), "{err}");
        }
    }
}

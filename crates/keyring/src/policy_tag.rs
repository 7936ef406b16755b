//! Policy rows bound to the keyring root: an HMAC-SHA256 tag under a key derived from the
//! root, over the row's identity and content. The database keeps the rows; only an enclave
//! holding the root can make a tag, so a row the host edits, forges, or moves to another key
//! or keystore is refused. (Which version is current is the enclave's to track: an old row
//! keeps its valid tag.)
//!
//! ```text
//! key = HMAC-SHA256(root, "keyward/keyring/policy-key/v1")
//! tag = HMAC-SHA256(key, "keyward/policy/v1" ‖ root id (16) ‖ len (2) ‖ keystore ‖ len (2) ‖ key name
//!                        ‖ version (8, BE) ‖ body)
//! ```

use aws_lc_rs::hmac;
use keyward_proto::RootId;

use crate::{KeyringError, RootKey};

const KEY_LABEL: &[u8] = b"keyward/keyring/policy-key/v1";
const TAG_LABEL: &[u8] = b"keyward/policy/v1";

/// What a policy row says it is.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRowFields<'a> {
    pub keystore: &'a str,
    pub key: &'a str,
    pub version: u64,
    pub body: &'a [u8],
}

impl RootKey {
    /// The tag of a policy row under this root.
    pub fn policy_tag(&self, root_id: &RootId, row: &PolicyRowFields<'_>) -> Result<[u8; 32], KeyringError> {
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, self.bytes()), KEY_LABEL);
        let key = hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref());
        let mut context = hmac::Context::with_key(&key);
        context.update(TAG_LABEL);
        context.update(&root_id.0);
        for field in [row.keystore, row.key] {
            let len = u16::try_from(field.len())
                .map_err(|_| KeyringError::BadInput(format!("a policy row field of {} bytes", field.len())))?;
            context.update(&len.to_be_bytes());
            context.update(field.as_bytes());
        }
        context.update(&row.version.to_be_bytes());
        context.update(row.body);
        let mut tag = [0u8; 32];
        tag.copy_from_slice(context.sign().as_ref());
        Ok(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_covers_every_field_and_the_root() {
        let root = RootKey::from_bytes([7; 32]);
        let id = RootId([1; 16]);
        let row = PolicyRowFields { keystore: "default", key: "treasury", version: 2, body: b"{}" };
        let tag = root.policy_tag(&id, &row).unwrap();
        assert_eq!(tag, root.policy_tag(&id, &row).unwrap());
        let changed = [
            root.policy_tag(&id, &PolicyRowFields { keystore: "other", ..row }),
            root.policy_tag(&id, &PolicyRowFields { key: "treasury2", ..row }),
            root.policy_tag(&id, &PolicyRowFields { version: 1, ..row }),
            root.policy_tag(&id, &PolicyRowFields { body: b"{ }", ..row }),
            // Framing: moving a byte from the keystore into the key changes the tag.
            root.policy_tag(&id, &PolicyRowFields { keystore: "defaul", key: "ttreasury", ..row }),
            root.policy_tag(&RootId([2; 16]), &row),
            RootKey::from_bytes([8; 32]).policy_tag(&id, &row),
        ];
        for (i, other) in changed.into_iter().enumerate() {
            assert_ne!(other.unwrap(), tag, "case {i}");
        }
        let long = "k".repeat(70_000);
        assert!(root.policy_tag(&id, &PolicyRowFields { key: &long, ..row }).is_err());
    }
}

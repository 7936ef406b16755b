use super::*;
use crate::tests_support::temp_store;

fn root(epoch: i64) -> RootRow {
    RootRow {
        root_id: vec![7; 16],
        kms_encrypted_dek: vec![epoch as u8; 184],
        sealed_root: vec![2; 61],
        kms_key_id: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
        root_epoch: epoch,
    }
}

fn new_key(name: &str) -> NewKey {
    NewKey {
        key: KeyRow {
            name: name.into(),
            key_type: "secp256k1".into(),
            exportable: false,
            origin: "generated".into(),
            state: "enabled".into(),
            latest_version: 1,
            deletion_due: None,
            created_at: 1_700_000_000,
            revision: 1,
            min_decryption_version: 1,
        },
        version: version(name, 1, 3),
    }
}

fn version(name: &str, version: i64, key_byte: u8) -> VersionRow {
    VersionRow {
        name: name.into(),
        version,
        root_id: vec![7; 16],
        public_key: vec![key_byte; 33],
        wrapped: vec![version as u8; 61],
        created_at: 1_700_000_000 + version,
    }
}

#[test]
fn the_root_is_inserted_once_and_rotated_by_compare_and_swap() {
    let (_dir, mut store) = temp_store();
    assert_eq!(store.root().unwrap(), None);
    store.insert_root(&root(1)).unwrap();
    assert!(matches!(store.insert_root(&root(1)), Err(StoreError::RootExists)), "one root only");
    store.rotate_root(&root(2), 1).unwrap();
    assert_eq!(store.root().unwrap(), Some(root(2)));
    assert!(matches!(store.rotate_root(&root(2), 1), Err(StoreError::RootEpochConflict { expected_epoch: 1 })));
    let mut other = root(3);
    other.root_id = vec![8; 16];
    assert!(store.rotate_root(&other, 2).is_err(), "another root cannot replace this one");
    assert!(store.rotate_root(&root(4), 2).is_err(), "no skipped epochs");
    assert_eq!(store.root().unwrap(), Some(root(2)));
}

#[test]
fn a_batch_of_keys_is_stored_whole_or_not_at_all() {
    let (_dir, mut store) = temp_store();
    store.insert_keys(&[new_key("a"), new_key("b")]).unwrap();
    let err = store.insert_keys(&[new_key("c"), new_key("b"), new_key("d")]).unwrap_err();
    assert!(matches!(&err, StoreError::KeyExists(name) if name == "b"), "{err}");
    assert_eq!(store.key_count().unwrap(), 2, "c was not kept");
    assert_eq!(store.key("c").unwrap(), None);
    assert_eq!(store.key("a").unwrap(), Some(new_key("a").key));
    assert_eq!(store.key_version("a", 1).unwrap(), Some(version("a", 1, 3)));
}

#[test]
fn a_keystores_pages_hold_its_keys_only() {
    let (_dir, mut store) = temp_store();
    // Names either side of each prefix in byte order: "acme-x" and "acme.x" sort around
    // "acme/", "acme0" right after the last "acme/…".
    let names = ["acme", "acme-x/k", "acme.x", "acme/a", "acme/b", "acme/c", "acme0", "acmez/a", "b", "beta/a"];
    store.insert_keys(&names.iter().map(|n| new_key(n)).collect::<Vec<_>>()).unwrap();
    let page = |keystore, after: Option<&str>, limit| -> Vec<String> {
        store.list_keys(keystore, after, limit).unwrap().into_iter().map(|k| k.name).collect()
    };
    assert_eq!(page(None, None, 100), ["acme", "acme.x", "acme0", "b"]);
    assert_eq!(page(Some("acme"), None, 100), ["acme/a", "acme/b", "acme/c"]);
    assert_eq!(page(Some("acme"), None, 2), ["acme/a", "acme/b"]);
    assert_eq!(page(Some("acme"), Some("acme/b"), 2), ["acme/c"]);
    // A cursor from before the keystore, or from another one, starts at its beginning or end.
    assert_eq!(page(Some("acme"), Some("a"), 1), ["acme/a"]);
    assert!(page(Some("acme"), Some("beta/a"), 10).is_empty());
    assert_eq!(page(Some("beta"), None, 10), ["beta/a"]);
    assert!(page(Some("gamma"), None, 10).is_empty());
}

#[test]
fn pages_are_in_name_order_and_stable() {
    let (_dir, mut store) = temp_store();
    let names: Vec<String> = (0..25).map(|i| format!("key-{i:03}")).collect();
    store.insert_keys(&names.iter().map(|n| new_key(n)).collect::<Vec<_>>()).unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_keys(None, after.as_deref(), 10).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|k| k.name.clone());
        seen.extend(page.into_iter().map(|k| k.name));
        // A key added behind the cursor does not shift the pages.
        store.insert_keys(&[new_key(&format!("aaa-{}", seen.len()))]).unwrap();
    }
    assert_eq!(seen, names);
}

#[test]
fn a_new_version_is_added_by_compare_and_swap_and_never_overwrites() {
    let (_dir, mut store) = temp_store();
    store.insert_keys(&[new_key("k")]).unwrap();
    store.add_version(&version("k", 2, 4), 1).unwrap();
    let key = store.key("k").unwrap().unwrap();
    assert_eq!((key.latest_version, key.revision), (2, 2));
    // A second rotation from the stale revision loses; so does one that skips a version.
    assert!(matches!(store.add_version(&version("k", 3, 5), 1), Err(StoreError::KeyConflict(_))));
    assert!(matches!(store.add_version(&version("k", 4, 5), 2), Err(StoreError::KeyConflict(_))));
    assert_eq!(store.key_versions("k").unwrap(), vec![version("k", 1, 3), version("k", 2, 4)]);
    assert_eq!(store.versions_by_public_key(&[4; 33]).unwrap(), vec![version("k", 2, 4)]);
}

#[test]
fn state_changes_are_compare_and_swap() {
    let (_dir, mut store) = temp_store();
    store.insert_keys(&[new_key("k")]).unwrap();
    store.set_key_state("k", "disabled", None, 1).unwrap();
    assert!(matches!(store.set_key_state("k", "enabled", None, 1), Err(StoreError::KeyConflict(_))));
    store.set_key_state("k", "pending_deletion", Some(1_800_000_000), 2).unwrap();
    let key = store.key("k").unwrap().unwrap();
    assert_eq!((key.state.as_str(), key.deletion_due, key.revision), ("pending_deletion", Some(1_800_000_000), 3));
    assert!(matches!(store.set_key_state("missing", "disabled", None, 1), Err(StoreError::KeyConflict(_))));
}

#[test]
fn the_oldest_decrypting_version_moves_by_compare_and_swap_within_the_versions() {
    let (_dir, mut store) = temp_store();
    store.insert_keys(&[new_key("k")]).unwrap();
    store.add_version(&version("k", 2, 4), 1).unwrap();
    store.set_min_decryption_version("k", 2, 2).unwrap();
    let key = store.key("k").unwrap().unwrap();
    assert_eq!((key.min_decryption_version, key.revision), (2, 3));
    // Stale revision, beyond the latest version, or zero: nothing changes.
    for (version, revision) in [(1, 2), (3, 3), (0, 3)] {
        let refused = store.set_min_decryption_version("k", version, revision);
        assert!(matches!(refused, Err(StoreError::KeyConflict(_))), "{version} at {revision}");
    }
    assert_eq!(store.key("k").unwrap().unwrap(), key);
}

#[test]
fn a_database_of_the_previous_schema_is_upgraded_and_its_keys_decrypt_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.db");
    {
        let mut store = Store::open(&path).unwrap();
        store.insert_keys(&[new_key("old")]).unwrap();
        // Back to schema 2, as a database written by an earlier release.
        store
            .conn
            .execute_batch(
                "DROP TABLE audit_records; DROP TABLE key_policies; DROP TABLE bitgo_keys; \
                 ALTER TABLE keys DROP COLUMN min_decryption_version; \
                 DELETE FROM schema_migrations WHERE version >= 3;",
            )
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.key("old").unwrap().unwrap(), new_key("old").key);
}

#[test]
fn the_keyring_works_through_the_store_trait_alone() {
    let (_dir, store) = temp_store();
    let mut store: Box<dyn crate::KeyStore> = Box::new(store);
    store.insert_root(&root(1)).unwrap();
    assert!(matches!(store.insert_root(&root(1)), Err(StoreError::RootExists)));
    store.insert_keys(&[new_key("a"), new_key("b")]).unwrap();
    let err = store.insert_keys(&[new_key("c"), new_key("a")]).unwrap_err();
    assert_eq!(err.code(), "key_exists");
    assert!(store.key("c").unwrap().is_none(), "all or none through the trait too");
    store.add_version(&version("a", 2, 4), 1).unwrap();
    assert_eq!(store.add_version(&version("a", 3, 5), 1).unwrap_err().code(), "key_conflict");
    assert_eq!(store.key_versions("a").unwrap().len(), 2);
    let page: Vec<String> = store.list_keys(None, None, 10).unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(page, ["a", "b"]);
}

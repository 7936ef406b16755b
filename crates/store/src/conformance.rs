//! What every [`KeyStore`] must do, as one suite that runs against each engine: SQLite here
//! (`cargo test -p keyward-store`) and a real PostgreSQL server in `keyward-store-pg`. Each
//! case gets a factory that opens another connection to one fresh, empty database, so the
//! races of a fleet (several gateways on one database) are part of the contract.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{
    AuditRow, BitgoKeyRow, KeyRow, KeyStore, MasterKeyRow, NewKey, PolicyRecord, RootRow, StoreError, VersionRow,
};

/// Opens one more connection to the database under test.
pub type Open<'a> = &'a (dyn Fn() -> Box<dyn KeyStore> + Sync);

/// One case: it gets a fresh, empty database.
pub type Case = fn(Open<'_>);

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("master_key_rows_are_inserted_once_and_rotated_by_compare_and_swap", master_key_rows),
    ("the_root_is_inserted_once_and_rotated_by_compare_and_swap", root_rows),
    ("a_batch_of_keys_is_stored_whole_or_not_at_all", batch_whole),
    ("a_keystores_pages_hold_its_keys_only_in_byte_order", keystore_pages),
    ("pages_are_in_name_order_and_stable", stable_pages),
    ("a_new_version_is_added_by_compare_and_swap_and_never_overwrites", versions),
    ("state_changes_are_compare_and_swap", states),
    ("the_oldest_decrypting_version_moves_by_compare_and_swap", min_decryption),
    ("bitgo_rows_are_one_per_pub_and_source_and_name_a_key", bitgo_rows),
    ("policy_versions_are_kept_and_never_replaced", policies),
    ("audit_records_are_appended_once_and_read_in_order", audit),
    ("one_key_operation_reads_key_version_and_policies", key_version_policy),
    ("bytes_are_kept_exactly", exact_bytes),
    ("the_same_name_created_at_once_gives_one_key", racing_creates),
    ("concurrent_rotations_meet_at_the_compare_and_swap", racing_rotations),
];

/// Runs every case, each on a database `fresh` makes; `fresh` returns the factory of one
/// empty database.
pub fn run_all<F: Fn() -> Box<dyn KeyStore> + Sync>(fresh: impl Fn(&str) -> F) {
    for (name, case) in CASES {
        eprintln!("store conformance: {name}");
        let open = fresh(name);
        case(&open);
    }
}

fn master(enclave_id: i64, epoch: i64) -> MasterKeyRow {
    MasterKeyRow {
        enclave_id,
        kms_encrypted_dek: vec![epoch as u8; 184],
        encrypted_private_key: vec![0xAB; 60],
        public_key: vec![2; 33],
        kms_key_id: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
        key_epoch: epoch,
    }
}

fn root(epoch: i64) -> RootRow {
    RootRow {
        root_id: vec![7; 16],
        kms_encrypted_dek: vec![epoch as u8; 184],
        sealed_root: vec![2; 61],
        kms_key_id: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
        root_epoch: epoch,
    }
}

/// A key with its first version.
pub fn new_key(name: &str) -> NewKey {
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

fn names(store: &dyn KeyStore, keystore: Option<&str>, after: Option<&str>, limit: u32) -> Vec<String> {
    store.list_keys(keystore, after, limit).unwrap().into_iter().map(|k| k.name).collect()
}

fn master_key_rows(open: Open<'_>) {
    let mut store = open();
    store.ping().unwrap();
    assert_eq!(store.get(1).unwrap(), None);
    store.insert(&master(1, 1)).unwrap();
    assert_eq!(store.get(1).unwrap(), Some(master(1, 1)));
    let again = store.insert(&MasterKeyRow { public_key: vec![3; 33], ..master(1, 1) }).unwrap_err();
    assert!(matches!(again, StoreError::AlreadyExists(1)), "{again:?}");
    assert_eq!(again.code(), "row_exists");
    store.rotate(&master(1, 2), 1).unwrap();
    assert_eq!(store.get(1).unwrap(), Some(master(1, 2)));
    // A stale epoch, a skipped epoch, another public key, a missing row: nothing changes.
    for (new, expected) in [
        (master(1, 3), 1),
        (master(1, 4), 2),
        (MasterKeyRow { public_key: vec![4; 33], ..master(1, 3) }, 2),
        (master(9, 2), 1),
    ] {
        let refused = store.rotate(&new, expected).unwrap_err();
        assert_eq!(refused.code(), "rotation_conflict", "{new:?} from {expected}");
    }
    assert_eq!(store.get(1).unwrap(), Some(master(1, 2)));
}

fn root_rows(open: Open<'_>) {
    let mut store = open();
    assert_eq!(store.root().unwrap(), None);
    store.insert_root(&root(1)).unwrap();
    assert!(matches!(store.insert_root(&root(1)), Err(StoreError::RootExists)), "one root only");
    store.rotate_root(&root(2), 1).unwrap();
    assert_eq!(store.root().unwrap(), Some(root(2)));
    assert!(matches!(store.rotate_root(&root(2), 1), Err(StoreError::RootEpochConflict { expected_epoch: 1 })));
    let other = RootRow { root_id: vec![8; 16], ..root(3) };
    assert_eq!(store.rotate_root(&other, 2).unwrap_err().code(), "rotation_conflict", "another root");
    assert_eq!(store.rotate_root(&root(4), 2).unwrap_err().code(), "rotation_conflict", "no skipped epochs");
    assert_eq!(open().root().unwrap(), Some(root(2)), "seen by another connection");
}

fn batch_whole(open: Open<'_>) {
    let mut store = open();
    store.insert_keys(&[new_key("a"), new_key("b")]).unwrap();
    let err = store.insert_keys(&[new_key("c"), new_key("b"), new_key("d")]).unwrap_err();
    assert!(matches!(&err, StoreError::KeyExists(name) if name == "b"), "{err}");
    assert_eq!(err.code(), "key_exists");
    // A name twice in one batch is taken by the batch itself.
    let err = store.insert_keys(&[new_key("e"), new_key("e")]).unwrap_err();
    assert!(matches!(&err, StoreError::KeyExists(name) if name == "e"), "{err}");
    assert_eq!(names(store.as_ref(), None, None, 100), ["a", "b"], "c, d and e were not kept");
    assert_eq!(store.key("a").unwrap(), Some(new_key("a").key));
    assert_eq!(store.key_version("a", 1).unwrap(), Some(version("a", 1, 3)));
    assert_eq!(store.key_version("a", 2).unwrap(), None);
    assert!(store.key_versions("c").unwrap().is_empty());
}

fn keystore_pages(open: Open<'_>) {
    let mut store = open();
    // Names either side of each prefix in byte order ("acme-x" and "acme.x" sort around
    // "acme/", "acme0" right after the last "acme/…"), and upper case before lower case, as
    // bytes compare (a locale's order would put "B" after "a").
    let all =
        ["acme", "acme-x/k", "acme.x", "acme/a", "acme/b", "acme/c", "acme0", "acmez/a", "b", "beta/a", "B", "_x"];
    store.insert_keys(&all.iter().map(|n| new_key(n)).collect::<Vec<_>>()).unwrap();
    let page = |keystore, after, limit| names(store.as_ref(), keystore, after, limit);
    assert_eq!(page(None, None, 100), ["B", "_x", "acme", "acme.x", "acme0", "b"]);
    assert_eq!(page(Some("acme"), None, 100), ["acme/a", "acme/b", "acme/c"]);
    assert_eq!(page(Some("acme"), None, 2), ["acme/a", "acme/b"]);
    assert_eq!(page(Some("acme"), Some("acme/b"), 2), ["acme/c"]);
    // A cursor from before the keystore, or from another one, starts at its beginning or end.
    assert_eq!(page(Some("acme"), Some("a"), 1), ["acme/a"]);
    assert!(page(Some("acme"), Some("beta/a"), 10).is_empty());
    assert_eq!(page(Some("beta"), None, 10), ["beta/a"]);
    assert!(page(Some("gamma"), None, 10).is_empty());
}

fn stable_pages(open: Open<'_>) {
    let mut store = open();
    let all: Vec<String> = (0..25).map(|i| format!("key-{i:03}")).collect();
    store.insert_keys(&all.iter().map(|n| new_key(n)).collect::<Vec<_>>()).unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = names(store.as_ref(), None, after.as_deref(), 10);
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        seen.extend(page);
        // A key added behind the cursor does not shift the pages.
        store.insert_keys(&[new_key(&format!("aaa-{}", seen.len()))]).unwrap();
    }
    assert_eq!(seen, all);
}

fn versions(open: Open<'_>) {
    let mut store = open();
    store.insert_keys(&[new_key("k")]).unwrap();
    store.add_version(&version("k", 2, 4), 1).unwrap();
    let key = store.key("k").unwrap().unwrap();
    assert_eq!((key.latest_version, key.revision), (2, 2));
    // A second rotation from the stale revision loses; so does one that skips a version.
    assert!(matches!(store.add_version(&version("k", 3, 5), 1), Err(StoreError::KeyConflict(_))));
    assert!(matches!(store.add_version(&version("k", 4, 5), 2), Err(StoreError::KeyConflict(_))));
    assert!(matches!(store.add_version(&version("missing", 2, 5), 1), Err(StoreError::KeyConflict(_))));
    assert_eq!(store.key_versions("k").unwrap(), vec![version("k", 1, 3), version("k", 2, 4)]);
    assert_eq!(store.versions_by_public_key(&[4; 33]).unwrap(), vec![version("k", 2, 4)]);
    assert!(store.versions_by_public_key(&[5; 33]).unwrap().is_empty());
}

fn states(open: Open<'_>) {
    let mut store = open();
    store.insert_keys(&[new_key("k")]).unwrap();
    store.set_key_state("k", "disabled", None, 1).unwrap();
    assert!(matches!(store.set_key_state("k", "enabled", None, 1), Err(StoreError::KeyConflict(_))));
    store.set_key_state("k", "pending_deletion", Some(1_800_000_000), 2).unwrap();
    let key = store.key("k").unwrap().unwrap();
    assert_eq!((key.state.as_str(), key.deletion_due, key.revision), ("pending_deletion", Some(1_800_000_000), 3));
    assert!(matches!(store.set_key_state("missing", "disabled", None, 1), Err(StoreError::KeyConflict(_))));
}

fn min_decryption(open: Open<'_>) {
    let mut store = open();
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

fn bitgo(public: &str, source: &str, key_name: &str) -> BitgoKeyRow {
    BitgoKeyRow {
        public: public.into(),
        source: source.into(),
        coin: "tbtc".into(),
        key_type: "independent".into(),
        key_name: key_name.into(),
        sealed_prv: Some(vec![9; 40]),
        created_at: 5,
    }
}

fn bitgo_rows(open: Open<'_>) {
    let mut store = open();
    store.insert_keys(&[new_key("bitgo.user.a"), new_key("bitgo.backup.a"), new_key("bitgo.user.b")]).unwrap();
    store.insert_bitgo_key(&bitgo("xpub-a", "user", "bitgo.user.a")).unwrap();
    store.insert_bitgo_key(&BitgoKeyRow { sealed_prv: None, ..bitgo("xpub-a", "backup", "bitgo.backup.a") }).unwrap();
    let again = store.insert_bitgo_key(&bitgo("xpub-a", "user", "bitgo.user.b")).unwrap_err();
    assert_eq!(again.code(), "key_exists");
    assert_eq!(store.bitgo_key("xpub-a", "user").unwrap(), Some(bitgo("xpub-a", "user", "bitgo.user.a")));
    assert_eq!(store.bitgo_key("xpub-a", "backup").unwrap().unwrap().sealed_prv, None);
    assert!(store.bitgo_key("xpub-a", "nobody").unwrap().is_none());
    // A row naming no keyring key breaks the foreign key: a bug, not a duplicate.
    let orphan = store.insert_bitgo_key(&bitgo("xpub-b", "user", "bitgo.user.missing")).unwrap_err();
    assert_ne!(orphan.code(), "key_exists", "{orphan}");
    assert!(store.bitgo_key("xpub-b", "user").unwrap().is_none());
}

fn policy(key: &str, version: i64) -> PolicyRecord {
    PolicyRecord {
        keystore: "default".into(),
        key_name: key.into(),
        version,
        body: format!("{{\"version\":{version}}}").into_bytes(),
        tag: vec![version as u8; 32],
        created_at: 7,
    }
}

fn policies(open: Open<'_>) {
    let mut store = open();
    assert_eq!(store.latest_policy("default", "a").unwrap(), None);
    for row in [policy("a", 1), policy("a", 2), policy("b", 1), policy("", 3)] {
        store.insert_policy(&row).unwrap();
    }
    assert_eq!(store.latest_policy("default", "a").unwrap(), Some(policy("a", 2)));
    assert_eq!(store.latest_policy("default", "").unwrap(), Some(policy("", 3)), "the keystore's own");
    assert_eq!(store.latest_policy("other", "a").unwrap(), None, "keystores are apart");
    let again = store.insert_policy(&PolicyRecord { body: b"{}".to_vec(), ..policy("a", 2) }).unwrap_err();
    assert_eq!(again.code(), "policy_version_conflict");
    assert_eq!(store.latest_policy("default", "a").unwrap(), Some(policy("a", 2)), "the stored row is unchanged");
}

fn record(key: u8, seq: i64, line: &str) -> AuditRow {
    AuditRow { audit_key: vec![key; 32], seq, enclave_id: 1, line: line.into(), stored_at: 100 + seq }
}

fn audit(open: Open<'_>) {
    let mut store = open();
    assert_eq!(store.insert_audit(&[record(1, 1, "a"), record(1, 2, "b")]).unwrap(), 2);
    // Fetched again with a new one: only the new one is added.
    assert_eq!(store.insert_audit(&[record(1, 2, "b"), record(1, 3, "c")]).unwrap(), 1);
    // Another chain (the enclave restarted) starts at 1 again.
    assert_eq!(store.insert_audit(&[record(2, 1, "x")]).unwrap(), 1);
    // A different record under a stored number: refused, and nothing of the batch written.
    let refused = store.insert_audit(&[record(1, 4, "d"), record(1, 2, "edited")]).unwrap_err();
    assert!(matches!(refused, StoreError::AuditConflict { seq: 2, .. }), "{refused:?}");
    assert_eq!(refused.code(), "audit_conflict");
    // One number twice in one batch: the same record is added once, two different ones refused.
    assert_eq!(store.insert_audit(&[record(2, 2, "y"), record(2, 2, "y")]).unwrap(), 1);
    let forked = store.insert_audit(&[record(2, 3, "z"), record(2, 3, "other")]).unwrap_err();
    assert!(matches!(forked, StoreError::AuditConflict { seq: 3, .. }), "{forked:?}");
    // Two chains in one batch: a number is matched within its own chain only.
    assert_eq!(store.insert_audit(&[record(1, 3, "c"), record(4, 3, "w")]).unwrap(), 1);
    let lines = |key, after, limit| -> Vec<String> {
        store.audit_page(&[key; 32], after, limit).unwrap().into_iter().map(|r| r.line).collect()
    };
    assert_eq!(lines(1, 0, 10), ["a", "b", "c"]);
    assert_eq!(lines(1, 1, 1), ["b"]);
    assert_eq!(lines(2, 0, 10), ["x", "y"]);
    assert!(lines(3, 0, 10).is_empty());
    let chains = store.audit_chains().unwrap();
    let summary: Vec<_> = chains.iter().map(|c| (c.audit_key[0], c.first_seq, c.last_seq, c.records)).collect();
    assert_eq!(summary, [(1, 1, 3, 3), (2, 1, 2, 2), (4, 3, 3, 1)]);
    assert_eq!((store.audit_last_seq(&[1; 32]).unwrap(), store.audit_last_seq(&[3; 32]).unwrap()), (Some(3), None));
}

fn key_version_policy(open: Open<'_>) {
    let mut store = open();
    assert!(store.key_version_policy("k", None, true).unwrap().is_none());
    store.insert_keys(&[new_key("k"), new_key("acme/k")]).unwrap();
    store.add_version(&version("k", 2, 4), 1).unwrap();
    store.insert_policy(&policy("k", 1)).unwrap();
    store.insert_policy(&PolicyRecord { keystore: "acme".into(), ..policy("", 1) }).unwrap();
    let read = store.key_version_policy("k", None, true).unwrap().unwrap();
    assert_eq!((read.key.latest_version, read.version), (2, Some(version("k", 2, 4))));
    assert_eq!((read.key_policy, read.keystore_policy), (Some(policy("k", 1)), None));
    let old = store.key_version_policy("k", Some(1), false).unwrap().unwrap();
    assert_eq!((old.version, old.key_policy), (Some(version("k", 1, 3)), None));
    let other = store.key_version_policy("acme/k", Some(3), true).unwrap().unwrap();
    assert_eq!(other.version, None);
    assert_eq!(other.keystore_policy.map(|p| p.keystore), Some("acme".to_owned()));
}

fn exact_bytes(open: Open<'_>) {
    let mut store = open();
    // Zero bytes, every byte value, and a large wrapped value come back exactly.
    let wrapped: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    let mut key = new_key("ünïcödé/ключ");
    key.version.public_key = (0..=255u8).collect();
    key.version.wrapped = wrapped;
    key.key.exportable = true;
    key.key.deletion_due = Some(i64::MAX);
    key.key.created_at = i64::MIN;
    store.insert_keys(std::slice::from_ref(&key)).unwrap();
    let reader = open();
    assert_eq!(reader.key(&key.key.name).unwrap(), Some(key.key.clone()));
    assert_eq!(reader.key_version(&key.key.name, 1).unwrap(), Some(key.version.clone()));
    assert_eq!(reader.versions_by_public_key(&key.version.public_key).unwrap(), [key.version]);
}

fn racing_creates(open: Open<'_>) {
    let mut stores: Vec<_> = (0..3).map(|_| open()).collect();
    let results: Vec<_> = std::thread::scope(|s| {
        let racers: Vec<_> = stores
            .iter_mut()
            .enumerate()
            .map(|(i, store)| {
                s.spawn(move || {
                    let mut key = new_key("contested");
                    key.version.wrapped = vec![i as u8; 61];
                    store.insert_keys(&[key])
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let won: Vec<_> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for lost in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(lost.code(), "key_exists", "{lost}");
    }
    let stored = open().key_version("contested", 1).unwrap().unwrap();
    assert_eq!(stored.wrapped, vec![won[0] as u8; 61], "the winner's row, whole");
}

fn racing_rotations(open: Open<'_>) {
    open().insert_keys(&[new_key("k")]).unwrap();
    let mut stores: Vec<_> = (0..3).map(|_| open()).collect();
    let results: Vec<_> = std::thread::scope(|s| {
        let racers: Vec<_> = stores
            .iter_mut()
            .enumerate()
            .map(|(i, store)| s.spawn(move || store.add_version(&version("k", 2, 10 + i as u8), 1)))
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let won: Vec<_> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for lost in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(lost.code(), "key_conflict", "{lost}");
    }
    let store = open();
    let key = store.key("k").unwrap().unwrap();
    assert_eq!((key.latest_version, key.revision), (2, 2));
    assert_eq!(store.key_versions("k").unwrap(), [version("k", 1, 3), version("k", 2, 10 + won[0] as u8)]);
}

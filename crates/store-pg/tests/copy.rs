//! `gateway migrate-db`'s copy: every row of a SQLite database into an empty PostgreSQL one,
//! exactly, or nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward_store::{
    AuditRow, BitgoKeyRow, KeyStore, MasterKeyRow, PolicyRecord, RootRow, Store, VersionRow, conformance::new_key,
};
use keyward_store_pg::{CopyError, Create, PgDb, PgSettings, copy_from_sqlite, testing::TestServer};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A SQLite database with rows in every table, some with NULLs and every byte value.
fn source(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("keyward.db");
    let mut store = Store::open(&path).unwrap();
    let all_bytes: Vec<u8> = (0..=255).collect();
    store
        .insert(&MasterKeyRow {
            enclave_id: 1,
            kms_encrypted_dek: all_bytes.clone(),
            encrypted_private_key: vec![0; 60],
            public_key: vec![2; 33],
            kms_key_id: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
            key_epoch: 3,
        })
        .unwrap();
    store
        .insert_root(&RootRow {
            root_id: vec![7; 16],
            kms_encrypted_dek: vec![1; 184],
            sealed_root: all_bytes,
            kms_key_id: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
            root_epoch: 1,
        })
        .unwrap();
    let keys: Vec<_> = (0..300).map(|i| new_key(&format!("k-{i:03}"))).chain([new_key("acme/ключ")]).collect();
    store.insert_keys(&keys).unwrap();
    store
        .add_version(
            &VersionRow {
                name: "k-000".into(),
                version: 2,
                root_id: vec![7; 16],
                public_key: vec![9; 33],
                wrapped: vec![0xFF; 80],
                created_at: 5,
            },
            1,
        )
        .unwrap();
    store.set_key_state("k-001", "pending_deletion", Some(1_900_000_000), 1).unwrap();
    let bitgo = BitgoKeyRow {
        public: "xpub-a".into(),
        source: "user".into(),
        coin: "tbtc".into(),
        key_type: "independent".into(),
        key_name: "k-002".into(),
        sealed_prv: None,
        created_at: 5,
    };
    store.insert_bitgo_key(&bitgo).unwrap();
    let policy = PolicyRecord {
        keystore: "acme".into(),
        key_name: String::new(),
        version: 1,
        body: b"{}".to_vec(),
        tag: vec![4; 32],
        created_at: 6,
    };
    store.insert_policy(&policy).unwrap();
    let records: Vec<_> = (1..=5)
        .map(|seq| AuditRow {
            audit_key: vec![3; 32],
            seq,
            enclave_id: 1,
            line: format!("{{\"seq\":{seq}}}"),
            stored_at: seq,
        })
        .collect();
    store.insert_audit(&records).unwrap();
    path
}

fn open(runtime: &tokio::runtime::Runtime, url: &str) -> PgDb {
    let settings: PgSettings = url.parse().unwrap();
    runtime.block_on(PgDb::open(&settings, Create::IfEmpty, 4)).unwrap()
}

#[test]
fn every_row_is_copied_exactly_and_a_second_copy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = source(dir.path());
    let server = TestServer::start().unwrap();
    let runtime = runtime();
    let target = open(&runtime, &server.create_database("target").unwrap());
    let mut heard = Vec::new();
    let report = runtime.block_on(copy_from_sqlite(&path, &target, |table, rows| heard.push((table, rows)))).unwrap();
    let expected = [
        ("enclave_master_keys", 1),
        ("keyring_root", 1),
        ("keys", 301),
        ("key_versions", 302),
        ("bitgo_keys", 1),
        ("key_policies", 1),
        ("audit_records", 5),
    ];
    assert_eq!(report.tables, expected);
    assert_eq!(heard, expected, "progress for every table");

    // Read through the store trait on both sides: the same rows.
    let (sqlite, pg) = (Store::open_existing(&path).unwrap(), target.store());
    assert_eq!(pg.get(1).unwrap(), sqlite.get(1).unwrap());
    assert_eq!(pg.root().unwrap(), KeyStore::root(&sqlite).unwrap());
    for name in ["k-000", "k-001", "acme/ключ"] {
        assert_eq!(pg.key(name).unwrap(), KeyStore::key(&sqlite, name).unwrap());
        assert_eq!(pg.key_versions(name).unwrap(), KeyStore::key_versions(&sqlite, name).unwrap());
    }
    assert_eq!(pg.list_keys(None, None, 1000).unwrap(), KeyStore::list_keys(&sqlite, None, None, 1000).unwrap());
    assert_eq!(pg.bitgo_key("xpub-a", "user").unwrap(), KeyStore::bitgo_key(&sqlite, "xpub-a", "user").unwrap());
    assert_eq!(pg.latest_policy("acme", "").unwrap(), KeyStore::latest_policy(&sqlite, "acme", "").unwrap());
    assert_eq!(pg.audit_page(&[3; 32], 0, 10).unwrap(), KeyStore::audit_page(&sqlite, &[3; 32], 0, 10).unwrap());

    let again = runtime.block_on(copy_from_sqlite(&path, &target, |_, _| {})).unwrap_err();
    assert!(matches!(again, CopyError::TargetNotEmpty { table: "enclave_master_keys" }), "{again}");
    assert_eq!(pg.list_keys(None, None, 1000).unwrap().len(), 300, "nothing added");
}

#[test]
fn a_damaged_row_stops_the_copy_and_leaves_the_target_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = source(dir.path());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE key_versions SET wrapped = 'not bytes' WHERE name = 'k-150'", []).unwrap();
    }
    let server = TestServer::start().unwrap();
    let runtime = runtime();
    let target = open(&runtime, &server.create_database("target").unwrap());
    let refused = runtime.block_on(copy_from_sqlite(&path, &target, |_, _| {})).unwrap_err();
    assert!(
        matches!(&refused, CopyError::Damaged { table: "key_versions", column, .. } if column == "wrapped"),
        "{refused}"
    );
    let pg = target.store();
    assert!(pg.get(1).unwrap().is_none() && pg.list_keys(None, None, 10).unwrap().is_empty(), "nothing was kept");

    // A source of an older schema is refused before anything is read.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("DELETE FROM schema_migrations WHERE version = (SELECT MAX(version) FROM schema_migrations)", [])
        .unwrap();
    let old = runtime.block_on(copy_from_sqlite(&path, &target, |_, _| {})).unwrap_err();
    assert!(matches!(old, CopyError::SourceSchema { .. }), "{old}");
}

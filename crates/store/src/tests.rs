use super::*;

fn row(enclave_id: i64, epoch: i64) -> MasterKeyRow {
    MasterKeyRow {
        enclave_id,
        kms_encrypted_dek: vec![1; 184],
        encrypted_private_key: vec![2; 61],
        public_key: vec![3; 33],
        kms_key_id: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
        key_epoch: epoch,
    }
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("keyward.db")).unwrap();
    (dir, store)
}

#[test]
fn insert_then_get_returns_the_row_exactly() {
    let (_dir, mut store) = temp_store();
    assert_eq!(store.get(1).unwrap(), None);
    store.insert(&row(1, 1)).unwrap();
    assert_eq!(store.get(1).unwrap(), Some(row(1, 1)));
    assert_eq!(store.get(2).unwrap(), None);
}

#[test]
fn insert_never_overwrites() {
    let (_dir, mut store) = temp_store();
    store.insert(&row(1, 1)).unwrap();
    let mut other = row(1, 1);
    other.public_key = vec![9; 33];
    let err = store.insert(&other).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(1)), "{err}");
    assert_eq!(store.get(1).unwrap(), Some(row(1, 1)));
}

#[test]
fn schema_is_the_designed_table_in_wal_mode() {
    let (_dir, store) = temp_store();
    let sql: String = store
        .conn
        .query_row("SELECT sql FROM sqlite_master WHERE name = 'enclave_master_keys'", [], |r| r.get(0))
        .unwrap();
    for column in [
        "enclave_id INTEGER PRIMARY KEY",
        "kms_encrypted_dek BLOB NOT NULL",
        "encrypted_private_key BLOB NOT NULL",
        "public_key BLOB NOT NULL",
        "kms_key_id TEXT NOT NULL",
        "key_epoch INTEGER DEFAULT 1",
    ] {
        assert!(sql.contains(column), "missing {column} in {sql}");
    }
    let mode: String = store.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(store.schema_version().unwrap(), migrations::latest());
}

#[test]
fn reopening_keeps_rows_and_does_not_reapply_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.db");
    Store::open(&path).unwrap().insert(&row(7, 1)).unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get(7).unwrap(), Some(row(7, 1)));
    let applied: i64 = store.conn.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
    assert_eq!(applied, migrations::latest());
}

#[test]
fn a_newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.db");
    {
        let mut store = Store::open(&path).unwrap();
        store.insert(&row(1, 1)).unwrap();
        store.conn.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 0)", []).unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { found: 99, known, .. } if known == migrations::latest()), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.db");
    let junk = b"this is not sqlite, but it is somebody's data; do not overwrite it".repeat(100);
    std::fs::write(&path, &junk).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), junk);
}

#[test]
fn null_epoch_reads_as_the_column_default() {
    let (_dir, mut store) = temp_store();
    store.insert(&row(1, 1)).unwrap();
    store.conn.execute("UPDATE enclave_master_keys SET key_epoch = NULL", []).unwrap();
    assert_eq!(store.get(1).unwrap().unwrap().key_epoch, 1);
}

#[test]
fn rotation_is_a_compare_and_swap_on_the_epoch() {
    let (_dir, mut store) = temp_store();
    store.insert(&row(1, 1)).unwrap();
    let mut next = row(1, 2);
    next.kms_encrypted_dek = vec![8; 184];
    next.encrypted_private_key = vec![9; 61];
    store.rotate(&next, 1).unwrap();
    assert_eq!(store.get(1).unwrap(), Some(next.clone()));

    // A second rotation from the stale epoch 1 loses and changes nothing.
    let mut stale = row(1, 2);
    stale.kms_encrypted_dek = vec![5; 184];
    let err = store.rotate(&stale, 1).unwrap_err();
    assert!(matches!(err, StoreError::EpochConflict { enclave_id: 1, expected_epoch: 1 }), "{err}");
    assert_eq!(store.get(1).unwrap(), Some(next.clone()));

    // Skipping an epoch, or changing the public key, is refused too.
    let err = store.rotate(&row(1, 4), 2).unwrap_err();
    assert!(matches!(err, StoreError::EpochConflict { .. }), "{err}");
    let mut other_key = row(1, 3);
    other_key.public_key = vec![4; 33];
    assert!(store.rotate(&other_key, 2).is_err());
    assert_eq!(store.get(1).unwrap(), Some(next));
}

#[test]
fn rotation_of_a_missing_row_is_a_conflict() {
    let (_dir, mut store) = temp_store();
    let err = store.rotate(&row(3, 2), 1).unwrap_err();
    assert!(matches!(err, StoreError::EpochConflict { enclave_id: 3, .. }), "{err}");
    assert_eq!(store.get(3).unwrap(), None);
}

#[test]
fn debug_of_a_row_shows_lengths_not_bytes() {
    let shown = format!("{:?}", row(1, 1));
    assert!(shown.contains("encrypted_private_key_len: 61"), "{shown}");
}

#[test]
fn a_deleted_database_file_refuses_writes_and_fails_health() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.db");
    let mut store = Store::open(&path).unwrap();
    store.insert(&row(1, 1)).unwrap();
    store.ping().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(store.ping().unwrap_err(), StoreError::FileGone { .. }));
    let err = store.insert(&row(2, 1)).unwrap_err();
    assert!(err.to_string().contains("deleted or replaced"), "{err}");
    assert!(matches!(store.rotate(&row(1, 2), 1).unwrap_err(), StoreError::FileGone { .. }));
}

#[test]
fn open_existing_never_creates_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.db");
    let err = Store::open_existing(&path).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    assert!(!path.exists());
    Store::open(&path).unwrap().insert(&row(1, 1)).unwrap();
    assert_eq!(Store::open_existing(&path).unwrap().get(1).unwrap(), Some(row(1, 1)));
}

#[test]
fn an_empty_file_is_not_a_keyward_database_and_is_left_empty() {
    for open in [Store::open_existing as fn(&Path) -> Result<Store>, Store::open] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyward.db");
        std::fs::write(&path, b"").unwrap();
        let err = open(&path).unwrap_err();
        assert!(matches!(&err, StoreError::NotKeyward { found, .. } if found.contains("empty")), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"", "nothing was written");
        assert!(!dir.path().join("keyward.db-wal").exists());
    }
}

#[test]
fn another_programs_sqlite_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.db");
    {
        let conn = Connection::open(&path).unwrap();
        // Rails keeps a table of this very name; keyward's other table is what is missing.
        conn.execute_batch("CREATE TABLE schema_migrations (version TEXT); CREATE TABLE users (id INTEGER);").unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    for open in [Store::open_existing as fn(&Path) -> Result<Store>, Store::open] {
        let err = open(&path).unwrap_err();
        assert!(matches!(&err, StoreError::NotKeyward { found, .. } if found.contains("users")), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "the file is untouched");
    }
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE enclave_master_keys (x); PRAGMA application_id = 1234;").unwrap();
    }
    let err = Store::open_existing(&path).unwrap_err();
    assert!(matches!(&err, StoreError::NotKeyward { found, .. } if found.contains("0x4d2")), "{err}");
}

#[test]
fn a_database_keyward_created_carries_its_application_id_and_older_ones_still_open() {
    let (dir, store) = temp_store();
    let id: i32 = store.conn.query_row("PRAGMA application_id", [], |r| r.get(0)).unwrap();
    assert_eq!(id, APPLICATION_ID);
    drop(store);
    let path = dir.path().join("keyward.db");
    // A database from before the header was set: keyward's tables, application id 0.
    Connection::open(&path).unwrap().pragma_update(None, "application_id", 0).unwrap();
    let reopened = Store::open_existing(&path).unwrap();
    assert_eq!(reopened.schema_version().unwrap(), migrations::latest());
}

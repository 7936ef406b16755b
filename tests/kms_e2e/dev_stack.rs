//! The `just start` stack leaks nothing: run by `just check-dev-stack` after it has started,
//! signed through, restarted and stopped the stack. Ignored in `just test`, which must not
//! touch a developer's running stack.

use std::path::Path;

use keyward_e2e::{assert_no_secrets, workspace_root};

#[test]
#[ignore = "run by `just check-dev-stack`, after a full `just start` run"]
fn the_dev_stack_logs_and_database_hold_no_key_material() {
    let dev = workspace_root().join(".dev");
    let db = dev.join("data/keyward.db");
    let rows = {
        let conn = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("{}: {e} (run `just check-dev-stack`)", db.display()));
        let mut statement = conn
            .prepare(
                "SELECT enclave_id, kms_encrypted_dek, encrypted_private_key, public_key, kms_key_id, key_epoch \
                 FROM enclave_master_keys",
            )
            .expect("query");
        statement
            .query_map([], |r| {
                Ok(keyward_store::MasterKeyRow {
                    enclave_id: r.get(0)?,
                    kms_encrypted_dek: r.get(1)?,
                    encrypted_private_key: r.get(2)?,
                    public_key: r.get(3)?,
                    kms_key_id: r.get(4)?,
                    key_epoch: r.get(5)?,
                })
            })
            .expect("rows")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows")
    };
    assert_eq!(rows.len(), 1, "the dev stack has one enclave and one key");

    let mut scanned = Vec::new();
    for dir in [dev.join("logs"), dev.join("data")] {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.is_file() {
                scan(&path, &rows);
                scanned.push(path);
            }
        }
    }
    for log in ["gateway.log", "enclave.log", "devkms-proxy.log"] {
        assert!(scanned.iter().any(|p| p.ends_with(log)), "{log} was not there to scan: {scanned:?}");
    }
}

fn scan(path: &Path, rows: &[keyward_store::MasterKeyRow]) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for row in rows {
        assert_no_secrets(&path.display().to_string(), &bytes, row);
    }
}

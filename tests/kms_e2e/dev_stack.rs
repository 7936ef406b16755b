//! The `just start` stack leaks nothing: run by `just check-dev-stack` after it has started,
//! signed through, restarted and stopped the stack. Ignored in `just test`, which must not
//! touch a developer's running stack.

use std::path::Path;

use keyward_e2e::{assert_no_secrets, read_rows, workspace_root};

#[test]
#[ignore = "run by `just check-dev-stack`, after a full `just start` run"]
fn the_dev_stack_logs_and_database_hold_no_key_material() {
    let dev = workspace_root().join(".dev");
    let db = dev.join("data/keyward.db");
    assert!(db.exists(), "{} is missing (run `just check-dev-stack`)", db.display());
    let rows = read_rows(&db);
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

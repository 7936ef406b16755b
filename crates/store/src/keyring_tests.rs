use super::*;
use crate::conformance::new_key;

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
fn sqlite_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    crate::conformance::run_all(|name| {
        let path = dir.path().join(format!("{name}.db"));
        move || Box::new(Store::open(&path).unwrap()) as Box<dyn crate::KeyStore>
    });
}

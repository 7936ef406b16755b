//! Versioned, append-only schema migrations. Never edit or reorder an entry: add a new one.

use std::path::Path;

use rusqlite::{Connection, params};

use crate::{Result, StoreError};

/// `(version, description, SQL)`, in order. Version numbers are contiguous from 1.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "enclave_master_keys as in the KMS integration design",
        "CREATE TABLE enclave_master_keys (
        enclave_id INTEGER PRIMARY KEY,
        kms_encrypted_dek BLOB NOT NULL,
        encrypted_private_key BLOB NOT NULL,
        public_key BLOB NOT NULL,
        kms_key_id TEXT NOT NULL,
        key_epoch INTEGER DEFAULT 1
    );",
    ),
    (
        2,
        "the keyring: one root, named keys, key versions",
        "CREATE TABLE keyring_root (
        slot INTEGER PRIMARY KEY CHECK (slot = 1),
        root_id BLOB NOT NULL,
        kms_encrypted_dek BLOB NOT NULL,
        sealed_root BLOB NOT NULL,
        kms_key_id TEXT NOT NULL,
        root_epoch INTEGER NOT NULL
    );
    CREATE TABLE keys (
        name TEXT PRIMARY KEY,
        key_type TEXT NOT NULL,
        exportable INTEGER NOT NULL,
        origin TEXT NOT NULL,
        state TEXT NOT NULL,
        latest_version INTEGER NOT NULL,
        deletion_due INTEGER,
        created_at INTEGER NOT NULL,
        revision INTEGER NOT NULL
    );
    CREATE TABLE key_versions (
        name TEXT NOT NULL REFERENCES keys (name),
        version INTEGER NOT NULL,
        root_id BLOB NOT NULL,
        public_key BLOB NOT NULL,
        wrapped BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE INDEX key_versions_by_public_key ON key_versions (public_key);",
    ),
    (
        3,
        "keys: the oldest version that still decrypts",
        "ALTER TABLE keys ADD COLUMN min_decryption_version INTEGER NOT NULL DEFAULT 1;",
    ),
    (
        4,
        "BitGo's key provider: which keyring key holds each (pub, source)",
        "CREATE TABLE bitgo_keys (
        pub TEXT NOT NULL,
        source TEXT NOT NULL,
        coin TEXT NOT NULL,
        key_type TEXT NOT NULL,
        key_name TEXT NOT NULL UNIQUE REFERENCES keys (name),
        sealed_prv BLOB,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (pub, source)
    );",
    ),
    (
        5,
        "key policies: every version kept, each tagged by an enclave under the keyring root",
        "CREATE TABLE key_policies (
        keystore TEXT NOT NULL,
        key_name TEXT NOT NULL,
        version INTEGER NOT NULL,
        body BLOB NOT NULL,
        tag BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (keystore, key_name, version)
    );",
    ),
    (
        6,
        "audit records: every chain an enclave signed, kept past its restarts",
        "CREATE TABLE audit_records (
        audit_key BLOB NOT NULL,
        seq INTEGER NOT NULL,
        enclave_id INTEGER NOT NULL,
        line TEXT NOT NULL,
        stored_at INTEGER NOT NULL,
        PRIMARY KEY (audit_key, seq)
    );",
    ),
];

/// Highest schema version this build knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

pub(crate) fn current_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
}

pub(crate) fn apply(conn: &mut Connection, path: &Path) -> Result<()> {
    let sql_err = |op| move |source| StoreError::Sqlite { op, source };
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            description TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        );",
    )
    .map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
    let found = current_version(conn).map_err(sql_err("read schema version"))?;
    if found > latest() {
        return Err(StoreError::SchemaTooNew { path: path.to_owned(), found, known: latest() });
    }
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        let tx = conn.transaction().map_err(sql_err("begin migration"))?;
        tx.execute_batch(sql).map_err(sql_err("apply migration"))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
            params![version, description, now],
        )
        .map_err(sql_err("record migration"))?;
        tx.commit().map_err(sql_err("commit migration"))?;
        tracing::info!(version, description, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_contiguous_from_one() {
        for (i, (version, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i64 + 1);
        }
    }
}

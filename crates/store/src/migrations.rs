//! Versioned, append-only schema migrations. Never edit or reorder an entry: add a new one.

use std::path::Path;

use rusqlite::{Connection, params};

use crate::{Result, StoreError};

/// One schema version: its SQL for each engine. Both engines' tables hold the same columns
/// with the same meaning, so `gateway migrate-db` copies a row as it is.
#[derive(Debug)]
pub struct Migration {
    /// Contiguous from 1.
    pub version: i64,
    /// What it changes.
    pub description: &'static str,
    /// For SQLite.
    pub sqlite: &'static str,
    /// For PostgreSQL: `BYTEA` for blobs, `BIGINT` for integers, `BOOLEAN` for flags, and the
    /// byte order of SQLite (`COLLATE "C"`) on names that are ranged and ordered.
    pub postgres: &'static str,
}

/// Every schema version, in order; both engines apply the same list.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "enclave_master_keys as in the KMS integration design",
        sqlite: "CREATE TABLE enclave_master_keys (
        enclave_id INTEGER PRIMARY KEY,
        kms_encrypted_dek BLOB NOT NULL,
        encrypted_private_key BLOB NOT NULL,
        public_key BLOB NOT NULL,
        kms_key_id TEXT NOT NULL,
        key_epoch INTEGER DEFAULT 1
    );",
        postgres: "CREATE TABLE enclave_master_keys (
        enclave_id BIGINT PRIMARY KEY,
        kms_encrypted_dek BYTEA NOT NULL,
        encrypted_private_key BYTEA NOT NULL,
        public_key BYTEA NOT NULL,
        kms_key_id TEXT NOT NULL,
        key_epoch BIGINT DEFAULT 1
    );",
    },
    Migration {
        version: 2,
        description: "the keyring: one root, named keys, key versions",
        sqlite: "CREATE TABLE keyring_root (
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
        postgres: "CREATE TABLE keyring_root (
        slot BIGINT PRIMARY KEY CHECK (slot = 1),
        root_id BYTEA NOT NULL,
        kms_encrypted_dek BYTEA NOT NULL,
        sealed_root BYTEA NOT NULL,
        kms_key_id TEXT NOT NULL,
        root_epoch BIGINT NOT NULL
    );
    CREATE TABLE keys (
        name TEXT COLLATE \"C\" PRIMARY KEY,
        key_type TEXT NOT NULL,
        exportable BOOLEAN NOT NULL,
        origin TEXT NOT NULL,
        state TEXT NOT NULL,
        latest_version BIGINT NOT NULL,
        deletion_due BIGINT,
        created_at BIGINT NOT NULL,
        revision BIGINT NOT NULL
    );
    CREATE TABLE key_versions (
        name TEXT COLLATE \"C\" NOT NULL REFERENCES keys (name),
        version BIGINT NOT NULL,
        root_id BYTEA NOT NULL,
        public_key BYTEA NOT NULL,
        wrapped BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE INDEX key_versions_by_public_key ON key_versions (public_key);",
    },
    Migration {
        version: 3,
        description: "keys: the oldest version that still decrypts",
        sqlite: "ALTER TABLE keys ADD COLUMN min_decryption_version INTEGER NOT NULL DEFAULT 1;",
        postgres: "ALTER TABLE keys ADD COLUMN min_decryption_version BIGINT NOT NULL DEFAULT 1;",
    },
    Migration {
        version: 4,
        description: "BitGo's key provider: which keyring key holds each (pub, source)",
        sqlite: "CREATE TABLE bitgo_keys (
        pub TEXT NOT NULL,
        source TEXT NOT NULL,
        coin TEXT NOT NULL,
        key_type TEXT NOT NULL,
        key_name TEXT NOT NULL UNIQUE REFERENCES keys (name),
        sealed_prv BLOB,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (pub, source)
    );",
        postgres: "CREATE TABLE bitgo_keys (
        pub TEXT NOT NULL,
        source TEXT NOT NULL,
        coin TEXT NOT NULL,
        key_type TEXT NOT NULL,
        key_name TEXT COLLATE \"C\" NOT NULL UNIQUE REFERENCES keys (name),
        sealed_prv BYTEA,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (pub, source)
    );",
    },
    Migration {
        version: 5,
        description: "key policies: every version kept, each tagged by an enclave under the keyring root",
        sqlite: "CREATE TABLE key_policies (
        keystore TEXT NOT NULL,
        key_name TEXT NOT NULL,
        version INTEGER NOT NULL,
        body BLOB NOT NULL,
        tag BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (keystore, key_name, version)
    );",
        postgres: "CREATE TABLE key_policies (
        keystore TEXT COLLATE \"C\" NOT NULL,
        key_name TEXT COLLATE \"C\" NOT NULL,
        version BIGINT NOT NULL,
        body BYTEA NOT NULL,
        tag BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (keystore, key_name, version)
    );",
    },
    Migration {
        version: 6,
        description: "audit records: every chain an enclave signed, kept past its restarts",
        sqlite: "CREATE TABLE audit_records (
        audit_key BLOB NOT NULL,
        seq INTEGER NOT NULL,
        enclave_id INTEGER NOT NULL,
        line TEXT NOT NULL,
        stored_at INTEGER NOT NULL,
        PRIMARY KEY (audit_key, seq)
    );",
        postgres: "CREATE TABLE audit_records (
        audit_key BYTEA NOT NULL,
        seq BIGINT NOT NULL,
        enclave_id BIGINT NOT NULL,
        line TEXT NOT NULL,
        stored_at BIGINT NOT NULL,
        PRIMARY KEY (audit_key, seq)
    );",
    },
];

/// The table that records applied versions, for PostgreSQL (SQLite's is in [`apply`]).
pub const POSTGRES_SCHEMA_TABLE: &str = "CREATE TABLE schema_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at BIGINT NOT NULL
);";

/// The tables every keyward database holds, in the order rows are copied (referenced tables
/// first).
pub const TABLES: &[&str] =
    &["enclave_master_keys", "keyring_root", "keys", "key_versions", "bitgo_keys", "key_policies", "audit_records"];

/// Highest schema version this build knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
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
    for Migration { version, description, sqlite: sql, .. } in MIGRATIONS.iter().filter(|m| m.version > found) {
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
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
    }
}

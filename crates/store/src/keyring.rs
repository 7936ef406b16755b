//! The keyring's tables: one root row, one row per key (its metadata and state), and one row
//! per key version (wrapped material and public key). Rows are only ever inserted; a key's
//! state, latest version and the root's epoch change by compare-and-swap on a revision (or
//! epoch), so two gateways on one database never overwrite each other.
//!
//! Column values are not validated here beyond what SQL needs: the gateway parses rows into
//! typed values and reports a damaged column by name.

use rusqlite::{OptionalExtension, Row, params};

use crate::{Result, Store, StoreError};

/// The keyring root row, exactly as stored.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootRow {
    /// 16 random bytes.
    pub root_id: Vec<u8>,
    /// KMS `CiphertextBlob` of the data key.
    pub kms_encrypted_dek: Vec<u8>,
    /// The root, AES-256-GCM under the data key.
    pub sealed_root: Vec<u8>,
    /// ARN of the KMS key.
    pub kms_key_id: String,
    /// Data-key generation.
    pub root_epoch: i64,
}

impl std::fmt::Debug for RootRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootRow")
            .field("root_id_len", &self.root_id.len())
            .field("kms_encrypted_dek_len", &self.kms_encrypted_dek.len())
            .field("sealed_root_len", &self.sealed_root.len())
            .field("kms_key_id", &self.kms_key_id)
            .field("root_epoch", &self.root_epoch)
            .finish()
    }
}

/// A key's metadata row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRow {
    /// The key's name (primary key).
    pub name: String,
    /// `secp256k1`, `ed25519`, ...
    pub key_type: String,
    /// Whether the key may be exported.
    pub exportable: bool,
    /// `generated` or `imported`.
    pub origin: String,
    /// `enabled`, `disabled` or `pending_deletion`.
    pub state: String,
    /// The version signing uses.
    pub latest_version: i64,
    /// When a pending deletion takes effect (Unix seconds).
    pub deletion_due: Option<i64>,
    /// When the key was created (Unix seconds).
    pub created_at: i64,
    /// Bumped by every change: the compare-and-swap token.
    pub revision: i64,
    /// Ciphertexts of older versions are refused.
    pub min_decryption_version: i64,
}

/// One key version row.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionRow {
    /// The key's name.
    pub name: String,
    /// The version.
    pub version: i64,
    /// The keyring root it is wrapped under.
    pub root_id: Vec<u8>,
    /// The public key (empty for symmetric keys).
    pub public_key: Vec<u8>,
    /// The wrapped material.
    pub wrapped: Vec<u8>,
    /// When it was made (Unix seconds).
    pub created_at: i64,
}

impl std::fmt::Debug for VersionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionRow")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("public_key_len", &self.public_key.len())
            .field("wrapped_len", &self.wrapped.len())
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A new key: its metadata row and its first version.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewKey {
    /// Metadata (revision 1, latest version 1).
    pub key: KeyRow,
    /// Version 1.
    pub version: VersionRow,
}

const KEY_COLUMNS: &str = "name, key_type, exportable, origin, state, latest_version, deletion_due, created_at, revision, min_decryption_version";
const VERSION_COLUMNS: &str = "name, version, root_id, public_key, wrapped, created_at";

fn key_row(r: &Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok(KeyRow {
        name: r.get(0)?,
        key_type: r.get(1)?,
        exportable: r.get(2)?,
        origin: r.get(3)?,
        state: r.get(4)?,
        latest_version: r.get(5)?,
        deletion_due: r.get(6)?,
        created_at: r.get(7)?,
        revision: r.get(8)?,
        min_decryption_version: r.get(9)?,
    })
}

fn version_row(r: &Row<'_>) -> rusqlite::Result<VersionRow> {
    Ok(VersionRow {
        name: r.get(0)?,
        version: r.get(1)?,
        root_id: r.get(2)?,
        public_key: r.get(3)?,
        wrapped: r.get(4)?,
        created_at: r.get(5)?,
    })
}

pub(crate) fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

impl Store {
    /// The keyring root, if one was stored.
    pub fn root(&self) -> Result<Option<RootRow>> {
        self.conn
            .query_row(
                "SELECT root_id, kms_encrypted_dek, sealed_root, kms_key_id, root_epoch FROM keyring_root WHERE slot = 1",
                [],
                |r| {
                    Ok(RootRow {
                        root_id: r.get(0)?,
                        kms_encrypted_dek: r.get(1)?,
                        sealed_root: r.get(2)?,
                        kms_key_id: r.get(3)?,
                        root_epoch: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|source| StoreError::Sqlite { op: "read keyring root", source })
    }

    /// Stores the first keyring root. [`StoreError::RootExists`] when one is there already
    /// (another gateway won the race; its root is the one to unseal).
    pub fn insert_root(&mut self, row: &RootRow) -> Result<()> {
        self.check_file()?;
        let inserted = self.conn.execute(
            "INSERT INTO keyring_root (slot, root_id, kms_encrypted_dek, sealed_root, kms_key_id, root_epoch) \
             VALUES (1, ?1, ?2, ?3, ?4, ?5)",
            params![row.root_id, row.kms_encrypted_dek, row.sealed_root, row.kms_key_id, row.root_epoch],
        );
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_constraint(&e) => Err(StoreError::RootExists),
            Err(source) => Err(StoreError::Sqlite { op: "insert keyring root", source }),
        }
    }

    /// Replaces the root's data key by compare-and-swap: only if the stored root has the same
    /// id and `expected_epoch`, and the new epoch is one more.
    pub fn rotate_root(&mut self, new: &RootRow, expected_epoch: i64) -> Result<()> {
        self.check_file()?;
        let changed = self
            .conn
            .execute(
                "UPDATE keyring_root SET kms_encrypted_dek = ?1, sealed_root = ?2, kms_key_id = ?3, root_epoch = ?4 \
                 WHERE slot = 1 AND root_id = ?5 AND root_epoch = ?6 AND ?4 = ?6 + 1",
                params![
                    new.kms_encrypted_dek,
                    new.sealed_root,
                    new.kms_key_id,
                    new.root_epoch,
                    new.root_id,
                    expected_epoch
                ],
            )
            .map_err(|source| StoreError::Sqlite { op: "rotate keyring root", source })?;
        if changed != 1 {
            return Err(StoreError::RootEpochConflict { expected_epoch });
        }
        Ok(())
    }

    /// Inserts keys with their first versions, all or none. [`StoreError::KeyExists`] names
    /// the first name that is taken; nothing is written then.
    pub fn insert_keys(&mut self, keys: &[NewKey]) -> Result<()> {
        self.check_file()?;
        let tx = self.conn.transaction().map_err(|source| StoreError::Sqlite { op: "begin", source })?;
        {
            let mut key_insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))
                .map_err(|source| StoreError::Sqlite { op: "prepare key insert", source })?;
            let mut version_insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO key_versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ))
                .map_err(|source| StoreError::Sqlite { op: "prepare version insert", source })?;
            for (i, new) in keys.iter().enumerate() {
                if i == keys.len() / 2 {
                    crash_halfway();
                }
                let k = &new.key;
                key_insert
                    .execute(params![
                        k.name,
                        k.key_type,
                        k.exportable,
                        k.origin,
                        k.state,
                        k.latest_version,
                        k.deletion_due,
                        k.created_at,
                        k.revision,
                        k.min_decryption_version
                    ])
                    .map_err(|e| {
                        if is_constraint(&e) {
                            StoreError::KeyExists(k.name.clone())
                        } else {
                            StoreError::Sqlite { op: "insert key", source: e }
                        }
                    })?;
                let v = &new.version;
                version_insert
                    .execute(params![v.name, v.version, v.root_id, v.public_key, v.wrapped, v.created_at])
                    .map_err(|source| StoreError::Sqlite { op: "insert key version", source })?;
            }
        }
        tx.commit().map_err(|source| StoreError::Sqlite { op: "commit keys", source })
    }

    /// A key's metadata.
    pub fn key(&self, name: &str) -> Result<Option<KeyRow>> {
        self.conn
            .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE name = ?1"))
            .and_then(|mut s| s.query_row([name], key_row).optional())
            .map_err(|source| StoreError::Sqlite { op: "read key", source })
    }

    /// One version of a key.
    pub fn key_version(&self, name: &str, version: i64) -> Result<Option<VersionRow>> {
        self.conn
            .prepare_cached(&format!("SELECT {VERSION_COLUMNS} FROM key_versions WHERE name = ?1 AND version = ?2"))
            .and_then(|mut s| s.query_row(params![name, version], version_row).optional())
            .map_err(|source| StoreError::Sqlite { op: "read key version", source })
    }

    /// Every version of a key, oldest first.
    pub fn key_versions(&self, name: &str) -> Result<Vec<VersionRow>> {
        self.conn
            .prepare_cached(&format!("SELECT {VERSION_COLUMNS} FROM key_versions WHERE name = ?1 ORDER BY version"))
            .and_then(|mut s| s.query_map([name], version_row)?.collect())
            .map_err(|source| StoreError::Sqlite { op: "read key versions", source })
    }

    /// Keys of one keystore in name order after `after` (exclusive), at most `limit`: stable
    /// pages however many keys are added meanwhile. `keystore` `None` is the default keystore
    /// (names without a `/`); `Some(id)` the keys named `<id>/…`.
    pub fn list_keys(&self, keystore: Option<&str>, after: Option<&str>, limit: u32) -> Result<Vec<KeyRow>> {
        let after = after.unwrap_or("");
        let found = match keystore {
            None => self
                .conn
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE name > ?1 AND instr(name, '/') = 0 ORDER BY name LIMIT ?2"
                ))
                .and_then(|mut s| s.query_map(params![after, limit], key_row)?.collect()),
            Some(id) => {
                // `<id>/` up to `<id>0` ('0' follows '/'): exactly the names with the prefix.
                let (start, end) = (format!("{id}/"), format!("{id}0"));
                let after = if after > start.as_str() { after } else { start.as_str() };
                self.conn
                    .prepare_cached(&format!(
                        "SELECT {KEY_COLUMNS} FROM keys WHERE name > ?1 AND name < ?2 ORDER BY name LIMIT ?3"
                    ))
                    .and_then(|mut s| s.query_map(params![after, end, limit], key_row)?.collect())
            }
        };
        found.map_err(|source| StoreError::Sqlite { op: "list keys", source })
    }

    /// The versions whose public key is `public_key`.
    pub fn versions_by_public_key(&self, public_key: &[u8]) -> Result<Vec<VersionRow>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM key_versions WHERE public_key = ?1 ORDER BY name, version LIMIT 100"
            ))
            .and_then(|mut s| s.query_map([public_key], version_row)?.collect())
            .map_err(|source| StoreError::Sqlite { op: "find key by public key", source })
    }

    /// Adds the next version of a key and makes it the latest, if the key is still at
    /// `expected_revision` (compare-and-swap); both or neither.
    pub fn add_version(&mut self, version: &VersionRow, expected_revision: i64) -> Result<()> {
        self.check_file()?;
        let tx = self.conn.transaction().map_err(|source| StoreError::Sqlite { op: "begin", source })?;
        let changed = tx
            .execute(
                "UPDATE keys SET latest_version = ?1, revision = revision + 1 \
                 WHERE name = ?2 AND revision = ?3 AND latest_version = ?1 - 1",
                params![version.version, version.name, expected_revision],
            )
            .map_err(|source| StoreError::Sqlite { op: "advance key version", source })?;
        if changed != 1 {
            return Err(StoreError::KeyConflict(version.name.clone()));
        }
        tx.execute(
            &format!("INSERT INTO key_versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
            params![
                version.name,
                version.version,
                version.root_id,
                version.public_key,
                version.wrapped,
                version.created_at
            ],
        )
        .map_err(|e| {
            if is_constraint(&e) {
                StoreError::KeyConflict(version.name.clone())
            } else {
                StoreError::Sqlite { op: "insert key version", source: e }
            }
        })?;
        tx.commit().map_err(|source| StoreError::Sqlite { op: "commit key version", source })
    }

    /// Sets a key's state (and deletion time) if it is still at `expected_revision`.
    pub fn set_key_state(
        &mut self,
        name: &str,
        state: &str,
        deletion_due: Option<i64>,
        expected_revision: i64,
    ) -> Result<()> {
        self.check_file()?;
        let changed = self
            .conn
            .execute(
                "UPDATE keys SET state = ?1, deletion_due = ?2, revision = revision + 1 WHERE name = ?3 AND revision = ?4",
                params![state, deletion_due, name, expected_revision],
            )
            .map_err(|source| StoreError::Sqlite { op: "set key state", source })?;
        if changed != 1 {
            return Err(StoreError::KeyConflict(name.to_owned()));
        }
        Ok(())
    }

    /// Sets the oldest version that decrypts (at most the latest) if the key is still at
    /// `expected_revision`.
    pub fn set_min_decryption_version(&mut self, name: &str, version: i64, expected_revision: i64) -> Result<()> {
        self.check_file()?;
        let changed = self
            .conn
            .execute(
                "UPDATE keys SET min_decryption_version = ?1, revision = revision + 1 \
                 WHERE name = ?2 AND revision = ?3 AND ?1 >= 1 AND ?1 <= latest_version",
                params![version, name, expected_revision],
            )
            .map_err(|source| StoreError::Sqlite { op: "set min_decryption_version", source })?;
        if changed != 1 {
            return Err(StoreError::KeyConflict(name.to_owned()));
        }
        Ok(())
    }

    /// How many keys there are.
    pub fn key_count(&self) -> Result<i64> {
        self.conn
            .query_row("SELECT count(*) FROM keys", [], |r| r.get(0))
            .map_err(|source| StoreError::Sqlite { op: "count keys", source })
    }
}

#[cfg(test)]
#[path = "keyring_tests.rs"]
mod tests;

/// With the `fault-injection` feature and `KEYWARD_FAULT=store:insert-keys:halfway`, aborts
/// the process with half a batch inserted and the transaction open, as a crash would.
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub fn crash_halfway() {
    if std::env::var("KEYWARD_FAULT").is_ok_and(|v| v == "store:insert-keys:halfway") {
        eprintln!("KEYWARD_FAULT: aborting at store:insert-keys:halfway");
        std::process::abort();
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
#[doc(hidden)]
pub fn crash_halfway() {}

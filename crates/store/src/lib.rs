#![doc = include_str!("../README.md")]

mod audit;
mod bitgo;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod keyring;
pub mod migrations;
mod policies;
pub mod remote;
mod traits;

pub use audit::{AuditChainRow, AuditRow};
pub use bitgo::BitgoKeyRow;
pub use keyring::{KeyRow, NewKey, RootRow, VersionRow, crash_halfway};
pub use policies::PolicyRecord;
pub use traits::{AsyncKeyReads, KeyStore, KeyVersionPolicy, split_name};

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// One row of `enclave_master_keys`, exactly as stored. Column values are not validated
/// here: the gateway parses them into typed values and reports a damaged row by name.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MasterKeyRow {
    /// Primary key.
    pub enclave_id: i64,
    /// KMS `CiphertextBlob` of the data key.
    pub kms_encrypted_dek: Vec<u8>,
    /// AES-256-GCM sealed private key.
    pub encrypted_private_key: Vec<u8>,
    /// SEC1 compressed public key.
    pub public_key: Vec<u8>,
    /// ARN of the KMS key.
    pub kms_key_id: String,
    /// Data-key generation (NULL is read as the column default, 1).
    pub key_epoch: i64,
}

impl std::fmt::Debug for MasterKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeyRow")
            .field("enclave_id", &self.enclave_id)
            .field("kms_encrypted_dek_len", &self.kms_encrypted_dek.len())
            .field("encrypted_private_key_len", &self.encrypted_private_key.len())
            .field("public_key_len", &self.public_key.len())
            .field("kms_key_id", &self.kms_key_id)
            .field("key_epoch", &self.key_epoch)
            .finish()
    }
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or read.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// Database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database file does not exist and was not to be created.
    #[error(
        "database {path} does not exist; refusing to create an empty one (that would mean a new key): restore it from a backup, or for a first installation run `gateway init-db`"
    )]
    Missing {
        /// Database file.
        path: PathBuf,
    },
    /// The file exists but is not an initialised keyward database (an empty file, or another
    /// program's SQLite database); it is left untouched.
    #[error(
        "{path} is not an initialised keyward database ({found}); refusing to use it, because a database without keyward's rows would mean generating new keys: point database.path (or database.url) at the right database or restore it, or for a first installation start from an empty one and run `gateway init-db`"
    )]
    NotKeyward {
        /// Database file.
        path: PathBuf,
        /// What the file holds instead.
        found: String,
    },
    /// The database was written by a newer keyward.
    #[error(
        "database {path} has schema version {found}, newer than the {known} this build knows; refusing to touch it (upgrade keyward)"
    )]
    SchemaTooNew {
        /// Database file.
        path: PathBuf,
        /// Version found.
        found: i64,
        /// Highest version known to this build.
        known: i64,
    },
    /// A row already exists for this enclave id; nothing was written.
    #[error("enclave {0} already has a master key row; refusing to overwrite it")]
    AlreadyExists(i64),
    /// The compare-and-swap of a rotation found another epoch or public key; nothing was written.
    #[error(
        "enclave {enclave_id}: stored key_epoch is not {expected_epoch} (or its public key changed); rotation not applied"
    )]
    EpochConflict {
        /// Enclave id.
        enclave_id: i64,
        /// The epoch the rotation started from.
        expected_epoch: i64,
    },
    /// A keyring root is stored already; nothing was written (unseal the stored one).
    #[error("a keyring root is stored already; refusing to store another")]
    RootExists,
    /// The root's compare-and-swap found another epoch (or root); nothing was written.
    #[error("the keyring root is no longer at epoch {expected_epoch}; root rotation not applied")]
    RootEpochConflict {
        /// The epoch the rotation started from.
        expected_epoch: i64,
    },
    /// A key of this name exists; nothing was written.
    #[error("a key named {0} exists already")]
    KeyExists(String),
    /// This version of a key's policy is stored already (another set-policy won); nothing was
    /// written.
    #[error("version {version} of the policy of {key} is stored already")]
    PolicyExists {
        /// `keystore/key`.
        key: String,
        /// The version.
        version: i64,
    },
    /// An audit record with this chain and sequence number is stored already with other
    /// content; nothing of the batch was written. Records are never replaced.
    #[error("audit record {seq} of chain {chain} is stored already with other content")]
    AuditConflict {
        /// The chain's audit key, hex.
        chain: String,
        seq: i64,
    },
    /// The key changed since it was read (another gateway rotated it, or changed its
    /// state); nothing was written.
    #[error("key {0} changed meanwhile; nothing was written (read it again)")]
    KeyConflict(String),
    /// The database file was deleted or replaced while open; writes are refused because they
    /// would be lost.
    #[error(
        "database file {path} was deleted or replaced while the gateway ran; refusing to write (restore it and restart)"
    )]
    FileGone {
        /// Database file.
        path: PathBuf,
    },
    /// The database is read-only (file or filesystem); nothing can be stored.
    #[error(
        "database {path} is read-only: stored keys still work, but new keys and rotations cannot be stored (make it writable and restart)"
    )]
    ReadOnly {
        /// Database file.
        path: PathBuf,
    },
    /// The store behind the host (the enclave's TLS API reaches it through the gateway)
    /// failed or could not be reached; `code` is the host's code for it.
    #[error("the host's store: {message}")]
    Remote {
        /// The code the host reported (`database_unavailable` when it could not be reached).
        code: &'static str,
        /// What happened.
        message: String,
    },
    /// A PostgreSQL failure (unreachable, busy, full, ...); `code` classifies it as for SQLite.
    #[error("database {op} failed: {message}")]
    Postgres {
        /// What we were doing.
        op: &'static str,
        /// The stable code (`database_unavailable`, `database_busy`, ...).
        code: &'static str,
        /// The driver's error (never a password: the driver does not show it).
        message: String,
    },
    /// Any other SQLite failure (locked, disk full, ...).
    #[error("database {op} failed: {source}")]
    Sqlite {
        /// What we were doing.
        op: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// The stable code `/v1/health` and API errors report for this failure (the message,
    /// with paths, stays in the log). The database's own errors are classified here, so
    /// nothing above the store depends on which database it is.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Missing { .. } => "database_missing",
            StoreError::NotKeyward { .. } => "database_not_keyward",
            StoreError::SchemaTooNew { .. } => "database_schema_too_new",
            StoreError::FileGone { .. } => "database_file_gone",
            StoreError::ReadOnly { .. } => "database_read_only",
            StoreError::AlreadyExists(_) => "row_exists",
            StoreError::RootExists => "root_exists",
            StoreError::RootEpochConflict { .. } => "rotation_conflict",
            StoreError::KeyExists(_) => "key_exists",
            StoreError::PolicyExists { .. } => "policy_version_conflict",
            StoreError::AuditConflict { .. } => "audit_conflict",
            StoreError::KeyConflict(_) => "key_conflict",
            StoreError::EpochConflict { .. } => "rotation_conflict",
            StoreError::Remote { code, .. } | StoreError::Postgres { code, .. } => code,
            StoreError::Sqlite { source: rusqlite::Error::SqliteFailure(e, _), .. } => match e.code {
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => "database_busy",
                rusqlite::ErrorCode::DiskFull => "database_full",
                _ => "database_unavailable",
            },
            _ => "database_unavailable",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Create {
    IfMissing,
    Never,
}

/// An open keyward database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Device and inode of the file as opened: a database deleted or replaced under a running
    /// gateway must not silently take writes that would vanish on restart.
    identity: (u64, u64),
    /// SQLite fell back to read-only (a read-only file or filesystem): keys can be read and
    /// used, nothing can be stored, and health says so.
    read_only: bool,
}

impl Store {
    /// Opens (creating if absent) the database at `path` and applies pending migrations. An
    /// existing file that is not a keyward database is refused ([`StoreError::NotKeyward`]).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, Create::IfMissing)
    }

    /// Opens an existing keyward database; a missing file is [`StoreError::Missing`] and a
    /// file that is not an initialised keyward database is [`StoreError::NotKeyward`], never a
    /// new empty database (which, for a custodian, would mean generating a new key).
    pub fn open_existing(path: &Path) -> Result<Self> {
        Self::open_with(path, Create::Never)
    }

    fn open_with(path: &Path, create: Create) -> Result<Self> {
        let open_err = |source| StoreError::Open { path: path.to_owned(), source };
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let existed = path.exists();
        match create {
            Create::IfMissing if !existed => flags |= OpenFlags::SQLITE_OPEN_CREATE,
            Create::Never if !existed => return Err(StoreError::Missing { path: path.to_owned() }),
            Create::IfMissing | Create::Never => {}
        }
        let mut conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        // Only a file this call creates becomes a keyward database; an existing file must be
        // one already. Checked before anything could write to it.
        if existed {
            check_is_keyward(&conn, path)?;
        } else {
            conn.pragma_update(None, "application_id", APPLICATION_ID).map_err(open_err)?;
        }
        // Reading the header here turns "file is not a database" into an open error.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        // 16 MiB of page cache (SQLite's default is 2 MiB): with a million keys the B-trees'
        // inner pages stay cached, so a lookup of a random key reads one leaf.
        conn.pragma_update(None, "cache_size", -16_384).map_err(open_err)?;
        migrations::apply(&mut conn, path)?;
        let identity = file_identity(path).map_err(|e| StoreError::Open {
            path: path.to_owned(),
            source: rusqlite::Error::InvalidPath(format!("cannot stat the database file: {e}").into()),
        })?;
        let read_only = conn.is_readonly(rusqlite::MAIN_DB).map_err(open_err)? || !can_write(&conn);
        if read_only {
            tracing::error!(path = %path.display(), "database is read-only: stored keys can be used, but no key can be provisioned or rotated");
        }
        Ok(Store { conn, path: path.to_owned(), identity, read_only })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current schema version.
    pub fn schema_version(&self) -> Result<i64> {
        migrations::current_version(&self.conn)
            .map_err(|source| StoreError::Sqlite { op: "read schema version", source })
    }

    /// Reads the row for `enclave_id`.
    pub fn get(&self, enclave_id: i64) -> Result<Option<MasterKeyRow>> {
        self.conn
            .query_row(
                "SELECT enclave_id, kms_encrypted_dek, encrypted_private_key, public_key, \
                 kms_key_id, COALESCE(key_epoch, 1) FROM enclave_master_keys WHERE enclave_id = ?1",
                [enclave_id],
                |r| {
                    Ok(MasterKeyRow {
                        enclave_id: r.get(0)?,
                        kms_encrypted_dek: r.get(1)?,
                        encrypted_private_key: r.get(2)?,
                        public_key: r.get(3)?,
                        kms_key_id: r.get(4)?,
                        key_epoch: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(|source| StoreError::Sqlite { op: "read master key", source })
    }

    /// Fails if the database file was deleted or replaced since it was opened, or if it is
    /// read-only.
    pub fn check_file(&self) -> Result<()> {
        match file_identity(&self.path) {
            Ok(identity) if identity != self.identity => return Err(StoreError::FileGone { path: self.path.clone() }),
            Err(_) => return Err(StoreError::FileGone { path: self.path.clone() }),
            Ok(_) => {}
        }
        if self.read_only {
            return Err(StoreError::ReadOnly { path: self.path.clone() });
        }
        Ok(())
    }

    /// Inserts a new row. Fails with [`StoreError::AlreadyExists`] if the enclave id has one.
    pub fn insert(&mut self, row: &MasterKeyRow) -> Result<()> {
        self.check_file()?;
        let tx = self.conn.transaction().map_err(|source| StoreError::Sqlite { op: "begin", source })?;
        let inserted = tx.execute(
            "INSERT INTO enclave_master_keys \
             (enclave_id, kms_encrypted_dek, encrypted_private_key, public_key, kms_key_id, key_epoch) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                row.enclave_id,
                row.kms_encrypted_dek,
                row.encrypted_private_key,
                row.public_key,
                row.kms_key_id,
                row.key_epoch
            ],
        );
        match inserted {
            Ok(_) => tx.commit().map_err(|source| StoreError::Sqlite { op: "commit insert", source }),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::AlreadyExists(row.enclave_id))
            }
            Err(source) => Err(StoreError::Sqlite { op: "insert master key", source }),
        }
    }

    /// Replaces the data key of a row by compare-and-swap: applies only if the stored row
    /// still has `expected_epoch` and the same public key, and the new epoch is one more.
    pub fn rotate(&mut self, new: &MasterKeyRow, expected_epoch: i64) -> Result<()> {
        self.check_file()?;
        let tx = self.conn.transaction().map_err(|source| StoreError::Sqlite { op: "begin", source })?;
        let changed = tx
            .execute(
                "UPDATE enclave_master_keys SET kms_encrypted_dek = ?1, encrypted_private_key = ?2, \
                 kms_key_id = ?3, key_epoch = ?4 \
                 WHERE enclave_id = ?5 AND COALESCE(key_epoch, 1) = ?6 AND public_key = ?7 AND ?4 = ?6 + 1",
                params![
                    new.kms_encrypted_dek,
                    new.encrypted_private_key,
                    new.kms_key_id,
                    new.key_epoch,
                    new.enclave_id,
                    expected_epoch,
                    new.public_key
                ],
            )
            .map_err(|source| StoreError::Sqlite { op: "rotate master key", source })?;
        if changed != 1 {
            return Err(StoreError::EpochConflict { enclave_id: new.enclave_id, expected_epoch });
        }
        tx.commit().map_err(|source| StoreError::Sqlite { op: "commit rotation", source })
    }

    /// Checks that the database answers a read (for health reporting).
    pub fn ping(&self) -> Result<()> {
        self.check_file()?;
        self.conn
            .query_row("SELECT count(*) FROM enclave_master_keys", [], |r| r.get::<_, i64>(0))
            .map(|_| ())
            .map_err(|source| StoreError::Sqlite { op: "health read", source })
    }
}

/// SQLite's `application_id` header field of every database keyward creates ("KWRD").
pub const APPLICATION_ID: i32 = 0x4B57_5244;

/// An existing file is keyward's if its header says so, or (databases created before the
/// header was set) if it holds keyward's own two tables and no application id of another
/// program. An empty file has neither.
fn check_is_keyward(conn: &Connection, path: &Path) -> Result<()> {
    let open_err = |source| StoreError::Open { path: path.to_owned(), source };
    let application_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(open_err)?;
    if application_id == APPLICATION_ID {
        return Ok(());
    }
    let mut statement = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .map_err(open_err)?;
    let tables: Vec<String> = statement.query_map([], |r| r.get(0)).and_then(Iterator::collect).map_err(open_err)?;
    let ours = ["enclave_master_keys", "schema_migrations"].iter().all(|t| tables.iter().any(|found| found == t));
    if application_id == 0 && ours {
        return Ok(());
    }
    let found = match (application_id, tables.is_empty()) {
        (0, true) => "an empty database without tables".to_owned(),
        (0, false) => format!("tables {}", tables.iter().take(8).cloned().collect::<Vec<_>>().join(", ")),
        (other, _) => format!("application id {other:#x} of another program"),
    };
    Err(StoreError::NotKeyward { path: path.to_owned(), found })
}

/// Whether a write transaction can start. SQLite reports a database on a read-only filesystem
/// as writable when it could reuse a `-shm` file left by a process that died; only an
/// attempt to take the write lock tells.
fn can_write(conn: &Connection) -> bool {
    match conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;") {
        Ok(()) => true,
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ReadOnly => false,
        // Busy (another writer) or anything else is not evidence of a read-only database.
        Err(_) => {
            let _ = conn.execute_batch("ROLLBACK;");
            true
        }
    }
}

fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests;

//! The store trait on PostgreSQL: the same rows and the same rules as SQLite's (INSERT-only
//! rows, compare-and-swap updates, every write one transaction), in PostgreSQL's SQL. Under
//! READ COMMITTED a compare-and-swap `UPDATE … WHERE revision = $n` that waited for another
//! writer re-reads the row, so of two racing rotations exactly one changes it.

use keyward_store::{
    AuditChainRow, AuditRow, BitgoKeyRow, KeyRow, KeyStore, KeyVersionPolicy, MasterKeyRow, NewKey, PolicyRecord,
    Result, RootRow, StoreError, VersionRow,
};
use tokio_postgres::{Row, Statement};

use crate::{PgDb, is_unique_violation, pg};

/// One caller's view of the pool: every method takes a connection for its own duration.
#[derive(Debug)]
pub(crate) struct PgStore {
    pub(crate) db: PgDb,
}

const KEY_COLUMNS: &str = "name, key_type, exportable, origin, state, latest_version, deletion_due, created_at, revision, min_decryption_version";
const VERSION_COLUMNS: &str = "name, version, root_id, public_key, wrapped, created_at";

fn key_row(r: &Row) -> std::result::Result<KeyRow, tokio_postgres::Error> {
    Ok(KeyRow {
        name: r.try_get(0)?,
        key_type: r.try_get(1)?,
        exportable: r.try_get(2)?,
        origin: r.try_get(3)?,
        state: r.try_get(4)?,
        latest_version: r.try_get(5)?,
        deletion_due: r.try_get(6)?,
        created_at: r.try_get(7)?,
        revision: r.try_get(8)?,
        min_decryption_version: r.try_get(9)?,
    })
}

fn version_row(r: &Row) -> std::result::Result<VersionRow, tokio_postgres::Error> {
    Ok(VersionRow {
        name: r.try_get(0)?,
        version: r.try_get(1)?,
        root_id: r.try_get(2)?,
        public_key: r.try_get(3)?,
        wrapped: r.try_get(4)?,
        created_at: r.try_get(5)?,
    })
}

fn policy_row(r: &Row) -> std::result::Result<PolicyRecord, tokio_postgres::Error> {
    Ok(PolicyRecord {
        keystore: r.try_get(0)?,
        key_name: r.try_get(1)?,
        version: r.try_get(2)?,
        body: r.try_get(3)?,
        tag: r.try_get(4)?,
        created_at: r.try_get(5)?,
    })
}

fn audit_row(r: &Row) -> std::result::Result<AuditRow, tokio_postgres::Error> {
    Ok(AuditRow {
        audit_key: r.try_get(0)?,
        seq: r.try_get(1)?,
        enclave_id: r.try_get(2)?,
        line: r.try_get(3)?,
        stored_at: r.try_get(4)?,
    })
}

fn all<T>(
    rows: Vec<Row>,
    decode: fn(&Row) -> std::result::Result<T, tokio_postgres::Error>,
    op: &'static str,
) -> Result<Vec<T>> {
    rows.iter().map(decode).collect::<std::result::Result<_, _>>().map_err(pg(op))
}

fn one<T>(
    row: Option<Row>,
    decode: fn(&Row) -> std::result::Result<T, tokio_postgres::Error>,
    op: &'static str,
) -> Result<Option<T>> {
    row.as_ref().map(decode).transpose().map_err(pg(op))
}

/// A statement of `tx`'s connection, parsed once per connection.
async fn prepared(tx: &deadpool_postgres::Transaction<'_>, sql: &str, op: &'static str) -> Result<Statement> {
    tx.prepare_cached(sql).await.map_err(pg(op))
}

impl PgStore {
    /// Runs one query that returns at most one row.
    fn query_opt(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<Row>> {
        self.db.block(async {
            let client = self.db.client(op).await?;
            let statement = client.prepare_cached(sql).await.map_err(pg(op))?;
            client.query_opt(&statement, params).await.map_err(pg(op))
        })
    }

    fn query(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        self.db.block(async {
            let client = self.db.client(op).await?;
            let statement = client.prepare_cached(sql).await.map_err(pg(op))?;
            client.query(&statement, params).await.map_err(pg(op))
        })
    }

    /// Runs one statement; a unique violation becomes `taken()`.
    fn execute(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        taken: impl FnOnce() -> StoreError,
    ) -> Result<u64> {
        self.db.block(async {
            let client = self.db.client(op).await?;
            let statement = client.prepare_cached(sql).await.map_err(pg(op))?;
            client
                .execute(&statement, params)
                .await
                .map_err(|e| if is_unique_violation(&e) { taken() } else { pg(op)(e) })
        })
    }

    /// The first name of `names`, in their order, that is stored or repeats an earlier one.
    fn first_taken(&self, names: &[&str]) -> Result<String> {
        let stored: Vec<String> = self
            .query("find taken names", "SELECT name FROM keys WHERE name = ANY($1)", &[&names])?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let first = names.iter().find(|n| !seen.insert(**n) || stored.iter().any(|s| s == **n));
        Ok(first.unwrap_or(&names[0]).to_string())
    }
}

impl KeyStore for PgStore {
    fn ping(&self) -> Result<()> {
        self.query_opt("health read", "SELECT 1", &[]).map(|_| ())
    }

    fn get(&self, enclave_id: i64) -> Result<Option<MasterKeyRow>> {
        let row = self.query_opt(
            "read master key",
            "SELECT enclave_id, kms_encrypted_dek, encrypted_private_key, public_key, kms_key_id, \
             COALESCE(key_epoch, 1) FROM enclave_master_keys WHERE enclave_id = $1",
            &[&enclave_id],
        )?;
        one(
            row,
            |r| {
                Ok(MasterKeyRow {
                    enclave_id: r.try_get(0)?,
                    kms_encrypted_dek: r.try_get(1)?,
                    encrypted_private_key: r.try_get(2)?,
                    public_key: r.try_get(3)?,
                    kms_key_id: r.try_get(4)?,
                    key_epoch: r.try_get(5)?,
                })
            },
            "read master key",
        )
    }

    fn insert(&mut self, row: &MasterKeyRow) -> Result<()> {
        self.execute(
            "insert master key",
            "INSERT INTO enclave_master_keys \
             (enclave_id, kms_encrypted_dek, encrypted_private_key, public_key, kms_key_id, key_epoch) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &row.enclave_id,
                &row.kms_encrypted_dek,
                &row.encrypted_private_key,
                &row.public_key,
                &row.kms_key_id,
                &row.key_epoch,
            ],
            || StoreError::AlreadyExists(row.enclave_id),
        )
        .map(|_| ())
    }

    fn rotate(&mut self, new: &MasterKeyRow, expected_epoch: i64) -> Result<()> {
        let changed = self.execute(
            "rotate master key",
            "UPDATE enclave_master_keys SET kms_encrypted_dek = $1, encrypted_private_key = $2, \
             kms_key_id = $3, key_epoch = $4 \
             WHERE enclave_id = $5 AND COALESCE(key_epoch, 1) = $6 AND public_key = $7 AND $4::int8 = $6::int8 + 1",
            &[
                &new.kms_encrypted_dek,
                &new.encrypted_private_key,
                &new.kms_key_id,
                &new.key_epoch,
                &new.enclave_id,
                &expected_epoch,
                &new.public_key,
            ],
            || StoreError::EpochConflict { enclave_id: new.enclave_id, expected_epoch },
        )?;
        if changed != 1 {
            return Err(StoreError::EpochConflict { enclave_id: new.enclave_id, expected_epoch });
        }
        Ok(())
    }

    fn root(&self) -> Result<Option<RootRow>> {
        let row = self.query_opt(
            "read keyring root",
            "SELECT root_id, kms_encrypted_dek, sealed_root, kms_key_id, root_epoch FROM keyring_root WHERE slot = 1",
            &[],
        )?;
        one(
            row,
            |r| {
                Ok(RootRow {
                    root_id: r.try_get(0)?,
                    kms_encrypted_dek: r.try_get(1)?,
                    sealed_root: r.try_get(2)?,
                    kms_key_id: r.try_get(3)?,
                    root_epoch: r.try_get(4)?,
                })
            },
            "read keyring root",
        )
    }

    fn insert_root(&mut self, row: &RootRow) -> Result<()> {
        self.execute(
            "insert keyring root",
            "INSERT INTO keyring_root (slot, root_id, kms_encrypted_dek, sealed_root, kms_key_id, root_epoch) \
             VALUES (1, $1, $2, $3, $4, $5)",
            &[&row.root_id, &row.kms_encrypted_dek, &row.sealed_root, &row.kms_key_id, &row.root_epoch],
            || StoreError::RootExists,
        )
        .map(|_| ())
    }

    fn rotate_root(&mut self, new: &RootRow, expected_epoch: i64) -> Result<()> {
        let changed = self.execute(
            "rotate keyring root",
            "UPDATE keyring_root SET kms_encrypted_dek = $1, sealed_root = $2, kms_key_id = $3, root_epoch = $4 \
             WHERE slot = 1 AND root_id = $5 AND root_epoch = $6 AND $4::int8 = $6::int8 + 1",
            &[
                &new.kms_encrypted_dek,
                &new.sealed_root,
                &new.kms_key_id,
                &new.root_epoch,
                &new.root_id,
                &expected_epoch,
            ],
            || StoreError::RootEpochConflict { expected_epoch },
        )?;
        if changed != 1 {
            return Err(StoreError::RootEpochConflict { expected_epoch });
        }
        Ok(())
    }

    /// One statement per table for the whole batch (arrays, `UNNEST`), in one transaction.
    fn insert_keys(&mut self, keys: &[NewKey]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = keys.iter().map(|k| k.key.name.as_str()).collect();
        let column = |f: fn(&KeyRow) -> &str| keys.iter().map(|k| f(&k.key)).collect::<Vec<&str>>();
        let int = |f: fn(&KeyRow) -> i64| keys.iter().map(|k| f(&k.key)).collect::<Vec<i64>>();
        let (key_types, origins, states) = (column(|k| &k.key_type), column(|k| &k.origin), column(|k| &k.state));
        let exportable: Vec<bool> = keys.iter().map(|k| k.key.exportable).collect();
        let deletion_due: Vec<Option<i64>> = keys.iter().map(|k| k.key.deletion_due).collect();
        let (latest, created, revision, min_decryption) =
            (int(|k| k.latest_version), int(|k| k.created_at), int(|k| k.revision), int(|k| k.min_decryption_version));
        let version_names: Vec<&str> = keys.iter().map(|k| k.version.name.as_str()).collect();
        let versions: Vec<i64> = keys.iter().map(|k| k.version.version).collect();
        let bytes = |f: fn(&VersionRow) -> &[u8]| keys.iter().map(|k| f(&k.version)).collect::<Vec<&[u8]>>();
        let (root_ids, public_keys, wrapped) = (bytes(|v| &v.root_id), bytes(|v| &v.public_key), bytes(|v| &v.wrapped));
        let version_created: Vec<i64> = keys.iter().map(|k| k.version.created_at).collect();
        let stored = self.db.block(async {
            let mut client = self.db.client("insert keys").await?;
            let tx = client.transaction().await.map_err(pg("begin"))?;
            let insert_keys = &format!(
                "INSERT INTO keys ({KEY_COLUMNS}) SELECT * FROM UNNEST($1::text[], $2::text[], $3::bool[], \
                 $4::text[], $5::text[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[])"
            );
            let inserted = tx
                .execute(
                    &prepared(&tx, insert_keys, "insert keys").await?,
                    &[
                        &names,
                        &key_types,
                        &exportable,
                        &origins,
                        &states,
                        &latest,
                        &deletion_due,
                        &created,
                        &revision,
                        &min_decryption,
                    ],
                )
                .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => return Ok(false),
                other => other.map_err(pg("insert keys"))?,
            };
            // The same crash point as SQLite's (`KEYWARD_FAULT=store:insert-keys:halfway`).
            keyward_store::crash_halfway();
            let insert_versions = &format!(
                "INSERT INTO key_versions ({VERSION_COLUMNS}) SELECT * FROM UNNEST($1::text[], $2::int8[], \
                 $3::bytea[], $4::bytea[], $5::bytea[], $6::int8[])"
            );
            tx.execute(
                &prepared(&tx, insert_versions, "insert key versions").await?,
                &[&version_names, &versions, &root_ids, &public_keys, &wrapped, &version_created],
            )
            .await
            .map_err(pg("insert key versions"))?;
            tx.commit().await.map_err(pg("commit keys"))?;
            Ok(true)
        })?;
        if stored { Ok(()) } else { Err(StoreError::KeyExists(self.first_taken(&names)?)) }
    }

    fn key(&self, name: &str) -> Result<Option<KeyRow>> {
        let row = self.query_opt("read key", &format!("SELECT {KEY_COLUMNS} FROM keys WHERE name = $1"), &[&name])?;
        one(row, key_row, "read key")
    }

    fn key_version(&self, name: &str, version: i64) -> Result<Option<VersionRow>> {
        let row = self.query_opt(
            "read key version",
            &format!("SELECT {VERSION_COLUMNS} FROM key_versions WHERE name = $1 AND version = $2"),
            &[&name, &version],
        )?;
        one(row, version_row, "read key version")
    }

    fn key_versions(&self, name: &str) -> Result<Vec<VersionRow>> {
        let rows = self.query(
            "read key versions",
            &format!("SELECT {VERSION_COLUMNS} FROM key_versions WHERE name = $1 ORDER BY version"),
            &[&name],
        )?;
        all(rows, version_row, "read key versions")
    }

    /// As SQLite's: the default keystore is the names without `/`, a keystore `id` the names
    /// from `id/` up to `id0`, in byte order (the columns are `COLLATE "C"`).
    fn list_keys(&self, keystore: Option<&str>, after: Option<&str>, limit: u32) -> Result<Vec<KeyRow>> {
        let after = after.unwrap_or("");
        let limit = i64::from(limit);
        let rows = match keystore {
            None => self.query(
                "list keys",
                &format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE name > $1 AND strpos(name, '/') = 0 ORDER BY name LIMIT $2"
                ),
                &[&after, &limit],
            )?,
            Some(id) => {
                let (start, end) = (format!("{id}/"), format!("{id}0"));
                let after = if after > start.as_str() { after } else { start.as_str() };
                self.query(
                    "list keys",
                    &format!("SELECT {KEY_COLUMNS} FROM keys WHERE name > $1 AND name < $2 ORDER BY name LIMIT $3"),
                    &[&after, &end, &limit],
                )?
            }
        };
        all(rows, key_row, "list keys")
    }

    fn versions_by_public_key(&self, public_key: &[u8]) -> Result<Vec<VersionRow>> {
        let rows = self.query(
            "find key by public key",
            &format!(
                "SELECT {VERSION_COLUMNS} FROM key_versions WHERE public_key = $1 ORDER BY name, version LIMIT 100"
            ),
            &[&public_key],
        )?;
        all(rows, version_row, "find key by public key")
    }

    fn add_version(&mut self, version: &VersionRow, expected_revision: i64) -> Result<()> {
        let conflict = || StoreError::KeyConflict(version.name.clone());
        self.db.block(async {
            let mut client = self.db.client("add key version").await?;
            let tx = client.transaction().await.map_err(pg("begin"))?;
            let changed = tx
                .execute(
                    &prepared(
                        &tx,
                        "UPDATE keys SET latest_version = $1::int8, revision = revision + 1 \
                         WHERE name = $2 AND revision = $3 AND latest_version = $1::int8 - 1",
                        "advance key version",
                    )
                    .await?,
                    &[&version.version, &version.name, &expected_revision],
                )
                .await
                .map_err(pg("advance key version"))?;
            if changed != 1 {
                return Err(conflict());
            }
            let insert_version =
                &format!("INSERT INTO key_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)");
            tx.execute(
                &prepared(&tx, insert_version, "insert key version").await?,
                &[
                    &version.name,
                    &version.version,
                    &version.root_id,
                    &version.public_key,
                    &version.wrapped,
                    &version.created_at,
                ],
            )
            .await
            .map_err(|e| if is_unique_violation(&e) { conflict() } else { pg("insert key version")(e) })?;
            tx.commit().await.map_err(pg("commit key version"))
        })
    }

    fn set_key_state(
        &mut self,
        name: &str,
        state: &str,
        deletion_due: Option<i64>,
        expected_revision: i64,
    ) -> Result<()> {
        let changed = self.execute(
            "set key state",
            "UPDATE keys SET state = $1, deletion_due = $2, revision = revision + 1 WHERE name = $3 AND revision = $4",
            &[&state, &deletion_due, &name, &expected_revision],
            || StoreError::KeyConflict(name.to_owned()),
        )?;
        if changed != 1 {
            return Err(StoreError::KeyConflict(name.to_owned()));
        }
        Ok(())
    }

    fn set_min_decryption_version(&mut self, name: &str, version: i64, expected_revision: i64) -> Result<()> {
        let changed = self.execute(
            "set min_decryption_version",
            "UPDATE keys SET min_decryption_version = $1, revision = revision + 1 \
             WHERE name = $2 AND revision = $3 AND $1::int8 >= 1 AND $1::int8 <= latest_version",
            &[&version, &name, &expected_revision],
            || StoreError::KeyConflict(name.to_owned()),
        )?;
        if changed != 1 {
            return Err(StoreError::KeyConflict(name.to_owned()));
        }
        Ok(())
    }

    fn insert_bitgo_key(&mut self, row: &BitgoKeyRow) -> Result<()> {
        // The primary key and the unique key name are duplicates; a row naming no keyring key
        // breaks the foreign key, which is a bug and stays a database error.
        self.execute(
            "insert bitgo key",
            "INSERT INTO bitgo_keys (pub, source, coin, key_type, key_name, sealed_prv, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&row.public, &row.source, &row.coin, &row.key_type, &row.key_name, &row.sealed_prv, &row.created_at],
            || StoreError::KeyExists(format!("{} ({})", row.public, row.source)),
        )
        .map(|_| ())
    }

    fn bitgo_key(&self, public: &str, source: &str) -> Result<Option<BitgoKeyRow>> {
        let row = self.query_opt(
            "read bitgo key",
            "SELECT pub, source, coin, key_type, key_name, sealed_prv, created_at FROM bitgo_keys \
             WHERE pub = $1 AND source = $2",
            &[&public, &source],
        )?;
        one(
            row,
            |r| {
                Ok(BitgoKeyRow {
                    public: r.try_get(0)?,
                    source: r.try_get(1)?,
                    coin: r.try_get(2)?,
                    key_type: r.try_get(3)?,
                    key_name: r.try_get(4)?,
                    sealed_prv: r.try_get(5)?,
                    created_at: r.try_get(6)?,
                })
            },
            "read bitgo key",
        )
    }

    fn insert_policy(&mut self, row: &PolicyRecord) -> Result<()> {
        self.execute(
            "insert key policy",
            "INSERT INTO key_policies (keystore, key_name, version, body, tag, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&row.keystore, &row.key_name, &row.version, &row.body, &row.tag, &row.created_at],
            || StoreError::PolicyExists { key: format!("{}/{}", row.keystore, row.key_name), version: row.version },
        )
        .map(|_| ())
    }

    fn latest_policy(&self, keystore: &str, key: &str) -> Result<Option<PolicyRecord>> {
        let row = self.query_opt(
            "read key policy",
            "SELECT keystore, key_name, version, body, tag, created_at FROM key_policies \
             WHERE keystore = $1 AND key_name = $2 ORDER BY version DESC LIMIT 1",
            &[&keystore, &key],
        )?;
        one(row, policy_row, "read key policy")
    }

    /// One statement for the whole batch (the gateway appends a second's records at once);
    /// the rows already stored are then read in one query and must be the same records.
    fn insert_audit(&mut self, rows: &[AuditRow]) -> Result<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        let keys: Vec<&[u8]> = rows.iter().map(|r| r.audit_key.as_slice()).collect();
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let enclaves: Vec<i64> = rows.iter().map(|r| r.enclave_id).collect();
        let lines: Vec<&str> = rows.iter().map(|r| r.line.as_str()).collect();
        let stored_at: Vec<i64> = rows.iter().map(|r| r.stored_at).collect();
        self.db.block(async {
            let mut client = self.db.client("append audit records").await?;
            let tx = client.transaction().await.map_err(pg("begin audit append"))?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO audit_records (audit_key, seq, enclave_id, line, stored_at) \
                     SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::int8[], $4::text[], $5::int8[]) \
                     ON CONFLICT (audit_key, seq) DO NOTHING RETURNING audit_key, seq",
                )
                .await
                .map_err(pg("append audit records"))?;
            let added = tx
                .query(&insert, &[&keys, &seqs, &enclaves, &lines, &stored_at])
                .await
                .map_err(pg("append audit records"))?;
            let mut stored = Vec::new();
            if added.len() < rows.len() {
                let read = tx
                    .prepare_cached(
                        "SELECT r.audit_key, r.seq, r.line FROM audit_records r \
                         JOIN UNNEST($1::bytea[], $2::int8[]) AS w (audit_key, seq) \
                         ON r.audit_key = w.audit_key AND r.seq = w.seq",
                    )
                    .await
                    .map_err(pg("read audit records"))?;
                stored = tx.query(&read, &[&keys, &seqs]).await.map_err(pg("read audit records"))?;
            }
            let decode = |r: &Row| -> std::result::Result<(Vec<u8>, i64, String), tokio_postgres::Error> {
                Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
            };
            let stored = stored.iter().map(decode).collect::<std::result::Result<Vec<_>, _>>();
            let stored = stored.map_err(pg("read audit records"))?;
            // A record already stored must be the same record (a chain never forks); if one
            // is not, nothing of the batch is kept.
            let stored: std::collections::HashMap<(&[u8], i64), &str> =
                stored.iter().map(|(key, seq, line)| ((key.as_slice(), *seq), line.as_str())).collect();
            let forked = |r: &&AuditRow| stored.get(&(r.audit_key.as_slice(), r.seq)).is_some_and(|l| *l != r.line);
            if let Some(row) = rows.iter().find(forked) {
                let chain = row.audit_key.iter().map(|b| format!("{b:02x}")).collect();
                return Err(StoreError::AuditConflict { chain, seq: row.seq });
            }
            tx.commit().await.map_err(pg("commit audit append"))?;
            Ok(added.len())
        })
    }

    fn audit_page(&self, audit_key: &[u8], after: i64, limit: u32) -> Result<Vec<AuditRow>> {
        let rows = self.query(
            "read audit records",
            "SELECT audit_key, seq, enclave_id, line, stored_at FROM audit_records \
             WHERE audit_key = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&audit_key, &after, &i64::from(limit)],
        )?;
        all(rows, audit_row, "read audit records")
    }

    fn audit_chains(&self) -> Result<Vec<AuditChainRow>> {
        let rows = self.query(
            "list audit chains",
            "SELECT audit_key, MIN(enclave_id), MIN(seq), MAX(seq), COUNT(*), MIN(stored_at) \
             FROM audit_records GROUP BY audit_key ORDER BY MIN(stored_at), audit_key",
            &[],
        )?;
        all(
            rows,
            |r| {
                Ok(AuditChainRow {
                    audit_key: r.try_get(0)?,
                    enclave_id: r.try_get(1)?,
                    first_seq: r.try_get(2)?,
                    last_seq: r.try_get(3)?,
                    records: r.try_get(4)?,
                    first_stored_at: r.try_get(5)?,
                })
            },
            "list audit chains",
        )
    }

    fn audit_last_seq(&self, audit_key: &[u8]) -> Result<Option<i64>> {
        let row = self.query_opt(
            "read the last audit record",
            "SELECT MAX(seq) FROM audit_records WHERE audit_key = $1",
            &[&audit_key],
        )?;
        Ok(one(row, |r| r.try_get::<_, Option<i64>>(0), "read the last audit record")?.flatten())
    }

    fn key_version_policy(
        &self,
        name: &str,
        version: Option<i64>,
        with_policies: bool,
    ) -> Result<Option<KeyVersionPolicy>> {
        self.db.block(self.db.key_version_policy(name, version, with_policies))
    }
}

impl PgDb {
    /// One round trip: the key, its version and (when asked for) the newest policy rows of
    /// the key and of its keystore, joined in one query.
    pub(crate) async fn key_version_policy(
        &self,
        name: &str,
        version: Option<i64>,
        with_policies: bool,
    ) -> Result<Option<KeyVersionPolicy>> {
        const OP: &str = "read key, version and policies";
        let (keystore, local) = keyward_store::split_name(name);
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {keys}, v.name, v.version, v.root_id, v.public_key, v.wrapped, v.created_at, \
             p.keystore, p.key_name, p.version, p.body, p.tag, p.created_at, \
             s.keystore, s.key_name, s.version, s.body, s.tag, s.created_at \
             FROM keys k \
             LEFT JOIN key_versions v ON v.name = k.name AND v.version = COALESCE($2::int8, k.latest_version) \
             LEFT JOIN LATERAL (SELECT * FROM key_policies WHERE $5 AND keystore = $3 AND key_name = $4 \
               ORDER BY version DESC LIMIT 1) p ON true \
             LEFT JOIN LATERAL (SELECT * FROM key_policies WHERE $5 AND keystore = $3 AND key_name = '' \
               ORDER BY version DESC LIMIT 1) s ON true \
             WHERE k.name = $1",
                keys = KEY_COLUMNS.split(", ").map(|c| format!("k.{c}")).collect::<Vec<_>>().join(", ")
            )
        });
        let client = self.client(OP).await?;
        let statement = client.prepare_cached(&SQL).await.map_err(pg(OP))?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&name, &version, &keystore, &local, &with_policies];
        let Some(row) = client.query_opt(&statement, &params).await.map_err(pg(OP))? else {
            return Ok(None);
        };
        let decode = |r: &Row| -> std::result::Result<KeyVersionPolicy, tokio_postgres::Error> {
            let version = match r.try_get::<_, Option<String>>(10)? {
                None => None,
                Some(name) => Some(VersionRow {
                    name,
                    version: r.try_get(11)?,
                    root_id: r.try_get(12)?,
                    public_key: r.try_get(13)?,
                    wrapped: r.try_get(14)?,
                    created_at: r.try_get(15)?,
                }),
            };
            let policy = |at: usize| -> std::result::Result<Option<PolicyRecord>, tokio_postgres::Error> {
                let Some(keystore) = r.try_get::<_, Option<String>>(at)? else { return Ok(None) };
                Ok(Some(PolicyRecord {
                    keystore,
                    key_name: r.try_get(at + 1)?,
                    version: r.try_get(at + 2)?,
                    body: r.try_get(at + 3)?,
                    tag: r.try_get(at + 4)?,
                    created_at: r.try_get(at + 5)?,
                }))
            };
            Ok(KeyVersionPolicy { key: key_row(r)?, version, key_policy: policy(16)?, keystore_policy: policy(22)? })
        };
        decode(&row).map(Some).map_err(pg(OP))
    }
}

impl keyward_store::AsyncKeyReads for PgDb {
    fn key_version_policy<'a>(
        &'a self,
        name: &'a str,
        version: Option<i64>,
        with_policies: bool,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Option<KeyVersionPolicy>>> + Send + 'a>> {
        Box::pin(self.timed(PgDb::key_version_policy(self, name, version, with_policies)))
    }
}

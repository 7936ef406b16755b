//! Audit records, kept past enclave restarts. An enclave signs its own chain under an audit
//! key born at its start; the gateway fetches the records and appends them here, one row per
//! record, keyed by the chain's key and the record's sequence number. Rows are inserted once
//! and never changed: fetching a record again is a no-op, a different record under the same
//! number is refused. The store does not judge a record: `keyward audit verify` checks the
//! chain and its signatures.

use rusqlite::params;

use crate::{Result, Store, StoreError};

/// One audit record as stored: the line `GET /v1/admin/audit` exports (JSON), and where it
/// belongs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRow {
    /// The Ed25519 key of the chain (32 bytes).
    pub audit_key: Vec<u8>,
    pub seq: i64,
    pub enclave_id: i64,
    pub line: String,
    /// Unix seconds.
    pub stored_at: i64,
}

/// A stored chain: its key, the enclave that signed it, and the records held.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditChainRow {
    pub audit_key: Vec<u8>,
    pub enclave_id: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub records: i64,
    /// When its first record was stored (Unix seconds).
    pub first_stored_at: i64,
}

fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}

impl Store {
    /// See [`crate::KeyStore::insert_audit`].
    pub fn insert_audit(&mut self, rows: &[AuditRow]) -> Result<usize> {
        self.check_file()?;
        let tx = self.conn.transaction().map_err(sql("begin audit append"))?;
        let mut new = 0;
        for row in rows {
            let added = tx
                .execute(
                    "INSERT INTO audit_records (audit_key, seq, enclave_id, line, stored_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (audit_key, seq) DO NOTHING",
                    params![row.audit_key, row.seq, row.enclave_id, row.line, row.stored_at],
                )
                .map_err(sql("append audit record"))?;
            if added == 1 {
                new += 1;
                continue;
            }
            let stored: String = tx
                .query_row(
                    "SELECT line FROM audit_records WHERE audit_key = ?1 AND seq = ?2",
                    params![row.audit_key, row.seq],
                    |r| r.get(0),
                )
                .map_err(sql("read audit record"))?;
            if stored != row.line {
                return Err(StoreError::AuditConflict { chain: hex(&row.audit_key), seq: row.seq });
            }
        }
        tx.commit().map_err(sql("commit audit append"))?;
        Ok(new)
    }

    /// See [`crate::KeyStore::audit_page`].
    pub fn audit_page(&self, audit_key: &[u8], after: i64, limit: u32) -> Result<Vec<AuditRow>> {
        self.check_file()?;
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT audit_key, seq, enclave_id, line, stored_at FROM audit_records \
                 WHERE audit_key = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(sql("read audit records"))?;
        let rows = statement
            .query_map(params![audit_key, after, limit], |r| {
                Ok(AuditRow {
                    audit_key: r.get(0)?,
                    seq: r.get(1)?,
                    enclave_id: r.get(2)?,
                    line: r.get(3)?,
                    stored_at: r.get(4)?,
                })
            })
            .map_err(sql("read audit records"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql("read audit records"))
    }

    /// See [`crate::KeyStore::audit_last_seq`].
    pub fn audit_last_seq(&self, audit_key: &[u8]) -> Result<Option<i64>> {
        self.check_file()?;
        self.conn
            .query_row("SELECT MAX(seq) FROM audit_records WHERE audit_key = ?1", params![audit_key], |r| r.get(0))
            .map_err(sql("read the last audit record"))
    }

    /// See [`crate::KeyStore::audit_chains`].
    pub fn audit_chains(&self) -> Result<Vec<AuditChainRow>> {
        self.check_file()?;
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT audit_key, MIN(enclave_id), MIN(seq), MAX(seq), COUNT(*), MIN(stored_at) \
                 FROM audit_records GROUP BY audit_key ORDER BY MIN(stored_at), audit_key",
            )
            .map_err(sql("list audit chains"))?;
        let rows = statement
            .query_map([], |r| {
                Ok(AuditChainRow {
                    audit_key: r.get(0)?,
                    enclave_id: r.get(1)?,
                    first_seq: r.get(2)?,
                    last_seq: r.get(3)?,
                    records: r.get(4)?,
                    first_stored_at: r.get(5)?,
                })
            })
            .map_err(sql("list audit chains"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql("list audit chains"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

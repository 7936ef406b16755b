//! Key policies: every version of a key's policy is a row of its own, inserted once and never
//! changed, so the newest is the highest version and two gateways setting the same version
//! meet at the primary key. The store does not judge a row: the enclave checks its tag.

use rusqlite::{OptionalExtension, params};

use crate::{Result, Store, StoreError};

/// One version of a key's policy, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyRecord {
    pub keystore: String,
    pub key_name: String,
    pub version: i64,
    /// The policy document its signers signed.
    pub body: Vec<u8>,
    /// The enclave's tag over the row (32 bytes).
    pub tag: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
}

impl Store {
    /// Stores a policy version; one already stored is [`StoreError::PolicyExists`].
    pub fn insert_policy(&mut self, row: &PolicyRecord) -> Result<()> {
        self.check_file()?;
        self.conn
            .execute(
                "INSERT INTO key_policies (keystore, key_name, version, body, tag, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![row.keystore, row.key_name, row.version, row.body, row.tag, row.created_at],
            )
            .map_err(|source| {
                if crate::keyring::is_constraint(&source) {
                    StoreError::PolicyExists { key: format!("{}/{}", row.keystore, row.key_name), version: row.version }
                } else {
                    StoreError::Sqlite { op: "insert key policy", source }
                }
            })?;
        Ok(())
    }

    /// The newest policy version of `keystore`/`key`.
    pub fn latest_policy(&self, keystore: &str, key: &str) -> Result<Option<PolicyRecord>> {
        self.check_file()?;
        self.conn
            .query_row(
                "SELECT keystore, key_name, version, body, tag, created_at FROM key_policies \
                 WHERE keystore = ?1 AND key_name = ?2 ORDER BY version DESC LIMIT 1",
                params![keystore, key],
                |r| {
                    Ok(PolicyRecord {
                        keystore: r.get(0)?,
                        key_name: r.get(1)?,
                        version: r.get(2)?,
                        body: r.get(3)?,
                        tag: r.get(4)?,
                        created_at: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(|source| StoreError::Sqlite { op: "read key policy", source })
    }
}

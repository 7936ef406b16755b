//! BitGo's key provider: one row per `(pub, source)`, naming the keyring key that holds it and,
//! for a key BitGo brought (`POST /key`), its `prv` sealed in the enclave under that key.

use rusqlite::{OptionalExtension, params};

use crate::{Result, Store, StoreError};

/// A key BitGo's wallet manager stored or had generated.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BitgoKeyRow {
    /// BitGo's `pub`: an opaque string (an xpub for keys keyward generated).
    pub public: String,
    /// `user` or `backup`.
    pub source: String,
    /// The coin it was stored or generated for.
    pub coin: String,
    /// `independent` or `tss`.
    pub key_type: String,
    /// The keyring key: a `secret` key sealing `sealed_prv`, or a `bip32` key.
    pub key_name: String,
    /// The `prv`, sealed by the enclave under `key_name` (absent for generated keys).
    pub sealed_prv: Option<Vec<u8>>,
    /// Unix seconds.
    pub created_at: i64,
}

impl std::fmt::Debug for BitgoKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitgoKeyRow")
            .field("public", &self.public)
            .field("source", &self.source)
            .field("coin", &self.coin)
            .field("key_type", &self.key_type)
            .field("key_name", &self.key_name)
            .field("sealed_prv_len", &self.sealed_prv.as_ref().map(Vec::len))
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl Store {
    /// Stores a row; one for the same `(pub, source)` is [`StoreError::KeyExists`], never
    /// replaced.
    pub fn insert_bitgo_key(&mut self, row: &BitgoKeyRow) -> Result<()> {
        self.check_file()?;
        self.conn
            .execute(
                "INSERT INTO bitgo_keys (pub, source, coin, key_type, key_name, sealed_prv, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![row.public, row.source, row.coin, row.key_type, row.key_name, row.sealed_prv, row.created_at],
            )
            .map_err(|source| {
                // A row naming no keyring key breaks the foreign key: that is a bug, not a duplicate.
                let foreign_key = matches!(&source, rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY);
                if crate::keyring::is_constraint(&source) && !foreign_key {
                    StoreError::KeyExists(format!("{} ({})", row.public, row.source))
                } else {
                    StoreError::Sqlite { op: "insert bitgo key", source }
                }
            })?;
        Ok(())
    }

    /// The row of `(public, source)`.
    pub fn bitgo_key(&self, public: &str, source: &str) -> Result<Option<BitgoKeyRow>> {
        self.check_file()?;
        self.conn
            .query_row(
                "SELECT pub, source, coin, key_type, key_name, sealed_prv, created_at FROM bitgo_keys \
                 WHERE pub = ?1 AND source = ?2",
                params![public, source],
                |r| {
                    Ok(BitgoKeyRow {
                        public: r.get(0)?,
                        source: r.get(1)?,
                        coin: r.get(2)?,
                        key_type: r.get(3)?,
                        key_name: r.get(4)?,
                        sealed_prv: r.get(5)?,
                        created_at: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(|source| StoreError::Sqlite { op: "read bitgo key", source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_sealed_prv_as_a_length() {
        let row = BitgoKeyRow {
            public: "xpub-a".into(),
            source: "user".into(),
            coin: "tbtc".into(),
            key_type: "independent".into(),
            key_name: "bitgo.user.a".into(),
            sealed_prv: Some(vec![9; 40]),
            created_at: 5,
        };
        let shown = format!("{row:?}");
        assert!(shown.contains("sealed_prv_len: Some(40)") && !shown.contains("9, 9"), "{shown}");
    }
}

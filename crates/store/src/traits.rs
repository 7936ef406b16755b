//! The store as its users see it: the rows of the master keys and of the keyring, and the
//! compare-and-swap updates on them. [`crate::Store`] (SQLite) implements it today; nothing
//! above this trait depends on SQLite, so another database (PostgreSQL, a later issue) can
//! implement it with the same SQL. Every method is one transaction: a write is whole or absent.

use std::fmt;

use crate::{
    AuditChainRow, AuditRow, BitgoKeyRow, KeyRow, MasterKeyRow, NewKey, PolicyRecord, Result, RootRow, VersionRow,
};

/// The keyward database behind the gateway.
pub trait KeyStore: Send + fmt::Debug {
    /// Checks the database is still reachable and the file it opened is still in place.
    fn ping(&self) -> Result<()>;

    /// The master-key row of an enclave.
    fn get(&self, enclave_id: i64) -> Result<Option<MasterKeyRow>>;
    /// Stores a new master-key row; an existing row for the enclave id is an error, never
    /// overwritten.
    fn insert(&mut self, row: &MasterKeyRow) -> Result<()>;
    /// Replaces the row if it is still at `expected_epoch` with the same public key.
    fn rotate(&mut self, new: &MasterKeyRow, expected_epoch: i64) -> Result<()>;

    /// The keyring root, if one is stored.
    fn root(&self) -> Result<Option<RootRow>>;
    /// Stores the first root; a second is an error ([`crate::StoreError::RootExists`]).
    fn insert_root(&mut self, row: &RootRow) -> Result<()>;
    /// Replaces the root if it is still at `expected_epoch`.
    fn rotate_root(&mut self, new: &RootRow, expected_epoch: i64) -> Result<()>;

    /// Stores keys with their first versions, all or none.
    fn insert_keys(&mut self, keys: &[NewKey]) -> Result<()>;
    /// A key.
    fn key(&self, name: &str) -> Result<Option<KeyRow>>;
    /// One version of a key.
    fn key_version(&self, name: &str, version: i64) -> Result<Option<VersionRow>>;
    /// Every version of a key, oldest first.
    fn key_versions(&self, name: &str) -> Result<Vec<VersionRow>>;
    /// Up to `limit` keys in name order, after `after`.
    fn list_keys(&self, keystore: Option<&str>, after: Option<&str>, limit: u32) -> Result<Vec<KeyRow>>;
    /// The versions whose public key is `public_key`.
    fn versions_by_public_key(&self, public_key: &[u8]) -> Result<Vec<VersionRow>>;
    /// Adds a version if the key is still at `expected_revision`.
    fn add_version(&mut self, version: &VersionRow, expected_revision: i64) -> Result<()>;
    /// Changes a key's state if it is still at `expected_revision`.
    fn set_key_state(
        &mut self,
        name: &str,
        state: &str,
        deletion_due: Option<i64>,
        expected_revision: i64,
    ) -> Result<()>;
    /// Sets the oldest version that decrypts if the key is still at `expected_revision`.
    fn set_min_decryption_version(&mut self, name: &str, version: i64, expected_revision: i64) -> Result<()>;

    /// Stores BitGo's row for a `(pub, source)`; an existing one is an error, never replaced.
    fn insert_bitgo_key(&mut self, row: &BitgoKeyRow) -> Result<()>;
    /// BitGo's row for `(public, source)`.
    fn bitgo_key(&self, public: &str, source: &str) -> Result<Option<BitgoKeyRow>>;

    /// Stores a key's policy version; an existing one is [`crate::StoreError::PolicyExists`].
    fn insert_policy(&mut self, row: &PolicyRecord) -> Result<()>;
    /// The newest policy version of `keystore`/`key`.
    fn latest_policy(&self, keystore: &str, key: &str) -> Result<Option<PolicyRecord>>;
    /// Appends audit records (all or none); one stored already with the same content is
    /// skipped, with other content is [`crate::StoreError::AuditConflict`]. Returns how many
    /// were new.
    fn insert_audit(&mut self, rows: &[AuditRow]) -> Result<usize>;
    /// Records of chain `audit_key` after `after`, oldest first, at most `limit`.
    fn audit_page(&self, audit_key: &[u8], after: i64, limit: u32) -> Result<Vec<AuditRow>>;
    /// Every chain stored, oldest first.
    fn audit_chains(&self) -> Result<Vec<AuditChainRow>>;
    /// The highest sequence number stored of chain `audit_key`.
    fn audit_last_seq(&self, audit_key: &[u8]) -> Result<Option<i64>>;

    /// A key, one version of it (`None`: the latest), and when asked for the newest policy
    /// rows of the key and of its keystore: what one key operation reads, in one call (a
    /// remote store makes it one round trip).
    fn key_version_policy(
        &self,
        name: &str,
        version: Option<i64>,
        with_policies: bool,
    ) -> Result<Option<KeyVersionPolicy>> {
        let Some(key) = self.key(name)? else { return Ok(None) };
        let row = self.key_version(name, version.unwrap_or(key.latest_version))?;
        let (own, keystore) = if with_policies {
            let (keystore, local) = split_name(name);
            (self.latest_policy(keystore, local)?, self.latest_policy(keystore, "")?)
        } else {
            (None, None)
        };
        Ok(Some(KeyVersionPolicy { key, version: row, key_policy: own, keystore_policy: keystore }))
    }
}

/// What [`KeyStore::key_version_policy`] reads.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyVersionPolicy {
    pub key: KeyRow,
    pub version: Option<VersionRow>,
    /// The key's own newest policy row.
    pub key_policy: Option<PolicyRecord>,
    /// The keystore's newest policy row (key name empty).
    pub keystore_policy: Option<PolicyRecord>,
}

/// The read every key operation makes, answered without a thread of its own by a store whose
/// driver is async (PostgreSQL's): the gateway awaits it on its runtime instead of handing a
/// blocking call to a thread that then waits for the driver. Same rows as
/// [`KeyStore::key_version_policy`].
pub trait AsyncKeyReads: Send + Sync {
    fn key_version_policy<'a>(
        &'a self,
        name: &'a str,
        version: Option<i64>,
        with_policies: bool,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Option<KeyVersionPolicy>>> + Send + 'a>>;
}

/// `<keystore>/<name>`, or the default keystore's bare name (as `keyward_proto` splits them).
pub fn split_name(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or(("default", name))
}

impl KeyStore for crate::Store {
    fn ping(&self) -> Result<()> {
        crate::Store::ping(self)
    }
    fn get(&self, enclave_id: i64) -> Result<Option<MasterKeyRow>> {
        crate::Store::get(self, enclave_id)
    }
    fn insert(&mut self, row: &MasterKeyRow) -> Result<()> {
        crate::Store::insert(self, row)
    }
    fn rotate(&mut self, new: &MasterKeyRow, expected_epoch: i64) -> Result<()> {
        crate::Store::rotate(self, new, expected_epoch)
    }
    fn root(&self) -> Result<Option<RootRow>> {
        crate::Store::root(self)
    }
    fn insert_root(&mut self, row: &RootRow) -> Result<()> {
        crate::Store::insert_root(self, row)
    }
    fn rotate_root(&mut self, new: &RootRow, expected_epoch: i64) -> Result<()> {
        crate::Store::rotate_root(self, new, expected_epoch)
    }
    fn insert_keys(&mut self, keys: &[NewKey]) -> Result<()> {
        crate::Store::insert_keys(self, keys)
    }
    fn key(&self, name: &str) -> Result<Option<KeyRow>> {
        crate::Store::key(self, name)
    }
    fn key_version(&self, name: &str, version: i64) -> Result<Option<VersionRow>> {
        crate::Store::key_version(self, name, version)
    }
    fn key_versions(&self, name: &str) -> Result<Vec<VersionRow>> {
        crate::Store::key_versions(self, name)
    }
    fn list_keys(&self, keystore: Option<&str>, after: Option<&str>, limit: u32) -> Result<Vec<KeyRow>> {
        crate::Store::list_keys(self, keystore, after, limit)
    }
    fn versions_by_public_key(&self, public_key: &[u8]) -> Result<Vec<VersionRow>> {
        crate::Store::versions_by_public_key(self, public_key)
    }
    fn add_version(&mut self, version: &VersionRow, expected_revision: i64) -> Result<()> {
        crate::Store::add_version(self, version, expected_revision)
    }
    fn set_key_state(
        &mut self,
        name: &str,
        state: &str,
        deletion_due: Option<i64>,
        expected_revision: i64,
    ) -> Result<()> {
        crate::Store::set_key_state(self, name, state, deletion_due, expected_revision)
    }
    fn set_min_decryption_version(&mut self, name: &str, version: i64, expected_revision: i64) -> Result<()> {
        crate::Store::set_min_decryption_version(self, name, version, expected_revision)
    }
    fn insert_bitgo_key(&mut self, row: &BitgoKeyRow) -> Result<()> {
        crate::Store::insert_bitgo_key(self, row)
    }
    fn bitgo_key(&self, public: &str, source: &str) -> Result<Option<BitgoKeyRow>> {
        crate::Store::bitgo_key(self, public, source)
    }
    fn insert_policy(&mut self, row: &PolicyRecord) -> Result<()> {
        crate::Store::insert_policy(self, row)
    }
    fn latest_policy(&self, keystore: &str, key: &str) -> Result<Option<PolicyRecord>> {
        crate::Store::latest_policy(self, keystore, key)
    }
    fn insert_audit(&mut self, rows: &[AuditRow]) -> Result<usize> {
        crate::Store::insert_audit(self, rows)
    }
    fn audit_page(&self, audit_key: &[u8], after: i64, limit: u32) -> Result<Vec<AuditRow>> {
        crate::Store::audit_page(self, audit_key, after, limit)
    }
    fn audit_chains(&self) -> Result<Vec<AuditChainRow>> {
        crate::Store::audit_chains(self)
    }
    fn audit_last_seq(&self, audit_key: &[u8]) -> Result<Option<i64>> {
        crate::Store::audit_last_seq(self, audit_key)
    }
}

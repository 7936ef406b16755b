//! The store, shared by the supervisors and the API, with SQLite's blocking calls moved off
//! the async runtime.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use keyward_proto::{CompressedPublicKey, EnclaveId, SealedKey};
use keyward_store::{
    AsyncKeyReads, AuditChainRow, AuditRow, BitgoKeyRow, KeyRow, KeyStore, MasterKeyRow, NewKey, PolicyRecord, RootRow,
    Store, StoreError, VersionRow,
};

/// The store behind its trait; this is the only place that names the SQLite implementation.
#[derive(Debug, Clone)]
pub struct Db(Arc<Backend>, Option<Arc<crate::outage::OutageCache>>);

/// A store this process owns (SQLite: one connection, one caller at a time), or one it
/// reaches through calls that may run side by side (the host's store, from the enclave).
enum Backend {
    Owned(Mutex<Box<dyn KeyStore>>),
    Shared {
        open: Box<dyn Fn() -> Box<dyn KeyStore> + Send + Sync>,
        calls: Arc<tokio::sync::Semaphore>,
        /// The key read awaited on the runtime, when the store's driver is async.
        reads: Option<Arc<dyn AsyncKeyReads>>,
    },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Owned(_) => f.write_str("Owned"),
            Backend::Shared { calls, .. } => write!(f, "Shared({} free)", calls.available_permits()),
        }
    }
}

fn closed() -> StoreError {
    StoreError::Remote { code: "database_unavailable", message: "the store is closed".to_owned() }
}

impl Db {
    /// Opens the database; `create` allows making a new, empty one (development).
    pub fn open(path: &Path, create: bool) -> Result<Self, StoreError> {
        let store = if create { Store::open(path)? } else { Store::open_existing(path)? };
        Ok(Db(Arc::new(Backend::Owned(Mutex::new(Box::new(store)))), None))
    }

    /// A database reached through stores that `open` makes, at most `concurrent` calls at
    /// once (the enclave's view of the host's store). A call waits for its turn without
    /// holding a thread, and only `concurrent` threads ever wait for the store.
    pub fn shared(open: impl Fn() -> Box<dyn KeyStore> + Send + Sync + 'static, concurrent: usize) -> Self {
        Self::shared_with(open, concurrent, None)
    }

    /// [`Self::shared`], with the read of every key operation awaited through `reads` instead
    /// of a blocking thread (PostgreSQL).
    pub fn shared_with(
        open: impl Fn() -> Box<dyn KeyStore> + Send + Sync + 'static,
        concurrent: usize,
        reads: Option<Arc<dyn AsyncKeyReads>>,
    ) -> Self {
        Db(
            Arc::new(Backend::Shared {
                open: Box::new(open),
                calls: Arc::new(tokio::sync::Semaphore::new(concurrent)),
                reads,
            }),
            None,
        )
    }

    /// Serves key operations from rows read within `grace` while the database is unreachable
    /// ([`crate::outage`]); zero leaves it off.
    pub fn with_outage_grace(mut self, grace: std::time::Duration) -> Self {
        self.1 = (!grace.is_zero()).then(|| Arc::new(crate::outage::OutageCache::new(grace)));
        self
    }

    /// Whether key operations can go on through a database outage right now (the outage
    /// grace is on and rows were read within it).
    pub fn serves_through_outage(&self) -> bool {
        self.1.as_ref().is_some_and(|cache| cache.can_serve())
    }

    /// Runs one call of the wire form (the gateway's host service answers the enclave so).
    pub async fn apply(
        &self,
        call: keyward_store::remote::StoreCall,
    ) -> Result<keyward_store::remote::StoreAnswer, StoreError> {
        self.with(move |s| keyward_store::remote::apply(s, call)).await
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn KeyStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let backend = self.0.clone();
        let turn = match &*backend {
            Backend::Owned(_) => None,
            Backend::Shared { calls, .. } => Some(calls.clone().acquire_owned().await.map_err(|_| closed())?),
        };
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            match &*backend {
                Backend::Owned(store) => {
                    // The store has no invariant a panicking holder could break mid-way: every
                    // write is one SQLite transaction.
                    let mut guard = store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    f(guard.as_mut())
                }
                Backend::Shared { open, .. } => f(open().as_mut()),
            }
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    pub async fn get(&self, id: EnclaveId) -> Result<Option<MasterKeyRow>, StoreError> {
        self.with(move |s| s.get(i64::from(id.0))).await
    }

    pub async fn insert(&self, row: MasterKeyRow) -> Result<(), StoreError> {
        self.with(move |s| s.insert(&row)).await
    }

    pub async fn rotate(&self, row: MasterKeyRow, expected_epoch: i64) -> Result<(), StoreError> {
        self.with(move |s| s.rotate(&row, expected_epoch)).await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.with(|s| s.ping()).await
    }

    pub async fn root(&self) -> Result<Option<RootRow>, StoreError> {
        self.with(|s| s.root()).await
    }

    pub async fn insert_root(&self, row: RootRow) -> Result<(), StoreError> {
        self.with(move |s| s.insert_root(&row)).await
    }

    pub async fn rotate_root(&self, row: RootRow, expected_epoch: i64) -> Result<(), StoreError> {
        self.with(move |s| s.rotate_root(&row, expected_epoch)).await
    }

    pub async fn insert_keys(&self, keys: Vec<NewKey>) -> Result<(), StoreError> {
        self.with(move |s| s.insert_keys(&keys)).await
    }

    /// A key's metadata and every version of it.
    pub async fn key(&self, name: String) -> Result<Option<(KeyRow, Vec<VersionRow>)>, StoreError> {
        self.with(move |s| match s.key(&name)? {
            Some(key) => Ok(Some((key, s.key_versions(&name)?))),
            None => Ok(None),
        })
        .await
    }

    /// A key's metadata and one version of it.
    pub async fn key_with_version(
        &self,
        name: String,
        version: Option<i64>,
    ) -> Result<Option<(KeyRow, Option<VersionRow>)>, StoreError> {
        let found = self.key_version_policy(name, version, false).await?;
        Ok(found.map(|(key, row, _)| (key, row)))
    }

    /// A page of keys of keystore `keystore` with their versions.
    pub async fn list_keys(
        &self,
        keystore: keyward_proto::KeystoreId,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<(KeyRow, Vec<VersionRow>)>, StoreError> {
        self.with(move |s| {
            let keystore = (!keystore.is_default()).then_some(keystore.as_str());
            s.list_keys(keystore, after.as_deref(), limit)?
                .into_iter()
                .map(|key| {
                    let versions = s.key_versions(&key.name)?;
                    Ok((key, versions))
                })
                .collect()
        })
        .await
    }

    /// The keys (with their versions) holding a version with this public key.
    pub async fn keys_by_public_key(&self, public_key: Vec<u8>) -> Result<Vec<(KeyRow, Vec<VersionRow>)>, StoreError> {
        self.with(move |s| {
            let mut names: Vec<String> = s.versions_by_public_key(&public_key)?.into_iter().map(|v| v.name).collect();
            names.dedup();
            names
                .into_iter()
                .filter_map(|name| match s.key(&name) {
                    Ok(Some(key)) => Some(s.key_versions(&name).map(|v| (key, v))),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect()
        })
        .await
    }

    /// Before a write to keys: their rows leave the outage cache ([`crate::outage`]).
    fn forget(&self, changes: impl Fn(&str) -> bool) {
        if let Some(cache) = &self.1 {
            cache.forget(changes);
        }
    }

    pub async fn add_version(&self, version: VersionRow, expected_revision: i64) -> Result<(), StoreError> {
        self.forget(|n| n == version.name);
        self.with(move |s| s.add_version(&version, expected_revision)).await
    }

    pub async fn set_key_state(
        &self,
        name: String,
        state: &'static str,
        deletion_due: Option<i64>,
        expected_revision: i64,
    ) -> Result<(), StoreError> {
        self.forget(|n| n == name);
        self.with(move |s| s.set_key_state(&name, state, deletion_due, expected_revision)).await
    }
}

impl Db {
    pub async fn set_min_decryption_version(
        &self,
        name: String,
        version: i64,
        expected_revision: i64,
    ) -> Result<(), StoreError> {
        self.forget(|n| n == name);
        self.with(move |s| s.set_min_decryption_version(&name, version, expected_revision)).await
    }

    pub async fn insert_bitgo_key(&self, row: BitgoKeyRow) -> Result<(), StoreError> {
        self.with(move |s| s.insert_bitgo_key(&row)).await
    }

    pub async fn bitgo_key(&self, public: String, source: String) -> Result<Option<BitgoKeyRow>, StoreError> {
        self.with(move |s| s.bitgo_key(&public, &source)).await
    }

    pub async fn insert_policy(&self, row: PolicyRecord) -> Result<(), StoreError> {
        // A key's policy changes that key; a keystore's (no key name) every key of it.
        let (keystore, key) = (row.keystore.clone(), row.key_name.clone());
        self.forget(|n| {
            let (in_keystore, local) = keyward_store::split_name(n);
            in_keystore == keystore && (key.is_empty() || local == key)
        });
        self.with(move |s| s.insert_policy(&row)).await
    }

    pub async fn latest_policy(&self, keystore: String, key: String) -> Result<Option<PolicyRecord>, StoreError> {
        self.with(move |s| s.latest_policy(&keystore, &key)).await
    }

    pub async fn insert_audit(&self, rows: Vec<AuditRow>) -> Result<usize, StoreError> {
        self.with(move |s| s.insert_audit(&rows)).await
    }

    pub async fn audit_page(&self, audit_key: Vec<u8>, after: i64, limit: u32) -> Result<Vec<AuditRow>, StoreError> {
        self.with(move |s| s.audit_page(&audit_key, after, limit)).await
    }

    pub async fn audit_chains(&self) -> Result<Vec<AuditChainRow>, StoreError> {
        self.with(|s| s.audit_chains()).await
    }

    pub async fn audit_last_seq(&self, audit_key: Vec<u8>) -> Result<Option<i64>, StoreError> {
        self.with(move |s| s.audit_last_seq(&audit_key)).await
    }

    /// The newest policy rows of `keystore` and of its key `key` (none for an empty `key`), in
    /// one trip to the database thread.
    pub async fn policies(&self, keystore: String, key: String) -> Result<Policies, StoreError> {
        self.with(move |s| policies(s, &keystore, &key)).await
    }

    /// [`Self::key_with_version`], and when asked for the newest policies of the key and of its
    /// keystore (the prefix of its full name), in one trip to the database thread.
    #[allow(clippy::type_complexity)]
    pub async fn key_version_policy(
        &self,
        name: String,
        version: Option<i64>,
        with_policies: bool,
    ) -> Result<Option<(KeyRow, Option<VersionRow>, Policies)>, StoreError> {
        let asked = self.1.as_ref().map(|_| (name.clone(), version, with_policies));
        let ticket = self.1.as_ref().map_or(0, |c| c.ticket());
        let read = match &*self.0 {
            Backend::Shared { calls, reads: Some(reads), .. } => match calls.acquire().await {
                Ok(_turn) => reads.key_version_policy(&name, version, with_policies).await,
                Err(_) => Err(closed()),
            },
            _ => self.with(move |s| s.key_version_policy(&name, version, with_policies)).await,
        };
        match (read, &self.1, asked) {
            (Ok(found), cache, asked) => {
                let found =
                    found.map(|f| (f.key, f.version, Policies { key: f.key_policy, keystore: f.keystore_policy }));
                if let (Some(cache), Some(asked), Some(found)) = (cache, asked, &found) {
                    cache.remember(asked, found, ticket);
                }
                Ok(found)
            }
            (Err(e), Some(cache), Some(asked)) if crate::outage::is_outage(e.code()) => {
                cache.recall(&asked, e.code()).map(Some).ok_or(e)
            }
            (Err(e), _, _) => Err(e),
        }
    }
}

/// The newest policy rows a signed request about a key carries: the key's own and its
/// keystore's (the row whose key name is empty).
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub key: Option<PolicyRecord>,
    pub keystore: Option<PolicyRecord>,
}

fn policies(s: &mut dyn KeyStore, keystore: &str, key: &str) -> Result<Policies, StoreError> {
    let own = if key.is_empty() { None } else { s.latest_policy(keystore, key)? };
    Ok(Policies { key: own, keystore: s.latest_policy(keystore, "")? })
}

/// A stored row as the typed value the enclave takes; a damaged column is named.
pub fn sealed_from_row(row: MasterKeyRow) -> Result<SealedKey, String> {
    let enclave_id =
        u32::try_from(row.enclave_id).map_err(|_| format!("enclave_id {} is out of range", row.enclave_id))?;
    let public_key = CompressedPublicKey::from_slice(&row.public_key)
        .ok_or_else(|| format!("public_key column is {} bytes, expected 33", row.public_key.len()))?;
    let key_epoch = u32::try_from(row.key_epoch)
        .ok()
        .filter(|e| *e >= 1)
        .ok_or_else(|| format!("key_epoch {} is out of range", row.key_epoch))?;
    if row.kms_encrypted_dek.is_empty() || row.kms_encrypted_dek.len() > 6144 {
        return Err(format!("kms_encrypted_dek column is {} bytes", row.kms_encrypted_dek.len()));
    }
    Ok(SealedKey {
        enclave_id: EnclaveId(enclave_id),
        kms_encrypted_dek: row.kms_encrypted_dek,
        encrypted_private_key: row.encrypted_private_key,
        public_key,
        kms_key_id: row.kms_key_id,
        key_epoch,
    })
}

pub fn row_from_sealed(sealed: &SealedKey) -> MasterKeyRow {
    MasterKeyRow {
        enclave_id: i64::from(sealed.enclave_id.0),
        kms_encrypted_dek: sealed.kms_encrypted_dek.clone(),
        encrypted_private_key: sealed.encrypted_private_key.clone(),
        public_key: sealed.public_key.0.to_vec(),
        kms_key_id: sealed.kms_key_id.clone(),
        key_epoch: i64::from(sealed.key_epoch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> MasterKeyRow {
        MasterKeyRow {
            enclave_id: 1,
            kms_encrypted_dek: vec![1; 100],
            encrypted_private_key: vec![2; 61],
            public_key: vec![3; 33],
            kms_key_id: "arn:k".into(),
            key_epoch: 1,
        }
    }

    #[test]
    fn row_and_sealed_key_convert_both_ways() {
        let sealed = sealed_from_row(row()).unwrap();
        assert_eq!(row_from_sealed(&sealed), row());
    }

    #[test]
    fn damaged_columns_are_named() {
        let mut r = row();
        r.public_key.pop();
        assert_eq!(sealed_from_row(r).unwrap_err(), "public_key column is 32 bytes, expected 33");
        let mut r = row();
        r.key_epoch = 0;
        assert!(sealed_from_row(r).unwrap_err().contains("key_epoch 0"));
        let mut r = row();
        r.enclave_id = -1;
        assert!(sealed_from_row(r).unwrap_err().contains("enclave_id -1"));
        let mut r = row();
        r.kms_encrypted_dek.clear();
        assert!(sealed_from_row(r).unwrap_err().contains("kms_encrypted_dek"));
    }
}

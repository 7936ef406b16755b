//! The store as a request and an answer, for a [`KeyStore`] reached over a connection: the
//! enclave's TLS API reads and writes rows through the gateway, which holds the database. Every
//! call is one [`KeyStore`] method; errors keep the variants callers act on (a duplicate, a
//! lost compare-and-swap) and the stable code of the others.

use serde::{Deserialize, Serialize};

use crate::{
    AuditChainRow, AuditRow, BitgoKeyRow, KeyRow, KeyStore, KeyVersionPolicy, MasterKeyRow, NewKey, PolicyRecord,
    Result, RootRow, StoreError, VersionRow,
};

/// One [`KeyStore`] method and its arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs, reason = "each variant is the KeyStore method of the same name")]
pub enum StoreCall {
    Ping,
    Get(i64),
    Insert(MasterKeyRow),
    Rotate(MasterKeyRow, i64),
    Root,
    InsertRoot(RootRow),
    RotateRoot(RootRow, i64),
    InsertKeys(Vec<NewKey>),
    Key(String),
    KeyVersion(String, i64),
    KeyVersions(String),
    ListKeys { keystore: Option<String>, after: Option<String>, limit: u32 },
    VersionsByPublicKey(Vec<u8>),
    AddVersion(VersionRow, i64),
    SetKeyState { name: String, state: String, deletion_due: Option<i64>, expected_revision: i64 },
    SetMinDecryptionVersion { name: String, version: i64, expected_revision: i64 },
    InsertBitgoKey(BitgoKeyRow),
    BitgoKey(String, String),
    InsertPolicy(PolicyRecord),
    LatestPolicy(String, String),
    InsertAudit(Vec<AuditRow>),
    AuditPage(Vec<u8>, i64, u32),
    AuditChains,
    AuditLastSeq(Vec<u8>),
    KeyVersionPolicy { name: String, version: Option<i64>, with_policies: bool },
}

/// What a [`StoreCall`] returned.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs, reason = "each variant is a KeyStore method's return type")]
pub enum StoreAnswer {
    Done,
    Master(Option<MasterKeyRow>),
    Root(Option<RootRow>),
    Key(Option<KeyRow>),
    Version(Option<VersionRow>),
    Versions(Vec<VersionRow>),
    Keys(Vec<KeyRow>),
    Bitgo(Option<BitgoKeyRow>),
    Policy(Option<PolicyRecord>),
    Count(usize),
    Audit(Vec<AuditRow>),
    Chains(Vec<AuditChainRow>),
    Seq(Option<i64>),
    KeyVersionPolicy(Option<Box<KeyVersionPolicy>>),
}

/// A [`StoreError`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs, reason = "the StoreError variants of the same names")]
pub enum WireError {
    AlreadyExists(i64),
    EpochConflict {
        enclave_id: i64,
        expected_epoch: i64,
    },
    RootExists,
    RootEpochConflict {
        expected_epoch: i64,
    },
    KeyExists(String),
    PolicyExists {
        key: String,
        version: i64,
    },
    AuditConflict {
        chain: String,
        seq: i64,
    },
    KeyConflict(String),
    /// Any other failure: its code and message (paths included; the enclave logs it only).
    Other {
        code: String,
        message: String,
    },
}

/// Codes a [`WireError::Other`] may carry; any other is read as `database_unavailable`.
const CODES: &[&str] = &[
    "database_missing",
    "database_not_keyward",
    "database_schema_too_new",
    "database_file_gone",
    "database_read_only",
    "database_busy",
    "database_full",
    "database_unavailable",
];

impl From<&StoreError> for WireError {
    fn from(error: &StoreError) -> Self {
        match error {
            StoreError::AlreadyExists(id) => WireError::AlreadyExists(*id),
            StoreError::EpochConflict { enclave_id, expected_epoch } => {
                WireError::EpochConflict { enclave_id: *enclave_id, expected_epoch: *expected_epoch }
            }
            StoreError::RootExists => WireError::RootExists,
            StoreError::RootEpochConflict { expected_epoch } => {
                WireError::RootEpochConflict { expected_epoch: *expected_epoch }
            }
            StoreError::KeyExists(name) => WireError::KeyExists(name.clone()),
            StoreError::PolicyExists { key, version } => {
                WireError::PolicyExists { key: key.clone(), version: *version }
            }
            StoreError::AuditConflict { chain, seq } => WireError::AuditConflict { chain: chain.clone(), seq: *seq },
            StoreError::KeyConflict(name) => WireError::KeyConflict(name.clone()),
            other => WireError::Other { code: other.code().to_owned(), message: other.to_string() },
        }
    }
}

/// A name the host sent, bounded (a key's full name is at most 161 characters).
fn bounded(name: String) -> String {
    name.chars().take(161).collect()
}

impl From<WireError> for StoreError {
    fn from(error: WireError) -> Self {
        match error {
            WireError::AlreadyExists(id) => StoreError::AlreadyExists(id),
            WireError::EpochConflict { enclave_id, expected_epoch } => {
                StoreError::EpochConflict { enclave_id, expected_epoch }
            }
            WireError::RootExists => StoreError::RootExists,
            WireError::RootEpochConflict { expected_epoch } => StoreError::RootEpochConflict { expected_epoch },
            WireError::KeyExists(name) => StoreError::KeyExists(bounded(name)),
            WireError::PolicyExists { key, version } => StoreError::PolicyExists { key: bounded(key), version },
            WireError::AuditConflict { chain, seq } => StoreError::AuditConflict { chain: bounded(chain), seq },
            WireError::KeyConflict(name) => StoreError::KeyConflict(bounded(name)),
            WireError::Other { code, message } => {
                let code = CODES.iter().find(|c| **c == code).copied().unwrap_or("database_unavailable");
                // The host's words stay in the log (shortened); clients get the code.
                let shown: String = message.chars().take(200).collect();
                tracing::warn!(code, message = %shown, "the host's store failed");
                StoreError::Remote { code, message: format!("the host's store failed ({code})") }
            }
        }
    }
}

/// Runs `call` on `store`.
pub fn apply(store: &mut dyn KeyStore, call: StoreCall) -> Result<StoreAnswer> {
    use StoreAnswer as A;
    Ok(match call {
        StoreCall::Ping => store.ping().map(|()| A::Done)?,
        StoreCall::Get(id) => A::Master(store.get(id)?),
        StoreCall::Insert(row) => store.insert(&row).map(|()| A::Done)?,
        StoreCall::Rotate(row, epoch) => store.rotate(&row, epoch).map(|()| A::Done)?,
        StoreCall::Root => A::Root(store.root()?),
        StoreCall::InsertRoot(row) => store.insert_root(&row).map(|()| A::Done)?,
        StoreCall::RotateRoot(row, epoch) => store.rotate_root(&row, epoch).map(|()| A::Done)?,
        StoreCall::InsertKeys(keys) => store.insert_keys(&keys).map(|()| A::Done)?,
        StoreCall::Key(name) => A::Key(store.key(&name)?),
        StoreCall::KeyVersion(name, version) => A::Version(store.key_version(&name, version)?),
        StoreCall::KeyVersions(name) => A::Versions(store.key_versions(&name)?),
        StoreCall::ListKeys { keystore, after, limit } => {
            A::Keys(store.list_keys(keystore.as_deref(), after.as_deref(), limit)?)
        }
        StoreCall::VersionsByPublicKey(key) => A::Versions(store.versions_by_public_key(&key)?),
        StoreCall::AddVersion(row, revision) => store.add_version(&row, revision).map(|()| A::Done)?,
        StoreCall::SetKeyState { name, state, deletion_due, expected_revision } => {
            store.set_key_state(&name, &state, deletion_due, expected_revision).map(|()| A::Done)?
        }
        StoreCall::SetMinDecryptionVersion { name, version, expected_revision } => {
            store.set_min_decryption_version(&name, version, expected_revision).map(|()| A::Done)?
        }
        StoreCall::InsertBitgoKey(row) => store.insert_bitgo_key(&row).map(|()| A::Done)?,
        StoreCall::BitgoKey(public, source) => A::Bitgo(store.bitgo_key(&public, &source)?),
        StoreCall::InsertPolicy(row) => store.insert_policy(&row).map(|()| A::Done)?,
        StoreCall::LatestPolicy(keystore, key) => A::Policy(store.latest_policy(&keystore, &key)?),
        StoreCall::InsertAudit(rows) => A::Count(store.insert_audit(&rows)?),
        StoreCall::AuditPage(key, after, limit) => A::Audit(store.audit_page(&key, after, limit)?),
        StoreCall::AuditChains => A::Chains(store.audit_chains()?),
        StoreCall::AuditLastSeq(key) => A::Seq(store.audit_last_seq(&key)?),
        StoreCall::KeyVersionPolicy { name, version, with_policies } => {
            A::KeyVersionPolicy(store.key_version_policy(&name, version, with_policies)?.map(Box::new))
        }
    })
}

/// A [`KeyStore`] whose every call goes through `transport`: the enclave's view of the host's
/// database. `transport` sends one call and returns its answer, or the error that stopped it.
pub struct RemoteStore<F> {
    transport: F,
}

impl<F> std::fmt::Debug for RemoteStore<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteStore")
    }
}

impl<F: Fn(StoreCall) -> Result<StoreAnswer> + Send> RemoteStore<F> {
    /// A store over `transport`.
    pub fn new(transport: F) -> Self {
        RemoteStore { transport }
    }
}

/// The answer of the expected kind, or the error a wrong one is.
macro_rules! expect {
    ($self:ident, $call:expr, $pattern:pat => $value:expr) => {
        match ($self.transport)($call)? {
            $pattern => Ok($value),
            other => {
                tracing::warn!(answer = ?std::mem::discriminant(&other), "the host's store answered with another kind");
                Err(StoreError::Remote {
                    code: "database_unavailable",
                    message: "the host's store answered with another kind of answer".to_owned(),
                })
            }
        }
    };
}

impl<F: Fn(StoreCall) -> Result<StoreAnswer> + Send> KeyStore for RemoteStore<F> {
    fn ping(&self) -> Result<()> {
        expect!(self, StoreCall::Ping, StoreAnswer::Done => ())
    }
    fn get(&self, enclave_id: i64) -> Result<Option<MasterKeyRow>> {
        expect!(self, StoreCall::Get(enclave_id), StoreAnswer::Master(row) => row)
    }
    fn insert(&mut self, row: &MasterKeyRow) -> Result<()> {
        expect!(self, StoreCall::Insert(row.clone()), StoreAnswer::Done => ())
    }
    fn rotate(&mut self, new: &MasterKeyRow, expected_epoch: i64) -> Result<()> {
        expect!(self, StoreCall::Rotate(new.clone(), expected_epoch), StoreAnswer::Done => ())
    }
    fn root(&self) -> Result<Option<RootRow>> {
        expect!(self, StoreCall::Root, StoreAnswer::Root(row) => row)
    }
    fn insert_root(&mut self, row: &RootRow) -> Result<()> {
        expect!(self, StoreCall::InsertRoot(row.clone()), StoreAnswer::Done => ())
    }
    fn rotate_root(&mut self, new: &RootRow, expected_epoch: i64) -> Result<()> {
        expect!(self, StoreCall::RotateRoot(new.clone(), expected_epoch), StoreAnswer::Done => ())
    }
    fn insert_keys(&mut self, keys: &[NewKey]) -> Result<()> {
        expect!(self, StoreCall::InsertKeys(keys.to_vec()), StoreAnswer::Done => ())
    }
    fn key(&self, name: &str) -> Result<Option<KeyRow>> {
        expect!(self, StoreCall::Key(name.to_owned()), StoreAnswer::Key(row) => row)
    }
    fn key_version(&self, name: &str, version: i64) -> Result<Option<VersionRow>> {
        expect!(self, StoreCall::KeyVersion(name.to_owned(), version), StoreAnswer::Version(row) => row)
    }
    fn key_versions(&self, name: &str) -> Result<Vec<VersionRow>> {
        expect!(self, StoreCall::KeyVersions(name.to_owned()), StoreAnswer::Versions(rows) => rows)
    }
    fn list_keys(&self, keystore: Option<&str>, after: Option<&str>, limit: u32) -> Result<Vec<KeyRow>> {
        let call =
            StoreCall::ListKeys { keystore: keystore.map(str::to_owned), after: after.map(str::to_owned), limit };
        expect!(self, call, StoreAnswer::Keys(rows) => rows)
    }
    fn versions_by_public_key(&self, public_key: &[u8]) -> Result<Vec<VersionRow>> {
        expect!(self, StoreCall::VersionsByPublicKey(public_key.to_vec()), StoreAnswer::Versions(rows) => rows)
    }
    fn add_version(&mut self, version: &VersionRow, expected_revision: i64) -> Result<()> {
        expect!(self, StoreCall::AddVersion(version.clone(), expected_revision), StoreAnswer::Done => ())
    }
    fn set_key_state(
        &mut self,
        name: &str,
        state: &str,
        deletion_due: Option<i64>,
        expected_revision: i64,
    ) -> Result<()> {
        let call =
            StoreCall::SetKeyState { name: name.to_owned(), state: state.to_owned(), deletion_due, expected_revision };
        expect!(self, call, StoreAnswer::Done => ())
    }
    fn set_min_decryption_version(&mut self, name: &str, version: i64, expected_revision: i64) -> Result<()> {
        let call = StoreCall::SetMinDecryptionVersion { name: name.to_owned(), version, expected_revision };
        expect!(self, call, StoreAnswer::Done => ())
    }
    fn insert_bitgo_key(&mut self, row: &BitgoKeyRow) -> Result<()> {
        expect!(self, StoreCall::InsertBitgoKey(row.clone()), StoreAnswer::Done => ())
    }
    fn bitgo_key(&self, public: &str, source: &str) -> Result<Option<BitgoKeyRow>> {
        expect!(self, StoreCall::BitgoKey(public.to_owned(), source.to_owned()), StoreAnswer::Bitgo(row) => row)
    }
    fn insert_policy(&mut self, row: &PolicyRecord) -> Result<()> {
        expect!(self, StoreCall::InsertPolicy(row.clone()), StoreAnswer::Done => ())
    }
    fn latest_policy(&self, keystore: &str, key: &str) -> Result<Option<PolicyRecord>> {
        expect!(self, StoreCall::LatestPolicy(keystore.to_owned(), key.to_owned()), StoreAnswer::Policy(row) => row)
    }
    fn insert_audit(&mut self, rows: &[AuditRow]) -> Result<usize> {
        expect!(self, StoreCall::InsertAudit(rows.to_vec()), StoreAnswer::Count(n) => n)
    }
    fn audit_page(&self, audit_key: &[u8], after: i64, limit: u32) -> Result<Vec<AuditRow>> {
        expect!(self, StoreCall::AuditPage(audit_key.to_vec(), after, limit), StoreAnswer::Audit(rows) => rows)
    }
    fn audit_chains(&self) -> Result<Vec<AuditChainRow>> {
        expect!(self, StoreCall::AuditChains, StoreAnswer::Chains(rows) => rows)
    }
    fn audit_last_seq(&self, audit_key: &[u8]) -> Result<Option<i64>> {
        expect!(self, StoreCall::AuditLastSeq(audit_key.to_vec()), StoreAnswer::Seq(seq) => seq)
    }
    fn key_version_policy(
        &self,
        name: &str,
        version: Option<i64>,
        with_policies: bool,
    ) -> Result<Option<KeyVersionPolicy>> {
        let call = StoreCall::KeyVersionPolicy { name: name.to_owned(), version, with_policies };
        expect!(self, call, StoreAnswer::KeyVersionPolicy(found) => found.map(|b| *b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    /// A remote store over a real SQLite store, each call through the wire types (CBOR, as the
    /// link's frames carry them), behaves as the store itself.
    #[test]
    fn a_remote_store_keeps_rows_and_the_errors_callers_act_on() {
        let dir = tempfile::tempdir().unwrap();
        let local = std::sync::Mutex::new(Store::open(&dir.path().join("k.db")).unwrap());
        let mut remote = RemoteStore::new(|call: StoreCall| {
            let call: StoreCall = serde_cbor::from_slice(&serde_cbor::to_vec(&call).unwrap()).unwrap();
            let mut store = local.lock().unwrap();
            let result = apply(&mut *store, call).map_err(|e| WireError::from(&e));
            let result: std::result::Result<StoreAnswer, WireError> =
                serde_cbor::from_slice(&serde_cbor::to_vec(&result).unwrap()).unwrap();
            result.map_err(StoreError::from)
        });
        let row = MasterKeyRow {
            enclave_id: 7,
            kms_encrypted_dek: vec![1, 2],
            encrypted_private_key: vec![3; 48],
            public_key: vec![2; 33],
            kms_key_id: "arn".into(),
            key_epoch: 1,
        };
        remote.insert(&row).unwrap();
        assert_eq!(remote.get(7).unwrap(), Some(row.clone()));
        assert!(matches!(remote.insert(&row), Err(StoreError::AlreadyExists(7))));
        assert!(matches!(remote.rotate(&row, 5), Err(StoreError::EpochConflict { enclave_id: 7, expected_epoch: 5 })));
        assert_eq!(remote.key("nothing").unwrap(), None);
        assert!(remote.key_version_policy("nothing", None, true).unwrap().is_none());
        remote.ping().unwrap();
    }

    #[test]
    fn an_answer_of_another_kind_is_an_error_not_a_row() {
        let remote = RemoteStore::new(|_call: StoreCall| Ok(StoreAnswer::Count(3)));
        let error = remote.key("k").unwrap_err();
        assert_eq!(error.code(), "database_unavailable");
        assert!(!error.to_string().contains("Count"), "the host's answer is not shown: {error}");
    }

    #[test]
    fn an_unknown_code_from_the_host_is_read_as_unavailable() {
        let error = StoreError::from(WireError::Other { code: "made_up".into(), message: "x".repeat(10_000) });
        assert_eq!(error.code(), "database_unavailable");
        assert!(error.to_string().len() < 100, "the host's text does not reach clients");
        let error = StoreError::from(WireError::Other { code: "database_read_only".into(), message: "x".into() });
        assert_eq!(error.code(), "database_read_only");
    }
}

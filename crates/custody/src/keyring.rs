//! The keyring inside the enclave: the root's life and the operations on keys.
//!
//! ```text
//!   Empty ──provision──▶ AwaitingCommit ──commit──▶ Ready ◀──unseal── Empty
//!                                                    │ ▲
//!                                       rotate (new data key, epoch + 1): commit
//! ```
//!
//! No key is made or used before `Ready`. Every sealed root the enclave hands out (provision,
//! rotation) has been opened again through the [`DataKeySource`] first, so a root row that
//! would not open after a restart is never stored. Key rows are used only if they name the
//! loaded root and open under it; unwrapped keys stay in a bounded [`KeyCache`].

use std::sync::{Arc, RwLock};

use keyward_keyring::{KeyMaterial, KeyringError, RootBinding, RootKey, SignInput, TransferKey, open_root, seal_root};
use keyward_proto::{
    AwsCredentials, ErrorCode, ErrorReply, KeyIdentity, KeySign, KeySignature, KeyringPhase, KeyringStatus,
    MAX_KEYS_PER_BATCH, RootId, SealedRoot, WrappedKey,
};
use keyward_telemetry::event;
use tokio::sync::Mutex;

use crate::{DataKeySource, EncryptionContext, KeyCache, Pinned, Randomness};

type Reply<T> = Result<T, ErrorReply>;

/// The KMS encryption context of the keyring root's data key.
pub fn root_context(root_id: &RootId, root_epoch: u32) -> EncryptionContext {
    EncryptionContext::from([
        ("keyward:keyring_root".to_owned(), root_id.to_string()),
        ("keyward:root_epoch".to_owned(), root_epoch.to_string()),
    ])
}

struct Loaded {
    root: Arc<RootKey>,
    root_id: RootId,
    epoch: u32,
    /// Epoch of a rotation handed out but not yet committed.
    rotating_to: Option<u32>,
}

enum State {
    Empty,
    AwaitingCommit(Loaded),
    Ready(Loaded),
}

/// The keyring of one enclave.
pub struct Keyring<D> {
    state: RwLock<State>,
    lifecycle: Mutex<()>,
    data_keys: D,
    random: Arc<dyn Randomness>,
    /// The KMS key and region this enclave is pinned to.
    pinned: Pinned,
    cache: KeyCache,
    /// Receives imported keys; its public half goes into every attestation document.
    transfer: TransferKey,
}

impl<D: DataKeySource> std::fmt::Debug for Keyring<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("status", &self.status()).field("cached_keys", &self.cache.len()).finish()
    }
}

pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(code, message)
}

/// The stable code of a keyring error.
pub(crate) fn from_keyring(e: KeyringError) -> ErrorReply {
    let code = match &e {
        KeyringError::WrongRoot { .. } => ErrorCode::WrongKeyringRoot,
        KeyringError::RowDoesNotOpen { .. } => ErrorCode::KeyRowDoesNotOpen,
        KeyringError::RowDamaged { .. } => ErrorCode::KeyRowDamaged,
        KeyringError::RootDoesNotOpen(_) => ErrorCode::RootDoesNotOpen,
        KeyringError::NotASigningKey(_) => ErrorCode::NotASigningKey,
        KeyringError::BadInput(_) | KeyringError::UnsupportedType(_) | KeyringError::MessageTooLarge { .. } => {
            ErrorCode::BadRequest
        }
        KeyringError::UnsupportedScheme(_) => ErrorCode::UnsupportedScheme,
        KeyringError::TransferDoesNotOpen => ErrorCode::TransferDoesNotOpen,
        KeyringError::UnwrapFailed => ErrorCode::DecryptionFailed,
        KeyringError::InvalidSecret(_) => ErrorCode::InvalidKeyMaterial,
        KeyringError::UnsupportedOperation(_) => ErrorCode::UnsupportedOperation,
        KeyringError::Ciphertext(keyward_keyring::CiphertextError::Malformed(_)) => ErrorCode::CiphertextMalformed,
        KeyringError::Ciphertext(_) => ErrorCode::DecryptionFailed,
        _ => ErrorCode::Internal,
    };
    ErrorReply::new(code, e.to_string())
}

impl<D: DataKeySource> Keyring<D> {
    /// A keyring with no root yet, and a new transfer key. `cache_capacity` bounds the
    /// unwrapped keys kept. Fails only if `random` does.
    pub fn new(
        data_keys: D,
        random: Arc<dyn Randomness>,
        pinned: Pinned,
        cache_capacity: usize,
    ) -> Result<Self, String> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        random.fill(seed.as_mut())?;
        let transfer = TransferKey::derive(&seed);
        Ok(Keyring {
            state: RwLock::new(State::Empty),
            lifecycle: Mutex::new(()),
            data_keys,
            random,
            pinned,
            cache: KeyCache::new(cache_capacity),
            transfer,
        })
    }

    /// The keyring's state.
    pub fn status(&self) -> KeyringStatus {
        let (phase, loaded) = match &*self.read() {
            State::Empty => (KeyringPhase::Empty, None),
            State::AwaitingCommit(l) => (KeyringPhase::AwaitingCommit, Some((l.root_id, l.epoch))),
            State::Ready(l) => (KeyringPhase::Ready, Some((l.root_id, l.epoch))),
        };
        KeyringStatus { phase, root_id: loaded.map(|l| l.0), root_epoch: loaded.map(|l| l.1) }
    }

    /// First start: a new root, sealed under a new data key, proven to open again. It is
    /// used once the gateway has stored it and says so (`commit_root`).
    pub async fn provision_root(
        &self,
        kms_key_id: &str,
        region: &str,
        credentials: &AwsCredentials,
    ) -> Reply<SealedRoot> {
        let _lifecycle = self.lifecycle.lock().await;
        if let State::Ready(l) = &*self.read() {
            return Err(error(
                ErrorCode::AlreadyProvisioned,
                format!("the keyring root {} is loaded; refusing to make another", l.root_id),
            ));
        }
        self.pinned.check_request(kms_key_id, region)?;
        let root = RootKey::generate(|out: &mut [u8]| self.random.fill(out)).map_err(from_keyring)?;
        let mut id = [0u8; 16];
        self.fill(&mut id)?;
        let root_id = RootId(id);
        let sealed = self.seal(&root, root_id, 1, credentials).await?;
        self.prove(&sealed, &root, credentials).await?;
        tracing::info!(event = event::ROOT_PROVISIONED, %root_id, "made a new keyring root; awaiting commit");
        *self.write() = State::AwaitingCommit(Loaded { root: Arc::new(root), root_id, epoch: 1, rotating_to: None });
        Ok(sealed)
    }

    /// The gateway stored the root (or a root rotation): use it.
    pub async fn commit_root(&self, root_id: RootId, root_epoch: u32) -> Reply<KeyringStatus> {
        let _lifecycle = self.lifecycle.lock().await;
        let mut state = self.write();
        let next = match std::mem::replace(&mut *state, State::Empty) {
            State::AwaitingCommit(l) if l.root_id == root_id && l.epoch == root_epoch => {
                tracing::info!(event = event::ROOT_COMMITTED, %root_id, root_epoch, "keyring root committed; keys can be made and used");
                Ok(State::Ready(l))
            }
            State::Ready(l) if l.root_id == root_id && l.epoch == root_epoch => Ok(State::Ready(l)),
            State::Ready(l) if l.root_id == root_id && l.rotating_to == Some(root_epoch) => {
                tracing::info!(event = event::ROOT_COMMITTED, %root_id, root_epoch, "keyring root rotation committed");
                Ok(State::Ready(Loaded { epoch: root_epoch, rotating_to: None, ..l }))
            }
            other => Err(other),
        };
        match next {
            Ok(next) => {
                *state = next;
                drop(state);
                Ok(self.status())
            }
            Err(previous) => {
                let empty = matches!(previous, State::Empty);
                *state = previous;
                Err(if empty {
                    error(ErrorCode::KeyringNotReady, "nothing to commit: no keyring root is loaded")
                } else {
                    error(
                        ErrorCode::BadRequest,
                        "commit does not match the keyring root in the enclave (id or epoch differ)",
                    )
                })
            }
        }
    }

    /// Opens the stored root (a restart, or a second enclave of the deployment).
    pub async fn unseal_root(&self, sealed: &SealedRoot, credentials: &AwsCredentials) -> Reply<KeyringStatus> {
        let _lifecycle = self.lifecycle.lock().await;
        if let State::Ready(l) = &*self.read() {
            if l.root_id == sealed.root_id {
                return Ok(self.status_of(l));
            }
            return Err(error(
                ErrorCode::AlreadyProvisioned,
                format!(
                    "the keyring root {} is loaded; restart the enclave to load root {}",
                    l.root_id, sealed.root_id
                ),
            ));
        }
        let root = self.open(sealed, credentials).await?;
        tracing::info!(event = event::ROOT_UNSEALED, root_id = %sealed.root_id, root_epoch = sealed.root_epoch, "keyring root unsealed");
        self.cache.clear();
        *self.write() = State::Ready(Loaded {
            root: Arc::new(root),
            root_id: sealed.root_id,
            epoch: sealed.root_epoch,
            rotating_to: None,
        });
        Ok(self.status())
    }

    /// Reseals the loaded root under a new data key (`epoch + 1`); the new epoch takes effect on
    /// `commit_root`. Keys keep working throughout (the root itself does not change).
    pub async fn rotate_root(&self, sealed: &SealedRoot, credentials: &AwsCredentials) -> Reply<SealedRoot> {
        let _lifecycle = self.lifecycle.lock().await;
        let (root, root_id, epoch) = match &*self.read() {
            State::Ready(l) => (l.root.clone(), l.root_id, l.epoch),
            _ => return Err(error(ErrorCode::KeyringNotReady, "no committed keyring root to rotate")),
        };
        if sealed.root_id != root_id || sealed.root_epoch != epoch {
            return Err(error(
                ErrorCode::BadRequest,
                format!(
                    "rotation starts from root {} epoch {}, but the enclave holds root {root_id} epoch {epoch}",
                    sealed.root_id, sealed.root_epoch
                ),
            ));
        }
        let next =
            epoch.checked_add(1).ok_or_else(|| error(ErrorCode::BadRequest, "root_epoch cannot grow further"))?;
        let resealed = self.seal(&root, root_id, next, credentials).await?;
        self.prove(&resealed, &root, credentials).await?;
        if let State::Ready(l) = &mut *self.write() {
            l.rotating_to = Some(next);
        }
        Ok(resealed)
    }

    /// Generates the key versions `keys` names (1 to [`MAX_KEYS_PER_BATCH`]), wrapped under
    /// the root, in order.
    pub fn create(&self, keys: &[KeyIdentity]) -> Reply<Vec<WrappedKey>> {
        if keys.is_empty() || keys.len() > MAX_KEYS_PER_BATCH {
            return Err(error(
                ErrorCode::BadRequest,
                format!("a batch holds 1 to {MAX_KEYS_PER_BATCH} keys, this one {}", keys.len()),
            ));
        }
        let (root, root_id) = self.ready_root()?;
        keys.iter()
            .map(|identity| {
                if identity.flags.origin != keyward_proto::Origin::Generated {
                    return Err(error(
                        ErrorCode::BadRequest,
                        format!(
                            "{}: only generated keys are made here; imported ones come with KeyImport",
                            identity.name
                        ),
                    ));
                }
                let material = KeyMaterial::generate(identity.key_type, |out: &mut [u8]| self.random.fill(out))
                    .map_err(from_keyring)?;
                let mut nonce = [0u8; 12];
                self.fill(&mut nonce)?;
                keyward_keyring::wrap(&root, &root_id, identity, &material, nonce).map_err(from_keyring)
            })
            .collect()
    }

    /// Signs with the key version `request.row` holds.
    pub fn sign(&self, request: &KeySign) -> Reply<KeySignature> {
        let material = self.material(&request.row)?;
        let mut aux = [0u8; 32];
        self.fill(&mut aux)?;
        let signed = keyward_keyring::sign(
            &material,
            request.algorithm,
            SignInput::from_payload(&request.payload),
            request.format,
            &aux,
        )
        .map_err(from_keyring)?;
        Ok(KeySignature { signature: signed.signature, recovery_id: signed.recovery_id, receipt: None })
    }

    /// Whether every row opens under the loaded root (from the cache when it did before). Rows
    /// opened only to be checked are not cached: a listing does not evict the keys in use.
    pub fn check(&self, rows: &[WrappedKey]) -> Reply<()> {
        rows.iter().try_for_each(|row| {
            if self.cache.get(row).is_some() {
                return Ok(());
            }
            let (root, root_id) = self.ready_root()?;
            keyward_keyring::unwrap(&root, &root_id, row).map(drop).map_err(from_keyring)
        })
    }

    /// The material of a row: from the cache, or unwrapped (and then cached).
    pub(crate) fn material(&self, row: &WrappedKey) -> Reply<Arc<KeyMaterial>> {
        if let Some(material) = self.cache.get(row) {
            return Ok(material);
        }
        let (root, root_id) = self.ready_root()?;
        let material = Arc::new(keyward_keyring::unwrap(&root, &root_id, row).map_err(from_keyring)?);
        self.cache.put(row, material.clone());
        Ok(material)
    }

    /// The tag of a policy row under the loaded root (`keyward_keyring::PolicyRowFields`).
    pub fn policy_tag(&self, row: &keyward_proto::PolicyRow) -> Reply<[u8; 32]> {
        let (root, root_id) = self.ready_root()?;
        let fields = keyward_keyring::PolicyRowFields {
            keystore: &row.keystore,
            key: &row.key,
            version: row.version,
            body: &row.body,
        };
        root.policy_tag(&root_id, &fields).map_err(from_keyring)
    }

    pub(crate) fn ready_root(&self) -> Reply<(Arc<RootKey>, RootId)> {
        match &*self.read() {
            State::Ready(l) => Ok((l.root.clone(), l.root_id)),
            _ => Err(error(ErrorCode::KeyringNotReady, "the keyring has no committed root yet")),
        }
    }

    async fn seal(
        &self,
        root: &RootKey,
        root_id: RootId,
        epoch: u32,
        credentials: &AwsCredentials,
    ) -> Reply<SealedRoot> {
        let new = self.data_keys.generate(credentials, &root_context(&root_id, epoch)).await?;
        let mut nonce = [0u8; 12];
        self.fill(&mut nonce)?;
        let binding = RootBinding { root_id: &root_id, epoch, kms_key_id: &new.key_arn };
        let sealed_root = seal_root(root, &new.dek, &binding, nonce).map_err(from_keyring)?;
        Ok(SealedRoot {
            root_id,
            kms_encrypted_dek: new.ciphertext_blob,
            sealed_root,
            kms_key_id: new.key_arn,
            root_epoch: epoch,
        })
    }

    /// Opens a stored root: its data key from KMS for its context, the KMS key checked, the
    /// seal opened.
    async fn open(&self, sealed: &SealedRoot, credentials: &AwsCredentials) -> Reply<RootKey> {
        self.pinned.check_row(&sealed.kms_key_id, "the keyring root")?;
        let context = root_context(&sealed.root_id, sealed.root_epoch);
        let (dek, arn) =
            self.data_keys.decrypt(credentials, &sealed.kms_encrypted_dek, &context).await.map_err(|e| {
                ErrorReply::new(e.code, format!("cannot recover the data key of the keyring root: {}", e.message))
            })?;
        if arn != sealed.kms_key_id {
            return Err(error(
                ErrorCode::KmsKeyMismatch,
                format!(
                    "the keyring root names KMS key {} but its data key belongs to {arn}; the row was altered",
                    sealed.kms_key_id
                ),
            ));
        }
        let binding =
            RootBinding { root_id: &sealed.root_id, epoch: sealed.root_epoch, kms_key_id: &sealed.kms_key_id };
        open_root(&sealed.sealed_root, &dek, &binding).map_err(from_keyring)
    }

    /// Opens a newly sealed root as a restart would, before it is handed out.
    async fn prove(&self, sealed: &SealedRoot, root: &RootKey, credentials: &AwsCredentials) -> Reply<()> {
        let fail = |cause: ErrorReply| {
            tracing::error!(event = event::ROUND_TRIP_FAILED, root_id = %sealed.root_id, root_epoch = sealed.root_epoch, cause = cause.code.as_str(), "a newly sealed keyring root did not open again; discarded");
            error(
                ErrorCode::RoundTripFailed,
                format!(
                    "the newly sealed keyring root (epoch {}) does not open again ({}: {}); it was discarded",
                    sealed.root_epoch, cause.code, cause.message
                ),
            )
        };
        let opened = self.open(sealed, credentials).await.map_err(fail)?;
        if !opened.same_as(root) {
            return Err(fail(error(ErrorCode::RootDoesNotOpen, "the reopened root is another root")));
        }
        Ok(())
    }

    fn status_of(&self, l: &Loaded) -> KeyringStatus {
        KeyringStatus { phase: KeyringPhase::Ready, root_id: Some(l.root_id), root_epoch: Some(l.epoch) }
    }

    pub(crate) fn fill(&self, out: &mut [u8]) -> Reply<()> {
        self.random.fill(out).map_err(|e| error(ErrorCode::Internal, format!("randomness: {e}")))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // The state is replaced whole; a poisoned lock still holds a complete value.
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

mod crypt;
mod transfer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod transfer_tests;

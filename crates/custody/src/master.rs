//! The master key's lifecycle inside the enclave: provision → commit, or unseal; then sign,
//! attest and rotate. Lifecycle operations are serialised; signing only reads.
//!
//! A newly sealed row (provision, rotation) is opened again before it is handed out: attested
//! `Decrypt` of its data key with its own encryption context, the seal opened, the key
//! compared. A row that would not open at the next restart (KMS allows `GenerateDataKey` but not
//! `Decrypt`, a context-encoding change...) is discarded here, before it can replace the only
//! row that opens.

use std::sync::{Arc, RwLock};

use keyward_proto::{
    AwsCredentials, Commit, CompressedPublicKey, EnclaveId, EnclaveState, ErrorCode, ErrorReply, Provision,
    PublicKeyInfo, Rotate, Scheme, SealedKey, SignRequest, SignatureReply, Status, Unseal, fault::crash_point,
};
use keyward_seal::{MasterKey, SealBinding, SealError};
use keyward_telemetry::event;
use tokio::sync::Mutex;

use crate::{DataKeySource, EncryptionContext, Pinned, Randomness};

type Reply<T> = Result<T, ErrorReply>;

/// The KMS encryption context of a master key's data key. KMS authenticates it and logs it
/// in CloudTrail, so a data key only decrypts for the row it was made for.
pub fn master_context(enclave_id: EnclaveId, key_epoch: u32, public_key_hex: &str) -> EncryptionContext {
    EncryptionContext::from([
        ("keyward:enclave_id".to_owned(), enclave_id.to_string()),
        ("keyward:key_epoch".to_owned(), key_epoch.to_string()),
        ("keyward:public_key".to_owned(), public_key_hex.to_owned()),
    ])
}

/// The master key of one enclave.
pub struct Master<D> {
    state: RwLock<State>,
    lifecycle: Mutex<()>,
    data_keys: D,
    random: Arc<dyn Randomness>,
    /// The KMS key and region this enclave is pinned to.
    pinned: Pinned,
}

impl<D> std::fmt::Debug for Master<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master").field("pinned", &self.pinned).finish_non_exhaustive()
    }
}

#[derive(Default)]
enum State {
    #[default]
    Empty,
    AwaitingCommit(Loaded),
    Ready(Loaded),
}

#[derive(Clone)]
struct Loaded {
    key: Arc<MasterKey>,
    enclave_id: EnclaveId,
    key_epoch: u32,
    /// Epoch of a rotation handed out but not yet committed.
    rotating_to: Option<u32>,
}

impl<D: DataKeySource> Master<D> {
    /// No key loaded yet; data keys come from `data_keys`, under the pinned KMS key.
    pub fn new(data_keys: D, random: Arc<dyn Randomness>, pinned: Pinned) -> Self {
        Master { state: RwLock::default(), lifecycle: Mutex::new(()), data_keys, random, pinned }
    }

    pub fn status(&self) -> Status {
        let state = self.read();
        let (kind, loaded) = match &*state {
            State::Empty => (EnclaveState::Empty, None),
            State::AwaitingCommit(l) => (EnclaveState::AwaitingCommit, Some(l)),
            State::Ready(l) => (EnclaveState::Ready, Some(l)),
        };
        Status {
            state: kind,
            enclave_id: loaded.map(|l| l.enclave_id),
            public_key: loaded.map(|l| CompressedPublicKey(l.key.public_key())),
            key_epoch: loaded.map(|l| l.key_epoch),
        }
    }

    /// First start: a new key sealed under a new data key. Refused once a key is committed.
    pub async fn provision(&self, request: Provision) -> Reply<SealedKey> {
        let _lifecycle = self.lifecycle.lock().await;
        if let State::Ready(l) = &*self.read() {
            return Err(ErrorReply::new(
                ErrorCode::AlreadyProvisioned,
                format!(
                    "enclave already holds the committed key of enclave {}; refusing to generate another",
                    l.enclave_id
                ),
            ));
        }
        self.pinned.check_request(&request.kms_key_id, &request.region)?;
        let key = MasterKey::generate(|buf: &mut [u8]| self.random.fill(buf))
            .map_err(|e| ErrorReply::new(ErrorCode::Internal, e.to_string()))?;
        crash_point("enclave:provision:before-kms");
        let sealed = self.seal(&key, request.enclave_id, 1, &request.credentials).await?;
        self.prove_round_trip(&sealed, &key, &request.credentials).await?;
        crash_point("enclave:provision:after-kms");
        tracing::info!(event = event::KEY_PROVISIONED, enclave_id = %request.enclave_id, public_key = %sealed.public_key.to_hex(), "provisioned a new master key; awaiting commit");
        *self.write() = State::AwaitingCommit(Loaded {
            key: Arc::new(key),
            enclave_id: request.enclave_id,
            key_epoch: 1,
            rotating_to: None,
        });
        Ok(sealed)
    }

    /// The gateway stored the row (or a rotation's new row): start or keep signing.
    pub async fn commit(&self, request: Commit) -> Reply<Status> {
        let _lifecycle = self.lifecycle.lock().await;
        let mut state = self.write();
        match &*state {
            State::AwaitingCommit(_) => crash_point("enclave:provision:at-commit"),
            State::Ready(l) if l.rotating_to.is_some() => crash_point("enclave:rotate:at-commit"),
            _ => {}
        }
        let next = match &*state {
            State::AwaitingCommit(l) if matches(l, &request) && request.key_epoch == l.key_epoch => {
                tracing::info!(event = event::KEY_COMMITTED, enclave_id = %l.enclave_id, key_epoch = l.key_epoch, "master key committed; signing enabled");
                State::Ready(l.clone())
            }
            State::Ready(l) if matches(l, &request) && request.key_epoch == l.key_epoch => State::Ready(l.clone()),
            State::Ready(l) if matches(l, &request) && l.rotating_to == Some(request.key_epoch) => {
                tracing::info!(event = event::KEY_COMMITTED, enclave_id = %l.enclave_id, key_epoch = request.key_epoch, "data-key rotation committed");
                State::Ready(Loaded { key_epoch: request.key_epoch, rotating_to: None, ..l.clone() })
            }
            State::Empty => return Err(ErrorReply::new(ErrorCode::NotReady, "nothing to commit: no key is loaded")),
            _ => {
                return Err(ErrorReply::new(
                    ErrorCode::BadRequest,
                    "commit does not match the key in the enclave (enclave id, public key or epoch differ)",
                ));
            }
        };
        *state = next;
        drop(state);
        Ok(self.status())
    }

    /// Restart: open a stored row and start signing with it.
    pub async fn unseal(&self, request: Unseal) -> Reply<Status> {
        let _lifecycle = self.lifecycle.lock().await;
        let sealed = request.sealed;
        let holding = match &*self.read() {
            State::Ready(l) => Some((l.enclave_id, l.key.public_key() == sealed.public_key.0)),
            _ => None,
        };
        match holding {
            // Already unsealed (the gateway reconnected to a running enclave): nothing to do.
            Some((id, true)) if id == sealed.enclave_id => return Ok(self.status()),
            Some((id, _)) => {
                return Err(ErrorReply::new(
                    ErrorCode::AlreadyProvisioned,
                    format!("enclave already holds the key of enclave {id}; restart it to load another"),
                ));
            }
            None => {}
        }
        let key = self.open_row(&sealed, &request.credentials).await?;
        tracing::info!(event = event::KEY_UNSEALED, enclave_id = %sealed.enclave_id, key_epoch = sealed.key_epoch, public_key = %sealed.public_key.to_hex(), "master key unsealed; signing enabled");
        *self.write() = State::Ready(Loaded {
            key: Arc::new(key),
            enclave_id: sealed.enclave_id,
            key_epoch: sealed.key_epoch,
            rotating_to: None,
        });
        Ok(self.status())
    }

    /// Data-key rotation: the same master key sealed under a new data key at `epoch + 1`.
    /// The enclave keeps signing; the new epoch takes effect on `Commit`.
    pub async fn rotate(&self, request: Rotate) -> Reply<SealedKey> {
        let _lifecycle = self.lifecycle.lock().await;
        let loaded = match &*self.read() {
            State::Ready(l) => l.clone(),
            _ => return Err(ErrorReply::new(ErrorCode::NotReady, "no committed key to rotate")),
        };
        let row = &request.sealed;
        if row.enclave_id != loaded.enclave_id
            || row.public_key.0 != loaded.key.public_key()
            || row.key_epoch != loaded.key_epoch
        {
            return Err(ErrorReply::new(
                ErrorCode::BadRequest,
                format!(
                    "rotation starts from enclave {} epoch {}, but the enclave holds enclave {} epoch {}",
                    row.enclave_id, row.key_epoch, loaded.enclave_id, loaded.key_epoch
                ),
            ));
        }
        let next_epoch = loaded
            .key_epoch
            .checked_add(1)
            .ok_or_else(|| ErrorReply::new(ErrorCode::BadRequest, "key_epoch cannot grow further"))?;
        crash_point("enclave:rotate:before-kms");
        let sealed = self.seal(&loaded.key, loaded.enclave_id, next_epoch, &request.credentials).await?;
        self.prove_round_trip(&sealed, &loaded.key, &request.credentials).await?;
        crash_point("enclave:rotate:after-kms");
        if let State::Ready(l) = &mut *self.write() {
            l.rotating_to = Some(next_epoch);
        }
        tracing::info!(event = event::KEY_RESEALED, enclave_id = %loaded.enclave_id, key_epoch = next_epoch, "resealed under a new data key; awaiting commit");
        Ok(sealed)
    }

    pub fn sign(&self, request: &SignRequest) -> Reply<SignatureReply> {
        let key = self.ready_key()?;
        sign_with(&key, request)
    }

    pub fn sign_batch(&self, requests: &[SignRequest]) -> Reply<Vec<Reply<SignatureReply>>> {
        let key = self.ready_key()?;
        Ok(requests.iter().map(|r| sign_with(&key, r)).collect())
    }

    pub fn public_key(&self) -> Reply<PublicKeyInfo> {
        match &*self.read() {
            State::Ready(l) => Ok(PublicKeyInfo {
                enclave_id: l.enclave_id,
                public_key: CompressedPublicKey(l.key.public_key()),
                xonly_public_key: l.key.xonly_public_key(),
                key_epoch: l.key_epoch,
            }),
            _ => Err(not_ready()),
        }
    }

    /// The committed master public key (compressed), which attestation documents carry as
    /// `user_data`; `None` before one is committed.
    pub fn committed_public_key(&self) -> Option<[u8; 33]> {
        match &*self.read() {
            State::Ready(l) => Some(l.key.public_key()),
            _ => None,
        }
    }

    /// Recovers the data key of a stored row with attested `Decrypt`, checks the row's KMS
    /// key, and opens the seal (which checks the public key). Nothing is kept on failure.
    async fn open_row(&self, sealed: &SealedKey, credentials: &AwsCredentials) -> Reply<MasterKey> {
        self.pinned.check_row(&sealed.kms_key_id, format_args!("row of enclave {}", sealed.enclave_id))?;
        let context = master_context(sealed.enclave_id, sealed.key_epoch, &sealed.public_key.to_hex());
        let (dek, arn) =
            self.data_keys.decrypt(credentials, &sealed.kms_encrypted_dek, &context).await.map_err(|e| {
                ErrorReply::new(
                    e.code,
                    format!("cannot recover the data key of enclave {}: {}", sealed.enclave_id, e.message),
                )
            })?;
        if arn != sealed.kms_key_id {
            return Err(ErrorReply::new(
                ErrorCode::KmsKeyMismatch,
                format!(
                    "row of enclave {} names KMS key {} but its data key belongs to {arn}; the row was altered",
                    sealed.enclave_id, sealed.kms_key_id
                ),
            ));
        }
        keyward_seal::open(&sealed.encrypted_private_key, &dek, &binding(sealed)).map_err(open_error)
    }

    /// Opens a newly sealed row as a restart would, before it is handed out: a row that does
    /// not open again is never stored.
    async fn prove_round_trip(&self, sealed: &SealedKey, key: &MasterKey, credentials: &AwsCredentials) -> Reply<()> {
        let fail = |cause: ErrorReply| {
            tracing::error!(event = event::ROUND_TRIP_FAILED, enclave_id = %sealed.enclave_id, key_epoch = sealed.key_epoch, cause = cause.code.as_str(), "a newly sealed row did not open again; discarded");
            ErrorReply::new(
                ErrorCode::RoundTripFailed,
                format!(
                    "the newly sealed row of enclave {} (key_epoch {}) does not open again ({}: {}); it was discarded and the stored row is unchanged",
                    sealed.enclave_id, sealed.key_epoch, cause.code, cause.message
                ),
            )
        };
        let opened = self.open_row(sealed, credentials).await.map_err(fail)?;
        if opened.public_key() != key.public_key() {
            return Err(fail(ErrorReply::new(ErrorCode::PublicKeyMismatch, "the reopened key is not the sealed key")));
        }
        Ok(())
    }

    async fn seal(
        &self,
        key: &MasterKey,
        enclave_id: EnclaveId,
        key_epoch: u32,
        credentials: &AwsCredentials,
    ) -> Reply<SealedKey> {
        let public_key = CompressedPublicKey(key.public_key());
        let context = master_context(enclave_id, key_epoch, &public_key.to_hex());
        let new = self.data_keys.generate(credentials, &context).await?;
        let mut nonce = [0u8; 12];
        self.random.fill(&mut nonce).map_err(|e| ErrorReply::new(ErrorCode::Internal, e))?;
        let binding =
            SealBinding { enclave_id: enclave_id.0, key_epoch, public_key: &public_key.0, kms_key_id: &new.key_arn };
        let encrypted_private_key = keyward_seal::seal(key, &new.dek, &binding, nonce).map_err(seal_error)?;
        Ok(SealedKey {
            enclave_id,
            kms_encrypted_dek: new.ciphertext_blob,
            encrypted_private_key,
            public_key,
            kms_key_id: new.key_arn,
            key_epoch,
        })
    }

    fn ready_key(&self) -> Reply<Arc<MasterKey>> {
        match &*self.read() {
            State::Ready(l) => Ok(l.key.clone()),
            _ => Err(not_ready()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A poisoned lock means a panic while the state was being replaced; the state value
        // itself is always a complete enum, so reading it is still sound.
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn matches(loaded: &Loaded, commit: &Commit) -> bool {
    loaded.enclave_id == commit.enclave_id && loaded.key.public_key() == commit.public_key.0
}

fn binding(sealed: &SealedKey) -> SealBinding<'_> {
    SealBinding {
        enclave_id: sealed.enclave_id.0,
        key_epoch: sealed.key_epoch,
        public_key: &sealed.public_key.0,
        kms_key_id: &sealed.kms_key_id,
    }
}

fn sign_with(key: &MasterKey, request: &SignRequest) -> Reply<SignatureReply> {
    Ok(match request.scheme {
        Scheme::Ecdsa => {
            let (signature, recovery_id) = key.sign_ecdsa(&request.digest.0);
            SignatureReply { scheme: Scheme::Ecdsa, signature, recovery_id: Some(recovery_id), receipt: None }
        }
        Scheme::Bip340 => {
            let mut aux = [0u8; 32];
            getrandom::fill(&mut aux).map_err(|e| ErrorReply::new(ErrorCode::Internal, format!("randomness: {e}")))?;
            SignatureReply {
                scheme: Scheme::Bip340,
                signature: key.sign_bip340(&request.digest.0, &aux),
                recovery_id: None,
                receipt: None,
            }
        }
    })
}

fn seal_error(e: SealError) -> ErrorReply {
    ErrorReply::new(ErrorCode::Internal, e.to_string())
}

/// Why a stored seal did not open, as a stable code.
fn open_error(e: SealError) -> ErrorReply {
    let code = match e {
        SealError::PublicKeyMismatch { .. } => ErrorCode::PublicKeyMismatch,
        SealError::Malformed { .. }
        | SealError::UnsupportedVersion(_)
        | SealError::Authentication { .. }
        | SealError::InvalidKey => ErrorCode::SealOpenFailed,
        _ => ErrorCode::Internal,
    };
    ErrorReply::new(code, e.to_string())
}

fn not_ready() -> ErrorReply {
    ErrorReply::new(
        ErrorCode::NotReady,
        "no committed master key yet: the gateway has not provisioned+committed or unsealed it",
    )
}

#[cfg(test)]
mod tests;

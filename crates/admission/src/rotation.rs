//! Data-key rotation of an enclave's master key, driven by the gateway: the enclave reseals
//! (and proves the new row opens), the row is replaced by compare-and-swap, the enclave commits.

use keyward_proto::{
    Commit, EnclaveId, Request, Response, Rotate,
    fault::{crash_point, pause_point},
};
use keyward_store::StoreError;
use keyward_telemetry::event;

use crate::{
    Credentials, Db, Enclave, LIFECYCLE_TIMEOUT, LinkError, row_from_sealed, sealed_from_row, unexpected_reply,
};

/// Why a rotation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The enclave is not ready.
    #[error("enclave {0} is not ready; rotate once it signs")]
    NotReady(EnclaveId),
    /// Reading or writing the row failed; nothing changed.
    #[error("database: {0}")]
    Store(StoreError),
    /// Another rotation won the compare-and-swap; nothing changed.
    #[error("{0}")]
    Conflict(StoreError),
    /// The enclave refused or failed.
    #[error("{0}")]
    Enclave(LinkError),
    /// The new row is stored, but the enclave did not confirm it. The key is the same, so
    /// signing is unaffected; the enclave adopts the stored epoch on its next bring-up.
    #[error(
        "the new row (key_epoch {epoch}) is stored, but the enclave did not commit it: {error}; \
         it is committed when the enclave is next brought up (restart the enclave if /v1/health keeps showing the old epoch)"
    )]
    NotCommitted { epoch: u32, error: LinkError },
    /// Credentials could not be obtained.
    #[error("{0}")]
    Credentials(String),
    /// The row is damaged or does not match the enclave.
    #[error("{0}")]
    Invalid(String),
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub public_key_hex: String,
    pub previous_epoch: u32,
    pub epoch: u32,
}

/// Data-key rotation: the enclave reseals its key under a new data key (`epoch + 1`), the
/// row is replaced by compare-and-swap on the old epoch, then the enclave commits. A crash
/// between the steps leaves either the old row (which still opens) or the new row (which
/// opens too, and is committed on the next bring-up). Signing continues throughout.
pub async fn rotate(
    enclave: &impl Enclave,
    id: EnclaveId,
    db: &Db,
    credentials: &impl Credentials,
) -> Result<Rotated, RotateError> {
    let row = db.get(id).await.map_err(RotateError::Store)?.ok_or(RotateError::NotReady(id))?;
    let sealed = sealed_from_row(row).map_err(RotateError::Invalid)?;
    let previous_epoch = sealed.key_epoch;
    let credentials = credentials.get().await.map_err(RotateError::Credentials)?;
    let request = Request::Rotate(Rotate { sealed: sealed.clone(), credentials });
    crash_point("gateway:rotate:before-kms");
    let new = match enclave.call(request, LIFECYCLE_TIMEOUT).await {
        Ok(Response::Rotated(new)) => new,
        Ok(other) => {
            return Err(RotateError::Enclave(unexpected_reply("Rotate", &other)));
        }
        Err(e) => return Err(RotateError::Enclave(e)),
    };
    if new.enclave_id != sealed.enclave_id || new.public_key != sealed.public_key || new.key_epoch != previous_epoch + 1
    {
        return Err(RotateError::Invalid("the enclave's rotated row does not continue the stored one".into()));
    }
    crash_point("gateway:rotate:before-store");
    pause_point("gateway:rotate:before-store").await;
    db.rotate(row_from_sealed(&new), i64::from(previous_epoch)).await.map_err(|e| match e {
        e @ StoreError::EpochConflict { .. } => RotateError::Conflict(e),
        other => RotateError::Store(other),
    })?;
    tracing::info!(event = event::ROW_STORED, enclave_id = %id, key_epoch = new.key_epoch, "stored the rotated row; committing");
    crash_point("gateway:rotate:before-commit");
    let commit = Commit { enclave_id: id, public_key: new.public_key, key_epoch: new.key_epoch };
    enclave
        .call(Request::Commit(commit), LIFECYCLE_TIMEOUT)
        .await
        .map_err(|error| RotateError::NotCommitted { epoch: new.key_epoch, error })?;
    Ok(Rotated { public_key_hex: new.public_key.to_hex(), previous_epoch, epoch: new.key_epoch })
}

//! The keyring from the gateway's side: bringing the root up in each enclave (the one stored
//! root, or a new one when there is none), rotating the root's data key, and turning stored
//! rows into the typed rows the enclave takes.
//!
//! Several gateways may share one database: when two find no root at once, both have their
//! enclaves make one, one INSERT wins, and the other unseals the winner's root (its own new
//! root is never committed, so it never wraps a key).

use std::time::{SystemTime, UNIX_EPOCH};

use keyward_proto::{
    KeyFlags, KeyIdentity, KeyName, KeyType, KeyVersion, KeyringPhase, KeyringStatus, Origin, Request, Response,
    RootCommit, RootId, RootProvision, RootRotate, RootUnseal, SealedRoot, WrappedKey,
    fault::{crash_point, pause_point},
};
use keyward_store::{KeyRow, RootRow, StoreError, VersionRow};
use keyward_telemetry::event;

use crate::{Credentials, Db, Enclave, LIFECYCLE_TIMEOUT, LinkError, Problem, unexpected_reply};

/// Unix seconds now.
pub fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub fn root_row(sealed: &SealedRoot) -> RootRow {
    RootRow {
        root_id: sealed.root_id.0.to_vec(),
        kms_encrypted_dek: sealed.kms_encrypted_dek.clone(),
        sealed_root: sealed.sealed_root.clone(),
        kms_key_id: sealed.kms_key_id.clone(),
        root_epoch: i64::from(sealed.root_epoch),
    }
}

/// A stored root as the enclave takes it; a damaged column is named.
pub fn sealed_root(row: RootRow) -> Result<SealedRoot, String> {
    let root_id: [u8; 16] = row
        .root_id
        .as_slice()
        .try_into()
        .map_err(|_| format!("root_id is {} bytes, expected 16", row.root_id.len()))?;
    let root_epoch = u32::try_from(row.root_epoch)
        .ok()
        .filter(|e| *e >= 1)
        .ok_or_else(|| format!("root_epoch {} is out of range", row.root_epoch))?;
    Ok(SealedRoot {
        root_id: RootId(root_id),
        kms_encrypted_dek: row.kms_encrypted_dek,
        sealed_root: row.sealed_root,
        kms_key_id: row.kms_key_id,
        root_epoch,
    })
}

/// Which key version `version` of the stored key `key` is; a damaged column is named.
pub fn key_identity(key: &KeyRow, version: i64) -> Result<KeyIdentity, String> {
    let name = KeyName::parse(&key.name).map_err(|e| format!("name: {e}"))?;
    let key_type = KeyType::parse(&key.key_type).ok_or_else(|| format!("type {:?} is not a key type", key.key_type))?;
    let origin = match key.origin.as_str() {
        "generated" => Origin::Generated,
        "imported" => Origin::Imported,
        other => return Err(format!("origin {other:?} is neither generated nor imported")),
    };
    let version = u32::try_from(version)
        .ok()
        .and_then(KeyVersion::new)
        .ok_or_else(|| format!("version {version} is out of range"))?;
    Ok(KeyIdentity { name, version, key_type, flags: KeyFlags { exportable: key.exportable, origin } })
}

/// The stored rows of a key version as the enclave takes them; a damaged column is named.
pub fn wrapped_key(key: &KeyRow, version: VersionRow) -> Result<WrappedKey, String> {
    let identity = key_identity(key, version.version)?;
    let root_id: [u8; 16] = version
        .root_id
        .as_slice()
        .try_into()
        .map_err(|_| format!("root_id is {} bytes, expected 16", version.root_id.len()))?;
    Ok(WrappedKey { identity, root_id: RootId(root_id), public_key: version.public_key, wrapped: version.wrapped })
}

/// The version row the enclave's wrapped key becomes.
pub fn version_row(wrapped: &WrappedKey, created_at: i64) -> VersionRow {
    VersionRow {
        name: wrapped.identity.name.to_string(),
        version: i64::from(wrapped.identity.version.get()),
        root_id: wrapped.root_id.0.to_vec(),
        public_key: wrapped.public_key.clone(),
        wrapped: wrapped.wrapped.clone(),
        created_at,
    }
}

fn remote(e: LinkError) -> Problem {
    match e {
        LinkError::Remote(reply) => Problem::new(reply.code.as_str(), reply.message),
        other => Problem::new("link_lost", other.to_string()),
    }
}

async fn call(link: &impl Enclave, request: Request, what: &str) -> Result<Response, Problem> {
    link.call(request, LIFECYCLE_TIMEOUT).await.map_err(|e| {
        let mut problem = remote(e);
        problem.detail = format!("{what}: {}", problem.detail);
        problem
    })
}

async fn expect_status(link: &impl Enclave, request: Request, what: &str) -> Result<KeyringStatus, Problem> {
    match call(link, request, what).await? {
        Response::Keyring(status) => Ok(status),
        other => Err(Problem::new("enclave_protocol", unexpected_reply(what, &other).to_string())),
    }
}

/// Brings the keyring up in the enclave behind `link`: the stored root unsealed, or, when the
/// database has none, a new root made, stored (first INSERT wins) and committed.
pub async fn bring_up(
    link: &impl Enclave,
    db: &Db,
    credentials: &impl Credentials,
    kms_key_id: &str,
    region: &str,
) -> Result<KeyringStatus, Problem> {
    let status = expect_status(link, Request::KeyringStatus, "KeyringStatus").await?;
    let stored = db
        .root()
        .await
        .map_err(|e| Problem::new(e.code(), format!("cannot read the keyring root: {e}; not making another")))?;
    let stored = stored.map(sealed_root).transpose().map_err(|e| {
        Problem::new("root_row_damaged", format!("the stored keyring root is damaged: {e}; left untouched"))
    })?;
    match (stored, status.phase) {
        (Some(root), KeyringPhase::Ready) if status.root_id == Some(root.root_id) => {
            if status.root_epoch == Some(root.root_epoch) {
                return Ok(status);
            }
            // A root rotation was stored but not committed before a crash.
            let commit = RootCommit { root_id: root.root_id, root_epoch: root.root_epoch };
            expect_status(link, Request::RootCommit(commit), "RootCommit").await
        }
        (Some(_), KeyringPhase::Ready) => Err(Problem::new(
            "enclave_holds_another_root",
            "the enclave holds another keyring root than the database's; nothing was changed (restart the enclave)",
        )),
        (Some(root), _) => unseal(link, credentials, root).await,
        (None, KeyringPhase::Ready) => Err(Problem::new(
            "database_lost_its_root",
            "the enclave holds a committed keyring root but the database has none; refusing to make another (restore the database)",
        )),
        (None, _) => provision(link, db, credentials, kms_key_id, region).await,
    }
}

async fn unseal(
    link: &impl Enclave,
    credentials: &impl Credentials,
    root: SealedRoot,
) -> Result<KeyringStatus, Problem> {
    let credentials = credentials.get().await.map_err(|e| Problem::new("credentials_unavailable", e))?;
    expect_status(link, Request::RootUnseal(RootUnseal { sealed: root, credentials }), "RootUnseal").await
}

async fn provision(
    link: &impl Enclave,
    db: &Db,
    credentials: &impl Credentials,
    kms_key_id: &str,
    region: &str,
) -> Result<KeyringStatus, Problem> {
    let aws = credentials.get().await.map_err(|e| Problem::new("credentials_unavailable", e))?;
    let request = RootProvision { kms_key_id: kms_key_id.to_owned(), region: region.to_owned(), credentials: aws };
    let sealed = match call(link, Request::RootProvision(request), "RootProvision").await? {
        Response::RootSealed(sealed) => sealed,
        other => return Err(Problem::new("enclave_protocol", unexpected_reply("RootProvision", &other).to_string())),
    };
    crash_point("gateway:keyring:before-store");
    pause_point("gateway:keyring:before-store").await;
    match db.insert_root(root_row(&sealed)).await {
        Ok(()) => {
            crash_point("gateway:keyring:before-commit");
            tracing::info!(event = event::ROW_STORED, root_id = %sealed.root_id, "stored the new keyring root; committing");
            let commit = RootCommit { root_id: sealed.root_id, root_epoch: sealed.root_epoch };
            expect_status(link, Request::RootCommit(commit), "RootCommit").await
        }
        Err(StoreError::RootExists) => {
            // Another gateway stored its root first: use that one; ours is never committed.
            tracing::info!(root_id = %sealed.root_id, "another gateway stored a keyring root first; unsealing it instead");
            let winner =
                db.root().await.map_err(|e| Problem::new(e.code(), e.to_string()))?.ok_or_else(|| {
                    Problem::new("database_unavailable", "the keyring root vanished after a conflict")
                })?;
            let winner = sealed_root(winner).map_err(|e| Problem::new("root_row_damaged", e))?;
            unseal(link, credentials, winner).await
        }
        Err(e) => Err(Problem::new(
            e.code(),
            format!("cannot store the new keyring root: {e}; it was not committed and will never wrap a key"),
        )),
    }
}

pub use keyward_client::keys::RootRotated;

/// Root rotation: a new data key for the same root (`epoch + 1`), stored by compare-and-swap,
/// then committed. Keys keep working throughout.
pub async fn rotate_root(link: &impl Enclave, db: &Db, credentials: &impl Credentials) -> Result<RootRotated, Problem> {
    let stored = db
        .root()
        .await
        .map_err(|e| Problem::new(e.code(), e.to_string()))?
        .ok_or_else(|| Problem::new("keyring_not_ready", "no keyring root is stored yet"))?;
    let stored = sealed_root(stored).map_err(|e| Problem::new("root_row_damaged", e))?;
    let previous = stored.root_epoch;
    let aws = credentials.get().await.map_err(|e| Problem::new("credentials_unavailable", e))?;
    let new =
        match call(link, Request::RootRotate(RootRotate { sealed: stored.clone(), credentials: aws }), "RootRotate")
            .await?
        {
            Response::RootSealed(new) => new,
            other => return Err(Problem::new("enclave_protocol", unexpected_reply("RootRotate", &other).to_string())),
        };
    if new.root_id != stored.root_id || new.root_epoch != previous + 1 {
        return Err(Problem::new("rotation_invalid", "the enclave's rotated root does not continue the stored one"));
    }
    db.rotate_root(root_row(&new), i64::from(previous)).await.map_err(|e| Problem::new(e.code(), e.to_string()))?;
    let commit = RootCommit { root_id: new.root_id, root_epoch: new.root_epoch };
    expect_status(link, Request::RootCommit(commit), "RootCommit").await.map_err(|mut p| {
        p.code = "rotation_not_committed";
        p.detail = format!(
            "the new keyring root row (epoch {}) is stored, but the enclave did not commit it: {}; it is committed when the enclave is next brought up",
            new.root_epoch, p.detail
        );
        p
    })?;
    Ok(RootRotated { root_id: new.root_id.to_string(), previous_root_epoch: previous, root_epoch: new.root_epoch })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_row() -> KeyRow {
        KeyRow {
            name: "wallet".into(),
            key_type: "p256".into(),
            exportable: true,
            origin: "imported".into(),
            state: "enabled".into(),
            latest_version: 2,
            deletion_due: None,
            created_at: 1,
            revision: 3,
            min_decryption_version: 1,
        }
    }

    fn version(v: i64) -> VersionRow {
        VersionRow {
            name: "wallet".into(),
            version: v,
            root_id: vec![4; 16],
            public_key: vec![2; 33],
            wrapped: vec![1; 61],
            created_at: 5,
        }
    }

    #[test]
    fn rows_and_wrapped_keys_convert_both_ways() {
        let wrapped = wrapped_key(&key_row(), version(2)).unwrap();
        assert_eq!(wrapped.identity.key_type, KeyType::P256);
        assert_eq!(wrapped.identity.flags, KeyFlags { exportable: true, origin: Origin::Imported });
        assert_eq!(version_row(&wrapped, 5), version(2));
        let root = SealedRoot {
            root_id: RootId([3; 16]),
            kms_encrypted_dek: vec![1],
            sealed_root: vec![2],
            kms_key_id: "arn".into(),
            root_epoch: 4,
        };
        assert_eq!(sealed_root(root_row(&root)).unwrap(), root);
    }

    #[test]
    fn damaged_columns_are_named() {
        let mut bad = key_row();
        bad.key_type = "rsa".into();
        assert!(wrapped_key(&bad, version(1)).unwrap_err().contains("type"));
        let mut bad = key_row();
        bad.name = "no spaces".into();
        assert!(wrapped_key(&bad, version(1)).unwrap_err().contains("name"));
        assert!(wrapped_key(&key_row(), version(0)).unwrap_err().contains("version 0"));
        let mut short_root = version(1);
        short_root.root_id.pop();
        assert!(wrapped_key(&key_row(), short_root).unwrap_err().contains("root_id"));
        let root = RootRow {
            root_id: vec![1; 15],
            kms_encrypted_dek: vec![],
            sealed_root: vec![],
            kms_key_id: String::new(),
            root_epoch: 1,
        };
        assert!(sealed_root(root).unwrap_err().contains("root_id"));
    }
}

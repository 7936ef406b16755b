//! Key and keystore policies over HTTP. `PUT /v1/keys/{name}/policy` and
//! `PUT /v1/keystores/{id}/policy` take a signed request whose body is the new policy document;
//! the enclave checks the signatures against the owners' policy and the current key and
//! keystore policies, and tags the new version under the keyring root. The gateway only stores
//! the row it gets back (a version stored meanwhile by another gateway is a 409). `GET` shows
//! the newest stored version. A keystore's policy is the row whose key name is empty; only the
//! default keystore exists so far.

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode},
    routing::put,
};
use keyward_admission::keyring::now_unix;
use keyward_client::keys::{AuditReceiptInfo, KeyPolicyInfo, KeystorePolicyInfo};
use keyward_proto::{PolicyRow, PolicySet, Request, Response};
use keyward_store::PolicyRecord;

use crate::key_path::{KeyPath, KeystorePath};
use crate::{
    api::AppState,
    errors::ApiError,
    keys_api::{KEY_TIMEOUT, key_name, keyring_link, load, store_error, with_policies_of},
    link::unexpected_reply,
    signed::{self, SignedJson},
};

/// A policy document's size limit.
const MAX_POLICY_BODY: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    let limit = || DefaultBodyLimit::max(MAX_POLICY_BODY);
    let mut router = Router::new()
        .route("/v1/keystores/{keystore}/policy", put(set_keystore_policy).get(get_keystore_policy).layer(limit()));
    for prefix in crate::key_path::PREFIXES {
        router =
            router.route(&format!("{prefix}/{{name}}/policy"), put(set_key_policy).get(get_key_policy).layer(limit()));
    }
    router
}

/// A stored row as the enclave takes it. A tag column of the wrong length is passed on as
/// zeros: the enclave refuses that row as tampered, as it would any other edit.
/// The policy row the store holds for `keystore`/`key`. On the enclave's TLS API (the rows come
/// from the host) the enclave checks it first: tagged under its keyring, of that key, not older
/// than one it has seen, not withheld (`policy_tampered`, `policy_rollback`).
async fn checked_policy(
    app: &AppState,
    keystore: String,
    key: String,
    record: Option<PolicyRecord>,
) -> Result<Option<PolicyRow>, ApiError> {
    let row = record.map(policy_row);
    if app.check_rows && app.owners {
        let link = crate::keys_api::keyring_link(app)?;
        let check = keyward_proto::PolicyCheck { keystore, key, row: row.clone() };
        match link.call(Request::PolicyCheck(Box::new(check)), KEY_TIMEOUT).await.map_err(ApiError::from_link)? {
            Response::KeysChecked => {}
            other => return Err(ApiError::from_link(crate::link::unexpected_reply("PolicyCheck", &other))),
        }
    }
    Ok(row)
}

pub(crate) fn policy_row(record: PolicyRecord) -> PolicyRow {
    PolicyRow {
        keystore: record.keystore,
        key: record.key_name,
        version: u64::try_from(record.version).unwrap_or(0),
        body: record.body,
        tag: record.tag.as_slice().try_into().unwrap_or([0; 32]),
    }
}

/// The stored document, as JSON.
fn document(row: &PolicyRow) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(&row.body).map_err(|e| {
        let of = if row.key.is_empty() { format!("keystore {}", row.keystore) } else { row.key.clone() };
        ApiError::internal(format!("the stored policy of {of} (version {}) is not JSON: {e}", row.version))
    })
}

fn key_info(row: &PolicyRow, receipt: Option<AuditReceiptInfo>) -> Result<KeyPolicyInfo, ApiError> {
    let name = match row.keystore.as_str() {
        signed::DEFAULT_KEYSTORE => row.key.clone(),
        keystore => format!("{keystore}/{}", row.key),
    };
    Ok(KeyPolicyInfo { name, version: row.version, policy: document(row)?, receipt })
}

fn keystore_info(row: &PolicyRow, receipt: Option<AuditReceiptInfo>) -> Result<KeystorePolicyInfo, ApiError> {
    Ok(KeystorePolicyInfo { keystore: row.keystore.clone(), version: row.version, policy: document(row)?, receipt })
}

/// Has the enclave check and tag a new policy of `key` (empty: the keystore's), then stores it.
async fn seal_and_store(
    app: &AppState,
    headers: &HeaderMap,
    keystore: &str,
    key: &str,
    body: &SignedJson<serde_json::Value>,
) -> Result<(PolicyRow, AuditReceiptInfo), ApiError> {
    let auth = signed::authorization(headers, keystore, &body.bytes)?;
    let auth = with_policies_of(app, auth, keystore, key).await?;
    let request = PolicySet { keystore: keystore.to_owned(), key: key.to_owned(), auth };
    let link = keyring_link(app)?;
    let sealed =
        match link.call(Request::PolicySet(Box::new(request)), KEY_TIMEOUT).await.map_err(ApiError::from_link)? {
            Response::PolicySealed(sealed) => sealed,
            other => return Err(ApiError::from_link(unexpected_reply("PolicySet", &other))),
        };
    store_sealed(app, &sealed.row).await?;
    tracing::info!(keystore, key, version = sealed.row.version, "policy set");
    Ok((sealed.row, receipt(sealed.receipt)))
}

/// A receipt as the API shows it.
pub(crate) fn receipt(r: keyward_proto::AuditReceipt) -> AuditReceiptInfo {
    AuditReceiptInfo { seq: r.seq, hash: r.hash }
}

/// Stores a policy row an enclave sealed (a version stored meanwhile is a 409).
pub(crate) async fn store_sealed(app: &AppState, row: &PolicyRow) -> Result<(), ApiError> {
    let record = PolicyRecord {
        keystore: row.keystore.clone(),
        key_name: row.key.clone(),
        version: i64::try_from(row.version).map_err(|_| ApiError::internal("policy version out of range"))?,
        body: row.body.clone(),
        tag: row.tag.to_vec(),
        created_at: now_unix(),
    };
    app.db.insert_policy(record).await.map_err(store_error)
}

async fn set_key_policy(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: SignedJson<serde_json::Value>,
) -> Result<Json<KeyPolicyInfo>, ApiError> {
    app.api_token.authorize(&headers)?;
    let name = key_name(&name)?;
    load(&app, name.as_str()).await?;
    let (row, receipt) = seal_and_store(&app, &headers, name.keystore(), name.local(), &body).await?;
    Ok(Json(key_info(&row, Some(receipt))?))
}

async fn get_key_policy(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
) -> Result<Json<KeyPolicyInfo>, ApiError> {
    app.authorize_reader(&headers)?;
    let name = key_name(&name)?;
    let (keystore, key) = (name.keystore().to_owned(), name.local().to_owned());
    let record = app.db.latest_policy(keystore.clone(), key.clone()).await.map_err(store_error)?;
    let row = checked_policy(&app, keystore, key, record).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "policy_not_found", format!("key {name} has no policy of its own"))
    })?;
    Ok(Json(key_info(&row, None)?))
}

async fn set_keystore_policy(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeystorePath(keystore): KeystorePath,
    body: SignedJson<serde_json::Value>,
) -> Result<Json<KeystorePolicyInfo>, ApiError> {
    app.api_token.authorize(&headers)?;
    let (row, receipt) = seal_and_store(&app, &headers, keystore.as_str(), "", &body).await?;
    Ok(Json(keystore_info(&row, Some(receipt))?))
}

async fn get_keystore_policy(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeystorePath(keystore): KeystorePath,
) -> Result<Json<KeystorePolicyInfo>, ApiError> {
    app.authorize_reader(&headers)?;
    let record = app.db.latest_policy(keystore.to_string(), String::new()).await.map_err(store_error)?;
    let row = checked_policy(&app, keystore.to_string(), String::new(), record).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "policy_not_found", format!("keystore {keystore} has no policy"))
    })?;
    Ok(Json(keystore_info(&row, None)?))
}

//! Key policies over HTTP. `PUT /v1/keys/{name}/policy` takes a signed request whose body is
//! the new policy document; the enclave checks the signatures against the owners' and the key's
//! current policy, and tags the new version under the keyring root. The gateway only stores the
//! row it gets back (a version stored meanwhile by another gateway is a 409). `GET` shows the
//! newest stored version.

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode},
    routing::put,
};
use keyward_admission::keyring::now_unix;
use keyward_client::keys::{AuditReceiptInfo, KeyPolicyInfo};
use keyward_proto::{PolicyRow, PolicySet, Request, Response};
use keyward_store::PolicyRecord;

use crate::{
    api::AppState,
    errors::ApiError,
    keys_api::{KEY_TIMEOUT, key_name, keyring_link, load, store_error},
    link::unexpected_reply,
    signed::{self, SignedJson},
};

/// A policy document's size limit.
const MAX_POLICY_BODY: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/keys/{name}/policy", put(set_policy).get(get_policy).layer(DefaultBodyLimit::max(MAX_POLICY_BODY)))
}

/// A stored row as the enclave takes it. A tag column of the wrong length is passed on as
/// zeros: the enclave refuses that row as tampered, as it would any other edit.
pub(crate) fn policy_row(record: PolicyRecord) -> PolicyRow {
    PolicyRow {
        keystore: record.keystore,
        key: record.key_name,
        version: u64::try_from(record.version).unwrap_or(0),
        body: record.body,
        tag: record.tag.as_slice().try_into().unwrap_or([0; 32]),
    }
}

fn info(row: &PolicyRow, receipt: Option<AuditReceiptInfo>) -> Result<KeyPolicyInfo, ApiError> {
    let policy = serde_json::from_slice(&row.body).map_err(|e| {
        ApiError::internal(format!("the stored policy of {} (version {}) is not JSON: {e}", row.key, row.version))
    })?;
    Ok(KeyPolicyInfo { name: row.key.clone(), version: row.version, policy, receipt })
}

async fn set_policy(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: SignedJson<serde_json::Value>,
) -> Result<Json<KeyPolicyInfo>, ApiError> {
    app.api_token.authorize(&headers)?;
    let name = key_name(&name)?;
    load(&app, name.as_str()).await?;
    let keystore = signed::DEFAULT_KEYSTORE;
    let mut auth = signed::authorization(&headers, keystore, &body.bytes)?;
    let current = app.db.latest_policy(keystore.to_owned(), name.to_string()).await.map_err(store_error)?;
    if let Some(auth) = auth.as_mut() {
        auth.policy = current.map(policy_row);
    }
    let request = PolicySet { keystore: keystore.to_owned(), key: name.to_string(), auth };
    let link = keyring_link(&app)?;
    let sealed =
        match link.call(Request::PolicySet(Box::new(request)), KEY_TIMEOUT).await.map_err(ApiError::from_link)? {
            Response::PolicySealed(sealed) => sealed,
            other => return Err(ApiError::from_link(unexpected_reply("PolicySet", &other))),
        };
    let row = sealed.row;
    let record = PolicyRecord {
        keystore: row.keystore.clone(),
        key_name: row.key.clone(),
        version: i64::try_from(row.version).map_err(|_| ApiError::internal("policy version out of range"))?,
        body: row.body.clone(),
        tag: row.tag.to_vec(),
        created_at: now_unix(),
    };
    app.db.insert_policy(record).await.map_err(store_error)?;
    tracing::info!(key = %name, version = row.version, "key policy set");
    let receipt = AuditReceiptInfo { seq: sealed.receipt.seq, hash: sealed.receipt.hash };
    Ok(Json(info(&row, Some(receipt))?))
}

async fn get_policy(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<KeyPolicyInfo>, ApiError> {
    app.api_token.authorize(&headers)?;
    let name = key_name(&name)?;
    let keystore = signed::DEFAULT_KEYSTORE.to_owned();
    let record = app.db.latest_policy(keystore, name.to_string()).await.map_err(store_error)?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "policy_not_found", format!("key {name} has no policy of its own"))
    })?;
    Ok(Json(info(&policy_row(record), None)?))
}

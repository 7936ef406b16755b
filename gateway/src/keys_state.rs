//! Key states: `POST /v1/keys/{name}/disable`, `enable`, `cancel-deletion` and
//! `DELETE /v1/keys/{name}` (a deletion after the configured waiting time).
//!
//! With owners, each is a signed request (body `{"action": "disable", "version": N}` and so
//! on, `waiting_days` for a deletion) that the enclave checks and turns into the key's next
//! policy row, its state changed and tagged under the keyring root; the enclave then refuses to
//! use a key whose row is not enabled. The answer carries the change's audit receipt. The
//! `keys` row's state only mirrors it, for listings and for the gateway's own early refusal;
//! the deletion time is the one the owners signed. Without owners the gateway changes the
//! `keys` row alone, by compare-and-swap on its revision, with its configured waiting time.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use keyward_admission::keyring::now_unix;
use keyward_authz::{KeyState, Policy};
use keyward_client::keys::{AuditReceiptInfo, KeyInfo};
use keyward_proto::{KeyStateChange, KeyStateSet, Request, Response};
use keyward_store::StoreError;

use crate::key_path::KeyPath;
use crate::{
    api::AppState,
    errors::ApiError,
    keys_api::{KEY_TIMEOUT, effective_state, keyring_link, load, store_error, with_policy},
    keys_policy::store_sealed,
    keys_sign::key_info,
    link::unexpected_reply,
    signed,
};

/// The states `change` applies to, and the one it leads to (the gateway's own check, without
/// owners).
fn host_transition(change: KeyStateChange) -> (&'static [&'static str], &'static str) {
    match change {
        KeyStateChange::Disable => (&["enabled"], "disabled"),
        KeyStateChange::Enable => (&["disabled"], "enabled"),
        KeyStateChange::ScheduleDeletion { .. } => (&["enabled", "disabled"], "pending_deletion"),
        // A cancelled deletion leaves the key disabled (enable it to use it again).
        KeyStateChange::CancelDeletion => (&["pending_deletion"], "disabled"),
    }
}

/// The `keys` row's state and deletion time for a state an enclave sealed.
fn mirror(state: KeyState) -> (&'static str, Option<i64>) {
    match state {
        KeyState::Enabled => ("enabled", None),
        KeyState::Disabled => ("disabled", None),
        KeyState::PendingDeletion { due } => ("pending_deletion", Some(i64::try_from(due).unwrap_or(i64::MAX))),
    }
}

/// Has the enclave check a signed state change and seal the key's next policy row; stores the
/// row and returns the state it holds, with the change's audit receipt.
async fn sealed_state(
    app: &AppState,
    headers: &HeaderMap,
    name: &str,
    body: &Bytes,
    change: KeyStateChange,
) -> Result<(KeyState, AuditReceiptInfo), ApiError> {
    let (keystore, key) = keyward_proto::split_key_name(name);
    let auth = signed::authorization(headers, keystore, body)?;
    let auth = with_policy(app, auth, name).await?;
    let request = KeyStateSet { keystore: keystore.into(), key: key.into(), change, auth };
    let link = keyring_link(app)?;
    let sealed =
        match link.call(Request::KeyStateSet(Box::new(request)), KEY_TIMEOUT).await.map_err(ApiError::from_link)? {
            Response::PolicySealed(sealed) => sealed,
            other => return Err(ApiError::from_link(unexpected_reply("KeyStateSet", &other))),
        };
    store_sealed(app, &sealed.row).await?;
    let policy = Policy::from_json(&sealed.row.body)
        .map_err(|e| ApiError::internal(format!("the enclave sealed a policy row that does not parse: {e}")))?;
    tracing::info!(key = name, version = sealed.row.version, receipt = sealed.receipt.seq, "key state sealed");
    Ok((policy.state, crate::keys_policy::receipt(sealed.receipt)))
}

async fn change_state(
    app: &AppState,
    headers: &HeaderMap,
    name: &str,
    body: &Bytes,
    change: KeyStateChange,
) -> Result<Json<KeyInfo>, ApiError> {
    app.authorize_admin(headers)?;
    let (mut key, _) = load(app, name).await?;
    let now = now_unix();
    let mut receipt = None;
    let (to, deletion_due) = if app.owners {
        let (state, sealed) = sealed_state(app, headers, &key.name, body, change).await?;
        receipt = Some(sealed);
        mirror(state)
    } else {
        let (from, to) = host_transition(change);
        let state = effective_state(&key, now);
        if !from.contains(&state) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "invalid_key_state",
                format!("key {name} is {state}; this needs it {}", from.join(" or ")),
            ));
        }
        let due = match change {
            KeyStateChange::ScheduleDeletion { waiting_seconds } => {
                Some(now.saturating_add(i64::try_from(waiting_seconds).unwrap_or(i64::MAX)))
            }
            _ => None,
        };
        (to, due)
    };
    // With owners the sealed row decides; the mirror is written again over a concurrent change.
    let mut tries = if app.owners { 3 } else { 1 };
    loop {
        tries -= 1;
        match app.db.set_key_state(key.name.clone(), to, deletion_due, key.revision).await {
            Ok(()) => break,
            Err(StoreError::KeyConflict(_)) if tries > 0 => key = load(app, name).await?.0,
            Err(e) => return Err(store_error(e)),
        }
    }
    tracing::info!(key = %name, state = to, "key state changed");
    let (key, versions) = load(app, name).await?;
    Ok(Json(KeyInfo { receipt, ..key_info(&key, &versions, now) }))
}

pub(crate) async fn disable_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: Bytes,
) -> Result<Json<KeyInfo>, ApiError> {
    change_state(&app, &headers, &name, &body, KeyStateChange::Disable).await
}

pub(crate) async fn enable_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: Bytes,
) -> Result<Json<KeyInfo>, ApiError> {
    change_state(&app, &headers, &name, &body, KeyStateChange::Enable).await
}

pub(crate) async fn delete_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: Bytes,
) -> Result<Json<KeyInfo>, ApiError> {
    let waiting_seconds = u64::try_from(app.key_deletion_waiting_seconds).unwrap_or(0);
    change_state(&app, &headers, &name, &body, KeyStateChange::ScheduleDeletion { waiting_seconds }).await
}

pub(crate) async fn cancel_deletion(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: Bytes,
) -> Result<Json<KeyInfo>, ApiError> {
    change_state(&app, &headers, &name, &body, KeyStateChange::CancelDeletion).await
}

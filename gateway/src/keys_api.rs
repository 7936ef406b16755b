//! The keyring API (`/v1/keys...`; shapes in `keyward_client::keys`). Management needs the
//! admin token, use the API token. Key material is made and used only in an enclave: the
//! gateway stores the wrapped rows and hands each back with the request that uses it.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{
        DefaultBodyLimit, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use keyward_admission::keyring::{key_identity, now_unix, version_row, wrapped_key};
use keyward_client::keys::{
    CreateKey, CreateKeys, KeyInfo, KeyInfos, KeyPage, KeySignatureBatch, KeySignatureInfo, KeySignatureResult,
    SignWithKey, SignWithKeyBatch, Verified, VerifyWithKey,
};
use keyward_proto::{
    Authorization, KeyCreate, KeyFlags, KeyIdentity, KeyName, KeySign, KeySignBatchSigned, KeyVersion,
    MAX_KEYS_PER_BATCH, Origin, Request, Response, WrappedKey, fault::crash_point,
};
use keyward_store::{KeyRow, NewKey, StoreError, VersionRow};
use serde::Deserialize;

use crate::{
    api::AppState,
    errors::ApiError,
    key_path::{KeyPath, KeystorePath},
    keys_sign::{key_info, parse_create, parse_sign, signature_info},
    link::{EnclaveLink, unexpected_reply},
    signed::{self, SignedJson},
};

/// Deadline for a keyring request to the enclave.
pub(crate) const KEY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest page of keys.
const MAX_PAGE: u32 = 1000;

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for prefix in crate::key_path::PREFIXES {
        let at = |path: &str| format!("{prefix}{path}");
        router = router
            .route(prefix, post(create_key).get(list_keys))
            .route(&at("/batch"), post(create_keys).layer(DefaultBodyLimit::max(512 * 1024)))
            .route(&at("/{name}"), get(get_key).delete(crate::keys_state::delete_key))
            .route(&at("/{name}/rotate"), post(rotate_key))
            .route(&at("/{name}/disable"), post(crate::keys_state::disable_key))
            .route(&at("/{name}/enable"), post(crate::keys_state::enable_key))
            .route(&at("/{name}/cancel-deletion"), post(crate::keys_state::cancel_deletion))
            .route(&at("/{name}/sign"), post(sign).layer(DefaultBodyLimit::max(128 * 1024)))
            .route(&at("/{name}/sign-batch"), post(sign_batch).layer(DefaultBodyLimit::max(1024 * 1024)))
            .route(&at("/{name}/verify"), post(verify).layer(DefaultBodyLimit::max(128 * 1024)));
    }
    router
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    let status = match &e {
        StoreError::KeyExists(_) | StoreError::KeyConflict(_) | StoreError::PolicyExists { .. } => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.code(), e.to_string())
}

pub(crate) fn key_name(name: &str) -> Result<KeyName, ApiError> {
    KeyName::parse(name).map_err(|e| ApiError::invalid("invalid_key_name", e.to_string()))
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "key_not_found", format!("no key named {name}"))
}

/// The effective state: a pending deletion whose time has come is `deleted`.
pub fn effective_state(key: &KeyRow, now: i64) -> &str {
    match (key.state.as_str(), key.deletion_due) {
        ("pending_deletion", Some(due)) if due <= now => "deleted",
        (state, _) => state,
    }
}

/// A key may be used only while enabled.
fn usable(key: &KeyRow) -> Result<(), ApiError> {
    match effective_state(key, now_unix()) {
        "enabled" => Ok(()),
        state => Err(ApiError::new(
            StatusCode::CONFLICT,
            match state {
                "disabled" => "key_disabled",
                "pending_deletion" => "key_pending_deletion",
                "deleted" => "key_deleted",
                _ => "key_unusable",
            },
            format!("key {} is {state}; it cannot be used", key.name),
        )),
    }
}

/// An enclave whose keyring is ready (any: they all hold the same root).
pub(crate) fn keyring_link(app: &AppState) -> Result<Arc<EnclaveLink>, ApiError> {
    app.enclaves.values().find_map(|slot| slot.keyring_link()).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "keyring_not_ready",
            "no enclave has its keyring ready; /v1/health says why",
        )
    })
}

/// Has an enclave generate `identities` and returns the wrapped rows, checked against the
/// request.
async fn generate(
    app: &AppState,
    identities: Vec<KeyIdentity>,
    auth: Option<Authorization>,
) -> Result<Vec<WrappedKey>, ApiError> {
    let link = keyring_link(app)?;
    let wanted = identities.clone();
    let rows = match link
        .call(Request::KeyCreate(KeyCreate { keys: identities, auth: auth.map(Box::new) }), KEY_TIMEOUT)
        .await
    {
        Ok(Response::WrappedKeys(rows)) => rows,
        Ok(other) => return Err(ApiError::from_link(unexpected_reply("KeyCreate", &other))),
        Err(e) => return Err(ApiError::from_link(e)),
    };
    if rows.len() != wanted.len() || rows.iter().zip(&wanted).any(|(row, identity)| row.identity != *identity) {
        return Err(ApiError::internal("the enclave's keys do not match the request"));
    }
    Ok(rows)
}

/// Creates `keys` (all or none). `auth` is the principal's signed request, checked in the
/// enclave when it has owners.
pub(crate) async fn create(
    app: &AppState,
    keystore: &keyward_proto::KeystoreId,
    keys: Vec<CreateKey>,
    mut auth: Option<Authorization>,
) -> Result<Vec<KeyInfo>, ApiError> {
    if keys.is_empty() || keys.len() > MAX_KEYS_PER_BATCH {
        return Err(ApiError::invalid(
            "invalid_batch_size",
            format!("keys must hold 1 to {MAX_KEYS_PER_BATCH} entries, got {}", keys.len()),
        ));
    }
    let mut identities = Vec::with_capacity(keys.len());
    let mut seen = std::collections::HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        let (name, key_type) = parse_create(keystore, key).map_err(|e| e.at_item("keys", i))?;
        if !seen.insert(name.clone()) {
            return Err(ApiError::invalid("duplicate_key_name", format!("keys[{i}]: {name} appears twice")));
        }
        identities.push(KeyIdentity {
            name,
            version: KeyVersion::FIRST,
            key_type,
            flags: KeyFlags { exportable: key.exportable, origin: Origin::Generated },
        });
    }
    // A batch is signed for the keystore (an empty key name): only its policy applies.
    let policy_key = match identities.as_slice() {
        [one] => one.name.local(),
        _ => "",
    };
    auth = with_policies_of(app, auth, keystore.as_str(), policy_key).await?;
    crash_point("gateway:keys:before-enclave");
    let rows = generate(app, identities, auth).await?;
    crash_point("gateway:keys:before-store");
    let now = now_unix();
    let new: Vec<NewKey> = rows
        .iter()
        .map(|row| NewKey {
            key: KeyRow {
                name: row.identity.name.to_string(),
                key_type: row.identity.key_type.as_str().to_owned(),
                exportable: row.identity.flags.exportable,
                origin: row.identity.flags.origin.as_str().to_owned(),
                state: "enabled".into(),
                latest_version: 1,
                deletion_due: None,
                created_at: now,
                revision: 1,
                min_decryption_version: 1,
            },
            version: version_row(row, now),
        })
        .collect();
    app.db.insert_keys(new.clone()).await.map_err(store_error)?;
    crash_point("gateway:keys:before-reply");
    tracing::info!(keys = new.len(), "created keys");
    Ok(new.into_iter().map(|k| key_info(&k.key, std::slice::from_ref(&k.version), now)).collect())
}

async fn create_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeystorePath(keystore): KeystorePath,
    body: Result<SignedJson<CreateKey>, ApiError>,
) -> Result<(StatusCode, Json<KeyInfo>), ApiError> {
    app.authorize_admin(&headers)?;
    let body = body?;
    let auth = signed::authorization(&headers, keystore.as_str(), &body.bytes)?;
    let mut created = create(&app, &keystore, vec![body.value], auth).await?;
    let info = created.pop().ok_or_else(|| ApiError::internal("no key created"))?;
    Ok((StatusCode::CREATED, Json(info)))
}

async fn create_keys(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeystorePath(keystore): KeystorePath,
    body: Result<SignedJson<CreateKeys>, ApiError>,
) -> Result<(StatusCode, Json<KeyInfos>), ApiError> {
    app.authorize_admin(&headers)?;
    let body = body?;
    let auth = signed::authorization(&headers, keystore.as_str(), &body.bytes)?;
    Ok((StatusCode::CREATED, Json(KeyInfos { keys: create(&app, &keystore, body.value.keys, auth).await? })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    public_key_hex: Option<String>,
}

/// The keys of the keystore the path names (`/v1/keys`: the default one), by page or by public
/// key; never another keystore's.
async fn list_keys(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeystorePath(keystore): KeystorePath,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<KeyPage>, ApiError> {
    app.api_token.authorize(&headers)?;
    let Query(query) = query.map_err(ApiError::from_query)?;
    let now = now_unix();
    if let Some(public_key_hex) = query.public_key_hex {
        let public_key = hex::decode(&public_key_hex)
            .ok()
            .filter(|k| (32..=65).contains(&k.len()))
            .ok_or_else(|| ApiError::invalid("invalid_public_key", "public_key_hex must be 32 to 65 bytes of hex"))?;
        let keys = app.db.keys_by_public_key(public_key.clone()).await.map_err(store_error)?;
        let keys: Vec<_> = keys
            .into_iter()
            .filter(|(k, versions)| {
                signed::keystore_of(&k.name) == keystore.as_str() && versions.iter().any(|v| v.public_key == public_key)
            })
            .collect();
        check_keys(&app, &keys).await?;
        return Ok(Json(KeyPage { keys: keys.iter().map(|(k, v)| key_info(k, v, now)).collect(), next_after: None }));
    }
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid("invalid_limit", format!("limit must be 1 to {MAX_PAGE}, got {limit}")));
    }
    if let Some(after) = &query.after {
        key_name(after)?;
    }
    let asked = keystore.to_string();
    let keys = app.db.list_keys(keystore, query.after, limit).await.map_err(store_error)?;
    if keys.iter().any(|(k, _)| signed::keystore_of(&k.name) != asked) {
        return Err(other_rows(&asked));
    }
    check_keys(&app, &keys).await?;
    let next_after = (keys.len() == limit as usize).then(|| keys.last().map(|(k, _)| k.name.clone())).flatten();
    Ok(Json(KeyPage { keys: keys.iter().map(|(k, v)| key_info(k, v, now)).collect(), next_after }))
}

/// A key and its versions, as the API shows them (see [`check_keys`]).
pub(crate) async fn load(app: &AppState, name: &str) -> Result<(KeyRow, Vec<VersionRow>), ApiError> {
    let name = key_name(name)?;
    let found = app.db.key(name.to_string()).await.map_err(store_error)?.ok_or_else(|| not_found(name.as_str()))?;
    if found.0.name != name.as_str() || found.1.iter().any(|v| v.name != name.as_str()) {
        return Err(other_rows(name.as_str()));
    }
    check_keys(app, std::slice::from_ref(&found)).await?;
    Ok(found)
}

/// The store answered for `name` with rows of another key.
fn other_rows(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "key_row_damaged",
        format!("the store answered for key {name} with another key's rows"),
    )
}

/// On the enclave's TLS API the rows come from the host: before a public key leaves the API
/// the enclave checks that each version's row opens under the keyring root, so that the name,
/// version, type, flags and public key shown are the ones bound into it. (A key's state, dates
/// and a listing's membership stay as the host reports them.) Elsewhere the host is the server
/// and this checks nothing.
pub(crate) async fn check_keys(app: &AppState, keys: &[(KeyRow, Vec<VersionRow>)]) -> Result<(), ApiError> {
    if !app.check_rows {
        return Ok(());
    }
    let mut rows = Vec::new();
    for (key, versions) in keys {
        for version in versions {
            rows.push(wrapped_key(key, version.clone()).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "key_row_damaged",
                    format!("stored key {} is damaged: {e}", key.name),
                )
            })?);
        }
    }
    check_rows(app, rows).await
}

/// [`check_keys`] for rows already made.
pub(crate) async fn check_rows(app: &AppState, rows: Vec<keyward_proto::WrappedKey>) -> Result<(), ApiError> {
    if !app.check_rows || rows.is_empty() {
        return Ok(());
    }
    let link = keyring_link(app)?;
    match link.call(Request::KeyCheck(rows), KEY_TIMEOUT).await.map_err(ApiError::from_link)? {
        Response::KeysChecked => Ok(()),
        other => Err(ApiError::from_link(unexpected_reply("KeyCheck", &other))),
    }
}

async fn get_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
) -> Result<Json<KeyInfo>, ApiError> {
    // The admin token reads too: a signed rotation names the version it makes.
    app.authorize_reader(&headers)?;
    let (key, versions) = load(&app, &name).await?;
    Ok(Json(key_info(&key, &versions, now_unix())))
}

async fn rotate_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: axum::body::Bytes,
) -> Result<Json<KeyInfo>, ApiError> {
    app.authorize_admin(&headers)?;
    // The signed body of a rotation (`RotateKey`, the version it makes) is passed on as sent;
    // the enclave compares it with the version it is asked to make.
    let auth = signed::authorization(&headers, signed::keystore_of(&name), &body)?;
    rotate(&app, &name, auth).await.map(Json)
}

/// `auth` with the newest policy rows of the key `name` and of its keystore (an empty `name`:
/// the keystore's only), for the enclave to check with a signed request.
pub(crate) async fn with_policy(
    app: &AppState,
    auth: Option<Authorization>,
    name: &str,
) -> Result<Option<Authorization>, ApiError> {
    let (keystore, key) = keyward_proto::split_key_name(name);
    with_policies_of(app, auth, keystore, key).await
}

/// `auth` with the newest policy rows of keystore `keystore` and, unless `key` is empty, of its
/// key `key` (a name within the keystore).
pub(crate) async fn with_policies_of(
    app: &AppState,
    mut auth: Option<Authorization>,
    keystore: &str,
    key: &str,
) -> Result<Option<Authorization>, ApiError> {
    if let Some(auth) = auth.as_mut() {
        let policies = app.db.policies(keystore.to_owned(), key.to_owned()).await.map_err(store_error)?;
        attach(auth, policies);
    }
    Ok(auth)
}

/// Puts the stored policy rows into a signed request.
pub(crate) fn attach(auth: &mut Authorization, policies: keyward_admission::Policies) {
    auth.policy = policies.key.map(crate::keys_policy::policy_row);
    auth.keystore_policy = policies.keystore.map(crate::keys_policy::policy_row);
}

/// Adds a version generated in an enclave; the latest version is the one new work uses.
pub(crate) async fn rotate(app: &AppState, name: &str, auth: Option<Authorization>) -> Result<KeyInfo, ApiError> {
    let (mut key, mut versions) = load(app, name).await?;
    usable(&key)?;
    if key.origin == Origin::Imported.as_str() {
        // New material would be generated, not imported: the key would stop being the one
        // its owner holds a copy of. Import a new key instead.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot_rotate_imported_key",
            format!(
                "key {name} was imported; rotation would generate material its owner does not hold. Import a new key instead"
            ),
        ));
    }
    let next = key_identity(&key, key.latest_version + 1).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "key_row_damaged",
            format!("stored key {} is damaged: {e}", key.name),
        )
    })?;
    let version = next.version;
    let auth = with_policy(app, auth, name).await?;
    let mut rows = generate(app, vec![next], auth).await?;
    let row = rows.pop().ok_or_else(|| ApiError::internal("no key version made"))?;
    crash_point("gateway:key-rotate:before-store");
    let stored = version_row(&row, now_unix());
    app.db.add_version(stored.clone(), key.revision).await.map_err(store_error)?;
    crash_point("gateway:key-rotate:before-reply");
    tracing::info!(key = %name, version = version.get(), "rotated key");
    // The key as this rotation left it (the compare-and-swap on its revision means nothing
    // else changed it in between), not read again: another node may already have changed
    // it since, and that is its caller's answer, not this one's.
    key.latest_version = stored.version;
    key.revision += 1;
    versions.push(stored);
    Ok(key_info(&key, &versions, now_unix()))
}

/// The key, the row of the version asked for (default: the latest), ready to sign with.
pub(crate) async fn signing_row(
    app: &AppState,
    name: &str,
    version: Option<u32>,
) -> Result<(KeyRow, WrappedKey), ApiError> {
    signing_row_and_policy(app, name, version, false).await.map(|(key, row, _)| (key, row))
}

/// [`signing_row`], and the newest policy rows of the key and of `keystore` when asked for
/// (signed requests: the enclave checks them).
pub(crate) async fn signing_row_and_policy(
    app: &AppState,
    name: &str,
    version: Option<u32>,
    with_policies: bool,
) -> Result<(KeyRow, WrappedKey, keyward_admission::Policies), ApiError> {
    let name = key_name(name)?;
    let (key, row, policy) = app
        .db
        .key_version_policy(name.to_string(), version.map(i64::from), with_policies)
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found(name.as_str()))?;
    if key.name != name.as_str()
        || row.as_ref().is_some_and(|r| r.name != key.name || version.is_some_and(|v| r.version != i64::from(v)))
    {
        return Err(other_rows(name.as_str()));
    }
    usable(&key)?;
    let row = row.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "version_not_found",
            format!("key {name} has no version {}", version.unwrap_or(0)),
        )
    })?;
    let wrapped = wrapped_key(&key, row).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "key_row_damaged",
            format!("stored key {name} is damaged: {e}"),
        )
    })?;
    Ok((key, wrapped, policy))
}

async fn sign(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: SignedJson<SignWithKey>,
) -> Result<Json<KeySignatureInfo>, ApiError> {
    app.api_token.authorize(&headers)?;
    let mut auth = signed::authorization(&headers, signed::keystore_of(&name), &body.bytes)?;
    let body = body.value;
    let (_, row, policy) = signing_row_and_policy(&app, &name, body.version, auth.is_some()).await?;
    if let Some(auth) = auth.as_mut() {
        attach(auth, policy);
    }
    let (algorithm, payload, format) = parse_sign(&body, row.identity.key_type)?;
    let request = KeySign { row, algorithm, payload, format, auth };
    let link = keyring_link(&app)?;
    let identity = request.row.identity.clone();
    let public_key = request.row.public_key.clone();
    match link.call(Request::KeySign(Box::new(request)), KEY_TIMEOUT).await.map_err(ApiError::from_link)? {
        Response::KeySignature(signature) => {
            Ok(Json(signature_info(&identity, &public_key, algorithm, format, &signature)))
        }
        other => Err(ApiError::from_link(unexpected_reply("KeySign", &other))),
    }
}

async fn sign_batch(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: SignedJson<SignWithKeyBatch>,
) -> Result<Json<KeySignatureBatch>, ApiError> {
    app.api_token.authorize(&headers)?;
    // A signed batch is authorized as a whole: one signature over the body as sent.
    let auth = signed::authorization(&headers, signed::keystore_of(&name), &body.bytes)?;
    let body = body.value;
    if body.items.is_empty() || body.items.len() > MAX_KEYS_PER_BATCH {
        return Err(ApiError::invalid(
            "invalid_batch_size",
            format!("items must hold 1 to {MAX_KEYS_PER_BATCH} entries, got {}", body.items.len()),
        ));
    }
    let mut rows: std::collections::HashMap<Option<u32>, WrappedKey> = std::collections::HashMap::new();
    let mut requests = Vec::with_capacity(body.items.len());
    for (i, item) in body.items.iter().enumerate() {
        let row = match rows.get(&item.version) {
            Some(row) => row.clone(),
            None => {
                let (_, row) = signing_row(&app, &name, item.version).await.map_err(|e| e.at_item("items", i))?;
                rows.insert(item.version, row.clone());
                row
            }
        };
        let (algorithm, payload, format) =
            parse_sign(item, row.identity.key_type).map_err(|e| e.at_item("items", i))?;
        requests.push(KeySign { row, algorithm, payload, format, auth: None });
    }
    let described: Vec<_> =
        requests.iter().map(|r| (r.row.identity.clone(), r.row.public_key.clone(), r.algorithm, r.format)).collect();
    let request = match auth {
        Some(mut auth) => {
            let (keystore, local) = keyward_proto::split_key_name(&name);
            attach(&mut auth, app.db.policies(keystore.to_owned(), local.to_owned()).await.map_err(store_error)?);
            Request::KeySignBatchSigned(Box::new(KeySignBatchSigned { items: requests, auth }))
        }
        None => Request::KeySignBatch(requests),
    };
    let link = keyring_link(&app)?;
    let replies = match link.call(request, KEY_TIMEOUT).await.map_err(ApiError::from_link)? {
        Response::KeySignatures(replies) if replies.len() == described.len() => replies,
        other => return Err(ApiError::from_link(unexpected_reply("KeySignBatch", &other))),
    };
    let results = replies
        .into_iter()
        .zip(described)
        .map(|(reply, (identity, public_key, algorithm, format))| match reply {
            Ok(signature) => {
                KeySignatureResult::Ok(signature_info(&identity, &public_key, algorithm, format, &signature))
            }
            Err(e) => KeySignatureResult::Err { error: ApiError::from_remote(e).body() },
        })
        .collect();
    Ok(Json(KeySignatureBatch { results }))
}

/// Verification needs no secret: the gateway checks against the stored public key, with the
/// same code the enclave signs with.
async fn verify(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: Result<Json<VerifyWithKey>, JsonRejection>,
) -> Result<Json<Verified>, ApiError> {
    app.api_token.authorize(&headers)?;
    let Json(body) = body.map_err(ApiError::from_json)?;
    let signed = body.signed();
    let (_, row) = signing_row(&app, &name, signed.version).await?;
    check_rows(&app, vec![row.clone()]).await?;
    let (algorithm, payload, format) = parse_sign(&signed, row.identity.key_type)?;
    let signature = hex::decode(&body.signature_hex)
        .map_err(|_| ApiError::invalid("invalid_signature", "signature_hex is not hex"))?;
    let valid = keyward_keyring::verify(
        row.identity.key_type,
        &row.public_key,
        algorithm,
        keyward_keyring::SignInput::from_payload(&payload),
        format,
        &signature,
    )
    // parse_sign already checked the request fits the key type, so this cannot refuse it.
    .map_err(|e| ApiError::invalid("invalid_payload", e.to_string()))?;
    Ok(Json(Verified { valid, version: row.identity.version.get() }))
}

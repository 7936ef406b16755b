//! Import and export (`/v1/keys/{name}/import`, `/export`; admin token). Key material passes
//! through the gateway only sealed with HPKE: imports to an enclave's transfer key (which the
//! client took from an attestation document it verified), exports to the caller's key. The
//! gateway cannot open either, and the key's name, type and exportability are bound into the
//! sealed bytes, so it cannot file an import under another name or make it exportable.

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_admission::keyring::{now_unix, version_row};
use keyward_client::keys::{ExportKey, ExportedKey, ImportKey, KeyInfo};
use keyward_keyring::{TRANSFER_CIPHERTEXT_LEN, TRANSFER_PUBLIC_KEY_LEN, TRANSFER_SUITE};
use keyward_proto::{
    ErrorCode, KeyExport, KeyFlags, KeyIdentity, KeyImport, KeyType, KeyVersion, Origin, Request, Response,
    TransferSealed, WrappedKey,
};
use keyward_store::{KeyRow, NewKey};

use crate::key_path::KeyPath;
use crate::{
    api::AppState,
    errors::ApiError,
    keys_api::{KEY_TIMEOUT, key_name, signing_row, store_error, with_policy},
    keys_sign::key_info,
    link::{LinkError, unexpected_reply},
    signed::{self, SignedJson},
};

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for prefix in crate::key_path::PREFIXES {
        router = router
            .route(&format!("{prefix}/{{name}}/import"), post(import).layer(DefaultBodyLimit::max(16 * 1024)))
            .route(&format!("{prefix}/{{name}}/export"), post(export).layer(DefaultBodyLimit::max(16 * 1024)));
    }
    router
}

fn fixed_hex<const N: usize>(field: &str, value: &str) -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(value, &mut out)
        .map_err(|_| ApiError::invalid("invalid_public_key", format!("{field} must be {} hex characters", 2 * N)))?;
    Ok(out)
}

fn base64_field(field: &str, value: &str, len: usize) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(value)
        .ok()
        .filter(|bytes| bytes.len() == len)
        .ok_or_else(|| ApiError::invalid("invalid_sealed_key", format!("{field} must be {len} bytes, base64")))
}

/// The identity and sealed material of an import, checked at the boundary.
fn parse_import(name: &str, body: &ImportKey) -> Result<KeyImport, ApiError> {
    let name = key_name(name)?;
    let key_type = KeyType::parse(&body.key_type).ok_or_else(|| {
        let shown: String = body.key_type.chars().take(32).collect();
        ApiError::invalid("invalid_key_type", format!("unknown key type {shown:?}: use {}", KeyType::NAMES))
    })?;
    let transfer_public_key =
        fixed_hex::<TRANSFER_PUBLIC_KEY_LEN>("transfer_public_key_hex", &body.transfer_public_key_hex)?;
    Ok(KeyImport {
        identity: KeyIdentity {
            name,
            version: KeyVersion::FIRST,
            key_type,
            flags: KeyFlags { exportable: body.exportable, origin: Origin::Imported },
        },
        transfer_public_key: transfer_public_key.to_vec(),
        sealed: TransferSealed {
            encapsulated_key: base64_field(
                "encapsulated_key_b64",
                &body.encapsulated_key_b64,
                TRANSFER_PUBLIC_KEY_LEN,
            )?,
            ciphertext: base64_field("ciphertext_b64", &body.ciphertext_b64, TRANSFER_CIPHERTEXT_LEN)?,
        },
        auth: None,
    })
}

/// Asks each enclave with a ready keyring in turn: the one holding the transfer key the client
/// sealed to wraps the key; the others answer `unknown_transfer_key`.
async fn wrap_import(app: &AppState, request: KeyImport) -> Result<WrappedKey, ApiError> {
    let mut last = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "keyring_not_ready",
        "no enclave has its keyring ready; /v1/health says why",
    );
    for link in app.enclaves.values().filter_map(|slot| slot.keyring_link()) {
        match link.call(Request::KeyImport(Box::new(request.clone())), KEY_TIMEOUT).await {
            Ok(Response::WrappedKeys(mut rows)) if rows.len() == 1 => {
                let row = rows.remove(0);
                if row.identity != request.identity {
                    return Err(ApiError::internal("the enclave's imported key does not match the request"));
                }
                return Ok(row);
            }
            Ok(other) => return Err(ApiError::from_link(unexpected_reply("KeyImport", &other))),
            Err(LinkError::Remote(reply)) if reply.code == ErrorCode::UnknownTransferKey => {
                last = ApiError::from_remote(reply);
            }
            Err(e) => return Err(ApiError::from_link(e)),
        }
    }
    Err(last)
}

async fn import(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: Result<SignedJson<ImportKey>, ApiError>,
) -> Result<(StatusCode, Json<KeyInfo>), ApiError> {
    app.authorize_admin(&headers)?;
    let body = body?;
    let auth = signed::authorization(&headers, signed::keystore_of(&name), &body.bytes)?;
    let mut request = parse_import(&name, &body.value)?;
    request.auth = with_policy(&app, auth, request.identity.name.as_str()).await?.map(Box::new);
    if app.db.key(request.identity.name.to_string()).await.map_err(store_error)?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, "key_exists", format!("key {name} exists")));
    }
    let row = wrap_import(&app, request).await?;
    let now = now_unix();
    let new = NewKey {
        key: KeyRow {
            name: row.identity.name.to_string(),
            key_type: row.identity.key_type.as_str().to_owned(),
            exportable: row.identity.flags.exportable,
            origin: Origin::Imported.as_str().to_owned(),
            state: "enabled".into(),
            latest_version: 1,
            deletion_due: None,
            created_at: now,
            revision: 1,
            min_decryption_version: 1,
        },
        version: version_row(&row, now),
    };
    app.db.insert_keys(vec![new.clone()]).await.map_err(store_error)?;
    tracing::info!(key = %name, key_type = %row.identity.key_type, "imported a key");
    Ok((StatusCode::CREATED, Json(key_info(&new.key, std::slice::from_ref(&new.version), now))))
}

async fn export(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: Result<SignedJson<ExportKey>, ApiError>,
) -> Result<Json<ExportedKey>, ApiError> {
    app.authorize_admin(&headers)?;
    let body = body?;
    let auth = signed::authorization(&headers, signed::keystore_of(&name), &body.bytes)?;
    let body = body.value;
    let recipient = fixed_hex::<TRANSFER_PUBLIC_KEY_LEN>("public_key_hex", &body.public_key_hex)?;
    let (key, row) = signing_row(&app, &name, body.version).await?;
    if !key.exportable {
        // The enclave refuses too (the flag is bound into the row); this answers without a
        // round trip.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "key_not_exportable",
            format!("key {name} was not created exportable; it never leaves the enclave"),
        ));
    }
    let identity = row.identity.clone();
    let public_key = row.public_key.clone();
    let link = app.enclaves.values().find_map(|slot| slot.keyring_link()).ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "keyring_not_ready", "no enclave has its keyring ready")
    })?;
    let auth = with_policy(&app, auth, &name).await?.map(Box::new);
    let request = KeyExport { row, recipient_public_key: recipient.to_vec(), auth };
    let sealed = match link.call(Request::KeyExport(Box::new(request)), KEY_TIMEOUT).await {
        Ok(Response::ExportedKey(sealed)) => sealed,
        Ok(other) => return Err(ApiError::from_link(unexpected_reply("KeyExport", &other))),
        Err(e) => return Err(ApiError::from_link(e)),
    };
    tracing::info!(key = %name, version = identity.version.get(), "exported a key, sealed to the caller's key");
    Ok(Json(ExportedKey {
        name: identity.name.to_string(),
        version: identity.version.get(),
        key_type: identity.key_type.as_str().to_owned(),
        exportable: identity.flags.exportable,
        origin: identity.flags.origin.as_str().to_owned(),
        public_key_hex: (!public_key.is_empty()).then(|| hex::encode(&public_key)),
        suite: TRANSFER_SUITE.to_owned(),
        encapsulated_key_b64: STANDARD.encode(&sealed.encapsulated_key),
        ciphertext_b64: STANDARD.encode(&sealed.ciphertext),
    }))
}

//! Encryption, data keys and MACs with keyring keys, and random bytes (shapes in
//! `keyward_client::crypt`). The gateway picks the key version (the latest, or the one a
//! ciphertext names) and checks the key is usable and the version not below the key's
//! `min_decryption_version`; the enclave does the cryptography. Plaintext passes through the
//! gateway in these requests (TLS that ends in the enclave is a later issue). Bodies of any
//! size are streamed (`keys_stream`).

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, FromRequest, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_client::{
    crypt::{
        DataKey, Decrypt, Decrypted, Encrypt, Encrypted, GenerateDataKey, KeyConfig, MacInfo, MacRequest, RandomBytes,
        RandomRequest,
    },
    keys::{KeyInfo, Verified},
};
use keyward_proto::{
    Authorization, CryptOp, CryptOutput, DataKeySpec, KeyCrypt, MAX_CRYPT_PAYLOAD_LEN, MAX_RANDOM_LEN, RandomSource,
    Request, Response, SecretBytes, WrappedKey,
};

use crate::key_path::KeyPath;
use crate::{
    api::AppState,
    errors::ApiError,
    keys_api::{KEY_TIMEOUT, keyring_link, load, signing_row, store_error},
    keys_sign::key_info,
    link::unexpected_reply,
    signed::{self, SignedJson},
};

/// Largest associated data.
const MAX_ASSOCIATED_DATA_LEN: usize = 64 * 1024;
/// JSON bodies carry up to 1 MiB of data in base64.
const BODY_LIMIT: usize = 2 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    let limit = || DefaultBodyLimit::max(BODY_LIMIT);
    let mut router = Router::new().route("/v1/random", post(random).layer(DefaultBodyLimit::max(4 * 1024)));
    for prefix in crate::key_path::PREFIXES {
        router = router
            .route(&format!("{prefix}/{{name}}/encrypt"), post(encrypt).layer(limit()))
            .route(&format!("{prefix}/{{name}}/decrypt"), post(decrypt).layer(limit()))
            .route(&format!("{prefix}/{{name}}/rewrap"), post(rewrap).layer(limit()))
            .route(&format!("{prefix}/{{name}}/datakey"), post(data_key).layer(DefaultBodyLimit::max(128 * 1024)))
            .route(&format!("{prefix}/{{name}}/hmac"), post(hmac).layer(limit()))
            .route(&format!("{prefix}/{{name}}/verify-hmac"), post(verify_hmac).layer(limit()))
            .route(&format!("{prefix}/{{name}}/config"), post(configure).layer(DefaultBodyLimit::max(4 * 1024)));
    }
    router
}

/// A base64 field of at most `max` bytes; `code` names the field's rule.
pub(crate) fn base64_field(field: &str, value: &str, max: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::invalid("payload_too_large", format!("{field} holds at most {max} bytes"));
    // Base64 is 4 characters per 3 bytes: refuse what cannot fit before decoding it.
    if value.len() > max.div_ceil(3) * 4 {
        return Err(too_large());
    }
    let bytes = STANDARD
        .decode(value)
        .map_err(|_| ApiError::invalid("invalid_base64", format!("{field} is not standard base64")))?;
    if bytes.len() > max {
        return Err(too_large());
    }
    Ok(bytes)
}

fn associated_data(value: &Option<String>) -> Result<Vec<u8>, ApiError> {
    value.as_deref().map_or(Ok(Vec::new()), |v| base64_field("associated_data_b64", v, MAX_ASSOCIATED_DATA_LEN))
}

/// A keyring operation with the principal's signed request (and the key's policy row), if any.
pub(crate) async fn crypt_signed(
    app: &AppState,
    row: WrappedKey,
    op: CryptOp,
    auth: Option<Authorization>,
) -> Result<CryptOutput, ApiError> {
    crypt_via(app, &*keyring_link(app)?, row, op, auth).await
}

/// [`crypt_signed`] through `link` (a stream's begin and its segments go to one enclave: its
/// tickets are its own).
pub(crate) async fn crypt_via(
    app: &AppState,
    link: &crate::link::EnclaveLink,
    row: WrappedKey,
    op: CryptOp,
    auth: Option<Authorization>,
) -> Result<CryptOutput, ApiError> {
    let auth = crate::keys_api::with_policy(app, auth, row.identity.name.as_str()).await?;
    let request = KeyCrypt { row, op, auth: auth.map(Box::new) };
    match link.call(Request::KeyCrypt(Box::new(request)), KEY_TIMEOUT).await {
        Ok(Response::Crypt(output)) => Ok(output),
        Ok(other) => Err(ApiError::from_link(unexpected_reply("KeyCrypt", &other))),
        Err(e) => Err(ApiError::from_link(e)),
    }
}

fn unexpected(what: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "enclave_protocol", format!("the enclave answered {what} with another kind"))
}

/// The row of the version `ciphertext` names, refused below the key's minimum.
pub(crate) async fn decryption_row(app: &AppState, name: &str, ciphertext: &[u8]) -> Result<WrappedKey, ApiError> {
    let version = keyward_keyring::ciphertext_version(ciphertext)
        .map_err(|e| ApiError::invalid("ciphertext_malformed", e.to_string()))?;
    decryption_row_for(app, name, version).await
}

/// The row of `version`, refused below the key's minimum and when the key never had it.
pub(crate) async fn decryption_row_for(
    app: &AppState,
    name: &str,
    version: keyward_proto::KeyVersion,
) -> Result<WrappedKey, ApiError> {
    let (key, row) = match signing_row(app, name, Some(version.get())).await {
        Err(e) if e.code == "version_not_found" => {
            // The header is authenticated only by decryption: a version the key never had
            // is a ciphertext that does not decrypt.
            return Err(ApiError::invalid(
                "decryption_failed",
                format!("the ciphertext names version {} of key {name}, which it does not have", version.get()),
            ));
        }
        other => other?,
    };
    if i64::from(version.get()) < key.min_decryption_version {
        return Err(ApiError::invalid(
            "version_below_minimum",
            format!(
                "the ciphertext is of version {} of key {name}; versions below {} no longer decrypt (rewrap older data before raising the minimum)",
                version.get(),
                key.min_decryption_version
            ),
        ));
    }
    Ok(row)
}

/// JSON, or a stream (`application/octet-stream`) of any size.
async fn encrypt(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    request: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    app.api_token.authorize(&headers)?;
    if crate::keys_stream::is_stream(&headers) {
        return crate::keys_stream::encrypt(&app, &name, &headers, request.into_body()).await;
    }
    let body = SignedJson::<Encrypt>::from_request(request, &()).await?;
    let auth = signed::authorization(&headers, signed::keystore_of(&name), &body.bytes)?;
    encrypt_json(&app, &name, body.value, auth).await.map(IntoResponse::into_response)
}

async fn encrypt_json(
    app: &AppState,
    name: &str,
    body: Encrypt,
    auth: Option<Authorization>,
) -> Result<Json<Encrypted>, ApiError> {
    let plaintext = SecretBytes::new(base64_field("plaintext_b64", &body.plaintext_b64, MAX_CRYPT_PAYLOAD_LEN)?);
    let associated_data = associated_data(&body.associated_data_b64)?;
    let (_, row) = signing_row(app, name, None).await?;
    let version = row.identity.version.get();
    match crypt_signed(app, row, CryptOp::Encrypt { plaintext, associated_data }, auth).await? {
        CryptOutput::Ciphertext(c) => Ok(Json(Encrypted { ciphertext_b64: STANDARD.encode(c), version })),
        _ => Err(unexpected("Encrypt")),
    }
}

/// JSON, or a stream (`application/octet-stream`) of any size.
async fn decrypt(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    request: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    app.api_token.authorize(&headers)?;
    if crate::keys_stream::is_stream(&headers) {
        return crate::keys_stream::decrypt(&app, &name, &headers, request.into_body()).await;
    }
    let body = SignedJson::<Decrypt>::from_request(request, &()).await?;
    let auth = signed::authorization(&headers, signed::keystore_of(&name), &body.bytes)?;
    decrypt_json(&app, &name, body.value, auth).await.map(IntoResponse::into_response)
}

async fn decrypt_json(
    app: &AppState,
    name: &str,
    body: Decrypt,
    auth: Option<Authorization>,
) -> Result<Json<Decrypted>, ApiError> {
    let ciphertext = base64_field("ciphertext_b64", &body.ciphertext_b64, MAX_CRYPT_PAYLOAD_LEN + 64)?;
    let associated_data = associated_data(&body.associated_data_b64)?;
    let row = decryption_row(app, name, &ciphertext).await?;
    let version = row.identity.version.get();
    match crypt_signed(app, row, CryptOp::Decrypt { ciphertext, associated_data }, auth).await? {
        CryptOutput::Plaintext(p) => Ok(Json(Decrypted { plaintext_b64: STANDARD.encode(p.expose()), version })),
        _ => Err(unexpected("Decrypt")),
    }
}

async fn rewrap(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: Result<SignedJson<Decrypt>, ApiError>,
) -> Result<Json<Encrypted>, ApiError> {
    app.api_token.authorize(&headers)?;
    let body = body?;
    let auth = signed::authorization(&headers, signed::keystore_of(&name), &body.bytes)?;
    let body = body.value;
    let ciphertext = base64_field("ciphertext_b64", &body.ciphertext_b64, MAX_CRYPT_PAYLOAD_LEN + 64)?;
    let associated_data = associated_data(&body.associated_data_b64)?;
    let row = decryption_row(&app, &name, &ciphertext).await?;
    let (_, latest) = signing_row(&app, &name, None).await?;
    let version = latest.identity.version.get();
    let op = CryptOp::Rewrap { to: Box::new(latest), ciphertext, associated_data };
    match crypt_signed(&app, row, op, auth).await? {
        CryptOutput::Ciphertext(c) => Ok(Json(Encrypted { ciphertext_b64: STANDARD.encode(c), version })),
        _ => Err(unexpected("Rewrap")),
    }
}

async fn data_key(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: Result<SignedJson<GenerateDataKey>, ApiError>,
) -> Result<Json<DataKey>, ApiError> {
    app.api_token.authorize(&headers)?;
    let body = body?;
    let auth = signed::authorization(&headers, signed::keystore_of(&name), &body.bytes)?;
    let body = body.value;
    let spec = DataKeySpec::parse(&body.spec).ok_or_else(|| {
        let shown: String = body.spec.chars().take(32).collect();
        ApiError::invalid("invalid_spec", format!("unknown data key spec {shown:?}: use aes-256, rsa-2048 or p256"))
    })?;
    let associated_data = associated_data(&body.associated_data_b64)?;
    let (_, row) = signing_row(&app, &name, None).await?;
    let version = row.identity.version.get();
    let op = CryptOp::DataKey { spec, plaintext: body.plaintext, associated_data };
    match crypt_signed(&app, row, op, auth).await? {
        CryptOutput::DataKey { wrapped, plaintext, public_key } => Ok(Json(DataKey {
            spec: spec.as_str().to_owned(),
            ciphertext_b64: STANDARD.encode(wrapped),
            plaintext_b64: plaintext.map(|p| STANDARD.encode(p.expose())),
            public_key_b64: (!public_key.is_empty()).then(|| STANDARD.encode(public_key)),
            version,
        })),
        _ => Err(unexpected("DataKey")),
    }
}

async fn hmac(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: Result<SignedJson<MacRequest>, ApiError>,
) -> Result<Json<MacInfo>, ApiError> {
    app.api_token.authorize(&headers)?;
    let body = body?;
    let auth = signed::authorization(&headers, signed::keystore_of(&name), &body.bytes)?;
    let body = body.value;
    let message = base64_field("message_b64", &body.message_b64, MAX_CRYPT_PAYLOAD_LEN)?;
    let (_, row) = signing_row(&app, &name, None).await?;
    let version = row.identity.version.get();
    match crypt_signed(&app, row, CryptOp::Mac { message }, auth).await? {
        CryptOutput::Mac(mac) => Ok(Json(MacInfo { mac_b64: STANDARD.encode(mac), version })),
        _ => Err(unexpected("Mac")),
    }
}

async fn verify_hmac(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: Result<SignedJson<keyward_client::crypt::VerifyMac>, ApiError>,
) -> Result<Json<Verified>, ApiError> {
    app.api_token.authorize(&headers)?;
    let body = body?;
    let auth = signed::authorization(&headers, signed::keystore_of(&name), &body.bytes)?;
    let body = body.value;
    let message = base64_field("message_b64", &body.message_b64, MAX_CRYPT_PAYLOAD_LEN)?;
    let mac = base64_field("mac_b64", &body.mac_b64, 64)?;
    let (_, row) = signing_row(&app, &name, body.version).await?;
    let version = row.identity.version.get();
    match crypt_signed(&app, row, CryptOp::VerifyMac { message, mac }, auth).await? {
        CryptOutput::Valid(valid) => Ok(Json(Verified { valid, version })),
        _ => Err(unexpected("VerifyMac")),
    }
}

/// Key settings (admin token).
async fn configure(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: Result<Json<KeyConfig>, JsonRejection>,
) -> Result<Json<KeyInfo>, ApiError> {
    app.authorize_admin(&headers)?;
    let Json(body) = body.map_err(ApiError::from_json)?;
    let (key, _) = load(&app, &name).await?;
    if let Some(min) = body.min_decryption_version {
        if min == 0 || i64::from(min) > key.latest_version {
            return Err(ApiError::invalid(
                "invalid_min_decryption_version",
                format!("min_decryption_version must be 1 to {} (the latest version), not {min}", key.latest_version),
            ));
        }
        app.db.set_min_decryption_version(key.name.clone(), i64::from(min), key.revision).await.map_err(store_error)?;
        tracing::info!(key = %key.name, min_decryption_version = min, "key configured");
    }
    let (key, versions) = load(&app, &name).await?;
    Ok(Json(key_info(&key, &versions, keyward_admission::keyring::now_unix())))
}

/// Random bytes from any ready enclave's NSM, or from KMS through it.
async fn random(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RandomRequest>, JsonRejection>,
) -> Result<Json<RandomBytes>, ApiError> {
    app.api_token.authorize(&headers)?;
    let Json(body) = body.map_err(ApiError::from_json)?;
    let bytes = u16::try_from(body.bytes)
        .ok()
        .filter(|n| (1..=MAX_RANDOM_LEN).contains(&usize::from(*n)))
        .ok_or_else(|| ApiError::invalid("invalid_length", format!("bytes must be 1 to {MAX_RANDOM_LEN}")))?;
    let source = match body.source.as_deref().unwrap_or("nsm") {
        "nsm" => RandomSource::Nsm,
        "kms" => RandomSource::Kms,
        other => {
            let shown: String = other.chars().take(16).collect();
            return Err(ApiError::invalid("invalid_source", format!("source {shown:?}: use nsm or kms")));
        }
    };
    let credentials = match source {
        RandomSource::Kms => Some(app.credentials.get().await.map_err(|e| {
            ApiError::new(StatusCode::BAD_GATEWAY, "credentials_unavailable", format!("no AWS credentials: {e}"))
        })?),
        RandomSource::Nsm => None,
    };
    let link = app.enclaves.values().find_map(|slot| slot.ready_link()).ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "enclave_not_ready", "no enclave is ready; /v1/health says why")
    })?;
    let request = keyward_proto::RandomRequest { bytes, source, credentials };
    match link.call(Request::Random(request), keyward_admission::LIFECYCLE_TIMEOUT).await {
        Ok(Response::Random(random)) if random.expose().len() == usize::from(bytes) => Ok(Json(RandomBytes {
            random_b64: STANDARD.encode(random.expose()),
            source: body.source.unwrap_or_else(|| "nsm".into()),
        })),
        Ok(other) => Err(ApiError::from_link(unexpected_reply("Random", &other))),
        Err(e) => Err(ApiError::from_link(e)),
    }
}

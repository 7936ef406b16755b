//! ProgressDB's external KMS API (`prgkms`), served by the keyring: `GET /healthz`,
//! `POST /deks`, `/encrypt`, `/decrypt`, and the earlier `/create_dek_for_thread`,
//! `/get_wrapped`, `/rewrap`. Each ProgressDB data key (one per thread) is an `aes256-gcm`
//! keyring key named `<key_prefix><key_id>`: born in an enclave, used only there. Bodies are
//! ProgressDB's (byte fields in base64); errors are plain text with ProgressDB's statuses, and
//! keyward's stable code in the `X-Keyward-Error-Code` header. Added: `associated_data`
//! (base64) on `/encrypt` and `/decrypt`, which the enclave binds into the ciphertext.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::rejection::BytesRejection,
    extract::{DefaultBodyLimit, Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_client::keys::CreateKey;
use keyward_proto::{CryptOp, CryptOutput, KeyName, MAX_CRYPT_PAYLOAD_LEN, SecretBytes, WrappedKey};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    api::AppState,
    errors::ApiError,
    front_principal::{self, FrontPrincipal},
    keys_api::{keyring_link, load, rotate, signing_row},
    keys_crypt::{base64_field, decryption_row},
};

/// Longest ProgressDB key id (its validator's limit).
const MAX_KEY_ID_LEN: usize = 256;
/// Largest associated data.
const MAX_ASSOCIATED_DATA_LEN: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ProgressDb {
    pub app: AppState,
    /// `progressdb.key_prefix`.
    pub key_prefix: Arc<str>,
    /// What the front door signs its requests as when the enclaves have owners.
    pub principal: FrontPrincipal,
}

pub fn router(state: ProgressDb) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/deks", post(create_dek))
        .route("/create_dek_for_thread", post(create_dek_for_thread))
        .route("/get_wrapped", get(get_wrapped))
        .route("/encrypt", post(encrypt))
        .route("/decrypt", post(decrypt))
        .route("/rewrap", post(rewrap))
        .layer(DefaultBodyLimit::max(2 * 1024 * 1024))
        .fallback(|| async { Plain::new(StatusCode::NOT_FOUND, "not_found", "404 page not found") })
        .method_not_allowed_fallback(|| async {
            Plain::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed")
        })
        .with_state(state)
}

/// An error as ProgressDB's KMS wrote them: a status and a line of text.
#[derive(Debug)]
pub struct Plain(ApiError);

impl Plain {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Plain(ApiError::new(status, code, message))
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Plain(ApiError::invalid(code, message))
    }
}

impl From<ApiError> for Plain {
    fn from(e: ApiError) -> Self {
        Plain(e)
    }
}

impl IntoResponse for Plain {
    fn into_response(self) -> Response {
        let mut response = (self.0.status, format!("{}\n", self.0.message)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        headers.insert("x-keyward-error-code", HeaderValue::from_static(self.0.code));
        response
    }
}

/// A JSON body as ProgressDB's decoder takes it: unknown fields ignored.
fn body<T: DeserializeOwned>(bytes: Result<Bytes, BytesRejection>) -> Result<T, Plain> {
    crate::frontdoor::json_body(bytes, "Invalid request body: ").map_err(Plain)
}

/// Checks a ProgressDB key id (`A-Z a-z 0-9 _ - /`, 1 to 256) and names its keyring key.
pub fn key_name(prefix: &str, key_id: &str) -> Result<KeyName, Plain> {
    let invalid = |message: String| Plain::bad_request("invalid_key_id", message);
    if key_id.is_empty() {
        return Err(invalid("key_id cannot be empty".into()));
    }
    if key_id.len() > MAX_KEY_ID_LEN {
        return Err(invalid(format!("key_id too long (max {MAX_KEY_ID_LEN} characters)")));
    }
    if !key_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/')) {
        return Err(invalid("key_id contains invalid characters (A-Z a-z 0-9 _ - / only)".into()));
    }
    // ProgressDB ids never hold '.', so '/' → '.' names each id's key without collisions.
    let name = format!("{prefix}{}", key_id.replace('/', "."));
    KeyName::parse_local(&name).map_err(|_| {
        invalid(format!(
            "key_id too long for keyward: with the key prefix {prefix:?} at most {} characters",
            keyward_proto::MAX_KEY_NAME_LEN - prefix.len()
        ))
    })
}

fn optional_associated_data(value: Option<&str>) -> Result<Vec<u8>, Plain> {
    Ok(value.map(|v| base64_field("associated_data", v, MAX_ASSOCIATED_DATA_LEN)).transpose()?.unwrap_or_default())
}

async fn health(State(pdb): State<ProgressDb>) -> Result<&'static str, Plain> {
    keyring_link(&pdb.app)?;
    Ok("OK")
}

/// A data key as ProgressDB describes it.
#[derive(Debug, Serialize)]
struct Dek {
    key_id: String,
    /// The key's latest version as stored: AES-256-GCM under the keyring root (base64).
    wrapped_dek: String,
    kek_id: String,
    kek_version: String,
    created_at: String,
}

/// The wrapped form of a key's latest version and the root (the KEK) it is wrapped under.
async fn wrapped(pdb: &ProgressDb, name: &KeyName) -> Result<(WrappedKey, String, String), Plain> {
    let (_, row) = signing_row(&pdb.app, name.as_str(), None).await?;
    let root = pdb.app.db.root().await.map_err(crate::keys_api::store_error)?;
    let epoch = root.map_or(0, |r| r.root_epoch);
    Ok((row.clone(), format!("keyward-keyring-root/{}", row.root_id), epoch.to_string()))
}

async fn dek(pdb: &ProgressDb, key_id: String, name: &KeyName) -> Result<Dek, Plain> {
    let (key, _) = load(&pdb.app, name.as_str()).await?;
    let (row, kek_id, kek_version) = wrapped(pdb, name).await?;
    let created_at = u64::try_from(key.created_at).unwrap_or(0);
    Ok(Dek {
        key_id,
        wrapped_dek: STANDARD.encode(&row.wrapped),
        kek_id,
        kek_version,
        created_at: keyward_attest::UnixTime::from_secs(created_at).to_string(),
    })
}

/// Makes the key of `name` in an enclave.
async fn new_key(pdb: &ProgressDb, name: &KeyName) -> Result<(), ApiError> {
    let key = CreateKey { name: name.to_string(), key_type: "aes256-gcm".into(), exportable: false };
    front_principal::create(&pdb.app, &pdb.principal, key).await
}

#[derive(Deserialize)]
struct CreateDekBody {
    #[serde(default)]
    key_id: Option<String>,
}

/// `POST /deks`: a new data key, under the id given or a new one. An id that has a key
/// already is refused (409): keyward never replaces a data key.
async fn create_dek(
    State(pdb): State<ProgressDb>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Dek>), Plain> {
    // ProgressDB's server reads an empty or missing body as "no key id".
    let request: CreateDekBody = if bytes.as_ref().is_ok_and(|b| b.iter().all(u8::is_ascii_whitespace)) {
        CreateDekBody { key_id: None }
    } else {
        body(bytes)?
    };
    let key_id = match request.key_id.filter(|id| !id.is_empty()) {
        Some(id) => id,
        None => {
            let mut random = [0u8; 16];
            aws_lc_rs::rand::fill(&mut random).map_err(|_| ApiError::internal("no randomness for a key id"))?;
            format!("dek-{}", hex::encode(random))
        }
    };
    let name = key_name(&pdb.key_prefix, &key_id)?;
    new_key(&pdb, &name).await?;
    Ok((StatusCode::CREATED, Json(dek(&pdb, key_id, &name).await?)))
}

#[derive(Deserialize)]
struct ThreadBody {
    thread_id: String,
}

#[derive(Serialize)]
struct ThreadDek {
    key_id: String,
    wrapped: String,
    kek_id: String,
    kek_version: String,
}

/// `POST /create_dek_for_thread`: the thread's data key, made on the first call. One key per
/// thread: a repeated call answers the same key, so a retry after a lost answer loses nothing.
async fn create_dek_for_thread(
    State(pdb): State<ProgressDb>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<ThreadDek>, Plain> {
    let request: ThreadBody = body(bytes)?;
    let name = key_name(&pdb.key_prefix, &request.thread_id)
        .map_err(|Plain(e)| Plain::bad_request("invalid_thread_id", e.message.replace("key_id", "thread_id")))?;
    match new_key(&pdb, &name).await {
        Ok(()) => {}
        Err(e) if e.code == "key_exists" => {}
        Err(e) => return Err(e.into()),
    }
    let dek = dek(&pdb, request.thread_id, &name).await?;
    Ok(Json(ThreadDek {
        key_id: dek.key_id,
        wrapped: dek.wrapped_dek,
        kek_id: dek.kek_id,
        kek_version: dek.kek_version,
    }))
}

#[derive(Deserialize)]
struct KeyIdQuery {
    #[serde(default)]
    key_id: Option<String>,
}

#[derive(Serialize)]
struct Wrapped {
    wrapped: String,
}

/// `GET /get_wrapped?key_id=`.
async fn get_wrapped(State(pdb): State<ProgressDb>, Query(query): Query<KeyIdQuery>) -> Result<Json<Wrapped>, Plain> {
    let key_id = query
        .key_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Plain::bad_request("missing_key_id", "missing key_id"))?;
    let name = key_name(&pdb.key_prefix, &key_id)?;
    let (row, _, _) = wrapped(&pdb, &name).await?;
    Ok(Json(Wrapped { wrapped: STANDARD.encode(&row.wrapped) }))
}

#[derive(Deserialize)]
struct EncryptBody {
    key_id: String,
    /// Go's `[]byte`: base64; null or absent is empty.
    #[serde(default)]
    plaintext: Option<String>,
    #[serde(default)]
    associated_data: Option<String>,
}

#[derive(Serialize)]
struct Encrypted {
    ciphertext: String,
    key_version: String,
}

/// `POST /encrypt`: AES-256-GCM in the enclave under the key's latest version; the
/// ciphertext names its version, so it decrypts after the key is rotated.
async fn encrypt(
    State(pdb): State<ProgressDb>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<Encrypted>, Plain> {
    let request: EncryptBody = body(bytes)?;
    let name = key_name(&pdb.key_prefix, &request.key_id)?;
    let plaintext = SecretBytes::new(
        request
            .plaintext
            .as_deref()
            .map(|p| base64_field("plaintext", p, MAX_CRYPT_PAYLOAD_LEN))
            .transpose()?
            .unwrap_or_default(),
    );
    let associated_data = optional_associated_data(request.associated_data.as_deref())?;
    let (_, row) = signing_row(&pdb.app, name.as_str(), None).await?;
    let version = row.identity.version.get();
    match front_principal::crypt(&pdb.app, &pdb.principal, row, CryptOp::Encrypt { plaintext, associated_data }).await?
    {
        CryptOutput::Ciphertext(c) => {
            Ok(Json(Encrypted { ciphertext: STANDARD.encode(c), key_version: version.to_string() }))
        }
        _ => Err(ApiError::internal("the enclave answered Encrypt with another kind").into()),
    }
}

#[derive(Deserialize)]
struct DecryptBody {
    key_id: String,
    ciphertext: String,
    #[serde(default)]
    associated_data: Option<String>,
}

#[derive(Serialize)]
struct Decrypted {
    plaintext: String,
}

/// `POST /decrypt`: a wrong key, wrong associated data or any altered byte is a 400 with a
/// code, never plaintext.
async fn decrypt(
    State(pdb): State<ProgressDb>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<Decrypted>, Plain> {
    let request: DecryptBody = body(bytes)?;
    let name = key_name(&pdb.key_prefix, &request.key_id)?;
    let ciphertext = base64_field("ciphertext", &request.ciphertext, MAX_CRYPT_PAYLOAD_LEN + 64)?;
    let associated_data = optional_associated_data(request.associated_data.as_deref())?;
    let row = decryption_row(&pdb.app, name.as_str(), &ciphertext).await?;
    match front_principal::crypt(&pdb.app, &pdb.principal, row, CryptOp::Decrypt { ciphertext, associated_data })
        .await?
    {
        CryptOutput::Plaintext(p) => Ok(Json(Decrypted { plaintext: STANDARD.encode(p.expose()) })),
        _ => Err(ApiError::internal("the enclave answered Decrypt with another kind").into()),
    }
}

#[derive(Deserialize)]
struct RewrapBody {
    key_id: String,
    #[serde(default)]
    new_kek_hex: Option<String>,
}

#[derive(Serialize)]
struct Rewrapped {
    new_wrapped: String,
    new_kek_id: String,
    new_kek_version: String,
}

/// `POST /rewrap`: the data key gets a new version, made in the enclave; new data is
/// encrypted under it and older ciphertexts still decrypt. A KEK sent by the caller
/// (`new_kek_hex`) is refused: keyward's KEK is the keyring root, which never leaves the
/// enclave (rotate it with `POST /v1/admin/keyring/rotate`).
async fn rewrap(State(pdb): State<ProgressDb>, bytes: Result<Bytes, BytesRejection>) -> Result<Json<Rewrapped>, Plain> {
    let request: RewrapBody = body(bytes)?;
    let name = key_name(&pdb.key_prefix, &request.key_id)?;
    if request.new_kek_hex.is_some_and(|k| !k.is_empty()) {
        return Err(Plain::bad_request(
            "kek_not_accepted",
            "keyward takes no key-encryption key from callers: the KEK is the keyring root, held only in the enclave; omit new_kek_hex",
        ));
    }
    // Signed as a rotation to the next version: a replay of it makes no further version.
    let (key, _) = crate::keys_api::load(&pdb.app, name.as_str()).await?;
    let version = u32::try_from(key.latest_version + 1).map_err(|_| ApiError::internal("key version out of range"))?;
    let body = keyward_client::keys::RotateKey { version, key_type: key.key_type.clone(), exportable: key.exportable };
    let auth = pdb.principal.authorize(keyward_authz::Operation::Rotate, name.as_str(), &body)?;
    rotate(&pdb.app, name.as_str(), auth).await?;
    let (row, kek_id, kek_version) = wrapped(&pdb, &name).await?;
    Ok(Json(Rewrapped { new_wrapped: STANDARD.encode(&row.wrapped), new_kek_id: kek_id, new_kek_version: kek_version }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<KeyName, Plain>) -> &'static str {
        result.map(|_| "ok").unwrap_or_else(|Plain(e)| e.code)
    }

    #[test]
    fn key_ids_name_keys_without_collisions() {
        assert_eq!(key_name("progressdb.", "thread-1").unwrap().as_str(), "progressdb.thread-1");
        assert_eq!(key_name("progressdb.", "a/b_c").unwrap().as_str(), "progressdb.a.b_c");
        assert_ne!(key_name("p.", "a/b").unwrap(), key_name("p.", "a-b").unwrap());
    }

    #[test]
    fn bad_key_ids_are_refused_with_a_code() {
        assert_eq!(code(key_name("p.", "")), "invalid_key_id");
        assert_eq!(code(key_name("p.", "a.b")), "invalid_key_id", "'.' would collide with '/'");
        assert_eq!(code(key_name("p.", "a b")), "invalid_key_id");
        assert_eq!(code(key_name("p.", &"x".repeat(257))), "invalid_key_id");
        // Within ProgressDB's 256 but past the keyring's 128 with the prefix.
        assert_eq!(code(key_name("p.", &"x".repeat(127))), "invalid_key_id");
        assert_eq!(code(key_name("p.", &"x".repeat(126))), "ok");
    }
}

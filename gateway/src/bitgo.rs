//! BitGo Advanced Wallets' key provider API (`KEY_PROVIDER_URL`), in its own shapes: `POST
//! /key`, `GET /key/{pub}`, `POST /key/generate`, `POST /sign`, `POST /generateDataKey`,
//! `POST /decryptDataKey`. Errors are `{"message"}` with BitGo's statuses, and keyward's stable
//! code in the `X-Keyward-Error-Code` header.
//!
//! - A `prv` BitGo brings (`POST /key`) arrives in plaintext by design. The enclave seals it at
//!   once under a new `secret` keyring key, bound to its `(source, pub)`. `GET /key/{pub}` opens
//!   it only for the sources the configuration names.
//! - `POST /key/generate` makes a `bip32` keyring key in the enclave and answers its xpub. Its
//!   private key never leaves the enclave: `POST /sign` signs with it there.
//! - Data keys are wrapped under one aes256-gcm keyring key, `<prefix>data-keys`, and travel as
//!   BitGo writes bytes: decimal values joined by commas.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::rejection::BytesRejection,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use keyward_client::keys::CreateKey;
use keyward_proto::{CryptOp, CryptOutput, DataKeySpec, KeySign, KeyType, Request, SecretBytes, SignFormat};
use keyward_store::BitgoKeyRow;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    api::AppState,
    config::seeds::BitgoConfig,
    errors::ApiError,
    front_principal::{self, FrontPrincipal},
    keys_api::{KEY_TIMEOUT, keyring_link, signing_row, store_error, with_policy},
    keys_crypt::decryption_row,
    link::unexpected_reply,
};

/// Longest `prv` (TSS key shares run to a few KiB).
const MAX_PRV_LEN: usize = 64 * 1024;
/// Longest `pub`, `coin` and the other strings.
const MAX_FIELD_LEN: usize = 4096;
/// Bound into every data key BitGo asks for.
const DATA_KEY_CONTEXT: &[u8] = b"bitgo data key";

#[derive(Debug, Clone)]
pub struct Bitgo {
    pub app: AppState,
    pub config: Arc<BitgoConfig>,
    /// What the front door signs its requests as when the enclaves have owners.
    pub principal: FrontPrincipal,
}

pub fn router(state: Bitgo) -> Router {
    Router::new()
        .route("/key", post(store_key))
        .route("/key/generate", post(generate_key))
        .route("/key/{pub}", get(get_key))
        .route("/sign", post(sign))
        .route("/generateDataKey", post(generate_data_key))
        .route("/decryptDataKey", post(decrypt_data_key))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .fallback(|| async { Message::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Message::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this endpoint")
        })
        .with_state(state)
}

/// An error as BitGo's key provider writes them: `{"message"}`.
#[derive(Debug)]
pub struct Message(ApiError);

impl Message {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Message(ApiError::new(status, code, message))
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Message(ApiError::invalid(code, message))
    }
}

impl From<ApiError> for Message {
    fn from(e: ApiError) -> Self {
        Message(e)
    }
}

#[derive(Serialize)]
struct MessageBody<'a> {
    message: &'a str,
}

impl IntoResponse for Message {
    fn into_response(self) -> Response {
        let mut response = (self.0.status, Json(MessageBody { message: &self.0.message })).into_response();
        response.headers_mut().insert("x-keyward-error-code", HeaderValue::from_static(self.0.code));
        response
    }
}

fn body<T: DeserializeOwned>(bytes: Result<Bytes, BytesRejection>) -> Result<T, Message> {
    crate::frontdoor::json_body(bytes, "Invalid data provided from client: ").map_err(Message)
}

/// A required string of 1 to `max` bytes.
fn required<'a>(field: &str, value: Option<&'a str>, max: usize) -> Result<&'a str, Message> {
    match value {
        Some(v) if !v.is_empty() && v.len() <= max => Ok(v),
        Some(v) if v.len() > max => Err(Message::bad_request(
            "invalid_field",
            format!("Invalid data provided from client: {field} is longer than {max} bytes"),
        )),
        _ => Err(Message::bad_request(
            "invalid_field",
            format!("Invalid data provided from client: {field} is required"),
        )),
    }
}

/// `user` or `backup`.
fn source(value: Option<&str>) -> Result<&str, Message> {
    match required("source", value, 16)? {
        source @ ("user" | "backup") => Ok(source),
        _ => Err(Message::bad_request(
            "invalid_source",
            "Invalid data provided from client: source must be one of [user, backup]",
        )),
    }
}

fn key_type(value: Option<&str>) -> Result<&str, Message> {
    match required("type", value, 16)? {
        key_type @ ("independent" | "tss") => Ok(key_type),
        _ => Err(Message::bad_request(
            "invalid_type",
            "Invalid data provided from client: type must be one of [independent, tss]",
        )),
    }
}

fn not_found(public: &str, source: &str) -> Message {
    Message::new(
        StatusCode::NOT_FOUND,
        "key_not_found",
        format!("Entry with pub {public} and source {source} not found in database"),
    )
}

/// What a sealed `prv` is bound to: its source and pub.
fn prv_context(source: &str, public: &str) -> Vec<u8> {
    [&b"bitgo prv\0"[..], source.as_bytes(), b"\0", public.as_bytes()].concat()
}

/// Makes keyring key `name` of `key_type`; one that exists already (a retry after a lost
/// answer) is used as it is.
async fn ensure_key(bitgo: &Bitgo, name: &str, key_type: KeyType) -> Result<(), ApiError> {
    let key = CreateKey { name: name.to_owned(), key_type: key_type.as_str().to_owned(), exportable: false };
    match front_principal::create(&bitgo.app, &bitgo.principal, key).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == "key_exists" => Ok(()),
        Err(e) => Err(e),
    }
}

impl Bitgo {
    /// An encryption operation, signed as the front door's principal when there are owners.
    async fn crypt(&self, row: keyward_proto::WrappedKey, op: CryptOp) -> Result<CryptOutput, ApiError> {
        front_principal::crypt(&self.app, &self.principal, row, op).await
    }
}

fn now() -> i64 {
    keyward_admission::keyring::now_unix()
}

#[derive(Deserialize)]
struct StoreKeyBody {
    prv: Option<String>,
    #[serde(rename = "pub")]
    public: Option<String>,
    coin: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<String>,
}

#[derive(Serialize)]
struct KeyAnswer {
    #[serde(rename = "pub")]
    public: String,
    coin: String,
    source: String,
    #[serde(rename = "type")]
    key_type: String,
}

/// `POST /key`: the `prv` sealed in the enclave, never stored in plaintext; a `(pub, source)`
/// that exists is 409, and nothing changes.
async fn store_key(
    State(bitgo): State<Bitgo>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<KeyAnswer>, Message> {
    let request: StoreKeyBody = body(bytes)?;
    let prv = required("prv", request.prv.as_deref(), MAX_PRV_LEN)?;
    let public = required("pub", request.public.as_deref(), MAX_FIELD_LEN)?;
    let coin = required("coin", request.coin.as_deref(), MAX_FIELD_LEN)?;
    let source = source(request.source.as_deref())?;
    let key_type = key_type(request.key_type.as_deref())?;
    let duplicate = || {
        Message::new(
            StatusCode::CONFLICT,
            "key_exists",
            format!("Duplicated Key for source: {source} and pub: {public}"),
        )
    };
    let app = &bitgo.app;
    if app.db.bitgo_key(public.to_owned(), source.to_owned()).await.map_err(store_error)?.is_some() {
        return Err(duplicate());
    }
    // The name is the pub's hash: a retry after a crash finds the same key.
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public.as_bytes());
    let name = format!("{}{source}.{}", bitgo.config.key_prefix, hex::encode(&digest.as_ref()[..20]));
    ensure_key(&bitgo, &name, KeyType::Secret).await?;
    let (_, row) = signing_row(app, &name, None).await?;
    let op = CryptOp::SealSecret {
        secret: SecretBytes::new(prv.as_bytes().to_vec()),
        associated_data: prv_context(source, public),
    };
    let sealed = match bitgo.crypt(row, op).await? {
        CryptOutput::Ciphertext(sealed) => sealed,
        _ => return Err(ApiError::internal("the enclave answered SealSecret with another kind").into()),
    };
    let row = BitgoKeyRow {
        public: public.to_owned(),
        source: source.to_owned(),
        coin: coin.to_owned(),
        key_type: key_type.to_owned(),
        key_name: name,
        sealed_prv: Some(sealed),
        created_at: now(),
    };
    match app.db.insert_bitgo_key(row).await {
        Err(e) if e.code() == "key_exists" => return Err(duplicate()),
        other => other.map_err(store_error)?,
    }
    tracing::info!(source, coin, "BitGo key stored (prv sealed in the enclave)");
    Ok(Json(KeyAnswer {
        public: public.to_owned(),
        coin: coin.to_owned(),
        source: source.to_owned(),
        key_type: key_type.to_owned(),
    }))
}

#[derive(Deserialize)]
struct SourceQuery {
    source: Option<String>,
}

#[derive(Serialize)]
struct GetKeyAnswer {
    prv: String,
    #[serde(rename = "pub")]
    public: String,
    source: String,
    #[serde(rename = "type")]
    key_type: String,
}

/// `GET /key/{pub}?source=`: the stored `prv`, opened in the enclave, for the sources the
/// configuration names; a key keyward generated never leaves the enclave.
async fn get_key(
    State(bitgo): State<Bitgo>,
    Path(public): Path<String>,
    Query(query): Query<SourceQuery>,
) -> Result<Json<GetKeyAnswer>, Message> {
    let source = source(query.source.as_deref())?;
    let stored = bitgo.app.db.bitgo_key(public.clone(), source.to_owned()).await.map_err(store_error)?;
    let stored = stored.ok_or_else(|| not_found(&public, source))?;
    let Some(sealed) = stored.sealed_prv else {
        return Err(Message::new(
            StatusCode::FORBIDDEN,
            "key_never_leaves",
            format!(
                "the key with pub {public} was generated in keyward's enclave and never leaves it: sign with POST /sign"
            ),
        ));
    };
    let revealed = match source {
        "user" => bitgo.config.reveal_prv_user,
        _ => bitgo.config.reveal_prv_backup,
    };
    if !revealed {
        return Err(Message::new(
            StatusCode::FORBIDDEN,
            "prv_not_revealed",
            format!("keyward is configured not to return private keys of source {source} (bitgo.reveal_prv_sources)"),
        ));
    }
    let row = decryption_row(&bitgo.app, &stored.key_name, &sealed).await?;
    let op = CryptOp::OpenSecret { sealed, associated_data: prv_context(source, &public) };
    let prv = match bitgo.crypt(row, op).await? {
        CryptOutput::Plaintext(prv) => prv,
        _ => return Err(ApiError::internal("the enclave answered OpenSecret with another kind").into()),
    };
    let prv = String::from_utf8(prv.expose().to_vec())
        .map_err(|_| ApiError::internal("a stored prv is not UTF-8 (it was stored as a JSON string)"))?;
    tracing::info!(source, "BitGo key revealed to the wallet manager");
    Ok(Json(GetKeyAnswer { prv, public, source: source.to_owned(), key_type: stored.key_type }))
}

#[derive(Deserialize)]
struct GenerateBody {
    coin: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<String>,
}

/// BIP32's serialization of a master public key (mainnet `xpub`, as BitGo's keychains write
/// for every network): version, depth 0, no parent, child 0, chain code, compressed key.
pub fn xpub(public_key: &[u8]) -> Option<String> {
    let (key, chain_code) = public_key.split_at_checked(33)?;
    (chain_code.len() == 32).then(|| {
        let payload = [&[0x04, 0x88, 0xb2, 0x1e][..], &[0; 9], chain_code, key].concat();
        bs58::encode(payload).with_check().into_string()
    })
}

/// `POST /key/generate`: a `bip32` keyring key made in the enclave; its xpub is the `pub`.
async fn generate_key(
    State(bitgo): State<Bitgo>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<KeyAnswer>, Message> {
    let request: GenerateBody = body(bytes)?;
    let coin = required("coin", request.coin.as_deref(), MAX_FIELD_LEN)?;
    let source = source(request.source.as_deref())?;
    if key_type(request.key_type.as_deref())? != "independent" {
        return Err(Message::bad_request(
            "unsupported_type",
            "keyward generates independent (BIP32) keys; a TSS share comes from BitGo's MPC protocol (store it with POST /key)",
        ));
    }
    let mut random = [0u8; 16];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| ApiError::internal("no randomness for a key name"))?;
    let name = format!("{}{source}.gen-{}", bitgo.config.key_prefix, hex::encode(random));
    ensure_key(&bitgo, &name, KeyType::Bip32).await?;
    let (_, row) = signing_row(&bitgo.app, &name, None).await?;
    let public = xpub(&row.public_key).ok_or_else(|| ApiError::internal("a bip32 key without a chain code"))?;
    let stored = BitgoKeyRow {
        public: public.clone(),
        source: source.to_owned(),
        coin: coin.to_owned(),
        key_type: "independent".into(),
        key_name: name,
        sealed_prv: None,
        created_at: now(),
    };
    bitgo.app.db.insert_bitgo_key(stored).await.map_err(store_error)?;
    tracing::info!(source, coin, "BitGo key generated in the enclave");
    Ok(Json(KeyAnswer { public, coin: coin.to_owned(), source: source.to_owned(), key_type: "independent".into() }))
}

#[derive(Deserialize)]
struct SignBody {
    #[serde(rename = "pub")]
    public: Option<String>,
    source: Option<String>,
    #[serde(rename = "signablePayload")]
    signable_payload: Option<String>,
    algorithm: Option<String>,
}

#[derive(Serialize)]
struct Signature {
    signature: String,
}

/// `POST /sign` with a key keyward generated: an Ethereum-style operation hash (`0x` and 32
/// bytes) is signed as it is with the master key, answered `0x{r}{s}{v}` (low-S, v 27 or 28);
/// a PSBT in hex is answered with the PSBT, every input that names the key signed by its child.
async fn sign(State(bitgo): State<Bitgo>, bytes: Result<Bytes, BytesRejection>) -> Result<Json<Signature>, Message> {
    let request: SignBody = body(bytes)?;
    let public = required("pub", request.public.as_deref(), MAX_FIELD_LEN)?;
    let source = source(request.source.as_deref())?;
    let payload = required("signablePayload", request.signable_payload.as_deref(), 1024 * 1024)?;
    if request.algorithm.as_deref() != Some("ecdsa") {
        return Err(Message::bad_request(
            "unsupported_algorithm",
            "Invalid data provided from client: algorithm must be ecdsa (keyward's BitGo keys are secp256k1)",
        ));
    }
    let stored = bitgo.app.db.bitgo_key(public.to_owned(), source.to_owned()).await.map_err(store_error)?;
    let stored = stored.ok_or_else(|| not_found(public, source))?;
    if stored.sealed_prv.is_some() {
        return Err(Message::bad_request(
            "not_a_generated_key",
            format!(
                "the key with pub {public} was stored with POST /key; keyward signs only with keys it generated (POST /key/generate)"
            ),
        ));
    }
    let (_, row) = signing_row(&bitgo.app, &stored.key_name, None).await?;
    let Some(hash_hex) = payload.strip_prefix("0x") else {
        return sign_psbt(&bitgo, row, payload).await;
    };
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hash_hex, &mut digest).map_err(|_| {
        Message::bad_request(
            "invalid_payload",
            "Invalid data provided from client: an operation hash is 0x and 64 hex digits",
        )
    })?;
    let request = front_principal::key_sign(&bitgo.principal, row, digest, SignFormat::Ethereum)?;
    let request = KeySign { auth: with_policy(&bitgo.app, request.auth, &stored.key_name).await?, ..request };
    let link = keyring_link(&bitgo.app)?;
    match link.call(Request::KeySign(Box::new(request)), KEY_TIMEOUT).await.map_err(ApiError::from_link)? {
        keyward_proto::Response::KeySignature(signed) => {
            Ok(Json(Signature { signature: format!("0x{}", hex::encode(signed.signature)) }))
        }
        other => Err(ApiError::from_link(unexpected_reply("KeySign", &other)).into()),
    }
}

/// BIP 174's magic: `psbt` and 0xff.
const PSBT_MAGIC: &[u8] = b"psbt\xff";

async fn sign_psbt(bitgo: &Bitgo, row: keyward_proto::WrappedKey, payload: &str) -> Result<Json<Signature>, Message> {
    let psbt = hex::decode(payload)
        .ok()
        .filter(|p| p.starts_with(PSBT_MAGIC))
        .ok_or_else(|| {
            Message::bad_request(
                "invalid_payload",
                "Invalid data provided from client: signablePayload is an operation hash (0x and 64 hex digits) or a PSBT in hex (70736274ff...)",
            )
        })?;
    match bitgo.crypt(row, CryptOp::SignPsbt { psbt }).await? {
        CryptOutput::SignedPsbt { psbt, inputs } => {
            tracing::info!(inputs = inputs.len(), "BitGo PSBT signed");
            Ok(Json(Signature { signature: hex::encode(psbt) }))
        }
        _ => Err(ApiError::internal("the enclave answered SignPsbt with another kind").into()),
    }
}

/// Bytes as BitGo writes them: decimal values joined by commas (JavaScript's
/// `Uint8Array.toString()`).
pub fn comma_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

/// Parses [`comma_bytes`]; at most `max` values.
pub fn parse_comma_bytes(text: &str, max: usize) -> Option<Vec<u8>> {
    let bytes: Option<Vec<u8>> = text.split(',').take(max + 1).map(|v| v.trim().parse::<u8>().ok()).collect();
    bytes.filter(|b| !b.is_empty() && b.len() <= max)
}

#[derive(Deserialize)]
struct GenerateDataKeyBody {
    #[serde(rename = "keyType")]
    key_type: Option<String>,
}

#[derive(Serialize)]
struct DataKeyAnswer {
    #[serde(rename = "plaintextKey")]
    plaintext_key: String,
    #[serde(rename = "encryptedKey")]
    encrypted_key: String,
}

fn data_key_name(bitgo: &Bitgo) -> String {
    format!("{}data-keys", bitgo.config.key_prefix)
}

/// `POST /generateDataKey`: a data key made in the enclave, wrapped under `<prefix>data-keys`.
async fn generate_data_key(
    State(bitgo): State<Bitgo>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<DataKeyAnswer>, Message> {
    let request: GenerateDataKeyBody = body(bytes)?;
    let spec = match required("keyType", request.key_type.as_deref(), 32)? {
        "AES-256" => DataKeySpec::Aes256,
        "RSA-2048" => DataKeySpec::Rsa2048,
        "ECDSA-P256" => DataKeySpec::P256,
        _ => {
            return Err(Message::bad_request(
                "invalid_key_type",
                "Invalid data provided from client: keyType must be one of [AES-256, RSA-2048, ECDSA-P256]",
            ));
        }
    };
    let name = data_key_name(&bitgo);
    ensure_key(&bitgo, &name, KeyType::Aes256Gcm).await?;
    let (_, row) = signing_row(&bitgo.app, &name, None).await?;
    let op = CryptOp::DataKey { spec, plaintext: true, associated_data: DATA_KEY_CONTEXT.to_vec() };
    match bitgo.crypt(row, op).await? {
        CryptOutput::DataKey { wrapped, plaintext: Some(plaintext), .. } => Ok(Json(DataKeyAnswer {
            plaintext_key: comma_bytes(plaintext.expose()),
            encrypted_key: comma_bytes(&wrapped),
        })),
        _ => Err(ApiError::internal("the enclave answered DataKey with another kind").into()),
    }
}

#[derive(Deserialize)]
struct DecryptDataKeyBody {
    #[serde(rename = "encryptedKey")]
    encrypted_key: Option<String>,
}

#[derive(Serialize)]
struct PlaintextKey {
    #[serde(rename = "plaintextKey")]
    plaintext_key: String,
}

/// `POST /decryptDataKey`: the same `plaintextKey` `generateDataKey` answered, byte for byte.
async fn decrypt_data_key(
    State(bitgo): State<Bitgo>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<PlaintextKey>, Message> {
    let request: DecryptDataKeyBody = body(bytes)?;
    let text = required("encryptedKey", request.encrypted_key.as_deref(), 64 * 1024)?;
    let ciphertext = parse_comma_bytes(text, 16 * 1024).ok_or_else(|| {
        Message::bad_request(
            "invalid_encrypted_key",
            "Invalid data provided from client: encryptedKey is decimal byte values joined by commas",
        )
    })?;
    let name = data_key_name(&bitgo);
    let row = decryption_row(&bitgo.app, &name, &ciphertext).await?;
    let op = CryptOp::Decrypt { ciphertext, associated_data: DATA_KEY_CONTEXT.to_vec() };
    match bitgo.crypt(row, op).await? {
        CryptOutput::Plaintext(plaintext) => Ok(Json(PlaintextKey { plaintext_key: comma_bytes(plaintext.expose()) })),
        _ => Err(ApiError::internal("the enclave answered Decrypt with another kind").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_bytes_are_javascripts_uint8array_to_string() {
        assert_eq!(comma_bytes(&[62, 137, 108, 0, 255]), "62,137,108,0,255");
        assert_eq!(parse_comma_bytes("62,137,108,0,255", 8), Some(vec![62, 137, 108, 0, 255]));
        for bad in ["", "1,,2", "256", "1,-1", "0x10", "1;2"] {
            assert_eq!(parse_comma_bytes(bad, 8), None, "{bad:?}");
        }
        assert_eq!(parse_comma_bytes("1,2,3", 2), None, "too many values");
    }

    #[test]
    fn an_xpub_is_bip32s_serialization_of_the_master_key() {
        // BIP32 test vector 1, chain m: its chain code and public key give its published xpub.
        let chain_code = hex::decode("873dff81c02f525623fd1fe5167eac3a55a049de3d314bb42ee227ffed37d508").unwrap();
        let key = hex::decode("0339a36013301597daef41fbe593a02cc513d0b55527ec2df1050e2e8ff49c85c2").unwrap();
        let public_key = [key, chain_code].concat();
        assert_eq!(
            xpub(&public_key).unwrap(),
            "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8"
        );
        assert_eq!(xpub(&public_key[..33]), None);
    }
}

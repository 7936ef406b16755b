//! Key agreement with `x25519` and `p256` keys: the ECDH secret with a peer (as AWS KMS's
//! `DeriveSharedSecret`), JOSE `ECDH-ES+A256KW` unwrapping of a content key wrapped to a
//! keyring key (in the enclave), wrapping a content key to anyone's public key (here: it needs
//! no keyring key), and a key's public JWK. Public keys travel as JWKs (RFC 7517/8037) or raw
//! base64; JOSE byte fields are base64url without padding.

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Query, State, rejection::JsonRejection},
    http::HeaderMap,
    routing::{get, post},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use keyward_client::agree::{
    DeriveSharedSecret as DeriveRequest, PublicJwk, SharedSecret, UnwrapKey as UnwrapRequest,
    UnwrappedKey as Unwrapped, WrapKey as WrapRequest, WrappedKey as Wrapped,
};
use keyward_keyring::{Curve, JOSE_ALG, MAX_CEK_LEN, jose_wrap, peer_public_key};
use keyward_proto::{CryptOp, CryptOutput, KeyType};
use serde::Deserialize;

use crate::key_path::KeyPath;
use crate::{
    api::AppState,
    errors::ApiError,
    keys_api::signing_row,
    keys_crypt::crypt_signed,
    signed::{self, SignedJson},
};

/// Longest `apu` or `apv`.
const MAX_PARTY_INFO_LEN: usize = 1024;

pub fn routes() -> Router<AppState> {
    let limit = || DefaultBodyLimit::max(16 * 1024);
    let mut router = Router::new().route("/v1/wrap", post(wrap).layer(limit()));
    for prefix in crate::key_path::PREFIXES {
        router = router
            .route(&format!("{prefix}/{{name}}/derive-shared-secret"), post(derive_shared_secret).layer(limit()))
            .route(&format!("{prefix}/{{name}}/unwrap"), post(unwrap).layer(limit()))
            .route(&format!("{prefix}/{{name}}/jwk"), get(public_jwk));
    }
    router
}

fn invalid_jwk(message: impl Into<String>) -> ApiError {
    ApiError::invalid("invalid_jwk", message)
}

fn b64url(field: &str, value: &str, max: usize) -> Result<Vec<u8>, ApiError> {
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .ok()
        .filter(|b| b.len() <= max)
        .ok_or_else(|| ApiError::invalid("invalid_base64", format!("{field} is not base64url of at most {max} bytes")))
}

/// Parsing and making JWKs at the boundary.
pub trait JwkExt: Sized {
    /// The curve and the public key as the keyring takes it.
    fn parse(&self) -> Result<(Curve, Vec<u8>), ApiError>;
    /// The JWK of a public key.
    fn of(curve: Curve, public_key: &[u8], kid: Option<String>) -> Result<Self, ApiError>;
}

impl JwkExt for PublicJwk {
    /// The curve and the public key as the keyring takes it (X25519 raw; P-256 SEC1
    /// uncompressed).
    fn parse(&self) -> Result<(Curve, Vec<u8>), ApiError> {
        self.point().map_err(invalid_jwk)
    }

    /// The JWK of a public key (X25519 raw, or P-256 SEC1 of either form).
    fn of(curve: Curve, public_key: &[u8], kid: Option<String>) -> Result<Self, ApiError> {
        let key = peer_public_key(curve, public_key).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(match curve {
            Curve::X25519 => {
                PublicJwk { kty: "OKP".into(), crv: "X25519".into(), x: URL_SAFE_NO_PAD.encode(&key), y: None, kid }
            }
            Curve::P256 => PublicJwk {
                kty: "EC".into(),
                crv: "P-256".into(),
                x: URL_SAFE_NO_PAD.encode(&key[1..33]),
                y: Some(URL_SAFE_NO_PAD.encode(&key[33..65])),
                kid,
            },
        })
    }
}

/// The key's curve, or a refusal naming the types that agree.
fn curve_of(key_type: KeyType, name: &str) -> Result<Curve, ApiError> {
    Curve::of(key_type).ok_or_else(|| {
        ApiError::invalid(
            "unsupported_operation",
            format!("key {name} is a {key_type} key; key agreement needs an x25519 or p256 key"),
        )
    })
}

/// `POST /v1/keys/{name}/derive-shared-secret`: the raw ECDH secret (X25519's 32 bytes, or
/// P-256's x coordinate).
async fn derive_shared_secret(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: SignedJson<DeriveRequest>,
) -> Result<Json<SharedSecret>, ApiError> {
    app.api_token.authorize(&headers)?;
    let auth = signed::authorization(&headers, signed::keystore_of(&name), &body.bytes)?;
    let body = body.value;
    let (_, row) = signing_row(&app, &name, body.version).await?;
    let curve = curve_of(row.identity.key_type, &name)?;
    let peer = match (&body.public_key_b64, &body.public_key_jwk) {
        (Some(raw), None) => STANDARD.decode(raw).ok().filter(|b| b.len() <= 65).ok_or_else(|| {
            ApiError::invalid("invalid_public_key", "public_key_b64 is not base64 of at most 65 bytes")
        })?,
        (None, Some(jwk)) => {
            let (jwk_curve, key) = jwk.parse()?;
            if jwk_curve != curve {
                return Err(invalid_jwk(format!("the JWK is on {jwk_curve:?}, key {name} on {curve:?}")));
            }
            key
        }
        _ => return Err(ApiError::invalid("invalid_field", "give public_key_b64 or public_key_jwk, one of them")),
    };
    let version = row.identity.version.get();
    match crypt_signed(&app, row, CryptOp::DeriveSharedSecret { peer_public_key: peer }, auth).await? {
        CryptOutput::Plaintext(secret) => {
            Ok(Json(SharedSecret { shared_secret_b64: STANDARD.encode(secret.expose()), version }))
        }
        _ => Err(ApiError::internal("the enclave answered DeriveSharedSecret with another kind")),
    }
}

fn check_alg(alg: Option<&str>) -> Result<(), ApiError> {
    match alg {
        None | Some(JOSE_ALG) => Ok(()),
        Some(other) => {
            let shown: String = other.chars().take(32).collect();
            Err(ApiError::invalid("unsupported_algorithm", format!("alg {shown:?}: keyward wraps with {JOSE_ALG}")))
        }
    }
}

fn party_info(field: &str, value: Option<&str>) -> Result<Vec<u8>, ApiError> {
    value.map_or(Ok(Vec::new()), |v| b64url(field, v, MAX_PARTY_INFO_LEN))
}

/// `POST /v1/keys/{name}/unwrap`: the content key of a JWE recipient wrapped to this key,
/// opened in the enclave.
async fn unwrap(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    body: SignedJson<UnwrapRequest>,
) -> Result<Json<Unwrapped>, ApiError> {
    app.api_token.authorize(&headers)?;
    let auth = signed::authorization(&headers, signed::keystore_of(&name), &body.bytes)?;
    let body = body.value;
    check_alg(body.alg.as_deref())?;
    let (_, row) = signing_row(&app, &name, body.version).await?;
    let curve = curve_of(row.identity.key_type, &name)?;
    let (epk_curve, epk) = body.epk.parse()?;
    if epk_curve != curve {
        return Err(invalid_jwk(format!("the epk is on {epk_curve:?}, key {name} on {curve:?}")));
    }
    let op = CryptOp::JoseUnwrap {
        epk,
        encrypted_key: b64url("encrypted_key", &body.encrypted_key, MAX_CEK_LEN + 8)?,
        apu: party_info("apu", body.apu.as_deref())?,
        apv: party_info("apv", body.apv.as_deref())?,
    };
    let version = row.identity.version.get();
    match crypt_signed(&app, row, op, auth).await? {
        CryptOutput::Plaintext(cek) => Ok(Json(Unwrapped { cek_b64: STANDARD.encode(cek.expose()), version })),
        _ => Err(ApiError::internal("the enclave answered JoseUnwrap with another kind")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    #[serde(default)]
    version: Option<u32>,
}

/// `GET /v1/keys/{name}/jwk`: the public key of an x25519 or p256 key as a JWK (`kid` is the
/// key's name).
async fn public_jwk(
    State(app): State<AppState>,
    headers: HeaderMap,
    KeyPath(name): KeyPath,
    query: Result<Query<VersionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PublicJwk>, ApiError> {
    app.api_token.authorize(&headers)?;
    let Query(query) = query.map_err(ApiError::from_query)?;
    let (_, row) = signing_row(&app, &name, query.version).await?;
    crate::keys_api::check_rows(&app, vec![row.clone()]).await?;
    let curve = curve_of(row.identity.key_type, &name)?;
    Ok(Json(PublicJwk::of(curve, &row.public_key, Some(name))?))
}

/// `POST /v1/wrap`: `cek` wrapped to a recipient's public key with `ECDH-ES+A256KW`. It uses no
/// keyring key, so it runs here, with a fresh ephemeral key from this machine's randomness:
/// the content key passes through the gateway in this request anyway.
async fn wrap(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<WrapRequest>, JsonRejection>,
) -> Result<Json<Wrapped>, ApiError> {
    app.api_token.authorize(&headers)?;
    let Json(body) = body.map_err(ApiError::from_json)?;
    let (curve, recipient) = body.recipient_jwk.parse()?;
    let cek = zeroize::Zeroizing::new(
        STANDARD
            .decode(&body.cek_b64)
            .map_err(|_| ApiError::invalid("invalid_base64", "cek_b64 is not standard base64"))?,
    );
    let (apu, apv) = (party_info("apu", body.apu.as_deref())?, party_info("apv", body.apv.as_deref())?);
    for _ in 0..16 {
        let mut ephemeral = zeroize::Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(ephemeral.as_mut()).map_err(|_| ApiError::internal("no randomness"))?;
        match jose_wrap(curve, &recipient, &cek, &apu, &apv, &ephemeral) {
            Ok(wrapped) => {
                return Ok(Json(Wrapped {
                    alg: JOSE_ALG.to_owned(),
                    epk: PublicJwk::of(curve, &wrapped.epk, None)?,
                    encrypted_key: URL_SAFE_NO_PAD.encode(wrapped.encrypted_key),
                }));
            }
            // 32 random bytes that are not a P-256 scalar: draw again.
            Err(keyward_keyring::KeyringError::Randomness(_)) => continue,
            Err(e) => return Err(ApiError::invalid("invalid_input", e.to_string())),
        }
    }
    Err(ApiError::internal("no ephemeral key after 16 draws"))
}

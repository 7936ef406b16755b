//! The API the enclave serves itself, over TLS that ends in this process: the gateway passes
//! each client's TCP stream through unparsed (vsock in production), so the host carries only
//! ciphertext. The same JSON shapes and error codes as the gateway's API.
//!
//! Bounds, so that no client of this listener can starve signing: at most
//! [`MAX_CONNECTIONS`] connections (a connection beyond them is closed at once), a handshake
//! finished within [`HANDSHAKE_DEADLINE`], request headers within [`HEADER_DEADLINE`], and
//! small bodies. HTTP/1.1 answers one request at a time per connection, so a connection holds
//! at most one signature in flight.

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Json, Router,
    extract::{DefaultBodyLimit, Query, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use hyper_util::rt::{TokioIo, TokioTimer};
use keyward_attest::AttestationRequest;
use keyward_client::api::{SignRequest as SignBody, SignResponse, Signature, TlsAttestationResponse};
use keyward_proto::{Digest, EnclaveId, ErrorReply, Request, Response as CoreResponse, Scheme, SignRequest};
use keyward_telemetry::event;
use keyward_transport::Listener;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::{
    server::Link,
    tls::{SpkiPin, TlsIdentity, spki_sha256},
};

/// Connections served at once; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 256;
/// From accepting a connection to a finished TLS handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// For a request's headers to arrive, once its first byte has.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(10);
/// Longest nonce a client may ask to be attested.
const MAX_NONCE_LEN: usize = 512;

#[derive(Clone)]
struct Api {
    link: Arc<Link>,
    identity: Arc<TlsIdentity>,
}

/// The pin of the client certificate a connection presented, if it presented one (the
/// handshake already refused one whose key is not listed).
#[derive(Debug, Clone, Copy)]
struct ClientKey(Option<SpkiPin>);

/// Accepts connections on `listener` for as long as the process runs.
pub async fn serve(listener: Listener, link: Arc<Link>, identity: Arc<TlsIdentity>, config: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let router = router(Api { link, identity });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "TLS API: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(event = event::PEER_REFUSED, %peer, "TLS API: {MAX_CONNECTIONS} connections are open; closed a new one");
            continue;
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(conn)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::warn!(event = event::PEER_REFUSED, %peer, "TLS API: handshake refused: {e}");
                    return;
                }
                Err(_) => {
                    tracing::warn!(event = event::PEER_REFUSED, %peer, "TLS API: handshake not finished in {HANDSHAKE_DEADLINE:?}");
                    return;
                }
            };
            let client = tls.get_ref().1.peer_certificates().and_then(<[_]>::first).and_then(|c| spki_sha256(c).ok());
            let service = hyper_util::service::TowerToHyperService::new(router.layer(Extension(ClientKey(client))));
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .serve_connection(TokioIo::new(tls), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, "TLS API connection ended: {e}");
            }
        });
    }
}

fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/attestation", get(attestation))
        .route("/v1/public-key", get(public_key))
        .route("/v1/sign", post(sign).layer(DefaultBodyLimit::max(16 * 1024)))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint on the enclave's TLS API")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this endpoint")
        })
        .with_state(api)
}

/// An answer refused, as the gateway's API shapes it: `{"error": {"code", "message"}}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn from_core(reply: ErrorReply) -> Self {
        let status = StatusCode::from_u16(reply.code.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
        Self::new(status, reply.code.api_code(), reply.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

async fn health(State(api): State<Api>) -> Response {
    let status = api.link.core.master.status();
    let ready = status.public_key.is_some();
    let body = serde_json::json!({
        "status": if ready { "ok" } else { "degraded" },
        "enclave_id": status.enclave_id.map(|id| id.0),
        "public_key_hex": status.public_key.map(|k| k.to_hex()),
        "tls_spki_sha256_hex": hex::encode(api.identity.spki_sha256),
    });
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NonceQuery {
    nonce: String,
}

/// A fresh document for the client's nonce whose `user_data` binds this listener's
/// certificate. No client certificate needed: a client fetches it before it trusts the key.
async fn attestation(
    State(api): State<Api>,
    query: Result<Query<NonceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TlsAttestationResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let nonce =
        hex::decode(&query.nonce).map_err(|_| ApiError::invalid("invalid_nonce", "nonce is not valid hexadecimal"))?;
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
        return Err(ApiError::invalid(
            "invalid_nonce",
            format!("nonce must be 1 to {MAX_NONCE_LEN} bytes, got {}", nonce.len()),
        ));
    }
    let request =
        AttestationRequest { public_key: None, user_data: Some(api.identity.binding()), nonce: Some(nonce.clone()) };
    let document = api.link.attestations.attest(request).await.map_err(ApiError::from_core)?;
    Ok(Json(TlsAttestationResponse {
        document_b64: STANDARD.encode(document),
        certificate_b64: STANDARD.encode(&api.identity.cert),
        spki_sha256_hex: hex::encode(api.identity.spki_sha256),
        nonce_hex: hex::encode(nonce),
    }))
}

async fn public_key(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let status = api.link.core.master.status();
    let (Some(id), Some(key)) = (status.enclave_id, status.public_key) else {
        return Err(not_ready());
    };
    let hex = key.to_hex();
    Ok(Json(serde_json::json!({
        "enclave_id": id.0,
        "xonly_public_key_hex": hex.get(2..).unwrap_or_default(),
        "public_key_hex": hex,
        "key_epoch": status.key_epoch,
    })))
}

fn not_ready() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "enclave_not_ready", "the enclave holds no master key yet")
}

/// The master key's signature, for a client whose certificate this enclave lists.
async fn sign(
    State(api): State<Api>,
    Extension(client): Extension<ClientKey>,
    body: Result<Json<SignBody>, JsonRejection>,
) -> Result<Json<SignResponse>, ApiError> {
    if client.0.is_none() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "client_certificate_required",
            "signing over the enclave's TLS API needs a client certificate whose key the enclave lists",
        ));
    }
    let Json(body) = body.map_err(|e| ApiError::new(e.status(), "invalid_json", e.body_text()))?;
    let scheme = match body.scheme.as_str() {
        "ecdsa" => Scheme::Ecdsa,
        "bip340" => Scheme::Bip340,
        _ => return Err(ApiError::invalid("unknown_scheme", "scheme is \"ecdsa\" or \"bip340\"")),
    };
    let mut digest = [0u8; 32];
    hex::decode_to_slice(&body.digest_hex, &mut digest)
        .map_err(|_| ApiError::invalid("invalid_digest", "digest_hex must be 64 hex characters (a 32-byte digest)"))?;
    let status = api.link.core.master.status();
    let (Some(id), Some(key)) = (status.enclave_id, status.public_key) else {
        return Err(not_ready());
    };
    if body.enclave_id.is_some_and(|asked| EnclaveId(asked) != id) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_enclave", format!("this is enclave {id}")));
    }
    let request = Request::Sign(SignRequest { digest: Digest(digest), scheme, auth: None });
    let reply = match api.link.core.handle(request).await.map_err(ApiError::from_core)? {
        CoreResponse::Signature(reply) => reply,
        other => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the core answered Sign with {}", other.kind()),
            ));
        }
    };
    let hex = key.to_hex();
    Ok(Json(SignResponse {
        enclave_id: id.0,
        signature: Signature {
            scheme: reply.scheme.as_str().to_owned(),
            signature_hex: hex::encode(reply.signature),
            recovery_id: reply.recovery_id,
        },
        xonly_public_key_hex: hex.get(2..).unwrap_or_default().to_owned(),
        public_key_hex: hex,
        key_epoch: status.key_epoch,
        receipt: reply.receipt.map(|r| keyward_client::keys::AuditReceiptInfo { seq: r.seq, hash: r.hash }),
    }))
}

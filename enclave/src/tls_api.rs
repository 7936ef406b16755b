//! The API the enclave serves itself, over TLS that ends in this process: the gateway passes
//! each client's TCP stream through unparsed (vsock in production), so the host carries only
//! ciphertext. It is the gateway's own API router (`gateway::api`), the same handlers, with
//! two differences:
//!
//! - The store is the host's, reached through the gateway's store service
//!   (`gateway::host_store`): the enclave asks for the rows it needs and checks them as the
//!   plain path does. Calls to the enclave go to this process's core, not over a link.
//! - Clients are authenticated by their TLS certificate, not by bearer tokens (which the host
//!   chooses and could read): a certificate whose key is listed in `--tls-client-key` may use
//!   the API, one in `--tls-admin-key` its admin endpoints. Each request's `Authorization`
//!   header is replaced by a token that exists only in this process, chosen by the
//!   connection's certificate; a request without a listed certificate carries none, and the
//!   handlers refuse it as they refuse a missing token.
//! - With owners, a listed certificate's key is also a principal of the policies
//!   (`p256:<SEC1>` or `ed25519:<key>`): a request without a signature is made on its behalf
//!   (`gateway::signed::CHANNEL_PRINCIPAL_HEADER`, set here and only here), and the core
//!   checks the policies for it as for a signed one. A signed request is checked as signed.
//!
//! `/v1/attestation` here binds the TLS certificate (`crate::tls`), not the master key.
//!
//! Bounds, so that no peer of this listener can starve signing or take the clients' places:
//! at most [`MAX_HANDSHAKING`] handshakes in progress, each finished within
//! [`HANDSHAKE_DEADLINE`]; then at most [`MAX_CONNECTIONS`] connections with a listed
//! certificate and, apart, [`MAX_ANONYMOUS`] without one, which may only fetch the attestation
//! and health (no body is read from them); request headers within [`HEADER_DEADLINE`]. A
//! connection beyond a limit is closed at once. HTTP/1.1 answers one request at a time per
//! connection.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderValue, Method, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use gateway::{
    api::AppState,
    auth::Token,
    credentials::CredentialSource,
    enclaves::EnclaveSlot,
    host_store::HostClient,
    link::{EnclaveLink, LocalCall},
    signed::CHANNEL_PRINCIPAL_HEADER,
};
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use keyward_attest::AttestationRequest;
use keyward_client::api::TlsAttestationResponse;
use keyward_telemetry::event;
use keyward_transport::Listener;
use serde::Deserialize;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::{
    server::Link,
    tls::{SpkiPin, TlsIdentity, spki_sha256},
};

/// Connections with a listed client certificate served at once; more are closed.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections without one (attestation and health only) served at once.
pub const MAX_ANONYMOUS: usize = 32;
/// TLS handshakes in progress at once; more connections are closed as they arrive.
pub const MAX_HANDSHAKING: usize = 64;
/// What a connection without a client certificate may ask (GET only).
const ANONYMOUS_PATHS: &[&str] = &["/v1/attestation", "/v1/health"];
/// How long an answer to such a connection may take.
const ANONYMOUS_DEADLINE: Duration = Duration::from_secs(10);
/// From accepting a connection to a finished TLS handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// For a request's headers to arrive; hyper counts the time a kept-alive connection waits
/// for its next request too, so an idle connection is closed after this.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(30);
/// How often the API's view of the enclave follows the core.
const MIRROR_EVERY: Duration = Duration::from_millis(250);
/// Attestation documents per second on this listener, and the burst above it.
const ATTESTATIONS_PER_SECOND: u32 = 20;
const ATTESTATION_BURST: u32 = 40;
/// Longest nonce a client may ask to be attested.
const MAX_NONCE_LEN: usize = 512;

/// Whom the TLS API serves.
#[derive(Debug, Clone)]
pub struct ClientKeys {
    pub api: Vec<SpkiPin>,
    pub admin: Vec<SpkiPin>,
}

/// The tokens that stand for a listed certificate inside this process.
struct InternalTokens {
    api: Zeroizing<String>,
    admin: Zeroizing<String>,
}

impl InternalTokens {
    fn new() -> anyhow::Result<Self> {
        let fresh = || -> anyhow::Result<Zeroizing<String>> {
            let mut bytes = Zeroizing::new([0u8; 32]);
            getrandom::fill(&mut *bytes).map_err(|e| anyhow::anyhow!("no randomness for the TLS API's tokens: {e}"))?;
            Ok(Zeroizing::new(hex::encode(*bytes)))
        };
        Ok(InternalTokens { api: fresh()?, admin: fresh()? })
    }
}

struct Served {
    router: OnceLock<Router>,
    /// The API's view of this enclave (for the anonymous health, which reads no store).
    slot: OnceLock<Arc<EnclaveSlot>>,
    /// The enclave has owners: a listed certificate's key is a principal of the policies.
    owners: bool,
    tokens: InternalTokens,
    clients: ClientKeys,
}

/// Accepts connections on `listener` for as long as the process runs. Requests are answered
/// `enclave_not_ready` until the gateway has given this enclave its master key (which names
/// the enclave id the API reports).
pub async fn serve(
    listener: Listener,
    link: Arc<Link>,
    identity: Arc<TlsIdentity>,
    config: Arc<rustls::ServerConfig>,
    host: Arc<HostClient>,
    clients: ClientKeys,
) -> anyhow::Result<()> {
    let owners = link.core.authorizer.is_some();
    let served = Arc::new(Served {
        router: OnceLock::new(),
        slot: OnceLock::new(),
        owners,
        tokens: InternalTokens::new()?,
        clients,
    });
    tokio::spawn(prepare(served.clone(), link, identity, host));
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let slots = Slots {
        handshaking: Arc::new(Semaphore::new(MAX_HANDSHAKING)),
        certified: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        anonymous: Arc::new(Semaphore::new(MAX_ANONYMOUS)),
    };
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "TLS API: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(handshaking) = slots.handshaking.clone().try_acquire_owned() else {
            tracing::warn!(event = event::PEER_REFUSED, %peer, "TLS API: {MAX_HANDSHAKING} handshakes are in progress; closed a new connection");
            continue;
        };
        let (acceptor, served, slots) = (acceptor.clone(), served.clone(), slots.clone());
        tokio::spawn(async move {
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
            drop(handshaking);
            let certificate = tls.get_ref().1.peer_certificates().and_then(<[_]>::first);
            let client = certificate.and_then(|c| spki_sha256(c).ok());
            let token = served.token_for(client);
            // The certificate's key is a principal of the policies too (only on a connection
            // whose certificate is listed).
            let principal = token
                .as_ref()
                .filter(|_| served.owners)
                .and(certificate)
                .and_then(|c| keyward_client::tls_pin::principal_of(c))
                .and_then(|p| HeaderValue::from_str(&p).ok());
            let (pool, limit) =
                if token.is_some() { (&slots.certified, MAX_CONNECTIONS) } else { (&slots.anonymous, MAX_ANONYMOUS) };
            let Ok(_permit) = pool.clone().try_acquire_owned() else {
                tracing::warn!(event = event::PEER_REFUSED, %peer, certified = token.is_some(), "TLS API: {limit} such connections are open; closed a new one");
                return;
            };
            let service = hyper::service::service_fn(move |request: axum::http::Request<hyper::body::Incoming>| {
                let served = served.clone();
                let (token, principal) = (token.clone(), principal.clone());
                async move { Ok::<_, std::convert::Infallible>(served.answer(request, token, principal).await) }
            });
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

/// The connection limits: handshakes in progress, then connections with a listed
/// certificate and without one, each counted apart so that anonymous peers cannot take the
/// clients' slots.
#[derive(Clone)]
struct Slots {
    handshaking: Arc<Semaphore>,
    certified: Arc<Semaphore>,
    anonymous: Arc<Semaphore>,
}

impl Served {
    /// One request's answer. Without a listed certificate only the attestation and health
    /// are served, each within [`ANONYMOUS_DEADLINE`]; the router never reads such a peer's
    /// body. With one, the request carries the certificate's in-process token instead of any
    /// `Authorization` header it came with.
    async fn answer(
        &self,
        mut request: axum::http::Request<hyper::body::Incoming>,
        token: Option<HeaderValue>,
        principal: Option<HeaderValue>,
    ) -> Response {
        let Some(router) = self.router.get() else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "enclave_not_ready",
                "the enclave has no master key yet; the gateway is bringing it up",
            );
        };
        request.headers_mut().remove(AUTHORIZATION);
        request.headers_mut().remove(CHANNEL_PRINCIPAL_HEADER);
        if let Some(principal) = principal {
            request.headers_mut().insert(CHANNEL_PRINCIPAL_HEADER, principal);
        }
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let answer = match token {
            Some(token) => {
                request.headers_mut().insert(AUTHORIZATION, token);
                service.call(request).await
            }
            // Health without a certificate comes from the enclave's own state: an anonymous
            // peer never makes the enclave wait for the host's store.
            None if request.method() == Method::GET && request.uri().path() == "/v1/health" => {
                return self.health();
            }
            None if request.method() == Method::GET && ANONYMOUS_PATHS.contains(&request.uri().path()) => {
                match tokio::time::timeout(ANONYMOUS_DEADLINE, service.call(request)).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        return error(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the answer took too long");
                    }
                }
            }
            None => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "client_certificate_required",
                    "this endpoint needs a client certificate whose key the enclave lists (--tls-client-key)",
                );
            }
        };
        match answer {
            Ok(answer) => answer.map(axum::body::Body::new),
            Err(never) => match never {},
        }
    }

    /// The enclave's health as the gateway's `/v1/health` shapes it, without the database.
    fn health(&self) -> Response {
        let Some(slot) = self.slot.get() else {
            return error(StatusCode::SERVICE_UNAVAILABLE, "enclave_not_ready", "the enclave has no master key yet");
        };
        let health = slot.health();
        let ok = health.state == gateway::enclaves::Phase::Ready && health.keyring.state == "ready";
        let body = serde_json::json!({ "status": if ok { "ok" } else { "degraded" }, "enclaves": [health] });
        let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        (status, Json(body)).into_response()
    }

    /// The `Authorization` header a connection's requests carry inside this process.
    fn token_for(&self, client: Option<SpkiPin>) -> Option<HeaderValue> {
        let client = client?;
        let token = if self.clients.admin.contains(&client) {
            &self.tokens.admin
        } else if self.clients.api.contains(&client) {
            &self.tokens.api
        } else {
            return None;
        };
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.as_str())).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// Builds the router once the core knows its enclave id, then keeps the API's view of the
/// enclave in step with the core.
async fn prepare(served: Arc<Served>, link: Arc<Link>, identity: Arc<TlsIdentity>, host: Arc<HostClient>) {
    let id = loop {
        if let Some(id) = link.core.master.status().enclave_id {
            break id;
        }
        tokio::time::sleep(MIRROR_EVERY).await;
    };
    let settings = loop {
        match host.settings().await {
            Ok(settings) => break settings,
            Err(e) => {
                tracing::warn!("TLS API: waiting for the host's store service: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let core = link.clone();
    let call: LocalCall = Arc::new(move |request| {
        let core = core.clone();
        Box::pin(async move { crate::server::handle(&core, request).await })
    });
    let slot = Arc::new(EnclaveSlot::local(id, EnclaveLink::local(call)));
    let state = AppState {
        enclaves: Arc::new(BTreeMap::from([(id, slot.clone())])),
        db: host.db(tokio::runtime::Handle::current()),
        // An admin certificate may use the API too.
        api_token: Arc::new(Token::from_secret(&served.tokens.api).or(&served.tokens.admin)),
        admin_token: (!served.clients.admin.is_empty()).then(|| Arc::new(Token::from_secret(&served.tokens.admin))),
        credentials: Arc::new(CredentialSource::none()),
        attestation_limit: Arc::new(gateway::limit::RateLimit::new(ATTESTATIONS_PER_SECOND, ATTESTATION_BURST)),
        key_deletion_waiting_seconds: settings.key_deletion_waiting_seconds,
        owners: link.core.authorizer.is_some(),
        check_rows: true,
    };
    slot.mirror(&link.core.master.status(), &link.core.keyring.status(), audit_key(&link));
    let attested = Router::new().route("/v1/attestation", get(attestation)).with_state(Attested {
        link: link.clone(),
        identity,
        limit: state.attestation_limit.clone(),
    });
    let router = attested.fallback_service(gateway::api::router(state));
    let _ = served.slot.set(slot.clone());
    let _ = served.router.set(router);
    tracing::info!(enclave_id = %id, "TLS API serving the keyring");
    loop {
        tokio::time::sleep(MIRROR_EVERY).await;
        slot.mirror(&link.core.master.status(), &link.core.keyring.status(), audit_key(&link));
    }
}

fn audit_key(link: &Link) -> Option<&[u8]> {
    link.core.authorizer.as_deref().map(|a| a.audit_public_key())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": { "code": code, "message": message } }))).into_response()
}

#[derive(Clone)]
struct Attested {
    link: Arc<Link>,
    identity: Arc<TlsIdentity>,
    limit: Arc<gateway::limit::RateLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NonceQuery {
    nonce: String,
}

/// A fresh document for the client's nonce whose `user_data` binds this listener's
/// certificate. No client certificate needed: a client fetches it before it trusts the key.
async fn attestation(
    State(attested): State<Attested>,
    query: Result<Query<NonceQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "invalid_query", "the query is ?nonce=<hex>");
    };
    if !attested.limit.try_take() {
        return error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many attestation documents; retry shortly");
    }
    let nonce = match hex::decode(&query.nonce) {
        Ok(nonce) if !nonce.is_empty() && nonce.len() <= MAX_NONCE_LEN => nonce,
        _ => return error(StatusCode::BAD_REQUEST, "invalid_nonce", "nonce must be 1 to 512 bytes, hex"),
    };
    let request = AttestationRequest {
        public_key: None,
        user_data: Some(attested.identity.binding()),
        nonce: Some(nonce.clone()),
    };
    match attested.link.attestations.attest(request).await {
        Ok(document) => Json(TlsAttestationResponse {
            document_b64: STANDARD.encode(document),
            certificate_b64: STANDARD.encode(&attested.identity.cert),
            spki_sha256_hex: hex::encode(attested.identity.spki_sha256),
            nonce_hex: hex::encode(nonce),
        })
        .into_response(),
        Err(reply) => error(
            StatusCode::from_u16(reply.code.http_status()).unwrap_or(StatusCode::BAD_GATEWAY),
            reply.code.api_code(),
            &reply.message,
        ),
    }
}

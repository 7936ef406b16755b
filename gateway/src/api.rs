//! The client API: JSON over HTTP. The shapes live in `keyward_client::api`, which lists
//! the endpoints; every error is `{"error": {"code": "...", "message": "..."}}`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{
        DefaultBodyLimit, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use keyward_proto::{
    Digest, EnclaveId, Request, Response as EnclaveResponse, Scheme, SignBatchSigned, SignRequest, SignatureReply,
};

use base64::Engine;
use keyward_admission::Db;
use keyward_client::api::{
    AttestationResponse, BatchResult, PublicKeyResponse, RotateRequest, RotateResponse, SignBatchRequest,
    SignBatchResponse, SignRequest as SignBody, SignResponse, Signature as SignatureJson,
};
use serde::Deserialize;

use keyward_client::keys::AuditReceiptInfo;

use crate::{
    auth::Token,
    credentials::CredentialSource,
    enclaves::{EnclaveSlot, Phase},
    errors::ApiError,
    limit::RateLimit,
    signed::{self, SignedJson},
};

/// Deadline for a signature round trip to the enclave.
const SIGN_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest batch accepted.
pub const MAX_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct AppState {
    pub enclaves: Arc<BTreeMap<EnclaveId, Arc<EnclaveSlot>>>,
    pub db: Db,
    pub api_token: Arc<Token>,
    /// `None`: the admin API is off.
    pub admin_token: Option<Arc<Token>>,
    pub credentials: Arc<CredentialSource>,
    /// `/v1/attestation` is unauthenticated and each call costs the enclave an NSM call.
    pub attestation_limit: Arc<RateLimit>,
    /// How long a deleted key stays recoverable (`keyring.deletion_waiting_days`).
    pub key_deletion_waiting_seconds: i64,
    /// The enclaves have owners (config `authorization`): a key's state is changed by signed
    /// requests and kept in its enclave-tagged policy row; the `keys` row only mirrors it.
    pub owners: bool,
    /// The rows come from a host this process does not trust (the enclave's TLS API): public
    /// keys are checked in the enclave before they are shown (`keys_api::check_keys`).
    pub check_rows: bool,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/sign", post(sign).layer(DefaultBodyLimit::max(16 * 1024)))
        .route("/v1/sign-batch", post(sign_batch).layer(DefaultBodyLimit::max(256 * 1024)))
        .route("/v1/public-key", get(public_key))
        .route("/v1/attestation", get(attestation))
        .route("/v1/health", get(health))
        .route("/v1/admin/rotate", post(rotate).layer(DefaultBodyLimit::max(4 * 1024)))
        .route("/v1/admin/keyring/rotate", post(rotate_keyring_root))
        .merge(crate::keys_api::routes())
        .merge(crate::keys_policy::routes())
        .merge(crate::keys_transfer::routes())
        .merge(crate::keys_crypt::routes())
        .merge(crate::keys_agree::routes())
        .merge(crate::audit::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this endpoint")
        })
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnclaveQuery {
    #[serde(default)]
    enclave_id: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestationQuery {
    nonce: String,
    #[serde(default)]
    enclave_id: Option<u32>,
}

/// Longest nonce a client may ask to be attested.
const MAX_NONCE_LEN: usize = 512;

async fn sign(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: SignedJson<SignBody>,
) -> Result<Json<SignResponse>, ApiError> {
    app.api_token.authorize(&headers)?;
    let auth = signed::authorization(&headers, signed::MASTER_KEYSTORE, &body.bytes)?;
    let body = body.value;
    let mut request = parse_item(&body.digest_hex, &body.scheme)?;
    request.auth = auth.map(Box::new);
    let slot = app.slot(body.enclave_id)?;
    let (public_key_hex, key_epoch) = ready_key(&slot)?;
    let link = slot.ready_link().ok_or_else(|| not_ready(&slot))?;
    let reply = match link.call(Request::Sign(request), SIGN_TIMEOUT).await.map_err(ApiError::from_link)? {
        EnclaveResponse::Signature(reply) => reply,
        other => return Err(ApiError::internal(format!("enclave answered Sign with {}", other.kind()))),
    };
    Ok(Json(SignResponse {
        enclave_id: slot.id.0,
        signature: signature_json(&reply),
        xonly_public_key_hex: xonly_hex(&public_key_hex),
        public_key_hex,
        key_epoch,
        receipt: reply.receipt.map(|r| AuditReceiptInfo { seq: r.seq, hash: r.hash }),
    }))
}

async fn sign_batch(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: SignedJson<SignBatchRequest>,
) -> Result<Json<SignBatchResponse>, ApiError> {
    app.api_token.authorize(&headers)?;
    // A signed batch is authorized as a whole: one signature over the body as sent.
    let auth = signed::authorization(&headers, signed::MASTER_KEYSTORE, &body.bytes)?;
    let body = body.value;
    if body.items.is_empty() || body.items.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "invalid_batch_size",
            format!("items must hold 1 to {MAX_BATCH} entries, got {}", body.items.len()),
        ));
    }
    let requests = body
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_item(&item.digest_hex, &item.scheme).map_err(|e| e.at_item("items", i)))
        .collect::<Result<Vec<_>, _>>()?;
    let slot = app.slot(body.enclave_id)?;
    let (public_key_hex, _) = ready_key(&slot)?;
    let link = slot.ready_link().ok_or_else(|| not_ready(&slot))?;
    let request = match auth {
        Some(auth) => Request::SignBatchSigned(Box::new(SignBatchSigned { items: requests, auth })),
        None => Request::SignBatch(requests),
    };
    let replies = match link.call(request, SIGN_TIMEOUT).await.map_err(ApiError::from_link)? {
        EnclaveResponse::Signatures(replies) => replies,
        other => return Err(ApiError::internal(format!("enclave answered SignBatch with {}", other.kind()))),
    };
    let receipt = replies.iter().find_map(|r| r.as_ref().ok().and_then(|reply| reply.receipt));
    let results = replies
        .into_iter()
        .map(|r| match r {
            Ok(reply) => BatchResult::Ok(signature_json(&reply)),
            Err(e) => BatchResult::Err { error: ApiError::from_remote(e).body() },
        })
        .collect();
    Ok(Json(SignBatchResponse {
        enclave_id: slot.id.0,
        xonly_public_key_hex: xonly_hex(&public_key_hex),
        public_key_hex,
        results,
        receipt: receipt.map(|r| AuditReceiptInfo { seq: r.seq, hash: r.hash }),
    }))
}

async fn public_key(
    State(app): State<AppState>,
    query: Result<Query<EnclaveQuery>, QueryRejection>,
) -> Result<Json<PublicKeyResponse>, ApiError> {
    let Query(query) = query.map_err(ApiError::from_query)?;
    let slot = app.slot(query.enclave_id)?;
    let (public_key_hex, key_epoch) = ready_key(&slot)?;
    Ok(Json(PublicKeyResponse {
        enclave_id: slot.id.0,
        xonly_public_key_hex: xonly_hex(&public_key_hex),
        public_key_hex,
        key_epoch,
    }))
}

/// A fresh attestation document for the client's nonce; its `user_data` is the master
/// public key. Clients verify it themselves (`keyward verify-attestation`).
async fn attestation(
    State(app): State<AppState>,
    query: Result<Query<AttestationQuery>, QueryRejection>,
) -> Result<Json<AttestationResponse>, ApiError> {
    let Query(query) = query.map_err(ApiError::from_query)?;
    if !app.attestation_limit.try_take() {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "attestation documents are limited to {} per second; retry shortly",
                app.attestation_limit.per_second()
            ),
        ));
    }
    let nonce =
        hex::decode(&query.nonce).map_err(|_| ApiError::invalid("invalid_nonce", "nonce is not valid hexadecimal"))?;
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
        return Err(ApiError::invalid(
            "invalid_nonce",
            format!("nonce must be 1 to {MAX_NONCE_LEN} bytes, got {}", nonce.len()),
        ));
    }
    let slot = app.slot(query.enclave_id)?;
    let (public_key_hex, _) = ready_key(&slot)?;
    let link = slot.ready_link().ok_or_else(|| not_ready(&slot))?;
    let request = Request::Attest(keyward_proto::AttestRequest { nonce: nonce.clone() });
    let document = match link.call(request, SIGN_TIMEOUT).await.map_err(ApiError::from_link)? {
        EnclaveResponse::Attestation(document) => document,
        other => return Err(ApiError::internal(format!("enclave answered Attest with {}", other.kind()))),
    };
    Ok(Json(AttestationResponse {
        enclave_id: slot.id.0,
        document_b64: base64::engine::general_purpose::STANDARD.encode(document),
        public_key_hex,
        nonce_hex: hex::encode(nonce),
    }))
}

/// Data-key rotation (admin token).
async fn rotate(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RotateRequest>, JsonRejection>,
) -> Result<Json<RotateResponse>, ApiError> {
    app.authorize_admin(&headers)?;
    let Json(body) = body.map_err(ApiError::from_json)?;
    let slot = app.slot(body.enclave_id)?;
    let rotated = slot.rotate(&app.db, &app.credentials).await.map_err(|e| ApiError::from_rotation(&e, slot.id))?;
    tracing::info!(enclave_id = %slot.id, previous = rotated.previous_epoch, key_epoch = rotated.epoch, "data key rotated");
    Ok(Json(RotateResponse {
        enclave_id: slot.id.0,
        public_key_hex: rotated.public_key_hex,
        previous_key_epoch: rotated.previous_epoch,
        key_epoch: rotated.epoch,
    }))
}

/// Keyring root rotation (admin token): a new data key for the same root, `root_epoch + 1`.
async fn rotate_keyring_root(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<keyward_admission::keyring::RootRotated>, ApiError> {
    app.authorize_admin(&headers)?;
    let (slot, link) =
        app.enclaves.values().find_map(|slot| slot.keyring_link().map(|link| (slot.clone(), link))).ok_or_else(
            || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "keyring_not_ready", "no enclave has its keyring ready"),
        )?;
    let rotated = slot.rotate_root(&link, &app.db, &app.credentials).await.map_err(|p| {
        let status = match p.code {
            "rotation_conflict" => StatusCode::CONFLICT,
            "keyring_not_ready" | "database_unavailable" | "database_busy" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, p.code, format!("keyring root rotation: {}", p.detail))
    })?;
    tracing::info!(previous = rotated.previous_root_epoch, root_epoch = rotated.root_epoch, "keyring root rotated");
    Ok(Json(rotated))
}

/// `/v1/health?outage=serve`: a node that serves the keys in use through a database outage
/// answers 200 (docs/operations.md, "When the database fails").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthQuery {
    outage: Option<OutageAnswer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OutageAnswer {
    Serve,
}

/// The longest the health check waits for the database: a load balancer's check gives up
/// after a few seconds, and a server that does not answer is as away as one that refuses.
const HEALTH_DATABASE_WAIT: Duration = Duration::from_secs(2);

async fn health(
    State(app): State<AppState>,
    query: Result<Query<HealthQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(ApiError::from_query)?;
    let enclaves: Vec<_> = app.enclaves.values().map(|slot| slot.health()).collect();
    // Codes only: this endpoint is unauthenticated, and the errors name paths.
    let database = match tokio::time::timeout(HEALTH_DATABASE_WAIT, app.db.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: database check failed");
            e.code()
        }
        Err(_) => {
            tracing::warn!("health: the database did not answer within {} s", HEALTH_DATABASE_WAIT.as_secs());
            "database_unavailable"
        }
    };
    let all_ready = enclaves.iter().all(|h| h.state == Phase::Ready);
    let serving = database != "ok" && keyward_admission::is_outage(database) && app.db.serves_through_outage();
    let (status, code) = health_status(all_ready, database, serving, query.outage == Some(OutageAnswer::Serve));
    let body = serde_json::json!({
        "status": status,
        "database": database,
        "enclaves": enclaves,
    });
    Ok((code, Json(body)).into_response())
}

/// The health answer: `ok`; `database_outage` when the enclaves are ready and the keys in use
/// are served through an unreachable database (200 only when the check asked for it); else
/// `degraded`, 503.
fn health_status(all_ready: bool, database: &str, serving: bool, outage_serves: bool) -> (&'static str, StatusCode) {
    match (all_ready, database) {
        (true, "ok") => ("ok", StatusCode::OK),
        (true, _) if serving && outage_serves => ("database_outage", StatusCode::OK),
        (true, _) if serving => ("database_outage", StatusCode::SERVICE_UNAVAILABLE),
        _ => ("degraded", StatusCode::SERVICE_UNAVAILABLE),
    }
}

impl AppState {
    /// Checks the admin token; `admin_disabled` (404) when no admin token is configured.
    pub(crate) fn authorize_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(admin) = &self.admin_token else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "admin_disabled",
                "the admin API is off (no server.admin_token_file)",
            ));
        };
        admin.authorize(headers)
    }

    /// The API token, or the admin token (reads that administrators need too, such as the
    /// policy version a signed state change names, or the key version a rotation makes).
    pub(crate) fn authorize_reader(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match self.api_token.authorize(headers) {
            Ok(()) => Ok(()),
            Err(e) => match &self.admin_token {
                Some(admin) if admin.authorize(headers).is_ok() => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// The enclave a request addresses: the given id, or the only one configured.
    pub(crate) fn slot(&self, enclave_id: Option<u32>) -> Result<Arc<EnclaveSlot>, ApiError> {
        match enclave_id {
            Some(id) => self.enclaves.get(&EnclaveId(id)).cloned().ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_enclave", format!("no enclave {id} is configured"))
            }),
            None if self.enclaves.len() == 1 => {
                Ok(self.enclaves.values().next().cloned().ok_or_else(|| ApiError::internal("no enclaves"))?)
            }
            None => {
                Err(ApiError::invalid("enclave_id_required", "enclave_id is required: several enclaves are configured"))
            }
        }
    }
}

fn parse_item(digest_hex: &str, scheme: &str) -> Result<SignRequest, ApiError> {
    let scheme = match scheme {
        "ecdsa" => Scheme::Ecdsa,
        "bip340" => Scheme::Bip340,
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(ApiError::invalid(
                "unknown_scheme",
                format!("unknown scheme {shown:?}: use \"ecdsa\" or \"bip340\""),
            ));
        }
    };
    if digest_hex.len() != 64 {
        return Err(ApiError::invalid(
            "invalid_digest",
            format!("digest_hex must be 64 hex characters (a 32-byte digest), got {}", digest_hex.len()),
        ));
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(digest_hex, &mut digest)
        .map_err(|_| ApiError::invalid("invalid_digest", "digest_hex is not valid hexadecimal"))?;
    Ok(SignRequest { digest: Digest(digest), scheme, auth: None })
}

fn ready_key(slot: &EnclaveSlot) -> Result<(String, Option<u32>), ApiError> {
    let health = slot.health();
    match (health.state, health.public_key_hex) {
        (Phase::Ready, Some(public_key_hex)) => Ok((public_key_hex, health.key_epoch)),
        _ => Err(not_ready(slot)),
    }
}

/// The reason (a code) but not the details, which stay in the gateway's log: they can name
/// accounts, roles, PCRs and paths.
fn not_ready(slot: &EnclaveSlot) -> ApiError {
    let health = slot.health();
    let reason = health.code.map(|c| format!(" ({c})")).unwrap_or_default();
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "enclave_not_ready",
        format!("enclave {} is {}{reason}; the gateway log has the details", slot.id, health.state.as_str()),
    )
}

fn signature_json(reply: &SignatureReply) -> SignatureJson {
    SignatureJson {
        scheme: reply.scheme.as_str().to_owned(),
        signature_hex: hex::encode(reply.signature),
        recovery_id: reply.recovery_id,
    }
}

/// The BIP340 x-only key is the compressed key without its parity byte.
fn xonly_hex(public_key_hex: &str) -> String {
    public_key_hex.get(2..).unwrap_or_default().to_owned()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.body() }))).into_response()
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn a_node_stays_behind_a_load_balancer_through_an_outage_only_when_the_check_asks() {
        let unavailable = "database_unavailable";
        assert_eq!(health_status(true, "ok", false, false), ("ok", StatusCode::OK));
        assert_eq!(health_status(true, unavailable, true, true), ("database_outage", StatusCode::OK));
        let by_default = health_status(true, unavailable, true, false);
        assert_eq!(by_default, ("database_outage", StatusCode::SERVICE_UNAVAILABLE));
        // Nothing to serve (grace passed or off, SQLite), enclaves not ready: degraded.
        assert_eq!(health_status(true, unavailable, false, true), ("degraded", StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(health_status(false, unavailable, true, true), ("degraded", StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(health_status(false, "ok", false, true), ("degraded", StatusCode::SERVICE_UNAVAILABLE));
    }
}

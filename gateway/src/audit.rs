//! `GET /v1/admin/audit`: the enclave's audit records, a page at a time, for `keyward audit
//! export`. The gateway relays them; it cannot forge or edit one without `keyward audit verify`
//! noticing (docs/authorization.md).

use axum::{
    Json, Router,
    extract::{Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode},
    routing::get,
};
use keyward_client::audit::{AuditLine, AuditPage};
use keyward_proto::{AuditRead, AuditRecord, Request, Response};
use serde::Deserialize;

use crate::{api::AppState, errors::ApiError, keys_api::KEY_TIMEOUT, link::unexpected_reply};

/// Records one page holds at most (the enclave's own limit per `AuditRead`).
const PAGE: u32 = 1_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/admin/audit", get(audit))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    enclave_id: Option<u32>,
    #[serde(default)]
    after: u64,
}

fn line(r: AuditRecord) -> AuditLine {
    AuditLine {
        seq: r.seq,
        time: r.time,
        principal: r.principal.map(hex::encode),
        operation: r.operation,
        keystore: r.keystore,
        key: r.key,
        version: r.version,
        outcome: r.outcome,
        request_digest: hex::encode(r.request_digest),
        prev_hash: hex::encode(r.prev_hash),
        hash: hex::encode(r.hash),
        signature: hex::encode(r.signature),
    }
}

async fn audit(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    app.authorize_admin(&headers)?;
    let Query(query) = query.map_err(ApiError::from_query)?;
    let slot = app.slot(query.enclave_id)?;
    let audit_public_key_hex = slot.health().audit_public_key_hex.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_audit_log",
            format!("enclave {} has no owners, so it keeps no audit chain", slot.id.0),
        )
    })?;
    let link = slot.ready_link().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "enclave_not_ready", "the enclave is not connected")
    })?;
    let request = Request::AuditRead(AuditRead { after: query.after, max: PAGE });
    match link.call(request, KEY_TIMEOUT).await.map_err(ApiError::from_link)? {
        Response::AuditRecords(records) => {
            Ok(Json(AuditPage { audit_public_key_hex, records: records.into_iter().map(line).collect() }))
        }
        other => Err(ApiError::from_link(unexpected_reply("AuditRead", &other))),
    }
}

//! The enclaves' audit records, kept in the database. Each enclave signs its own chain under an
//! audit key born at its start; while its link is up the gateway fetches new records every
//! second (and before every export) and appends them to `audit_records`, so a chain outlives
//! the enclave that signed it. `GET /v1/admin/audit` pages through a stored chain (the current
//! one by default) and `GET /v1/admin/audit/chains` lists them. The gateway can neither forge
//! nor edit a record without `keyward audit verify` noticing (docs/authorization.md).

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode},
    routing::get,
};
use keyward_admission::{Db, keyring::now_unix};
use keyward_client::audit::{AuditChainInfo, AuditChains, AuditLine, AuditPage};
use keyward_proto::{AuditRead, AuditRecord, Request, Response};
use keyward_store::AuditRow;
use keyward_telemetry::event;
use serde::Deserialize;

use crate::{
    api::AppState,
    enclaves::EnclaveSlot,
    errors::ApiError,
    keys_api::{KEY_TIMEOUT, store_error},
    link::{EnclaveLink, unexpected_reply},
};

/// Records one page holds at most (the enclave's own limit per `AuditRead`).
const PAGE: u32 = 1_000;
/// How often the gateway fetches new records from a connected enclave.
pub const COLLECT_EVERY: Duration = Duration::from_secs(1);

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/admin/audit", get(audit)).route("/v1/admin/audit/chains", get(chains))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    enclave_id: Option<u32>,
    #[serde(default)]
    after: u64,
    /// A stored chain's audit key (hex); default: the enclave's current one.
    #[serde(default)]
    chain: Option<String>,
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

/// Why records could not be collected.
#[derive(Debug)]
pub enum CollectError {
    Link(crate::link::LinkError),
    Store(keyward_store::StoreError),
    Reply(String),
}

impl std::fmt::Display for CollectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CollectError::Link(e) => write!(f, "fetching audit records: {e}"),
            CollectError::Store(e) => write!(f, "storing audit records: {e}"),
            CollectError::Reply(e) => write!(f, "fetching audit records: {e}"),
        }
    }
}

/// Fetches the records of chain `audit_key` the enclave made after the last one stored, and
/// stores them; returns how many were new. Records the enclave no longer holds (it keeps the
/// latest 100,000) are reported, never invented.
pub async fn collect(db: &Db, slot: &EnclaveSlot, link: &EnclaveLink, audit_key: &[u8]) -> Result<usize, CollectError> {
    let mut new = 0;
    loop {
        let stored = db.audit_last_seq(audit_key.to_vec()).await.map_err(CollectError::Store)?;
        let after = u64::try_from(stored.unwrap_or(0)).unwrap_or(0);
        let request = Request::AuditRead(AuditRead { after, max: PAGE });
        let records = match link.call(request, KEY_TIMEOUT).await.map_err(CollectError::Link)? {
            Response::AuditRecords(records) => records,
            other => return Err(CollectError::Reply(unexpected_reply("AuditRead", &other).to_string())),
        };
        let Some(first) = records.first() else { return Ok(new) };
        if first.seq != after + 1 {
            tracing::error!(
                event = event::AUDIT_STORE_FAILED,
                enclave_id = %slot.id,
                code = "audit_records_lost",
                "audit records {} to {} were no longer held by the enclave when the gateway fetched them",
                after + 1,
                first.seq - 1
            );
        }
        let full = records.len() == PAGE as usize;
        let now = now_unix();
        let mut rows = Vec::with_capacity(records.len());
        for record in records {
            let seq =
                i64::try_from(record.seq).map_err(|_| CollectError::Reply("sequence number out of range".into()))?;
            let text = serde_json::to_string(&line(record)).map_err(|e| CollectError::Reply(e.to_string()))?;
            rows.push(AuditRow {
                audit_key: audit_key.to_vec(),
                seq,
                enclave_id: i64::from(slot.id.0),
                line: text,
                stored_at: now,
            });
        }
        new += db.insert_audit(rows).await.map_err(CollectError::Store)?;
        if !full {
            return Ok(new);
        }
    }
}

/// Collects every [`COLLECT_EVERY`] while `link` is up (the supervisor stops it with the link).
pub async fn keep_collecting(db: &Db, slot: &EnclaveSlot, link: &EnclaveLink, audit_key: Vec<u8>) {
    let mut failing = false;
    loop {
        match collect(db, slot, link, &audit_key).await {
            Ok(_) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::error!(event = event::AUDIT_STORE_FAILED, enclave_id = %slot.id, code = "audit_collect_failed", "{e}");
            }
            Err(_) => {}
        }
        tokio::time::sleep(COLLECT_EVERY).await;
    }
}

fn hex_key(text: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(text)
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| ApiError::invalid("bad_request", "chain is an audit key: 64 hex digits"))
}

async fn audit(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    app.authorize_admin(&headers)?;
    let Query(query) = query.map_err(ApiError::from_query)?;
    let slot = app.slot(query.enclave_id)?;
    let current = slot.health().audit_public_key_hex;
    let chain = match (query.chain.as_deref(), current.as_deref()) {
        (Some(chain), _) => chain.to_ascii_lowercase(),
        (None, Some(current)) => current.to_owned(),
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_audit_log",
                format!(
                    "enclave {} has no owners, so it keeps no audit chain; name a stored one with chain=",
                    slot.id.0
                ),
            ));
        }
    };
    let key = hex_key(&chain)?;
    // The current chain: first what the enclave made since the last fetch.
    if current.as_deref() == Some(chain.as_str()) {
        let link = slot.ready_link().ok_or_else(|| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "enclave_not_ready", "the enclave is not connected")
        })?;
        // The link must be the one of the enclave that reported this chain: a reconnect in
        // between starts another chain (the supervisor records the key before the link).
        if slot.health().audit_public_key_hex.as_deref() != Some(chain.as_str()) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "enclave_not_ready",
                "the enclave reconnected during the request (a new audit chain): ask again",
            ));
        }
        collect(&app.db, &slot, &link, &key).await.map_err(|e| match e {
            CollectError::Link(e) => ApiError::from_link(e),
            CollectError::Store(e) => store_error(e),
            CollectError::Reply(e) => ApiError::internal(e),
        })?;
    }
    let after = i64::try_from(query.after).unwrap_or(i64::MAX);
    let rows = app.db.audit_page(key, after, PAGE).await.map_err(store_error)?;
    if rows.is_empty() && query.after == 0 && current.as_deref() != Some(chain.as_str()) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "audit_chain_not_found", format!("no stored chain {chain}")));
    }
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        // A line the host damaged beyond JSON: named here; one still JSON, by `audit verify`.
        let parsed = serde_json::from_str(&row.line).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit_record_damaged",
                format!("stored audit record {} of chain {chain} is not a record: {e}", row.seq),
            )
        })?;
        records.push(parsed);
    }
    Ok(Json(AuditPage { audit_public_key_hex: chain, records }))
}

async fn chains(State(app): State<AppState>, headers: HeaderMap) -> Result<Json<AuditChains>, ApiError> {
    app.authorize_admin(&headers)?;
    let current: Vec<String> = app.enclaves.values().filter_map(|s| s.health().audit_public_key_hex).collect();
    let rows = app.db.audit_chains().await.map_err(store_error)?;
    let chains = rows
        .into_iter()
        .map(|c| {
            let audit_public_key_hex = hex::encode(&c.audit_key);
            AuditChainInfo {
                current: current.contains(&audit_public_key_hex),
                audit_public_key_hex,
                enclave_id: u32::try_from(c.enclave_id).unwrap_or(0),
                first_seq: u64::try_from(c.first_seq).unwrap_or(0),
                last_seq: u64::try_from(c.last_seq).unwrap_or(0),
                records: u64::try_from(c.records).unwrap_or(0),
                first_stored_at: c.first_stored_at,
            }
        })
        .collect();
    Ok(Json(AuditChains { chains }))
}

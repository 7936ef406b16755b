//! `keyward-devkms serve`: the attesting dev KMS. An HTTP front on loopback that speaks the
//! KMS JSON protocol, answers `GenerateDataKey`, `Decrypt` and `GenerateRandom` as real KMS
//! does for attested enclaves (see [`crate::operations`]), holds the operations that could get
//! around the attestation gate to the key policy as well (see [`crate::gated`]), and passes
//! every other operation to the emulator unchanged.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use keyward_attest::RootCertificate;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::error::ProxyError;
use crate::gated;
use crate::operations::{self, AttestedOperation, Outcome};
use crate::upstream::Upstream;

/// Longest request body read. KMS requests are small; the largest, a Decrypt with a Recipient,
/// stays under 30 KiB.
pub const MAX_REQUEST_LEN: usize = 1024 * 1024;

/// What the proxy needs for every request.
#[derive(Debug)]
pub struct Proxy {
    upstream: Upstream,
    root: RootCertificate,
}

impl Proxy {
    /// A proxy in front of `upstream` that trusts attestation documents under `root` (the mock
    /// NSM's development root).
    pub fn new(upstream: Upstream, root: RootCertificate) -> Self {
        Self { upstream, root }
    }
}

/// Binds `listen`, which must be a loopback address: the proxy hands out data keys to anyone
/// who can reach it and authenticates nobody.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    if !listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {listen}: the dev KMS proxy authenticates no one and only listens on loopback (127.0.0.1 or ::1)"
        );
    }
    TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))
}

/// The HTTP routes: every path and method reaches [`handle`], which accepts only the KMS JSON
/// protocol.
pub fn router(proxy: Arc<Proxy>) -> Router {
    Router::new().fallback(handle).with_state(proxy)
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router(proxy)).with_graceful_shutdown(shutdown).await.context("serving")
}

async fn handle(State(proxy): State<Arc<Proxy>>, method: Method, headers: HeaderMap, body: Body) -> Response {
    let operation = match kms_operation(&method, &headers) {
        Ok(operation) => operation,
        Err(error) => {
            tracing::info!(event = keyward_telemetry::event::KMS_REQUEST, %method, decision = "denied", reason = %error, "not a KMS JSON request");
            return error.into_response();
        }
    };
    let body = match axum::body::to_bytes(body, MAX_REQUEST_LEN).await {
        Ok(body) => body,
        Err(_) => {
            let error = ProxyError::TooLarge { max: MAX_REQUEST_LEN };
            tracing::info!(event = keyward_telemetry::event::KMS_REQUEST, operation, decision = "denied", reason = %error, "request");
            return error.into_response();
        }
    };
    let outcome = if let Some(attested) = AttestedOperation::from_name(&operation) {
        operations::handle(&proxy.upstream, &proxy.root, attested, &headers, &body).await
    } else if let Some((name, checks)) = gated::checks_for(&operation) {
        gated::handle(&proxy.upstream, name, checks, &headers, &body).await
    } else {
        pass_through(&proxy.upstream, &operation, &headers, &body).await
    };
    // Never the bodies: they hold data keys, CiphertextForRecipient and attestation documents.
    tracing::info!(
        event = keyward_telemetry::event::KMS_REQUEST,
        operation,
        key = outcome.key.as_deref().unwrap_or("-"),
        decision = outcome.decision,
        reason = %outcome.reason,
        "request"
    );
    outcome.response
}

/// The operation of a KMS JSON protocol request: `POST` with exactly one
/// `X-Amz-Target: TrentService.<Operation>`. Anything else is refused rather than passed on, so
/// no other protocol the emulator might understand can reach it around the policy check.
fn kms_operation(method: &Method, headers: &HeaderMap) -> Result<String, ProxyError> {
    let refuse = |what: &str| {
        ProxyError::NotKmsJson(format!(
            "{what}; the dev KMS proxy only takes KMS JSON protocol requests (POST with X-Amz-Target: TrentService.<Operation>)"
        ))
    };
    if method != Method::POST {
        return Err(refuse(&format!("method {method}")));
    }
    let mut targets = headers.get_all("x-amz-target").iter();
    let (Some(target), None) = (targets.next(), targets.next()) else {
        return Err(refuse("no single X-Amz-Target header"));
    };
    let operation = target
        .to_str()
        .ok()
        .and_then(|t| t.strip_prefix("TrentService."))
        .filter(|op| !op.is_empty() && op.len() <= 64 && op.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| refuse("X-Amz-Target is not TrentService.<Operation>"))?;
    Ok(operation.to_owned())
}

/// Any operation but the attested three: passed to the emulator unchanged.
async fn pass_through(upstream: &Upstream, operation: &str, headers: &HeaderMap, body: &[u8]) -> Outcome {
    // For the log line only.
    let key = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("KeyId").and_then(Value::as_str).map(str::to_owned));
    match upstream.send(operation, headers, body.to_vec()).await {
        Ok(reply) => {
            let reason = format!("upstream answered HTTP {}", reply.status.as_u16());
            Outcome { response: operations::pass_on(reply), key, decision: "passed through", reason }
        }
        Err(e) => {
            let error = ProxyError::Internal(format!("upstream KMS unreachable: {e:#}"));
            Outcome { reason: error.to_string(), response: error.into_response(), key, decision: "denied" }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    fn headers(targets: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for target in targets {
            headers.append("x-amz-target", target.parse().unwrap());
        }
        headers
    }

    #[test]
    fn kms_operation_takes_the_operation_from_a_single_trent_service_target() {
        assert_eq!(kms_operation(&Method::POST, &headers(&["TrentService.ListKeys"])).unwrap(), "ListKeys");
    }

    #[test]
    fn kms_operation_refuses_other_protocols_methods_and_ambiguous_targets() {
        let cases: [(Method, &[&str]); 7] = [
            (Method::GET, &["TrentService.ListKeys"]),
            (Method::POST, &[]),
            (Method::POST, &["TrentService.ListKeys", "TrentService.Decrypt"]),
            (Method::POST, &["Logs_20140328.PutLogEvents"]),
            (Method::POST, &["TrentService."]),
            (Method::POST, &["TrentService.List/Keys"]),
            (Method::POST, &["trentservice.Decrypt"]),
        ];
        for (method, targets) in cases {
            let error = kms_operation(&method, &headers(targets)).unwrap_err();
            assert_eq!(error.code(), "UnknownOperationException", "{method} {targets:?}");
        }
    }

    #[test]
    fn attested_operations_are_recognised_in_any_case() {
        assert_eq!(AttestedOperation::from_name("decrypt"), Some(AttestedOperation::Decrypt));
        assert_eq!(AttestedOperation::from_name("GENERATEDATAKEY"), Some(AttestedOperation::GenerateDataKey));
        assert_eq!(AttestedOperation::from_name("GenerateDataKeyWithoutPlaintext"), None);
    }

    #[tokio::test]
    async fn bind_refuses_addresses_other_than_loopback() {
        let error = bind("0.0.0.0:0".parse().unwrap()).await.unwrap_err();
        assert!(error.to_string().contains("only listens on loopback"), "{error}");
        assert!(bind("127.0.0.1:0".parse().unwrap()).await.is_ok());
    }
}

//! Operations without special Recipient handling that still answer to the key policy, because
//! a caller could otherwise get around the attestation gate with them: `ReEncrypt` (re-wrap a
//! data key under a key whose policy lets the caller decrypt) and the data-key variants the
//! generated policy denies with `kms:GenerateDataKey*`.
//!
//! None of them changes state, so, as for the attested operations, the request goes upstream
//! first (which resolves the keys) and the answer is dropped when the policy denies it.

use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::ProxyError;
use crate::operations::{self, Outcome};
use crate::policy::{ConditionContext, Decision};
use crate::upstream::Upstream;

/// The gated operations, and for each the `(action, answer field naming the key)` pairs the
/// policy is checked for.
const GATED: [(&str, &[(&str, &str)]); 4] = [
    ("ReEncrypt", &[("kms:ReEncryptFrom", "SourceKeyId"), ("kms:ReEncryptTo", "KeyId")]),
    ("GenerateDataKeyWithoutPlaintext", &[("kms:GenerateDataKeyWithoutPlaintext", "KeyId")]),
    ("GenerateDataKeyPair", &[("kms:GenerateDataKeyPair", "KeyId")]),
    ("GenerateDataKeyPairWithoutPlaintext", &[("kms:GenerateDataKeyPairWithoutPlaintext", "KeyId")]),
];

/// The canonical name and checks of `operation` if it is gated (whatever its case).
pub fn checks_for(operation: &str) -> Option<(&'static str, &'static [(&'static str, &'static str)])> {
    GATED.iter().find(|(name, _)| name.eq_ignore_ascii_case(operation)).copied()
}

/// Forwards a gated operation and releases the answer only if the key policy allows every
/// check.
pub async fn handle(
    upstream: &Upstream,
    operation: &'static str,
    checks: &[(&str, &str)],
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
    let refused = |error: ProxyError, key: Option<String>| Outcome {
        reason: format!("{}: {error}", error.code()),
        response: error.into_response(),
        key,
        decision: "denied",
    };
    let request: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => map,
        _ => {
            return refused(ProxyError::Serialization(format!("{operation} body is not a JSON object")), None);
        }
    };
    // Real KMS encrypts GenerateDataKeyPair's private key to a Recipient; the emulator would
    // hand it out in the clear instead, so such requests are refused rather than passed on.
    if request.get("Recipient").is_some_and(|r| !r.is_null()) {
        let error = ProxyError::Validation(format!("the dev KMS proxy does not support Recipient for {operation}"));
        return refused(error, None);
    }
    let reply = match upstream.send(operation, headers, body.to_vec()).await {
        Ok(reply) => reply,
        Err(e) => {
            return refused(ProxyError::Internal(format!("upstream KMS unreachable: {e:#}")), None);
        }
    };
    let requested = request.get("KeyId").and_then(Value::as_str).map(str::to_owned);
    if !reply.is_success() {
        let reason = format!("upstream answered HTTP {}", reply.status.as_u16());
        return Outcome { response: operations::pass_on(reply), key: requested, decision: "upstream error", reason };
    }
    let mut answer: Map<String, Value> = match serde_json::from_slice(&reply.body) {
        Ok(Value::Object(map)) => map,
        _ => {
            let error = ProxyError::Internal(format!("upstream {operation} answer is not a JSON object"));
            return refused(error, None);
        }
    };
    // Only the key names are needed from the parsed answer; a generated private key in it is
    // wiped at once (the reply's own buffer is zeroized when it is dropped).
    if let Some(Value::String(private_key)) = answer.remove("PrivateKeyPlaintext") {
        drop(Zeroizing::new(private_key));
    }
    let field_of = |field: &str| answer.get(field).and_then(Value::as_str).map(str::to_owned);
    let key = field_of("KeyId");
    let mut reasons = Vec::new();
    for (action, field) in checks {
        let Some(checked_key) = field_of(field) else {
            let error = ProxyError::Internal(format!("upstream {operation} answer has no {field}"));
            return refused(error, requested);
        };
        match operations::decide(upstream, headers, &checked_key, action, &ConditionContext::new()).await {
            Decision::Allow(reason) => reasons.push(reason),
            Decision::Deny(reason) => {
                return refused(ProxyError::AccessDenied(reason), Some(checked_key));
            }
        }
    }
    Outcome { response: operations::pass_on(reply), key, decision: "allowed", reason: reasons.join("; ") }
}

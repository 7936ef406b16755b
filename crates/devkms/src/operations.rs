//! The three operations KMS treats specially when they carry a `Recipient`:
//! `GenerateDataKey`, `Decrypt` and `GenerateRandom`.
//!
//! The request goes upstream without its `Recipient` first, because the emulator's answer says
//! which key was used (it resolves aliases, ARNs, and for `Decrypt` the key inside the
//! ciphertext). Nothing of that answer leaves the proxy until the key policy has been
//! evaluated; a denied answer is zeroized and replaced by `AccessDeniedException`. An allowed
//! Recipient call is answered like real KMS: the plaintext encrypted to the attested RSA key as
//! `CiphertextForRecipient`, and no `Plaintext`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyward_attest::{MAX_DOCUMENT_LEN, RootCertificate, UnixTime, VerifyOptions, verify};
use keyward_kms::cms::encrypt_for_recipient;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::ProxyError;
use crate::policy::{self, ConditionContext, Decision};
use crate::upstream::{Reply, Upstream};

/// The only key encryption algorithm KMS offers for Recipient calls.
const RSAES_OAEP_SHA_256: &str = "RSAES_OAEP_SHA_256";

/// An operation that may carry a `Recipient`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestedOperation {
    GenerateDataKey,
    Decrypt,
    GenerateRandom,
}

impl AttestedOperation {
    /// Recognises the operation whatever its case, so a differently spelled target can never
    /// slip past the policy check (the emulator refuses such spellings, but that is its
    /// business, not something to rely on).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::GenerateDataKey, Self::Decrypt, Self::GenerateRandom]
            .into_iter()
            .find(|op| op.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::GenerateDataKey => "GenerateDataKey",
            Self::Decrypt => "Decrypt",
            Self::GenerateRandom => "GenerateRandom",
        }
    }

    fn action(self) -> String {
        format!("kms:{}", self.name())
    }
}

/// A Recipient whose attestation document verified: the condition keys it yields and the RSA
/// key to encrypt the answer to.
struct Recipient {
    context: ConditionContext,
    public_key: Vec<u8>,
}

/// What happened, for the request's log line.
#[derive(Debug)]
pub struct Outcome {
    pub response: Response,
    /// The key ARN the decision was about, when there was one.
    pub key: Option<String>,
    /// `allowed`, `denied`, `upstream error` or (other operations) `passed through`.
    pub decision: &'static str,
    /// Why.
    pub reason: String,
}

impl Outcome {
    fn refused(error: ProxyError, key: Option<String>) -> Self {
        let reason = format!("{}: {error}", error.code());
        Self { response: error.into_response(), key, decision: "denied", reason }
    }
}

/// Handles one attested-operation request whose body is `body`.
pub async fn handle(
    upstream: &Upstream,
    root: &RootCertificate,
    operation: AttestedOperation,
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
    let mut request = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => {
            let error = ProxyError::Serialization(format!("{} body is not a JSON object", operation.name()));
            return Outcome::refused(error, None);
        }
    };
    let recipient = match request.remove("Recipient") {
        None | Some(Value::Null) => None,
        Some(value) => match verify_recipient(&value, root) {
            Ok(recipient) => Some(recipient),
            Err(error) => return Outcome::refused(error, requested_key(&request)),
        },
    };

    let forwarded = match serde_json::to_vec(&request) {
        Ok(bytes) => bytes,
        Err(e) => {
            return Outcome::refused(ProxyError::Internal(format!("re-encoding the request: {e}")), None);
        }
    };
    let reply = match upstream.send(operation.name(), headers, forwarded).await {
        Ok(reply) => reply,
        Err(e) => {
            return Outcome::refused(ProxyError::Internal(format!("upstream KMS unreachable: {e:#}")), None);
        }
    };
    if !reply.is_success() {
        let reason = format!("upstream answered HTTP {}", reply.status.as_u16());
        let key = requested_key(&request);
        return Outcome { response: pass_on(reply), key, decision: "upstream error", reason };
    }
    let mut answer: Map<String, Value> = match serde_json::from_slice(&reply.body) {
        Ok(Value::Object(map)) => map,
        _ => {
            let error = ProxyError::Internal(format!("upstream {} answer is not a JSON object", operation.name()));
            return Outcome::refused(error, None);
        }
    };

    let context = recipient.as_ref().map(|r| r.context.clone()).unwrap_or_default();
    let (key, decision) = match operation {
        // GenerateRandom acts on no key, so no key policy governs it (real KMS consults IAM
        // policies only, which the emulator does not have). A Recipient still has to verify.
        AttestedOperation::GenerateRandom => {
            (None, Decision::Allow("GenerateRandom uses no key, so no key policy applies".into()))
        }
        _ => {
            let Some(key) = answer.get("KeyId").and_then(Value::as_str).map(str::to_owned) else {
                wipe_plaintext(&mut answer);
                let error = ProxyError::Internal(format!("upstream {} answer has no KeyId", operation.name()));
                return Outcome::refused(error, None);
            };
            let decision = decide(upstream, headers, &key, &operation.action(), &context).await;
            (Some(key), decision)
        }
    };
    if let Decision::Deny(reason) = decision {
        wipe_plaintext(&mut answer);
        return Outcome::refused(ProxyError::AccessDenied(reason), key);
    }
    let response = match &recipient {
        // Without a Recipient the caller gets what upstream said, byte for byte.
        None => {
            wipe_plaintext(&mut answer);
            pass_on(reply)
        }
        Some(recipient) => match answer_for_recipient(operation, &mut answer, recipient) {
            Ok(body) => json_response(body, &reply),
            Err(error) => return Outcome::refused(error, key),
        },
    };
    Outcome { response, key, decision: "allowed", reason: decision.reason().to_owned() }
}

/// Checks a `Recipient` parameter the way KMS does: a valid attestation document under the
/// pinned root, at this moment, carrying an RSA public key.
fn verify_recipient(value: &Value, root: &RootCertificate) -> Result<Recipient, ProxyError> {
    let fields = value.as_object().ok_or_else(|| ProxyError::Serialization("Recipient is not an object".into()))?;
    match fields.get("KeyEncryptionAlgorithm") {
        // The API marks the field optional, with this single value.
        None => {}
        Some(Value::String(algorithm)) if algorithm == RSAES_OAEP_SHA_256 => {}
        Some(other) => {
            return Err(ProxyError::Validation(format!(
                "Recipient.KeyEncryptionAlgorithm is {other}; the only supported value is {RSAES_OAEP_SHA_256}"
            )));
        }
    }
    let encoded = fields
        .get("AttestationDocument")
        .and_then(Value::as_str)
        .ok_or_else(|| ProxyError::Validation("Recipient has no AttestationDocument".into()))?;
    // Bound the decoding work by the verifier's own limit (base64 is 4 characters per 3 bytes).
    if encoded.len() > MAX_DOCUMENT_LEN.div_ceil(3) * 4 {
        return Err(ProxyError::Validation(format!(
            "Recipient.AttestationDocument is longer than the {MAX_DOCUMENT_LEN}-byte limit of an attestation document"
        )));
    }
    let document = BASE64
        .decode(encoded)
        .map_err(|e| ProxyError::Serialization(format!("Recipient.AttestationDocument is not base64: {e}")))?;
    let verified = verify(&document, &VerifyOptions::new(root.clone(), UnixTime::now()))
        .map_err(|e| ProxyError::AccessDenied(format!("Recipient attestation document is not valid: {e}")))?;
    let payload = verified.payload();
    let public_key = payload
        .public_key()
        .ok_or_else(|| {
            ProxyError::Validation("Recipient attestation document has no public_key to encrypt the answer to".into())
        })?
        .to_vec();
    // Refuse an unusable key now rather than after upstream has made a data key.
    encrypt_for_recipient(&[], &public_key)
        .map_err(|e| ProxyError::Validation(format!("Recipient attestation document public_key is not usable: {e}")))?;
    let context = ConditionContext::for_recipient(payload.pcrs().iter().map(|(&index, pcr)| (index, pcr.as_bytes())));
    Ok(Recipient { context, public_key })
}

/// Reads the key policy of `key` from upstream and evaluates `action` under it; a policy that
/// cannot be read denies.
pub(crate) async fn decide(
    upstream: &Upstream,
    headers: &HeaderMap,
    key: &str,
    action: &str,
    context: &ConditionContext,
) -> Decision {
    // LocalStack, unlike KMS, has no default for PolicyName.
    let request = serde_json::json!({ "KeyId": key, "PolicyName": "default" });
    let policy = match upstream.call_as("GetKeyPolicy", &request, headers).await {
        Ok(Ok(answer)) => answer.get("Policy").and_then(Value::as_str).map(str::to_owned),
        Ok(Err(e)) => {
            return Decision::Deny(format!("the key policy of {key} could not be read ({}: {})", e.code(), e.body));
        }
        Err(e) => {
            return Decision::Deny(format!("the key policy of {key} could not be read: {e:#}"));
        }
    };
    match policy {
        Some(policy) => policy::evaluate(&policy, &policy::Request { action, resource: key, context }),
        None => Decision::Deny(format!("GetKeyPolicy for {key} returned no Policy")),
    }
}

/// The answer real KMS gives to a Recipient call: the plaintext only inside
/// `CiphertextForRecipient`.
fn answer_for_recipient(
    operation: AttestedOperation,
    upstream_answer: &mut Map<String, Value>,
    recipient: &Recipient,
) -> Result<Vec<u8>, ProxyError> {
    let plaintext = take_plaintext(upstream_answer)
        .ok_or_else(|| ProxyError::Internal(format!("upstream {} answer has no base64 Plaintext", operation.name())))?;
    let for_recipient = encrypt_for_recipient(&plaintext, &recipient.public_key)
        .map_err(|e| ProxyError::Internal(format!("building CiphertextForRecipient: {e}")))?;
    let mut answer = Map::new();
    let mut copy = |field: &str| {
        if let Some(value) = upstream_answer.get(field) {
            answer.insert(field.to_owned(), value.clone());
        }
    };
    match operation {
        AttestedOperation::GenerateDataKey => {
            copy("CiphertextBlob");
            copy("KeyId");
            copy("KeyMaterialId");
        }
        AttestedOperation::Decrypt => {
            copy("KeyId");
            copy("KeyMaterialId");
            answer.insert("EncryptionAlgorithm".into(), "SYMMETRIC_DEFAULT".into());
        }
        AttestedOperation::GenerateRandom => {}
    }
    answer.insert("CiphertextForRecipient".into(), BASE64.encode(for_recipient).into());
    serde_json::to_vec(&answer).map_err(|e| ProxyError::Internal(format!("encoding the answer: {e}")))
}

/// Removes `Plaintext` from an answer and decodes it; the base64 text is zeroized.
fn take_plaintext(answer: &mut Map<String, Value>) -> Option<Zeroizing<Vec<u8>>> {
    let Some(Value::String(encoded)) = answer.remove("Plaintext") else {
        return None;
    };
    let encoded = Zeroizing::new(encoded);
    BASE64.decode(encoded.as_bytes()).ok().map(Zeroizing::new)
}

fn wipe_plaintext(answer: &mut Map<String, Value>) {
    drop(take_plaintext(answer));
}

/// The KeyId the client named, for log lines about requests that went no further.
fn requested_key(request: &Map<String, Value>) -> Option<String> {
    request.get("KeyId").and_then(Value::as_str).map(str::to_owned)
}

/// An upstream answer, passed on with its status, relevant headers and body.
pub fn pass_on(reply: Reply) -> Response {
    let mut response = (reply.status, reply.body.to_vec()).into_response();
    response.headers_mut().extend(reply.headers.clone());
    response
}

fn json_response(body: Vec<u8>, reply: &Reply) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
    if let Some(id) = reply.headers.get("x-amzn-requestid") {
        headers.insert("x-amzn-requestid", id.clone());
    }
    response
}

//! Signed requests as they reach the gateway: the principal's headers and the body exactly as
//! the client sent and signed it, passed to the enclave unchanged. The gateway checks nothing
//! here that matters for security: the enclave verifies the signature, rebuilds the canonical
//! request from its own view and compares the body it parses with the typed request
//! (docs/authorization.md).

use axum::{
    Json,
    body::Bytes,
    extract::{FromRequest, Request},
    http::{HeaderMap, StatusCode, header},
};
use keyward_client::principal::{
    APPROVAL_HEADER, PRINCIPAL_HEADER, REQUEST_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use keyward_proto::{Authorization, ChannelPrincipal, PrincipalSignature};

use crate::errors::ApiError;

pub use keyward_proto::{DEFAULT_KEYSTORE, MASTER_KEYSTORE};

/// The keystore of the key whose full name is `name` (what a signed request about it names).
pub fn keystore_of(name: &str) -> &str {
    keyward_proto::split_key_name(name).0
}

/// Set by the enclave's TLS API (and only there: it removes any a client sends) to the
/// principal whose client certificate the connection's handshake proved. The authorization it
/// makes carries that principal as [`Authorization::channel`], which the enclave trusts
/// because it never crosses the link: on the gateway's own API the header yields a request
/// without a signature, which the enclave refuses (`bad_request_signature`).
pub const CHANNEL_PRINCIPAL_HEADER: &str = "x-keyward-channel-principal";

/// A request authorized by the principal of its channel: fresh id and time, no approvals (they
/// would sign an id and time they cannot know).
fn channel_authorization(principal_text: &str, keystore: &str, body: &Bytes) -> Result<Authorization, ApiError> {
    let requester = principal(CHANNEL_PRINCIPAL_HEADER, principal_text, &[])?;
    let mut request_id = [0u8; 16];
    aws_lc_rs::rand::fill(&mut request_id).map_err(|_| ApiError::internal("no randomness for a request id"))?;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ApiError::internal("the clock is before 1970"))?
        .as_secs();
    let channel = ChannelPrincipal { algorithm: requester.algorithm.clone(), public_key: requester.public_key.clone() };
    Ok(Authorization {
        keystore: keystore.to_owned(),
        body: body.to_vec(),
        request_id,
        timestamp,
        requester,
        approvals: Vec::new(),
        policy: None,
        keystore_policy: None,
        channel: Some(channel),
    })
}

/// At most this many approvals ride on one request.
const MAX_APPROVALS: usize = 16;

/// A JSON body, parsed, and its bytes as they arrived (what a principal signed). Rejections
/// carry the same codes as axum's `Json` does through `ApiError::from_json`.
#[derive(Debug)]
pub struct SignedJson<T> {
    pub value: T,
    pub bytes: Bytes,
}

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for SignedJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "bad_request" };
            ApiError::new(e.status(), code, e.body_text())
        })?;
        let Json(value) = Json::<T>::from_bytes(&bytes).map_err(ApiError::from_json)?;
        Ok(SignedJson { value, bytes })
    }
}

fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "bad_request_signature", message)
}

fn one<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(bad(format!("{name} appears more than once")));
    }
    first.to_str().map(Some).map_err(|_| bad(format!("{name} is not ASCII")))
}

fn hex_field(name: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(text).map_err(|_| bad(format!("{name} is not hex")))
}

/// `<algorithm>:<public key hex>` and a signature into the link's form.
fn principal(name: &str, key: &str, signature: &[u8]) -> Result<PrincipalSignature, ApiError> {
    let (algorithm, public) =
        key.split_once(':').ok_or_else(|| bad(format!("{name} is <algorithm>:<public key hex>")))?;
    if algorithm != "ed25519" && algorithm != "p256" {
        return Err(bad(format!("{name}: the algorithm is ed25519 or p256, not {:?}", truncated(algorithm))));
    }
    Ok(PrincipalSignature {
        algorithm: algorithm.to_owned(),
        public_key: hex_field(name, public)?,
        signature: signature.to_vec(),
    })
}

fn truncated(text: &str) -> String {
    text.chars().take(16).collect()
}

/// The authorization a request carries: `None` when it carries no principal header at all (the
/// enclave decides whether that is allowed), an error when the headers are there but malformed.
pub fn authorization(headers: &HeaderMap, keystore: &str, body: &Bytes) -> Result<Option<Authorization>, ApiError> {
    if !headers.contains_key(PRINCIPAL_HEADER)
        && let Some(channel) = one(headers, CHANNEL_PRINCIPAL_HEADER)?
    {
        return channel_authorization(channel, keystore, body).map(Some);
    }
    let Some(requester) = one(headers, PRINCIPAL_HEADER)? else {
        let stray = [SIGNATURE_HEADER, REQUEST_ID_HEADER, TIMESTAMP_HEADER, APPROVAL_HEADER]
            .into_iter()
            .find(|name| headers.contains_key(*name));
        return match stray {
            Some(name) => Err(bad(format!("{name} without {PRINCIPAL_HEADER}"))),
            None => Ok(None),
        };
    };
    let need = |name| one(headers, name)?.ok_or_else(|| bad(format!("{name} is missing")));
    let signature = hex_field(SIGNATURE_HEADER, need(SIGNATURE_HEADER)?)?;
    let request_id: [u8; 16] = hex_field(REQUEST_ID_HEADER, need(REQUEST_ID_HEADER)?)?
        .try_into()
        .map_err(|_| bad(format!("{REQUEST_ID_HEADER} is 32 hex digits")))?;
    let timestamp_text = need(TIMESTAMP_HEADER)?;
    let timestamp = timestamp_text.parse::<u64>().map_err(|_| bad(format!("{TIMESTAMP_HEADER} is Unix seconds")))?;
    let mut approvals = Vec::new();
    for value in headers.get_all(APPROVAL_HEADER) {
        if approvals.len() == MAX_APPROVALS {
            return Err(bad(format!("more than {MAX_APPROVALS} approvals")));
        }
        let text = value.to_str().map_err(|_| bad(format!("{APPROVAL_HEADER} is not ASCII")))?;
        let (key, signature) = text
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("{APPROVAL_HEADER} is <algorithm>:<public key hex>:<signature hex>")))?;
        approvals.push(principal(APPROVAL_HEADER, key, &hex_field(APPROVAL_HEADER, signature)?)?);
    }
    Ok(Some(Authorization {
        keystore: keystore.to_owned(),
        body: body.to_vec(),
        request_id,
        timestamp,
        requester: principal(PRINCIPAL_HEADER, requester, &signature)?,
        approvals,
        policy: None,
        keystore_policy: None,
        channel: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn code(result: Result<Option<Authorization>, ApiError>) -> &'static str {
        result.err().map(|e| e.code).unwrap_or("ok")
    }

    #[test]
    fn headers_become_an_authorization_and_malformed_ones_a_401_with_its_code() {
        let body = Bytes::from_static(b"{\"digest_b64\":\"\"}");
        assert!(authorization(&HeaderMap::new(), DEFAULT_KEYSTORE, &body).unwrap().is_none());
        let good = [
            (PRINCIPAL_HEADER, "ed25519:0a0b"),
            (SIGNATURE_HEADER, "01ff"),
            (REQUEST_ID_HEADER, "000102030405060708090a0b0c0d0e0f"),
            (TIMESTAMP_HEADER, "1700000000"),
            (APPROVAL_HEADER, "p256:0c:02"),
        ];
        let auth = authorization(&headers(&good), DEFAULT_KEYSTORE, &body).unwrap().unwrap();
        assert_eq!(auth.requester.public_key, vec![0x0a, 0x0b]);
        assert_eq!(auth.requester.signature, vec![0x01, 0xff]);
        assert_eq!(auth.request_id[15], 15);
        assert_eq!(auth.timestamp, 1_700_000_000);
        assert_eq!(auth.approvals[0].algorithm, "p256");
        assert_eq!(auth.body, body.to_vec());
        for broken in [
            vec![(SIGNATURE_HEADER, "01")],
            vec![(PRINCIPAL_HEADER, "rsa:00"), good[1], good[2], good[3]],
            vec![(PRINCIPAL_HEADER, "ed25519:zz"), good[1], good[2], good[3]],
            vec![good[0], good[1], (REQUEST_ID_HEADER, "0001"), good[3]],
            vec![good[0], good[1], good[2], (TIMESTAMP_HEADER, "yesterday")],
            vec![good[0], good[2], good[3]],
            vec![good[0], good[0], good[1], good[2], good[3]],
            vec![good[0], good[1], good[2], good[3], (APPROVAL_HEADER, "p256")],
        ] {
            assert_eq!(code(authorization(&headers(&broken), DEFAULT_KEYSTORE, &body)), "bad_request_signature");
        }
    }
}

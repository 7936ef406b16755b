//! The proxy's own refusals, answered the way KMS answers errors in its JSON protocol: an HTTP
//! status, `X-Amzn-ErrorType`, and a body `{"__type": "<Code>", "message": "<text>"}`. The AWS
//! SDKs take the code from the header or `__type` and the text from `message`, so a denial
//! reaches the enclave as `AccessDeniedException` with the proxy's reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why the proxy refused a request itself (upstream errors are passed on unchanged instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The key policy denies the request, or its Recipient attestation document is not valid.
    #[error("{0}")]
    AccessDenied(String),
    /// A well-formed request with an unacceptable parameter.
    #[error("{0}")]
    Validation(String),
    /// The body is not the JSON the operation takes.
    #[error("{0}")]
    Serialization(String),
    /// The body is longer than the proxy reads.
    #[error("request body exceeds {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// Not a KMS JSON protocol request (`POST` with `X-Amz-Target: TrentService.<Operation>`).
    #[error("{0}")]
    NotKmsJson(String),
    /// Upstream answered something the proxy cannot use, or could not be reached.
    #[error("{0}")]
    Internal(String),
}

impl ProxyError {
    /// The KMS error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::Validation(_) | Self::TooLarge { .. } => "ValidationException",
            Self::Serialization(_) => "SerializationException",
            Self::NotKmsJson(_) => "UnknownOperationException",
            Self::Internal(_) => "KMSInternalException",
        }
    }

    /// The HTTP status KMS uses for the code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let body = json!({ "__type": self.code(), "message": self.to_string() }).to_string();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
        headers.insert("x-amzn-errortype", HeaderValue::from_static(self.code()));
        if let Ok(id) = HeaderValue::from_str(&request_id()) {
            headers.insert("x-amzn-requestid", id);
        }
        response
    }
}

/// A request id for the proxy's own answers: unique within a run, and marked as ours.
pub fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    format!("devkms-{started:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[tokio::test]
    async fn access_denied_has_the_shape_the_aws_sdk_parses() {
        let response = ProxyError::AccessDenied("denied by statement \"X\"".into()).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["content-type"], "application/x-amz-json-1.1");
        assert_eq!(response.headers()["x-amzn-errortype"], "AccessDeniedException");
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, json!({ "__type": "AccessDeniedException", "message": "denied by statement \"X\"" }));
    }
}

//! Calls to the upstream KMS emulator (LocalStack or moto) in the KMS JSON protocol.
//! Neither verifies SigV4. Requests made on behalf of a client carry the client's own
//! `Authorization` header, because LocalStack takes the region (and the account) from its
//! credential scope; the proxy's own requests carry a syntactically valid but unsigned header
//! that names the configured region.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// Headers of a client request worth passing on: the SigV4 set and the SDK's own. Anything
/// else (in particular anything that could make the emulator pick another protocol) stays
/// behind.
const FORWARDED_REQUEST_HEADERS: [&str; 7] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
    "user-agent",
];

/// Headers of an upstream answer worth passing back.
const FORWARDED_RESPONSE_HEADERS: [&str; 4] =
    ["content-type", "x-amzn-requestid", "x-amzn-errortype", "x-amzn-query-error"];

/// Longest upstream answer accepted. KMS answers are a few KiB; ListKeys pages stay far below.
const MAX_RESPONSE_LEN: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Upstream {
    url: String,
    region: String,
    http: reqwest::Client,
}

/// An error answer from upstream, kept whole so it can be passed on.
#[derive(Debug, thiserror::Error)]
#[error("upstream {operation} failed with HTTP {status}: {body}")]
pub struct UpstreamError {
    pub operation: String,
    pub status: u16,
    pub body: Value,
}

impl UpstreamError {
    /// The KMS error code (`__type`), without any namespace prefix.
    pub fn code(&self) -> &str {
        let raw = self.body.get("__type").and_then(Value::as_str).unwrap_or("");
        raw.rsplit('#').next().unwrap_or(raw)
    }
}

/// An upstream answer as received. The body may hold plaintext key material (base64), so it is
/// zeroized when dropped; the HTTP stack's own buffers are out of reach.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    /// The headers in [`FORWARDED_RESPONSE_HEADERS`] that upstream sent.
    pub headers: HeaderMap,
    pub body: Zeroizing<Vec<u8>>,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

impl Upstream {
    pub fn new(url: &str, region: &str) -> anyhow::Result<Self> {
        // reqwest has no TLS provider of its own here (aws-lc-rs is the workspace's one).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            // The emulator is on loopback; an HTTP proxy from the environment must not get in
            // between (it would see plaintext data keys).
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Upstream { url: url.trim_end_matches('/').to_owned(), region: region.to_owned(), http })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The proxy's own call: JSON in, JSON out, an error answer as [`UpstreamError`].
    pub async fn call(&self, operation: &str, body: &Value) -> anyhow::Result<Result<Value, UpstreamError>> {
        self.call_as(operation, body, &HeaderMap::new()).await
    }

    /// Like [`call`](Self::call), with the SigV4 headers of `client_headers` (so the emulator
    /// sees the client's region and account).
    pub async fn call_as(
        &self,
        operation: &str,
        body: &Value,
        client_headers: &HeaderMap,
    ) -> anyhow::Result<Result<Value, UpstreamError>> {
        let reply = self.send(operation, client_headers, serde_json::to_vec(body)?).await?;
        let value: Value = if reply.body.is_empty() { json!({}) } else { serde_json::from_slice(&reply.body)? };
        if reply.is_success() {
            Ok(Ok(value))
        } else {
            Ok(Err(UpstreamError { operation: operation.to_owned(), status: reply.status.as_u16(), body: value }))
        }
    }

    /// Sends `TrentService.<operation>` with `body` and the forwardable headers of
    /// `client_headers`, and returns the answer as it came.
    pub async fn send(&self, operation: &str, client_headers: &HeaderMap, body: Vec<u8>) -> anyhow::Result<Reply> {
        let mut request = self
            .http
            // The KMS JSON protocol always posts to `/`; the client's path is never passed on.
            .post(format!("{}/", self.url))
            .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .header("x-amz-target", format!("TrentService.{operation}"));
        for name in FORWARDED_REQUEST_HEADERS {
            for value in client_headers.get_all(name) {
                request = request.header(name, value.clone());
            }
        }
        if !client_headers.contains_key(header::AUTHORIZATION) {
            request = request.header(
                header::AUTHORIZATION,
                format!(
                    "AWS4-HMAC-SHA256 Credential=keyward-devkms/20260101/{}/kms/aws4_request, SignedHeaders=host, Signature=0",
                    self.region
                ),
            );
        }
        let mut response = request.body(body).send().await?;
        let status = response.status();
        let mut headers = HeaderMap::new();
        for name in FORWARDED_RESPONSE_HEADERS {
            if let Some(value) = response.headers().get(name) {
                headers.insert(HeaderName::from_static(name), value.clone());
            }
        }
        // Sized up front so growing the buffer does not leave unzeroized copies behind.
        let capacity = response
            .content_length()
            .and_then(|len| usize::try_from(len).ok())
            .map_or(16 * 1024, |len| len.min(MAX_RESPONSE_LEN));
        let mut body = Zeroizing::new(Vec::with_capacity(capacity));
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_RESPONSE_LEN {
                anyhow::bail!("upstream {operation} answer exceeds {MAX_RESPONSE_LEN} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply { status, headers, body })
    }

    /// Calls and turns an error answer into an error.
    pub async fn must(&self, operation: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(self.call(operation, body).await??)
    }
}

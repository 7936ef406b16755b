//! Calls to the upstream KMS emulator (LocalStack or moto) in the KMS JSON protocol.
//! Neither verifies SigV4, so requests carry a syntactically valid but unsigned header that
//! names the region.

use serde_json::{Value, json};

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

impl Upstream {
    pub fn new(url: &str, region: &str) -> Self {
        Upstream { url: url.trim_end_matches('/').to_owned(), region: region.to_owned(), http: reqwest::Client::new() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn call(&self, operation: &str, body: &Value) -> anyhow::Result<Result<Value, UpstreamError>> {
        let response = self
            .http
            .post(format!("{}/", self.url))
            .header("Content-Type", "application/x-amz-json-1.1")
            .header("X-Amz-Target", format!("TrentService.{operation}"))
            .header(
                "Authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=keyward-devkms/20260101/{}/kms/aws4_request, SignedHeaders=host, Signature=0",
                    self.region
                ),
            )
            .body(serde_json::to_vec(body)?)
            .send()
            .await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let value: Value = if bytes.is_empty() { json!({}) } else { serde_json::from_slice(&bytes)? };
        if (200..300).contains(&status) {
            Ok(Ok(value))
        } else {
            Ok(Err(UpstreamError { operation: operation.to_owned(), status, body: value }))
        }
    }

    /// Calls and turns an error answer into an error.
    pub async fn must(&self, operation: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(self.call(operation, body).await??)
    }
}

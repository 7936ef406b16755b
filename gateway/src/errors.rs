//! API errors: a status, a stable machine code and a message, always as JSON.

use axum::{
    extract::rejection::{JsonRejection, QueryRejection},
    http::StatusCode,
};
use keyward_client::api::ErrorBody;
use keyward_proto::ErrorReply;

use keyward_admission::rotation::RotateError;
use keyward_proto::EnclaveId;

use crate::link::LinkError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    /// Input that parsed but is not acceptable; `code` names the rule it broke.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// A master-key rotation that did not happen: a status and a stable code (an enclave
    /// refusal keeps the enclave's code, such as `round_trip_failed` or `kms_denied`).
    pub fn from_rotation(e: &RotateError, id: EnclaveId) -> Self {
        let (status, code) = match e {
            RotateError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "enclave_not_ready"),
            RotateError::Store(e) => (StatusCode::SERVICE_UNAVAILABLE, e.code()),
            RotateError::Conflict(_) => (StatusCode::CONFLICT, "rotation_conflict"),
            RotateError::Enclave(link) => {
                let link = ApiError::from_link(link.clone());
                (link.status, link.code)
            }
            RotateError::NotCommitted { .. } => {
                return ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "rotation_not_committed",
                    format!("rotation of enclave {id}: {e}"),
                );
            }
            RotateError::Credentials(_) => (StatusCode::BAD_GATEWAY, "credentials_unavailable"),
            RotateError::Invalid(_) => (StatusCode::INTERNAL_SERVER_ERROR, "rotation_invalid"),
        };
        ApiError::new(status, code, format!("rotation of enclave {id} not applied: {e}"))
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code.to_owned(), message: self.message.clone() }
    }

    /// Prefixes the message with the batch entry it concerns (`field[index]`).
    pub fn at_item(mut self, field: &str, index: usize) -> Self {
        self.message = format!("{field}[{index}]: {}", self.message);
        self
    }

    /// A body axum could not take, with a code for each kind: not JSON at all, JSON of the
    /// wrong shape (a missing, unknown or mistyped field), the wrong content type, too large.
    pub fn from_json(rejection: JsonRejection) -> Self {
        let code = match &rejection {
            JsonRejection::JsonSyntaxError(_) => "invalid_json",
            JsonRejection::JsonDataError(_) => "invalid_field",
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            _ => "bad_request",
        };
        let status = rejection.status();
        // Clamp 422 (axum's "valid JSON, wrong shape") to 400: both are bad input to us.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY { StatusCode::BAD_REQUEST } else { status };
        Self::new(status, code, rejection.body_text())
    }

    pub fn from_query(rejection: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", rejection.body_text())
    }

    pub fn from_link(error: LinkError) -> Self {
        match error {
            LinkError::Remote(reply) => Self::from_remote(reply),
            LinkError::Timeout(_) => Self::new(StatusCode::GATEWAY_TIMEOUT, "enclave_timeout", error.to_string()),
            LinkError::Connect(_) | LinkError::Closed(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "enclave_unavailable", error.to_string())
            }
            LinkError::Protocol(_) => Self::new(StatusCode::BAD_GATEWAY, "enclave_protocol", error.to_string()),
        }
    }

    /// An enclave's refusal, with the enclave's own code (`ErrorCode::as_str`), so the code a
    /// client sees is the one the enclave chose.
    pub fn from_remote(reply: ErrorReply) -> Self {
        let status = StatusCode::from_u16(reply.code.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
        Self::new(status, reply.code.api_code(), reply.message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

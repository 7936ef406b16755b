//! API errors: a status, a stable machine code and a message, always as JSON.

use axum::{
    extract::rejection::{JsonRejection, QueryRejection},
    http::StatusCode,
};
use keyward_client::api::ErrorBody;
use keyward_proto::{ErrorCode, ErrorReply};

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

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code.to_owned(), message: self.message.clone() }
    }

    /// Prefixes the message with the batch item it concerns.
    pub fn at_item(mut self, index: usize) -> Self {
        self.message = format!("items[{index}]: {}", self.message);
        self
    }

    pub fn from_json(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "bad_request",
        };
        // Clamp 422 (axum's "valid JSON, wrong shape") to 400: both are bad input to us.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY { StatusCode::BAD_REQUEST } else { status };
        Self::new(status, code, rejection.body_text())
    }

    pub fn from_query(rejection: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", rejection.body_text())
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

    pub fn from_remote(reply: ErrorReply) -> Self {
        let (status, code) = match reply.code {
            ErrorCode::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
            ErrorCode::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "enclave_not_ready"),
            _ => (StatusCode::BAD_GATEWAY, "enclave_error"),
        };
        Self::new(status, code, reply.message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

#![doc = include_str!("../README.md")]

mod admit;
mod db;
pub mod keyring;
pub mod master;
mod outage;
pub mod rotation;

use std::{future::Future, time::Duration};

use keyward_proto::{AwsCredentials, ErrorReply, Request, Response};

pub use admit::{Environment, Expectations, ExpectedImage, ExpectedOwners, check_identity, check_image};
pub use db::{Db, Policies, row_from_sealed, sealed_from_row};
pub use outage::is_outage;

/// Deadline for lifecycle requests, which include a KMS round trip (two for a provision or
/// rotation, which proves its new row opens).
pub const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What can go wrong talking to an enclave.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// Could not connect.
    #[error("{0}")]
    Connect(String),
    /// The connection is gone (or went while the request was in flight).
    #[error("enclave connection lost: {0}")]
    Closed(String),
    /// No reply within the deadline.
    #[error("enclave did not answer within {0:?}")]
    Timeout(Duration),
    /// The enclave answered with an error.
    #[error("{0}")]
    Remote(ErrorReply),
    /// The enclave answered with something that does not fit the request.
    #[error("unexpected reply from the enclave: {0}")]
    Protocol(String),
}

/// The error for an answer of the wrong kind.
pub fn unexpected_reply(request: &str, answer: &Response) -> LinkError {
    LinkError::Protocol(format!("{request} answered with {}", answer.kind()))
}

/// One enclave, as the gateway reaches it: the authenticated link in the gateway, the
/// enclave's own domain core in one process in the tests.
pub trait Enclave: Send + Sync {
    /// Sends `request` and waits at most `timeout` for the answer.
    fn call(&self, request: Request, timeout: Duration) -> impl Future<Output = Result<Response, LinkError>> + Send;
}

/// Short-lived AWS credentials for one KMS call the enclave makes.
pub trait Credentials: Send + Sync {
    /// Current credentials, or why there are none.
    fn get(&self) -> impl Future<Output = Result<AwsCredentials, String>> + Send;
}

/// Why an enclave (or its keyring) is not ready: a stable code for callers, the details
/// (which can name accounts, roles, PCRs and paths) for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: &'static str,
    pub detail: String,
}

impl Problem {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Problem { code, detail: detail.into() }
    }
}

#[cfg(test)]
mod tests;

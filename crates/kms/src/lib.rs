#![doc = include_str!("../README.md")]

mod arn;
#[cfg(feature = "client")]
mod client;
pub mod cms;
mod endpoint;
#[cfg(feature = "client")]
mod http;
pub mod policy;

pub use arn::{ArnError, KeyArn};
#[cfg(feature = "client")]
pub use aws_credential_types::Credentials;
#[cfg(feature = "client")]
pub use client::{DataKeyResponse, EncryptionContext, KmsClient};
pub use endpoint::KmsEndpoint;
#[cfg(feature = "client")]
pub use http::{RelayHttpClient, TlsRoots};

/// KMS errors. Messages carry KMS's own error code and text (which names, for example, the
/// PCR that failed a key-policy condition) but never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// Local configuration is unusable.
    #[error("KMS configuration: {0}")]
    Config(String),
    /// KMS answered with a refusal that retrying will not change.
    #[error("KMS {operation} denied: {code}: {message}")]
    Denied {
        /// The KMS operation.
        operation: &'static str,
        /// KMS error code, e.g. `AccessDeniedException`.
        code: String,
        /// KMS error message.
        message: String,
    },
    /// KMS could not be reached or failed transiently.
    #[error("KMS {operation} unavailable: {message}")]
    Unavailable {
        /// The KMS operation.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
    /// KMS answered with something we cannot use.
    #[error("KMS {operation} returned an unusable response: {reason}")]
    InvalidResponse {
        /// The KMS operation.
        operation: &'static str,
        /// What was wrong with it.
        reason: &'static str,
    },
}

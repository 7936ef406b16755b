//! Attestation: the NSM seam (real `/dev/nsm` or a development mock) and the verifier.

use std::fmt;

#[cfg(feature = "mock")]
mod mock;
#[cfg(feature = "mock")]
pub use mock::MockNsm;
#[cfg(feature = "nitro")]
mod nitro;
#[cfg(feature = "nitro")]
pub use nitro::NitroNsm;

/// Which NSM implementation is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsmKind {
    /// `/dev/nsm` inside a Nitro Enclave.
    Nitro,
    /// The development stand-in.
    Mock,
}

/// What to put into an attestation document.
#[derive(Debug, Clone, Default)]
pub struct AttestationRequest {
    /// `public_key` field (for KMS `Recipient`: the DER SubjectPublicKeyInfo of an RSA key).
    pub public_key: Option<Vec<u8>>,
    /// `user_data` field.
    pub user_data: Option<Vec<u8>>,
    /// `nonce` field.
    pub nonce: Option<Vec<u8>>,
}

/// Source of attestation documents and randomness: the Nitro Secure Module, or a dev stand-in.
pub trait Nsm: Send + Sync + fmt::Debug {
    /// Which implementation this is.
    fn kind(&self) -> NsmKind;
    /// A signed attestation document (raw, untagged COSE_Sign1 bytes).
    fn attest(&self, request: &AttestationRequest) -> Result<Vec<u8>, NsmError>;
    /// Fills `out` with random bytes.
    fn random(&self, out: &mut [u8]) -> Result<(), NsmError>;
}

/// NSM errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NsmError {
    /// The NSM device could not be opened.
    #[error("cannot open the Nitro Secure Module: {0}")]
    Unavailable(String),
    /// The NSM refused or failed a request.
    #[error("NSM request failed: {0}")]
    Request(String),
    /// The development NSM's PKI could not be created or loaded.
    #[error("development NSM PKI: {0}")]
    Pki(String),
}

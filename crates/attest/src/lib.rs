#![doc = include_str!("../README.md")]

use std::fmt;

mod chain;
mod cose;
mod document;
mod error;
mod pcr;
mod root;
mod unix_time;
mod verify;

#[cfg(feature = "mock")]
mod mock;
#[cfg(feature = "nitro")]
mod nitro;

pub use document::{
    AttestationDocument, AttestationPayload, Digest, MAX_CABUNDLE_LEN, MAX_CERTIFICATE_LEN, MAX_DOCUMENT_LEN,
    MAX_MODULE_ID_LEN, MAX_NONCE_LEN, MAX_PUBLIC_KEY_LEN, MAX_USER_DATA_LEN, parse,
};
pub use error::{ChainPosition, VerifyError};
pub use pcr::{MAX_PCRS, Measurements, Pcr};
pub use root::RootCertificate;
pub use unix_time::UnixTime;
pub use verify::{VerifiedDocument, VerifyOptions, verify};

#[cfg(feature = "mock")]
pub use mock::{MOCK_PCR1_INPUT, MOCK_PCR2_INPUT, MockNsm, PKI_DIR_NAME, mock_measurements};
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

impl AttestationRequest {
    /// Refuses fields the NSM would refuse (each is limited to 1024 bytes), so both NSM
    /// implementations fail the same way and before any work is done.
    pub fn check_limits(&self) -> Result<(), NsmError> {
        let fields = [
            ("public_key", &self.public_key, MAX_PUBLIC_KEY_LEN),
            ("user_data", &self.user_data, MAX_USER_DATA_LEN),
            ("nonce", &self.nonce, MAX_NONCE_LEN),
        ];
        for (name, value, max) in fields {
            if let Some(value) = value
                && value.len() > max
            {
                return Err(NsmError::Request(format!(
                    "attestation {name} is {} bytes; the NSM accepts at most {max}",
                    value.len()
                )));
            }
        }
        Ok(())
    }
}

/// Source of attestation documents and randomness: the Nitro Secure Module, or a dev stand-in.
pub trait Nsm: Send + Sync + fmt::Debug {
    /// Which implementation this is.
    fn kind(&self) -> NsmKind;
    /// A signed attestation document (raw, untagged COSE_Sign1 bytes).
    fn attest(&self, request: &AttestationRequest) -> Result<Vec<u8>, NsmError>;
    /// Fills `out` with random bytes.
    fn random(&self, out: &mut [u8]) -> Result<(), NsmError>;
    /// The current value of PCR `index`.
    fn describe_pcr(&self, index: u16) -> Result<Pcr, NsmError> {
        Err(NsmError::Request(format!("reading PCR{index} is not supported by this NSM")))
    }
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
    /// The development NSM could not read the binary it measures into PCR0.
    #[error("cannot measure {path}: {reason}")]
    Measurement {
        /// The file that was to be hashed.
        path: String,
        /// What went wrong reading it.
        reason: String,
    },
}

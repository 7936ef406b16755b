//! Placeholder development NSM: randomness only. Replaced by the full mock (signed COSE
//! documents) in the attested-key-release work.

use std::path::Path;

use crate::{AttestationRequest, Nsm, NsmError, NsmKind};

/// Development NSM.
#[derive(Debug, Default)]
pub struct MockNsm;

impl MockNsm {
    /// Opens the development NSM.
    pub fn open(_pki_dir: &Path, _measured_binary: &Path) -> Result<Self, NsmError> {
        Ok(MockNsm)
    }
}

impl Nsm for MockNsm {
    fn kind(&self) -> NsmKind {
        NsmKind::Mock
    }

    fn attest(&self, _request: &AttestationRequest) -> Result<Vec<u8>, NsmError> {
        Err(NsmError::Request("the development NSM cannot attest yet".into()))
    }

    fn random(&self, out: &mut [u8]) -> Result<(), NsmError> {
        getrandom::fill(out).map_err(|e| NsmError::Request(e.to_string()))
    }
}

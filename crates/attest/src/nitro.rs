//! Placeholder for the real NSM.

use crate::{AttestationRequest, Nsm, NsmError, NsmKind};

/// The Nitro Secure Module.
#[derive(Debug)]
pub struct NitroNsm;

impl NitroNsm {
    /// Opens `/dev/nsm`.
    pub fn open() -> Result<Self, NsmError> {
        Err(NsmError::Unavailable("not implemented yet".into()))
    }
}

impl Nsm for NitroNsm {
    fn kind(&self) -> NsmKind {
        NsmKind::Nitro
    }
    fn attest(&self, _request: &AttestationRequest) -> Result<Vec<u8>, NsmError> {
        Err(NsmError::Unavailable("not implemented yet".into()))
    }
    fn random(&self, _out: &mut [u8]) -> Result<(), NsmError> {
        Err(NsmError::Unavailable("not implemented yet".into()))
    }
}

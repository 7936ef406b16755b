//! The real NSM: `/dev/nsm` inside a Nitro Enclave, through `aws-nitro-enclaves-nsm-api`.

use std::path::Path;

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver::{nsm_exit, nsm_init, nsm_process_request};
use serde_bytes::ByteBuf;
use zeroize::Zeroize;

use crate::{AttestationRequest, Nsm, NsmError, NsmKind, Pcr};

const DEVICE: &str = "/dev/nsm";
/// A GetRandom response that keeps coming back empty would loop forever; give up instead.
const MAX_EMPTY_RANDOM_RESPONSES: u32 = 8;

/// The Nitro Secure Module. The device is closed when this is dropped.
#[derive(Debug)]
pub struct NitroNsm {
    fd: i32,
}

impl NitroNsm {
    /// Opens `/dev/nsm`. Outside a Nitro Enclave this fails with [`NsmError::Unavailable`].
    pub fn open() -> Result<Self, NsmError> {
        let fd = nsm_init();
        if fd < 0 {
            let reason = if Path::new(DEVICE).exists() {
                format!("{DEVICE} exists but could not be opened for reading and writing; check its permissions")
            } else {
                format!("{DEVICE} not present: not running inside a Nitro Enclave (use the mock NSM for development)")
            };
            return Err(NsmError::Unavailable(reason));
        }
        Ok(Self { fd })
    }

    /// The current value of PCR `index`.
    pub fn describe_pcr(&self, index: u16) -> Result<Pcr, NsmError> {
        match self.request(Request::DescribePCR { index }, "DescribePCR")? {
            Response::DescribePCR { data, .. } => {
                Pcr::from_bytes(&data).map_err(|e| NsmError::Request(format!("DescribePCR {index}: {e}")))
            }
            other => Err(unexpected("DescribePCR", &other)),
        }
    }

    fn request(&self, request: Request, name: &str) -> Result<Response, NsmError> {
        match nsm_process_request(self.fd, request) {
            Response::Error(code) => Err(NsmError::Request(format!("{name}: the NSM returned {code:?}"))),
            response => Ok(response),
        }
    }
}

fn unexpected(name: &str, response: &Response) -> NsmError {
    // Name the variant only: a response may hold random bytes.
    let variant = format!("{response:?}");
    let variant = variant.split([' ', '{', '(']).next().unwrap_or("unknown");
    NsmError::Request(format!("{name}: unexpected NSM response {variant}"))
}

impl Nsm for NitroNsm {
    fn kind(&self) -> NsmKind {
        NsmKind::Nitro
    }

    fn attest(&self, request: &AttestationRequest) -> Result<Vec<u8>, NsmError> {
        request.check_limits()?;
        let nsm_request = Request::Attestation {
            user_data: request.user_data.clone().map(ByteBuf::from),
            nonce: request.nonce.clone().map(ByteBuf::from),
            public_key: request.public_key.clone().map(ByteBuf::from),
        };
        match self.request(nsm_request, "Attestation")? {
            Response::Attestation { document } => Ok(document),
            other => Err(unexpected("Attestation", &other)),
        }
    }

    fn random(&self, out: &mut [u8]) -> Result<(), NsmError> {
        let mut filled = 0;
        let mut empty_responses = 0;
        while filled < out.len() {
            match self.request(Request::GetRandom, "GetRandom")? {
                Response::GetRandom { mut random } => {
                    if random.is_empty() {
                        empty_responses += 1;
                        if empty_responses == MAX_EMPTY_RANDOM_RESPONSES {
                            return Err(NsmError::Request("GetRandom: the NSM keeps returning no bytes".into()));
                        }
                    }
                    let take = random.len().min(out.len() - filled);
                    out[filled..filled + take].copy_from_slice(&random[..take]);
                    filled += take;
                    random.zeroize();
                }
                other => return Err(unexpected("GetRandom", &other)),
            }
        }
        Ok(())
    }

    fn describe_pcr(&self, index: u16) -> Result<Pcr, NsmError> {
        NitroNsm::describe_pcr(self, index)
    }
}

impl Drop for NitroNsm {
    fn drop(&mut self) {
        nsm_exit(self.fd);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    /// Outside an enclave (every development and CI machine) opening is a clear error; inside
    /// one (no skip) it succeeds. Either way the test checks what this machine must do.
    #[test]
    fn opening_is_a_clear_unavailable_error_outside_an_enclave_and_works_inside_one() {
        if Path::new(DEVICE).exists() {
            let nsm = NitroNsm::open().expect("/dev/nsm exists, so this is an enclave and it opens");
            assert!(matches!(nsm.kind(), crate::NsmKind::Nitro));
            return;
        }
        let err = NitroNsm::open().unwrap_err();
        assert!(matches!(err, NsmError::Unavailable(_)));
        let message = err.to_string();
        assert!(message.contains("/dev/nsm not present: not running inside a Nitro Enclave"), "{message}");
    }
}

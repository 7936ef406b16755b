//! The development NSM: signs real COSE_Sign1 attestation documents, shaped byte for byte
//! like the NSM's, with a development PKI, so the production verifier runs in every test.

mod names;
mod pki;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest::{Context, SHA384};
use aws_lc_rs::rand::SystemRandom;
use serde::Serialize;
use serde_bytes::Bytes;

pub use pki::PKI_DIR_NAME;

use crate::cose::{PROTECTED_ES384, push_bstr, sig_structure};
use crate::{AttestationRequest, Measurements, Nsm, NsmError, NsmKind, Pcr, RootCertificate};

/// PCR1 of the mock is the SHA-384 of this ASCII string (on Nitro: kernel and bootstrap).
pub const MOCK_PCR1_INPUT: &str = "keyward-mock-nsm:PCR1:kernel+bootstrap:v1";
/// PCR2 of the mock is the SHA-384 of this ASCII string (on Nitro: the application).
pub const MOCK_PCR2_INPUT: &str = "keyward-mock-nsm:PCR2:application:v1";
/// The NSM has 16 PCRs.
const PCR_COUNT: u16 = 16;
/// SHA-384.
const PCR_LEN: usize = 48;

/// The development NSM. Each document gets a fresh leaf certificate and key (valid about
/// three hours from the moment of signing), issued by the instance CA of the PKI in
/// `pki_dir`; see the crate README for the PCRs and the file layout.
pub struct MockNsm {
    pki: pki::Pki,
    module_id: String,
    enclave_id: [u8; 8],
    pcrs: BTreeMap<u16, Pcr>,
    measurements: Measurements,
    rng: SystemRandom,
}

impl MockNsm {
    /// Opens the mock NSM: loads the development PKI from `pki_dir` (generating it on first
    /// use; safe when several processes start at once) and measures `measured_binary` into
    /// PCR0. The enclave passes `/proc/self/exe`.
    pub fn open(pki_dir: &Path, measured_binary: &Path) -> Result<Self, NsmError> {
        let measurements = mock_measurements(measured_binary)?;
        let pki = pki::load_or_create(pki_dir)?;
        // Like AWS: "enc" + 16 hex digits, the first 12 of them the start time in ms.
        let mut enclave_id = [0u8; 8];
        let millis = unix_millis();
        enclave_id[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        getrandom::fill(&mut enclave_id[6..]).map_err(|e| NsmError::Request(format!("randomness: {e}")))?;
        let module_id = format!("{}-enc{}", pki.instance_id, hex::encode(enclave_id));
        let pcrs = (0..PCR_COUNT)
            .map(|index| {
                let value = match index {
                    0 => measurements.pcr0.clone(),
                    1 => measurements.pcr1.clone(),
                    2 => measurements.pcr2.clone(),
                    _ => Pcr::zero(PCR_LEN),
                };
                (index, value)
            })
            .collect();
        Ok(Self { pki, module_id, enclave_id, pcrs, measurements, rng: SystemRandom::new() })
    }

    /// The development root certificate in PEM, for the dev KMS and dev clients to pin. Creates
    /// the PKI if there is none yet, so start order does not matter.
    pub fn root_pem(pki_dir: &Path) -> Result<String, NsmError> {
        Ok(Self::root_certificate_in(pki_dir)?.to_pem())
    }

    /// The development root certificate of the PKI in `pki_dir` (created if absent).
    pub fn root_certificate_in(pki_dir: &Path) -> Result<RootCertificate, NsmError> {
        Ok(pki::load_or_create(pki_dir)?.root)
    }

    /// The root this NSM's documents chain to.
    pub fn root_certificate(&self) -> &RootCertificate {
        &self.pki.root
    }

    /// PCR0-2 of this NSM's documents.
    pub fn measurements(&self) -> &Measurements {
        &self.measurements
    }

    /// The `module_id` of this NSM's documents (one per process).
    pub fn module_id(&self) -> &str {
        &self.module_id
    }

    /// The directory holding the PKI files.
    pub fn pki_path(&self) -> &Path {
        &self.pki.dir
    }
}

impl fmt::Debug for MockNsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockNsm")
            .field("module_id", &self.module_id)
            .field("pki", &self.pki.dir)
            .field("root", &self.pki.root)
            .field("measurements", &self.measurements)
            .finish_non_exhaustive()
    }
}

/// PCR0-2 the mock NSM reports when measuring `binary`, computed without touching any PKI:
/// PCR0 = SHA-384 of the file's bytes, PCR1 = SHA-384 of [`MOCK_PCR1_INPUT`], PCR2 = SHA-384
/// of [`MOCK_PCR2_INPUT`].
pub fn mock_measurements(binary: &Path) -> Result<Measurements, NsmError> {
    let measure_error =
        |e: std::io::Error| NsmError::Measurement { path: binary.display().to_string(), reason: e.to_string() };
    let mut file = File::open(binary).map_err(measure_error)?;
    let mut context = Context::new(&SHA384);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer).map_err(measure_error)?;
        if read == 0 {
            break;
        }
        context.update(&buffer[..read]);
    }
    let pcr0 = Pcr::from_bytes(context.finish().as_ref())
        .map_err(|e| NsmError::Measurement { path: binary.display().to_string(), reason: e.to_string() })?;
    Ok(Measurements {
        pcr0,
        pcr1: Pcr::sha384_of(MOCK_PCR1_INPUT.as_bytes()),
        pcr2: Pcr::sha384_of(MOCK_PCR2_INPUT.as_bytes()),
    })
}

/// The payload map with AWS's key order; absent optional fields are written as null.
#[derive(Serialize)]
struct Payload<'a> {
    module_id: &'a str,
    digest: &'static str,
    timestamp: u64,
    pcrs: BTreeMap<u16, &'a Bytes>,
    certificate: &'a Bytes,
    cabundle: Vec<&'a Bytes>,
    public_key: Option<&'a Bytes>,
    user_data: Option<&'a Bytes>,
    nonce: Option<&'a Bytes>,
}

impl Nsm for MockNsm {
    fn kind(&self) -> NsmKind {
        NsmKind::Mock
    }

    fn attest(&self, request: &AttestationRequest) -> Result<Vec<u8>, NsmError> {
        request.check_limits()?;
        let millis = unix_millis();
        let leaf = self.pki.issue_leaf(&self.module_id, &self.enclave_id, millis / 1000)?;
        let payload = Payload {
            module_id: &self.module_id,
            digest: "SHA384",
            timestamp: millis,
            pcrs: self.pcrs.iter().map(|(&index, pcr)| (index, Bytes::new(pcr.as_bytes()))).collect(),
            certificate: Bytes::new(&leaf.certificate),
            cabundle: self.pki.cabundle.iter().map(|der| Bytes::new(der)).collect(),
            public_key: request.public_key.as_deref().map(Bytes::new),
            user_data: request.user_data.as_deref().map(Bytes::new),
            nonce: request.nonce.as_deref().map(Bytes::new),
        };
        let payload = serde_cbor::to_vec(&payload).map_err(|e| NsmError::Request(format!("encode payload: {e}")))?;
        let signature = leaf
            .key
            .sign(&self.rng, &sig_structure(&PROTECTED_ES384, &payload))
            .map_err(|e| NsmError::Request(format!("sign document: {e}")))?;

        let mut document = Vec::with_capacity(payload.len() + 128);
        document.push(0x84); // array of 4
        push_bstr(&mut document, &PROTECTED_ES384);
        document.push(0xa0); // empty unprotected map
        push_bstr(&mut document, &payload);
        push_bstr(&mut document, signature.as_ref());
        Ok(document)
    }

    fn random(&self, out: &mut [u8]) -> Result<(), NsmError> {
        getrandom::fill(out).map_err(|e| NsmError::Request(format!("randomness: {e}")))
    }

    fn describe_pcr(&self, index: u16) -> Result<Pcr, NsmError> {
        self.pcrs
            .get(&index)
            .cloned()
            .ok_or_else(|| NsmError::Request(format!("PCR{index} does not exist; the NSM has {PCR_COUNT}")))
    }
}

fn unix_millis() -> u64 {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

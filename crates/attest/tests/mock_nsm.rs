//! The development NSM: its documents go through the production verifier.
#![cfg(feature = "mock")]
#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use keyward_attest::{
    AttestationRequest, ChainPosition, MockNsm, Nsm, NsmError, NsmKind, PKI_DIR_NAME, Pcr, RootCertificate, UnixTime,
    VerifyError, VerifyOptions, mock_measurements, parse, verify,
};
use tempfile::TempDir;

const PCR1_HEX: &str =
    "7be562be307de5c4de6cf1143367612dca6a6e84d59ca03f38ac9b6588a589a388894142f0e6f84bbc91caacf57f5b45";
const PCR2_HEX: &str =
    "0cc0fca4e72e2f635e0c7795dd8c702b2379a74f293a543fa7323e252153b857c37b75dda006189e16d149074bc38dc4";

struct Setup {
    dir: TempDir,
    binary: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("enclave-binary");
        std::fs::write(&binary, b"\x7fELF pretend enclave binary v1").unwrap();
        Self { dir, binary }
    }
    fn pki_dir(&self) -> PathBuf {
        self.dir.path().join("pki")
    }
    fn open(&self) -> MockNsm {
        MockNsm::open(&self.pki_dir(), &self.binary).unwrap()
    }
}

fn dev_options(nsm: &MockNsm) -> VerifyOptions {
    VerifyOptions::new(nsm.root_certificate().clone(), UnixTime::now()).expect_measurements(nsm.measurements())
}

#[test]
fn documents_verify_against_the_dev_root_now_with_the_mock_pcrs() {
    let setup = Setup::new();
    let nsm = setup.open();
    assert_eq!(nsm.kind(), NsmKind::Mock);
    let request = AttestationRequest {
        public_key: Some(b"rsa spki".to_vec()),
        user_data: Some(vec![7; 1024]),
        nonce: Some(b"nonce".to_vec()),
    };
    let document = nsm.attest(&request).unwrap();
    let options = dev_options(&nsm)
        .expect_nonce(b"nonce".to_vec())
        .expect_user_data(vec![7; 1024])
        .expect_public_key(b"rsa spki".to_vec());
    let verified = verify(&document, &options).unwrap();
    let payload = verified.payload();
    assert_eq!(payload.module_id(), nsm.module_id());
    assert_eq!(payload.pcrs().len(), 16);
    assert!(payload.pcrs().values().all(|pcr| pcr.as_bytes().len() == 48));
    assert!((3..16).all(|i| payload.pcr(i).unwrap().is_zero()));
    assert_eq!(payload.cabundle().len(), 4);
    assert_eq!(payload.cabundle()[0], nsm.root_certificate().der());
}

#[test]
fn documents_are_rejected_against_the_aws_root() {
    let setup = Setup::new();
    let nsm = setup.open();
    let document = nsm.attest(&AttestationRequest::default()).unwrap();
    let options = VerifyOptions::new(RootCertificate::aws_nitro_root_g1(), UnixTime::now());
    assert!(matches!(verify(&document, &options), Err(VerifyError::UntrustedRoot { .. })));
}

#[test]
fn pcr0_is_the_sha384_of_the_binary_and_changes_with_it() {
    let setup = Setup::new();
    let before = mock_measurements(&setup.binary).unwrap();
    assert_eq!(before.pcr0, Pcr::sha384_of(&std::fs::read(&setup.binary).unwrap()));
    let old_document = setup.open().attest(&AttestationRequest::default()).unwrap();

    let mut bytes = std::fs::read(&setup.binary).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&setup.binary, &bytes).unwrap();
    let after = mock_measurements(&setup.binary).unwrap();
    assert_ne!(before.pcr0, after.pcr0);
    assert_eq!((&before.pcr1, &before.pcr2), (&after.pcr1, &after.pcr2));

    // The old document does not pass as the new build.
    let nsm = setup.open();
    let err = verify(&old_document, &dev_options(&nsm)).unwrap_err();
    assert!(matches!(err, VerifyError::PcrMismatch { index: 0, .. }), "{err}");
    verify(&nsm.attest(&AttestationRequest::default()).unwrap(), &dev_options(&nsm)).unwrap();
}

#[test]
fn pcr1_and_pcr2_are_the_documented_constants() {
    let setup = Setup::new();
    let measurements = mock_measurements(&setup.binary).unwrap();
    assert_eq!(measurements.pcr1.to_hex(), PCR1_HEX);
    assert_eq!(measurements.pcr2.to_hex(), PCR2_HEX);
    let nsm = setup.open();
    assert_eq!(nsm.describe_pcr(1).unwrap().to_hex(), PCR1_HEX);
    assert!(nsm.describe_pcr(16).is_err());
}

#[test]
fn measuring_a_missing_binary_names_the_file() {
    let err = mock_measurements(Path::new("/nonexistent/enclave")).unwrap_err();
    assert!(matches!(err, NsmError::Measurement { .. }));
    assert!(err.to_string().contains("/nonexistent/enclave"), "{err}");
}

#[test]
fn concurrent_opens_on_an_empty_dir_end_with_one_pki() {
    let setup = Setup::new();
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (barrier, pki_dir, binary) = (barrier.clone(), setup.pki_dir(), setup.binary.clone());
            std::thread::spawn(move || {
                barrier.wait();
                MockNsm::open(&pki_dir, &binary).unwrap().root_certificate().clone()
            })
        })
        .collect();
    let roots: Vec<RootCertificate> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(roots.windows(2).all(|w| w[0] == w[1]), "processes ended with different PKIs");
    let entries: Vec<_> =
        std::fs::read_dir(setup.pki_dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(entries, [PKI_DIR_NAME], "temporary directories were left behind");
}

#[test]
fn reopening_loads_the_same_pki() {
    let setup = Setup::new();
    let first = setup.open().root_certificate().clone();
    assert_eq!(setup.open().root_certificate(), &first);
    assert_eq!(MockNsm::root_pem(&setup.pki_dir()).unwrap(), first.to_pem());
    assert_eq!(RootCertificate::from_pem(&MockNsm::root_pem(&setup.pki_dir()).unwrap()).unwrap(), first);
}

#[test]
fn root_pem_creates_the_pki_when_read_first() {
    let setup = Setup::new();
    let pem = MockNsm::root_pem(&setup.pki_dir()).unwrap();
    assert_eq!(setup.open().root_certificate().to_pem(), pem);
}

#[cfg(unix)]
#[test]
fn private_key_files_are_mode_0600_and_the_directory_0700() {
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new();
    let nsm = setup.open();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let keys: Vec<_> = std::fs::read_dir(nsm.pki_path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".key.pem"))
        .collect();
    assert_eq!(keys.len(), 1);
    for key in keys {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
        assert!(std::fs::read_to_string(&key).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    }
    assert_eq!(mode(nsm.pki_path()), 0o700);
}

#[test]
fn a_damaged_pki_gives_a_clear_error() {
    let setup = Setup::new();
    let nsm = setup.open();
    std::fs::remove_file(nsm.pki_path().join("zonal-ca.pem")).unwrap();
    let err = MockNsm::open(&setup.pki_dir(), &setup.binary).unwrap_err();
    assert!(matches!(err, NsmError::Pki(_)));
    assert!(err.to_string().contains("zonal-ca.pem"), "{err}");

    // A certificate from a different PKI breaks the chain; the self-test says so.
    let other = Setup::new();
    let other_nsm = other.open();
    std::fs::copy(other_nsm.pki_path().join("zonal-ca.pem"), nsm.pki_path().join("zonal-ca.pem")).unwrap();
    let err = MockNsm::open(&setup.pki_dir(), &setup.binary).unwrap_err();
    assert!(err.to_string().contains("delete this directory"), "{err}");
}

#[test]
fn documents_are_laid_out_like_the_nsm_s() {
    let setup = Setup::new();
    let nsm = setup.open();
    let request = AttestationRequest { nonce: Some(vec![1; 32]), ..AttestationRequest::default() };
    let document = nsm.attest(&request).unwrap();
    // Untagged array of 4, protected {1: -35} as bytes, empty unprotected map, payload bstr
    // with a 2-byte length, 96-byte signature last.
    assert_eq!(&document[..8], &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x59]);
    let payload_len = usize::from(u16::from_be_bytes([document[8], document[9]]));
    assert_eq!(document.len(), 10 + payload_len + 2 + 96);
    assert_eq!(&document[10 + payload_len..12 + payload_len], &[0x58, 0x60]);

    let payload = &document[10..10 + payload_len];
    assert_eq!(payload[0], 0xa9, "definite map of 9 entries");
    let keys =
        ["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "public_key", "user_data", "nonce"];
    let positions: Vec<usize> = keys
        .iter()
        .map(|key| {
            let mut encoded = vec![0x60 + u8::try_from(key.len()).unwrap()];
            encoded.extend_from_slice(key.as_bytes());
            payload.windows(encoded.len()).position(|w| w == encoded).unwrap()
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "keys out of AWS order: {positions:?}");
    assert!(contains(payload, b"\x66digest\x66SHA384"));
    assert!(contains(payload, b"\x6apublic_key\xf6"), "absent public_key is null");
    assert!(contains(payload, b"\x69user_data\xf6"), "absent user_data is null");
    assert!(contains(payload, b"\x64pcrs\xb0\x00\x58\x30"), "16 PCRs of 48 bytes");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn leaf_is_fresh_per_document_and_valid_about_three_hours() {
    let setup = Setup::new();
    let nsm = setup.open();
    let now = UnixTime::now().as_secs();
    let first = nsm.attest(&AttestationRequest::default()).unwrap();
    let second = nsm.attest(&AttestationRequest::default()).unwrap();
    let leaf = |doc: &[u8]| parse(doc).unwrap().unverified_payload().certificate().to_vec();
    assert_ne!(leaf(&first), leaf(&second));
    let verified = verify(&first, &dev_options(&nsm)).unwrap();
    let lifetime = verified.leaf_not_after().as_secs() - now;
    assert!((3 * 3600 - 60..=3 * 3600 + 60).contains(&lifetime), "{lifetime}");
    let timestamp_s = verified.payload().timestamp_ms() / 1000;
    assert!(timestamp_s.abs_diff(now) < 60);

    let later = UnixTime::from_secs(now + 3 * 3600 + 120);
    let options = VerifyOptions::new(nsm.root_certificate().clone(), later);
    assert!(matches!(
        verify(&first, &options),
        Err(VerifyError::CertificateExpired { position: ChainPosition::Leaf, .. })
    ));
}

#[test]
fn refuses_fields_longer_than_the_nsm_allows() {
    let setup = Setup::new();
    let nsm = setup.open();
    for request in [
        AttestationRequest { nonce: Some(vec![0; 1025]), ..AttestationRequest::default() },
        AttestationRequest { user_data: Some(vec![0; 1025]), ..AttestationRequest::default() },
        AttestationRequest { public_key: Some(vec![0; 1025]), ..AttestationRequest::default() },
    ] {
        assert!(matches!(nsm.attest(&request), Err(NsmError::Request(_))));
    }
}

#[test]
fn random_fills_the_buffer_from_the_os() {
    let setup = Setup::new();
    let nsm = setup.open();
    let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
    nsm.random(&mut a).unwrap();
    nsm.random(&mut b).unwrap();
    assert_ne!(a, b);
    assert_ne!(a, [0; 64]);
}

#[test]
fn debug_output_shows_no_key_material() {
    let setup = Setup::new();
    let nsm = setup.open();
    let debug = format!("{nsm:?}");
    assert!(debug.contains("MockNsm") && !debug.contains("PRIVATE"), "{debug}");
}

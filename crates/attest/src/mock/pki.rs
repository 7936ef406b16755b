//! The development PKI: root → regional → zonal → instance CA (the 4-certificate cabundle),
//! generated on first use into `<pki_dir>/mock-nsm-pki/` and loaded afterwards.
//!
//! Creation is race-free across processes: the PKI is written into a private temporary
//! directory next to the final one and renamed into place. `rename` of a directory onto an
//! existing non-empty directory fails, so exactly one creator wins and every other process
//! discards its own attempt and loads the winner's.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P384_SHA384, PublicKeyData, SerialNumber, SignatureAlgorithm,
};

use zeroize::Zeroizing;

use super::names::{instance_name, leaf_name, regional_name, root_name, zonal_name};
use crate::chain::verify_chain;
use crate::{NsmError, RootCertificate, UnixTime};

/// The directory, inside the caller's `pki_dir`, that holds the development PKI.
pub const PKI_DIR_NAME: &str = "mock-nsm-pki";

/// Files in [`PKI_DIR_NAME`], root first; the first four are the cabundle.
const CERT_FILES: [&str; 4] = ["root.pem", "regional-ca.pem", "zonal-ca.pem", "instance-ca.pem"];
/// The instance CA's private key (PKCS#8 PEM, mode 0600): the only key kept, because it is
/// the only one that signs after creation.
const INSTANCE_KEY_FILE: &str = "instance-ca.key.pem";

const HOUR: u64 = 3600;
const YEAR: u64 = 365 * 24 * HOUR;
/// AWS's leaves live about three hours.
const LEAF_LIFETIME: u64 = 3 * HOUR;
/// Leaves start a little in the past so a verifier whose clock lags still accepts them.
const LEAF_BACKDATE: u64 = 5 * 60;

const README: &str = "\
Development PKI of keyward's mock NSM (crate keyward-attest, feature `mock`).
NOT a production trust anchor: anyone with this directory can forge attestation documents.
root.pem is what the dev KMS and dev clients pin. Delete this directory to generate a new PKI.
Files: root.pem, regional-ca.pem, zonal-ca.pem, instance-ca.pem (the cabundle, root first),
instance-ca.key.pem (the key that signs the per-document leaf certificates; mode 0600).
";

/// A loaded PKI, ready to issue leaf certificates.
pub(crate) struct Pki {
    pub(crate) root: RootCertificate,
    /// DER, root first.
    pub(crate) cabundle: Vec<Vec<u8>>,
    issuer: Issuer<'static, KeyPair>,
    /// `i-` and 17 hex digits, like an EC2 instance id; derived from the instance CA key.
    pub(crate) instance_id: String,
    pub(crate) dir: PathBuf,
}

/// A fresh leaf: its certificate and the key that signs one document.
pub(crate) struct Leaf {
    pub(crate) certificate: Vec<u8>,
    pub(crate) key: EcdsaKeyPair,
}

fn pki_error(context: impl std::fmt::Display, e: impl std::fmt::Display) -> NsmError {
    NsmError::Pki(format!("{context}: {e}"))
}

/// Loads the PKI under `pki_dir`, creating it first if there is none.
pub(crate) fn load_or_create(pki_dir: &Path) -> Result<Pki, NsmError> {
    let dir = pki_dir.join(PKI_DIR_NAME);
    if !dir.exists() {
        create(pki_dir, &dir)?;
    }
    load(&dir)
}

fn create(pki_dir: &Path, dir: &Path) -> Result<(), NsmError> {
    fs::create_dir_all(pki_dir).map_err(|e| pki_error(pki_dir.display(), e))?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| pki_error("randomness", e))?;
    let tmp = pki_dir.join(format!(".{PKI_DIR_NAME}.tmp-{}-{}", std::process::id(), hex::encode(suffix)));
    let result = make_private_dir(&tmp)
        .and_then(|()| write_new_pki(&tmp))
        .and_then(|()| fs::rename(&tmp, dir).map_err(|e| pki_error(format!("rename into {}", dir.display()), e)));
    if result.is_err() {
        // Best effort: the temporary directory is ours alone, and its name marks it as junk.
        let _ = fs::remove_dir_all(&tmp);
        if dir.is_dir() {
            // Another process created the PKI first; use theirs.
            return Ok(());
        }
    }
    result
}

fn write_new_pki(dir: &Path) -> Result<(), NsmError> {
    let now = unix_now();
    let generate = || KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(|e| pki_error("generate P-384 key", e));
    let (root_key, regional_key, zonal_key, instance_key) = (generate()?, generate()?, generate()?, generate()?);
    let instance_id = instance_id(&instance_key);

    let (root_params, regional_params, zonal_params, instance_params) = (
        ca_params(root_name()?, BasicConstraints::Unconstrained, now, 30 * YEAR)?,
        ca_params(regional_name(&random_label()?)?, BasicConstraints::Constrained(2), now, 10 * YEAR)?,
        ca_params(zonal_name(&random_label()?)?, BasicConstraints::Constrained(1), now, 10 * YEAR)?,
        instance_ca_params(&instance_id, now)?,
    );
    let sign_error = |e: rcgen::Error| pki_error("sign certificate", e);
    let root_cert = root_params.self_signed(&root_key).map_err(sign_error)?;
    let root_issuer = Issuer::new(root_params, root_key);
    let regional_cert = regional_params.signed_by(&regional_key, &root_issuer).map_err(sign_error)?;
    let regional_issuer = Issuer::new(regional_params, regional_key);
    let zonal_cert = zonal_params.signed_by(&zonal_key, &regional_issuer).map_err(sign_error)?;
    let zonal_issuer = Issuer::new(zonal_params, zonal_key);
    let instance_cert = instance_params.signed_by(&instance_key, &zonal_issuer).map_err(sign_error)?;

    for (name, cert) in CERT_FILES.iter().zip([&root_cert, &regional_cert, &zonal_cert, &instance_cert]) {
        write_file(&dir.join(name), cert.pem().as_bytes(), 0o644)?;
    }
    let key_pem = Zeroizing::new(instance_key.serialize_pem());
    write_file(&dir.join(INSTANCE_KEY_FILE), key_pem.as_bytes(), 0o600)?;
    write_file(&dir.join("README.txt"), README.as_bytes(), 0o644)
}

fn load(dir: &Path) -> Result<Pki, NsmError> {
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).map_err(|e| pki_error(path.display(), e))
    };
    let mut cabundle = Vec::with_capacity(CERT_FILES.len());
    for name in CERT_FILES {
        let pem = read(name)?;
        let (label, der) =
            der::pem::decode_vec(pem.trim().as_bytes()).map_err(|e| pki_error(dir.join(name).display(), e))?;
        if label != "CERTIFICATE" {
            return Err(pki_error(dir.join(name).display(), format!("PEM label {label:?}")));
        }
        cabundle.push(der);
    }
    let root_der = cabundle.first().map_or(&[][..], Vec::as_slice);
    let root = RootCertificate::from_der(root_der).map_err(|e| pki_error(dir.join(CERT_FILES[0]).display(), e))?;
    let key_pem = Zeroizing::new(read(INSTANCE_KEY_FILE)?);
    let key = KeyPair::from_pem(&key_pem).map_err(|e| pki_error(dir.join(INSTANCE_KEY_FILE).display(), e))?;
    if key.algorithm() != &PKCS_ECDSA_P384_SHA384 {
        return Err(pki_error(dir.join(INSTANCE_KEY_FILE).display(), "not a P-384 key"));
    }
    let instance_id = instance_id(&key);
    let issuer = Issuer::new(instance_ca_params(&instance_id, 0)?, key);
    let pki = Pki { root, cabundle, issuer, instance_id, dir: dir.to_path_buf() };

    // Self-test: a leaf issued now must verify, which proves the files belong together and
    // the CA certificates are still valid.
    let at = UnixTime::from_secs(unix_now());
    let leaf = pki.issue_leaf("i-00000000000000000-enc0000000000000000", &[0; 8], at.as_secs())?;
    verify_chain(&pki.cabundle, &leaf.certificate, &pki.root, at).map_err(|e| {
        pki_error(dir.display(), format_args!("{e}; delete this directory to generate a new development PKI"))
    })?;
    Ok(pki)
}

impl Pki {
    /// Issues a leaf for one document, styled like AWS's: CN `<module_id>.<region>…`, serial =
    /// enclave id ‖ 0x00000000 ‖ seconds, valid about three hours, basicConstraints CA:FALSE
    /// (critical), keyUsage digitalSignature + nonRepudiation (not critical), no key
    /// identifiers.
    pub(crate) fn issue_leaf(&self, module_id: &str, enclave_id: &[u8; 8], now: u64) -> Result<Leaf, NsmError> {
        let key = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).map_err(|e| pki_error("leaf key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = leaf_name(module_id)?;
        params.not_before = datetime(now.saturating_sub(LEAF_BACKDATE))?;
        params.not_after = datetime(now + LEAF_LIFETIME)?;
        let mut serial = enclave_id.to_vec();
        serial.extend_from_slice(&[0; 4]);
        serial.extend_from_slice(&u32::try_from(now).unwrap_or(u32::MAX).to_be_bytes());
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        // Written by hand rather than through `is_ca`/`key_usages`, which would add a subject
        // key identifier and make keyUsage critical; AWS leaves have neither.
        let mut basic_constraints = CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]); // cA FALSE
        basic_constraints.set_criticality(true);
        // keyUsage BIT STRING: digitalSignature (bit 0) and nonRepudiation (bit 1).
        let key_usage = CustomExtension::from_oid_content(&[2, 5, 29, 15], vec![0x03, 0x02, 0x06, 0xc0]);
        params.custom_extensions = vec![basic_constraints, key_usage];
        let public_key = RawP384PublicKey(key.public_key().as_ref());
        let cert = params.signed_by(&public_key, &self.issuer).map_err(|e| pki_error("sign leaf", e))?;
        Ok(Leaf { certificate: cert.der().to_vec(), key })
    }
}

/// A P-384 public key as rcgen needs it to write a SubjectPublicKeyInfo.
struct RawP384PublicKey<'a>(&'a [u8]);

impl PublicKeyData for RawP384PublicKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P384_SHA384
    }
}

fn ca_params(
    name: DistinguishedName,
    constraints: BasicConstraints,
    now: u64,
    lifetime: u64,
) -> Result<CertificateParams, NsmError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name;
    params.not_before = datetime(now.saturating_sub(HOUR))?;
    params.not_after = datetime(now + lifetime)?;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Like AWS: intermediates carry an authority key identifier, the root does not.
    params.use_authority_key_identifier_extension = !matches!(constraints, BasicConstraints::Unconstrained);
    Ok(params)
}

/// The instance CA. Rebuilt on load with the same name, which must match the stored
/// certificate byte for byte (the load self-test checks that it does).
fn instance_ca_params(instance_id: &str, now: u64) -> Result<CertificateParams, NsmError> {
    let mut params = ca_params(instance_name(instance_id)?, BasicConstraints::Constrained(0), now, 10 * YEAR)?;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    Ok(params)
}

/// `i-` and 17 hex digits of the SHA-256 of the instance CA's public key.
fn instance_id(key: &KeyPair) -> String {
    let digest = crate::root::sha256(&key.subject_public_key_info());
    let hex_digits = hex::encode(digest);
    format!("i-{}", hex_digits.get(..17).unwrap_or(&hex_digits))
}

fn random_label() -> Result<String, NsmError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| pki_error("randomness", e))?;
    Ok(hex::encode(bytes))
}

/// A positive 16-byte serial number.
fn random_serial() -> Result<[u8; 16], NsmError> {
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| pki_error("randomness", e))?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    Ok(serial)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

fn datetime(secs: u64) -> Result<time::OffsetDateTime, NsmError> {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or_else(|| pki_error("certificate validity", format!("{secs} s is out of range")))
}

#[cfg(unix)]
fn make_private_dir(path: &Path) -> Result<(), NsmError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(0o700).create(path).map_err(|e| pki_error(path.display(), e))
}

#[cfg(not(unix))]
fn make_private_dir(path: &Path) -> Result<(), NsmError> {
    fs::create_dir(path).map_err(|e| pki_error(path.display(), e))
}

/// Creates `path` (which must not exist) with `mode` from the start, so a private key is
/// never readable by others even briefly, and flushes it to disk.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), NsmError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| pki_error(path.display(), e))?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(|e| pki_error(path.display(), e))
}

//! The pinned root certificate.

use std::borrow::Cow;
use std::fmt;

use crate::chain::ParsedCertificate;
use crate::{ChainPosition, VerifyError};

/// AWS Nitro Enclaves Root-G1 (DER), as published by AWS.
const AWS_NITRO_ROOT_G1_DER: &[u8] = include_bytes!("../data/aws_nitro_enclaves_root_g1.der");

/// The certificate a document's chain must start with. `cabundle[0]` must equal it byte for
/// byte.
#[derive(Clone, PartialEq, Eq)]
pub struct RootCertificate {
    der: Cow<'static, [u8]>,
}

impl RootCertificate {
    /// AWS Nitro Enclaves Root-G1 (CN=aws.nitro-enclaves, P-384, valid 2019-10-28 ..
    /// 2049-10-28; SHA-256 of the DER
    /// `641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b`), built in.
    pub fn aws_nitro_root_g1() -> Self {
        Self { der: Cow::Borrowed(AWS_NITRO_ROOT_G1_DER) }
    }

    /// A root from DER, e.g. the mock NSM's development root. It must be a self-signed P-384
    /// CA certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, VerifyError> {
        let invalid = |e: VerifyError| VerifyError::InvalidRootCertificate(e.to_string());
        let parsed = ParsedCertificate::parse(der, ChainPosition::CaBundle(0)).map_err(invalid)?;
        parsed.check_self_signed().map_err(invalid)?;
        Ok(Self { der: Cow::Owned(der.to_vec()) })
    }

    /// A root from a PEM `CERTIFICATE` block.
    pub fn from_pem(pem: &str) -> Result<Self, VerifyError> {
        let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| VerifyError::InvalidRootCertificate(format!("not PEM: {e}")))?;
        if label != "CERTIFICATE" {
            return Err(VerifyError::InvalidRootCertificate(format!(
                "PEM label is {label:?}, expected \"CERTIFICATE\""
            )));
        }
        Self::from_der(&der)
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM (`-----BEGIN CERTIFICATE-----`, LF line endings).
    pub fn to_pem(&self) -> String {
        // Encoding a bounded byte string into PEM cannot fail; an empty string is returned if
        // it somehow did, which no pin accepts.
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &self.der).unwrap_or_default()
    }

    /// SHA-256 of the DER, the fingerprint AWS publishes for Root-G1.
    pub fn sha256_fingerprint(&self) -> [u8; 32] {
        sha256(&self.der)
    }
}

impl fmt::Debug for RootCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootCertificate").field("sha256", &hex::encode(self.sha256_fingerprint())).finish()
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn built_in_aws_root_has_the_published_fingerprint() {
        assert_eq!(
            hex::encode(RootCertificate::aws_nitro_root_g1().sha256_fingerprint()),
            "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
        );
    }

    #[test]
    fn built_in_aws_root_is_a_valid_self_signed_p384_root() {
        let root = RootCertificate::aws_nitro_root_g1();
        assert_eq!(RootCertificate::from_der(root.der()).unwrap(), root);
    }

    #[test]
    fn pem_round_trips() {
        let root = RootCertificate::aws_nitro_root_g1();
        assert_eq!(RootCertificate::from_pem(&root.to_pem()).unwrap(), root);
    }

    #[test]
    fn refuses_garbage_and_other_pem_labels() {
        assert!(RootCertificate::from_der(b"not a certificate").is_err());
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(RootCertificate::from_pem(key), Err(VerifyError::InvalidRootCertificate(_))));
    }
}

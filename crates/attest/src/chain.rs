//! The certificate chain: pinned root → CA certificates → leaf, ECDSA P-384 / SHA-384
//! throughout, as every real Nitro chain is.
//!
//! Authority/subject key identifiers are not required: real AWS leaves have no AKI and some
//! instance CAs have no SKI. Issuers are matched by name and proven by signature instead.

use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
use der::asn1::ObjectIdentifier;
use der::{Decode, Reader, SliceReader};
use x509_cert::Certificate;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};

use crate::{ChainPosition, RootCertificate, UnixTime, VerifyError};

// `new_unwrap` runs at compile time here: a malformed OID would fail the build, not panic.
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ID_CE_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const ID_CE_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");

/// A certificate decoded once, with the pieces verification needs.
#[derive(Debug)]
pub(crate) struct ParsedCertificate {
    position: ChainPosition,
    cert: Certificate,
    /// The signed bytes exactly as they appear in the input (never re-encoded).
    tbs_der: Vec<u8>,
    /// The uncompressed P-384 point (0x04 || x || y).
    public_key: Vec<u8>,
    /// The ASN.1 DER ECDSA signature.
    signature: Vec<u8>,
    basic_constraints: Option<BasicConstraints>,
    key_usage: Option<KeyUsage>,
    pub(crate) not_before: UnixTime,
    pub(crate) not_after: UnixTime,
}

impl ParsedCertificate {
    /// Decodes strict DER X.509 and refuses anything but ECDSA P-384 / SHA-384, duplicate
    /// extensions and critical extensions other than basicConstraints and keyUsage.
    pub(crate) fn parse(der: &[u8], position: ChainPosition) -> Result<Self, VerifyError> {
        let malformed = |reason: String| VerifyError::MalformedCertificate { position, reason };
        let unsupported = |what: String| VerifyError::UnsupportedCertificateAlgorithm { position, what };

        let cert = Certificate::from_der(der).map_err(|e| malformed(e.to_string()))?;
        let tbs_der = raw_tbs(der).map_err(|e| malformed(e.to_string()))?.to_vec();

        if cert.signature_algorithm != cert.tbs_certificate.signature {
            return Err(malformed("outer and inner signature algorithms differ".into()));
        }
        let sig_alg = &cert.signature_algorithm;
        if sig_alg.oid != ECDSA_WITH_SHA384 || sig_alg.parameters.is_some() {
            return Err(unsupported(format!("signature algorithm {}", sig_alg.oid)));
        }
        let spki = &cert.tbs_certificate.subject_public_key_info;
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if spki.algorithm.oid != ID_EC_PUBLIC_KEY || curve != Some(SECP384R1) {
            return Err(unsupported(format!(
                "public key {} on curve {}",
                spki.algorithm.oid,
                curve.map_or_else(|| "(none)".to_owned(), |c| c.to_string())
            )));
        }
        let public_key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| malformed("public key bit string has unused bits".into()))?
            .to_vec();
        let signature =
            cert.signature.as_bytes().ok_or_else(|| malformed("signature bit string has unused bits".into()))?.to_vec();

        let mut basic_constraints = None;
        let mut key_usage = None;
        let mut seen = Vec::new();
        for ext in cert.tbs_certificate.extensions.iter().flatten() {
            if seen.contains(&ext.extn_id) {
                return Err(malformed(format!("extension {} appears twice", ext.extn_id)));
            }
            seen.push(ext.extn_id);
            let value = ext.extn_value.as_bytes();
            if ext.extn_id == ID_CE_BASIC_CONSTRAINTS {
                basic_constraints =
                    Some(BasicConstraints::from_der(value).map_err(|e| malformed(format!("basicConstraints: {e}")))?);
            } else if ext.extn_id == ID_CE_KEY_USAGE {
                key_usage = Some(KeyUsage::from_der(value).map_err(|e| malformed(format!("keyUsage: {e}")))?);
            } else if ext.critical {
                return Err(VerifyError::UnsupportedCriticalExtension { position, oid: ext.extn_id.to_string() });
            }
        }

        let validity = &cert.tbs_certificate.validity;
        let not_before = UnixTime::from_secs(validity.not_before.to_unix_duration().as_secs());
        let not_after = UnixTime::from_secs(validity.not_after.to_unix_duration().as_secs());

        Ok(Self { position, cert, tbs_der, public_key, signature, basic_constraints, key_usage, not_before, not_after })
    }

    /// The uncompressed P-384 public key.
    pub(crate) fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Checks that `self` signed `subject`, and is allowed to: names chain, `self` is a CA
    /// whose path length allows `cas_below` further CA certificates, and its key usage (if
    /// stated) includes keyCertSign.
    fn check_issued(&self, subject: &Self, cas_below: usize) -> Result<(), VerifyError> {
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, &self.public_key)
            .verify(&subject.tbs_der, &subject.signature)
            .map_err(|_| VerifyError::CertificateSignatureInvalid { position: subject.position })?;
        let (issuer, expected) = (&subject.cert.tbs_certificate.issuer, &self.cert.tbs_certificate.subject);
        if issuer != expected {
            return Err(VerifyError::IssuerMismatch {
                position: subject.position,
                issuer: issuer.to_string(),
                expected: expected.to_string(),
            });
        }
        match &self.basic_constraints {
            Some(bc) if bc.ca => {
                if let Some(limit) = bc.path_len_constraint
                    && cas_below > usize::from(limit)
                {
                    return Err(VerifyError::PathLengthExceeded { position: self.position, limit, actual: cas_below });
                }
            }
            _ => {
                return Err(VerifyError::NotCa { position: self.position });
            }
        }
        if let Some(ku) = &self.key_usage
            && !ku.key_cert_sign()
        {
            return Err(VerifyError::KeyUsageNotAllowed { position: self.position, required: "keyCertSign" });
        }
        Ok(())
    }

    /// Checks `not_before <= at <= not_after` (RFC 5280 validity is inclusive).
    pub(crate) fn check_valid_at(&self, at: UnixTime) -> Result<(), VerifyError> {
        let (position, not_before, not_after) = (self.position, self.not_before, self.not_after);
        if at < not_before {
            return Err(VerifyError::CertificateNotYetValid { position, not_before, not_after, at });
        }
        if at > not_after {
            return Err(VerifyError::CertificateExpired { position, not_before, not_after, at });
        }
        Ok(())
    }

    /// Checks that the certificate signed itself (used for roots).
    pub(crate) fn check_self_signed(&self) -> Result<(), VerifyError> {
        self.check_issued(self, 0)
    }
}

/// The `tbsCertificate` element exactly as encoded in `der`.
fn raw_tbs(der: &[u8]) -> der::Result<&[u8]> {
    let mut reader = SliceReader::new(der)?;
    let tbs = reader.sequence(|outer| {
        let tbs = outer.tlv_bytes()?;
        // The algorithm and signature were decoded by `Certificate::from_der`; skip them.
        outer.tlv_bytes()?;
        outer.tlv_bytes()?;
        Ok(tbs)
    })?;
    reader.finish(tbs)
}

/// Verifies `cabundle` (root first) and `leaf` against the pinned `root` at time `at`, and
/// returns the leaf, whose key signs the document.
pub(crate) fn verify_chain(
    cabundle: &[Vec<u8>],
    leaf: &[u8],
    root: &RootCertificate,
    at: UnixTime,
) -> Result<ParsedCertificate, VerifyError> {
    let Some(first) = cabundle.first() else {
        return Err(VerifyError::MalformedPayload("cabundle is empty".into()));
    };
    if first.as_slice() != root.der() {
        return Err(VerifyError::UntrustedRoot {
            found: hex::encode(crate::root::sha256(first)),
            pinned: hex::encode(root.sha256_fingerprint()),
        });
    }
    let mut chain = Vec::with_capacity(cabundle.len() + 1);
    for (i, der) in cabundle.iter().enumerate() {
        chain.push(ParsedCertificate::parse(der, ChainPosition::CaBundle(i))?);
    }
    chain.push(ParsedCertificate::parse(leaf, ChainPosition::Leaf)?);

    for (i, pair) in chain.windows(2).enumerate() {
        let [issuer, subject] = pair else { continue };
        // CA certificates below `issuer` other than the leaf: indices i+1 ..= len-2.
        let cas_below = chain.len().saturating_sub(i + 2);
        issuer.check_issued(subject, cas_below)?;
    }
    for cert in &chain {
        cert.check_valid_at(at)?;
    }
    let leaf = chain.pop().ok_or_else(|| VerifyError::MalformedPayload("no leaf".into()))?;
    if let Some(ku) = &leaf.key_usage
        && !ku.digital_signature()
    {
        return Err(VerifyError::KeyUsageNotAllowed { position: ChainPosition::Leaf, required: "digitalSignature" });
    }
    Ok(leaf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
        PKCS_ECDSA_P384_SHA384, SignatureAlgorithm,
    };

    use super::*;

    const AT: UnixTime = UnixTime::from_secs(1_800_000_000);

    fn params(cn: &str, is_ca: IsCa) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = is_ca;
        params
    }

    fn key(alg: &'static SignatureAlgorithm) -> KeyPair {
        KeyPair::generate_for(alg).unwrap()
    }

    /// Root → each of `cas` in turn → leaf; returns (cabundle, leaf, root).
    fn chain(cas: Vec<CertificateParams>, leaf: CertificateParams) -> (Vec<Vec<u8>>, Vec<u8>, RootCertificate) {
        let root_key = key(&PKCS_ECDSA_P384_SHA384);
        let root_params = params("root", IsCa::Ca(BasicConstraints::Unconstrained));
        let root_der = root_params.self_signed(&root_key).unwrap().der().to_vec();
        let mut issuer = Issuer::new(root_params, root_key);
        let mut cabundle = vec![root_der.clone()];
        for ca in cas {
            let ca_key = key(&PKCS_ECDSA_P384_SHA384);
            cabundle.push(ca.signed_by(&ca_key, &issuer).unwrap().der().to_vec());
            issuer = Issuer::new(ca, ca_key);
        }
        let leaf = leaf.signed_by(&key(&PKCS_ECDSA_P384_SHA384), &issuer).unwrap().der().to_vec();
        (cabundle, leaf, RootCertificate::from_der(&root_der).unwrap())
    }

    fn ca(cn: &str, path_len: u8) -> CertificateParams {
        params(cn, IsCa::Ca(BasicConstraints::Constrained(path_len)))
    }

    fn leaf() -> CertificateParams {
        params("leaf", IsCa::ExplicitNoCa)
    }

    #[test]
    fn accepts_a_well_formed_chain() {
        let (cabundle, leaf, root) = chain(vec![ca("a", 1), ca("b", 0)], leaf());
        verify_chain(&cabundle, &leaf, &root, AT).unwrap();
    }

    #[test]
    fn rejects_an_issuer_that_is_not_a_ca() {
        let (cabundle, leaf, root) = chain(vec![params("a", IsCa::ExplicitNoCa)], leaf());
        let err = verify_chain(&cabundle, &leaf, &root, AT).unwrap_err();
        assert!(matches!(err, VerifyError::NotCa { position: ChainPosition::CaBundle(1) }), "{err}");
    }

    #[test]
    fn rejects_more_cas_than_a_path_length_allows() {
        let (cabundle, leaf, root) = chain(vec![ca("a", 0), ca("b", 0)], leaf());
        let err = verify_chain(&cabundle, &leaf, &root, AT).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::PathLengthExceeded { position: ChainPosition::CaBundle(1), limit: 0, actual: 1 }
            ),
            "{err}"
        );
    }

    #[test]
    fn rejects_an_issuer_whose_key_usage_excludes_certificate_signing() {
        let mut a = ca("a", 0);
        a.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let (cabundle, leaf, root) = chain(vec![a], leaf());
        let err = verify_chain(&cabundle, &leaf, &root, AT).unwrap_err();
        assert!(matches!(err, VerifyError::KeyUsageNotAllowed { required: "keyCertSign", .. }), "{err}");
    }

    #[test]
    fn rejects_a_certificate_naming_another_issuer_even_if_the_signature_verifies() {
        let root_key = key(&PKCS_ECDSA_P384_SHA384);
        let root_params = params("root", IsCa::Ca(BasicConstraints::Unconstrained));
        let root_der = root_params.self_signed(&root_key).unwrap().der().to_vec();
        // Same key, different name: the signature is good, the names do not chain.
        let impostor = Issuer::new(params("not the root", IsCa::Ca(BasicConstraints::Unconstrained)), root_key);
        let leaf = leaf().signed_by(&key(&PKCS_ECDSA_P384_SHA384), &impostor).unwrap().der().to_vec();
        let root = RootCertificate::from_der(&root_der).unwrap();
        let err = verify_chain(&[root_der], &leaf, &root, AT).unwrap_err();
        assert!(matches!(err, VerifyError::IssuerMismatch { position: ChainPosition::Leaf, .. }), "{err}");
    }

    #[test]
    fn rejects_keys_other_than_p384() {
        let root_key = key(&PKCS_ECDSA_P384_SHA384);
        let root_params = params("root", IsCa::Ca(BasicConstraints::Unconstrained));
        let root_der = root_params.self_signed(&root_key).unwrap().der().to_vec();
        let issuer = Issuer::new(root_params, root_key);
        let leaf = leaf().signed_by(&key(&PKCS_ECDSA_P256_SHA256), &issuer).unwrap().der().to_vec();
        let root = RootCertificate::from_der(&root_der).unwrap();
        let err = verify_chain(&[root_der], &leaf, &root, AT).unwrap_err();
        assert!(
            matches!(err, VerifyError::UnsupportedCertificateAlgorithm { position: ChainPosition::Leaf, .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_p256_root_to_pin() {
        let root_key = key(&PKCS_ECDSA_P256_SHA256);
        let der = params("root", IsCa::Ca(BasicConstraints::Unconstrained)).self_signed(&root_key).unwrap();
        assert!(matches!(RootCertificate::from_der(der.der()), Err(VerifyError::InvalidRootCertificate(_))));
    }
}

//! What can go wrong parsing or verifying an attestation document.

use std::fmt;

use crate::UnixTime;

/// Where a certificate sits in the document's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainPosition {
    /// `cabundle[i]`; `cabundle[0]` is the root.
    CaBundle(usize),
    /// The `certificate` field: the leaf whose key signs the document.
    Leaf,
}

impl fmt::Display for ChainPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CaBundle(0) => f.write_str("root certificate (cabundle[0])"),
            Self::CaBundle(i) => write!(f, "CA certificate cabundle[{i}]"),
            Self::Leaf => f.write_str("leaf certificate"),
        }
    }
}

/// Why an attestation document was refused. Each variant names the check that failed; none
/// carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The input is longer than any NSM document can be.
    #[error("attestation document is {len} bytes; at most {max} are accepted")]
    DocumentTooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a COSE_Sign1 structure (a CBOR array of 4, optionally under tag 18).
    #[error("not a COSE_Sign1 attestation document: {0}")]
    MalformedCose(String),
    /// The protected header is not exactly `{1: -35}` (alg ES384).
    #[error("unsupported COSE protected header ({0}); only {{1: -35}} (ES384) is accepted")]
    UnsupportedAlgorithm(String),
    /// The payload is not a well-formed attestation document map.
    #[error("malformed attestation payload: {0}")]
    MalformedPayload(String),
    /// A payload field is longer than the NSM allows.
    #[error("attestation field `{field}` is {len} bytes; at most {max} are accepted")]
    FieldTooLarge {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A PCR value supplied by the caller is not 32, 48 or 64 bytes (of hex).
    #[error("invalid PCR value: {0}")]
    InvalidPcrValue(String),
    /// The root certificate to pin cannot be used.
    #[error("invalid root certificate: {0}")]
    InvalidRootCertificate(String),
    /// `cabundle[0]` is not byte-for-byte the pinned root.
    #[error(
        "the document's root certificate (cabundle[0], SHA-256 {found}) is not the pinned \
         root (SHA-256 {pinned}); the document was not issued under the trusted PKI"
    )]
    UntrustedRoot {
        /// SHA-256 of the document's `cabundle[0]`, hex.
        found: String,
        /// SHA-256 of the pinned root, hex.
        pinned: String,
    },
    /// A certificate in the chain is not valid DER X.509.
    #[error("{position}: malformed certificate: {reason}")]
    MalformedCertificate {
        /// Which certificate.
        position: ChainPosition,
        /// What the parser said.
        reason: String,
    },
    /// A certificate uses a key or signature other than ECDSA P-384 with SHA-384.
    #[error("{position}: {what}; only ECDSA P-384 with SHA-384 is accepted")]
    UnsupportedCertificateAlgorithm {
        /// Which certificate.
        position: ChainPosition,
        /// What was found instead.
        what: String,
    },
    /// A certificate's issuer is not the subject of the certificate before it.
    #[error("{position}: issuer `{issuer}` is not the subject `{expected}` of the certificate before it")]
    IssuerMismatch {
        /// Which certificate.
        position: ChainPosition,
        /// Its issuer name.
        issuer: String,
        /// The subject of the certificate before it.
        expected: String,
    },
    /// A certificate's signature does not verify under the key of the certificate before it.
    #[error(
        "{position}: signature does not verify under its issuer's key; the certificate was altered or not issued by that CA"
    )]
    CertificateSignatureInvalid {
        /// Which certificate.
        position: ChainPosition,
    },
    /// A certificate issues the next one but is not a CA (basicConstraints cA absent or false).
    #[error("{position}: issues the next certificate but is not a CA (basicConstraints cA missing or false)")]
    NotCa {
        /// Which certificate.
        position: ChainPosition,
    },
    /// More CA certificates follow than a pathLenConstraint allows.
    #[error("{position}: pathLenConstraint {limit} allows fewer than the {actual} CA certificates below it")]
    PathLengthExceeded {
        /// Which certificate.
        position: ChainPosition,
        /// Its pathLenConstraint.
        limit: u8,
        /// CA certificates that follow it.
        actual: usize,
    },
    /// A keyUsage extension does not allow what the certificate is used for.
    #[error("{position}: keyUsage does not include {required}")]
    KeyUsageNotAllowed {
        /// Which certificate.
        position: ChainPosition,
        /// The missing usage.
        required: &'static str,
    },
    /// A certificate has a critical extension this verifier does not understand (RFC 5280 says
    /// to refuse it).
    #[error("{position}: unsupported critical extension {oid}")]
    UnsupportedCriticalExtension {
        /// Which certificate.
        position: ChainPosition,
        /// The extension's OID.
        oid: String,
    },
    /// A certificate is not valid yet at the verification time.
    #[error("{position}: not valid until {not_before} (validity {not_before} .. {not_after}), checked at {at}")]
    CertificateNotYetValid {
        /// Which certificate.
        position: ChainPosition,
        /// Start of validity.
        not_before: UnixTime,
        /// End of validity.
        not_after: UnixTime,
        /// The verification time.
        at: UnixTime,
    },
    /// A certificate has expired at the verification time.
    #[error("{position}: expired at {not_after} (validity {not_before} .. {not_after}), checked at {at}")]
    CertificateExpired {
        /// Which certificate.
        position: ChainPosition,
        /// Start of validity.
        not_before: UnixTime,
        /// End of validity.
        not_after: UnixTime,
        /// The verification time.
        at: UnixTime,
    },
    /// The COSE_Sign1 signature does not verify under the leaf certificate's key.
    #[error("COSE_Sign1 signature does not verify under the leaf certificate's key; the document was altered")]
    BadSignature,
    /// The document's `digest` is not SHA384.
    #[error("document digest is {0}; only SHA384 is accepted")]
    UnsupportedDigest(String),
    /// An expected PCR is absent from the document.
    #[error("PCR{index} is expected but absent from the document")]
    PcrMissing {
        /// PCR index.
        index: u16,
    },
    /// A PCR differs from every acceptable value.
    #[error("PCR{index} mismatch: document has {actual}, expected one of [{}]", expected.join(", "))]
    PcrMismatch {
        /// PCR index.
        index: u16,
        /// Acceptable values, hex.
        expected: Vec<String>,
        /// The document's value, hex.
        actual: String,
    },
    /// The document's PCR0-2 are not, together, those of any listed build. (Each value may
    /// still appear in some build: during a migration a mix of two builds is neither.)
    #[error(
        "PCR0-2 of the document ({}, {}, {}) are not those of any of the {listed} listed build(s)",
        short(&actual[0]), short(&actual[1]), short(&actual[2])
    )]
    UnknownBuild {
        /// The document's PCR0, PCR1 and PCR2, hex (empty where absent).
        actual: [String; 3],
        /// How many builds were listed.
        listed: usize,
    },
    /// PCR0-2 are all zero: a debug-mode enclave, whose memory the host can read.
    #[error("PCR0-2 are all zero: the document comes from a debug-mode enclave, whose memory its host can read")]
    DebugMode,
    /// The `nonce` is not the expected one.
    #[error("nonce mismatch: document has {}, expected {}", describe(actual.as_deref()), describe(Some(expected)))]
    NonceMismatch {
        /// Expected nonce, hex.
        expected: String,
        /// The document's nonce, hex (`None` if absent or null).
        actual: Option<String>,
    },
    /// The `user_data` is not the expected value.
    #[error("user_data mismatch: document has {}, expected {}", describe(actual.as_deref()), describe(Some(expected)))]
    UserDataMismatch {
        /// Expected user data, hex.
        expected: String,
        /// The document's user data, hex (`None` if absent or null).
        actual: Option<String>,
    },
    /// The `public_key` is not the expected value.
    #[error("public_key mismatch: document has {}, expected {}", describe(actual.as_deref()), describe(Some(expected)))]
    PublicKeyMismatch {
        /// Expected public key, hex.
        expected: String,
        /// The document's public key, hex (`None` if absent or null).
        actual: Option<String>,
    },
}

impl VerifyError {
    /// A stable machine-readable code for the refusal (the CLI prints it; scripts and tests
    /// match it instead of the message).
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::DocumentTooLarge { .. }
            | VerifyError::MalformedCose(_)
            | VerifyError::UnsupportedAlgorithm(_)
            | VerifyError::MalformedPayload(_)
            | VerifyError::FieldTooLarge { .. }
            | VerifyError::UnsupportedDigest(_) => "malformed_document",
            VerifyError::InvalidPcrValue(_) | VerifyError::InvalidRootCertificate(_) => "invalid_expectation",
            VerifyError::UntrustedRoot { .. } => "untrusted_root",
            VerifyError::CertificateNotYetValid { .. } | VerifyError::CertificateExpired { .. } => {
                "certificate_not_valid_now"
            }
            VerifyError::MalformedCertificate { .. }
            | VerifyError::UnsupportedCertificateAlgorithm { .. }
            | VerifyError::IssuerMismatch { .. }
            | VerifyError::CertificateSignatureInvalid { .. }
            | VerifyError::NotCa { .. }
            | VerifyError::PathLengthExceeded { .. }
            | VerifyError::KeyUsageNotAllowed { .. }
            | VerifyError::UnsupportedCriticalExtension { .. } => "bad_certificate_chain",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::PcrMissing { .. } | VerifyError::PcrMismatch { .. } => "pcr_mismatch",
            VerifyError::UnknownBuild { .. } => "unknown_build",
            VerifyError::DebugMode => "debug_mode",
            VerifyError::NonceMismatch { .. } => "nonce_mismatch",
            VerifyError::UserDataMismatch { .. } => "user_data_mismatch",
            VerifyError::PublicKeyMismatch { .. } => "public_key_mismatch",
        }
    }
}

fn short(hex_value: &str) -> String {
    if hex_value.is_empty() { "absent".to_owned() } else { describe(Some(hex_value)) }
}

/// A short description of a hex field for messages: long values are cut, with their length.
fn describe(hex_value: Option<&str>) -> String {
    const SHOWN: usize = 32;
    match hex_value {
        None => "none".to_owned(),
        Some(h) if h.len() <= SHOWN => format!("{h} ({} bytes)", h.len() / 2),
        Some(h) => format!("{}… ({} bytes)", h.get(..SHOWN).unwrap_or(h), h.len() / 2),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn pcr_mismatch_names_the_index_and_both_values() {
        let err =
            VerifyError::PcrMismatch { index: 0, expected: vec!["aa".into(), "bb".into()], actual: "ab12".into() };
        assert_eq!(err.to_string(), "PCR0 mismatch: document has ab12, expected one of [aa, bb]");
    }

    #[test]
    fn long_field_values_are_shortened_in_messages() {
        let err = VerifyError::NonceMismatch { expected: "01".repeat(256), actual: None };
        let message = err.to_string();
        assert!(message.starts_with("nonce mismatch: document has none, expected 0101"));
        assert!(message.ends_with("… (256 bytes)"), "{message}");
    }

    #[test]
    fn positions_read_naturally() {
        assert_eq!(ChainPosition::CaBundle(2).to_string(), "CA certificate cabundle[2]");
        assert_eq!(ChainPosition::Leaf.to_string(), "leaf certificate");
    }
}

//! Verification: chain to the pinned root, the COSE signature, then the caller's expectations.

use std::collections::BTreeMap;

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};

use crate::chain::verify_chain;
use crate::cose::sig_structure;
use crate::{
    AttestationDocument, AttestationPayload, Digest, Measurements, Pcr, RootCertificate, UnixTime, VerifyError, parse,
};

/// What a document must satisfy. Built with [`VerifyOptions::new`] and the `expect_*`
/// methods; anything not expected is not checked.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    root: RootCertificate,
    at: UnixTime,
    expected_pcrs: BTreeMap<u16, Vec<Pcr>>,
    builds: Option<Vec<Measurements>>,
    refuse_debug_mode: bool,
    nonce: Option<Vec<u8>>,
    user_data: Option<Vec<u8>>,
    public_key: Option<Vec<u8>>,
}

impl VerifyOptions {
    /// Trust only chains starting at `root`, and check certificate validity at `at` (the
    /// verifier never reads the clock; pass [`UnixTime::now`] for "now").
    #[must_use]
    pub fn new(root: RootCertificate, at: UnixTime) -> Self {
        Self {
            root,
            at,
            expected_pcrs: BTreeMap::new(),
            builds: None,
            refuse_debug_mode: false,
            nonce: None,
            user_data: None,
            public_key: None,
        }
    }

    /// Requires PCR `index` to equal one of `acceptable` (more than one lets a migration accept
    /// either of two builds). Calling it again for the same index adds to the list. An empty
    /// list accepts nothing.
    #[must_use = "the expectation is in the returned options; dropping them checks nothing"]
    pub fn expect_pcr(mut self, index: u16, acceptable: impl IntoIterator<Item = Pcr>) -> Self {
        self.expected_pcrs.entry(index).or_default().extend(acceptable);
        self
    }

    /// Requires PCR0, PCR1 and PCR2 together to equal those of one of `builds`: a whole set,
    /// never a mix of values from different builds. Calling it again adds builds; an empty
    /// list accepts nothing. This is how an image is pinned; [`Self::expect_pcr`] is for
    /// further PCRs (such as PCR8, the signing certificate).
    #[must_use = "the expectation is in the returned options; dropping them checks nothing"]
    pub fn expect_builds(mut self, builds: impl IntoIterator<Item = Measurements>) -> Self {
        self.builds.get_or_insert_with(Vec::new).extend(builds);
        self
    }

    /// Refuses documents whose PCR0-2 are all zero (debug-mode enclaves).
    #[must_use = "the expectation is in the returned options; dropping them checks nothing"]
    pub fn refuse_debug_mode(mut self) -> Self {
        self.refuse_debug_mode = true;
        self
    }

    /// Requires PCR0, PCR1 and PCR2 to equal `measurements`.
    #[must_use = "the expectation is in the returned options; dropping them checks nothing"]
    pub fn expect_measurements(self, measurements: &Measurements) -> Self {
        measurements.iter().fold(self, |options, (index, pcr)| options.expect_pcr(index, [pcr.clone()]))
    }

    /// Requires the `nonce` field to equal `nonce`.
    #[must_use = "the expectation is in the returned options; dropping them checks nothing"]
    pub fn expect_nonce(mut self, nonce: impl Into<Vec<u8>>) -> Self {
        self.nonce = Some(nonce.into());
        self
    }

    /// Requires the `user_data` field to equal `user_data`.
    #[must_use = "the expectation is in the returned options; dropping them checks nothing"]
    pub fn expect_user_data(mut self, user_data: impl Into<Vec<u8>>) -> Self {
        self.user_data = Some(user_data.into());
        self
    }

    /// Requires the `public_key` field to equal `public_key`.
    #[must_use = "the expectation is in the returned options; dropping them checks nothing"]
    pub fn expect_public_key(mut self, public_key: impl Into<Vec<u8>>) -> Self {
        self.public_key = Some(public_key.into());
        self
    }

    /// The pinned root.
    pub fn root(&self) -> &RootCertificate {
        &self.root
    }

    /// The time certificates are checked at.
    pub fn at(&self) -> UnixTime {
        self.at
    }

    /// The PCR expectations, by index.
    pub fn expected_pcrs(&self) -> &BTreeMap<u16, Vec<Pcr>> {
        &self.expected_pcrs
    }
}

/// A document that passed [`verify`]. Only `verify` can make one.
#[derive(Debug, Clone)]
pub struct VerifiedDocument {
    payload: AttestationPayload,
    leaf_not_after: UnixTime,
}

impl VerifiedDocument {
    /// The verified fields.
    pub fn payload(&self) -> &AttestationPayload {
        &self.payload
    }

    /// The verified fields, by value.
    pub fn into_payload(self) -> AttestationPayload {
        self.payload
    }

    /// When the signing (leaf) certificate expires; the document is not verifiable after it.
    pub fn leaf_not_after(&self) -> UnixTime {
        self.leaf_not_after
    }
}

/// Parses and verifies an attestation document:
/// 1. COSE_Sign1 structure, ES384 protected header, size limits ([`parse`]);
/// 2. `cabundle[0]` is the pinned root; each certificate is signed by the one before it,
///    names chain, issuers are CAs within their path length, every certificate is valid at
///    `options.at()`;
/// 3. the COSE signature verifies under the leaf's key;
/// 4. `digest` is SHA384;
/// 5. the expected PCRs, nonce, user data and public key.
pub fn verify(document: &[u8], options: &VerifyOptions) -> Result<VerifiedDocument, VerifyError> {
    parse(document)?.verify(options)
}

impl AttestationDocument {
    /// Verifies this document; see [`verify`].
    pub fn verify(self, options: &VerifyOptions) -> Result<VerifiedDocument, VerifyError> {
        let payload = &self.payload;
        let leaf = verify_chain(payload.cabundle(), payload.certificate(), &options.root, options.at)?;

        let signed = sig_structure(&self.protected, &self.payload_bytes);
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, leaf.public_key())
            .verify(&signed, &self.signature)
            .map_err(|_| VerifyError::BadSignature)?;

        if payload.digest() != Digest::Sha384 {
            return Err(VerifyError::UnsupportedDigest(payload.digest().to_string()));
        }
        if options.refuse_debug_mode && (0..3).all(|i| payload.pcr(i).is_some_and(Pcr::is_zero)) {
            return Err(VerifyError::DebugMode);
        }
        if let Some(builds) = &options.builds {
            check_builds(payload, builds)?;
        }
        check_pcrs(payload, &options.expected_pcrs)?;
        check_field(payload.nonce(), options.nonce.as_deref(), |expected, actual| VerifyError::NonceMismatch {
            expected,
            actual,
        })?;
        check_field(payload.user_data(), options.user_data.as_deref(), |expected, actual| {
            VerifyError::UserDataMismatch { expected, actual }
        })?;
        check_field(payload.public_key(), options.public_key.as_deref(), |expected, actual| {
            VerifyError::PublicKeyMismatch { expected, actual }
        })?;

        Ok(VerifiedDocument { payload: self.payload, leaf_not_after: leaf.not_after })
    }
}

fn check_pcrs(payload: &AttestationPayload, expected: &BTreeMap<u16, Vec<Pcr>>) -> Result<(), VerifyError> {
    for (&index, acceptable) in expected {
        let actual = payload.pcr(index).ok_or(VerifyError::PcrMissing { index })?;
        if !acceptable.contains(actual) {
            return Err(VerifyError::PcrMismatch {
                index,
                expected: acceptable.iter().map(Pcr::to_hex).collect(),
                actual: actual.to_hex(),
            });
        }
    }
    Ok(())
}

fn check_builds(payload: &AttestationPayload, builds: &[Measurements]) -> Result<(), VerifyError> {
    let actual = [0u16, 1, 2].map(|i| payload.pcr(i));
    let known = builds.iter().any(|build| build.iter().all(|(i, pcr)| actual[usize::from(i)] == Some(pcr)));
    if known {
        return Ok(());
    }
    Err(VerifyError::UnknownBuild {
        actual: actual.map(|p| p.map(Pcr::to_hex).unwrap_or_default()),
        listed: builds.len(),
    })
}

fn check_field(
    actual: Option<&[u8]>,
    expected: Option<&[u8]>,
    mismatch: impl FnOnce(String, Option<String>) -> VerifyError,
) -> Result<(), VerifyError> {
    match expected {
        Some(expected) if actual != Some(expected) => Err(mismatch(hex::encode(expected), actual.map(hex::encode))),
        _ => Ok(()),
    }
}

//! Admission: an enclave gets credentials and keys only after it is shown to be one this
//! gateway may use: pinned to the same KMS key, region, endpoint and attestation setting, not
//! running the development NSM in production, and (when builds are listed) attesting a fresh
//! nonce with a listed PCR0-2 set under the trusted root.

use keyward_attest::{Measurements, RootCertificate, UnixTime, VerifyOptions};
use keyward_proto::{AttestRequest, HelloReply, NsmKind, Request, Response};

use crate::{Enclave, LIFECYCLE_TIMEOUT, Problem};

/// Development or production: production refuses the mock NSM and debug-mode enclaves.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

/// What the gateway expects of every enclave it talks to.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub environment: Environment,
    pub kms_key_id: String,
    pub kms_region: String,
    pub kms_endpoint: String,
    pub attestation: bool,
    /// When set, an enclave must prove its image before it gets credentials.
    pub image: Option<ExpectedImage>,
    /// When set, an enclave must have exactly these owners and quorum (required in
    /// production): the gateway then never serves an enclave the host built with other owners.
    pub owners: Option<ExpectedOwners>,
}

/// The owners an enclave must report in `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedOwners {
    /// Principal ids, hex (any order).
    pub ids: Vec<String>,
    pub quorum: u8,
}

/// The enclave images this gateway trusts.
#[derive(Debug, Clone)]
pub struct ExpectedImage {
    /// PEM file of the attestation root; `None` for the AWS Nitro Enclaves Root-G1. Read at
    /// each check, so a replaced root takes effect without a restart.
    pub root_pem: Option<std::path::PathBuf>,
    /// Acceptable PCR0-2 sets, one per build.
    pub builds: Vec<Measurements>,
}

/// The enclave's pinned configuration, from its `Hello`, must be what this gateway expects.
pub fn check_identity(expect: &Expectations, hello: &HelloReply) -> Result<(), Problem> {
    let info = &hello.info;
    if expect.environment == Environment::Production && info.nsm == NsmKind::Mock {
        return Err(Problem::new(
            "mock_nsm_refused",
            "production refuses an enclave running the development (mock) NSM",
        ));
    }
    let mismatch = |what: &str, enclave: &dyn std::fmt::Display, ours: &dyn std::fmt::Display| {
        Err(Problem::new(
            "enclave_config_mismatch",
            format!("enclave is pinned to {what} {enclave} but this gateway expects {ours}"),
        ))
    };
    if info.kms_key_id != expect.kms_key_id {
        return mismatch("KMS key", &info.kms_key_id, &expect.kms_key_id);
    }
    if info.kms_region != expect.kms_region {
        return mismatch("region", &info.kms_region, &expect.kms_region);
    }
    if info.kms_endpoint != expect.kms_endpoint {
        return mismatch("KMS endpoint", &info.kms_endpoint, &expect.kms_endpoint);
    }
    if info.attestation != expect.attestation {
        return mismatch("attestation", &info.attestation, &expect.attestation);
    }
    if let Some(owners) = &expect.owners {
        let sorted = |ids: &[String]| {
            let mut ids = ids.to_vec();
            ids.sort();
            ids
        };
        let theirs = info.authorization.as_ref().map(|a| (sorted(&a.owners), a.quorum));
        let ours = (sorted(&owners.ids), owners.quorum);
        if theirs.as_ref() != Some(&ours) {
            let shown = |o: Option<&(Vec<String>, u8)>| match o {
                Some((ids, quorum)) => format!("[{}] with quorum {quorum}", ids.join(", ")),
                None => "none (authorization off)".to_owned(),
            };
            return mismatch("owners", &shown(theirs.as_ref()), &shown(Some(&ours)));
        }
    }
    Ok(())
}

/// Asks the enclave for an attestation document with a fresh nonce and checks it against the
/// trusted root and the listed builds (PCR0-2 as whole sets), so credentials only ever reach a
/// known image. Without listed builds there is nothing to check.
pub async fn check_image(expect: &Expectations, enclave: &impl Enclave, now: UnixTime) -> Result<(), Problem> {
    let Some(image) = &expect.image else { return Ok(()) };
    let rejected = |detail: String| Problem::new("attestation_rejected", detail);
    let mut nonce = [0u8; 32];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| rejected("no randomness for the attestation nonce".into()))?;
    let document = match enclave.call(Request::Attest(AttestRequest { nonce: nonce.to_vec() }), LIFECYCLE_TIMEOUT).await
    {
        Ok(Response::Attestation(document)) => document,
        Ok(other) => return Err(rejected(format!("enclave answered Attest with {}", other.kind()))),
        Err(e) => return Err(rejected(format!("enclave could not attest: {e}"))),
    };
    let root = match &image.root_pem {
        None => RootCertificate::aws_nitro_root_g1(),
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read attestation root {}: {e}", path.display()))
            .and_then(|pem| {
                RootCertificate::from_pem(&pem).map_err(|e| format!("attestation root {}: {e}", path.display()))
            })
            .map_err(rejected)?,
    };
    let mut options = VerifyOptions::new(root, now).expect_nonce(nonce.to_vec()).expect_builds(image.builds.clone());
    if expect.environment == Environment::Production {
        options = options.refuse_debug_mode();
    }
    keyward_attest::verify(&document, &options).map_err(|e| rejected(format!("enclave attestation rejected: {e}")))?;
    Ok(())
}

//! `--attested-tls` in one step: fetch an attestation document from the enclave's TLS API,
//! verify it (root, PCRs, our nonce, a production image) and that its `user_data` binds the
//! very key that served it, then talk to that key only. See [`crate::tls_pin`].

use base64::Engine;
use keyward_attest::{Measurements, RootCertificate, UnixTime, VerifyOptions};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{
    Client, ClientError,
    api::TlsAttestationResponse,
    tls_pin::{FirstSight, PinnedServer, TLS_BINDING_PREFIX, client_config, spki_sha256},
};

/// What a client expects of the enclave behind a TLS API.
#[allow(missing_debug_implementations, reason = "holds the client's private key")]
pub struct AttestedTls {
    /// The attestation root (AWS Nitro Enclaves Root-G1 in production).
    pub root: RootCertificate,
    /// The enclave builds the client accepts (PCR0-2); at least one.
    pub builds: Vec<Measurements>,
    /// The client certificate (chain and key) the enclave lists.
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// The key an attestation vouched for.
#[derive(Debug, Clone)]
pub struct VerifiedPin {
    /// SHA-256 of the certificate's SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
    /// The certificate, DER.
    pub certificate: Vec<u8>,
    /// The enclave's module id, from the document.
    pub module_id: String,
}

impl VerifiedPin {
    /// The pin as curl's `--pinnedpubkey` takes it: `sha256//<base64>`.
    pub fn curl_pin(&self) -> String {
        format!("sha256//{}", base64::engine::general_purpose::STANDARD.encode(self.spki_sha256))
    }

    /// The certificate as PEM, for a CA bundle file.
    pub fn certificate_pem(&self) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(&self.certificate);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
        format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
    }
}

fn refused(message: impl Into<String>) -> ClientError {
    ClientError::Invalid(message.into())
}

/// Fetches and verifies the document of the TLS API at `base_url`; returns the pin.
pub async fn verify_tls_api(base_url: &str, expect: &AttestedTls) -> Result<VerifiedPin, ClientError> {
    if expect.builds.is_empty() {
        return Err(refused("attested TLS needs the PCRs of at least one enclave build"));
    }
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| refused(format!("no randomness for a nonce: {e}")))?;
    let first = FirstSight::new();
    let config = client_config(first.clone(), None).map_err(|e| refused(format!("TLS configuration: {e}")))?;
    let probe = Client::with_tls_config(base_url, None, config)?;
    let answer: TlsAttestationResponse = probe.tls_attestation(&nonce).await?;
    let seen = first.seen().ok_or_else(|| refused("the TLS API presented no certificate"))?;
    let pin = spki_sha256(&seen).map_err(refused)?;
    let document = base64::engine::general_purpose::STANDARD
        .decode(&answer.document_b64)
        .map_err(|_| refused("the attestation document is not base64"))?;
    let options = VerifyOptions::new(expect.root.clone(), UnixTime::now())
        .expect_builds(expect.builds.clone())
        .refuse_debug_mode()
        .expect_nonce(nonce.to_vec())
        .expect_user_data([TLS_BINDING_PREFIX, &pin].concat());
    let verified = keyward_attest::verify(&document, &options)
        .map_err(|e| refused(format!("attestation refused ({}): {e}", e.code())))?;
    Ok(VerifiedPin {
        spki_sha256: pin,
        certificate: seen.to_vec(),
        module_id: verified.payload().module_id().to_owned(),
    })
}

impl Client {
    /// A client of the enclave's TLS API at `base_url` that has checked its attestation and
    /// trusts its key only.
    pub async fn connect_attested(base_url: &str, expect: AttestedTls) -> Result<(Client, VerifiedPin), ClientError> {
        let pin = verify_tls_api(base_url, &expect).await?;
        let config = client_config(PinnedServer::new(pin.spki_sha256), expect.identity)
            .map_err(|e| refused(format!("TLS client configuration: {e}")))?;
        Ok((Client::with_tls_config(base_url, None, config)?, pin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_print_as_curl_and_pem_take_them() {
        let pin = VerifiedPin { spki_sha256: [0u8; 32], certificate: vec![1; 100], module_id: "i-0".into() };
        assert_eq!(pin.curl_pin(), "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        let pem = pin.certificate_pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n") && pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64), "PEM lines are 64 characters");
    }
}

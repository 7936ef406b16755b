//! Trusting the enclave's TLS API by its key. The enclave's certificate is self-issued; a
//! client trusts it because an attestation document (checked for its root, PCRs and nonce)
//! binds the SHA-256 of the certificate's SubjectPublicKeyInfo, and then pins that hash:
//! [`PinnedServer`] accepts no other key, whatever its names or issuer.
//!
//! A first connection, made only to fetch the document, uses [`FirstSight`]: it accepts any
//! certificate and remembers it, so the client can check that the document binds the very key
//! that served it. Nothing but the attestation request travels over that connection.

use std::sync::{Arc, Mutex};

use der::{Decode, Encode};
use rustls::{
    DigitallySignedStruct, DistinguishedName, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{CertificateDer, ServerName, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
};

/// What an attestation document's `user_data` starts with when it binds the enclave's TLS
/// key; the SHA-256 of the certificate's SubjectPublicKeyInfo follows.
pub const TLS_BINDING_PREFIX: &[u8] = b"keyward-tls-spki-sha256:";

/// The SHA-256 of a certificate's SubjectPublicKeyInfo (curl's `--pinnedpubkey` hashes the
/// same bytes).
pub fn spki_sha256(cert: &[u8]) -> Result<[u8; 32], String> {
    let parsed = x509_cert::Certificate::from_der(cert).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let spki =
        parsed.tbs_certificate.subject_public_key_info.to_der().map_err(|e| format!("SubjectPublicKeyInfo: {e}"))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki).as_ref());
    Ok(out)
}

/// The principal (`p256:<SEC1 hex>`, `ed25519:<hex>`) a certificate's key is, if it is one:
/// on the enclave's TLS API a client certificate stands for that principal in the policies.
pub fn principal_of(cert: &[u8]) -> Option<String> {
    const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
    const PRIME256V1: &str = "1.2.840.10045.3.1.7";
    const ED25519: &str = "1.3.101.112";
    let parsed = x509_cert::Certificate::from_der(cert).ok()?;
    let spki = &parsed.tbs_certificate.subject_public_key_info;
    let key = spki.subject_public_key.as_bytes()?;
    match spki.algorithm.oid.to_string().as_str() {
        EC_PUBLIC_KEY => {
            let curve = spki.algorithm.parameters.as_ref()?.decode_as::<der::asn1::ObjectIdentifier>().ok()?;
            (curve.to_string() == PRIME256V1).then(|| format!("p256:{}", hex::encode(key)))
        }
        ED25519 => Some(format!("ed25519:{}", hex::encode(key))),
        _ => None,
    }
}

/// The pin an attestation document's `user_data` carries, if it binds a TLS key.
pub fn bound_pin(user_data: &[u8]) -> Option<[u8; 32]> {
    user_data.strip_prefix(TLS_BINDING_PREFIX)?.try_into().ok()
}

fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// Accepts exactly one server key, by its pin; the handshake signature proves the server holds
/// it. Names and validity dates are not checked: the key is what the attestation vouches for.
#[derive(Debug)]
pub struct PinnedServer {
    pin: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedServer {
    pub fn new(pin: [u8; 32]) -> Arc<Self> {
        Arc::new(PinnedServer { pin, algorithms: provider().signature_verification_algorithms })
    }
}

/// Accepts any server certificate and keeps it (see the module documentation).
#[derive(Debug)]
pub struct FirstSight {
    seen: Mutex<Option<CertificateDer<'static>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl FirstSight {
    pub fn new() -> Arc<Self> {
        Arc::new(FirstSight { seen: Mutex::new(None), algorithms: provider().signature_verification_algorithms })
    }

    /// The certificate the last handshake presented.
    pub fn seen(&self) -> Option<CertificateDer<'static>> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match spki_sha256(end_entity) {
            Ok(pin) if pin == self.pin => Ok(ServerCertVerified::assertion()),
            Ok(_) => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)),
            Err(_) => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)),
        }
    }

    handshake_signatures!();
}

/// The enclave's side: accepts a client certificate only by its key's pin (the handshake
/// signature proves the client holds that key). A certificate is optional at the handshake;
/// the routes decide what a connection without one may ask.
#[derive(Debug)]
pub struct PinnedClients {
    pins: Vec<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedClients {
    pub fn new(pins: Vec<[u8; 32]>) -> Arc<Self> {
        Arc::new(PinnedClients { pins, algorithms: provider().signature_verification_algorithms })
    }
}

impl ClientCertVerifier for PinnedClients {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match spki_sha256(end_entity) {
            Ok(pin) if self.pins.contains(&pin) => Ok(ClientCertVerified::assertion()),
            Ok(_) => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)),
            Err(_) => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)),
        }
    }

    handshake_signatures!();
}

impl ServerCertVerifier for FirstSight {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

/// A client configuration that trusts `verifier`, with a client certificate when given
/// (certificate chain and PKCS#8 key, DER).
pub fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<(Vec<CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_is_the_prefix_and_32_bytes() {
        let pin = [7u8; 32];
        assert_eq!(bound_pin(&[TLS_BINDING_PREFIX, &pin].concat()), Some(pin));
        assert_eq!(bound_pin(&[TLS_BINDING_PREFIX, &pin[..31]].concat()), None);
        assert_eq!(bound_pin(&[&[0u8; 33][..], &pin].concat()), None, "a master-key document binds no TLS key");
    }

    #[test]
    fn a_certificates_key_is_its_principal() {
        let p256 = rcgen::generate_simple_self_signed(vec!["c".into()]).unwrap();
        let principal = principal_of(p256.cert.der()).unwrap();
        assert_eq!(principal, format!("p256:{}", hex::encode(p256.signing_key.public_key_raw())));
        assert!(principal.starts_with("p256:04") && principal.len() == 5 + 130, "{principal}");
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["c".to_owned()]).unwrap().self_signed(&ed).unwrap();
        assert_eq!(principal_of(cert.der()), Some(format!("ed25519:{}", hex::encode(ed.public_key_raw()))));
        assert_eq!(principal_of(&[0x30, 0x00]), None);
    }

    #[test]
    fn a_client_certificate_is_accepted_by_its_pin_only() {
        let listed = rcgen::generate_simple_self_signed(vec!["client".into()]).unwrap();
        let stranger = rcgen::generate_simple_self_signed(vec!["client".into()]).unwrap();
        let verifier = PinnedClients::new(vec![spki_sha256(listed.cert.der()).unwrap()]);
        let now = UnixTime::now();
        assert!(verifier.verify_client_cert(listed.cert.der(), &[], now).is_ok());
        assert!(verifier.verify_client_cert(stranger.cert.der(), &[], now).is_err());
        assert!(verifier.verify_client_cert(&CertificateDer::from(vec![0x30, 0x00]), &[], now).is_err());
    }

    #[test]
    fn a_pinned_server_accepts_its_key_only() {
        let mine = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let verifier = PinnedServer::new(spki_sha256(mine.cert.der()).unwrap());
        let name = ServerName::try_from("localhost").unwrap();
        let check = |cert: &CertificateDer<'_>| verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now());
        assert!(check(mine.cert.der()).is_ok());
        assert!(check(other.cert.der()).is_err(), "same names, another key");
        assert!(check(&CertificateDer::from(vec![0x30, 0x00])).is_err());
    }
}

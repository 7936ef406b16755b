//! The enclave's TLS identity and who may present a client certificate.
//!
//! The TLS key is born here at start (P-256, from the operating system's generator inside the
//! enclave) and never leaves the process; the certificate is self-issued. A client trusts it
//! by its key, not by a CA: an attestation document whose `user_data` is
//! [`TLS_BINDING_PREFIX`] followed by the SHA-256 of the certificate's SubjectPublicKeyInfo
//! proves that this key lives in an enclave with the measured image (docs/security.md).
//!
//! Client certificates are optional at the handshake (the attestation and health endpoints
//! need none), but one that is presented must carry a key this enclave's measured settings
//! list (`--tls-client-key`), or the handshake fails. Routes that use keys require one.

use std::sync::Arc;

use anyhow::Context;
pub use keyward_client::tls_pin::TLS_BINDING_PREFIX;
use rustls::{
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};
use zeroize::Zeroizing;

/// A client key's pin: the SHA-256 of its SubjectPublicKeyInfo (as curl's `--pinnedpubkey`).
pub type SpkiPin = [u8; 32];

/// The enclave's TLS key and certificate.
pub struct TlsIdentity {
    pub cert: CertificateDer<'static>,
    key: Zeroizing<Vec<u8>>,
    pub spki_sha256: SpkiPin,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").field("spki_sha256", &hex::encode(self.spki_sha256)).finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A new key and a certificate for `names` (DNS names or IP addresses).
    pub fn generate(names: &[String]) -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("TLS key")?;
        let mut params = rcgen::CertificateParams::new(names.to_vec()).context("--tls-name")?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "keyward enclave");
        let cert = params.self_signed(&key).context("TLS certificate")?;
        let cert = cert.der().clone();
        let spki_sha256 = spki_sha256(&cert)?;
        Ok(TlsIdentity { cert, key: Zeroizing::new(key.serialize_der()), spki_sha256 })
    }

    /// What an attestation document's `user_data` carries for this certificate.
    pub fn binding(&self) -> Vec<u8> {
        [TLS_BINDING_PREFIX, &self.spki_sha256].concat()
    }

    /// The server configuration: this certificate, TLS 1.2 and 1.3, HTTP/1.1, and client
    /// certificates checked against `clients` (API and admin keys).
    pub fn server_config(&self, clients: &crate::tls_api::ClientKeys) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let clients: Vec<SpkiPin> = clients.api.iter().chain(&clients.admin).copied().collect();
        let provider = Arc::new(provider());
        let verifier = keyward_client::tls_pin::PinnedClients::new(clients);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.to_vec()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], key)
            .context("the TLS certificate and its key")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> anyhow::Result<SpkiPin> {
    keyward_client::tls_pin::spki_sha256(cert).map_err(anyhow::Error::msg)
}

/// Parses `--tls-client-key` values: 64 hex digits each.
pub fn parse_pins(values: &[String]) -> anyhow::Result<Vec<SpkiPin>> {
    values
        .iter()
        .map(|value| {
            let mut pin = [0u8; 32];
            hex::decode_to_slice(value.trim(), &mut pin).with_context(|| {
                format!("--tls-client-key {value:?}: the SHA-256 of a SubjectPublicKeyInfo, 64 hex digits")
            })?;
            Ok(pin)
        })
        .collect()
}

/// The provider every TLS configuration here uses.
pub fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_is_the_prefix_and_the_certificates_key_hash() {
        let identity = TlsIdentity::generate(&["localhost".into()]).unwrap();
        let binding = identity.binding();
        assert_eq!(&binding[..TLS_BINDING_PREFIX.len()], TLS_BINDING_PREFIX);
        assert_eq!(binding[TLS_BINDING_PREFIX.len()..], spki_sha256(&identity.cert).unwrap());
        let other = TlsIdentity::generate(&["localhost".into()]).unwrap();
        assert_ne!(other.spki_sha256, identity.spki_sha256, "each start makes its own key");
        assert!(!format!("{identity:?}").contains("key:"), "Debug shows no key");
    }

    #[test]
    fn pins_are_64_hex_digits() {
        assert_eq!(parse_pins(&["ab".repeat(32)]).unwrap(), vec![[0xab; 32]]);
        assert!(parse_pins(&["ab".repeat(31)]).is_err());
        assert!(parse_pins(&["zz".repeat(32)]).is_err());
    }
}

//! A test CA for mutual TLS (rcgen), and a client that sends one HTTP/1.1 request over
//! rustls with a client certificate, as BitGo's wallet manager connects to a key provider.

use std::{path::Path, sync::Arc};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate authority made for one test.
#[allow(missing_debug_implementations, reason = "holds a private key; tests never print it")]
pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, issued by a [`TestCa`].
#[allow(missing_debug_implementations, reason = "holds a private key; tests never print it")]
pub struct Issued {
    pub cert: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    fn issue(&self, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Issued {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self) -> Issued {
        self.issue(vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate.
    pub fn client(&self) -> Issued {
        self.issue(vec!["wallet-manager".into()], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// Writes the CA and a server certificate into `dir` as `<prefix>-ca.pem`,
    /// `<prefix>-server.pem` and `<prefix>-server.key`.
    pub fn write_server_files(&self, dir: &Path, prefix: &str) {
        let server = self.server();
        std::fs::write(dir.join(format!("{prefix}-ca.pem")), &self.pem).expect("write CA");
        std::fs::write(dir.join(format!("{prefix}-server.pem")), &server.cert_pem).expect("write cert");
        std::fs::write(dir.join(format!("{prefix}-server.key")), &server.key_pem).expect("write key");
    }
}

/// One answer over TLS: status, the `x-keyward-error-code` header, body.
#[derive(Debug)]
pub struct TlsAnswer {
    pub status: u16,
    pub code: Option<String>,
    pub body: Vec<u8>,
}

/// Sends one request to `127.0.0.1:port` trusting `server_ca`, presenting `client` (or no
/// certificate). `Err` is a refused handshake or connection, as a string.
pub async fn tls_call(
    port: u16,
    server_ca: &str,
    client: Option<&Issued>,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<TlsAnswer, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(server_ca.as_bytes()) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match client {
        Some(c) => builder
            .with_client_auth_cert(vec![c.cert.clone()], PrivateKeyDer::Pkcs8(c.key_der.clone().into()))
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let mut tls = connector.connect(name, tcp).await.map_err(|e| format!("handshake: {e}"))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    tls.write_all(body).await.map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    // TLS 1.3 reports a refused client certificate on the first read.
    tls.read_to_end(&mut raw).await.map_err(|e| format!("read: {e}"))?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("an incomplete answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
    let code =
        head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("x-keyward-error-code: ").map(str::to_owned));
    Ok(TlsAnswer { status, code, body: raw[split + 4..].to_vec() })
}

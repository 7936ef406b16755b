//! An HTTP client for the AWS SDK that never touches the network itself: every request
//! opens a connection to the gateway's KMS relay, asks for the one pinned KMS endpoint,
//! and (for `https://` endpoints) runs TLS over it, verifying the server against a root
//! store compiled into the enclave. The relay sees only ciphertext.

use std::{fmt, sync::Arc, time::Duration};

use aws_smithy_runtime_api::client::{
    http::{HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector},
    orchestrator::HttpRequest,
    result::ConnectorError,
    runtime_components::RuntimeComponents,
};
use aws_smithy_types::body::SdkBody;
use hyper_util::rt::TokioIo;
use keyward_transport::{Address, relay_connect};
use rustls::pki_types::ServerName;

use crate::{KmsEndpoint, KmsError};

/// Which certificates the enclave trusts for the KMS endpoint.
#[derive(Clone)]
pub struct TlsRoots(Arc<rustls::RootCertStore>);

impl TlsRoots {
    /// Amazon Trust Services roots (Amazon Root CA 1-4 and Starfield Services Root G2, which
    /// cross-signs them), taken from the Mozilla set compiled into the binary. AWS service
    /// endpoints, KMS included, chain to these.
    pub fn amazon() -> Self {
        let mut store = rustls::RootCertStore::empty();
        store.extend(
            webpki_roots::TLS_SERVER_ROOTS
                .iter()
                .filter(|anchor| {
                    let subject: &[u8] = anchor.subject.as_ref();
                    contains(subject, b"Amazon Root CA")
                        || contains(subject, b"Starfield Services Root Certificate Authority")
                })
                .cloned(),
        );
        TlsRoots(Arc::new(store))
    }

    /// Roots from PEM certificates (tests, or a private KMS-compatible endpoint).
    pub fn from_pem(pem: &[u8]) -> Result<Self, KmsError> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut store = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| KmsError::Config(format!("invalid root certificate PEM: {e}")))?;
            store.add(cert).map_err(|e| KmsError::Config(format!("unusable root certificate: {e}")))?;
        }
        if store.is_empty() {
            return Err(KmsError::Config("no certificate in the root PEM".into()));
        }
        Ok(TlsRoots(Arc::new(store)))
    }

    /// Number of trust anchors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no anchors.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The DER-encoded subject name of each trust anchor.
    pub fn anchor_subjects(&self) -> Vec<Vec<u8>> {
        self.0.roots.iter().map(|anchor| anchor.subject.as_ref().to_vec()).collect()
    }
}

impl fmt::Debug for TlsRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsRoots({} anchors)", self.0.len())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The SDK's HTTP client for the enclave: dials the relay for each request.
#[derive(Clone)]
pub struct RelayHttpClient {
    relay: Address,
    endpoint: KmsEndpoint,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl RelayHttpClient {
    /// A client for `endpoint` through the relay at `relay`. `roots` is required for
    /// `https://` endpoints and must be `None` for `http://` ones.
    pub fn new(relay: Address, endpoint: KmsEndpoint, roots: Option<TlsRoots>) -> Result<Self, KmsError> {
        let tls = match (endpoint.is_tls(), roots) {
            (true, Some(roots)) => {
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| KmsError::Config(format!("TLS configuration: {e}")))?
                    .with_root_certificates(roots.0.clone())
                    .with_no_client_auth();
                let name = ServerName::try_from(endpoint.host().to_owned())
                    .map_err(|e| KmsError::Config(format!("KMS host is not a valid TLS name: {e}")))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
            }
            (true, None) => return Err(KmsError::Config(format!("{endpoint} needs a TLS root store"))),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(KmsError::Config(format!("{endpoint} is plain HTTP; TLS roots make no sense")));
            }
        };
        Ok(RelayHttpClient { relay, endpoint, tls, timeout: Duration::from_secs(30) })
    }

    async fn send(self, request: HttpRequest) -> Result<aws_smithy_runtime_api::http::Response, ConnectorError> {
        let request = request.try_into_http1x().map_err(|e| ConnectorError::user(Box::new(e)))?;
        // The SDK builds the URI from the pinned endpoint; anything else is a bug or an attack.
        let authority = request.uri().authority().map(|a| a.as_str().to_ascii_lowercase());
        let expected = [self.endpoint.relay_target(), self.endpoint.host().to_owned()];
        if !authority.as_ref().is_some_and(|a| expected.contains(a)) {
            return Err(ConnectorError::user(
                format!("request for {authority:?} refused: this client only talks to {}", self.endpoint).into(),
            ));
        }
        let stream = relay_connect(&self.relay, &self.endpoint.relay_target())
            .await
            .map_err(|e| ConnectorError::io(Box::new(e)))?;
        let response = match &self.tls {
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), stream).await.map_err(|e| {
                    ConnectorError::io(format!("TLS handshake with {} failed: {e}", self.endpoint).into())
                })?;
                exchange(tls, request).await?
            }
            None => exchange(stream, request).await?,
        };
        aws_smithy_runtime_api::http::Response::try_from(response).map_err(|e| ConnectorError::other(Box::new(e), None))
    }
}

async fn exchange<S>(stream: S, mut request: http::Request<SdkBody>) -> Result<http::Response<SdkBody>, ConnectorError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    // A raw HTTP/1 connection sends the URI as given: put it in origin form and carry the
    // authority in `Host`, which is what the SDK signed.
    if let Some(authority) = request.uri().authority().cloned()
        && !request.headers().contains_key(http::header::HOST)
    {
        let host = http::HeaderValue::from_str(authority.as_str()).map_err(|e| ConnectorError::user(Box::new(e)))?;
        request.headers_mut().insert(http::header::HOST, host);
    }
    let origin = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    *request.uri_mut() = origin.parse().map_err(|e: http::uri::InvalidUri| ConnectorError::user(Box::new(e)))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectorError::io(Box::new(e)))?;
    // One request per connection: the connection task ends when the response body is read.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "KMS connection ended with an error");
        }
    });
    let response = sender.send_request(request).await.map_err(|e| ConnectorError::io(Box::new(e)))?;
    let (parts, body) = response.into_parts();
    Ok(http::Response::from_parts(parts, SdkBody::from_body_1_x(body)))
}

impl fmt::Debug for RelayHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayHttpClient")
            .field("relay", &self.relay.to_string())
            .field("endpoint", &self.endpoint)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl HttpConnector for RelayHttpClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let this = self.clone();
        let timeout = self.timeout;
        HttpConnectorFuture::new(async move {
            match tokio::time::timeout(timeout, this.send(request)).await {
                Ok(result) => result,
                Err(_) => Err(ConnectorError::timeout("KMS request through the relay timed out".into())),
            }
        })
    }
}

impl HttpClient for RelayHttpClient {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

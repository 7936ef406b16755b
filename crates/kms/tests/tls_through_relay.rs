//! The production KMS path, run locally: the SDK client speaks HTTPS through a byte relay,
//! TLS ends in this process and is verified against the configured roots. A local TLS
//! server with a test root stands in for KMS.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use http_body_util::Full;
use hyper::{Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use keyward_kms::{Credentials, KmsClient, KmsEndpoint, KmsError, RelayHttpClient, TlsRoots};
use keyward_transport::{Address, Listener, relay_accept, relay_read_target};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::net::{TcpListener, TcpStream};

const DEK: [u8; 32] = [0x5a; 32];

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
}

/// A fake KMS over TLS for `host`, certified by `ca`. Answers GenerateDataKey.
async fn fake_kms(ca: &Ca, host: &str) -> u16 {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![host.to_owned()]).unwrap().signed_by(&key, &ca.issuer).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = service_fn(|request: hyper::Request<hyper::body::Incoming>| async move {
                    assert_eq!(request.headers()["x-amz-target"], "TrentService.GenerateDataKey");
                    let body = serde_json::json!({
                        "KeyId": "arn:aws:kms:us-east-1:111122223333:key/test",
                        "CiphertextBlob": STANDARD.encode([1u8; 64]),
                        "Plaintext": STANDARD.encode(DEK),
                    });
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header("content-type", "application/x-amz-json-1.1")
                            .body(Full::new(Bytes::from(body.to_string())))
                            .unwrap(),
                    )
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    port
}

/// A relay like the gateway's: one allowed target, bytes copied, and a record of every byte
/// it saw.
async fn relay(allowed: String, upstream_port: u16, seen: Arc<Mutex<Vec<u8>>>) -> Address {
    let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address = listener.local_address().clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let allowed = allowed.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let target = relay_read_target(&mut conn).await.unwrap();
                assert_eq!(target, allowed);
                relay_accept(&mut conn).await.unwrap();
                let upstream = TcpStream::connect(("127.0.0.1", upstream_port)).await.unwrap();
                let (mut up_read, mut up_write) = upstream.into_split();
                let (mut down_read, mut down_write) = tokio::io::split(conn);
                let a = copy_recording(&mut down_read, &mut up_write, seen.clone());
                let b = copy_recording(&mut up_read, &mut down_write, seen);
                let _ = tokio::join!(a, b);
            });
        }
    });
    address
}

async fn copy_recording<R, W>(reader: &mut R, writer: &mut W, seen: Arc<Mutex<Vec<u8>>>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = writer.shutdown().await;
                return;
            }
            Ok(n) => {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if writer.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn generate(trusted: &Ca, server: &Ca, certified_host: &str) -> (Result<Vec<u8>, KmsError>, Vec<u8>) {
    let port = fake_kms(server, certified_host).await;
    let endpoint = KmsEndpoint::parse(&format!("https://localhost:{port}")).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let relay = relay(endpoint.relay_target(), port, seen.clone()).await;
    let roots = TlsRoots::from_pem(trusted.pem.as_bytes()).unwrap();
    let http = RelayHttpClient::new(relay, endpoint.clone(), Some(roots)).unwrap();
    let client = KmsClient::new(endpoint, "us-east-1", http);
    let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
    let result = client
        .generate_data_key(credentials, "alias/k", &BTreeMap::new(), None)
        .await
        .map(|r| r.plaintext.expect("plaintext").to_vec());
    let seen = seen.lock().unwrap().clone();
    (result, seen)
}

#[tokio::test]
async fn tls_to_kms_ends_in_the_client_and_the_relay_sees_only_ciphertext() {
    let root = ca("keyward test root");
    let (result, seen) = generate(&root, &root, "localhost").await;
    assert_eq!(result.unwrap(), DEK.to_vec());
    assert!(!seen.is_empty(), "traffic went through the relay");
    let text = String::from_utf8_lossy(&seen);
    assert!(!text.contains("GenerateDataKey") && !text.contains("AKIDEXAMPLE"), "the relay saw plaintext HTTP");
    assert!(!seen.windows(DEK.len()).any(|w| w == DEK), "the relay saw the data key");
    assert!(!text.contains(&STANDARD.encode(DEK)), "the relay saw the data key in base64");
}

#[tokio::test]
async fn a_server_certificate_from_another_root_is_refused() {
    let trusted = ca("keyward test root");
    let impostor = ca("impostor root");
    let (result, _) = generate(&trusted, &impostor, "localhost").await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("TLS handshake") && err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let root = ca("keyward test root");
    let (result, _) = generate(&root, &root, "kms.elsewhere.example").await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("TLS handshake") && err.contains("not valid for name"), "{err}");
}

#[test]
fn the_built_in_roots_are_amazon_trust_services_and_nothing_else() {
    let contains = |subject: &[u8], name: &[u8]| subject.windows(name.len()).any(|w| w == name);
    let subjects = TlsRoots::amazon().anchor_subjects();
    // Amazon Root CA 1-4 and Starfield Services Root G2, which cross-signs them; the Mozilla
    // set they are taken from holds well over a hundred others, none of which may vouch for KMS.
    let amazon = subjects.iter().filter(|s| contains(s, b"Amazon Root CA")).count();
    let starfield = subjects.iter().filter(|s| contains(s, b"Starfield Services Root Certificate Authority")).count();
    assert_eq!((amazon, starfield, subjects.len()), (4, 1, 5), "{subjects:?}");
    assert!(!subjects.iter().any(|s| contains(s, b"ISRG Root X1")), "Let's Encrypt's root is not an AWS root");
}

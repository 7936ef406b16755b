//! TLS that ends in the enclave: the gateway passes the client's stream through, the client
//! checks an attestation document that binds the enclave's TLS key and pins it, and the bytes
//! the host relays hold nothing the client sent or received in the clear.

use std::sync::{Arc, Mutex};

use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_attest::{Measurements, Pcr, RootCertificate, UnixTime, VerifyOptions};
use keyward_client::{
    Client, ClientError,
    api::{SignResponse, TlsAttestationResponse},
    attested::AttestedTls,
    crypt::{Decrypt, Encrypt, GenerateDataKey, MacRequest},
    keys::SignWithKey,
    tls_pin::{FirstSight, PinnedServer, TLS_BINDING_PREFIX, client_config, spki_sha256},
};
use keyward_e2e::{Stack, StackOptions, assert_recovers, assert_signature_verifies, digest, free_port};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A client certificate (self-issued; the enclave knows it by its key).
pub(crate) struct ClientCert {
    pub(crate) cert: CertificateDer<'static>,
    key: Vec<u8>,
    pub(crate) pin: [u8; 32],
}

impl ClientCert {
    pub(crate) fn new() -> ClientCert {
        Self::with_algorithm(&rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// A certificate whose key is of `algorithm` (P-384 is no principal).
    pub(crate) fn with_algorithm(algorithm: &'static rcgen::SignatureAlgorithm) -> ClientCert {
        let key = rcgen::KeyPair::generate_for(algorithm).expect("client key");
        let made = rcgen::CertificateParams::new(vec!["wallet-service".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("client certificate");
        let cert = made.der().clone();
        let pin = spki_sha256(&cert).expect("pin");
        ClientCert { cert, key: key.serialize_der(), pin }
    }

    pub(crate) fn identity(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (vec![self.cert.clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone())))
    }
}

pub(crate) fn https(config: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder().use_preconfigured_tls(config).build().expect("HTTPS client")
}

/// `base` with the enclave's TLS API on, listing each certificate under its flag
/// (`--tls-client-key`, `--tls-admin-key`); returns the options and the pass-through's port.
pub(crate) fn tls_options(certificates: &[(&str, &ClientCert)], base: StackOptions) -> (StackOptions, u16) {
    let (pass_port, enclave_port, store_port) = (free_port(), free_port(), free_port());
    let mut enclave_args = vec!["--tls-listen".into(), format!("tcp://127.0.0.1:{enclave_port}")];
    for (flag, cert) in certificates {
        enclave_args.extend([(*flag).to_owned(), hex::encode(cert.pin)]);
    }
    enclave_args.extend(["--host-store".into(), format!("tcp://127.0.0.1:{store_port}")]);
    let extra_config = format!(
        "enclave_tls:\n  listen: 127.0.0.1:{pass_port}\n  enclave: tcp://127.0.0.1:{enclave_port}\n  store_listen: tcp://127.0.0.1:{store_port}\n"
    );
    (StackOptions { enclave_args, extra_config, ..base }, pass_port)
}

/// A TCP proxy in front of the gateway's pass-through that keeps every byte either way: what
/// the host carries for these connections.
async fn recorder(upstream: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind recorder");
    let address = listener.local_addr().expect("address").to_string();
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&upstream).await.expect("gateway pass-through");
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(copy_keeping(client_read, server_write, kept.clone()));
            tokio::spawn(copy_keeping(server_read, client_write, kept.clone()));
        }
    });
    (address, seen)
}

async fn copy_keeping(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Mutex<Vec<u8>>>,
) {
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 || to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        seen.lock().unwrap().extend_from_slice(&buffer[..n]);
    }
    let _ = to.shutdown().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// tests/compat/attestation.py's verdict on `request`: `Ok("verified")`, or the check that
/// failed.
fn independent_check(request: &Value) -> Result<String, String> {
    use std::io::Write;
    let root = keyward_e2e::workspace_root();
    let mut child = std::process::Command::new(root.join("scripts/py-clients"))
        .arg("python")
        .arg(root.join("tests/compat/attestation.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run scripts/py-clients");
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        let verdict: Value = serde_json::from_slice(&output.stdout).expect("the verifier's JSON");
        assert_eq!(verdict["verified"], true);
        Ok("verified".to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Waits until the enclave's TLS API serves the keyring (it starts once the gateway has
/// brought the enclave's keys up; its health follows the enclave's core).
pub(crate) async fn wait_tls_api(client: &reqwest::Client, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let health = match client.get(format!("{base}/v1/health")).send().await {
            Ok(answer) => answer.json::<Value>().await.ok(),
            Err(_) => None,
        };
        if health.as_ref().is_some_and(|h| h["status"] == "ok" && h["enclaves"][0]["keyring"]["state"] == "ready") {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the enclave's TLS API is not ready: {health:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The error code of a refused answer.
pub(crate) async fn error_code(answer: reqwest::Response) -> (u16, String) {
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.expect("an error body");
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pins_the_attested_key_and_the_host_relays_only_ciphertext() {
    let client_cert = ClientCert::new();
    let admin_cert = ClientCert::new();
    let stranger = ClientCert::new();
    let (options, pass_port) =
        tls_options(&[("--tls-client-key", &client_cert), ("--tls-admin-key", &admin_cert)], StackOptions::default());
    let mut stack = Stack::start(options).await;
    let health = stack.wait_ready().await;
    let master_hex = health.enclaves[0].public_key_hex.clone().expect("master key");
    let (front, relayed) = recorder(format!("127.0.0.1:{pass_port}")).await;
    let base = format!("https://{front}");

    // 1. First sight: fetch a document for our nonce over an unpinned connection, remember the
    //    certificate that served it, and check the document binds exactly that key.
    let first = FirstSight::new();
    let unpinned = https(client_config(first.clone(), None).unwrap());
    wait_tls_api(&unpinned, &base).await;
    let nonce = [0x5a_u8; 24];
    let answer: TlsAttestationResponse = unpinned
        .get(format!("{base}/v1/attestation?nonce={}", hex::encode(nonce)))
        .send()
        .await
        .expect("attestation over the enclave's TLS")
        .json()
        .await
        .expect("attestation JSON");
    let seen = first.seen().expect("a certificate was presented");
    let pin = spki_sha256(&seen).unwrap();
    assert_eq!(answer.spki_sha256_hex, hex::encode(pin));
    assert_eq!(STANDARD.decode(&answer.certificate_b64).unwrap(), seen.as_ref());
    let root =
        RootCertificate::from_pem(&std::fs::read_to_string(stack.path().join("mock-nsm-root.pem")).unwrap()).unwrap();
    let measured = &stack.measured;
    let build = Measurements {
        pcr0: Pcr::from_hex(&measured.pcr0).unwrap(),
        pcr1: Pcr::from_hex(&measured.pcr1).unwrap(),
        pcr2: Pcr::from_hex(&measured.pcr2).unwrap(),
    };
    let options = VerifyOptions::new(root.clone(), UnixTime::now())
        .expect_builds([build.clone()])
        .expect_nonce(nonce.to_vec())
        .expect_user_data([TLS_BINDING_PREFIX, &pin].concat());
    let document = STANDARD.decode(&answer.document_b64).unwrap();
    keyward_attest::verify(&document, &options).expect("the document binds the key that served it");
    // The same checks by another implementation (cbor2 and cryptography), and its refusal of
    // a document for another key.
    let root_pem = std::fs::read_to_string(stack.path().join("mock-nsm-root.pem")).unwrap();
    let independent = |user_data: &[u8]| {
        independent_check(&json!({
            "document_b64": answer.document_b64,
            "root_pem": root_pem,
            "nonce_hex": hex::encode(nonce),
            "user_data_hex": hex::encode(user_data),
            "pcrs": {"0": measured.pcr0, "1": measured.pcr1, "2": measured.pcr2},
        }))
    };
    assert_eq!(independent(&[TLS_BINDING_PREFIX, &pin].concat()), Ok("verified".to_owned()));
    let other = spki_sha256(&stranger.cert).unwrap();
    assert_eq!(independent(&[TLS_BINDING_PREFIX, &other].concat()), Err("other user_data".to_owned()));

    // 2. Pinned, with a listed client certificate: every signing operation on one kept-alive
    //    connection, each signature checked with k256.
    let pinned = https(client_config(PinnedServer::new(pin), Some(client_cert.identity())).unwrap());
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for (seed, scheme) in [(11u8, "ecdsa"), (12, "bip340"), (13, "ecdsa")] {
        let d = digest(seed);
        let signed: SignResponse = pinned
            .post(format!("{base}/v1/sign"))
            .json(&json!({"digest_hex": hex::encode(d), "scheme": scheme}))
            .send()
            .await
            .expect("sign over the enclave's TLS")
            .json()
            .await
            .expect("signature JSON");
        assert_eq!(signed.public_key_hex, master_hex);
        assert_signature_verifies(
            scheme,
            &d,
            &signed.signature.signature_hex,
            &signed.public_key_hex,
            &signed.xonly_public_key_hex,
        );
        if let Some(id) = signed.signature.recovery_id {
            assert_recovers(&d, &signed.signature.signature_hex, id, &master_hex);
        }
        secrets.extend([hex::encode(d).into_bytes(), signed.signature.signature_hex.into_bytes()]);
    }
    let key: Value = pinned.get(format!("{base}/v1/public-key")).send().await.unwrap().json().await.unwrap();
    assert_eq!(key["public_key_hex"], master_hex.as_str());

    // The keyring over the enclave's TLS, through the SDK's attested connection: rows come
    // from the host's store and go back to it, plaintexts never leave TLS.
    let connect = |cert: &ClientCert| {
        let expect = AttestedTls { root: root.clone(), builds: vec![build.clone()], identity: Some(cert.identity()) };
        Client::connect_attested(&base, expect)
    };
    let (sdk, verified) = connect(&client_cert).await.expect("attested connection");
    assert_eq!(verified.spki_sha256, pin);
    let (admin, _) = connect(&admin_cert).await.expect("attested connection with the admin certificate");
    let refused = sdk.create_key("not-yours", "ed25519", false).await.expect_err("an API key cannot administer");
    assert!(matches!(&refused, ClientError::Api { status: 401, code, .. } if code == "unauthorized"), "{refused}");
    secrets.extend(keyring_over_tls(&admin, &sdk, &stack).await);

    // 3. The host carried TLS records only: none of what was asked or answered.
    let relayed = relayed.lock().unwrap().clone();
    assert!(relayed.len() > 1000 && relayed[0] == 0x16, "TLS handshake records went through the host");
    secrets.extend([
        b"/v1/sign".to_vec(),
        b"digest_hex".to_vec(),
        b"signature_hex".to_vec(),
        master_hex.clone().into_bytes(),
        hex::encode(nonce).into_bytes(),
    ]);
    for secret in &secrets {
        assert!(!contains(&relayed, secret), "the host saw {:?} in the clear", String::from_utf8_lossy(secret));
    }

    // 4. Refusals, each with its code or at the handshake.
    let no_cert = https(client_config(PinnedServer::new(pin), None).unwrap());
    let answer = no_cert
        .post(format!("{base}/v1/sign"))
        .json(&json!({"digest_hex": hex::encode(digest(1)), "scheme": "ecdsa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(answer).await, (401, "client_certificate_required".into()));
    let answer = no_cert.get(format!("{base}/v1/public-key")).send().await.unwrap();
    assert_eq!(error_code(answer).await, (401, "client_certificate_required".into()));
    let health = no_cert.get(format!("{base}/v1/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "health and attestation need no certificate");
    let unlisted = https(client_config(PinnedServer::new(pin), Some(stranger.identity())).unwrap());
    let refused = unlisted.get(format!("{base}/v1/public-key")).send().await;
    assert!(refused.is_err(), "a certificate the enclave does not list ends the handshake: {refused:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stack.logs().contains("TLS API: handshake refused") {
        assert!(std::time::Instant::now() < deadline, "the enclave logged no refusal:\n{}", stack.logs());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A host that answers with its own certificate is refused by the pinned client.
    let impostor = impostor_tls().await;
    let fooled = pinned.get(format!("https://{impostor}/v1/public-key")).send().await;
    assert!(fooled.is_err(), "the pinned client accepted another key: {fooled:?}");

    // 5. Stalled and garbage peers take handshake slots, not signatures: with every one held,
    //    a new connection is closed, while the kept-alive connection and the gateway's API
    //    still sign.
    let key_again: Value = pinned.get(format!("{base}/v1/public-key")).send().await.unwrap().json().await.unwrap();
    assert_eq!(key_again["public_key_hex"], master_hex.as_str(), "the kept-alive connection, just used");
    let mut garbage = TcpStream::connect(format!("127.0.0.1:{pass_port}")).await.unwrap();
    garbage.write_all(&[0xff; 4096]).await.unwrap();
    let mut answer = Vec::new();
    let _ = garbage.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP"), "garbage gets no HTTP answer");
    let mut stalled = Vec::new();
    for _ in 0..80 {
        stalled.push(TcpStream::connect(format!("127.0.0.1:{pass_port}")).await.expect("stalled peer"));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stack.logs().contains("handshakes are in progress; closed a new connection") {
        assert!(std::time::Instant::now() < deadline, "the stalled peers never filled the handshake slots");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let newcomer = https(client_config(PinnedServer::new(pin), Some(client_cert.identity())).unwrap());
    let shut_out = newcomer.get(format!("{base}/v1/public-key")).send().await;
    assert!(shut_out.is_err(), "a new connection is closed while the handshake slots are full: {shut_out:?}");
    let still: SignResponse = pinned
        .post(format!("{base}/v1/sign"))
        .json(&json!({"digest_hex": hex::encode(digest(21)), "scheme": "bip340"}))
        .send()
        .await
        .expect("the kept-alive connection still signs")
        .json()
        .await
        .unwrap();
    assert_eq!(still.public_key_hex, master_hex);
    stack.client.sign(&digest(22), "ecdsa", None).await.expect("the gateway's API still signs");
    drop(stalled);
}

/// Creates keys and uses each kind over `sdk` (the enclave's TLS API); returns what must not
/// cross the host in the clear.
async fn keyring_over_tls(admin: &Client, sdk: &Client, stack: &Stack) -> Vec<Vec<u8>> {
    let mut secrets = Vec::new();
    let signer = admin.create_key("tls-signer", "secp256k1", false).await.expect("create over TLS");
    assert_eq!(signer.latest_version, 1);
    let d = digest(31);
    let request = SignWithKey { digest_hex: Some(hex::encode(d)), ..SignWithKey::default() };
    let signed = sdk.sign_with_key("tls-signer", &request).await.expect("sign with a key over TLS");
    assert_signature_verifies("ecdsa", &d, &signed.signature_hex, &signed.public_key_hex, "");
    let by_admin = admin.sign_with_key("tls-signer", &request).await.expect("an admin certificate uses the API too");
    assert_eq!(by_admin.public_key_hex, signed.public_key_hex);
    secrets.extend([hex::encode(d).into_bytes(), signed.signature_hex.clone().into_bytes(), b"tls-signer".to_vec()]);

    // A key made through the gateway's plain API is used over TLS, and one made over TLS is
    // in the host's store for the plain API.
    stack.admin_client().create_key("tls-vault", "aes256-gcm", false).await.expect("create on the plain API");
    let plaintext = b"wire transfer 0042: 1,000,000 to treasury".to_vec();
    let aad = b"payments/2026-12".to_vec();
    let encrypted = sdk
        .encrypt(
            "tls-vault",
            &Encrypt { plaintext_b64: STANDARD.encode(&plaintext), associated_data_b64: Some(STANDARD.encode(&aad)) },
        )
        .await
        .expect("encrypt over TLS");
    let decrypted = sdk
        .decrypt(
            "tls-vault",
            &Decrypt {
                ciphertext_b64: encrypted.ciphertext_b64.clone(),
                associated_data_b64: Some(STANDARD.encode(&aad)),
            },
        )
        .await
        .expect("decrypt over TLS");
    assert_eq!(STANDARD.decode(&decrypted.plaintext_b64).unwrap(), plaintext);
    let data_key = sdk
        .data_key("tls-vault", &GenerateDataKey { spec: "aes-256".into(), plaintext: true, associated_data_b64: None })
        .await
        .expect("data key over TLS");
    let data_plain = data_key.plaintext_b64.clone().expect("plaintext asked for");
    admin.create_key("tls-mac", "hmac-sha256", false).await.expect("create an HMAC key over TLS");
    let mac = sdk.hmac("tls-mac", &MacRequest { message_b64: STANDARD.encode(b"mac me") }).await.expect("hmac");
    assert!(stack.client.key("tls-signer").await.is_ok(), "the key made over TLS is in the host's store");

    // A host that puts another public key in the row: the plain API (served by the host)
    // shows it, the enclave's TLS API refuses to.
    let genuine = signed.public_key_hex.clone();
    let substitute = hex::decode(&stack.client.public_key(None).await.unwrap().public_key_hex).unwrap();
    stack.sql("UPDATE key_versions SET public_key = ?1 WHERE name = 'tls-signer'", [&substitute]);
    let shown = stack.client.key("tls-signer").await.expect("the plain API");
    assert_eq!(shown.versions[0].public_key_hex, Some(hex::encode(&substitute)), "the host shows what it stored");
    let refused = sdk.key("tls-signer").await.expect_err("the TLS API checks the row first");
    assert!(matches!(&refused, ClientError::Api { code, .. } if code == "key_row_does_not_open"), "{refused}");
    let refused = sdk.list_keys(None, Some(100)).await.expect_err("and every row of a listing");
    assert!(matches!(&refused, ClientError::Api { code, .. } if code == "key_row_does_not_open"), "{refused}");
    stack.sql("UPDATE key_versions SET public_key = ?1 WHERE name = 'tls-signer'", [&hex::decode(&genuine).unwrap()]);
    assert_eq!(sdk.key("tls-signer").await.expect("the genuine row again").versions[0].public_key_hex, Some(genuine));
    let listed = sdk.list_keys(None, Some(100)).await.expect("list over TLS");
    assert!(listed.keys.iter().any(|k| k.name == "tls-vault"));
    secrets.extend([
        plaintext,
        aad,
        STANDARD.encode(b"wire transfer 0042").into_bytes(),
        encrypted.ciphertext_b64.into_bytes(),
        data_plain.into_bytes(),
        data_key.ciphertext_b64.into_bytes(),
        mac.mac_b64.into_bytes(),
        b"tls-vault".to_vec(),
        b"tls-mac".to_vec(),
    ]);
    secrets
}

/// A TLS server with a certificate of its own, as a host that substitutes itself would run.
async fn impostor_tls() -> String {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
                }
            });
        }
    });
    address
}

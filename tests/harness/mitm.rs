//! A hostile "KMS" for tests: it forwards to the real (dev) KMS and then tampers with the
//! answers to `Decrypt`, the way a compromised host or network path would try to.

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::Value;

/// How the answer is tampered with.
#[derive(Debug, Clone, Copy)]
pub enum Tamper {
    /// Replace `CiphertextForRecipient` with valid CMS to the enclave's RSA key, but around a
    /// data key of the attacker's choosing.
    ForgeCiphertextForRecipient,
    /// Add a `Plaintext` data key of the attacker's choosing.
    InjectPlaintext,
}

#[derive(Debug)]
struct Mitm {
    upstream: String,
    tamper: Tamper,
    http: reqwest::Client,
}

/// Starts the tampering proxy on a free port; returns its URL. It runs until the test's
/// runtime ends.
pub async fn start_mitm(upstream: String, tamper: Tamper) -> String {
    keyward_client::install_crypto_provider();
    let state = Arc::new(Mitm { upstream, tamper, http: reqwest::Client::new() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind mitm");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = Router::new().fallback(forward).with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.expect("mitm server") });
    url
}

async fn forward(State(mitm): State<Arc<Mitm>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut request = mitm.http.post(format!("{}/", mitm.upstream)).body(body.clone());
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.expect("upstream answers");
    let status = StatusCode::from_u16(answer.status().as_u16()).expect("status");
    let answer_body = answer.bytes().await.expect("upstream body");
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    if target != "TrentService.Decrypt" || !status.is_success() {
        return (status, [("content-type", "application/x-amz-json-1.1")], answer_body).into_response();
    }
    let request_json: Value = serde_json::from_slice(&body).expect("request JSON");
    let mut json: Value = serde_json::from_slice(&answer_body).expect("answer JSON");
    let mut chosen = [0u8; 32];
    getrandom::fill(&mut chosen).expect("random");
    match mitm.tamper {
        Tamper::ForgeCiphertextForRecipient => {
            let document = STANDARD
                .decode(request_json["Recipient"]["AttestationDocument"].as_str().expect("attested request"))
                .expect("base64 document");
            let parsed = keyward_attest::parse(&document).expect("document parses");
            let spki = parsed.unverified_payload().public_key().expect("document names the RSA key").to_vec();
            let forged = keyward_kms::cms::encrypt_for_recipient(&chosen, &spki).expect("forge CMS");
            json["CiphertextForRecipient"] = Value::String(STANDARD.encode(forged));
        }
        Tamper::InjectPlaintext => {
            json["Plaintext"] = Value::String(STANDARD.encode(chosen));
        }
    }
    (status, [("content-type", "application/x-amz-json-1.1")], serde_json::to_vec(&json).expect("json")).into_response()
}

//! The proxy in process, in front of a small in-process fake of the emulator, so each
//! behaviour is checked quickly and on its own. `localstack.rs` runs the real thing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_attest::RootCertificate;
use keyward_devkms::server::{self, Proxy};
use keyward_devkms::upstream::Upstream;
use serde_json::{Value, json};
use support::*;

const KEY_ARN: &str = "arn:aws:kms:us-east-1:000000000000:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const DEK: [u8; 32] = [0x5a; 32];
const BLOB: &[u8] = b"fake-ciphertext-blob";

/// What the fake emulator was asked, in order.
#[derive(Default)]
struct Seen {
    calls: Vec<(String, Value, HeaderMap)>,
}

#[derive(Clone)]
struct Fake {
    policy: Arc<Mutex<String>>,
    seen: Arc<Mutex<Seen>>,
}

fn kms_error(code: &str, message: &str) -> Response {
    let body = json!({ "__type": code, "message": message }).to_string();
    (StatusCode::BAD_REQUEST, [("content-type", "application/json"), ("x-amzn-errortype", code)], body).into_response()
}

async fn fake_kms(
    axum::extract::State(fake): axum::extract::State<Fake>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let operation = headers["x-amz-target"].to_str().unwrap().trim_start_matches("TrentService.").to_owned();
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    fake.seen.lock().unwrap().calls.push((operation.clone(), request.clone(), headers));
    let answer = match operation.as_str() {
        "GenerateDataKey" => {
            json!({ "KeyId": KEY_ARN, "Plaintext": b64(&DEK), "CiphertextBlob": b64(BLOB) })
        }
        "Decrypt" if request["CiphertextBlob"] == b64(BLOB) => {
            json!({ "KeyId": KEY_ARN, "Plaintext": b64(&DEK) })
        }
        "Decrypt" => return kms_error("InvalidCiphertextException", "not a blob of this emulator"),
        "GenerateRandom" => json!({ "Plaintext": b64(&[7; 32]) }),
        "ReEncrypt" => {
            json!({ "CiphertextBlob": b64(b"re-encrypted"), "SourceKeyId": KEY_ARN, "KeyId": KEY_ARN })
        }
        "GetKeyPolicy" if request["PolicyName"] == "default" => {
            json!({ "Policy": *fake.policy.lock().unwrap() })
        }
        "ListKeys" => {
            let body = json!({ "Keys": [{ "KeyId": "k", "KeyArn": KEY_ARN }] }).to_string();
            let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amzn-requestid", "fake-request-1")];
            return (StatusCode::OK, headers, body).into_response();
        }
        _ => return kms_error("UnknownOperationException", "fake does not do that"),
    };
    ([("content-type", "application/x-amz-json-1.1")], answer.to_string()).into_response()
}

/// A fake emulator with `policy`, and the proxy in front of it trusting `pki`.
struct Setup {
    url: String,
    fake: Fake,
}

impl Setup {
    async fn start(pki: &Pki, policy: &str) -> Self {
        let fake = Fake { policy: Arc::new(Mutex::new(policy.to_owned())), seen: Arc::default() };
        let upstream_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_url = format!("http://{}", upstream_listener.local_addr().unwrap());
        let app = Router::new().fallback(fake_kms).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(upstream_listener, app).await });

        let root = RootCertificate::from_pem(&pki.root_pem()).unwrap();
        let proxy = Arc::new(Proxy::new(Upstream::new(&upstream_url, "us-east-1").unwrap(), root));
        let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(server::serve(listener, proxy, std::future::pending()));
        Self { url, fake }
    }

    fn upstream_calls(&self) -> Vec<(String, Value, HeaderMap)> {
        self.fake.seen.lock().unwrap().calls.clone()
    }
}

const PERMISSIVE_POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [{"Sid": "Enable IAM User Permissions",
  "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"}, "Action": "kms:*", "Resource": "*"}]}"#;

#[tokio::test]
async fn generate_data_key_with_recipient_answers_only_ciphertext_for_recipient() {
    let pki = Pki::new();
    let enclave = Enclave::new(&pki, b"enclave build A");
    let setup = Setup::start(&pki, &policy_for(&[&enclave])).await;
    let (key, recipient) = enclave.recipient();

    let (status, answer) = kms(
        &setup.url,
        "GenerateDataKey",
        &json!({ "KeyId": "alias/x", "KeySpec": "AES_256", "Recipient": recipient }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer.as_object().unwrap().len(), 3, "exactly CiphertextBlob, KeyId, CiphertextForRecipient: {answer}");
    assert_eq!(answer["KeyId"], KEY_ARN);
    assert_eq!(unb64(&answer["CiphertextBlob"]), BLOB);
    assert_eq!(open_for_recipient(&answer, &key), DEK);

    let calls = setup.upstream_calls();
    let (operation, forwarded, headers) = &calls[0];
    assert_eq!(operation, "GenerateDataKey");
    assert!(forwarded.get("Recipient").is_none(), "the emulator must not see the Recipient: {forwarded}");
    assert_eq!(forwarded["KeySpec"], "AES_256");
    assert_eq!(headers["authorization"], AUTHORIZATION, "the client's region reaches the emulator");
    assert_eq!(calls[1].0, "GetKeyPolicy");
    assert_eq!(calls[1].1["KeyId"], KEY_ARN);
}

#[tokio::test]
async fn decrypt_with_recipient_answers_like_kms() {
    let pki = Pki::new();
    let enclave = Enclave::new(&pki, b"enclave build A");
    let setup = Setup::start(&pki, &policy_for(&[&enclave])).await;
    let (key, recipient) = enclave.recipient();

    let (status, answer) =
        kms(&setup.url, "Decrypt", &json!({ "KeyId": KEY_ARN, "CiphertextBlob": b64(BLOB), "Recipient": recipient }))
            .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["KeyId"], KEY_ARN);
    assert_eq!(answer["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
    assert!(answer.get("Plaintext").is_none());
    assert_eq!(open_for_recipient(&answer, &key), DEK);
}

#[tokio::test]
async fn calls_without_recipient_are_denied_under_the_attestation_policy() {
    let pki = Pki::new();
    let enclave = Enclave::new(&pki, b"enclave build A");
    let setup = Setup::start(&pki, &policy_for(&[&enclave])).await;
    let gdk = kms(&setup.url, "GenerateDataKey", &json!({ "KeyId": KEY_ARN, "KeySpec": "AES_256" })).await;
    assert_denied(&gdk, &["DenyDataKeysWithoutAttestedPCR0", "no Recipient attestation document"]);
    let decrypt = kms(&setup.url, "Decrypt", &json!({ "CiphertextBlob": b64(BLOB) })).await;
    assert_denied(&decrypt, &["DenyDataKeysWithoutAttestedPCR0"]);
}

#[tokio::test]
async fn calls_without_recipient_pass_unchanged_when_the_policy_allows_them() {
    let pki = Pki::new();
    let setup = Setup::start(&pki, PERMISSIVE_POLICY).await;
    let (status, answer) = kms(&setup.url, "GenerateDataKey", &json!({ "KeyId": KEY_ARN, "KeySpec": "AES_256" })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(unb64(&answer["Plaintext"]), DEK);
    assert!(answer.get("CiphertextForRecipient").is_none());
}

#[tokio::test]
async fn a_document_from_another_pki_is_denied_naming_the_root() {
    let (trusted, foreign) = (Pki::new(), Pki::new());
    let enclave = Enclave::new(&foreign, b"enclave build A");
    let setup = Setup::start(&trusted, &policy_for(&[&enclave])).await;
    let (_, recipient) = enclave.recipient();
    let answer =
        kms(&setup.url, "GenerateDataKey", &json!({ "KeyId": KEY_ARN, "KeySpec": "AES_256", "Recipient": recipient }))
            .await;
    assert_denied(&answer, &["Recipient attestation document is not valid", "not the pinned root"]);
    assert!(setup.upstream_calls().is_empty(), "nothing reaches the emulator for an invalid document");
}

#[tokio::test]
async fn a_pcr0_not_in_the_policy_is_denied_naming_pcr0_and_its_value() {
    let pki = Pki::new();
    let (allowed, other) = (Enclave::new(&pki, b"enclave build A"), Enclave::new(&pki, b"enclave build B"));
    let setup = Setup::start(&pki, &policy_for(&[&allowed])).await;
    let (_, recipient) = other.recipient();
    let answer = kms(&setup.url, "Decrypt", &json!({ "CiphertextBlob": b64(BLOB), "Recipient": recipient })).await;
    assert_denied(
        &answer,
        &["DenyDataKeysWithoutAttestedPCR0", &format!("kms:RecipientAttestation:PCR0 is {}", other.pcr0_hex())],
    );
}

#[tokio::test]
async fn garbage_and_unsupported_recipients_are_refused() {
    let pki = Pki::new();
    let enclave = Enclave::new(&pki, b"enclave build A");
    let setup = Setup::start(&pki, &policy_for(&[&enclave])).await;
    let (_, mut recipient) = enclave.recipient();

    let garbage =
        json!({ "AttestationDocument": b64(b"not a document"), "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256" });
    let answer = kms(&setup.url, "Decrypt", &json!({ "CiphertextBlob": b64(BLOB), "Recipient": garbage })).await;
    assert_denied(&answer, &["Recipient attestation document is not valid"]);

    recipient["KeyEncryptionAlgorithm"] = json!("RSAES_OAEP_SHA_1");
    let (status, answer) =
        kms(&setup.url, "Decrypt", &json!({ "CiphertextBlob": b64(BLOB), "Recipient": recipient })).await;
    assert_eq!((status, answer["__type"].as_str()), (400, Some("ValidationException")), "{answer}");

    let (status, answer) = kms(
        &setup.url,
        "Decrypt",
        &json!({ "CiphertextBlob": b64(BLOB), "Recipient": { "AttestationDocument": "%%%" } }),
    )
    .await;
    assert_eq!((status, answer["__type"].as_str()), (400, Some("SerializationException")), "{answer}");
    assert!(setup.upstream_calls().is_empty());
}

#[tokio::test]
async fn generate_random_with_recipient_answers_ciphertext_for_recipient() {
    let pki = Pki::new();
    let enclave = Enclave::new(&pki, b"enclave build A");
    let setup = Setup::start(&pki, &policy_for(&[&enclave])).await;
    let (key, recipient) = enclave.recipient();
    let (status, answer) =
        kms(&setup.url, "GenerateRandom", &json!({ "NumberOfBytes": 32, "Recipient": recipient })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer.as_object().unwrap().keys().collect::<Vec<_>>(), ["CiphertextForRecipient"]);
    assert_eq!(open_for_recipient(&answer, &key), [7; 32]);
}

#[tokio::test]
async fn upstream_errors_pass_through_with_status_and_body() {
    let pki = Pki::new();
    let enclave = Enclave::new(&pki, b"enclave build A");
    let setup = Setup::start(&pki, &policy_for(&[&enclave])).await;
    let (_, recipient) = enclave.recipient();
    let (status, answer) =
        kms(&setup.url, "Decrypt", &json!({ "CiphertextBlob": b64(b"other"), "Recipient": recipient })).await;
    assert_eq!(status, 400);
    assert_eq!(answer, json!({ "__type": "InvalidCiphertextException", "message": "not a blob of this emulator" }));
}

#[tokio::test]
async fn other_operations_pass_through_unchanged() {
    let pki = Pki::new();
    let setup = Setup::start(&pki, PERMISSIVE_POLICY).await;
    let response = support::http_client()
        .build()
        .unwrap()
        .post(format!("{}/", setup.url))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "TrentService.ListKeys")
        .header("authorization", AUTHORIZATION)
        .header("x-amz-date", "20260101T000000Z")
        .header("smithy-protocol", "rpc-v2-cbor")
        .body(r#"{"Limit": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-amzn-requestid"], "fake-request-1");
    assert_eq!(response.headers()["content-type"], "application/x-amz-json-1.1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["Keys"][0]["KeyArn"], KEY_ARN);

    let calls = setup.upstream_calls();
    let (operation, forwarded, headers) = &calls[0];
    assert_eq!((operation.as_str(), forwarded), ("ListKeys", &json!({ "Limit": 5 })));
    assert_eq!(headers["x-amz-date"], "20260101T000000Z");
    assert!(headers.get("smithy-protocol").is_none(), "no header that could switch the emulator's protocol");

    let unknown = kms(&setup.url, "CreateGrant", &json!({})).await;
    assert_eq!(unknown.1["__type"], "UnknownOperationException", "the fake's own error comes back");
}

#[tokio::test]
async fn re_encrypt_is_held_to_the_key_policy() {
    let pki = Pki::new();
    let enclave = Enclave::new(&pki, b"enclave build A");
    let setup = Setup::start(&pki, &policy_for(&[&enclave])).await;
    let answer =
        kms(&setup.url, "ReEncrypt", &json!({ "CiphertextBlob": b64(BLOB), "DestinationKeyId": "alias/mine" })).await;
    assert_denied(&answer, &["DenyDataKeysWithoutAttestedPCR0"]);

    *setup.fake.policy.lock().unwrap() = PERMISSIVE_POLICY.to_owned();
    let (status, answer) =
        kms(&setup.url, "ReEncrypt", &json!({ "CiphertextBlob": b64(BLOB), "DestinationKeyId": "alias/mine" })).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn requests_outside_the_kms_json_protocol_are_refused() {
    let pki = Pki::new();
    let setup = Setup::start(&pki, PERMISSIVE_POLICY).await;
    let client = support::http_client().build().unwrap();
    let form = client
        .post(format!("{}/", setup.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=GenerateDataKey&KeyId=alias/x")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 400);
    let oversized = client
        .post(format!("{}/", setup.url))
        .header("x-amz-target", "TrentService.ListKeys")
        .body(vec![b' '; server::MAX_REQUEST_LEN + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    assert!(setup.upstream_calls().is_empty());
}

#[tokio::test]
async fn a_policy_the_evaluator_cannot_read_denies() {
    let pki = Pki::new();
    let enclave = Enclave::new(&pki, b"enclave build A");
    let policy = PERMISSIVE_POLICY
        .replace("\"Resource\": \"*\"", "\"Resource\": \"*\", \"Condition\": {\"NumericEquals\": {\"kms:X\": 1}}");
    let setup = Setup::start(&pki, &policy).await;
    let (_, recipient) = enclave.recipient();
    let answer = kms(&setup.url, "Decrypt", &json!({ "CiphertextBlob": b64(BLOB), "Recipient": recipient })).await;
    assert_denied(&answer, &["unsupported condition operator \"NumericEquals\""]);
}

#[tokio::test]
async fn a_policy_with_two_builds_accepts_both() {
    let pki = Pki::new();
    let (old, new) = (Enclave::new(&pki, b"enclave build A"), Enclave::new(&pki, b"enclave build B"));
    let setup = Setup::start(&pki, &policy_for(&[&old, &new])).await;
    for enclave in [&old, &new] {
        let (key, recipient) = enclave.recipient();
        let (status, answer) =
            kms(&setup.url, "Decrypt", &json!({ "CiphertextBlob": b64(BLOB), "Recipient": recipient })).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(open_for_recipient(&answer, &key), DEK);
    }
    let third = Enclave::new(&pki, b"enclave build C");
    let (_, recipient) = third.recipient();
    let answer = kms(&setup.url, "Decrypt", &json!({ "CiphertextBlob": b64(BLOB), "Recipient": recipient })).await;
    assert_denied(&answer, &["PCR0"]);
}

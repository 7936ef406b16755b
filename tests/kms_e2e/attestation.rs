//! Attested key release: only the measured enclave gets the data key, whatever the host does.

use std::{os::unix::fs::PermissionsExt, path::PathBuf, process::Command};

use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_attest::{AttestationRequest, MockNsm, Nsm};
use keyward_e2e::{Stack, StackOptions, Tamper, binary, start_mitm};
use keyward_kms::cms::{RecipientKey, decrypt_for_recipient};
use keyward_seal::{DataKey, SealBinding};
use serde_json::{Value, json};

use crate::assert_signs;

/// Calls the KMS JSON API directly with the gateway's own (dev) credentials.
async fn kms_call(url: &str, operation: &str, body: Value) -> (u16, Value) {
    keyward_client::install_crypto_provider();
    let answer = reqwest::Client::new()
        .post(format!("{url}/"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("X-Amz-Target", format!("TrentService.{operation}"))
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .expect("KMS answers");
    let status = answer.status().as_u16();
    (status, serde_json::from_slice(&answer.bytes().await.expect("body")).unwrap_or(Value::Null))
}

fn context(row: &keyward_store::MasterKeyRow) -> Value {
    json!({
        "keyward:enclave_id": row.enclave_id.to_string(),
        "keyward:key_epoch": row.key_epoch.to_string(),
        "keyward:public_key": hex::encode(&row.public_key),
    })
}

/// A copy of the enclave binary with bytes appended: same code, different PCR0.
fn modified_enclave_binary(stack: &Stack) -> PathBuf {
    let copy = stack.path().join("enclave-modified");
    let mut bytes = std::fs::read(binary("enclave")).expect("read enclave binary");
    bytes.extend_from_slice(b"\0appended after provisioning");
    std::fs::write(&copy, bytes).expect("write copy");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

fn enclave_detail(health: &keyward_client::api::HealthResponse) -> String {
    health.enclaves[0].detail.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_enclave_binary_is_denied_by_kms_and_the_row_is_untouched() {
    // The gateway does not check PCRs itself here, so KMS (the key policy) is what stops it.
    let mut stack = Stack::start(StackOptions { gateway_pins_pcrs: false, ..StackOptions::default() }).await;
    let row = stack.row(1).expect("row");
    stack.kill_enclave(1).await;
    let copy = modified_enclave_binary(&stack);
    stack.start_enclave_from(1, &copy);
    let health = stack.wait_health("unseal denied", |_, h| h.enclaves[0].state == "failed").await;
    let detail = enclave_detail(&health);
    assert!(
        detail.contains("AccessDeniedException") && detail.contains("PCR0"),
        "error must name the PCR mismatch: {detail}"
    );
    assert_eq!(stack.row(1).expect("row"), row, "the row is untouched");
    assert_eq!(stack.row_count(), 1);

    // The original build still unseals the same key.
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    stack.wait_ready().await;
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_gives_no_credentials_to_an_enclave_it_does_not_recognise() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.kill_enclave(1).await;
    let copy = modified_enclave_binary(&stack);
    stack.start_enclave_from(1, &copy);
    let health = stack.wait_health("enclave refused", |_, h| h.enclaves[0].state == "refused").await;
    let detail = enclave_detail(&health);
    assert!(detail.contains("PCR0 mismatch"), "{detail}");
    let enclave_log = stack.enclaves.get(&1).expect("enclave").log_text();
    assert!(!enclave_log.contains("unsealed"), "the unknown image never unsealed:\n{enclave_log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_of_two_listed_builds_is_not_a_listed_build() {
    let mut stack = Stack::prepare(StackOptions::default()).await;
    let m = stack.measured.clone();
    let other = "ab".repeat(48);
    // Build A has this enclave's PCR0, build B its PCR1 and PCR2: each value is listed, but no
    // build has all three.
    let pinned = format!("    - PCR0: {}\n      PCR1: {}\n      PCR2: {}\n", m.pcr0, m.pcr1, m.pcr2);
    let mixed = format!(
        "    - PCR0: {}\n      PCR1: {other}\n      PCR2: {other}\n    - PCR0: {other}\n      PCR1: {}\n      PCR2: {}\n",
        m.pcr0, m.pcr1, m.pcr2
    );
    let config = std::fs::read_to_string(stack.config_path()).expect("config");
    assert!(config.contains(&pinned), "the harness pins one build:\n{config}");
    stack.write_config_text(&config.replace(&pinned, &mixed));
    stack.start_enclave(1);
    stack.start_gateway();
    let health = stack.wait_health("enclave refused", |_, h| h.enclaves[0].state == "refused").await;
    let detail = enclave_detail(&health);
    assert!(detail.contains("no single listed build has all three"), "{detail}");
    assert!(stack.row(1).is_none(), "no key for an unlisted build");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_credentials_alone_cannot_get_the_data_key() {
    let stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");
    let kms = stack.kms_url.clone();
    let decrypt = |recipient: Option<Value>| {
        let mut body = json!({ "KeyId": stack.key_arn, "CiphertextBlob": STANDARD.encode(&row.kms_encrypted_dek), "EncryptionContext": context(&row) });
        if let Some(r) = recipient {
            body["Recipient"] = r;
        }
        kms_call(&kms, "Decrypt", body)
    };

    // No Recipient: denied, for Decrypt and for a fresh data key alike.
    let (status, answer) = decrypt(None).await;
    assert_eq!((status, answer["__type"].as_str()), (400, Some("AccessDeniedException")), "{answer}");
    assert!(answer.get("Plaintext").is_none());
    let (status, answer) =
        kms_call(&kms, "GenerateDataKey", json!({ "KeyId": stack.key_arn, "KeySpec": "AES_256" })).await;
    assert_eq!((status, answer["__type"].as_str()), (400, Some("AccessDeniedException")), "{answer}");

    // A Recipient document with the right PCRs but from a PKI that is not the dev NSM root.
    let impostor_dir = tempfile::tempdir().expect("dir");
    let impostor = MockNsm::open(impostor_dir.path(), &binary("enclave")).expect("impostor NSM");
    let key = RecipientKey::generate().expect("rsa");
    let request = AttestationRequest { public_key: Some(key.public_key_spki_der()), ..AttestationRequest::default() };
    let forged = impostor.attest(&request).expect("document");
    let recipient = |document: &[u8]| json!({ "AttestationDocument": STANDARD.encode(document), "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256" });
    let (status, answer) = decrypt(Some(recipient(&forged))).await;
    assert_eq!((status, answer["__type"].as_str()), (400, Some("AccessDeniedException")), "{answer}");
    assert!(answer["message"].as_str().unwrap_or("").contains("not valid"), "{answer}");

    // Control: the genuine dev NSM with the enclave's own measurements does get it, and it
    // is the key that opens the stored seal; so the refusals above are the policy at work.
    let genuine = MockNsm::open(&stack.path().join("mock-nsm"), &binary("enclave")).expect("dev NSM");
    let document = genuine.attest(&request).expect("document");
    let (status, answer) = decrypt(Some(recipient(&document))).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("Plaintext").is_none(), "an attested answer never carries Plaintext");
    let wrapped = STANDARD.decode(answer["CiphertextForRecipient"].as_str().expect("CFR")).expect("base64");
    let dek = decrypt_for_recipient(&wrapped, &key).expect("CMS opens with the recipient key");
    let public_key: [u8; 33] = row.public_key.as_slice().try_into().expect("33 bytes");
    let binding = SealBinding { enclave_id: 1, key_epoch: 1, public_key: &public_key, kms_key_id: &row.kms_key_id };
    keyward_seal::open(&row.encrypted_private_key, &DataKey::from_slice(&dek).expect("32 bytes"), &binding)
        .expect("the released data key opens the row");
}

async fn unseal_through(tamper: Tamper) -> (String, keyward_store::MasterKeyRow, Stack) {
    let mut stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");
    stack.kill_gateway();
    stack.kill_enclave(1).await;
    let mitm = start_mitm(stack.kms_url.clone(), tamper).await;
    stack.set_kms_url(mitm);
    stack.start_enclave(1);
    stack.start_gateway();
    let health = stack.wait_health("unseal failure", |_, h| h.enclaves[0].state == "failed").await;
    (enclave_detail(&health), row, stack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_ciphertext_for_recipient_fails_unseal_cleanly() {
    let (detail, row, stack) = unseal_through(Tamper::ForgeCiphertextForRecipient).await;
    assert!(detail.contains("failed authentication"), "{detail}");
    assert_eq!(stack.row(1).expect("row"), row);
    assert_eq!(stack.row_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_data_key_in_an_attested_answer_is_refused() {
    let (detail, row, stack) = unseal_through(Tamper::InjectPlaintext).await;
    assert!(detail.contains("Plaintext") && detail.contains("refusing"), "{detail}");
    assert_eq!(stack.row(1).expect("row"), row);
}

fn keyward(stack: &Stack, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary("keyward"))
        .args(["--gateway", &format!("http://127.0.0.1:{}", stack.api_port), "verify-attestation"])
        .args(args)
        .output()
        .expect("run keyward");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_verifies_a_live_attestation_and_rejects_wrong_nonce_or_pcr() {
    let stack = Stack::start(StackOptions::default()).await;
    let root = stack.path().join("mock-nsm-root.pem").display().to_string();
    let m = stack.measured.clone();
    let pcr = |n: u8, v: &str| format!("{n}={v}");
    let public_key = stack.client.public_key(None).await.expect("key").public_key_hex;

    let (ok, out, err) = keyward(
        &stack,
        &["--root", &root, "--pcr", &pcr(0, &m.pcr0), "--pcr", &pcr(1, &m.pcr1), "--pcr", &pcr(2, &m.pcr2)],
    );
    assert!(ok, "{err}");
    let verified: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(verified["verified"], true);
    assert_eq!(verified["user_data_hex"].as_str(), Some(public_key.as_str()), "the document binds the master key");
    assert_eq!(verified["pcrs"]["0"].as_str(), Some(m.pcr0.as_str()));
    assert_eq!(verified["nonce_hex"].as_str().map(str::len), Some(64));

    let wrong = format!("{}00", &m.pcr0[..94]);
    let (ok, _, err) = keyward(&stack, &["--root", &root, "--pcr", &pcr(0, &wrong)]);
    assert!(!ok && err.contains("PCR0 mismatch"), "{err}");

    // A document fetched for one nonce does not pass for another.
    let answer = stack.client.attestation(b"nonce-a", None).await.expect("attestation");
    let file = stack.path().join("document.cose");
    std::fs::write(&file, STANDARD.decode(answer.document_b64).expect("base64")).expect("write");
    let file = file.display().to_string();
    let (ok, _, err) = keyward(&stack, &["--document", &file, "--root", &root, "--nonce", &hex::encode(b"nonce-b")]);
    assert!(!ok && err.to_lowercase().contains("nonce"), "{err}");
    let (ok, _, err) = keyward(&stack, &["--document", &file, "--root", &root, "--nonce", &hex::encode(b"nonce-a")]);
    assert!(ok, "{err}");
    // Against the real AWS root (the default), a dev document is refused.
    let (ok, _, err) = keyward(&stack, &["--document", &file]);
    assert!(!ok, "{err}");
}

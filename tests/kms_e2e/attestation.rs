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

fn enclave_code(health: &keyward_client::api::HealthResponse) -> String {
    health.enclaves[0].code.clone().unwrap_or_default()
}

/// The attesting dev KMS's decisions on `operation` so far.
fn kms_decisions(stack: &Stack, operation: &str) -> Vec<Value> {
    let proxy = stack.proxy.as_ref().expect("attesting dev KMS");
    proxy.events(keyward_e2e::event::KMS_REQUEST).into_iter().filter(|e| e["operation"] == operation).collect()
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
    assert_eq!(enclave_code(&health), "kms_denied");
    let decrypts = kms_decisions(&stack, "Decrypt");
    let denied = decrypts.last().expect("a Decrypt reached KMS");
    assert_eq!(denied["decision"], "denied", "{denied}");
    assert!(denied["reason"].as_str().unwrap_or("").contains("PCR0"), "the policy named PCR0: {denied}");
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
    let decrypts_before = kms_decisions(&stack, "Decrypt").len();
    let health = stack.wait_health("enclave refused", |_, h| h.enclaves[0].state == "refused").await;
    assert_eq!(enclave_code(&health), "attestation_rejected");
    // The log holds both runs of enclave 1: the original build provisioned, the modified one
    // was reached (a second authenticated link) and never unsealed.
    let enclave = stack.enclaves.get(&1).expect("enclave");
    assert_eq!(enclave.events(keyward_e2e::event::LINK_AUTHENTICATED).len(), 2, "the modified image was reached");
    assert_eq!(enclave.events(keyward_e2e::event::KEY_PROVISIONED).len(), 1, "the original build's key work is logged");
    assert!(enclave.events(keyward_e2e::event::KEY_UNSEALED).is_empty(), "the unknown image never unsealed");
    assert_eq!(kms_decisions(&stack, "Decrypt").len(), decrypts_before, "no KMS call with its credentials");
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
    assert_eq!(enclave_code(&health), "attestation_rejected");
    let refusals = stack.gateway.as_ref().expect("gateway").events(keyward_e2e::event::ENCLAVE_STATE);
    assert!(
        refusals.iter().any(|e| e["code"] == "attestation_rejected"
            && e["message"].as_str().unwrap_or("").contains("not those of any of the 2 listed build(s)")),
        "the log says why: {refusals:?}"
    );
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
    (enclave_code(&health), row, stack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_ciphertext_for_recipient_fails_unseal_cleanly() {
    let (code, row, stack) = unseal_through(Tamper::ForgeCiphertextForRecipient).await;
    assert_eq!(code, "seal_open_failed", "a forged data key does not open the seal");
    assert_eq!(stack.row(1).expect("row"), row);
    assert_eq!(stack.row_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_data_key_in_an_attested_answer_is_refused() {
    let (code, row, stack) = unseal_through(Tamper::InjectPlaintext).await;
    assert_eq!(code, "kms_answer_refused");
    assert_eq!(stack.row(1).expect("row"), row);
}

/// Runs `keyward verify-attestation` against the stack; returns success and the JSON it
/// printed (the verified fields, or `{"verified": false, "code", "message"}`).
fn keyward(stack: &Stack, args: &[&str]) -> (bool, Value) {
    let output = Command::new(binary("keyward"))
        .args(["--gateway", &format!("http://127.0.0.1:{}", stack.api_port), "verify-attestation"])
        .args(args)
        .output()
        .expect("run keyward");
    let json = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("keyward printed no JSON ({e}): {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.success(), json)
}

/// A PCR with one bit flipped: never equal to the original.
fn flipped(pcr: &str) -> String {
    let mut bytes = hex::decode(pcr).expect("hex PCR");
    bytes[0] ^= 0x01;
    hex::encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_verifies_a_live_attestation_and_rejects_wrong_nonce_or_pcr() {
    let stack = Stack::start(StackOptions::default()).await;
    let root = stack.path().join("mock-nsm-root.pem").display().to_string();
    let m = stack.measured.clone();
    let build = format!("{},{},{}", m.pcr0, m.pcr1, m.pcr2);
    let public_key = stack.client.public_key(None).await.expect("key").public_key_hex;

    let (ok, verified) = keyward(&stack, &["--root", &root, "--pcrs", &build]);
    assert!(ok, "{verified}");
    assert_eq!(verified["verified"], true);
    assert_eq!(verified["user_data_hex"].as_str(), Some(public_key.as_str()), "the document binds the master key");
    assert_eq!(verified["master_public_key_hex"].as_str(), Some(public_key.as_str()));
    assert!(verified["audit_public_key_hex"].is_null(), "no owners, no audit key: {verified}");
    assert_eq!(verified["pcrs"]["0"].as_str(), Some(m.pcr0.as_str()));
    assert_eq!(verified["nonce_hex"].as_str().map(str::len), Some(64));

    // Another build (each PCR one bit off), a mix of this build's PCR0 with another's PCR1-2,
    // no build at all: each refused with its code.
    let other = format!("{},{},{}", flipped(&m.pcr0), flipped(&m.pcr1), flipped(&m.pcr2));
    let mix = format!("{},{},{}", m.pcr0, flipped(&m.pcr1), flipped(&m.pcr2));
    for (what, args, code) in [
        ("another build", vec!["--root", &root, "--pcrs", &other], "unknown_build"),
        ("a mix of builds", vec!["--root", &root, "--pcrs", &mix, "--pcrs", &other], "unknown_build"),
        ("no build named", vec!["--root", &root], "pcrs_required"),
        ("PCR0 alone", vec!["--root", &root, "--pcr", &format!("0={}", m.pcr0)], "usage"),
    ] {
        let (ok, refused) = keyward(&stack, &args);
        assert!(!ok, "{what}: {refused}");
        assert_eq!((refused["verified"].as_bool(), refused["code"].as_str()), (Some(false), Some(code)), "{what}");
    }
    // Any image, when asked for by name.
    let (ok, verified) = keyward(&stack, &["--root", &root, "--insecure-any-image"]);
    assert!(ok && verified["verified"] == true, "{verified}");

    // A document fetched for one nonce does not pass for another.
    let answer = stack.client.attestation(b"nonce-a", None).await.expect("attestation");
    let file = stack.path().join("document.cose");
    std::fs::write(&file, STANDARD.decode(answer.document_b64).expect("base64")).expect("write");
    let file = file.display().to_string();
    let offline = |nonce: &[u8]| {
        vec![
            "--document".to_owned(),
            file.clone(),
            "--root".into(),
            root.clone(),
            "--pcrs".into(),
            build.clone(),
            "--nonce".into(),
            hex::encode(nonce),
        ]
    };
    let args = offline(b"nonce-b");
    let (ok, refused) = keyward(&stack, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && refused["code"] == "nonce_mismatch", "{refused}");
    let args = offline(b"nonce-a");
    let (ok, verified) = keyward(&stack, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{verified}");
    // Against the real AWS root (the default), a dev document is refused.
    let (ok, refused) = keyward(&stack, &["--document", &file, "--pcrs", &build]);
    assert!(!ok && refused["code"] == "untrusted_root", "{refused}");
}

//! The `keyward-devkms serve` binary in front of a real LocalStack (or moto, where LocalStack
//! cannot run), both started by `scripts/dev-kms` and stopped by guards even when a check
//! fails. One emulator start is the expensive part, so the scenarios share it and run in
//! sequence; each asserts with its own name in the message.
//!
//! It never skips: where neither emulator can be installed it fails, saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

struct Emulator {
    _process: ProcessGroup,
    url: String,
}

impl Emulator {
    async fn start(dir: &std::path::Path) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/dev-kms");
        let port = free_port();
        let mut command = Command::new(script);
        command.args(["run", &port.to_string(), &dir.join("state").display().to_string()]).stdout(Stdio::null());
        let mut process = ProcessGroup::spawn("dev KMS emulator", command, &dir.join("emulator.log"));
        let url = format!("http://127.0.0.1:{port}");
        // The first run may install the emulator into .dev/venv, which takes a while.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            process.assert_running();
            let answer = support::http_client()
                .no_proxy()
                .build()
                .unwrap()
                .post(format!("{url}/"))
                .header("x-amz-target", "TrentService.ListKeys")
                .header("content-type", "application/x-amz-json-1.1")
                .header("authorization", AUTHORIZATION)
                .body("{}")
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "emulator not ready:\n{}", process.log_text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self { _process: process, url }
    }
}

struct ProxyProcess {
    _process: ProcessGroup,
    url: String,
}

impl ProxyProcess {
    fn start(dir: &std::path::Path, upstream: &str, root: &std::path::Path) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyward-devkms"));
        command
            .args(["--upstream", upstream, "serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
            .env("KEYWARD_LOG", "info")
            .stdout(Stdio::piped());
        let mut process = ProcessGroup::spawn("keyward-devkms serve", command, &dir.join("proxy.log"));
        let stdout = process.child().stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("proxy did not start ({line:?}):\n{}", process.log_text()))
            .to_owned();
        Self { _process: process, url }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attesting_proxy_against_localstack() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(dir.path()).await;
    let pki = Pki::new();
    let proxy = ProxyProcess::start(dir.path(), &emulator.url, &pki.root_file());
    let (url, direct) = (proxy.url.as_str(), emulator.url.as_str());

    let build_a = Enclave::new(&pki, b"enclave build A");
    let build_b = Enclave::new(&pki, b"enclave build B");

    // Setup through the proxy: ordinary operations pass through.
    let (status, created) = kms(url, "CreateKey", &json!({ "Description": "devkms test" })).await;
    assert_eq!(status, 200, "CreateKey passes through: {created}");
    let key_arn = created["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    let put_policy = |policy: String| {
        let key_arn = key_arn.clone();
        async move {
            let body = json!({ "KeyId": key_arn, "PolicyName": "default", "Policy": policy });
            let (status, answer) = kms(url, "PutKeyPolicy", &body).await;
            assert_eq!(status, 200, "PutKeyPolicy passes through: {answer}");
        }
    };
    put_policy(policy_for(&[&build_a])).await;
    let (status, described) = kms(url, "DescribeKey", &json!({ "KeyId": key_arn })).await;
    assert_eq!(
        (status, described["KeyMetadata"]["Arn"].as_str()),
        (200, Some(key_arn.as_str())),
        "DescribeKey passes through"
    );
    let (_, listed) = kms(url, "ListKeys", &json!({})).await;
    assert!(
        listed["Keys"].as_array().unwrap().iter().any(|k| k["KeyArn"] == key_arn),
        "ListKeys passes through: {listed}"
    );

    // GenerateDataKey with a Recipient: CiphertextForRecipient only.
    let (key, recipient) = build_a.recipient();
    let (status, generated) =
        kms(url, "GenerateDataKey", &json!({ "KeyId": key_arn, "KeySpec": "AES_256", "Recipient": recipient })).await;
    assert_eq!(status, 200, "attested GenerateDataKey: {generated}");
    assert!(generated.get("Plaintext").is_none(), "attested GenerateDataKey has no Plaintext: {generated}");
    assert_eq!(generated["KeyId"], key_arn);
    let dek = open_for_recipient(&generated, &key);
    assert_eq!(dek.len(), 32);
    let blob = generated["CiphertextBlob"].clone();

    // The DEK is the one the emulator itself decrypts the blob to.
    let (status, plain) = kms(direct, "Decrypt", &json!({ "CiphertextBlob": blob })).await;
    assert_eq!(status, 200, "emulator Decrypt: {plain}");
    assert_eq!(unb64(&plain["Plaintext"]), dek, "CiphertextForRecipient holds the emulator's data key");

    // Decrypt with a fresh Recipient gives the same DEK.
    let (key, recipient) = build_a.recipient();
    let (status, decrypted) =
        kms(url, "Decrypt", &json!({ "KeyId": key_arn, "CiphertextBlob": blob, "Recipient": recipient })).await;
    assert_eq!(status, 200, "attested Decrypt: {decrypted}");
    assert!(decrypted.get("Plaintext").is_none());
    assert_eq!(decrypted["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
    assert_eq!(open_for_recipient(&decrypted, &key), dek, "attested Decrypt");

    // Without a Recipient the policy denies, whoever asks.
    let denied = kms(url, "Decrypt", &json!({ "CiphertextBlob": blob })).await;
    assert_denied(&denied, &["DenyDataKeysWithoutAttestedPCR0", "no Recipient attestation document"]);
    let denied = kms(url, "GenerateDataKey", &json!({ "KeyId": key_arn, "KeySpec": "AES_256" })).await;
    assert_denied(&denied, &["DenyDataKeysWithoutAttestedPCR0"]);
    // LocalStack needs SourceKeyId here (KMS does not): without it, it fails with InternalError.
    let re_encrypt = json!({ "CiphertextBlob": blob, "SourceKeyId": key_arn, "DestinationKeyId": key_arn });
    let denied = kms(url, "ReEncrypt", &re_encrypt).await;
    assert_denied(&denied, &["DenyDataKeysWithoutAttestedPCR0"]);

    // A document under another PKI.
    let foreign_pki = Pki::new();
    let (_, foreign) = Enclave::new(&foreign_pki, b"enclave build A").recipient();
    let denied = kms(url, "Decrypt", &json!({ "CiphertextBlob": blob, "Recipient": foreign })).await;
    assert_denied(&denied, &["Recipient attestation document is not valid", "not the pinned root"]);

    // Build B is not in the policy yet.
    let (_, recipient_b) = build_b.recipient();
    let denied = kms(url, "Decrypt", &json!({ "CiphertextBlob": blob, "Recipient": recipient_b })).await;
    assert_denied(&denied, &[&format!("kms:RecipientAttestation:PCR0 is {}", build_b.pcr0_hex())]);

    // A migration policy allows both builds.
    put_policy(policy_for(&[&build_a, &build_b])).await;
    for (name, build) in [("A", &build_a), ("B", &build_b)] {
        let (key, recipient) = build.recipient();
        let (status, answer) = kms(url, "Decrypt", &json!({ "CiphertextBlob": blob, "Recipient": recipient })).await;
        assert_eq!(status, 200, "build {name} under the two-build policy: {answer}");
        assert_eq!(open_for_recipient(&answer, &key), dek, "build {name}");
    }

    // GenerateRandom with a Recipient.
    let (key, recipient) = build_b.recipient();
    let (status, random) = kms(url, "GenerateRandom", &json!({ "NumberOfBytes": 24, "Recipient": recipient })).await;
    assert_eq!(status, 200, "attested GenerateRandom: {random}");
    assert!(random.get("Plaintext").is_none());
    assert_eq!(open_for_recipient(&random, &key).len(), 24);

    // Emulator errors come back as they are.
    let (_, recipient) = build_a.recipient();
    let (status, error) =
        kms(url, "Decrypt", &json!({ "CiphertextBlob": b64(b"garbage"), "Recipient": recipient })).await;
    assert_eq!((status, error["__type"].as_str()), (400, Some("InvalidCiphertextException")), "{error}");
    let (status, error) = kms(url, "DescribeKey", &json!({ "KeyId": "alias/absent" })).await;
    assert_eq!((status, error["__type"].as_str()), (400, Some("NotFoundException")), "{error}");

    // The proxy logged its decisions and never a data key.
    let log = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap();
    assert!(log.contains("decision=\"denied\"") || log.contains("decision=denied"), "{log}");
    assert!(!log.contains(&b64(&dek)), "a data key reached the log");
}

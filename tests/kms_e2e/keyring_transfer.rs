//! Import and export end to end. The `keyward` CLI works both ends: it checks an attestation
//! document and seals a key made outside keyward to the enclave's transfer key, and it opens
//! an export with a key pair it made itself. Independent implementations (k256,
//! ed25519-dalek) derive the public keys and check the signatures. The database and every
//! log are scanned for each secret.

use std::process::Command;

use keyward_client::{
    ClientError,
    keys::{ExportKey, SignWithKey},
};
use keyward_e2e::{Stack, StackOptions, assert_secret_absent, binary, event};

/// Runs `keyward keys ARGS` with the admin token; returns success, stdout JSON (if any) and
/// stderr.
pub(crate) fn keys_cli(stack: &Stack, args: &[&str]) -> (bool, serde_json::Value, String) {
    let output = Command::new(binary("keyward"))
        .args(["--gateway", &format!("http://127.0.0.1:{}", stack.api_port)])
        .args(["--token-file", &stack.path().join("admin-token").display().to_string(), "keys"])
        .args(args)
        .output()
        .expect("run keyward");
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.success(), json, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// 32 random bytes that are a valid secp256k1 scalar (and Ed25519 seed).
pub(crate) fn random_secret() -> [u8; 32] {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("randomness");
        if k256::SecretKey::from_slice(&bytes).is_ok() {
            return bytes;
        }
    }
}

pub(crate) fn write_secret(dir: &std::path::Path, name: &str, secret: &[u8; 32]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, hex::encode(secret)).expect("write secret");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_imported_and_exported_through_the_cli_and_the_host_never_holds_them() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    let admin = stack.admin_client();
    // Secrets live outside the stack's directory, whose logs are scanned.
    let outside = tempfile::tempdir().expect("tempdir");
    let root = stack.path().join("mock-nsm-root.pem").display().to_string();
    let m = stack.measured.clone();
    let build = format!("{},{},{}", m.pcr0, m.pcr1, m.pcr2);
    let image = ["--root", root.as_str(), "--pcrs", build.as_str()];

    // A secp256k1 key made by k256, imported; keyward signs with exactly that key.
    let btc = random_secret();
    let btc_file = write_secret(outside.path(), "btc.hex", &btc);
    let (ok, info, stderr) = keys_cli(
        &stack,
        &[&["import", "imported-btc", "--type", "secp256k1", "--secret-file", &btc_file][..], &image].concat(),
    );
    assert!(ok, "import: {stderr}");
    let k256_key = k256::ecdsa::SigningKey::from_slice(&btc).expect("k256 key");
    let expected = hex::encode(k256_key.verifying_key().to_encoded_point(true).as_bytes());
    assert_eq!(info["origin"], "imported");
    assert_eq!(info["versions"][0]["public_key_hex"], expected.as_str());
    let digest = [0x5a; 32];
    let signed = stack
        .client
        .sign_with_key("imported-btc", &SignWithKey { digest_hex: Some(hex::encode(digest)), ..SignWithKey::default() })
        .await
        .expect("sign with the imported key");
    keyward_e2e::assert_recovers(&digest, &signed.signature_hex, signed.recovery_id.expect("recovery id"), &expected);

    // The attestation check is not optional: a wrong image is refused before anything is sent.
    let wrong = format!("{},{},{}", "ab".repeat(48), m.pcr1, m.pcr2);
    let (ok, _, stderr) = keys_cli(
        &stack,
        &["import", "refused", "--type", "secp256k1", "--secret-file", &btc_file, "--root", &root, "--pcrs", &wrong],
    );
    assert!(!ok && stderr.contains("attestation refused (unknown_build)"), "{stderr}");
    let err = stack.client.key("refused").await.expect_err("no key was made");
    assert!(matches!(&err, ClientError::Api { status: 404, code, .. } if code == "key_not_found"), "{err}");
    // The same name again, and a rotation of an imported key, are refused with their codes.
    let (ok, _, stderr) = keys_cli(
        &stack,
        &[&["import", "imported-btc", "--type", "secp256k1", "--secret-file", &btc_file][..], &image].concat(),
    );
    assert!(!ok && stderr.contains("key_exists"), "{stderr}");
    let err = admin.rotate_key("imported-btc").await.expect_err("imported keys do not rotate");
    assert!(
        matches!(&err, ClientError::Api { status: 409, code, .. } if code == "cannot_rotate_imported_key"),
        "{err}"
    );

    // An exportable Ed25519 import comes back out byte for byte.
    let seed = random_secret();
    let seed_file = write_secret(outside.path(), "ed.hex", &seed);
    let (ok, _, stderr) = keys_cli(
        &stack,
        &[&["import", "imported-ed", "--type", "ed25519", "--exportable", "--secret-file", &seed_file][..], &image]
            .concat(),
    );
    assert!(ok, "import: {stderr}");
    let out = outside.path().join("ed-export.hex");
    let (ok, exported, stderr) = keys_cli(&stack, &["export", "imported-ed", "--out", &out.display().to_string()]);
    assert!(ok, "export: {stderr}");
    assert_eq!(std::fs::read_to_string(&out).expect("exported").trim(), hex::encode(seed));
    let dalek = ed25519_dalek::SigningKey::from_bytes(&seed);
    assert_eq!(exported["public_key_hex"], hex::encode(dalek.verifying_key().as_bytes()).as_str());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).expect("file").permissions().mode() & 0o777, 0o600);
    // The CLI never overwrites a file.
    let (ok, _, stderr) = keys_cli(&stack, &["export", "imported-ed", "--out", &out.display().to_string()]);
    assert!(!ok && stderr.contains("must not exist"), "{stderr}");

    // A generated exportable key: the exported seed is the key that signs.
    admin.create_key("made-here", "ed25519", true).await.expect("create");
    let made_out = outside.path().join("made.hex");
    let (ok, _, stderr) = keys_cli(&stack, &["export", "made-here", "--out", &made_out.display().to_string()]);
    assert!(ok, "export: {stderr}");
    let mut made = [0u8; 32];
    hex::decode_to_slice(std::fs::read_to_string(&made_out).expect("exported").trim(), &mut made).expect("hex");
    let message = b"signed inside, checked outside";
    let signed = stack
        .client
        .sign_with_key(
            "made-here",
            &SignWithKey {
                message_b64: Some(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, message)),
                ..SignWithKey::default()
            },
        )
        .await
        .expect("sign");
    use ed25519_dalek::Signer;
    assert_eq!(
        signed.signature_hex,
        hex::encode(ed25519_dalek::SigningKey::from_bytes(&made).sign(message).to_bytes())
    );

    // Keys not created exportable never leave: the gateway and the enclave refuse.
    let request = ExportKey { public_key_hex: "11".repeat(32), version: None };
    let err = admin.export_key("imported-btc", &request).await.expect_err("not exportable");
    assert!(matches!(&err, ClientError::Api { status: 409, code, .. } if code == "key_not_exportable"), "{err}");
    let enclave = stack.enclaves.get(&1).expect("enclave");
    assert_eq!(enclave.events(event::KEY_IMPORTED).len(), 2);
    assert_eq!(enclave.events(event::KEY_EXPORTED).len(), 2, "the two exports, and not the refused one");

    // No secret is in the database files or any log: not the imported ones, not the exported.
    let scanned = stack.log_and_database_bytes();
    assert!(scanned.len() >= 6, "the logs of every process and the three database files");
    for (path, bytes) in &scanned {
        let label = path.display().to_string();
        assert_secret_absent(&label, bytes, "imported secp256k1 key", &btc);
        assert_secret_absent(&label, bytes, "imported Ed25519 seed", &seed);
        assert_secret_absent(&label, bytes, "exported Ed25519 seed", &made);
    }
}

//! Import and export under authorization: both take the owners' quorum, and a host holding the
//! owners' signed export cannot send the key to a recipient of its own choosing.

use keyward_authz::Operation;
use keyward_e2e::{RawLink, Stack, StackOptions, error_of};
use keyward_proto::{ErrorCode, KeyExport, KeyType, Reply, Request, Response};

/// `keyward --principal-key KEY keys ARGS` with the admin token.
fn keys_as(stack: &Stack, key: &std::path::Path, args: &[&str]) -> (bool, serde_json::Value, String) {
    let output = std::process::Command::new(keyward_e2e::binary("keyward"))
        .args(["--gateway", &format!("http://127.0.0.1:{}", stack.api_port)])
        .args(["--token-file", &stack.path().join("admin-token").display().to_string()])
        .args(["--principal-key", key.to_str().unwrap(), "keys"])
        .args(args)
        .env_remove("KEYWARD_PRINCIPAL_KEY")
        .output()
        .expect("run keyward");
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.success(), json, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// A real X25519 public key (the enclave seals exports to it).
fn x25519_public() -> Vec<u8> {
    let private = aws_lc_rs::agreement::PrivateKey::generate(&aws_lc_rs::agreement::X25519).unwrap();
    private.compute_public_key().unwrap().as_ref().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_take_the_owners_quorum_and_go_only_where_they_signed() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, alice_pair, alice_key) = crate::authz::principal_file(dir.path(), "alice");
    let (bob, bob_pair, bob_key) = crate::authz::principal_file(dir.path(), "bob");
    let options =
        StackOptions { owners: vec![alice.public(), bob.public()], owner_quorum: 2, ..StackOptions::default() };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let admin = stack.admin_client().with_principal(alice.clone());
    let cold = admin.create_key("cold", "secp256k1", true).await.expect("one owner creates an exportable key");
    let cold_public = cold.versions[0].public_key_hex.clone().unwrap();
    let bob_arg = bob_key.to_str().unwrap();

    // Export: one owner is not enough; both are, and the secret is the key's.
    let out = dir.path().join("cold.hex");
    let export = ["export", "cold", "--out", out.to_str().unwrap()];
    let (ok, _, stderr) = keys_as(&stack, &alice_key, &export);
    assert!(!ok && stderr.contains("quorum_not_met"), "one owner exports: {stderr}");
    let (ok, _, stderr) = keys_as(&stack, &alice_key, &[&export[..], &["--approve-with", bob_arg]].concat());
    assert!(ok, "both owners export: {stderr}");
    let secret = hex::decode(std::fs::read_to_string(&out).unwrap().trim()).unwrap();
    let k256_key = k256::SecretKey::from_slice(&secret).unwrap();
    use k256::elliptic_curve::sec1::ToEncodedPoint;
    assert_eq!(hex::encode(k256_key.public_key().to_encoded_point(true).as_bytes()), cold_public);

    // Import: the same.
    let m = stack.measured.clone();
    let (root, build) = (stack.path().join("mock-nsm-root.pem"), format!("{},{},{}", m.pcr0, m.pcr1, m.pcr2));
    let secret_file =
        crate::keyring_transfer::write_secret(dir.path(), "in.hex", &crate::keyring_transfer::random_secret());
    let import = [
        "import",
        "warm",
        "--type",
        "secp256k1",
        "--secret-file",
        &secret_file,
        "--root",
        root.to_str().unwrap(),
        "--pcrs",
        &build,
    ];
    let (ok, _, stderr) = keys_as(&stack, &alice_key, &import);
    assert!(!ok && stderr.contains("quorum_not_met"), "one owner imports: {stderr}");
    let (ok, info, stderr) = keys_as(&stack, &alice_key, &[&import[..], &["--approve-with", bob_arg]].concat());
    assert!(ok, "both owners import: {stderr}");
    assert_eq!(info["origin"], "imported");

    // The host on the link, with both owners' signed export to their own key: redirected to
    // the host's key, it is refused; to theirs, it is served once.
    let mut link = RawLink::connect(&stack, 1).await;
    link.handshake_as_gateway(&stack).await;
    let theirs = x25519_public();
    let body = serde_json::to_vec(&serde_json::json!({"public_key_hex": hex::encode(&theirs)})).unwrap();
    let auth = crate::authz::authorization_by(&[&alice_pair, &bob_pair], Operation::Export, "default", "cold", &body);
    let row = crate::authz::stored_row_of(&stack, "cold", KeyType::Secp256k1);
    let row = keyward_proto::WrappedKey {
        identity: keyward_proto::KeyIdentity {
            flags: keyward_proto::KeyFlags { exportable: true, ..row.identity.flags },
            ..row.identity
        },
        ..row
    };
    let export = |recipient: Vec<u8>| {
        Request::KeyExport(Box::new(KeyExport {
            row: row.clone(),
            recipient_public_key: recipient,
            auth: Some(Box::new(auth.clone())),
        }))
    };
    let frame = link.call(export(x25519_public())).await;
    assert_eq!(error_of(&frame).0, ErrorCode::RequestMismatch, "to the host's key: {frame:?}");
    let frame = link.call(export(theirs.clone())).await;
    assert!(matches!(frame.reply, Reply::Ok(Response::ExportedKey(_))), "to theirs: {frame:?}");
    let frame = link.call(export(theirs)).await;
    assert_eq!(error_of(&frame).0, ErrorCode::RequestReplayed, "once: {frame:?}");
}

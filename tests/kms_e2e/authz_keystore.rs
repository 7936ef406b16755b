//! Keystore policies end to end: two owners grant a service principal, by the default
//! keystore's policy (set with the CLI), the right to create keys and sign with any key (one
//! request, or a batch under one signature), and nothing more; a host with the database in
//! hand cannot move that grant onto a key, roll it back, or withhold it.

use keyward_client::keys::SignWithKey;
use keyward_e2e::{Stack, StackOptions};

use crate::authz_policy::{code, principal as key_file, sql};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keystore_policy_delegates_creating_and_signing_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, alice_key) = key_file(dir.path(), "alice");
    let (bob, bob_key) = key_file(dir.path(), "bob");
    let (service, _) = key_file(dir.path(), "service");
    let options =
        StackOptions { owners: vec![alice.public(), bob.public()], owner_quorum: 2, ..StackOptions::default() };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let admin = stack.admin_client();
    admin.clone().with_principal(alice.clone()).create_key("treasury", "secp256k1", false).await.unwrap();
    // Creating and rotating take the admin token at the gateway; the rest the API token.
    let as_service_admin = admin.clone().with_principal(service.clone());
    let as_service = stack.client.clone().with_principal(service.clone());
    let request = SignWithKey { digest_hex: Some("42".repeat(32)), ..SignWithKey::default() };

    assert_eq!(code(as_service_admin.create_key("svc-1", "secp256k1", false).await), (403, "not_permitted".into()));
    assert_eq!(code(stack.client.keystore_policy("default").await), (404, "policy_not_found".into()));
    assert_eq!(code(stack.client.keystore_policy("tenant-b").await), (404, "policy_not_found".into()));

    // Both owners set version 1 with the CLI.
    let grant = |version: u64, operations: &[&str]| json!({"version": version, "rules": [{"principals": [service.id()], "operations": operations, "quorum": 1}]});
    let v1 = grant(1, &["create", "sign"]);
    let v1_file = dir.path().join("keystore-v1.json");
    std::fs::write(&v1_file, v1.to_string()).unwrap();
    let output = std::process::Command::new(keyward_e2e::binary("keyward"))
        .args(["--gateway", &format!("http://127.0.0.1:{}", stack.api_port)])
        .args(["--token-file", &stack.path().join("api-token").display().to_string()])
        .args(["--principal-key", alice_key.to_str().unwrap()])
        .args(["keystore", "set-policy", "--file", v1_file.to_str().unwrap()])
        .args(["--approve-with", bob_key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "the CLI sets version 1: {}", String::from_utf8_lossy(&output.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((printed["keystore"].as_str(), printed["version"].as_u64()), (Some("default"), Some(1)));
    assert!(printed["receipt"]["seq"].as_u64().is_some(), "{printed}");
    assert_eq!(stack.client.keystore_policy("default").await.unwrap().policy, v1);

    // The service creates keys, alone and in a batch, and signs with any key of the keystore.
    as_service_admin.create_key("svc-1", "secp256k1", false).await.expect("created under the keystore's grant");
    let batch = ["svc-2", "svc-3"].map(|name| keyward_client::keys::CreateKey {
        name: name.into(),
        key_type: "secp256k1".into(),
        exportable: false,
    });
    as_service_admin.create_keys(batch.to_vec()).await.expect("a batch under the keystore's grant");
    for key in ["svc-1", "treasury"] {
        let signed = as_service.sign_with_key(key, &request).await.expect("the service signs");
        let public = hex::decode(&signed.public_key_hex).unwrap();
        crate::authz::k256_verifies(&public, &[0x42; 32], &hex::decode(&signed.signature_hex).unwrap());
    }
    // A batch under one signature: every item signed, each answer with the batch's receipt.
    let items: Vec<SignWithKey> = [0x51u8, 0x52]
        .iter()
        .map(|d| SignWithKey { digest_hex: Some(hex::encode([*d; 32])), ..SignWithKey::default() })
        .collect();
    let batch = as_service.sign_batch_with_key("treasury", items.clone()).await.expect("a signed batch");
    let mut receipts = std::collections::BTreeSet::new();
    for (result, digest) in batch.results.iter().zip([0x51u8, 0x52]) {
        let keyward_client::keys::KeySignatureResult::Ok(signed) = result else { panic!("{result:?}") };
        let public = hex::decode(&signed.public_key_hex).unwrap();
        crate::authz::k256_verifies(&public, &[digest; 32], &hex::decode(&signed.signature_hex).unwrap());
        receipts.insert(signed.receipt.as_ref().expect("a receipt").seq);
    }
    assert_eq!(receipts.len(), 1, "one audit record for the batch");
    // Unsigned, each item is refused in the enclave.
    let unsigned = stack.client.sign_batch_with_key("treasury", items).await.unwrap();
    for result in &unsigned.results {
        let keyward_client::keys::KeySignatureResult::Err { error } = result else { panic!("{result:?}") };
        assert_eq!(error.code, "signature_required");
    }

    // ... and nothing the grant does not name.
    assert_eq!(code(as_service_admin.rotate_key("svc-1").await), (403, "not_permitted".into()));
    let own = grant(2, &["create", "sign", "set-policy"]);
    assert_eq!(code(as_service.set_keystore_policy("default", &own, &[]).await), (403, "not_permitted".into()));
    let on_key = grant(1, &["sign"]);
    assert_eq!(code(as_service.set_key_policy("svc-1", &on_key, &[]).await), (403, "not_permitted".into()));

    // The host copies the keystore's row onto a key: refused, then removed.
    sql(
        &stack,
        "INSERT INTO key_policies SELECT keystore, 'svc-1', version, body, tag, created_at FROM key_policies \
         WHERE key_name = ''",
        &[],
    );
    assert_eq!(code(as_service.sign_with_key("svc-1", &request).await), (502, "policy_tampered".into()));
    sql(&stack, "DELETE FROM key_policies WHERE key_name = 'svc-1'", &[]);

    // Version 2 (the SDK) takes signing back; the host cannot restore version 1 or hide version 2.
    let as_alice = stack.client.clone().with_principal(alice.clone());
    as_alice.set_keystore_policy("default", &grant(2, &["create"]), &[&bob]).await.expect("version 2");
    assert_eq!(code(as_service.sign_with_key("treasury", &request).await), (403, "not_permitted".into()));
    sql(&stack, "DELETE FROM key_policies WHERE key_name = '' AND version = 2", &[]);
    assert_eq!(code(as_service.sign_with_key("treasury", &request).await), (502, "policy_rollback".into()));
    sql(&stack, "DELETE FROM key_policies WHERE key_name = ''", &[]);
    assert_eq!(code(as_service.sign_with_key("treasury", &request).await), (502, "policy_rollback".into()));
    assert_eq!(code(as_alice.sign_with_key("treasury", &request).await), (502, "policy_rollback".into()));
}

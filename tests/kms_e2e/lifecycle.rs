//! Key lifecycle: first start, restarts, several enclaves, damaged rows, unreadable database.

use keyward_e2e::{Stack, StackOptions, assert_no_secrets};

use crate::{assert_signs, digest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_generates_a_kms_backed_key_that_signs_both_schemes() {
    let stack = Stack::start(StackOptions::default()).await;
    let key = stack.client.public_key(None).await.expect("public key");
    assert_eq!(key.enclave_id, 1);
    assert_eq!(key.public_key_hex.len(), 66);
    assert_eq!(key.key_epoch, Some(1));
    assert_signs(&stack, None, &key.public_key_hex).await;

    // A batch of both schemes, each signature verified (and each ECDSA recovery id checked).
    let items: Vec<([u8; 32], &str)> =
        (10..16u8).map(|i| (digest(i), if i % 2 == 0 { "ecdsa" } else { "bip340" })).collect();
    let batch = stack.client.sign_batch(&items, None).await.expect("sign-batch");
    assert_eq!(batch.public_key_hex, key.public_key_hex);
    assert_eq!(batch.results.len(), items.len());
    for ((d, scheme), result) in items.iter().zip(&batch.results) {
        let keyward_client::api::BatchResult::Ok(signature) = result else { panic!("item failed: {result:?}") };
        assert_eq!(signature.scheme, *scheme);
        keyward_e2e::assert_signature_verifies(
            scheme,
            d,
            &signature.signature_hex,
            &batch.public_key_hex,
            &batch.xonly_public_key_hex,
        );
        if let Some(id) = signature.recovery_id {
            keyward_e2e::assert_recovers(d, &signature.signature_hex, id, &batch.public_key_hex);
        }
    }

    // The row holds exactly what the design says.
    let row = stack.row(1).expect("row for enclave 1");
    assert_eq!(stack.row_count(), 1);
    assert_eq!(row.enclave_id, 1);
    assert_eq!(hex::encode(&row.public_key), key.public_key_hex);
    assert_eq!(row.kms_key_id, stack.key_arn, "row names the KMS key ARN, not the alias");
    assert_eq!(row.key_epoch, 1);
    assert_eq!(row.encrypted_private_key.len(), keyward_seal::SEALED_LEN);
    assert_eq!(row.encrypted_private_key[0], keyward_seal::SEAL_VERSION);
    assert!(row.kms_encrypted_dek.len() > 32, "kms_encrypted_dek is a KMS ciphertext blob");

    // Neither the database files nor any log contain the private key or the data key. With
    // the gateway running in WAL mode all three files exist; a missing one is a failure, not
    // a file skipped.
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", stack.db_path().display());
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path} must exist while the gateway runs: {e}"));
        assert_no_secrets(&path, &bytes, &row);
    }
    // Nor the link key's seed or the bearer tokens, which let whoever holds them use the key.
    let seed =
        hex::decode(std::fs::read_to_string(stack.path().join("link.key")).expect("link key").trim()).expect("hex");
    let admin_token = std::fs::read_to_string(stack.path().join("admin-token")).expect("admin token");
    for (path, bytes) in stack.log_bytes() {
        let label = path.display().to_string();
        assert_no_secrets(&label, &bytes, &row);
        keyward_e2e::assert_secret_absent(&label, &bytes, "link key", &seed);
        keyward_e2e::assert_secret_absent(&label, &bytes, "API token", stack.token.as_bytes());
        keyward_e2e::assert_secret_absent(&label, &bytes, "admin token", admin_token.trim().as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_survives_enclave_and_full_restarts() {
    let mut stack = Stack::start(StackOptions::default()).await;
    // The keyring root comes up beside the master key: wait for it at each start, so that the
    // count of KMS calls below does not depend on how far it got before a kill.
    stack.wait_keyring().await;
    let original = stack.client.public_key(None).await.expect("public key").public_key_hex;
    let row_before = stack.row(1).expect("row");

    // The enclave crashes; the gateway reconnects and unseals the stored row.
    stack.kill_enclave(1).await;
    stack.wait_health("enclave loss noticed", |status, _| status == 503).await;
    stack.start_enclave(1);
    stack.wait_ready().await;
    stack.wait_keyring().await;
    assert_eq!(stack.client.public_key(None).await.expect("public key").public_key_hex, original);
    assert_signs(&stack, None, &original).await;

    // Both processes go down and come back.
    stack.kill_gateway();
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    stack.start_gateway();
    stack.wait_ready().await;
    stack.wait_keyring().await;
    assert_eq!(stack.client.public_key(None).await.expect("public key").public_key_hex, original);
    assert_signs(&stack, None, &original).await;

    assert_eq!(stack.row(1).expect("row"), row_before, "restarts never rewrite the row");
    let decisions = stack.proxy.as_ref().expect("attesting dev KMS").events(keyward_e2e::event::KMS_REQUEST);
    let allowed = |operation: &str| {
        decisions.iter().filter(|e| e["operation"] == operation && e["decision"] == "allowed").count()
    };
    // Two data keys, both at the first start: the master key's and the keyring root's.
    assert_eq!(allowed("GenerateDataKey"), 2, "data keys only at the first start: {decisions:?}");
    // For each of the two: the first start's round trip, the enclave's restart and the full
    // restart.
    assert_eq!(allowed("Decrypt"), 6, "{decisions:?}");
    let attested = decisions.iter().filter(|e| e["operation"] == "GenerateDataKey" || e["operation"] == "Decrypt");
    assert!(
        attested.clone().count() == 8 && attested.clone().all(|e| e["decision"] == "allowed"),
        "every KMS call of the real enclave was allowed: {decisions:?}"
    );
    assert_eq!(stack.row_count(), 1, "restarts never create another key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_enclave_id_gets_its_own_key() {
    // Also the one test of the non-attested development mode.
    let stack = Stack::start(StackOptions { enclave_ids: vec![1, 2], ..StackOptions::without_attestation() }).await;
    let one = stack.client.public_key(Some(1)).await.expect("key 1").public_key_hex;
    let two = stack.client.public_key(Some(2)).await.expect("key 2").public_key_hex;
    assert_ne!(one, two);
    assert_signs(&stack, Some(1), &one).await;
    assert_signs(&stack, Some(2), &two).await;
    assert_eq!(stack.row_count(), 2);
    assert_eq!(hex::encode(stack.row(2).expect("row 2").public_key), two);
    // With two enclaves the caller must say which.
    let err = stack.client.sign(&digest(9), "ecdsa", None).await.expect_err("ambiguous");
    assert!(err.to_string().contains("enclave_id is required"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_edited_by_one_byte_fails_to_unseal_and_is_left_as_it_was() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.kill_gateway();
    stack.kill_enclave(1).await;
    let mut row = stack.row(1).expect("row");
    row.encrypted_private_key[20] ^= 0x01;
    stack.sql(
        "UPDATE enclave_master_keys SET encrypted_private_key = ?1 WHERE enclave_id = 1",
        [&row.encrypted_private_key],
    );

    stack.start_enclave(1);
    stack.start_gateway();
    let health =
        stack.wait_health("unseal failure reported", |_, h| h.enclaves.iter().any(|e| e.state == "failed")).await;
    assert_eq!(health.enclaves[0].code.as_deref(), Some("seal_open_failed"));
    let err = stack.client.sign(&digest(3), "ecdsa", None).await.expect_err("no signing with a broken row");
    assert!(
        matches!(&err, keyward_client::ClientError::Api { status: 503, code, message } if code == "enclave_not_ready" && message.contains("(seal_open_failed)")),
        "{err}"
    );

    assert_eq!(stack.row(1).expect("row"), row, "the damaged row is left exactly as it was");
    assert_eq!(stack.row_count(), 1, "no replacement key was generated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_database_stops_the_gateway_before_any_key_is_made() {
    let mut stack = Stack::prepare(StackOptions::default()).await;
    std::fs::create_dir_all(stack.db_path().parent().expect("data dir")).expect("mkdir");
    let garbage = b"not a database; somebody's data".repeat(200);
    std::fs::write(stack.db_path(), &garbage).expect("write garbage");
    stack.start_enclave(1);
    stack
        .enclaves
        .get(&1)
        .expect("enclave")
        .wait_event(keyward_e2e::event::ENCLAVE_LISTENING, std::time::Duration::from_secs(30));
    stack.start_gateway();
    let gateway = stack.gateway.as_mut().expect("gateway");
    let status = gateway.wait_exit(std::time::Duration::from_secs(30)).expect("gateway must exit");
    assert!(!status.success());
    let log = gateway.log_text();
    assert!(log.contains("refusing to start") && log.contains("cannot open database"), "{log}");
    assert_eq!(std::fs::read(stack.db_path()).expect("read"), garbage, "the file is untouched");
    let enclave = stack.enclaves.get(&1).expect("enclave");
    assert_eq!(enclave.events(keyward_e2e::event::ENCLAVE_LISTENING).len(), 1, "the enclave ran");
    assert!(enclave.events(keyward_e2e::event::KEY_PROVISIONED).is_empty(), "no key was generated");
}

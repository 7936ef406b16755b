//! Tampered rows: every column bit-flipped or truncated, rows swapped between enclaves, the
//! KMS key id re-pointed at another key (with an alias pinned, where KMS's answer catches it,
//! and with the key ARN pinned, where the enclave refuses before calling KMS), the epoch
//! changed. Every case refuses to unseal with its own error code, leaves the tampered row
//! exactly as it is, creates no key, and the original row unseals again once restored.

use keyward_client::ClientError;
use keyward_e2e::{Stack, StackOptions, assert_signs, run_tool};
use keyward_store::MasterKeyRow;

fn write_row(stack: &Stack, row: &MasterKeyRow) {
    stack.sql(
        "UPDATE enclave_master_keys SET kms_encrypted_dek = ?1, encrypted_private_key = ?2, public_key = ?3, \
         kms_key_id = ?4, key_epoch = ?5 WHERE enclave_id = ?6",
        rusqlite::params![
            row.kms_encrypted_dek,
            row.encrypted_private_key,
            row.public_key,
            row.kms_key_id,
            row.key_epoch,
            row.enclave_id
        ],
    );
}

/// Restarts gateway and enclaves and waits until enclave `id` reports a failed bring-up;
/// returns its code.
async fn restart_and_expect_failure(stack: &mut Stack, id: u32) -> String {
    stack.kill_gateway();
    for e in stack.options.enclave_ids.clone() {
        stack.kill_enclave(e).await;
        stack.start_enclave(e);
    }
    stack.start_gateway();
    let health = stack
        .wait_health("unseal refused", |_, h| h.enclaves.iter().any(|e| e.enclave_id == id && e.state == "failed"))
        .await;
    health.enclaves.iter().find(|e| e.enclave_id == id).and_then(|e| e.code.clone()).unwrap_or_default()
}

async fn check_refused(stack: &mut Stack, original: &MasterKeyRow, label: &str, tampered: MasterKeyRow, code: &str) {
    write_row(stack, &tampered);
    let found = restart_and_expect_failure(stack, 1).await;
    assert_eq!(found, code, "{label}");
    assert_eq!(stack.row(1).expect("row"), tampered, "{label}: the tampered row is left exactly as it is");
    assert_eq!(stack.row_count(), stack.options.enclave_ids.len() as i64, "{label}: no key was created");
    let err = stack.client.sign(&keyward_e2e::digest(7), "ecdsa", Some(1)).await.expect_err("nothing signs");
    assert!(
        matches!(&err, ClientError::Api { status: 503, code, .. } if code == "enclave_not_ready"),
        "{label}: {err}"
    );
    // Restored, the same key comes back.
    write_row(stack, original);
    stack.kill_gateway();
    stack.start_gateway();
    stack.wait_ready().await;
    assert_signs(stack, Some(1), &hex::encode(&original.public_key)).await;
}

fn flip(bytes: &[u8], index: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[index] ^= 0x04;
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_bit_flipped_refuses_to_unseal() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let original = stack.row(1).expect("row");
    let cases: Vec<(&str, MasterKeyRow, &str)> = vec![
        (
            "kms_encrypted_dek",
            MasterKeyRow { kms_encrypted_dek: flip(&original.kms_encrypted_dek, 40), ..original.clone() },
            "kms_invalid_ciphertext",
        ),
        (
            "encrypted_private_key",
            MasterKeyRow { encrypted_private_key: flip(&original.encrypted_private_key, 30), ..original.clone() },
            "seal_open_failed",
        ),
        (
            "public_key (part of the KMS encryption context)",
            MasterKeyRow { public_key: flip(&original.public_key, 20), ..original.clone() },
            "kms_invalid_ciphertext",
        ),
        (
            "kms_key_id",
            MasterKeyRow { kms_key_id: original.kms_key_id.replacen("key/", "key/0", 1), ..original.clone() },
            "kms_key_mismatch",
        ),
        ("key_epoch", MasterKeyRow { key_epoch: 2, ..original.clone() }, "kms_invalid_ciphertext"),
    ];
    for (label, tampered, code) in cases {
        check_refused(&mut stack, &original, label, tampered, code).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_columns_and_a_re_pointed_key_refuse_to_unseal() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let original = stack.row(1).expect("row");
    let cut = |b: &[u8]| b[..b.len() - 1].to_vec();
    let other_key =
        run_tool("keyward-devkms", &["--upstream", &stack.devkms.url(), "setup", "--alias", "alias/some-other-key"]);
    assert_ne!(other_key, original.kms_key_id);
    let cases: Vec<(&str, MasterKeyRow, &str)> = vec![
        (
            "kms_encrypted_dek truncated",
            MasterKeyRow { kms_encrypted_dek: cut(&original.kms_encrypted_dek), ..original.clone() },
            "kms_invalid_ciphertext",
        ),
        (
            "encrypted_private_key truncated",
            MasterKeyRow { encrypted_private_key: cut(&original.encrypted_private_key), ..original.clone() },
            "seal_open_failed",
        ),
        (
            "public_key truncated (the gateway refuses the row before the enclave sees it)",
            MasterKeyRow { public_key: cut(&original.public_key), ..original.clone() },
            "row_damaged",
        ),
        (
            "kms_key_id re-pointed at another key (KMS names the real one)",
            MasterKeyRow { kms_key_id: other_key.clone(), ..original.clone() },
            "kms_key_mismatch",
        ),
    ];
    for (label, tampered, code) in cases {
        check_refused(&mut stack, &original, label, tampered, code).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_key_arn_pinned_a_row_of_another_kms_key_is_refused_before_any_kms_call() {
    let mut stack = Stack::start(StackOptions { pin_key_arn: true, ..StackOptions::default() }).await;
    let original = stack.row(1).expect("row");
    assert_eq!(original.kms_key_id, stack.key_arn);
    let other_key =
        run_tool("keyward-devkms", &["--upstream", &stack.devkms.url(), "setup", "--alias", "alias/some-other-key"]);
    let decrypts_before = kms_calls(&stack, "Decrypt");
    check_refused(
        &mut stack,
        &original,
        "kms_key_id names another key than the enclave's pinned ARN",
        MasterKeyRow { kms_key_id: other_key, ..original.clone() },
        "config_mismatch",
    )
    .await;
    // check_refused restored the row and unsealed it once (one Decrypt); the refused attempts
    // before it made none.
    assert_eq!(kms_calls(&stack, "Decrypt"), decrypts_before + 1, "the refusal came before KMS");
}

/// Decrypt (or other) requests the attesting dev KMS has decided so far.
fn kms_calls(stack: &Stack, operation: &str) -> usize {
    let proxy = stack.proxy.as_ref().expect("attesting dev KMS");
    proxy.events(keyward_e2e::event::KMS_REQUEST).iter().filter(|e| e["operation"] == operation).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_swapped_between_enclaves_refuse_to_unseal() {
    let mut stack = Stack::start(StackOptions { enclave_ids: vec![1, 2], ..StackOptions::default() }).await;
    let one = stack.row(1).expect("row 1");
    let two = stack.row(2).expect("row 2");
    write_row(&stack, &MasterKeyRow { enclave_id: 1, ..two.clone() });
    write_row(&stack, &MasterKeyRow { enclave_id: 2, ..one.clone() });
    let code = restart_and_expect_failure(&mut stack, 1).await;
    assert_eq!(code, "kms_invalid_ciphertext");
    let health = stack.wait_health("both refused", |_, h| h.enclaves.iter().all(|e| e.state == "failed")).await;
    assert_eq!(health.enclaves[1].code.as_deref(), Some("kms_invalid_ciphertext"));
    assert_eq!(stack.row(1).expect("row"), MasterKeyRow { enclave_id: 1, ..two.clone() });
    assert_eq!(stack.row(2).expect("row"), MasterKeyRow { enclave_id: 2, ..one.clone() });
    assert_eq!(stack.row_count(), 2);

    write_row(&stack, &one);
    write_row(&stack, &two);
    stack.kill_gateway();
    stack.start_gateway();
    stack.wait_ready().await;
    assert_signs(&stack, Some(1), &hex::encode(&one.public_key)).await;
    assert_signs(&stack, Some(2), &hex::encode(&two.public_key)).await;
}

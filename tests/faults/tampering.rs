//! Tampered rows: every column bit-flipped or truncated, rows swapped between enclaves, the
//! KMS key id re-pointed at another key, the epoch changed. Every case refuses to unseal
//! with a clear error, leaves the tampered row exactly as it is, creates no key, and the
//! original row unseals again once restored.

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
/// returns its detail.
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
    health.enclaves.iter().find(|e| e.enclave_id == id).and_then(|e| e.detail.clone()).unwrap_or_default()
}

async fn check_refused(
    stack: &mut Stack,
    original: &MasterKeyRow,
    label: &str,
    tampered: MasterKeyRow,
    expect: &[&str],
) {
    write_row(stack, &tampered);
    let detail = restart_and_expect_failure(stack, 1).await;
    for needle in expect {
        assert!(detail.contains(needle), "{label}: expected {needle:?} in: {detail}");
    }
    assert_eq!(stack.row(1).expect("row"), tampered, "{label}: the tampered row is left exactly as it is");
    assert_eq!(stack.row_count(), stack.options.enclave_ids.len() as i64, "{label}: no key was created");
    let err = stack.client.sign(&keyward_e2e::digest(7), "ecdsa", Some(1)).await.expect_err("nothing signs");
    assert!(err.to_string().contains("enclave_not_ready"), "{label}: {err}");
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

const KMS_REFUSED: &str = "cannot recover the data key of enclave 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_bit_flipped_refuses_to_unseal() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let original = stack.row(1).expect("row");
    let cases: Vec<(&str, MasterKeyRow, Vec<&str>)> = vec![
        (
            "kms_encrypted_dek",
            MasterKeyRow { kms_encrypted_dek: flip(&original.kms_encrypted_dek, 40), ..original.clone() },
            vec![KMS_REFUSED],
        ),
        (
            "encrypted_private_key",
            MasterKeyRow { encrypted_private_key: flip(&original.encrypted_private_key, 30), ..original.clone() },
            vec!["failed authentication"],
        ),
        (
            "public_key",
            MasterKeyRow { public_key: flip(&original.public_key, 20), ..original.clone() },
            vec![KMS_REFUSED],
        ),
        (
            "kms_key_id",
            MasterKeyRow { kms_key_id: original.kms_key_id.replacen("key/", "key/0", 1), ..original.clone() },
            vec!["names KMS key", "the row was altered"],
        ),
        ("key_epoch", MasterKeyRow { key_epoch: 2, ..original.clone() }, vec![KMS_REFUSED]),
    ];
    for (label, tampered, expect) in cases {
        check_refused(&mut stack, &original, label, tampered, &expect).await;
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
    let re_pointed = format!("names KMS key {other_key}");
    let cases: Vec<(&str, MasterKeyRow, Vec<&str>)> = vec![
        (
            "kms_encrypted_dek truncated",
            MasterKeyRow { kms_encrypted_dek: cut(&original.kms_encrypted_dek), ..original.clone() },
            vec![KMS_REFUSED],
        ),
        (
            "encrypted_private_key truncated",
            MasterKeyRow { encrypted_private_key: cut(&original.encrypted_private_key), ..original.clone() },
            vec!["is 60 bytes, expected 61"],
        ),
        (
            "public_key truncated",
            MasterKeyRow { public_key: cut(&original.public_key), ..original.clone() },
            vec!["damaged", "public_key column is 32 bytes"],
        ),
        (
            "kms_key_id re-pointed at another key",
            MasterKeyRow { kms_key_id: other_key.clone(), ..original.clone() },
            vec![re_pointed.as_str()],
        ),
    ];
    for (label, tampered, expect) in cases {
        check_refused(&mut stack, &original, label, tampered, &expect).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_swapped_between_enclaves_refuse_to_unseal() {
    let mut stack = Stack::start(StackOptions { enclave_ids: vec![1, 2], ..StackOptions::default() }).await;
    let one = stack.row(1).expect("row 1");
    let two = stack.row(2).expect("row 2");
    write_row(&stack, &MasterKeyRow { enclave_id: 1, ..two.clone() });
    write_row(&stack, &MasterKeyRow { enclave_id: 2, ..one.clone() });
    let detail = restart_and_expect_failure(&mut stack, 1).await;
    assert!(detail.contains(KMS_REFUSED), "{detail}");
    let health = stack.wait_health("both refused", |_, h| h.enclaves.iter().all(|e| e.state == "failed")).await;
    assert!(health.enclaves[1].detail.as_deref().unwrap_or("").contains("cannot recover the data key of enclave 2"));
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

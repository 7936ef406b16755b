//! A new row is shown to open before it replaces the old one. With a key policy that allows
//! `GenerateDataKey` but denies `Decrypt` (a policy edit gone wrong, or an upgrade that encodes
//! the encryption context differently), a rotation would store a row that never opens again:
//! the enclave proves the round trip first, so the rotation fails cleanly, the old row stands
//! byte for byte, and a first start stores nothing.

use keyward_client::ClientError;
use keyward_e2e::{Stack, StackOptions, assert_signs, event, run_tool};
use serde_json::{Value, json};

/// Installs the stack's key policy plus a statement denying `kms:Decrypt` to everyone (or,
/// with `deny_decrypt` false, the stack's policy as it was).
fn set_policy(stack: &Stack, deny_decrypt: bool) {
    let mut policy: Value =
        serde_json::from_str(&std::fs::read_to_string(stack.path().join("key-policy.json")).expect("policy"))
            .expect("policy JSON");
    if deny_decrypt {
        policy["Statement"].as_array_mut().expect("statements").push(json!({
            "Sid": "TestDeniesDecrypt",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "kms:Decrypt",
            "Resource": "*",
        }));
    }
    let path = stack.path().join("key-policy-under-test.json");
    std::fs::write(&path, policy.to_string()).expect("write policy");
    run_tool(
        "keyward-devkms",
        &[
            "--upstream",
            &stack.devkms.url(),
            "setup",
            "--alias",
            "alias/keyward-enclave-master-key",
            "--policy",
            &path.display().to_string(),
        ],
    );
}

/// The stored keyring root row, every column.
fn root_row(stack: &Stack) -> Vec<Vec<u8>> {
    let conn = rusqlite::Connection::open(stack.db_path()).expect("db");
    let row: (Vec<u8>, i64, Vec<u8>, Vec<u8>, String) = conn
        .query_row(
            "SELECT root_id, root_epoch, kms_encrypted_dek, sealed_root, kms_key_id FROM keyring_root",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("the root row");
    vec![row.0, row.1.to_be_bytes().to_vec(), row.2, row.3, row.4.into_bytes()]
}

fn decisions(stack: &Stack, operation: &str, decision: &str) -> usize {
    let proxy = stack.proxy.as_ref().expect("attesting dev KMS");
    proxy.events(event::KMS_REQUEST).iter().filter(|e| e["operation"] == operation && e["decision"] == decision).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_new_row_would_not_open_fails_and_leaves_the_old_row() {
    let mut stack = Stack::start(StackOptions::default()).await;
    // The keyring root is made at first start too; let that finish under the good policy.
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    let before = stack.row(1).expect("row");
    let root_before = root_row(&stack);
    let generated_before = decisions(&stack, "GenerateDataKey", "allowed");
    set_policy(&stack, true);

    let err = stack.admin_client().rotate(None).await.expect_err("the new row does not open");
    assert!(matches!(&err, ClientError::Api { status: 502, code, .. } if code == "round_trip_failed"), "{err}");
    assert_eq!(stack.row(1).expect("row"), before, "the old row stands, byte for byte");
    // KMS made the new data key and refused to decrypt it: the proof is what stopped it.
    assert_eq!(decisions(&stack, "GenerateDataKey", "allowed"), generated_before + 1, "the rotation's data key");
    assert!(decisions(&stack, "Decrypt", "denied") >= 1);
    // The keyring root's rotation is proven the same way.
    let err = stack.admin_client().rotate_keyring_root().await.expect_err("the new root row does not open");
    assert!(matches!(&err, ClientError::Api { status: 502, code, .. } if code == "round_trip_failed"), "{err}");
    assert_eq!(root_row(&stack), root_before, "the root row stands, byte for byte");
    let enclave = stack.enclaves.get(&1).expect("enclave");
    assert_eq!(enclave.events(event::ROUND_TRIP_FAILED).len(), 2, "the master key's and the root's");
    assert_eq!(enclave.events(event::KEY_COMMITTED).len(), 1, "the first start's commit, in the same log");
    assert!(enclave.events(event::KEY_RESEALED).is_empty(), "nothing was handed out to store");
    // The enclave keeps signing with its key and epoch.
    assert_signs(&stack, None, &hex::encode(&before.public_key)).await;
    assert_eq!(stack.client.public_key(None).await.expect("key").key_epoch, Some(1));

    // With the policy repaired the old row still opens after a restart, and rotation works.
    set_policy(&stack, false);
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    stack.wait_ready().await;
    let rotated = stack.admin_client().rotate(None).await.expect("rotation with Decrypt allowed");
    assert_eq!(rotated.key_epoch, 2);
    stack.wait_health("keyring ready again", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    let root = stack.admin_client().rotate_keyring_root().await.expect("root rotation with Decrypt allowed");
    assert_eq!((root.previous_root_epoch, root.root_epoch), (1, 2));
    assert_signs(&stack, None, &hex::encode(&before.public_key)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_whose_row_would_not_open_stores_nothing() {
    let mut stack = Stack::prepare(StackOptions::default()).await;
    set_policy(&stack, true);
    stack.start_enclave(1);
    stack.start_gateway();
    let health = stack.wait_health("provisioning refused", |_, h| h.enclaves[0].state == "failed").await;
    assert_eq!(health.enclaves[0].code.as_deref(), Some("round_trip_failed"));
    assert_eq!(stack.row_count(), 0, "no row that would not open is stored");
    set_policy(&stack, false);
    stack.wait_ready().await;
    assert_eq!(stack.row_count(), 1);
    let row = stack.row(1).expect("row");
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
}

//! Crashes while keys are made: the gateway at each step of creating keys (one or a batch),
//! halfway through the batch's database transaction, and at each step of a key rotation; the
//! enclave after generating keys; the gateway at each step of the keyring root's first start,
//! and two gateways that find no root at once. Afterwards every key of a request exists or
//! none does, never a half batch, and the keyring still serves with one root. On SQLite and on
//! PostgreSQL.

use std::time::Duration;

use keyward_client::{ClientError, keys::CreateKey, keys::SignWithKey};
use keyward_e2e::{Cell, Engine, Stack, binary, event};

keyward_e2e::on_each_engine!(
    a_gateway_crash_at_any_step_of_creating_keys_leaves_every_key_of_the_request_or_none,
    a_gateway_crash_during_a_key_rotation_leaves_the_old_or_the_new_version_whole,
    an_enclave_crash_after_generating_keys_stores_none_and_the_keyring_comes_back,
    a_gateway_crash_during_the_keyring_roots_first_start_leaves_one_root,
    two_gateways_that_find_no_root_at_once_end_with_the_winners_root,
);

/// Restarts the gateway with `KEYWARD_FAULT=point` and waits for the keyring.
async fn gateway_with_fault(stack: &mut Stack, point: &str) {
    stack.kill_gateway();
    stack.start_gateway_with(&[("KEYWARD_FAULT", point.into())]);
    stack.wait_keyring().await;
}

/// Waits for the gateway to abort at `point`, then starts it without the fault.
async fn gateway_crashed_at(stack: &mut Stack, point: &str) {
    let gateway = stack.gateway.as_mut().expect("gateway");
    gateway.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| panic!("{point}: the gateway did not crash"));
    assert!(gateway.log_text().contains(&format!("KEYWARD_FAULT: aborting at {point}")), "{point}: crashed elsewhere");
    stack.gateway = None;
    stack.start_gateway();
    stack.wait_keyring().await;
}

fn batch(prefix: &str, n: usize) -> Vec<CreateKey> {
    (0..n)
        .map(|i| CreateKey { name: format!("{prefix}-{i:03}"), key_type: "secp256k1".into(), exportable: false })
        .collect()
}

fn stored(stack: &Stack, prefix: &str) -> (i64, i64) {
    (
        stack.count(&format!("SELECT COUNT(*) FROM keys WHERE name LIKE '{prefix}-%'")),
        stack.count(&format!("SELECT COUNT(*) FROM key_versions WHERE name LIKE '{prefix}-%'")),
    )
}

async fn signs(stack: &Stack, name: &str) {
    let digest = [0x42u8; 32];
    let key = stack.client.key(name).await.expect("key");
    let signed = stack
        .client
        .sign_with_key(name, &SignWithKey { digest_hex: Some(hex::encode(digest)), ..SignWithKey::default() })
        .await
        .expect("sign");
    let public_key = key.versions.last().and_then(|v| v.public_key_hex.clone()).expect("public key");
    keyward_e2e::assert_recovers(&digest, &signed.signature_hex, signed.recovery_id.expect("recovery id"), &public_key);
}

async fn a_gateway_crash_at_any_step_of_creating_keys_leaves_every_key_of_the_request_or_none(engine: Engine) {
    let db = engine.start();
    let mut stack = Stack::start(db.options()).await;
    stack.wait_keyring().await;
    for (point, kept) in [
        ("gateway:keys:before-enclave", false),
        ("gateway:keys:before-store", false),
        ("store:insert-keys:halfway", false),
        ("gateway:keys:before-reply", true),
    ] {
        for size in [1, 100] {
            let prefix = format!("{}-{size}", point.rsplit(':').next().expect("step"));
            gateway_with_fault(&mut stack, point).await;
            let result = stack.admin_client().create_keys(batch(&prefix, size)).await;
            assert!(result.is_err(), "{point}: the gateway dies before answering");
            gateway_crashed_at(&mut stack, point).await;
            let expected = if kept { size as i64 } else { 0 };
            assert_eq!(stored(&stack, &prefix), (expected, expected), "{point}, {size} keys: all or none");
            if kept {
                signs(&stack, &format!("{prefix}-000")).await;
                signs(&stack, &format!("{prefix}-{:03}", size - 1)).await;
            } else {
                // Nothing was left behind: the same request now succeeds whole.
                let made = stack.admin_client().create_keys(batch(&prefix, size)).await.expect("again");
                assert_eq!(made.keys.len(), size);
                signs(&stack, &format!("{prefix}-{:03}", size - 1)).await;
            }
        }
    }
}

async fn a_gateway_crash_during_a_key_rotation_leaves_the_old_or_the_new_version_whole(engine: Engine) {
    let db = engine.start();
    let mut stack = Stack::start(db.options()).await;
    stack.wait_keyring().await;
    for (point, latest) in [("gateway:key-rotate:before-store", 1), ("gateway:key-rotate:before-reply", 2)] {
        let name = format!("rot-{latest}");
        stack.admin_client().create_key(&name, "secp256k1", false).await.expect("create");
        gateway_with_fault(&mut stack, point).await;
        assert!(stack.admin_client().rotate_key(&name).await.is_err(), "{point}");
        gateway_crashed_at(&mut stack, point).await;
        let key = stack.client.key(&name).await.expect("key");
        assert_eq!((key.latest_version, key.versions.len()), (latest, latest as usize), "{point}");
        signs(&stack, &name).await;
    }
}

async fn an_enclave_crash_after_generating_keys_stores_none_and_the_keyring_comes_back(engine: Engine) {
    let db = engine.start();
    let mut stack = Stack::start(db.options()).await;
    stack.wait_keyring().await;
    stack.kill_enclave(1).await;
    stack.start_enclave_with(1, &binary("enclave"), &[("KEYWARD_FAULT", "enclave:keys:created".into())]);
    stack.wait_keyring().await;
    let err = stack.admin_client().create_keys(batch("lost", 10)).await.expect_err("the enclave dies");
    assert!(matches!(&err, ClientError::Api { status: 503, code, .. } if code == "enclave_unavailable"), "{err}");
    let crashed = stack.enclaves.get_mut(&1).expect("enclave");
    crashed.wait_exit(Duration::from_secs(30)).expect("crashed");
    assert!(crashed.log_text().contains("KEYWARD_FAULT: aborting at enclave:keys:created"));
    stack.enclaves.remove(&1);
    assert_eq!(stored(&stack, "lost"), (0, 0));
    stack.start_enclave(1);
    stack.wait_keyring().await;
    stack.admin_client().create_keys(batch("lost", 10)).await.expect("made after the restart");
    signs(&stack, "lost-009").await;
}

async fn a_gateway_crash_during_the_keyring_roots_first_start_leaves_one_root(engine: Engine) {
    for (point, stored_roots) in [("gateway:keyring:before-store", 0), ("gateway:keyring:before-commit", 1)] {
        let db = engine.start();
        let mut stack = Stack::prepare(db.options()).await;
        stack.start_enclave(1);
        stack.start_gateway_with(&[("KEYWARD_FAULT", point.into())]);
        let gateway = stack.gateway.as_mut().expect("gateway");
        gateway.wait_exit(Duration::from_secs(60)).unwrap_or_else(|| panic!("{point}: no crash"));
        assert!(gateway.log_text().contains(&format!("KEYWARD_FAULT: aborting at {point}")), "{point}");
        stack.gateway = None;
        assert_eq!(stack.count("SELECT COUNT(*) FROM keyring_root"), stored_roots, "{point}");
        let stored_id = (stored_roots == 1).then(|| match &stack.query("SELECT root_id FROM keyring_root", &[])[..] {
            [row] if let [Cell::Blob(id)] = &row[..] => hex::encode_upper(id),
            other => panic!("{point}: one root id, found {other:?}"),
        });
        stack.start_gateway();
        let health = stack.wait_keyring().await;
        assert_eq!(stack.count("SELECT COUNT(*) FROM keyring_root"), 1, "{point}: one root");
        let enclave = stack.enclaves.get(&1).expect("enclave");
        if let Some(id) = stored_id {
            // The stored root is the one in use: opened, never replaced.
            assert_eq!(health.enclaves[0].keyring.root_id.as_deref().map(str::to_uppercase), Some(id), "{point}");
            assert_eq!(enclave.events(event::ROOT_UNSEALED).len(), 1, "{point}");
        } else {
            // The unstored root was never committed and wrapped nothing; a new one replaced it.
            assert_eq!(enclave.events(event::ROOT_PROVISIONED).len(), 2, "{point}");
        }
        stack.admin_client().create_key("after", "secp256k1", false).await.expect("create");
        signs(&stack, "after").await;
    }
}

async fn two_gateways_that_find_no_root_at_once_end_with_the_winners_root(engine: Engine) {
    let db = engine.start();
    let mut stack = Stack::prepare(db.options()).await;
    let pause = stack.path().join("pause");
    std::fs::create_dir_all(&pause).expect("pause dir");
    stack.start_enclave(1);
    // Gateway A makes a root and holds just before its INSERT.
    stack.start_gateway_with(&[
        ("KEYWARD_FAULT", "pause:gateway:keyring:before-store".into()),
        ("KEYWARD_FAULT_DIR", pause.display().to_string()),
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !pause.join("paused").exists() {
        assert!(std::time::Instant::now() < deadline, "gateway A never reached its INSERT:\n{}", stack.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Gateway B (with its own enclave) finds no root either, makes one, stores it first.
    let b = stack.start_second_pair(2).await;
    let b_client = keyward_client::Client::new(&format!("http://127.0.0.1:{}", b.api_port), Some(stack.token.clone()))
        .expect("client");
    let b_root = loop {
        let (_, health) = b_client.health().await.expect("health");
        if health.enclaves[0].keyring.state == "ready" {
            break health.enclaves[0].keyring.root_id.clone().expect("root id");
        }
        assert!(std::time::Instant::now() < deadline, "gateway B's keyring never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A resumes: its INSERT loses, and it unseals B's root instead of committing its own.
    std::fs::write(pause.join("resume"), b"").expect("resume");
    let health = stack.wait_keyring().await;
    assert_eq!(health.enclaves[0].keyring.root_id.as_deref(), Some(b_root.as_str()));
    assert_eq!(stack.count("SELECT COUNT(*) FROM keyring_root"), 1);
    let enclave = stack.enclaves.get(&1).expect("enclave");
    assert_eq!(enclave.events(event::ROOT_PROVISIONED).len(), 1, "A's enclave made a root...");
    assert!(enclave.events(event::ROOT_COMMITTED).is_empty(), "...which was never committed");
    assert_eq!(enclave.events(event::ROOT_UNSEALED).len(), 1, "A's enclave opened B's root");
    // A key made through B signs through A.
    let b_admin = keyward_client::Client::new(&format!("http://127.0.0.1:{}", b.api_port), Some(b.admin_token.clone()))
        .expect("client");
    b_admin.create_key("shared", "secp256k1", false).await.expect("create through B");
    signs(&stack, "shared").await;
}

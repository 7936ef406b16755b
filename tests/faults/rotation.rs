//! Data-key rotation: same public key, `key_epoch + 1`, compare-and-swap on the old epoch;
//! crashes at each step, concurrent rotations, and rotation under signing load.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use keyward_client::ClientError;
use keyward_e2e::{Stack, StackOptions, assert_signature_verifies, assert_signs, binary, digest, free_port};

async fn restart_enclave_and_check(stack: &mut Stack, public_key: &str, epoch: i64) {
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    let health = stack.wait_ready().await;
    assert_eq!(health.enclaves[0].key_epoch, Some(epoch as u32));
    assert_eq!(stack.row(1).expect("row").key_epoch, epoch);
    assert_signs(stack, None, public_key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_the_same_key_under_a_new_data_key() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let before = stack.row(1).expect("row");
    let public_key = hex::encode(&before.public_key);

    let rotated = stack.admin_client().rotate(None).await.expect("rotate");
    assert_eq!((rotated.previous_key_epoch, rotated.key_epoch), (1, 2));
    assert_eq!(rotated.public_key_hex, public_key);
    let after = stack.row(1).expect("row");
    assert_eq!(after.public_key, before.public_key);
    assert_eq!(after.key_epoch, 2);
    assert_ne!(after.kms_encrypted_dek, before.kms_encrypted_dek, "a new data key");
    assert_ne!(after.encrypted_private_key, before.encrypted_private_key, "a new seal");
    assert_eq!(stack.client.public_key(None).await.expect("key").key_epoch, Some(2));
    restart_enclave_and_check(&mut stack, &public_key, 2).await;

    // The CLI does the same through the running gateway.
    let output = Command::new(binary("gateway"))
        .args(["--config", &stack.config_path().display().to_string(), "rotate"])
        .output()
        .expect("gateway rotate");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(answer["key_epoch"], 3);
    assert_eq!(stack.row(1).expect("row").key_epoch, 3);

    // Without the admin token there is no rotation.
    let err = stack.client.rotate(None).await.expect_err("API token is not the admin token");
    assert!(matches!(err, ClientError::Api { status: 401, .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_crash_before_the_kms_call_or_before_storing_leaves_the_old_row() {
    for point in ["gateway:rotate:before-kms", "gateway:rotate:before-store"] {
        let mut stack = Stack::prepare(StackOptions::default()).await;
        stack.start_enclave(1);
        stack.start_gateway_with(&[("KEYWARD_FAULT", point.into())]);
        stack.wait_ready().await;
        let before = stack.row(1).expect("row");
        assert!(stack.admin_client().rotate(None).await.is_err(), "{point}: the gateway dies mid-rotation");
        let gateway = stack.gateway.as_mut().expect("gateway");
        gateway.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| panic!("{point}: no crash"));
        assert!(gateway.log_text().contains(&format!("KEYWARD_FAULT: aborting at {point}")), "crashed elsewhere");
        assert_eq!(stack.row(1).expect("row"), before, "{point}: nothing stored");
        stack.start_gateway();
        stack.wait_ready().await;
        restart_enclave_and_check(&mut stack, &hex::encode(&before.public_key), 1).await;
        assert_eq!(stack.row(1).expect("row"), before, "{point}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_crash_after_storing_the_rotation_commits_it_on_restart() {
    let mut stack = Stack::prepare(StackOptions::default()).await;
    stack.start_enclave(1);
    stack.start_gateway_with(&[("KEYWARD_FAULT", "gateway:rotate:before-commit".into())]);
    stack.wait_ready().await;
    let before = stack.row(1).expect("row");
    assert!(stack.admin_client().rotate(None).await.is_err(), "the gateway dies mid-rotation");
    stack.gateway.as_mut().expect("gateway").wait_exit(Duration::from_secs(30)).expect("crashed");
    let stored = stack.row(1).expect("row");
    assert_eq!((stored.key_epoch, &stored.public_key), (2, &before.public_key), "the new epoch is stored");
    // The enclave still runs with the key; the restarted gateway commits the stored epoch.
    stack.start_gateway();
    let health = stack.wait_ready().await;
    assert_eq!(health.enclaves[0].key_epoch, Some(2));
    restart_enclave_and_check(&mut stack, &hex::encode(&before.public_key), 2).await;
}

/// The enclave dies at `point` during a rotation; it is restarted without the fault.
async fn enclave_crash_during_rotation(point: &str) -> (Stack, keyward_store::MasterKeyRow, ClientError) {
    let mut stack = Stack::prepare(StackOptions::default()).await;
    stack.start_enclave_with(1, &binary("enclave"), &[("KEYWARD_FAULT", point.to_owned())]);
    stack.start_gateway();
    stack.wait_ready().await;
    let before = stack.row(1).expect("row");
    let err = stack.admin_client().rotate(None).await.expect_err("the enclave dies mid-rotation");
    let crashed = stack.enclaves.get_mut(&1).expect("enclave");
    crashed.wait_exit(Duration::from_secs(30)).expect("crashed");
    assert!(crashed.log_text().contains(&format!("KEYWARD_FAULT: aborting at {point}")), "crashed elsewhere");
    stack.enclaves.remove(&1);
    stack.wait_health("the gateway notices the crash", |_, h| h.enclaves[0].state != "ready").await;
    (stack, before, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_crash_before_or_after_the_kms_call_leaves_the_old_row() {
    for point in ["enclave:rotate:before-kms", "enclave:rotate:after-kms"] {
        let (mut stack, before, err) = enclave_crash_during_rotation(point).await;
        assert!(matches!(&err, ClientError::Api { status: 503, code, .. } if code == "enclave_unavailable"), "{err}");
        assert!(err.to_string().contains("not applied"), "{point}: {err}");
        assert_eq!(stack.row(1).expect("row"), before, "{point}");
        stack.start_enclave(1);
        stack.wait_ready().await;
        assert_signs(&stack, None, &hex::encode(&before.public_key)).await;
        assert_eq!(stack.row(1).expect("row"), before, "{point}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_crash_after_the_new_row_is_stored_unseals_the_new_epoch() {
    let (mut stack, before, err) = enclave_crash_during_rotation("enclave:rotate:at-commit").await;
    // Not "not applied": the new row is stored, and the answer says so.
    assert!(matches!(&err, ClientError::Api { status: 502, code, .. } if code == "rotation_not_committed"), "{err}");
    assert!(err.to_string().contains("(key_epoch 2) is stored, but the enclave did not commit it"), "{err}");
    let stored = stack.row(1).expect("row");
    assert_eq!((stored.key_epoch, &stored.public_key), (2, &before.public_key));
    stack.start_enclave(1);
    let health = stack.wait_ready().await;
    assert_eq!(health.enclaves[0].key_epoch, Some(2));
    assert_signs(&stack, None, &hex::encode(&before.public_key)).await;
    assert_eq!(stack.row(1).expect("row"), stored, "the new row is the one kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_rotating_at_once_meet_at_the_compare_and_swap() {
    // Gateway A is the stack's; gateway B shares its database and enclave (a second instance
    // started by mistake) and is held just before its compare-and-swap while A rotates.
    let mut stack = Stack::start(StackOptions::default()).await;
    let before = stack.row(1).expect("row");
    let pause = stack.path().join("pause");
    std::fs::create_dir_all(&pause).expect("pause dir");
    let b_api = free_port();
    let config = std::fs::read_to_string(stack.config_path()).expect("config");
    let relay_line = format!("listen: {}", stack.relay_address());
    let b_config = config
        .replace(&format!("listen: 127.0.0.1:{}", stack.api_port), &format!("listen: 127.0.0.1:{b_api}"))
        .replace(&relay_line, &format!("listen: tcp://127.0.0.1:{}", free_port()));
    assert!(!b_config.contains(&relay_line) && b_config.contains(&format!(":{b_api}")), "{b_config}");
    let b_config_path = stack.path().join("gateway-b.yaml");
    std::fs::write(&b_config_path, b_config).expect("write");
    let _gateway_b = stack.spawn_gateway(
        "gateway-b",
        &b_config_path,
        &[
            ("KEYWARD_FAULT", "pause:gateway:rotate:before-store".into()),
            ("KEYWARD_FAULT_DIR", pause.display().to_string()),
        ],
    );
    let token = std::fs::read_to_string(stack.path().join("admin-token")).expect("admin token");
    let b = keyward_client::Client::new(&format!("http://127.0.0.1:{b_api}"), Some(token)).expect("client");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while b.health().await.map(|(status, _)| status).ok() != Some(200) {
        assert!(std::time::Instant::now() < deadline, "gateway B never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // B reads epoch 1, gets a resealed row for epoch 2 from the enclave, and waits.
    let b_rotation = tokio::spawn(async move { b.rotate(None).await });
    while !pause.join("paused").exists() {
        assert!(std::time::Instant::now() < deadline, "gateway B never reached its compare-and-swap");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A rotates 1 -> 2 and commits it.
    let a = stack.admin_client().rotate(None).await.expect("gateway A rotates");
    assert_eq!(a.key_epoch, 2);
    let stored = stack.row(1).expect("row");
    // B resumes: its swap expects epoch 1 and finds 2, so it stores nothing.
    std::fs::write(pause.join("resume"), b"").expect("resume");
    let err = b_rotation.await.expect("task").expect_err("B lost the compare-and-swap");
    assert!(matches!(&err, ClientError::Api { status: 409, code, .. } if code == "rotation_conflict"), "{err}");
    assert!(err.to_string().contains("not applied"), "{err}");
    assert_eq!(stack.row(1).expect("row"), stored, "A's row stands, byte for byte");
    assert_eq!(stored.public_key, before.public_key);
    restart_enclave_and_check(&mut stack, &hex::encode(&before.public_key), 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_through_one_gateway_are_serialised_and_both_apply() {
    // One gateway runs one rotation per enclave at a time: two requests at once both succeed,
    // one after the other, with consecutive epochs. (Two gateways on one database, which this
    // lock cannot serialise, meet at the compare-and-swap instead: the test above.)
    let mut stack = Stack::start(StackOptions::default()).await;
    let public_key = hex::encode(stack.row(1).expect("row").public_key);
    let admin = stack.admin_client();
    let (a, b) = tokio::join!(admin.rotate(None), admin.rotate(None));
    let mut epochs = vec![a.expect("first rotation").key_epoch, b.expect("second rotation").key_epoch];
    epochs.sort_unstable();
    assert_eq!(epochs, vec![2, 3], "both applied, in turn");
    assert_eq!(stack.row(1).expect("row").key_epoch, 3);
    restart_enclave_and_check(&mut stack, &public_key, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_continues_while_the_data_key_rotates() {
    let stack = Stack::start(StackOptions::default()).await;
    let original = hex::encode(stack.row(1).expect("row").public_key);
    let xonly = original[2..].to_owned();
    let client = stack.client.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_flag = stop.clone();
    let signer = tokio::spawn(async move {
        let mut signed = Vec::new();
        let mut i = 0u32;
        while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
            let d = digest((i % 251) as u8);
            let scheme = if i.is_multiple_of(2) { "ecdsa" } else { "bip340" };
            let started = Instant::now();
            let result = client.sign(&d, scheme, None).await;
            signed.push((d, scheme, started, Instant::now(), result));
            i += 1;
        }
        signed
    });
    let admin = stack.admin_client();
    let mut windows = Vec::new();
    for expected in 2..=4 {
        let started = Instant::now();
        assert_eq!(admin.rotate(None).await.expect("rotate").key_epoch, expected);
        windows.push((started, Instant::now()));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let signed = signer.await.expect("signer");
    // Signing really overlapped every rotation: signatures began and finished inside each.
    for (n, (from, to)) in windows.iter().enumerate() {
        let inside = signed.iter().filter(|(_, _, start, end, _)| start >= from && end <= to).count();
        assert!(inside > 0, "no signature completed during rotation {n} ({:?})", *to - *from);
    }
    for (d, scheme, _, _, result) in signed {
        let s = result.expect("every signature during rotation succeeds");
        assert_eq!(s.public_key_hex, original, "the key never changes by rotation");
        // Verified against the key from before the rotations, not the one in the answer.
        assert_signature_verifies(scheme, &d, &s.signature.signature_hex, &original, &xonly);
    }
}

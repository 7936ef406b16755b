//! Crashes of the enclave and of the gateway at each step of the first start: before the KMS
//! call, after KMS answered (before the INSERT), after the INSERT but before Commit. A restart
//! converges on exactly one key, and once a row is stored it is the key that survives.

use std::time::Duration;

use keyward_e2e::{Stack, StackOptions, assert_signs, binary};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Enclave,
    Gateway,
}

async fn crash_then_restart(who: Who, point: &str, row_stored_at_crash: bool) {
    let mut stack = Stack::prepare(StackOptions::default()).await;
    let fault = [("KEYWARD_FAULT", point.to_owned())];
    match who {
        Who::Enclave => {
            stack.start_enclave_with(1, &binary("enclave"), &fault);
            stack.start_gateway();
        }
        Who::Gateway => {
            stack.start_enclave(1);
            stack.start_gateway_with(&fault);
        }
    }
    let crashed = match who {
        Who::Enclave => stack.enclaves.get_mut(&1).expect("enclave"),
        Who::Gateway => stack.gateway.as_mut().expect("gateway"),
    };
    let status = crashed.wait_exit(Duration::from_secs(90)).unwrap_or_else(|| panic!("no crash at {point}"));
    assert!(!status.success());
    assert!(crashed.log_text().contains(&format!("KEYWARD_FAULT: aborting at {point}")), "crashed elsewhere");

    let at_crash = stack.row(1);
    assert_eq!(at_crash.is_some(), row_stored_at_crash, "row stored when crashing at {point}");
    if who == Who::Enclave {
        // While the enclave is down the gateway says so and signs nothing.
        stack
            .wait_health("enclave down reported", |status, h| {
                status == 503
                    && h.enclaves[0].state == "connecting"
                    && h.enclaves[0].code.as_deref() == Some("enclave_unreachable")
            })
            .await;
        let err = stack.client.sign(&keyward_e2e::digest(1), "ecdsa", None).await.expect_err("nothing signs");
        assert!(
            matches!(&err, keyward_client::ClientError::Api { status: 503, code, .. } if code == "enclave_not_ready"),
            "{err}"
        );
    }

    match who {
        Who::Enclave => stack.start_enclave(1),
        Who::Gateway => stack.start_gateway(),
    }
    stack.wait_ready().await;
    assert_eq!(stack.row_count(), 1, "exactly one key after converging from a crash at {point}");
    let row = stack.row(1).expect("row");
    if let Some(before) = at_crash {
        assert_eq!(row, before, "the stored key is the one restored, untouched");
    }
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enclave_crash_before_the_kms_call_converges() {
    crash_then_restart(Who::Enclave, "enclave:provision:before-kms", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enclave_crash_after_kms_answered_converges() {
    crash_then_restart(Who::Enclave, "enclave:provision:after-kms", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enclave_crash_after_the_insert_before_commit_restores_the_stored_key() {
    crash_then_restart(Who::Enclave, "enclave:provision:at-commit", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_crash_before_the_kms_call_converges() {
    crash_then_restart(Who::Gateway, "gateway:provision:before-kms", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_crash_after_kms_answered_before_the_insert_converges() {
    crash_then_restart(Who::Gateway, "gateway:provision:before-insert", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_crash_after_the_insert_before_commit_restores_the_stored_key() {
    crash_then_restart(Who::Gateway, "gateway:provision:before-commit", true).await;
}

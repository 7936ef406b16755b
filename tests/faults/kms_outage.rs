//! KMS down at start (retried with capped backoff, reported on /v1/health) and while running
//! (signing continues; only operations that need KMS fail, clearly).

use keyward_client::ClientError;
use keyward_e2e::{Stack, StackOptions, assert_signs, event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_down_at_start_is_retried_and_reported_until_it_returns() {
    let mut stack = Stack::prepare(StackOptions::default()).await;
    stack.stop_proxy();
    stack.start_enclave(1);
    stack.start_gateway();
    let health =
        stack.wait_health("KMS outage reported", |status, h| status == 503 && h.enclaves[0].state == "failed").await;
    assert_eq!(health.enclaves[0].code.as_deref(), Some("kms_unavailable"));
    assert_eq!(stack.row_count(), 0, "no key is stored without KMS");
    // Still failing a moment later: the gateway keeps retrying, the health keeps saying why.
    stack
        .wait_health("a second failed attempt", |_, h| {
            h.enclaves[0].state == "failed" && h.enclaves[0].since_unix > health.enclaves[0].since_unix
        })
        .await;
    stack.start_proxy().await;
    stack.wait_ready().await;
    assert_eq!(stack.row_count(), 1);
    let row = stack.row(1).expect("row");
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
    let failures = stack.gateway.as_ref().expect("gateway").events(event::ENCLAVE_STATE);
    let outages = failures.iter().filter(|e| e["state"] == "failed" && e["code"] == "kms_unavailable").count();
    assert!(outages >= 2, "retried more than once: {failures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_continues_while_kms_is_down() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");
    stack.stop_proxy();
    stack.devkms.proc.kill();
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
    let (status, _) = stack.client.health().await.expect("health");
    assert_eq!(status, 200, "signing needs no KMS, so the gateway stays healthy");
    let err = stack.admin_client().rotate(None).await.expect_err("rotation needs KMS");
    assert!(matches!(&err, ClientError::Api { status: 502, code, .. } if code == "kms_unavailable"), "{err}");
    assert!(err.to_string().contains("not applied"), "{err}");
    assert_eq!(stack.row(1).expect("row"), row, "a failed rotation changes nothing");
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
}

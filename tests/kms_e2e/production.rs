//! The production path as far as it runs here: the data path over Unix sockets through the
//! same code as vsock, and the production configuration's refusals at process level.

use std::time::Duration;

use keyward_e2e::{Stack, StackOptions, assert_signs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_links_work_over_unix_sockets() {
    let mut stack = Stack::start(StackOptions { unix_sockets: true, ..StackOptions::default() }).await;
    let key = stack.client.public_key(None).await.expect("key").public_key_hex;
    assert_signs(&stack, None, &key).await;
    // The relay socket carried the enclave's KMS traffic; a restart unseals through it again.
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    stack.wait_ready().await;
    assert_signs(&stack, None, &key).await;
    let log = stack.gateway.as_ref().expect("gateway").log_text();
    assert!(log.contains("KMS relay listening listen=unix://"), "{log}");
}

fn production_config(stack: &Stack, extra_attestation: &str) -> String {
    let m = &stack.measured;
    std::fs::create_dir_all(stack.path().join("prod-data")).expect("database directory");
    format!(
        "environment: production\n\
         kms:\n  enabled: true\n  endpoint_url: null\n  key_id: {arn}\n  enable_attestation: true\n  region: us-east-1\n\
         database:\n  path: {dir}/prod-data/keyward.db\n\
         server:\n  listen: 127.0.0.1:{api}\n  api_token_file: {dir}/api-token\n\
         relay:\n  listen: {relay}\n\
         attestation:\n{extra_attestation}  expected_pcrs:\n    - PCR0: {p0}\n      PCR1: {p1}\n      PCR2: {p2}\n\
         enclaves:\n  - enclave_id: 1\n    address: {enclave}\n",
        arn = stack.key_arn,
        dir = stack.path().display(),
        api = stack.api_port,
        relay = stack.relay_address(),
        enclave = stack.enclave_address(1),
        p0 = m.pcr0,
        p1 = m.pcr1,
        p2 = m.pcr2,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_an_enclave_with_the_mock_nsm() {
    let mut stack = Stack::prepare(StackOptions::default()).await;
    stack.write_config_text(&production_config(&stack, ""));
    init_db(&stack);
    // The enclave pinned exactly as production expects, but running the development NSM.
    let mut args = stack.enclave_args(1);
    for (flag, value) in
        [("--kms-endpoint", "https://kms.us-east-1.amazonaws.com"), ("--kms-key-id", stack.key_arn.as_str())]
    {
        let at = args.iter().position(|a| a == flag).expect("flag") + 1;
        args[at] = value.to_owned();
    }
    stack.start_enclave_with_args(1, &args);
    stack.start_gateway();
    let health = stack.wait_health("mock NSM refused", |_, h| h.enclaves[0].state == "refused").await;
    let detail = health.enclaves[0].detail.clone().unwrap_or_default();
    assert!(detail.contains("production refuses an enclave running the development (mock) NSM"), "{detail}");
    let enclave_log = stack.enclaves.get(&1).expect("enclave").log_text();
    assert!(!enclave_log.contains("provisioned") && !enclave_log.contains("unsealed"), "no key work happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_settings_that_are_unsafe_stop_the_gateway_at_start() {
    let mut stack = Stack::prepare(StackOptions::default()).await;
    let good = production_config(&stack, "");
    let cases = [
        (good.replace("enable_attestation: true", "enable_attestation: false"), "enable_attestation: false"),
        (good.replace("endpoint_url: null", &format!("endpoint_url: {}", stack.kms_url)), "plain-HTTP KMS endpoint"),
        (production_config(&stack, &format!("  root_pem: {}/mock-nsm-root.pem\n", stack.path().display())), "root_pem"),
        (good.replace(&stack.measured.pcr0, &"0".repeat(96)), "all-zero PCR0"),
        (good.replace("prod-data/keyward.db", "no-such-dir/keyward.db"), "missing database directory"),
        // A valid production config whose database file is missing: never a fresh database.
        (good.clone(), "refusing to create an empty one"),
    ];
    for (text, needle) in cases {
        stack.write_config_text(&text);
        stack.start_gateway();
        let gateway = stack.gateway.as_mut().expect("gateway");
        let status =
            gateway.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| panic!("{needle}: gateway kept running"));
        assert!(!status.success(), "{needle}");
        let log = gateway.log_text();
        assert!(log.contains(needle), "{needle}: {log}");
        std::fs::remove_file(&gateway.log).expect("reset log");
        stack.gateway = None;
    }
    assert!(!stack.path().join("no-such-dir").exists(), "production never creates the database directory");
    assert!(!stack.path().join("prod-data/keyward.db").exists(), "production never creates the database file");
    // The first installation creates it explicitly.
    stack.write_config_text(&good);
    init_db(&stack);
    assert!(stack.path().join("prod-data/keyward.db").exists());
}

fn init_db(stack: &Stack) {
    let output = std::process::Command::new(keyward_e2e::binary("gateway"))
        .args(["--config", &stack.config_path().display().to_string(), "init-db"])
        .output()
        .expect("gateway init-db");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("created database"));
}

//! The production path as far as it runs here: the data path over Unix sockets through the
//! same code as vsock, and the production configuration's refusals at process level.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use keyward_e2e::{Stack, StackOptions, assert_signs, event};

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
    let relay = stack.gateway.as_ref().expect("gateway").events(keyward_e2e::event::RELAY_LISTENING);
    assert!(relay.len() == 1 && relay[0]["listen"].as_str().is_some_and(|l| l.starts_with("unix://")), "{relay:?}");
}

/// A production configuration for `stack` (a Unix-socket stack: production refuses TCP links).
fn production_config(stack: &Stack, extra_attestation: &str) -> String {
    let m = &stack.measured;
    std::fs::create_dir_all(stack.path().join("prod-data")).expect("database directory");
    format!(
        "environment: production\n\
         kms:\n  enabled: true\n  endpoint_url: null\n  key_id: {arn}\n  enable_attestation: true\n  region: us-east-1\n\
         database:\n  path: {dir}/prod-data/keyward.db\n\
         server:\n  listen: 127.0.0.1:{api}\n  api_token_file: {dir}/api-token\n  admin_token_file: {dir}/admin-token\n\
         relay:\n  listen: {relay}\n\
         link:\n  key_file: {dir}/link.key\n\
         authorization:\n  owners:\n    - {owner}\n\
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
        owner = PRODUCTION_OWNER,
    )
}

/// An owner for the production configs (its private key was thrown away).
const PRODUCTION_OWNER: &str = "ed25519:e959c55cacaa436995a826e953d2b97c0e7e1833cb7e6b0b0c05ae497162a7b3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_an_enclave_with_the_mock_nsm() {
    let mut stack = Stack::prepare(StackOptions { unix_sockets: true, ..StackOptions::default() }).await;
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
    assert_eq!(health.enclaves[0].code.as_deref(), Some("mock_nsm_refused"));
    let enclave = stack.enclaves.get(&1).expect("enclave");
    assert_eq!(enclave.events(event::LINK_AUTHENTICATED).len(), 1, "the gateway reached the enclave");
    for work in [event::KEY_PROVISIONED, event::KEY_UNSEALED] {
        assert!(enclave.events(work).is_empty(), "no key work happened ({work})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_settings_that_are_unsafe_stop_the_gateway_at_start() {
    let mut stack = Stack::prepare(StackOptions { unix_sockets: true, ..StackOptions::default() }).await;
    let good = production_config(&stack, "");
    let dir = stack.path().display().to_string();
    std::fs::copy(stack.path().join("api-token"), stack.path().join("same-token")).expect("copy");
    std::fs::write(stack.path().join("readable-token"), "r".repeat(40)).expect("token");
    std::fs::set_permissions(stack.path().join("readable-token"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    std::fs::copy(stack.path().join("link.key"), stack.path().join("readable-link.key")).expect("copy");
    std::fs::set_permissions(stack.path().join("readable-link.key"), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    let cases = [
        (good.replace("enable_attestation: true", "enable_attestation: false"), "enable_attestation: false"),
        (good.replace("endpoint_url: null", &format!("endpoint_url: {}", stack.kms_url)), "plain-HTTP KMS endpoint"),
        (production_config(&stack, &format!("  root_pem: {}/mock-nsm-root.pem\n", stack.path().display())), "root_pem"),
        (good.replace(&stack.measured.pcr0, &"0".repeat(96)), "all-zero PCR0"),
        (good.replace("prod-data/keyward.db", "no-such-dir/keyward.db"), "missing database directory"),
        (good.replace(&stack.enclave_address(1), "tcp://127.0.0.1:5999"), "production refuses enclave 1 at tcp://"),
        (
            good.replace(&format!("authorization:\n  owners:\n    - {PRODUCTION_OWNER}\n"), ""),
            "production needs authorization.owners",
        ),
        (good.replace(&stack.relay_address(), "tcp://127.0.0.1:5998"), "production refuses relay.listen tcp://"),
        (good.replace(&format!("{dir}/api-token"), &format!("{dir}/readable-token")), "has mode 644"),
        (good.replace(&format!("{dir}/link.key"), &format!("{dir}/readable-link.key")), "has mode 640"),
        (
            good.replace(&format!("{dir}/admin-token"), &format!("{dir}/same-token")),
            "admin token equal to the API token",
        ),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_an_empty_or_foreign_database_file_and_makes_no_key() {
    let mut stack = Stack::prepare(StackOptions { unix_sockets: true, ..StackOptions::default() }).await;
    stack.write_config_text(&production_config(&stack, ""));
    let db = stack.path().join("prod-data/keyward.db");
    let foreign = {
        let path = stack.path().join("foreign.db");
        let conn = rusqlite::Connection::open(&path).expect("sqlite");
        conn.execute_batch(
            "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER); INSERT INTO invoices VALUES (1, 42);",
        )
        .expect("another program's data");
        drop(conn);
        std::fs::read(&path).expect("read")
    };
    stack.start_enclave(1);
    stack.enclaves.get(&1).expect("enclave").wait_event(event::ENCLAVE_LISTENING, Duration::from_secs(30));
    for (what, bytes) in [("an empty file", Vec::new()), ("another program's SQLite database", foreign)] {
        std::fs::write(&db, &bytes).expect("write the database file");
        stack.start_gateway();
        let gateway = stack.gateway.as_mut().expect("gateway");
        let status =
            gateway.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| panic!("{what}: gateway kept running"));
        assert!(!status.success(), "{what}");
        assert!(
            gateway.log_text().contains("is not an initialised keyward database"),
            "{what}: {}",
            gateway.log_text()
        );
        assert_eq!(std::fs::read(&db).expect("read"), bytes, "{what}: the file is untouched");
        std::fs::remove_file(&gateway.log).expect("reset log");
        stack.gateway = None;
    }
    let enclave = stack.enclaves.get(&1).expect("enclave");
    assert_eq!(enclave.events(event::ENCLAVE_LISTENING).len(), 1, "the enclave ran");
    assert!(enclave.events(event::KEY_PROVISIONED).is_empty(), "no key was generated");
    // `gateway init-db` does not turn either into a keyward database either.
    let output = std::process::Command::new(keyward_e2e::binary("gateway"))
        .args(["--config", &stack.config_path().display().to_string(), "init-db"])
        .output()
        .expect("gateway init-db");
    assert!(!output.status.success(), "init-db refuses a file that is not keyward's");
}

fn init_db(stack: &Stack) {
    let output = std::process::Command::new(keyward_e2e::binary("gateway"))
        .args(["--config", &stack.config_path().display().to_string(), "init-db"])
        .output()
        .expect("gateway init-db");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("created database"));
}

//! The audit log outlives the enclave that signed it: the gateway stores every record it
//! fetches, so after a restart (a new chain under a new audit key) the earlier chain is still
//! exported and verified, with the receipts clients kept; a host that edits or deletes a stored
//! record is caught by `keyward audit verify`.

use std::{sync::Arc, time::Duration};

use keyward_client::{audit::AuditChains, principal::PrincipalSigner};
use keyward_e2e::{Stack, StackOptions};

use crate::{authz::cli_with, authz_policy::sql};

/// Waits until the stored chains satisfy `accept` (the gateway collects every second).
async fn chains_until(stack: &Stack, what: &str, accept: impl Fn(&AuditChains) -> bool) -> AuditChains {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let chains = stack.admin_client().audit_chains().await.unwrap();
        if accept(&chains) {
            return chains;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {chains:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_chains_outlive_enclave_restarts_and_stored_edits_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("owner.key");
    let pem = PrincipalSigner::generate_ed25519_pem().unwrap();
    std::fs::write(&key_file, pem.as_bytes()).unwrap();
    let owner = Arc::new(PrincipalSigner::from_pem(&pem).unwrap());
    let options = StackOptions { owners: vec![owner.public()], ..StackOptions::default() };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let as_owner = stack.client.clone().with_principal(owner.clone());
    stack.admin_client().with_principal(owner.clone()).create_key("treasury", "secp256k1", false).await.unwrap();
    let request = keyward_client::keys::SignWithKey { digest_hex: Some("42".repeat(32)), ..Default::default() };
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(serde_json::to_value(as_owner.sign_with_key("treasury", &request).await.unwrap()).unwrap());
    }
    let first_key = stack.client.health().await.unwrap().1.enclaves[0].audit_public_key_hex.clone().unwrap();

    // The background collection stores the three records without any export asking for them.
    chains_until(&stack, "three stored records", |c| c.chains.iter().any(|c| c.records == 3 && c.current)).await;
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    stack.wait_keyring().await;
    as_owner.sign_with_key("treasury", &request).await.expect("the restarted enclave signs");
    let second_key = stack.client.health().await.unwrap().1.enclaves[0].audit_public_key_hex.clone().unwrap();
    assert_ne!(first_key, second_key, "a restart starts a new chain under a new key");
    let chains = chains_until(&stack, "two chains", |c| c.chains.len() == 2 && c.chains[1].records == 1).await;
    let summary: Vec<_> =
        chains.chains.iter().map(|c| (c.audit_public_key_hex.as_str(), c.records, c.current)).collect();
    assert_eq!(summary, [(first_key.as_str(), 3, false), (second_key.as_str(), 1, true)]);

    // The first chain, exported after its enclave is gone, verifies with the receipts kept.
    let receipts = dir.path().join("receipts.jsonl");
    std::fs::write(&receipts, answers.iter().map(|a| format!("{a}\n")).collect::<String>()).unwrap();
    let export_and_verify = |name: &str| {
        let log = dir.path().join(name);
        let export = ["audit", "export", "--chain", &first_key, "--out", log.to_str().unwrap()];
        let (ok, exported, stderr) = cli_with(&stack, "admin-token", &[], &export);
        assert!(ok, "export: {stderr}");
        let verify = [
            "audit",
            "verify",
            "--log",
            log.to_str().unwrap(),
            "--public-key",
            &first_key,
            "--receipts",
            receipts.to_str().unwrap(),
        ];
        let (ok, verified, _) = cli_with(&stack, "admin-token", &[], &verify);
        (exported["records"].as_u64(), ok, verified)
    };
    let (records, ok, verified) = export_and_verify("first.jsonl");
    assert!(ok, "{verified}");
    assert_eq!((records, verified["receipts_checked"].as_u64()), (Some(3), Some(2)));

    // The host edits a stored record, then deletes one: each is caught.
    let edited = sql(
        &stack,
        &format!(
            "UPDATE audit_records SET line = replace(line, '\"sign\"', '\"verify\"') WHERE seq = 2 AND hex(audit_key) = upper('{first_key}')"
        ),
        &[],
    );
    assert_eq!(edited, 1);
    let (_, ok, found) = export_and_verify("edited.jsonl");
    assert_eq!((ok, found["code"].as_str(), found["seq"].as_u64()), (false, Some("record_edited"), Some(2)), "{found}");
    sql(&stack, &format!("DELETE FROM audit_records WHERE seq = 2 AND hex(audit_key) = upper('{first_key}')"), &[]);
    let (_, ok, found) = export_and_verify("removed.jsonl");
    assert_eq!((ok, found["code"].as_str()), (false, Some("records_removed_or_reordered")), "{found}");

    // The current chain exports as before; an unknown chain is named as such.
    let log = dir.path().join("second.jsonl");
    let (ok, exported, stderr) =
        cli_with(&stack, "admin-token", &[], &["audit", "export", "--out", log.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert_eq!(
        (exported["records"].as_u64(), exported["audit_public_key_hex"].as_str()),
        (Some(1), Some(second_key.as_str()))
    );
    let unknown = stack.admin_client().audit_page_of(0, None, Some(&"ab".repeat(32))).await;
    match unknown {
        Err(keyward_client::ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (404, "audit_chain_not_found"))
        }
        other => panic!("{other:?}"),
    }
}

//! Key policies end to end: two owners who must agree, a principal they delegate signing to,
//! and a host with the database in hand. Policies are set through the gateway (SDK and CLI),
//! checked and tagged in the enclave; the host then edits, moves, withholds and rolls back the
//! stored rows, and replays a set-policy request, and is refused each time.

use std::sync::Arc;

use keyward_client::{ClientError, keys::SignWithKey, principal::PrincipalSigner};
use keyward_e2e::{Stack, StackOptions};
use serde_json::json;

pub(crate) fn principal(dir: &std::path::Path, name: &str) -> (Arc<PrincipalSigner>, std::path::PathBuf) {
    let pem = PrincipalSigner::generate_ed25519_pem().unwrap();
    let path = dir.join(format!("{name}.key"));
    std::fs::write(&path, pem.as_bytes()).unwrap();
    (Arc::new(PrincipalSigner::from_pem(&pem).unwrap()), path)
}

pub(crate) fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn grant(version: u64, ids: &[String]) -> serde_json::Value {
    let rules: Vec<_> = ids.iter().map(|id| json!({"principals": [id], "operations": ["sign"], "quorum": 1})).collect();
    json!({"version": version, "rules": rules})
}

/// The host's hand on the database.
pub(crate) fn sql(stack: &Stack, statement: &str, params: &[&dyn rusqlite::ToSql]) -> usize {
    rusqlite::Connection::open(stack.db_path()).unwrap().execute(statement, params).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_take_the_quorum_and_a_host_cannot_edit_move_withhold_or_roll_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, _) = principal(dir.path(), "alice");
    let (bob, bob_key) = principal(dir.path(), "bob");
    let (carol, _) = principal(dir.path(), "carol");
    let (mallory, _) = principal(dir.path(), "mallory");
    let options =
        StackOptions { owners: vec![alice.public(), bob.public()], owner_quorum: 2, ..StackOptions::default() };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    for name in ["treasury", "payroll"] {
        stack.admin_client().with_principal(alice.clone()).create_key(name, "secp256k1", false).await.unwrap();
    }
    let as_alice = stack.client.clone().with_principal(alice.clone());
    let as_carol = stack.client.clone().with_principal(carol.clone());
    let as_mallory = stack.client.clone().with_principal(mallory.clone());
    let request = SignWithKey { digest_hex: Some("42".repeat(32)), ..SignWithKey::default() };
    let v1 = grant(1, &[carol.id()]);

    // Setting a policy takes both owners.
    assert_eq!(code(as_carol.sign_with_key("treasury", &request).await), (403, "not_permitted".into()));
    assert_eq!(code(as_alice.set_key_policy("treasury", &v1, &[]).await), (403, "quorum_not_met".into()));
    assert_eq!(code(as_carol.set_key_policy("treasury", &v1, &[]).await), (403, "not_permitted".into()));
    assert_eq!(code(stack.client.set_key_policy("treasury", &v1, &[]).await), (401, "signature_required".into()));
    assert_eq!(code(stack.client.key_policy("treasury").await), (404, "policy_not_found".into()));
    let set = as_alice.set_key_policy("treasury", &v1, &[&bob]).await.expect("both owners set version 1");
    assert_eq!((set.version, set.receipt.is_some()), (1, true));
    assert_eq!(stack.client.key_policy("treasury").await.unwrap().policy, v1);
    let wrong_version = as_alice.set_key_policy("treasury", &grant(5, &[]), &[&bob]).await;
    assert_eq!(code(wrong_version), (409, "policy_version_conflict".into()));

    // Carol may sign now, Mallory may not; the owners still may.
    let signed = as_carol.sign_with_key("treasury", &request).await.expect("Carol signs under version 1");
    let public = hex::decode(&signed.public_key_hex).unwrap();
    crate::authz::k256_verifies(&public, &[0x42; 32], &hex::decode(&signed.signature_hex).unwrap());
    assert_eq!(code(as_mallory.sign_with_key("treasury", &request).await), (403, "not_permitted".into()));
    as_alice.sign_with_key("treasury", &request).await.expect("an owner signs");
    // The policy is the key's: payroll's is unchanged.
    assert_eq!(code(as_carol.sign_with_key("payroll", &request).await), (403, "not_permitted".into()));

    // The host re-keys the row: Mallory's id for Carol's. Refused for everyone until restored.
    let renamed = sql(
        &stack,
        "UPDATE key_policies SET body = CAST(replace(CAST(body AS TEXT), ?1, ?2) AS BLOB)",
        &[&carol.id(), &mallory.id()],
    );
    assert_eq!(renamed, 1);
    assert_eq!(code(as_mallory.sign_with_key("treasury", &request).await), (502, "policy_tampered".into()));
    assert_eq!(code(as_carol.sign_with_key("treasury", &request).await), (502, "policy_tampered".into()));
    sql(
        &stack,
        "UPDATE key_policies SET body = CAST(replace(CAST(body AS TEXT), ?1, ?2) AS BLOB)",
        &[&mallory.id(), &carol.id()],
    );
    as_carol.sign_with_key("treasury", &request).await.expect("the restored row");
    // ... copies treasury's row to payroll, to let Carol sign with it.
    sql(
        &stack,
        "INSERT INTO key_policies SELECT keystore, 'payroll', version, body, tag, created_at FROM key_policies \
         WHERE key_name = 'treasury'",
        &[],
    );
    assert_eq!(code(as_carol.sign_with_key("payroll", &request).await), (502, "policy_tampered".into()));

    // Version 2, set with the CLI, revokes Carol.
    let v2_file = dir.path().join("v2.json");
    std::fs::write(&v2_file, grant(2, &[]).to_string()).unwrap();
    let alice_key = dir.path().join("alice.key");
    let output = std::process::Command::new(keyward_e2e::binary("keyward"))
        .args(["--gateway", &format!("http://127.0.0.1:{}", stack.api_port)])
        .args(["--token-file", &stack.path().join("api-token").display().to_string()])
        .args(["--principal-key", alice_key.to_str().unwrap()])
        .args(["keys", "set-policy", "treasury", "--file", v2_file.to_str().unwrap()])
        .args(["--approve-with", bob_key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "the CLI sets version 2: {}", String::from_utf8_lossy(&output.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["version"], 2);
    assert_eq!(code(as_carol.sign_with_key("treasury", &request).await), (403, "not_permitted".into()));

    // The host rolls back to version 1, then withholds the rows: refused.
    sql(&stack, "DELETE FROM key_policies WHERE key_name = 'treasury' AND version = 2", &[]);
    assert_eq!(code(as_carol.sign_with_key("treasury", &request).await), (502, "policy_rollback".into()));
    sql(&stack, "DELETE FROM key_policies WHERE key_name = 'treasury'", &[]);
    assert_eq!(code(as_carol.sign_with_key("treasury", &request).await), (502, "policy_rollback".into()));
    assert_eq!(code(as_alice.sign_with_key("treasury", &request).await), (502, "policy_rollback".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_set_policy_request_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, _) = principal(dir.path(), "alice");
    let (carol, _) = principal(dir.path(), "carol");
    let options = StackOptions { owners: vec![alice.public()], ..StackOptions::default() };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    stack.admin_client().with_principal(alice.clone()).create_key("treasury", "secp256k1", false).await.unwrap();
    // The request as a client sends it, captured whole by the host.
    let body = serde_json::to_vec(&grant(1, &[carol.id()])).unwrap();
    let headers = alice.headers(keyward_authz::Operation::SetPolicy, "default", "treasury", &body, &[]).unwrap();
    let token = std::fs::read_to_string(stack.path().join("api-token")).unwrap();
    let send = || {
        let mut put = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}/v1/keys/treasury/policy", stack.api_port))
            .bearer_auth(token.trim())
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, value) in &headers {
            put = put.header(*name, value);
        }
        put.send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 200, "{}", first.text().await.unwrap());
    let again = send().await.unwrap();
    assert_eq!(again.status(), 409);
    let answer: serde_json::Value = again.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "policy_version_conflict", "{answer}");
    // With the stored version deleted, the replay meets the enclave's memory instead.
    sql(&stack, "DELETE FROM key_policies", &[]);
    let third: serde_json::Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(third["error"]["code"], "policy_rollback", "{third}");

    // A gateway that expects other owners than the enclave's refuses the enclave at the handshake.
    let config = std::fs::read_to_string(stack.config_path()).unwrap();
    assert!(config.contains(&alice.public()), "the harness configures the enclave's owners: {config}");
    stack.kill_gateway();
    stack.write_config_text(&config.replace(&alice.public(), &carol.public()));
    stack.start_gateway();
    let health = stack.wait_health("enclave refused", |_, h| h.enclaves[0].state == "refused").await;
    assert_eq!(health.enclaves[0].code.as_deref(), Some("enclave_config_mismatch"));
}

/// Sends `body` with `headers` (a request a client signed, as the host captured it) to `path`.
pub(crate) async fn replay(
    stack: &Stack,
    path: &str,
    body: &[u8],
    headers: &[(&'static str, String)],
) -> (u16, String) {
    let token = std::fs::read_to_string(stack.path().join("admin-token")).unwrap();
    let mut post = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", stack.api_port))
        .bearer_auth(token.trim())
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        post = post.header(*name, value);
    }
    let answer = post.send().await.unwrap();
    let status = answer.status().as_u16();
    let json: serde_json::Value = answer.json().await.unwrap_or_default();
    (status, json["error"]["code"].as_str().unwrap_or("ok").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cannot_create_or_rotate_keys_nor_repeat_an_owners_request() {
    use keyward_authz::Operation;
    use keyward_proto::{ErrorCode, KeyCreate, KeyFlags, KeyIdentity, KeyName, KeyType, KeyVersion, Origin, Request};

    let dir = tempfile::tempdir().unwrap();
    let (alice, alice_pair) = crate::authz::principal();
    let options = StackOptions { owners: vec![alice.public()], ..StackOptions::default() };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let admin = stack.admin_client();

    // The admin token alone no longer creates or rotates a key.
    assert_eq!(code(admin.create_key("treasury", "secp256k1", false).await), (401, "signature_required".into()));
    // The owner's request does, once.
    let body = br#"{"name":"treasury","type":"secp256k1"}"#;
    let headers = alice.headers(Operation::Create, "default", "treasury", body, &[]).unwrap();
    assert_eq!(replay(&stack, "/v1/keys", body, &headers).await, (201, "ok".into()));
    assert_eq!(replay(&stack, "/v1/keys", body, &headers).await, (409, "request_replayed".into()));
    // A rotation's body names the version it makes: replayed, it would make another one.
    let rotation = br#"{"version":2,"type":"secp256k1","exportable":false}"#;
    let rotate = alice.headers(Operation::Rotate, "default", "treasury", rotation, &[]).unwrap();
    let path = "/v1/keys/treasury/rotate";
    assert_eq!(replay(&stack, path, rotation, &rotate).await, (200, "ok".into()));
    assert_eq!(replay(&stack, path, rotation, &rotate).await, (409, "key_version_conflict".into()));
    let unversioned = alice.headers(Operation::Rotate, "default", "treasury", b"{}", &[]).unwrap();
    assert_eq!(replay(&stack, path, b"{}", &unversioned).await, (400, "request_mismatch".into()));
    assert_eq!(code(admin.rotate_key("treasury").await), (401, "signature_required".into()));
    // ... signed by a principal that is not an owner: refused.
    let (stranger, _) = principal(dir.path(), "stranger");
    let as_stranger = admin.clone().with_principal(stranger);
    assert_eq!(code(as_stranger.rotate_key("treasury").await), (403, "not_permitted".into()));
    let key = stack.client.key("treasury").await.unwrap();
    assert_eq!(key.latest_version, 2, "one rotation, the owner's");

    // The host on the enclave link: a new key, or a new version, without a signature.
    let mut link = keyward_e2e::RawLink::connect(&stack, 1).await;
    link.handshake_as_gateway(&stack).await;
    let identity = |name: &str, version: u32| KeyIdentity {
        name: KeyName::parse(name).unwrap(),
        version: KeyVersion::new(version).unwrap(),
        key_type: KeyType::Secp256k1,
        flags: KeyFlags { exportable: true, origin: Origin::Generated },
    };
    for keys in [vec![identity("hosts-own", 1)], vec![identity("treasury", 3)]] {
        let frame = link.call(Request::KeyCreate(KeyCreate { keys, auth: None })).await;
        assert_eq!(keyward_e2e::error_of(&frame).0, ErrorCode::SignatureRequired);
    }
    // Positive control on the same link: the owner's own request is served.
    let owner_body = br#"{"name":"hosts-own","type":"secp256k1","exportable":true}"#;
    let auth = crate::authz::authorization_for(&alice_pair, Operation::Create, "default", "hosts-own", owner_body);
    let frame = link
        .call(Request::KeyCreate(KeyCreate { keys: vec![identity("hosts-own", 1)], auth: Some(Box::new(auth)) }))
        .await;
    assert!(matches!(frame.reply, keyward_proto::Reply::Ok(keyward_proto::Response::WrappedKeys(_))), "{frame:?}");
    drop(link);

    // A restarted enclave has forgotten the request ids; the rotation's version still holds.
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    stack.wait_keyring().await;
    assert_eq!(replay(&stack, path, rotation, &rotate).await, (409, "key_version_conflict".into()));
    assert_eq!(stack.client.key("treasury").await.unwrap().latest_version, 2, "no version from the replay");
}

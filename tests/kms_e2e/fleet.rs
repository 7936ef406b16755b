//! A fleet (issue 14): three gateway and enclave pairs on one real PostgreSQL server, each
//! serving every key, meeting at the database's constraints and compare-and-swaps.

use keyward_client::{Client, ClientError, keys::CreateKey};
use keyward_e2e::{Stack, StackOptions};
use keyward_store_pg::testing::TestServer;

use crate::keyring::{check_every_type, create_every_type, digest_request, wait_keyring};

fn clients(api_port: u16, token: &str, admin_token: &str) -> (Client, Client) {
    let url = format!("http://127.0.0.1:{api_port}");
    (
        Client::new(&url, Some(token.to_owned())).expect("client"),
        Client::new(&url, Some(admin_token.to_owned())).expect("client"),
    )
}

fn assert_code<T: std::fmt::Debug>(result: &Result<T, ClientError>, status: u16, code: &str) {
    assert!(
        matches!(result, Err(ClientError::Api { status: s, code: c, .. }) if *s == status && c == code),
        "expected {status} {code}: {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pairs_on_one_postgresql_serve_every_key_and_meet_at_its_constraints() {
    let mut pg = TestServer::start().expect("PostgreSQL");
    let url = pg.create_database("keyward").expect("database");
    let mut stack = Stack::start(StackOptions { database_url: Some(url), ..StackOptions::default() }).await;
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    let b = stack.start_second_pair(2).await;
    let c = stack.start_second_pair(3).await;
    let (a_client, a_admin) = (stack.client.clone(), stack.admin_client());
    let (b_client, b_admin) = clients(b.api_port, &stack.token, &b.admin_token);
    let (c_client, c_admin) = clients(c.api_port, &stack.token, &c.admin_token);
    wait_keyring(&b_client).await;
    wait_keyring(&c_client).await;

    // Every node serves every key, at once after it is made anywhere.
    create_every_type(&a_admin, "a").await;
    check_every_type(&b_client, "a").await;
    check_every_type(&c_client, "a").await;
    create_every_type(&c_admin, "c").await;
    check_every_type(&a_client, "c").await;
    check_every_type(&b_client, "c").await;
    // One root, made once, unsealed by every enclave.
    let mut roots = Vec::new();
    for client in [&a_client, &b_client, &c_client] {
        roots.push(client.health().await.expect("health").1.enclaves[0].keyring.root_id.clone());
    }
    assert!(roots[0].is_some() && roots.iter().all(|r| *r == roots[0]), "{roots:?}");

    // The same name on three nodes at once: one key and two 409s.
    let (one, two, three) = tokio::join!(
        a_admin.create_key("contested", "secp256k1", false),
        b_admin.create_key("contested", "secp256k1", false),
        c_admin.create_key("contested", "secp256k1", false)
    );
    let results = [one, two, three];
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    for lost in results.iter().filter(|r| r.is_err()) {
        assert_code(lost, 409, "key_exists");
    }

    // Rotations on three nodes at once: each either makes the next version or meets the
    // compare-and-swap (409), never two of the same version; rounds go on until the race
    // was met at least once. Every node then signs with the latest version.
    a_admin.create_key("rotated", "secp256k1", false).await.expect("create");
    let (mut made, mut conflicts) = (vec![1], 0);
    for _round in 0..10 {
        let (one, two, three) =
            tokio::join!(a_admin.rotate_key("rotated"), b_admin.rotate_key("rotated"), c_admin.rotate_key("rotated"));
        for result in [one, two, three] {
            match result {
                Ok(info) => made.push(info.latest_version),
                lost => {
                    assert_code(&lost, 409, "key_conflict");
                    conflicts += 1;
                }
            }
        }
        if conflicts > 0 {
            break;
        }
    }
    assert!(conflicts > 0, "three simultaneous rotations never raced in ten rounds");
    made.sort_unstable();
    let latest = *made.last().expect("versions");
    assert_eq!(made, (1..=latest).collect::<Vec<_>>(), "one rotation per version, none lost or repeated");
    for client in [&a_client, &b_client, &c_client] {
        let signed = client.sign_with_key("rotated", &digest_request(&[7; 32])).await.expect("sign");
        assert_eq!(signed.version, latest);
    }

    // PostgreSQL restarts while the fleet serves: keys in use keep signing on every node
    // (from the rows each read within its grace period), a key a node never read cannot be
    // used there, writes fail with a code, and everything works again once it is back,
    // without restarting a node.
    a_admin.create_key("never-read", "secp256k1", false).await.expect("create");
    pg.stop().expect("stop PostgreSQL");
    for client in [&a_client, &b_client, &c_client] {
        let signed = client.sign_with_key("rotated", &digest_request(&[6; 32])).await.expect("a key in use signs on");
        assert_eq!(signed.version, latest);
    }
    assert_code(&c_client.sign_with_key("never-read", &digest_request(&[6; 32])).await, 503, "database_unavailable");
    assert_code(&a_admin.create_key("during-outage", "ed25519", false).await, 503, "database_unavailable");
    assert_code(&b_admin.rotate_key("rotated").await, 503, "database_unavailable");
    // Each node says it serves the keys in use, not writes: 503 to a plain check, 200 to a
    // load balancer's check that asked to keep such nodes.
    for (client, port) in [(&a_client, stack.api_port), (&b_client, b.api_port), (&c_client, c.api_port)] {
        let (status, health) = client.health().await.expect("health");
        let seen = (status, health.status.as_str(), health.database.as_str());
        assert_eq!(seen, (503, "database_outage", "database_unavailable"));
        let serve = reqwest::get(format!("http://127.0.0.1:{port}/v1/health?outage=serve")).await.expect("health");
        assert_eq!(serve.status().as_u16(), 200);
    }
    pg.start_again().expect("start PostgreSQL again");
    b_admin.create_key("after-outage", "secp256k1", false).await.expect("writes work again");
    for client in [&a_client, &b_client, &c_client] {
        client.sign_with_key("after-outage", &digest_request(&[8; 32])).await.expect("sign after the restart");
        assert!(matches!(client.key("during-outage").await, Err(ClientError::Api { status: 404, .. })));
        let (status, health) = client.health().await.expect("health");
        assert_eq!((status, health.status.as_str()), (200, "ok"));
    }
    drop((b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_dies_halfway_through_a_batch_leaves_nothing_and_the_others_carry_on() {
    let pg = TestServer::start().expect("PostgreSQL");
    let url = pg.create_database("keyward").expect("database");
    let mut stack = Stack::start(StackOptions { database_url: Some(url), ..StackOptions::default() }).await;
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    // Node B aborts with half of a batch written inside its open transaction.
    let mut b = stack.start_second_pair_with(2, &[("KEYWARD_FAULT", "store:insert-keys:halfway".into())]).await;
    let (b_client, b_admin) = clients(b.api_port, &stack.token, &b.admin_token);
    wait_keyring(&b_client).await;
    let batch: Vec<CreateKey> = (0..50)
        .map(|i| CreateKey { name: format!("batch-{i:02}"), key_type: "secp256k1".into(), exportable: false })
        .collect();
    let died = b_admin.create_keys(batch).await;
    assert!(died.is_err(), "the node died mid-batch: {died:?}");
    assert!(b.gateway.wait_exit(std::time::Duration::from_secs(10)).is_some(), "node B's gateway aborted");

    // Node A sees none of the batch, and makes and uses keys as before.
    let a_admin = stack.admin_client();
    drop(b_client);
    let listed = stack.client.list_keys(None, Some(100)).await.expect("list");
    let survived: Vec<&str> = listed.keys.iter().map(|k| k.name.as_str()).filter(|n| n.starts_with("batch-")).collect();
    assert!(survived.is_empty(), "half a batch survived: {survived:?}");
    a_admin.create_key("batch-00", "secp256k1", false).await.expect("the name is free");
    stack.client.sign_with_key("batch-00", &digest_request(&[9; 32])).await.expect("sign");
    drop(pg);
}

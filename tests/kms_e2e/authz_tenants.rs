//! Keystore isolation end to end. The owners make two keystores, `acme` and `beta`, each with
//! its own controller (the principal its keystore policy grants); the same key name in each
//! keystore and in the default one makes three keys. A controller creates, lists and uses its
//! own keystore's keys and no others, whichever path it tries, and a host with the database in
//! hand cannot move a key or a keystore's grant from one keystore to another.

use keyward_client::keys::SignWithKey;
use keyward_e2e::{Stack, StackOptions};
use serde_json::json;

use crate::authz_policy::{code, principal, sql};

fn blob(stack: &Stack, query: &str) -> Vec<u8> {
    rusqlite::Connection::open(stack.db_path()).unwrap().query_row(query, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_keystore_is_its_controllers_and_a_host_cannot_move_keys_or_grants_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, _) = principal(dir.path(), "alice");
    let (bob, _) = principal(dir.path(), "bob");
    let (carol, _) = principal(dir.path(), "carol");
    let (dave, _) = principal(dir.path(), "dave");
    let options =
        StackOptions { owners: vec![alice.public(), bob.public()], owner_quorum: 2, ..StackOptions::default() };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let admin = stack.admin_client();
    let as_alice = stack.client.clone().with_principal(alice.clone());
    let controller = |who: &str| json!({"version": 1, "rules": [{"principals": [who], "operations": ["create", "sign"], "quorum": 1}]});
    as_alice.set_keystore_policy("acme", &controller(&carol.id()), &[&bob]).await.expect("the owners make acme");
    as_alice.set_keystore_policy("beta", &controller(&dave.id()), &[&bob]).await.expect("the owners make beta");
    assert_eq!(stack.client.keystore_policy("acme").await.unwrap().keystore, "acme");

    let carol_admin = admin.clone().with_principal(carol.clone());
    let dave_admin = admin.clone().with_principal(dave.clone());
    let carol_api = stack.client.clone().with_principal(carol.clone());
    let dave_api = stack.client.clone().with_principal(dave.clone());
    // One name, three keystores, three keys.
    let acme_key = carol_admin.create_key("acme/treasury", "secp256k1", false).await.expect("Carol in acme");
    let beta_key = dave_admin.create_key("beta/treasury", "secp256k1", false).await.expect("Dave in beta");
    let default_key = admin.clone().with_principal(alice.clone()).create_key("treasury", "secp256k1", false).await;
    let default_key = default_key.expect("an owner in the default keystore");
    assert_eq!((acme_key.name.as_str(), beta_key.name.as_str()), ("acme/treasury", "beta/treasury"));
    let publics = [&acme_key, &beta_key, &default_key].map(|k| k.versions[0].public_key_hex.clone().unwrap());
    assert!(publics[0] != publics[1] && publics[1] != publics[2] && publics[0] != publics[2], "{publics:?}");
    let batch = ["acme/a", "acme/b"].map(|name| keyward_client::keys::CreateKey {
        name: name.into(),
        key_type: "secp256k1".into(),
        exportable: false,
    });
    carol_admin.create_keys(batch.to_vec()).await.expect("a batch in acme");

    // Each controller signs in its keystore only; the owners in all of them.
    let request = SignWithKey { digest_hex: Some("42".repeat(32)), ..SignWithKey::default() };
    let signed = carol_api.sign_with_key("acme/treasury", &request).await.expect("Carol signs in acme");
    let public = hex::decode(&signed.public_key_hex).unwrap();
    crate::authz::k256_verifies(&public, &[0x42; 32], &hex::decode(&signed.signature_hex).unwrap());
    assert_eq!(signed.public_key_hex, publics[0]);
    dave_api.sign_with_key("beta/treasury", &request).await.expect("Dave signs in beta");
    for (client, name) in
        [(&carol_api, "beta/treasury"), (&carol_api, "treasury"), (&dave_api, "acme/treasury"), (&dave_api, "acme/a")]
    {
        assert_eq!(code(client.sign_with_key(name, &request).await), (403, "not_permitted".into()), "{name}");
    }
    assert_eq!(code(carol_admin.create_key("beta/x", "secp256k1", false).await), (403, "not_permitted".into()));
    assert_eq!(code(carol_admin.create_key("x", "secp256k1", false).await), (403, "not_permitted".into()));
    for name in ["acme/treasury", "beta/treasury", "treasury"] {
        as_alice.sign_with_key(name, &request).await.expect("the owners sign in every keystore");
    }

    // Listings hold one keystore's keys; a public key of another keystore finds nothing.
    let names = |page: keyward_client::keys::KeyPage| page.keys.into_iter().map(|k| k.name).collect::<Vec<_>>();
    assert_eq!(
        names(stack.client.list_keys_in("acme", None, None).await.unwrap()),
        ["acme/a", "acme/b", "acme/treasury"]
    );
    assert_eq!(names(stack.client.list_keys_in("beta", None, None).await.unwrap()), ["beta/treasury"]);
    assert_eq!(names(stack.client.list_keys(None, None).await.unwrap()), ["treasury"]);
    let paged = stack.client.list_keys_in("acme", Some("acme/a"), Some(1)).await.unwrap();
    assert_eq!((names(paged.clone()), paged.next_after), (vec!["acme/b".to_owned()], Some("acme/b".to_owned())));
    let acme_public = hex::decode(&publics[0]).unwrap();
    assert_eq!(names(stack.client.find_key_in("acme", &acme_public).await.unwrap()), ["acme/treasury"]);
    assert!(names(stack.client.find_key_in("beta", &acme_public).await.unwrap()).is_empty());
    assert!(names(stack.client.find_key(&acme_public).await.unwrap()).is_empty());

    // Paths: a keystore id is checked; the default keystore's path takes no keystore in a name.
    assert_eq!(code(stack.client.keystore_policy("master").await), (400, "invalid_keystore".into()));
    assert_eq!(code(stack.client.list_keys_in("Acme", None, None).await), (400, "invalid_keystore".into()));
    assert_eq!(code(stack.client.keystore_policy("gamma").await), (404, "policy_not_found".into()));
    let http = reqwest::Client::new();
    let raw = http
        .get(format!("http://127.0.0.1:{}/v1/keys/acme%2Ftreasury", stack.api_port))
        .bearer_auth(std::fs::read_to_string(stack.path().join("api-token")).unwrap().trim())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(raw.json::<serde_json::Value>().await.unwrap()["error"]["code"], "invalid_key_name");
    assert_eq!(stack.client.key("acme/treasury").await.unwrap().name, "acme/treasury");

    // The host moves beta's key into acme (its rows under an acme name): the row's bound name
    // is beta's, so the enclave does not open it, for Carol or the owners.
    carol_admin.create_key("acme/spare", "secp256k1", false).await.unwrap();
    let beta_wrapped = blob(&stack, "SELECT wrapped FROM key_versions WHERE name = 'beta/treasury'");
    let beta_public = blob(&stack, "SELECT public_key FROM key_versions WHERE name = 'beta/treasury'");
    sql(
        &stack,
        "UPDATE key_versions SET wrapped = ?1, public_key = ?2 WHERE name = 'acme/spare'",
        &[&beta_wrapped, &beta_public],
    );
    for client in [&carol_api, &as_alice] {
        assert_eq!(code(client.sign_with_key("acme/spare", &request).await), (502, "key_row_does_not_open".into()));
    }

    // The host copies acme's grant to beta (a newer version, as if the owners had set it):
    // the row's tag binds its keystore, so it is refused, not obeyed.
    sql(
        &stack,
        "INSERT INTO key_policies SELECT 'beta', '', 2, body, tag, created_at FROM key_policies \
         WHERE keystore = 'acme' AND key_name = ''",
        &[],
    );
    assert_eq!(code(carol_api.sign_with_key("beta/treasury", &request).await), (502, "policy_tampered".into()));
    sql(&stack, "DELETE FROM key_policies WHERE keystore = 'beta' AND version = 2", &[]);
    dave_api.sign_with_key("beta/treasury", &request).await.expect("the honest row again");

    // The audit chain names each keystore.
    let records = stack.admin_client().audit_page(0, None).await.unwrap().records;
    let find = |principal: &str, keystore: &str, outcome: &str| {
        records.iter().any(|r| {
            r.principal.as_deref() == Some(principal)
                && r.keystore == keystore
                && r.key == "treasury"
                && r.operation == "sign"
                && r.outcome == outcome
        })
    };
    assert!(find(&carol.id(), "acme", "ok") && find(&carol.id(), "beta", "not_permitted"), "{records:?}");
    assert!(find(&dave.id(), "beta", "ok") && find(&dave.id(), "acme", "not_permitted"), "{records:?}");
}

//! The keyring end to end: real gateway, enclave and attesting dev KMS processes. Each type is
//! created, used, and its signatures verified by an implementation other than the one that
//! signed; keys survive restarts; two gateway+enclave pairs on one database serve the same
//! keys; the logs and the database never hold key material.

use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_client::{
    Client, ClientError,
    keys::{CreateKey, KeyInfo, SignWithKey, VerifyWithKey},
};
use keyward_e2e::{Stack, StackOptions, event, free_port};

pub(crate) fn digest_request(digest: &[u8; 32]) -> SignWithKey {
    SignWithKey { digest_hex: Some(hex::encode(digest)), ..SignWithKey::default() }
}

fn message_request(message: &[u8], hash: Option<&str>) -> SignWithKey {
    SignWithKey { message_b64: Some(STANDARD.encode(message)), hash: hash.map(str::to_owned), ..SignWithKey::default() }
}

fn public_key(info: &KeyInfo) -> Vec<u8> {
    hex::decode(info.versions.last().and_then(|v| v.public_key_hex.as_deref()).expect("a public key")).expect("hex")
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}

/// Signs with each type through the API and verifies with another implementation.
pub(crate) async fn check_every_type(client: &Client, suffix: &str) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    // secp256k1: ECDSA (compact with recovery id, DER, Ethereum) and BIP340.
    let key = client.key(&format!("btc-{suffix}")).await.expect("secp256k1 key");
    let k256_key = k256::ecdsa::VerifyingKey::from_sec1_bytes(&public_key(&key)).expect("secp256k1 public key");
    let digest = sha256(b"pay 1 BTC");
    for format in ["compact", "der", "ethereum"] {
        let signed = client
            .sign_with_key(&key.name, &SignWithKey { format: Some(format.into()), ..digest_request(&digest) })
            .await
            .expect("secp256k1 ECDSA");
        let bytes = hex::decode(&signed.signature_hex).expect("hex");
        let sig = match format {
            "der" => k256::ecdsa::Signature::from_der(&bytes).expect("DER"),
            "ethereum" => k256::ecdsa::Signature::from_slice(&bytes[..64]).expect("r||s"),
            _ => k256::ecdsa::Signature::from_slice(&bytes).expect("compact"),
        };
        k256_key.verify_prehash(&digest, &sig).expect("k256 verifies keyward's ECDSA");
        keyward_e2e::assert_recovers(
            &digest,
            &hex::encode(sig.to_bytes()),
            signed.recovery_id.expect("recovery id"),
            &hex::encode(public_key(&key)),
        );
    }
    let bip340 = client
        .sign_with_key(&key.name, &SignWithKey { algorithm: Some("bip340".into()), ..digest_request(&digest) })
        .await
        .expect("BIP340");
    let xonly = k256::schnorr::VerifyingKey::from_bytes(&public_key(&key)[1..]).expect("x-only key");
    let sig =
        k256::schnorr::Signature::try_from(hex::decode(&bip340.signature_hex).expect("hex").as_slice()).expect("sig");
    xonly.verify_prehash(&digest, &sig).expect("k256 verifies keyward's BIP340");

    // Ed25519 over a message, checked with ed25519-dalek.
    let key = client.key(&format!("ed-{suffix}")).await.expect("ed25519 key");
    let message = b"an ed25519 message";
    let signed = client.sign_with_key(&key.name, &message_request(message, None)).await.expect("Ed25519");
    let dalek = ed25519_dalek::VerifyingKey::from_bytes(&public_key(&key).try_into().expect("32 bytes")).expect("key");
    let sig = ed25519_dalek::Signature::from_slice(&hex::decode(&signed.signature_hex).expect("hex")).expect("sig");
    dalek.verify_strict(message, &sig).expect("dalek verifies keyward's Ed25519");

    // P-256 ECDSA over a message hashed with SHA-256, checked with aws-lc-rs over the message.
    let key = client.key(&format!("p256-{suffix}")).await.expect("p256 key");
    let message = b"a p256 message";
    let signed = client
        .sign_with_key(
            &key.name,
            &SignWithKey { format: Some("der".into()), ..message_request(message, Some("sha256")) },
        )
        .await
        .expect("P-256");
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1, public_key(&key))
        .verify(message, &hex::decode(&signed.signature_hex).expect("hex"))
        .expect("aws-lc-rs verifies keyward's P-256");

    // Symmetric keys exist and list, and refuse to sign with their own code.
    for name in [format!("aes-{suffix}"), format!("mac-{suffix}")] {
        let err = client.sign_with_key(&name, &digest_request(&digest)).await.expect_err("symmetric keys do not sign");
        assert!(matches!(&err, ClientError::Api { status: 400, code, .. } if code == "not_a_signing_key"), "{err}");
    }
}

pub(crate) async fn create_every_type(admin: &Client, suffix: &str) {
    for (prefix, key_type) in
        [("btc", "secp256k1"), ("ed", "ed25519"), ("p256", "p256"), ("aes", "aes256-gcm"), ("mac", "hmac-sha256")]
    {
        let info = admin.create_key(&format!("{prefix}-{suffix}"), key_type, false).await.expect("create");
        assert_eq!((info.key_type.as_str(), info.state.as_str(), info.latest_version), (key_type, "enabled", 1));
        assert_eq!(info.versions[0].public_key_hex.is_some(), !key_type.contains('-'), "{key_type}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_is_made_in_the_enclave_used_and_verified_elsewhere_and_survives_restarts() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let admin = stack.admin_client();
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    create_every_type(&admin, "1").await;
    check_every_type(&stack.client, "1").await;

    // A duplicate name is 409; a bad name names the rule.
    let err = admin.create_key("btc-1", "secp256k1", false).await.expect_err("exists");
    assert!(matches!(&err, ClientError::Api { status: 409, code, .. } if code == "key_exists"), "{err}");
    let err = admin.create_key("no spaces", "secp256k1", false).await.expect_err("bad name");
    assert!(matches!(&err, ClientError::Api { status: 400, code, .. } if code == "invalid_key_name"), "{err}");

    // Rotation: the new version signs, the old one still verifies.
    let before = stack.client.key("btc-1").await.expect("key");
    let old_signature = stack.client.sign_with_key("btc-1", &digest_request(&[3; 32])).await.expect("sign v1");
    let rotated = admin.rotate_key("btc-1").await.expect("rotate");
    assert_eq!((rotated.latest_version, rotated.versions.len()), (2, 2));
    assert_ne!(rotated.versions[1].public_key_hex, before.versions[0].public_key_hex, "new key material");
    let new_signature = stack.client.sign_with_key("btc-1", &digest_request(&[3; 32])).await.expect("sign v2");
    assert_eq!(new_signature.version, 2);
    let verify = |signature: &str, version| VerifyWithKey {
        digest_hex: Some(hex::encode([3u8; 32])),
        version: Some(version),
        signature_hex: signature.to_owned(),
        ..VerifyWithKey::default()
    };
    assert!(
        stack.client.verify_with_key("btc-1", &verify(&old_signature.signature_hex, 1)).await.expect("verify").valid
    );
    assert!(
        !stack.client.verify_with_key("btc-1", &verify(&old_signature.signature_hex, 2)).await.expect("verify").valid
    );

    // Every key survives an enclave restart and a full restart.
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    stack.wait_health("keyring ready again", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    check_every_type(&stack.client, "1").await;
    stack.kill_gateway();
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    stack.start_gateway();
    stack
        .wait_health("keyring ready after a full restart", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready"))
        .await;
    check_every_type(&stack.client, "1").await;

    // One root, made once; every restart unsealed it.
    let enclave = stack.enclaves.get(&1).expect("enclave");
    assert_eq!(enclave.events(event::ROOT_PROVISIONED).len(), 1);
    assert_eq!(enclave.events(event::ROOT_UNSEALED).len(), 2);

    // The database and logs hold no key material: scanned for each version's secret through
    // the master-key scanner's forms is not possible (the test does not know them), so check
    // the wrapped blobs are all the database holds of them (61 bytes each) and no log prints
    // a wrapped blob either.
    let conn = rusqlite::Connection::open(stack.db_path()).expect("db");
    let wrapped: Vec<Vec<u8>> = conn
        .prepare("SELECT wrapped FROM key_versions")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read");
    assert!(wrapped.len() >= 6 && wrapped.iter().all(|w| w.len() == 61), "every version is a 61-byte wrapped blob");
    for (path, bytes) in stack.log_bytes() {
        for blob in &wrapped {
            keyward_e2e::assert_secret_absent(&path.display().to_string(), &bytes, "wrapped key", blob);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_and_enclave_pairs_on_one_database_serve_the_same_keys() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    // Pair B: its own enclave and gateway (API, relay), the same database, KMS and link key.
    let b = stack.start_second_pair(2).await;
    let b_client = Client::new(&format!("http://127.0.0.1:{}", b.api_port), Some(stack.token.clone())).expect("client");
    let b_admin =
        Client::new(&format!("http://127.0.0.1:{}", b.api_port), Some(b.admin_token.clone())).expect("client");
    wait_keyring(&b_client).await;

    // Keys made through A are used through B at once, and the other way round.
    create_every_type(&stack.admin_client(), "a").await;
    check_every_type(&b_client, "a").await;
    create_every_type(&b_admin, "b").await;
    check_every_type(&stack.client, "b").await;
    // The same name on both at once: exactly one key.
    let a_admin = stack.admin_client();
    let (one, two) = tokio::join!(
        a_admin.create_key("contested", "ed25519", false),
        b_admin.create_key("contested", "ed25519", false)
    );
    let outcomes = [one.is_ok(), two.is_ok()];
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{one:?} {two:?}");
    let loser = if outcomes[0] { two } else { one };
    assert!(matches!(loser, Err(ClientError::Api { status: 409, ref code, .. }) if code == "key_exists"), "{loser:?}");
    // Both enclaves hold the same root, made once.
    let a_root = stack.client.health().await.expect("health").1.enclaves[0].keyring.root_id.clone();
    let b_root = b_client.health().await.expect("health").1.enclaves[0].keyring.root_id.clone();
    assert!(a_root.is_some() && a_root == b_root, "{a_root:?} {b_root:?}");
    drop(b);
    let _ = free_port();
}

pub(crate) async fn wait_keyring(client: &Client) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok((_, health)) = client.health().await
            && health.enclaves.iter().all(|e| e.keyring.state == "ready")
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the second pair's keyring never became ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_and_deleted_keys_are_never_used_and_a_deletion_can_be_cancelled() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    let admin = stack.admin_client();
    admin.create_key("k", "secp256k1", false).await.expect("create");
    let refused = |code: &'static str| {
        move |r: Result<keyward_client::keys::KeySignatureInfo, ClientError>| {
            assert!(matches!(&r, Err(ClientError::Api { status: 409, code: c, .. }) if c == code), "{code}: {r:?}");
        }
    };
    admin.set_key_state("k", "disable").await.expect("disable");
    refused("key_disabled")(stack.client.sign_with_key("k", &digest_request(&[1; 32])).await);
    admin.set_key_state("k", "enable").await.expect("enable");
    stack.client.sign_with_key("k", &digest_request(&[1; 32])).await.expect("enabled again");
    let deleted = admin.delete_key("k").await.expect("delete");
    assert_eq!(deleted.state, "pending_deletion");
    assert!(deleted.deletion_due.expect("due") >= deleted.created_at + 7 * 86_400 - 5, "seven days by default");
    refused("key_pending_deletion")(stack.client.sign_with_key("k", &digest_request(&[1; 32])).await);
    let cancelled = admin.set_key_state("k", "cancel-deletion").await.expect("cancel");
    assert_eq!(cancelled.state, "disabled");
    let err = admin.set_key_state("k", "disable").await.expect_err("already disabled");
    assert!(matches!(&err, ClientError::Api { status: 409, code, .. } if code == "invalid_key_state"), "{err}");
    // Management needs the admin token.
    let err = stack.client.create_key("x", "ed25519", false).await.expect_err("API token");
    assert!(matches!(&err, ClientError::Api { status: 401, code, .. } if code == "unauthorized"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_all_or_nothing_and_pages_are_stable() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    let admin = stack.admin_client();
    let batch = |names: &[&str]| {
        names
            .iter()
            .map(|n| CreateKey { name: (*n).into(), key_type: "secp256k1".into(), exportable: false })
            .collect::<Vec<_>>()
    };
    let created = admin
        .create_keys(
            (0..250)
                .map(|i| CreateKey { name: format!("w-{i:04}"), key_type: "secp256k1".into(), exportable: false })
                .collect(),
        )
        .await
        .expect("batch");
    assert_eq!(created.keys.len(), 250);
    let err = admin.create_keys(batch(&["fresh-1", "w-0007", "fresh-2"])).await.expect_err("one name is taken");
    assert!(matches!(&err, ClientError::Api { status: 409, code, .. } if code == "key_exists"), "{err}");
    let err = stack.client.key("fresh-1").await.expect_err("nothing of the batch was kept");
    assert!(matches!(&err, ClientError::Api { status: 404, code, .. } if code == "key_not_found"), "{err}");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = stack.client.list_keys(after.as_deref(), Some(100)).await.expect("page");
        seen.extend(page.keys.iter().map(|k| k.name.clone()));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..250).map(|i| format!("w-{i:04}")).collect::<Vec<_>>());
    // Lookup by public key.
    let key = &created.keys[42];
    let found = stack
        .client
        .find_key(&hex::decode(key.versions[0].public_key_hex.as_deref().expect("pk")).expect("hex"))
        .await
        .expect("find");
    assert_eq!(found.keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), vec!["w-0042"]);
}

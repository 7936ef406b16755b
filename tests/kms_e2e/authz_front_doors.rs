//! The front doors under authorization: BitGo's key provider and ProgressDB's KMS sign their
//! requests as their own principals, which the owners grant, by the keystore's policy, only on
//! each front door's keys (`key_prefix`). Before the grant the enclave refuses them; after it
//! every route works (keys, sealed prvs, signatures and PSBTs, data keys, encryption,
//! rotation); and a host holding a front door's principal key still cannot use any other key.

use keyward_client::{crypt::Encrypt, keys::SignWithKey};
use keyward_e2e::{Stack, StackOptions, free_port};
use serde_json::{Value, json};

use crate::authz_policy::{code, principal};

/// A front door's answer: status, keyward's error code (none on success), and the JSON body.
async fn call(url: String, body: Value) -> (u16, String, Value) {
    let answer = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
    let status = answer.status().as_u16();
    let code = answer.headers().get("x-keyward-error-code").map(|v| v.to_str().unwrap().to_owned());
    let text = answer.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, code.unwrap_or_default(), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_doors_sign_as_principals_the_owners_grant_only_on_their_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, _) = principal(dir.path(), "alice");
    let (bob, _) = principal(dir.path(), "bob");
    let (bitgo_principal, bitgo_key) = principal(dir.path(), "bitgo");
    let (pdb_principal, pdb_key) = principal(dir.path(), "progressdb");
    let (bitgo_port, pdb_port) = (free_port(), free_port());
    let options = StackOptions {
        owners: vec![alice.public(), bob.public()],
        owner_quorum: 2,
        extra_config: format!(
            "bitgo:\n  listen: 127.0.0.1:{bitgo_port}\n  reveal_prv_sources: [user]\n  principal_key_file: {}\n\
             progressdb:\n  listen: 127.0.0.1:{pdb_port}\n  key_prefix: pdb.\n  principal_key_file: {}\n",
            bitgo_key.display(),
            pdb_key.display()
        ),
        ..StackOptions::default()
    };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let bitgo = |path: &str, body: Value| call(format!("http://127.0.0.1:{bitgo_port}{path}"), body);
    let pdb = |path: &str, body: Value| call(format!("http://127.0.0.1:{pdb_port}{path}"), body);

    // No grant yet: the enclave refuses the front doors' principals.
    let (status, refused, _) = bitgo("/generateDataKey", json!({"keyType": "AES-256"})).await;
    assert_eq!((status, refused.as_str()), (403, "not_permitted"));
    let (status, refused, _) = pdb("/deks", json!({"key_id": "threads/1"})).await;
    assert_eq!((status, refused.as_str()), (403, "not_permitted"));

    // The owners grant each principal its own operations on its own keys.
    let rule = |who: &str, operations: &[&str], prefix: &str| json!({"principals": [who], "operations": operations, "quorum": 1, "key_prefix": prefix});
    let policy = json!({"version": 1, "rules": [
        rule(&bitgo_principal.id(), &["create", "sign", "encrypt", "decrypt", "datakey"], "bitgo."),
        rule(&pdb_principal.id(), &["create", "encrypt", "decrypt", "rotate"], "pdb."),
    ]});
    let as_alice = stack.client.clone().with_principal(alice.clone());
    as_alice.set_keystore_policy("default", &policy, &[&bob]).await.expect("the owners' grant");

    // BitGo: data keys, a stored prv revealed, a generated key signing a hash and a PSBT.
    let (status, _, made) = bitgo("/generateDataKey", json!({"keyType": "AES-256"})).await;
    assert_eq!(status, 200, "{made}");
    let (status, _, opened) = bitgo("/decryptDataKey", json!({"encryptedKey": made["encryptedKey"]})).await;
    assert_eq!((status, &opened["plaintextKey"]), (200, &made["plaintextKey"]));
    let stored =
        json!({"prv": "xprv-secret", "pub": "xpub-1", "coin": "tbtc", "source": "user", "type": "independent"});
    assert_eq!(bitgo("/key", stored).await.0, 200);
    let revealed = reqwest::get(format!("http://127.0.0.1:{bitgo_port}/key/xpub-1?source=user")).await.unwrap();
    assert_eq!(revealed.json::<Value>().await.unwrap()["prv"], "xprv-secret");
    let (status, _, generated) =
        bitgo("/key/generate", json!({"coin": "hteth", "source": "user", "type": "independent"})).await;
    assert_eq!(status, 200, "{generated}");
    let xpub = generated["pub"].as_str().unwrap().to_owned();
    let hash = [0x4du8; 32];
    let sign =
        |payload: String| json!({"pub": xpub, "source": "user", "signablePayload": payload, "algorithm": "ecdsa"});
    let (status, _, signed) = bitgo("/sign", sign(format!("0x{}", hex::encode(hash)))).await;
    assert_eq!(status, 200, "{signed}");
    let signature = hex::decode(&signed["signature"].as_str().unwrap()[2..]).unwrap();
    crate::authz::k256_verifies(&crate::bitgo::xpub_key(&xpub), &hash, &signature[..64]);
    let psbt = crate::bitgo::psbt::wallet_psbt(&xpub, "m/0/0/20/3");
    let (status, _, signed) = bitgo("/sign", sign(hex::encode(psbt.serialize()))).await;
    assert_eq!(status, 200, "{signed}");
    let signed_psbt = hex::decode(signed["signature"].as_str().unwrap()).unwrap();
    crate::bitgo::psbt::assert_signed_by_child(&signed_psbt, &xpub, "m/0/0/20/3");

    // ProgressDB: a data key, encryption both ways, a rewrap (rotation).
    let (status, _, dek) = pdb("/deks", json!({"key_id": "threads/1"})).await;
    assert_eq!(status, 201, "{dek}");
    let plaintext = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"a message");
    let (status, _, sealed) = pdb("/encrypt", json!({"key_id": "threads/1", "plaintext": plaintext})).await;
    assert_eq!(status, 200, "{sealed}");
    let (status, _, opened) = pdb("/decrypt", json!({"key_id": "threads/1", "ciphertext": sealed["ciphertext"]})).await;
    assert_eq!((status, &opened["plaintext"]), (200, &json!(plaintext)));
    assert_eq!(pdb("/rewrap", json!({"key_id": "threads/1"})).await.0, 200);

    // A host with a front door's principal key: nothing on keys outside its prefix.
    let admin_alice = stack.admin_client().with_principal(alice.clone());
    admin_alice.create_key("treasury", "secp256k1", false).await.unwrap();
    admin_alice.create_key("vault", "aes256-gcm", false).await.unwrap();
    let as_bitgo = stack.client.clone().with_principal(bitgo_principal.clone());
    let as_pdb = stack.client.clone().with_principal(pdb_principal.clone());
    let digest = SignWithKey { digest_hex: Some("42".repeat(32)), ..SignWithKey::default() };
    assert_eq!(code(as_bitgo.sign_with_key("treasury", &digest).await), (403, "not_permitted".into()));
    let encrypt = Encrypt { plaintext_b64: plaintext.clone(), associated_data_b64: None };
    assert_eq!(code(as_pdb.encrypt("vault", &encrypt).await), (403, "not_permitted".into()));
    assert_eq!(code(as_pdb.encrypt("bitgo.data-keys", &encrypt).await), (403, "not_permitted".into()));
    let other = stack.admin_client().with_principal(bitgo_principal.clone());
    assert_eq!(code(other.create_key("payroll", "secp256k1", false).await), (403, "not_permitted".into()));
    // ... and what it was granted still works through the keyring API (the rule, not the door).
    as_pdb.encrypt("pdb.threads.1", &encrypt).await.expect("the grant on the prefix");
}

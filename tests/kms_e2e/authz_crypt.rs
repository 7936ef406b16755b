//! Encryption under authorization, end to end: the owner encrypts, decrypts, rewraps, makes
//! data keys and MACs with signed requests; a principal a key's policy allows to encrypt cannot
//! decrypt; unsigned requests and unsigned streams are refused; and a host with the owner's signatures
//! in hand cannot decrypt another ciphertext with them or unwrap a data key's plaintext.

use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_authz::Operation;
use keyward_client::{
    ClientError,
    crypt::{Decrypt, Encrypt, GenerateDataKey, MacRequest, VerifyMac},
};
use keyward_e2e::{RawLink, Stack, StackOptions, error_of};
use keyward_proto::{CryptOp, DataKeySpec, ErrorCode, KeyCrypt, KeyType, Reply, Request, Response};

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_obeys_signed_requests_and_a_host_cannot_bend_them() {
    let (alice, alice_pair) = crate::authz::principal();
    let (carol, _) = crate::authz::principal();
    let options = StackOptions { owners: vec![alice.public()], ..StackOptions::default() };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let as_alice = stack.client.clone().with_principal(alice.clone());
    let admin = stack.admin_client().with_principal(alice.clone());
    admin.create_key("vault", "aes256-gcm", false).await.unwrap();
    admin.create_key("macs", "hmac-sha256", false).await.unwrap();

    // The owner's signed requests: every JSON operation round-trips.
    let ad = Some(STANDARD.encode(b"record 7"));
    let encrypt = Encrypt { plaintext_b64: STANDARD.encode(b"salary"), associated_data_b64: ad.clone() };
    let sealed = as_alice.encrypt("vault", &encrypt).await.expect("the owner encrypts");
    let open =
        |ciphertext_b64: &str| Decrypt { ciphertext_b64: ciphertext_b64.to_owned(), associated_data_b64: ad.clone() };
    let opened = as_alice.decrypt("vault", &open(&sealed.ciphertext_b64)).await.expect("the owner decrypts");
    assert_eq!(STANDARD.decode(opened.plaintext_b64).unwrap(), b"salary");
    let rewrapped = as_alice.rewrap("vault", &open(&sealed.ciphertext_b64)).await.expect("the owner rewraps");
    let again = as_alice.decrypt("vault", &open(&rewrapped.ciphertext_b64)).await.unwrap();
    assert_eq!(STANDARD.decode(again.plaintext_b64).unwrap(), b"salary");
    let wanted = GenerateDataKey { spec: "aes-256".into(), plaintext: false, associated_data_b64: ad.clone() };
    let data_key = as_alice.data_key("vault", &wanted).await.expect("the owner makes a data key");
    assert!(data_key.plaintext_b64.is_none(), "no plaintext unless asked for");
    let unwrapped = as_alice.decrypt("vault", &open(&data_key.ciphertext_b64)).await.expect("and opens it");
    assert_eq!(STANDARD.decode(unwrapped.plaintext_b64).unwrap().len(), 32);
    let message = MacRequest { message_b64: STANDARD.encode(b"invoice 12") };
    let mac = as_alice.hmac("macs", &message).await.expect("the owner MACs");
    let check = VerifyMac { message_b64: message.message_b64.clone(), mac_b64: mac.mac_b64, version: None };
    assert!(as_alice.verify_hmac("macs", &check).await.unwrap().valid);

    // Unsigned, or as a principal no policy names: refused in the enclave.
    assert_eq!(code(stack.client.encrypt("vault", &encrypt).await), (401, "signature_required".into()));
    assert_eq!(
        code(stack.client.decrypt("vault", &open(&sealed.ciphertext_b64)).await),
        (401, "signature_required".into())
    );
    assert_eq!(code(stack.client.data_key("vault", &wanted).await), (401, "signature_required".into()));
    assert_eq!(code(stack.client.hmac("macs", &message).await), (401, "signature_required".into()));
    let as_carol = stack.client.clone().with_principal(carol.clone());
    assert_eq!(code(as_carol.encrypt("vault", &encrypt).await), (403, "not_permitted".into()));
    // A stream begun without a signed request (`authz_stream` has the signed ones): refused.
    let stream = as_alice.encrypt_stream("vault", reqwest::Body::from(vec![0u8; 1024]), None).await;
    assert_eq!(code(stream).1, "signature_required");

    // A policy lets Carol encrypt with vault, and only that.
    let policy = serde_json::json!({"version": 1, "rules": [{"principals": [carol.id()], "operations": ["encrypt"], "quorum": 1}]});
    as_alice.set_key_policy("vault", &policy, &[]).await.expect("one owner sets a policy (quorum 1)");
    let carols = as_carol.encrypt("vault", &encrypt).await.expect("Carol encrypts");
    assert_eq!(code(as_carol.decrypt("vault", &open(&carols.ciphertext_b64)).await), (403, "not_permitted".into()));
    assert_eq!(code(as_carol.data_key("vault", &wanted).await), (403, "not_permitted".into()));
    let theirs = as_alice.decrypt("vault", &open(&carols.ciphertext_b64)).await.expect("the owner reads it");
    assert_eq!(STANDARD.decode(theirs.plaintext_b64).unwrap(), b"salary");

    // The host on the enclave link, with the owner's signatures in hand.
    let mut link = RawLink::connect(&stack, 1).await;
    link.handshake_as_gateway(&stack).await;
    let row = crate::authz::stored_row_of(&stack, "vault", KeyType::Aes256Gcm);
    let policy_row = |auth: &mut keyward_proto::Authorization| {
        let conn = rusqlite::Connection::open(stack.db_path()).unwrap();
        let (version, body, tag): (i64, Vec<u8>, Vec<u8>) = conn
            .query_row("SELECT version, body, tag FROM key_policies WHERE key_name = 'vault'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        auth.policy = Some(keyward_proto::PolicyRow {
            keystore: "default".into(),
            key: "vault".into(),
            version: version as u64,
            body,
            tag: tag.try_into().unwrap(),
        });
    };
    let signed = |operation: Operation, body: &[u8]| {
        let mut auth = crate::authz::authorization_for(&alice_pair, operation, "default", "vault", body);
        policy_row(&mut auth);
        Some(Box::new(auth))
    };
    let ciphertext = |b64: &str| STANDARD.decode(b64).unwrap();
    let decrypt_body = serde_json::to_vec(&open(&sealed.ciphertext_b64)).unwrap();
    let decrypt = |c: Vec<u8>| CryptOp::Decrypt { ciphertext: c, associated_data: b"record 7".to_vec() };
    // The owner's decryption of one ciphertext, used on Carol's.
    let frame = link
        .call(Request::KeyCrypt(Box::new(KeyCrypt {
            row: row.clone(),
            op: decrypt(ciphertext(&carols.ciphertext_b64)),
            auth: signed(Operation::Decrypt, &decrypt_body),
        })))
        .await;
    assert_eq!(error_of(&frame).0, ErrorCode::RequestMismatch, "another ciphertext: {frame:?}");
    // The owner's request for a wrapped data key, turned into one with its plaintext.
    let datakey_body = serde_json::to_vec(&wanted).unwrap();
    let datakey =
        |plaintext| CryptOp::DataKey { spec: DataKeySpec::Aes256, plaintext, associated_data: b"record 7".to_vec() };
    let frame = link
        .call(Request::KeyCrypt(Box::new(KeyCrypt {
            row: row.clone(),
            op: datakey(true),
            auth: signed(Operation::DataKey, &datakey_body),
        })))
        .await;
    assert_eq!(error_of(&frame).0, ErrorCode::RequestMismatch, "the plaintext asked for: {frame:?}");
    // ... and its encryption signature used to decrypt.
    let encrypt_body = serde_json::to_vec(&encrypt).unwrap();
    let frame = link
        .call(Request::KeyCrypt(Box::new(KeyCrypt {
            row: row.clone(),
            op: decrypt(ciphertext(&sealed.ciphertext_b64)),
            auth: signed(Operation::Encrypt, &encrypt_body),
        })))
        .await;
    assert_eq!(error_of(&frame).0, ErrorCode::BadRequestSignature, "an encryption signature to decrypt: {frame:?}");
    // Positive controls on the same link: the owner's own requests are served.
    let frame = link
        .call(Request::KeyCrypt(Box::new(KeyCrypt {
            row: row.clone(),
            op: decrypt(ciphertext(&sealed.ciphertext_b64)),
            auth: signed(Operation::Decrypt, &decrypt_body),
        })))
        .await;
    match frame.reply {
        Reply::Ok(Response::Crypt(keyward_proto::CryptOutput::Plaintext(p))) => assert_eq!(p.expose(), b"salary"),
        other => panic!("the owner's own decryption is served, got {other:?}"),
    }
    let frame = link
        .call(Request::KeyCrypt(Box::new(KeyCrypt {
            row,
            op: datakey(false),
            auth: signed(Operation::DataKey, &datakey_body),
        })))
        .await;
    assert!(matches!(frame.reply, Reply::Ok(Response::Crypt(_))), "the owner's own data key: {frame:?}");

    // Key agreement: the owner's signed request derives the secret the peer computes too; an
    // unsigned one, or a stranger's, is refused in the enclave.
    admin.create_key("agree-x", "x25519", false).await.unwrap();
    let peer = aws_lc_rs::agreement::PrivateKey::generate(&aws_lc_rs::agreement::X25519).unwrap();
    let request = keyward_client::agree::DeriveSharedSecret {
        public_key_b64: Some(STANDARD.encode(peer.compute_public_key().unwrap().as_ref())),
        ..Default::default()
    };
    let derived = as_alice.derive_shared_secret("agree-x", &request).await.expect("the owner derives");
    let ours = stack.client.key("agree-x").await.unwrap().versions[0].public_key_hex.clone().unwrap();
    let expected = aws_lc_rs::agreement::agree(
        &peer,
        aws_lc_rs::agreement::UnparsedPublicKey::new(&aws_lc_rs::agreement::X25519, hex::decode(ours).unwrap()),
        (),
        |z| Ok(z.to_vec()),
    )
    .unwrap();
    assert_eq!(STANDARD.decode(&derived.shared_secret_b64).unwrap(), expected);
    assert_eq!(code(stack.client.derive_shared_secret("agree-x", &request).await), (401, "signature_required".into()));
    let as_carol = stack.client.clone().with_principal(carol.clone());
    assert_eq!(code(as_carol.derive_shared_secret("agree-x", &request).await), (403, "not_permitted".into()));
}

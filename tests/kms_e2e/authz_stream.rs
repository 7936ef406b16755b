//! Streams under authorization, end to end: the owner encrypts and decrypts a multi-segment
//! stream with signed requests (the SDK and the CLI); unsigned streams and other principals
//! are refused; a stream whose body is not the plaintext the principal signed never completes;
//! a signature for one stream does not decrypt another; and a host on the enclave link with
//! the owner's signed begin in hand seals none of its own plaintext into a complete stream.

use aws_lc_rs::digest;
use base64::{Engine, engine::general_purpose::STANDARD};
use futures_util::StreamExt;
use keyward_authz::Operation;
use keyward_client::crypt::{STREAM_HEADER_LEN, StreamEncryptBody};
use keyward_e2e::{RawLink, Stack, StackOptions, error_of};
use keyward_proto::{CryptOp, CryptOutput, ErrorCode, KeyCrypt, KeyType, Reply, Request, Response, SecretBytes};

use crate::authz_policy::code;

fn sha256(bytes: &[u8]) -> [u8; 32] {
    digest::digest(&digest::SHA256, bytes).as_ref().try_into().unwrap()
}

/// The whole answer body, or the error that broke it off.
async fn collect(response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let (out, broken) = received(response).await;
    broken.map_or(Ok(out), Err)
}

/// What came of the answer body, and the error that broke it off, if one did.
async fn received(response: reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut out = Vec::new();
    let mut parts = response.bytes_stream();
    while let Some(part) = parts.next().await {
        match part {
            Ok(part) => out.extend_from_slice(&part),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_stream_is_sealed_and_opened_as_signed_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, alice_pair, alice_key) = crate::authz::principal_file(dir.path(), "alice");
    let (carol, _) = crate::authz::principal();
    let options = StackOptions { owners: vec![alice.public()], ..StackOptions::default() };
    let mut stack = Stack::start(options).await;
    stack.wait_keyring().await;
    let as_alice = stack.client.clone().with_principal(alice.clone());
    stack.admin_client().with_principal(alice.clone()).create_key("files", "aes256-gcm", false).await.unwrap();
    // Four segments of 64 KiB, the last one short.
    let plaintext: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let ad = Some(&b"backup-9"[..]);

    let sealed = as_alice
        .encrypt_stream_signed("files", reqwest::Body::from(plaintext.clone()), ad, &sha256(&plaintext))
        .await
        .expect("the owner's signed stream");
    let ciphertext = collect(sealed).await.expect("the stream completes");
    let header = &ciphertext[..STREAM_HEADER_LEN];
    let opened = as_alice
        .decrypt_stream_signed("files", reqwest::Body::from(ciphertext.clone()), ad, header)
        .await
        .expect("the owner's signed decryption");
    assert_eq!(collect(opened).await.expect("it completes"), plaintext);

    // The CLI signs its file streams the same way (the plaintext's digest first, the
    // ciphertext's header from the file).
    let (input, sealed_file, output) = (dir.path().join("in"), dir.path().join("sealed"), dir.path().join("out"));
    std::fs::write(&input, &plaintext).unwrap();
    let env = [("KEYWARD_PRINCIPAL_KEY", alice_key.as_path())];
    let path = |p: &std::path::Path| p.display().to_string();
    let file_args = |command: &'static str, from: &std::path::Path, to: &std::path::Path| {
        vec![
            "keys".to_owned(),
            command.to_owned(),
            "files".to_owned(),
            "--in".to_owned(),
            path(from),
            "--out".to_owned(),
            path(to),
            "--aad".to_owned(),
            "backup-9".to_owned(),
        ]
    };
    for (command, from, to) in [("encrypt-file", &input, &sealed_file), ("decrypt-file", &sealed_file, &output)] {
        let args = file_args(command, from, to);
        let (ok, _, stderr) = crate::authz::cli(&stack, &env, &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok, "keyward keys {command}: {stderr}");
    }
    assert_eq!(std::fs::read(&output).unwrap(), plaintext);

    // Unsigned, or by a principal no policy names: refused before any segment.
    let unsigned = as_alice.encrypt_stream("files", reqwest::Body::from(plaintext.clone()), ad).await;
    assert_eq!(code(unsigned), (401, "signature_required".into()));
    let unsigned = as_alice.decrypt_stream("files", reqwest::Body::from(ciphertext.clone()), ad).await;
    assert_eq!(code(unsigned), (401, "signature_required".into()));
    let as_carol = stack.client.clone().with_principal(carol);
    let digest = sha256(&plaintext);
    let carols = as_carol.encrypt_stream_signed("files", reqwest::Body::from(plaintext.clone()), ad, &digest).await;
    assert_eq!(code(carols), (403, "not_permitted".into()));

    // The body is not the plaintext signed (one byte of the last segment changed): the
    // enclave seals the segments before it, never the last; the transfer breaks off.
    let mut other = plaintext.clone();
    *other.last_mut().unwrap() ^= 1;
    let response = as_alice
        .encrypt_stream_signed("files", reqwest::Body::from(other), ad, &sha256(&plaintext))
        .await
        .expect("the stream begins");
    let (got, broken) = received(response).await;
    assert!(broken.is_some(), "a stream that does not hash to the signed digest never ends");
    assert_eq!(got.len(), STREAM_HEADER_LEN + 3 * (64 * 1024 + 16), "the header and the three full segments only");

    // A signature over one stream's header does not decrypt another stream.
    let second = as_alice
        .encrypt_stream_signed("files", reqwest::Body::from(b"second".to_vec()), ad, &sha256(b"second"))
        .await
        .unwrap();
    let second = collect(second).await.unwrap();
    let crossed = as_alice.decrypt_stream_signed("files", reqwest::Body::from(second.clone()), ad, header).await;
    assert_eq!(code(crossed), (400, "request_mismatch".into()));
    let theirs = as_alice.decrypt_stream_signed("files", reqwest::Body::from(second.clone()), ad, &second[..41]);
    assert_eq!(collect(theirs.await.unwrap()).await.unwrap(), b"second", "positive control");

    // The host on the link, with the owner's signed begin: its ticket seals none of the host's
    // plaintext into a complete stream, and a segment without the ticket is refused.
    let mut link = RawLink::connect(&stack, 1).await;
    link.handshake_as_gateway(&stack).await;
    let row = crate::authz::stored_row_of(&stack, "files", KeyType::Aes256Gcm);
    let body = StreamEncryptBody {
        associated_data_b64: STANDARD.encode(b"backup-9"),
        plaintext_sha256_hex: hex::encode(sha256(b"pay alice 5")),
    };
    let body = serde_json::to_vec(&body).unwrap();
    let call = |op| Request::KeyCrypt(Box::new(KeyCrypt { row: row.clone(), op, auth: None }));
    // The owner's signed begin, as the host captured it, sent by the host: a new stream each.
    let begin = || {
        let auth = crate::authz::authorization_for(&alice_pair, Operation::Encrypt, "default", "files", &body);
        let op = CryptOp::BeginSeal {
            associated_data: b"backup-9".to_vec(),
            plaintext_sha256: sha256(b"pay alice 5").to_vec(),
        };
        Request::KeyCrypt(Box::new(KeyCrypt { row: row.clone(), op, auth: Some(Box::new(auth)) }))
    };
    let segment = |header: &[u8], plaintext: &[u8], ticket| CryptOp::SealSegment {
        header: header.to_vec(),
        associated_data: b"backup-9".to_vec(),
        index: 0,
        last: true,
        plaintext: SecretBytes::new(plaintext.to_vec()),
        ticket,
    };
    let frame = link.call(begin()).await;
    let Reply::Ok(Response::Crypt(CryptOutput::SealTicket { header, ticket })) = frame.reply else {
        panic!("{frame:?}")
    };
    let frame = link.call(call(segment(&header, b"pay alice 5", None))).await;
    assert_eq!(error_of(&frame).0, ErrorCode::SignatureRequired);
    let frame = link.call(call(segment(&header, b"pay mallory 500", Some(ticket)))).await;
    assert_eq!(error_of(&frame).0, ErrorCode::RequestMismatch);
    // Positive control, a stream begun afresh: the signed plaintext is sealed.
    let frame = link.call(begin()).await;
    let Reply::Ok(Response::Crypt(CryptOutput::SealTicket { header, ticket })) = frame.reply else {
        panic!("{frame:?}")
    };
    let frame = link.call(call(segment(&header, b"pay alice 5", Some(ticket)))).await;
    assert!(matches!(frame.reply, Reply::Ok(Response::Crypt(CryptOutput::Ciphertext(_)))), "{frame:?}");
}

//! The enclave link under abuse: oversized, truncated, stalled and garbage frames, a wrong
//! protocol version, requests before the handshake, a peer that stops reading, (from the
//! gateway's side) an enclave that never answers, and the KMS relay asked for other targets.

use std::time::{Duration, Instant};

use keyward_e2e::{RawLink, Stack, StackOptions, assert_signs, error_of};
use keyward_proto::{
    CONNECTION_ERROR_ID, CompressedPublicKey, Digest, EnclaveId, EnclaveInfo, EnclaveState, ErrorCode,
    FRAME_STALL_LIMIT, Hello, HelloReply, MAX_FRAME_LEN, NsmKind, PROTOCOL_VERSION, Reply, Request, RequestFrame,
    Response, ResponseFrame, Scheme, SignRequest, Status, decode, encode, read_frame,
};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_an_error_and_the_enclave_keeps_serving() {
    let stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");

    // Oversized: refused on the length prefix alone.
    let mut link = RawLink::connect(&stack, 1).await;
    link.conn.write_all(&(16u32 << 20).to_be_bytes()).await.expect("write");
    let frame = link.reply().await;
    assert_eq!(frame.id, CONNECTION_ERROR_ID);
    assert_eq!(error_of(&frame).0, ErrorCode::BadRequest, "{frame:?}");
    assert!(error_of(&frame).1.contains("exceeds"), "{frame:?}");
    link.assert_closed().await;

    // Garbage body.
    let mut link = RawLink::connect(&stack, 1).await;
    link.conn.write_all(&[0, 0, 0, 5, 0xff, 0x00, 0x13, 0x37, 0x42]).await.expect("write");
    let frame = link.reply().await;
    assert_eq!(frame.id, CONNECTION_ERROR_ID);
    assert_eq!(error_of(&frame).0, ErrorCode::BadRequest);
    link.assert_closed().await;

    // Truncated: half a header, then the peer goes away.
    let mut link = RawLink::connect(&stack, 1).await;
    link.conn.write_all(&[0, 0]).await.expect("write");
    drop(link);
    // A frame that announces more than it sends, then hangs up.
    let mut link = RawLink::connect(&stack, 1).await;
    link.conn.write_all(&[0, 0, 1, 0, 1, 2, 3]).await.expect("write");
    drop(link);

    // Wrong protocol version.
    let mut link = RawLink::connect(&stack, 1).await;
    let frame = link.call(Request::Hello(Hello { protocol_version: PROTOCOL_VERSION + 98 })).await;
    assert_eq!(error_of(&frame).0, ErrorCode::VersionMismatch);
    link.assert_closed().await;

    // A request before the handshake.
    let mut link = RawLink::connect(&stack, 1).await;
    let frame =
        link.call(Request::Sign(SignRequest { digest: Digest([1; 32]), scheme: Scheme::Ecdsa, auth: None })).await;
    assert_eq!(error_of(&frame).0, ErrorCode::HandshakeRequired);
    link.assert_closed().await;

    // An unknown request after a good handshake (as the gateway would do it, with the link
    // key) gets an error with its own id, and the connection stays usable.
    let mut link = RawLink::connect(&stack, 1).await;
    link.handshake_as_gateway(&stack).await;
    let conn = &mut link.conn;
    let unknown = serde_cbor::to_vec(&serde_cbor::Value::Map(
        [
            (serde_cbor::Value::Text("id".into()), serde_cbor::Value::Integer(2)),
            (serde_cbor::Value::Text("request".into()), serde_cbor::Value::Text("SelfDestruct".into())),
        ]
        .into_iter()
        .collect(),
    ))
    .expect("cbor");
    conn.write_all(&(unknown.len() as u32).to_be_bytes()).await.expect("write");
    conn.write_all(&unknown).await.expect("write");
    let frame = link.reply().await;
    assert_eq!((frame.id, error_of(&frame).0), (2, ErrorCode::BadRequest));
    link.conn
        .write_all(&encode(&RequestFrame { id: 3, request: Request::Status }).expect("encode"))
        .await
        .expect("write");
    assert!(matches!(link.reply().await, ResponseFrame { id: 3, reply: Reply::Ok(Response::Status(_)) }));

    // Through all of it, the real gateway's connection kept working and nothing changed.
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
    assert_eq!(stack.row(1).expect("row"), row);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kms_relay_refuses_and_logs_every_target_but_the_configured_one() {
    let stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");
    let relay: keyward_transport::Address = stack.relay_address().parse().expect("relay address");
    // Somewhere a compromised enclave image (or anything else on the host that can reach the
    // relay) would like traffic to go.
    let decoy = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("decoy");
    let decoy_target = decoy.local_addr().expect("decoy address").to_string();
    for target in [decoy_target.as_str(), "kms.us-east-1.amazonaws.com:443", "169.254.169.254:80"] {
        let refused = keyward_transport::relay_connect(&relay, target).await;
        let err = refused.err().unwrap_or_else(|| panic!("the relay let {target} through"));
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{target}: {err}");
        assert!(err.to_string().contains("is allowed"), "{target}: {err}");
        let refusals = stack.gateway.as_ref().expect("gateway").events(keyward_e2e::event::RELAY_REFUSED);
        assert!(
            refusals.iter().any(|e| e["reason"] == "target" && e["requested"] == format!("{target:?}")),
            "{target}: refusal not logged: {refusals:?}"
        );
    }
    // The refusal comes before any connection attempt: the decoy was never dialled.
    assert!(tokio::time::timeout(Duration::ZERO, decoy.accept()).await.is_err(), "the relay dialled the decoy");
    assert_eq!(stack.row(1).expect("row"), row);
    // The configured target is still relayed: a rotation asks KMS for a new data key through it.
    let rotated = stack.admin_client().rotate(None).await.expect("rotation through the relay");
    assert_eq!((rotated.key_epoch, rotated.public_key_hex.as_str()), (2, hex::encode(&row.public_key).as_str()));
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_frame_is_cut_off_after_the_stall_limit() {
    let stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");
    let mut link = RawLink::connect(&stack, 1).await;
    link.handshake_as_gateway(&stack).await;
    // A header announcing 100 bytes, three of them, then silence.
    link.conn.write_all(&[0, 0, 0, 100, 1, 2, 3]).await.expect("write");
    let body = tokio::time::timeout(FRAME_STALL_LIMIT * 3, read_frame(&mut link.conn, MAX_FRAME_LEN))
        .await
        .expect("the enclave cuts a stalled frame off, it does not wait forever")
        .expect("a connection error frame");
    let frame: ResponseFrame = decode(&body).expect("a response frame");
    assert_eq!(frame.id, CONNECTION_ERROR_ID);
    assert_eq!(error_of(&frame).0, ErrorCode::BadRequest, "{frame:?}");
    assert!(error_of(&frame).1.contains("stalled"), "{frame:?}");
    link.assert_closed().await;
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
    assert_eq!(stack.row(1).expect("row"), row);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_cut_off_without_hurting_others() {
    let stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");
    let mut link = RawLink::connect(&stack, 1).await;
    link.handshake_as_gateway(&stack).await;
    let mut conn = link.conn;
    // Flood signature requests and never read a reply.
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        for id in 2u64.. {
            let frame = RequestFrame {
                id,
                request: Request::Sign(SignRequest { digest: Digest([9; 32]), scheme: Scheme::Ecdsa, auth: None }),
            };
            if conn.write_all(&encode(&frame).expect("encode")).await.is_err() {
                return id;
            }
            if started.elapsed() > Duration::from_secs(90) {
                return 0;
            }
        }
        0
    });
    // Meanwhile the gateway's own connection is served.
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
    let sent = tokio::time::timeout(Duration::from_secs(120), flood).await.expect("the flood ends").expect("task");
    assert!(sent > 0, "the enclave closed the stalled connection instead of buffering without bound");
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_never_comes_is_a_timeout_not_a_hang() {
    // A fake enclave that handshakes, claims a ready key, and then never answers.
    let mut stack = Stack::prepare(StackOptions { gateway_pins_pcrs: false, ..StackOptions::default() }).await;
    let public_key = CompressedPublicKey([2; 33]);
    std::fs::create_dir_all(stack.db_path().parent().expect("dir")).expect("mkdir");
    let mut store = keyward_store::Store::open(&stack.db_path()).expect("db");
    store
        .insert(&keyward_store::MasterKeyRow {
            enclave_id: 1,
            kms_encrypted_dek: vec![1; 100],
            encrypted_private_key: vec![2; 61],
            public_key: public_key.0.to_vec(),
            kms_key_id: stack.key_arn.clone(),
            key_epoch: 1,
        })
        .expect("row");
    drop(store);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", stack.enclave_ports[&1])).await.expect("bind");
    let info = EnclaveInfo {
        software_version: "fake".into(),
        nsm: NsmKind::Mock,
        kms_key_id: "alias/keyward-enclave-master-key".into(),
        kms_region: "us-east-1".into(),
        kms_endpoint: stack.kms_url.clone(),
        attestation: true,
        authorization: None,
    };
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let info = info.clone();
            tokio::spawn(async move {
                while let Ok(body) = read_frame(&mut conn, MAX_FRAME_LEN).await {
                    let Ok(frame) = decode::<RequestFrame>(&body) else { return };
                    let reply = match frame.request {
                        Request::Hello(_) => Response::Hello(HelloReply {
                            protocol_version: PROTOCOL_VERSION,
                            info: info.clone(),
                            challenge: [7; 32],
                        }),
                        // It takes any proof: it is the test's stand-in, not an enclave.
                        Request::Authenticate(_) => Response::Status(Status {
                            state: EnclaveState::Ready,
                            enclave_id: Some(EnclaveId(1)),
                            public_key: Some(public_key),
                            key_epoch: Some(1),
                        }),
                        // Everything else: silence.
                        _ => continue,
                    };
                    let reply = ResponseFrame { id: frame.id, reply: Reply::Ok(reply) };
                    if conn.write_all(&encode(&reply).expect("encode")).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    stack.start_gateway();
    stack.wait_ready().await;
    let err = stack.client.sign(&keyward_e2e::digest(1), "ecdsa", None).await.expect_err("no answer");
    assert!(
        matches!(&err, keyward_client::ClientError::Api { status: 504, code, .. } if code == "enclave_timeout"),
        "{err}"
    );
    let (status, _) = stack.client.health().await.expect("the gateway keeps serving");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kms_relay_caps_its_connections_and_closes_idle_ones() {
    use tokio::io::AsyncReadExt;
    let mut stack = Stack::prepare(StackOptions::default()).await;
    let config = std::fs::read_to_string(stack.config_path()).expect("config");
    let relay_line = format!("relay:\n  listen: {}\n", stack.relay_address());
    assert!(config.contains(&relay_line), "{config}");
    stack.write_config_text(
        &config.replace(&relay_line, &format!("{relay_line}  max_connections: 4\n  idle_timeout_seconds: 2\n")),
    );
    stack.start_enclave(1);
    stack.start_gateway();
    stack.wait_ready().await;
    let row = stack.row(1).expect("row");
    let relay: keyward_transport::Address = stack.relay_address().parse().expect("relay address");
    let target = stack.kms_url.trim_start_matches("http://").to_owned();
    // The relay logs a refusal just after closing the connection: wait for the line.
    let refusals = |reason: &str| {
        let gateway = stack.gateway.as_ref().expect("gateway");
        let wait = Duration::from_secs(10);
        gateway.wait_events(keyward_e2e::event::RELAY_REFUSED, 1, |e| e["reason"] == reason, wait).len()
    };

    // Accepted for the configured target, then silent: closed once idle for 2 s.
    let started = Instant::now();
    let mut idle = keyward_transport::relay_connect(&relay, &target).await.expect("the configured target");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), idle.read(&mut buf)).await.expect("closed, not held");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the idle timeout");
    assert_eq!(refusals("idle"), 1);

    // Four connections that say nothing hold every slot; the fifth is dropped at once, long
    // before the 5 s handshake deadline would have freed a slot.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(keyward_transport::connect(&relay).await.expect("connect"));
    }
    // The relay accepts in arrival order, so the four take their slots before the fifth asks.
    let mut fifth = keyward_transport::connect(&relay).await.expect("connect");
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(10), fifth.read(&mut buf)).await.expect("dropped");
    assert!(matches!(read, Ok(0) | Err(_)) && started.elapsed() < Duration::from_secs(2), "{read:?}");
    assert_eq!(refusals("capacity"), 1);

    // Slots come back: with the holders gone, the enclave's KMS traffic flows again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(30);
    let rotated = loop {
        match stack.admin_client().rotate(None).await {
            Ok(rotated) => break rotated,
            Err(e) => assert!(Instant::now() < deadline, "no rotation through the relay: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((rotated.key_epoch, rotated.public_key_hex), (2, hex::encode(&row.public_key)));
}

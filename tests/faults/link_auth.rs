//! Who may talk to the enclave: a process on the parent instance that is not the gateway
//! (it can open the enclave's port, but cannot read the link key) gets neither a signature nor
//! a rotation, cannot replay a proof it saw, and cannot disrupt the gateway's signing by
//! flooding the port with connections.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use keyward_e2e::{RawLink, Stack, StackOptions, assert_signs, digest, error_of, event};
use keyward_proto::{
    AwsCredentials, Commit, CompressedPublicKey, Digest, EnclaveId, ErrorCode, Provision, Reply, Request, Response,
    Rotate, Scheme, SealedKey, SignRequest,
};
use keyward_transport::LinkKey;

fn credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: "AKIAINSTANCEROLE".into(),
        secret_access_key: zeroize::Zeroizing::new("from-imds".into()),
        session_token: None,
        expires_at: None,
    }
}

/// Keeps the gateway signing, counting successes and remembering any failure, until stopped.
fn keep_signing(stack: &Stack) -> (Arc<AtomicBool>, Arc<AtomicUsize>, tokio::task::JoinHandle<Vec<String>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let signed = Arc::new(AtomicUsize::new(0));
    let client = stack.client.clone();
    let (stop_flag, count) = (stop.clone(), signed.clone());
    let task = tokio::spawn(async move {
        let mut failures = Vec::new();
        while !stop_flag.load(Ordering::Relaxed) {
            match client.sign(&digest(5), "ecdsa", None).await {
                Ok(_) => {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        failures
    });
    (stop, signed, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_link_key_gets_no_signature_no_rotation_and_cannot_disrupt_signing() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");
    let public_key = CompressedPublicKey(row.public_key.as_slice().try_into().expect("33 bytes"));
    let sealed = SealedKey {
        enclave_id: EnclaveId(1),
        kms_encrypted_dek: row.kms_encrypted_dek.clone(),
        encrypted_private_key: row.encrypted_private_key.clone(),
        public_key,
        kms_key_id: row.kms_key_id.clone(),
        key_epoch: 1,
    };
    let (stop, signed, signer) = keep_signing(&stack);

    // After Hello, before a proof: every request that uses or changes the key is refused, and
    // the connection closed.
    let sign = Request::Sign(SignRequest { digest: Digest([1; 32]), scheme: Scheme::Ecdsa, auth: None });
    let requests = [
        ("Sign", sign),
        (
            "SignBatch",
            Request::SignBatch(vec![SignRequest { digest: Digest([2; 32]), scheme: Scheme::Bip340, auth: None }]),
        ),
        ("Rotate", Request::Rotate(Rotate { sealed: sealed.clone(), credentials: credentials() })),
        ("Commit", Request::Commit(Commit { enclave_id: EnclaveId(1), public_key, key_epoch: 2 })),
        (
            "Provision",
            Request::Provision(Provision {
                enclave_id: EnclaveId(2),
                kms_key_id: "alias/keyward-enclave-master-key".into(),
                region: "us-east-1".into(),
                credentials: credentials(),
            }),
        ),
        ("PublicKey", Request::PublicKey),
    ];
    for (what, request) in requests {
        let mut link = RawLink::connect(&stack, 1).await;
        link.hello().await;
        let frame = link.call(request).await;
        assert_eq!(error_of(&frame).0, ErrorCode::Unauthenticated, "{what}");
        link.assert_closed().await;
    }

    // A key of its own is not the gateway's.
    let dir = tempfile::tempdir().expect("dir");
    let impostor = LinkKey::create(&dir.path().join("impostor.key")).expect("key");
    let mut link = RawLink::connect(&stack, 1).await;
    let hello = link.hello().await;
    let frame = link.authenticate(&impostor, &hello.challenge).await;
    assert_eq!(error_of(&frame).0, ErrorCode::Unauthenticated);
    link.assert_closed().await;

    // A proof recorded from another connection (the gateway's key, the other challenge) does
    // not open this one: every connection has its own challenge.
    let gateway_key = LinkKey::load(&stack.path().join("link.key"), false).expect("link key");
    let mut seen = RawLink::connect(&stack, 1).await;
    let seen_challenge = seen.hello().await.challenge;
    drop(seen);
    let mut link = RawLink::connect(&stack, 1).await;
    let challenge = link.hello().await.challenge;
    assert_ne!(challenge, seen_challenge, "a fresh challenge per connection");
    let frame = link.authenticate(&gateway_key, &seen_challenge).await;
    assert_eq!(error_of(&frame).0, ErrorCode::Unauthenticated);
    link.assert_closed().await;

    // A flood of connections that never authenticate: the gateway's connection is untouched,
    // the waiting ones are evicted (oldest first) and closed.
    let mut flood = Vec::new();
    for _ in 0..64 {
        let mut link = RawLink::connect(&stack, 1).await;
        link.hello().await;
        flood.push(link);
    }
    let evicted = flood.remove(0).reply().await;
    assert_eq!(error_of(&evicted).0, ErrorCode::TooManyConnections, "the oldest waiter is evicted");
    stop.store(true, Ordering::Relaxed);
    let failures = signer.await.expect("signer");
    assert!(signed.load(Ordering::Relaxed) > 0, "the gateway signed throughout");
    assert!(failures.is_empty(), "no signature failed during the attack: {failures:?}");

    // A restarted gateway gets in while the port is flooded: its connection evicts a waiter.
    stack.kill_gateway();
    let mut late_flood = Vec::new();
    for _ in 0..16 {
        let mut link = RawLink::connect(&stack, 1).await;
        link.hello().await;
        late_flood.push(link);
    }
    stack.start_gateway();
    stack.wait_ready().await;
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;

    drop(late_flood);

    // Unauthenticated connections do not linger: one that says Hello and then nothing is
    // closed by the enclave's authentication deadline.
    let mut lingering = RawLink::connect(&stack, 1).await;
    lingering.hello().await;
    let started = std::time::Instant::now();
    let frame = tokio::time::timeout(Duration::from_secs(15), lingering.reply()).await.expect("closed by the deadline");
    assert_eq!(error_of(&frame).0, ErrorCode::Unauthenticated, "{frame:?}");
    assert!(started.elapsed() >= Duration::from_secs(3), "closed by the 5 s deadline, not at once");

    let enclave = stack.enclaves.get(&1).expect("enclave");
    assert!(enclave.events(event::LINK_REFUSED).len() >= 8, "every refusal is logged");
    assert!(enclave.events(event::LINK_AUTHENTICATED).len() >= 2, "the gateway authenticated, twice");
    // The same log shows the first start's commit, so the absence below is not a silent log.
    assert_eq!(enclave.events(event::KEY_COMMITTED).len(), 1);
    assert!(enclave.events(event::KEY_RESEALED).is_empty(), "no rotation happened");
    assert_eq!(stack.row(1).expect("row"), row, "the row is unchanged");
    assert_eq!(stack.row_count(), 1, "no key was provisioned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restarting_during_an_active_connection_flood_still_gets_in() {
    // A process that connects, says Hello and connects again, as fast as it can, while the
    // gateway restarts: random eviction gives the gateway's connection a fair chance on every
    // attempt, and the gateway retries at once when evicted.
    let mut stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");
    let port = stack.enclave_ports[&1];
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicUsize::new(0));
    let mut flooders = Vec::new();
    for _ in 0..2 {
        let (stop, attempts) = (stop.clone(), attempts.clone());
        flooders.push(tokio::spawn(async move {
            let mut held = std::collections::VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    held.push_back(conn);
                    if held.len() > 32 {
                        held.pop_front();
                    }
                }
            }
        }));
    }
    stack.kill_gateway();
    stack.start_gateway();
    stack.wait_ready().await;
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.await.expect("flooder");
    }
    assert!(
        attempts.load(Ordering::Relaxed) > 100,
        "the flood was real: {} connections",
        attempts.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_connections_are_capped() {
    let stack = Stack::start(StackOptions::default()).await;
    let row = stack.row(1).expect("row");
    // The gateway holds one; the key holder may open up to the cap.
    let mut held = Vec::new();
    let refused = loop {
        let mut link = RawLink::connect(&stack, 1).await;
        let key = LinkKey::load(&stack.path().join("link.key"), false).expect("link key");
        let hello = link.hello().await;
        let frame = link.authenticate(&key, &hello.challenge).await;
        match frame.reply {
            Reply::Ok(Response::Status(_)) => held.push(link),
            Reply::Err(_) => break frame,
            Reply::Ok(other) => panic!("unexpected {}", other.kind()),
        }
        assert!(held.len() < 64, "no cap on authenticated connections");
    };
    assert_eq!(error_of(&refused).0, ErrorCode::TooManyConnections);
    assert_eq!(held.len(), 7, "eight in all, one of them the gateway's");
    assert_signs(&stack, None, &hex::encode(&row.public_key)).await;
    drop(held);
}

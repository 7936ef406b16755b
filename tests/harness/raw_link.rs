//! A raw client of the enclave's link, for tests that play a peer other than the gateway:
//! frames written and read by hand, the handshake done (or not) step by step.

use std::time::Duration;

use keyward_proto::{
    Authenticate, ErrorCode, Hello, HelloReply, MAX_FRAME_LEN, PROTOCOL_VERSION, Reply, Request, RequestFrame,
    Response, ResponseFrame, decode, encode, link_auth_message, read_frame,
};
use keyward_transport::LinkKey;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::Stack;

/// One TCP connection to an enclave's link.
#[derive(Debug)]
pub struct RawLink {
    pub conn: TcpStream,
    next_id: u64,
}

impl RawLink {
    /// Connects to enclave `id` of `stack` (a TCP stack).
    pub async fn connect(stack: &Stack, id: u32) -> RawLink {
        let conn = TcpStream::connect(("127.0.0.1", stack.enclave_ports[&id])).await.expect("connect to the enclave");
        RawLink { conn, next_id: 1 }
    }

    /// Sends `request` with the next id; returns the id.
    pub async fn send(&mut self, request: Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.conn.write_all(&encode(&RequestFrame { id, request }).expect("encode")).await.expect("write a frame");
        id
    }

    /// The next reply frame (within 10 s).
    pub async fn reply(&mut self) -> ResponseFrame {
        let body = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut self.conn, MAX_FRAME_LEN))
            .await
            .expect("a reply, not a hang")
            .expect("a frame");
        decode(&body).expect("a response frame")
    }

    /// Sends `request` and returns its reply.
    pub async fn call(&mut self, request: Request) -> ResponseFrame {
        let id = self.send(request).await;
        let frame = self.reply().await;
        assert_eq!(frame.id, id, "the reply answers the request");
        frame
    }

    /// `Hello` with this build's protocol version; returns the enclave's answer.
    pub async fn hello(&mut self) -> HelloReply {
        match self.call(Request::Hello(Hello { protocol_version: PROTOCOL_VERSION })).await.reply {
            Reply::Ok(Response::Hello(hello)) => hello,
            other => panic!("expected a Hello reply, got {other:?}"),
        }
    }

    /// `Authenticate` signing `challenge` with `key`; returns the reply.
    pub async fn authenticate(&mut self, key: &LinkKey, challenge: &[u8; 32]) -> ResponseFrame {
        let proof = Authenticate { public_key: key.public_key().0, signature: key.sign(&link_auth_message(challenge)) };
        self.call(Request::Authenticate(proof)).await
    }

    /// Hello and a correct proof with the stack's own link key: what the gateway does.
    pub async fn handshake_as_gateway(&mut self, stack: &Stack) {
        let key = LinkKey::load(&stack.path().join("link.key"), false).expect("the stack's link key");
        let hello = self.hello().await;
        let frame = self.authenticate(&key, &hello.challenge).await;
        assert!(matches!(frame.reply, Reply::Ok(Response::Status(_))), "authenticated: {frame:?}");
    }

    /// Waits until the enclave closes the connection.
    pub async fn assert_closed(&mut self) {
        let mut buf = [0u8; 64];
        let read =
            tokio::time::timeout(Duration::from_secs(10), self.conn.read(&mut buf)).await.expect("closed, not hanging");
        assert!(matches!(read, Ok(0) | Err(_)), "the enclave closes the connection");
    }
}

/// The error code and message of a reply that must be an error.
pub fn error_of(frame: &ResponseFrame) -> (ErrorCode, String) {
    match &frame.reply {
        Reply::Err(e) => (e.code, e.message.clone()),
        Reply::Ok(r) => panic!("expected an error, got {}", r.kind()),
    }
}

//! Property tests for the untrusted-text edges of the transport: address strings (from
//! configuration and command lines) and the KMS relay handshake the relay reads from an
//! enclave connection.
#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use keyward_transport::{Address, TransportError, VSOCK_CID_ANY, relay_read_target};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const MAGIC: &str = "KEYWARD-RELAY/1 ";
const MAX_LINE: usize = 300;

/// Polls a future over an in-memory peer once: it never waits, so `Pending` is a hang.
fn complete_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("reading from memory returned Pending"),
    }
}

/// An enclave connection as the relay sees it: bytes to read, and what the relay wrote.
struct Peer<'a> {
    input: &'a [u8],
    written: Vec<u8>,
}

impl AsyncRead for Peer<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = self.input.len().min(buf.remaining());
        buf.put_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Peer<'_> {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Strings close to the address grammar, so most of them reach the per-scheme parsing.
fn address_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![Just("vsock://"), Just("tcp://"), Just("unix://"), Just(""), Just("http://")];
    let body = proptest::collection::vec(
        prop_oneof![
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just(":".to_owned()),
            Just("/".to_owned()),
            Just("any".to_owned()),
            Just("ANY".to_owned()),
            Just("+".to_owned()),
            Just("-".to_owned()),
            Just(" ".to_owned()),
            "[0-9]{1,6}",
            "[a-z.]{1,5}",
            any::<char>().prop_map(String::from),
        ],
        0..10,
    )
    .prop_map(|parts| parts.concat());
    (scheme, body).prop_map(|(scheme, body)| format!("{scheme}{body}"))
}

fn dns_name() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){0,3}"
}

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(cid, port)| Address::Vsock { cid, port }),
        any::<u32>().prop_map(|port| Address::Vsock { cid: VSOCK_CID_ANY, port }),
        (dns_name(), any::<u16>()).prop_map(|(host, port)| Address::Tcp { host, port }),
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| Address::Tcp { host: Ipv4Addr::from(ip).to_string(), port }),
        (any::<[u16; 8]>(), any::<u16>())
            .prop_map(|(ip, port)| Address::Tcp { host: Ipv6Addr::from(ip).to_string(), port }),
        "/[a-zA-Z0-9._-]{1,12}(/[a-zA-Z0-9._ -]{1,12}){0,4}".prop_map(|path| Address::Unix(path.into())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_address_prints_as_a_string_that_parses_back_to_it(address in address()) {
        let shown = address.to_string();
        prop_assert_eq!(shown.parse::<Address>().unwrap(), address, "{}", shown);
    }

    #[test]
    fn whatever_parses_prints_back_to_the_same_address(input in address_like()) {
        if let Ok(address) = input.parse::<Address>() {
            let shown = address.to_string();
            match shown.parse::<Address>() {
                Ok(again) => prop_assert_eq!(again, address, "{:?} printed as {:?}", input, shown),
                Err(e) => prop_assert!(false, "{:?} parsed, but its printed form {:?} does not: {}", input, shown, e),
            }
        }
    }

    #[test]
    fn address_parsing_never_panics_and_names_the_input(input in any::<String>()) {
        match input.parse::<Address>() {
            Ok(_) => {}
            Err(TransportError::InvalidAddress { input: named, reason }) => {
                prop_assert_eq!(named, input);
                prop_assert!(!reason.is_empty());
            }
            Err(other) => prop_assert!(false, "parsing returned a non-parse error: {}", other),
        }
    }

    #[test]
    fn relay_handshake_reader_never_panics_or_overreads(input in proptest::collection::vec(any::<u8>(), 0..700)) {
        let mut peer = Peer { input: &input, written: Vec::new() };
        let result = complete_now(relay_read_target(&mut peer));
        // The reader answers nothing itself (the caller accepts or denies), and never
        // consumes past the handshake's newline: what follows belongs to the target.
        prop_assert!(peer.written.is_empty());
        let newline = input.iter().position(|&b| b == b'\n');
        match result {
            Ok(target) => {
                let end = newline.unwrap();
                prop_assert!(end <= MAX_LINE);
                let line = format!("{MAGIC}{target}");
                prop_assert_eq!(line.as_bytes(), &input[..end]);
                prop_assert_eq!(peer.input, &input[end + 1..]);
            }
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                // Never more than one line plus one byte is read before giving up.
                prop_assert!(input.len() - peer.input.len() <= MAX_LINE + 1);
            }
        }
    }

    #[test]
    fn well_formed_handshakes_yield_their_target_and_leave_the_rest(
        target in "[ -~]{0,284}",
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut input = format!("{MAGIC}{target}\n").into_bytes();
        input.extend_from_slice(&tail);
        let mut peer = Peer { input: &input, written: Vec::new() };
        prop_assert_eq!(complete_now(relay_read_target(&mut peer)).unwrap(), target);
        prop_assert_eq!(peer.input, tail.as_slice());
    }
}

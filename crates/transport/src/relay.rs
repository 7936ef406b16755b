//! The KMS relay handshake. The enclave cannot reach the network; it opens a connection to
//! the gateway's relay and names the one target it wants (`host:port`). The relay checks the
//! name against the single target it is configured for, answers, and from then on copies
//! bytes without looking at them (in production they are TLS that ends inside the enclave).
//!
//! ```text
//! enclave → relay:  "KEYWARD-RELAY/1 kms.us-east-1.amazonaws.com:443\n"
//! relay → enclave:  "OK\n"            then raw bytes both ways
//!               or  "DENIED <reason>\n" and close
//! ```

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::{Address, BoxConnection, connect};

const MAGIC: &str = "KEYWARD-RELAY/1 ";
/// Longest handshake line accepted (a DNS name is at most 253 bytes).
const MAX_LINE: usize = 300;

/// Dials the relay at `relay` and asks for `target` (`host:port`). Returns the connection,
/// ready for the target's protocol, once the relay accepted.
pub async fn relay_connect(relay: &Address, target: &str) -> io::Result<BoxConnection> {
    let conn = connect(relay).await.map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e))?;
    let mut conn = BufReader::new(conn);
    conn.get_mut().write_all(format!("{MAGIC}{target}\n").as_bytes()).await?;
    conn.get_mut().flush().await?;
    let answer = read_line(&mut conn).await?;
    if answer != "OK" {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("KMS relay at {relay} refused {target}: {answer}"),
        ));
    }
    // The relay sends nothing after "OK\n" until the target speaks, so the buffer is empty.
    Ok(Box::new(conn.into_inner()))
}

/// Relay side: reads the handshake and returns the requested target. The caller decides
/// and answers with [`relay_accept`] or [`relay_deny`].
pub async fn relay_read_target<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut S) -> io::Result<String> {
    // Read byte by byte so that no byte after the newline is consumed from the stream.
    let mut line = Vec::with_capacity(64);
    loop {
        let mut byte = [0u8; 1];
        if tokio::io::AsyncReadExt::read(conn, &mut byte).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "relay handshake cut short"));
        }
        if byte[0] == b'\n' {
            break;
        }
        if line.len() >= MAX_LINE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "relay handshake line too long"));
        }
        line.push(byte[0]);
    }
    let line = String::from_utf8(line)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "relay handshake is not UTF-8"))?;
    line.strip_prefix(MAGIC)
        .map(str::to_owned)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a keyward relay handshake"))
}

/// Relay side: accept; raw bytes follow.
pub async fn relay_accept<S: AsyncWrite + Unpin>(conn: &mut S) -> io::Result<()> {
    conn.write_all(b"OK\n").await?;
    conn.flush().await
}

/// Relay side: refuse with a reason and let the caller close.
pub async fn relay_deny<S: AsyncWrite + Unpin>(conn: &mut S, reason: &str) -> io::Result<()> {
    let reason: String = reason.chars().filter(|c| *c != '\n').take(200).collect();
    conn.write_all(format!("DENIED {reason}\n").as_bytes()).await?;
    conn.flush().await
}

/// How long a relayed connection may last, and how long it may stand still.
#[derive(Debug, Clone, Copy)]
pub struct CopyLimits {
    /// Nothing read in either direction, or a write not accepted, for this long ends it.
    pub idle: std::time::Duration,
    /// The whole connection ends after this, busy or not (a KMS call takes seconds).
    pub lifetime: std::time::Duration,
}

/// Copies bytes both ways between `a` and `b` until both sides have finished. Gives up with
/// [`io::ErrorKind::TimedOut`] when nothing is read in either direction for `limits.idle`, when
/// a write is not taken for as long (a peer that stops reading), or when the connection has
/// lasted `limits.lifetime` (a peer that trickles a byte now and then). So no peer keeps a
/// connection, and the slot it holds, for long. Returns the bytes copied from `a` to `b` and
/// from `b` to `a`.
pub async fn relay_copy<A, B>(a: A, b: B, limits: CopyLimits) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(limits.lifetime, copy_both_ways(a, b, limits.idle))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connection lasted {:?}", limits.lifetime)))?
}

async fn copy_both_ways<A, B>(a: A, b: B, idle: std::time::Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let (mut a_buf, mut b_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut a_open, mut b_open) = (true, true);
    let (mut up, mut down) = (0u64, 0u64);
    enum From {
        A(io::Result<usize>),
        B(io::Result<usize>),
    }
    while a_open || b_open {
        // Reads are cancel-safe: the branch that loses the race has read nothing.
        let next = tokio::time::timeout(idle, async {
            tokio::select! {
                n = a_read.read(&mut a_buf), if a_open => From::A(n),
                n = b_read.read(&mut b_buf), if b_open => From::B(n),
            }
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no traffic for {idle:?}")))?;
        let stuck = || io::Error::new(io::ErrorKind::TimedOut, format!("a write not taken for {idle:?}"));
        match next {
            From::A(n) => match n? {
                0 => {
                    a_open = false;
                    tokio::time::timeout(idle, b_write.shutdown()).await.map_err(|_| stuck())??;
                }
                n => {
                    tokio::time::timeout(idle, b_write.write_all(&a_buf[..n])).await.map_err(|_| stuck())??;
                    up += n as u64;
                }
            },
            From::B(n) => match n? {
                0 => {
                    b_open = false;
                    tokio::time::timeout(idle, a_write.shutdown()).await.map_err(|_| stuck())??;
                }
                n => {
                    tokio::time::timeout(idle, a_write.write_all(&b_buf[..n])).await.map_err(|_| stuck())??;
                    down += n as u64;
                }
            },
        }
    }
    Ok((up, down))
}

async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> io::Result<String> {
    let mut line = Vec::new();
    let mut limited = tokio::io::AsyncReadExt::take(&mut *reader, MAX_LINE as u64);
    limited.read_until(b'\n', &mut line).await?;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "KMS relay closed during the handshake"));
    }
    line.pop();
    String::from_utf8(line).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "relay answer is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::Listener;

    async fn relay_once(listener: Listener, allowed: &'static str) {
        let (mut conn, _) = listener.accept().await.unwrap();
        let target = relay_read_target(&mut conn).await.unwrap();
        if target == allowed {
            relay_accept(&mut conn).await.unwrap();
            let mut buf = [0u8; 4];
            conn.read_exact(&mut buf).await.unwrap();
            conn.write_all(&buf).await.unwrap();
        } else {
            relay_deny(&mut conn, &format!("only {allowed} is allowed")).await.unwrap();
        }
    }

    #[tokio::test]
    async fn relay_copy_carries_both_ways_and_ends_when_both_sides_do() {
        let (mut client, near) = tokio::io::duplex(64);
        let (far, mut server) = tokio::io::duplex(64);
        let limits =
            CopyLimits { idle: std::time::Duration::from_secs(5), lifetime: std::time::Duration::from_secs(60) };
        let copy = tokio::spawn(relay_copy(near, far, limits));
        client.write_all(b"request").await.unwrap();
        let mut got = [0u8; 7];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"request");
        server.write_all(b"answer!!").await.unwrap();
        let mut back = [0u8; 8];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"answer!!");
        drop(client);
        drop(server);
        assert_eq!(copy.await.unwrap().unwrap(), (7, 8));
    }

    fn limits(idle: u64, lifetime: u64) -> CopyLimits {
        CopyLimits { idle: std::time::Duration::from_secs(idle), lifetime: std::time::Duration::from_secs(lifetime) }
    }

    #[tokio::test(start_paused = true)]
    async fn relay_copy_gives_up_on_an_idle_connection() {
        let (_client, near) = tokio::io::duplex(64);
        let (far, _server) = tokio::io::duplex(64);
        let err = relay_copy(near, far, limits(30, 600)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("no traffic"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn relay_copy_gives_up_on_a_peer_that_stops_reading() {
        // The far side never reads: its 64-byte buffer fills and the write stalls.
        let (mut client, near) = tokio::io::duplex(64 * 1024);
        let (far, _server) = tokio::io::duplex(64);
        let copy = tokio::spawn(relay_copy(near, far, limits(30, 600)));
        client.write_all(&[7u8; 32 * 1024]).await.unwrap();
        let err = copy.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("a write not taken"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn relay_copy_ends_a_connection_that_trickles_past_its_lifetime() {
        let (mut client, near) = tokio::io::duplex(64);
        let (far, mut server) = tokio::io::duplex(64);
        let copy = tokio::spawn(relay_copy(near, far, limits(30, 120)));
        // One byte every 20 s: never idle for 30 s, but never done either.
        let trickle = tokio::spawn(async move {
            let mut got = [0u8; 1];
            loop {
                if client.write_all(b"x").await.is_err() || server.read_exact(&mut got).await.is_err() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_secs(20)).await;
            }
        });
        let err = copy.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("connection lasted"), "{err}");
        trickle.abort();
    }

    #[tokio::test]
    async fn allowed_target_gets_a_clean_byte_stream() {
        let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap()).await.unwrap();
        let address = listener.local_address().clone();
        let server = tokio::spawn(relay_once(listener, "kms.us-east-1.amazonaws.com:443"));
        let mut conn = relay_connect(&address, "kms.us-east-1.amazonaws.com:443").await.unwrap();
        conn.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        conn.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ping");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn other_target_is_refused_with_the_reason() {
        let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap()).await.unwrap();
        let address = listener.local_address().clone();
        let server = tokio::spawn(relay_once(listener, "kms.us-east-1.amazonaws.com:443"));
        let err = match relay_connect(&address, "evil.example.com:443").await {
            Ok(_) => panic!("relay must refuse"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("only kms.us-east-1.amazonaws.com:443 is allowed"), "{err}");
        server.await.unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The relay's answer is untrusted input to the enclave: whatever the host sends, the
        /// enclave gets one short line or an error, never a panic or an unbounded read.
        #[test]
        fn relay_answers_of_any_shape_give_a_short_line_or_an_error(
            answer in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let result = runtime.block_on(read_line(&mut BufReader::new(answer.as_slice())));
            if let Ok(line) = result {
                proptest::prop_assert!(line.len() < MAX_LINE);
                let expected = format!("{line}\n");
                proptest::prop_assert_eq!(&answer[..=line.len()], expected.as_bytes());
            }
        }
    }

    #[tokio::test]
    async fn handshake_garbage_and_overlong_lines_are_rejected() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        b.write_all(b"GET / HTTP/1.1\n").await.unwrap();
        assert!(relay_read_target(&mut a).await.unwrap_err().to_string().contains("not a keyward relay"));
        let (mut a, mut b) = tokio::io::duplex(4096);
        b.write_all(&[b'x'; 400]).await.unwrap();
        assert!(relay_read_target(&mut a).await.unwrap_err().to_string().contains("too long"));
    }
}

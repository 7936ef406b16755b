//! Listening and connecting over vsock, TCP and Unix sockets.

use std::{io, os::unix::fs::PermissionsExt, path::PathBuf};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_vsock::{VsockAddr, VsockListener, VsockStream};

use crate::{Address, BoxConnection, TransportError};

/// Connects to `address`.
pub async fn connect(address: &Address) -> Result<BoxConnection, TransportError> {
    let failed = |source| TransportError::Connect { address: address.to_string(), source };
    match address {
        Address::Vsock { cid, port } => {
            let stream = VsockStream::connect(VsockAddr::new(*cid, *port)).await.map_err(failed)?;
            Ok(Box::new(stream))
        }
        Address::Tcp { host, port } => {
            let stream = TcpStream::connect((host.as_str(), *port)).await.map_err(failed)?;
            stream.set_nodelay(true).map_err(failed)?;
            Ok(Box::new(stream))
        }
        Address::Unix(path) => Ok(Box::new(UnixStream::connect(path).await.map_err(failed)?)),
    }
}

/// A bound listener on any transport.
#[derive(Debug)]
pub struct Listener {
    kind: Kind,
    address: Address,
}

#[derive(Debug)]
enum Kind {
    Vsock(VsockListener),
    Tcp(TcpListener),
    Unix(UnixListener, #[expect(dead_code, reason = "held for its Drop")] UnixSocketFile),
}

impl Listener {
    /// Binds `address`. A TCP port of 0 picks a free port (see [`Listener::local_address`]).
    /// A Unix socket is created with mode 0600; a stale socket file left by a dead process
    /// is replaced, but a live one is not.
    pub async fn bind(address: &Address) -> Result<Self, TransportError> {
        Self::bind_with_mode(address, 0o600).await
    }

    /// [`Listener::bind`], with a Unix socket of file mode `unix_mode` (0660 lets a group
    /// connect, for a service that checks each peer's user id in [`Peer::Unix`]).
    pub async fn bind_with_mode(address: &Address, unix_mode: u32) -> Result<Self, TransportError> {
        let failed = |source| TransportError::Bind { address: address.to_string(), source };
        let (kind, bound) = match address {
            Address::Vsock { cid, port } => {
                let listener = VsockListener::bind(VsockAddr::new(*cid, *port)).map_err(failed)?;
                (Kind::Vsock(listener), address.clone())
            }
            Address::Tcp { host, port } => {
                let listener = TcpListener::bind((host.as_str(), *port)).await.map_err(failed)?;
                let local = listener.local_addr().map_err(failed)?;
                let bound = Address::Tcp { host: host.clone(), port: local.port() };
                (Kind::Tcp(listener), bound)
            }
            Address::Unix(path) => {
                remove_stale_socket(path).await.map_err(failed)?;
                let listener = bind_private_unix(path, unix_mode).map_err(failed)?;
                (Kind::Unix(listener, UnixSocketFile(path.clone())), address.clone())
            }
        };
        Ok(Listener { kind, address: bound })
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_address(&self) -> &Address {
        &self.address
    }

    /// Waits for the next connection; returns it with who connected.
    pub async fn accept(&self) -> Result<(BoxConnection, Peer), TransportError> {
        let failed = |source| TransportError::Accept { address: self.address.to_string(), source };
        match &self.kind {
            Kind::Vsock(l) => {
                let (stream, peer) = l.accept().await.map_err(failed)?;
                Ok((Box::new(stream), Peer::Vsock { cid: peer.cid(), port: peer.port() }))
            }
            Kind::Tcp(l) => {
                let (stream, peer) = l.accept().await.map_err(failed)?;
                stream.set_nodelay(true).map_err(failed)?;
                Ok((Box::new(stream), Peer::Tcp(peer)))
            }
            Kind::Unix(l, _) => {
                let (stream, _) = l.accept().await.map_err(failed)?;
                // SO_PEERCRED: the kernel's record of who connected, which the peer cannot forge.
                let uid = stream.peer_cred().map_err(failed)?.uid();
                Ok((Box::new(stream), Peer::Unix { socket: self.address.to_string(), uid }))
            }
        }
    }
}

/// Who connected to a [`Listener`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A vsock peer: the enclave's CID (or the parent's, 3) and its source port.
    Vsock {
        /// Context id of the peer.
        cid: u32,
        /// Its source port.
        port: u32,
    },
    /// A TCP peer.
    Tcp(std::net::SocketAddr),
    /// A Unix-socket peer: the socket's own address (Unix peers have none) and the peer
    /// process's user id as the kernel records it (`SO_PEERCRED`).
    Unix {
        /// The listening socket.
        socket: String,
        /// The connecting process's user id.
        uid: u32,
    },
}

impl Peer {
    /// The vsock context id, for a vsock peer.
    pub fn vsock_cid(&self) -> Option<u32> {
        match self {
            Peer::Vsock { cid, .. } => Some(*cid),
            _ => None,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            Peer::Tcp(addr) => write!(f, "tcp://{addr}"),
            Peer::Unix { socket, uid } => write!(f, "{socket} (uid {uid})"),
        }
    }
}

/// Binds a Unix socket at `path` that no other user can ever connect to. Binding creates the
/// socket file with the process's umask, so a chmod after `bind` would leave a moment in which
/// anyone could connect. Instead the socket is bound inside a new directory only this user can
/// enter, given `mode` there, and then renamed into place (atomically, on one filesystem).
fn bind_private_unix(path: &std::path::Path, mode: u32) -> io::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let name =
        path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "socket path has no file name"))?;
    let mut nonce = [0u8; 8];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| io::Error::other("no randomness for a private directory name"))?;
    let private = parent.join(format!(".{}.{}", name.to_string_lossy(), hex::encode(nonce)));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let staged = private.join("socket");
    let bound = UnixListener::bind(&staged).and_then(|listener| {
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    });
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    bound
}

/// Removes the socket file when the listener is dropped.
#[derive(Debug)]
struct UnixSocketFile(PathBuf);

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn remove_stale_socket(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "a file that is not a socket is in the way"));
    }
    match UnixStream::connect(path).await {
        Ok(_) => Err(io::Error::new(io::ErrorKind::AddrInUse, "another process is listening")),
        Err(_) => std::fs::remove_file(path),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn echo_once(listener: Listener) {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).await.unwrap();
        conn.write_all(&buf).await.unwrap();
    }

    async fn round_trip(bind: Address) {
        let listener = Listener::bind(&bind).await.unwrap();
        let target = listener.local_address().clone();
        let server = tokio::spawn(echo_once(listener));
        let mut conn = connect(&target).await.unwrap();
        conn.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        conn.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn tcp_carries_bytes_both_ways() {
        round_trip("tcp://127.0.0.1:0".parse().unwrap()).await;
    }

    #[tokio::test]
    async fn unix_carries_bytes_both_ways_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.sock");
        let listener = Listener::bind(&Address::Unix(path.clone())).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(listener);
        assert!(!path.exists(), "socket file is removed with the listener");
        round_trip(Address::Unix(path)).await;
    }

    #[tokio::test]
    async fn a_unix_peer_carries_its_user_id_and_a_shared_socket_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = Listener::bind_with_mode(&Address::Unix(path.clone()), 0o660).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o660);
        let _client = connect(&Address::Unix(path.clone())).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        // The socket file belongs to this process's user, which is also the peer.
        let own_uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&path).unwrap());
        assert_eq!(peer, Peer::Unix { socket: format!("unix://{}", path.display()), uid: own_uid });
    }

    #[tokio::test]
    async fn a_unix_socket_appears_at_its_path_only_by_rename_never_by_bind() {
        // bind() creates the socket file with the umask's mode; were it created at its final
        // path, anyone could connect until a chmod. The listener binds in a private directory
        // and renames the socket in: the directory sees a move, never a create.
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.sock");
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
        inotify.add_watch(dir.path(), AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO).unwrap();
        let _listener = Listener::bind(&Address::Unix(path.clone())).await.unwrap();
        let events: Vec<_> = inotify
            .read_events()
            .unwrap()
            .into_iter()
            .filter(|e| e.name.as_deref() == Some(std::ffi::OsStr::new("e.sock")))
            .map(|e| e.mask)
            .collect();
        assert_eq!(events, vec![AddWatchFlags::IN_MOVED_TO], "the socket must arrive by rename");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("e.sock")], "the private directory is removed");
    }

    #[tokio::test]
    async fn unix_refuses_to_steal_a_live_socket_but_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.sock");
        let live = Listener::bind(&Address::Unix(path.clone())).await.unwrap();
        let err = Listener::bind(&Address::Unix(path.clone())).await.unwrap_err();
        assert!(err.to_string().contains("another process is listening"), "{err}");
        drop(live);
        // A stale socket file: bound by a std listener that is then dropped without cleanup.
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        Listener::bind(&Address::Unix(path)).await.unwrap();
    }

    #[tokio::test]
    async fn unix_refuses_a_regular_file_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.sock");
        std::fs::write(&path, b"precious").unwrap();
        let err = Listener::bind(&Address::Unix(path.clone())).await.unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[tokio::test]
    async fn vsock_connect_failure_is_an_error_naming_the_address() {
        // No hypervisor transport on a development machine (and no listener on this port
        // inside a real enclave's parent): the connect must fail cleanly, not panic.
        let address: Address = "vsock://3:65001".parse().unwrap();
        let err = match connect(&address).await {
            Ok(_) => panic!("nothing listens on vsock://3:65001"),
            Err(e) => e,
        };
        assert!(matches!(err, TransportError::Connect { .. }), "{err}");
        assert!(err.to_string().starts_with("cannot connect to vsock://3:65001: "), "{err}");
    }

    #[tokio::test]
    async fn tcp_connect_failure_names_the_address() {
        let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap()).await.unwrap();
        let address = listener.local_address().clone();
        drop(listener);
        let err = match connect(&address).await {
            Ok(_) => panic!("listener was dropped"),
            Err(e) => e,
        };
        assert!(err.to_string().starts_with(&format!("cannot connect to {address}: ")), "{err}");
    }
}

#[cfg(test)]
mod vsock_tests {
    use super::*;

    /// Whether this machine can bind AF_VSOCK at all (a Nitro parent or enclave can; a
    /// development box with the module but no transport may not).
    #[tokio::test]
    async fn vsock_listener_binds_on_any_cid_or_fails_naming_the_address() {
        let address: Address = "vsock://any:65002".parse().unwrap();
        match Listener::bind(&address).await {
            Ok(listener) => assert_eq!(listener.local_address(), &address),
            Err(e) => {
                assert!(matches!(e, TransportError::Bind { .. }), "{e}");
                assert!(e.to_string().starts_with("cannot listen on vsock://any:65002: "), "{e}");
            }
        }
    }
}

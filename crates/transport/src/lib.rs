#![doc = include_str!("../README.md")]

mod address;
mod link_key;
mod listener;
mod relay;

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

pub use address::{Address, VSOCK_CID_ANY, VSOCK_CID_PARENT};
pub use link_key::{LinkKey, LinkKeyError, LinkPublicKey, SecretFileError, read_secret_file};
pub use listener::{Listener, Peer, connect};
pub use relay::{CopyLimits, relay_accept, relay_connect, relay_copy, relay_deny, relay_read_target};

/// A connected byte stream over vsock, TCP or a Unix socket.
pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Connection for T {}

/// A connection whose concrete transport has been erased.
pub type BoxConnection = Box<dyn Connection>;

/// What can go wrong with an address, a listener or a connection attempt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The address string does not parse.
    #[error("invalid address {input:?}: {reason} (expected vsock://CID:PORT, tcp://HOST:PORT or unix:///PATH)")]
    InvalidAddress {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Connecting failed.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address dialled.
        address: String,
        /// The OS error.
        source: io::Error,
    },
    /// Binding a listener failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address to listen on.
        address: String,
        /// The OS error.
        source: io::Error,
    },
    /// Accepting a connection failed.
    #[error("accept failed on {address}: {source}")]
    Accept {
        /// The listening address.
        address: String,
        /// The OS error.
        source: io::Error,
    },
}

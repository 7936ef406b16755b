#![doc = include_str!("../README.md")]

pub mod flood;
pub mod load;
pub mod procfs;
pub mod raw;
pub mod report;
pub mod stats;
pub mod timeline;

/// What can go wrong while driving load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The gateway's API address could not be reached.
    #[error("cannot connect to the gateway at {addr}: {reason}")]
    Connect {
        /// The address tried.
        addr: std::net::SocketAddr,
        /// Why it failed.
        reason: String,
    },
    /// A header value (the bearer token) is not valid in HTTP.
    #[error("invalid header value for {0}")]
    Header(&'static str),
}

#![doc = include_str!("../README.md")]

pub mod authz;
pub mod crypt;
pub mod fleet;
pub mod flood;
pub mod keyring;
pub mod load;
pub mod procfs;
pub mod raw;
pub mod report;
pub mod seed;
pub mod stats;
pub mod timeline;
pub mod tls;

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
    /// Seeding keys through the API failed.
    #[error("seeding keys: {0}")]
    Seed(String),
}

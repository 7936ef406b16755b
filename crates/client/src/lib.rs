#![doc = include_str!("../README.md")]

pub mod agree;
pub mod api;
#[cfg(feature = "http")]
pub mod attested;
pub mod audit;
#[cfg(feature = "http")]
mod client;
pub mod crypt;
pub mod keys;
#[cfg(feature = "http")]
pub mod principal;
#[cfg(feature = "tls-pin")]
pub mod tls_pin;
#[cfg(feature = "http")]
pub use client::{Client, ClientError, DEFAULT_WAITING_DAYS, install_crypto_provider};

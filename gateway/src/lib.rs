//! The gateway as a library: its API, enclave links, store access and front doors. The
//! `gateway` binary wires them up on the parent instance; the enclave serves the same API
//! router over its own TLS listener (`enclave/src/tls_api.rs`), with the store reached
//! through the host (`host_store`) and the keys in its own process.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bitgo;
pub mod config;
pub mod credentials;
pub mod db_cmd;
pub mod enclaves;
pub mod errors;
pub mod front_principal;
pub mod frontdoor;
pub mod host_store;
pub mod key_path;
pub mod keys_agree;
pub mod keys_api;
pub mod keys_crypt;
pub mod keys_policy;
pub mod keys_sign;
pub mod keys_state;
pub mod keys_stream;
pub mod keys_transfer;
pub mod limit;
pub mod link;
pub mod nitro_cmd;
pub mod passthrough;
pub mod policy_cmd;
pub mod progressdb;
pub mod relay;
pub mod signed;

/// An error and its sources, on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

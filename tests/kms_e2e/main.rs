//! `just test-kms-e2e`: what the KMS integration promises, checked against real processes
//! (gateway, enclave, attesting dev KMS, LocalStack) over real sockets and a real SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

mod agree;
mod attestation;
mod authz;
mod authz_audit;
mod authz_crypt;
mod authz_front_doors;
mod authz_keystore;
mod authz_policy;
mod authz_state;
mod authz_stream;
mod authz_tenants;
mod authz_transfer;
mod bitgo;
mod crypt;
mod dev_stack;
mod enclave_tls;
mod enclave_tls_owners;
mod fleet;
mod keyring;
mod keyring_transfer;
mod lifecycle;
mod production;
mod progressdb;
mod stream;

pub use keyward_e2e::{assert_signs, digest};

//! The fault matrix: what keyward does on its worst day. Every case checks that no key is
//! lost (the stored key still unseals and signs afterwards), no second key is created,
//! stored rows stay byte-identical unless the case is a successful rotation, and the fault
//! is reported clearly while it lasts.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

mod bringup;
mod crypt_input;
mod database;
mod first_start;
mod frontdoor_input;
mod http_cases;
mod http_input;
mod keys_crash;
mod keys_input;
mod keys_tampering;
mod kms_outage;
mod link;
mod link_auth;
mod rotation;
mod round_trip;
mod stream_tampering;
mod tampering;

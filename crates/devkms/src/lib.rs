//! keyward-devkms: development and test tooling around a local KMS emulator. Never part of a
//! production deployment.
//!
//! - [`server`]: the attesting dev KMS, a proxy in front of LocalStack or moto that does what
//!   real KMS does with a `Recipient`: verifies the attestation document, evaluates the key
//!   policy's `kms:RecipientAttestation:*` conditions ([`policy`]) and answers with
//!   `CiphertextForRecipient`.
//! - [`setup`]: creates the development key and alias and installs a key policy.

pub mod error;
pub mod gated;
pub mod operations;
pub mod policy;
pub mod server;
pub mod setup;
pub mod upstream;

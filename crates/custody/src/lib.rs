#![doc = include_str!("../README.md")]

pub mod authorizer;
mod cache;
mod core;
mod keyring;
mod master;
pub mod memory;
mod pinned;
pub mod policies;

use std::{collections::BTreeMap, future::Future};

use keyward_proto::{AwsCredentials, ErrorReply};
use keyward_seal::DataKey;

pub use authorizer::{Authorizer, Owners};
pub use cache::KeyCache;
pub use core::EnclaveCore;
pub use keyring::{Keyring, root_context};
pub use master::{Master, master_context};
pub use pinned::Pinned;

/// A KMS encryption context: authenticated by KMS and logged in CloudTrail, so a data key
/// decrypts only for the row it was made for.
pub type EncryptionContext = BTreeMap<String, String>;

/// A fresh data key and its KMS ciphertext.
#[derive(Debug)]
pub struct NewDataKey {
    /// The data key, in the clear (inside the enclave only).
    pub dek: DataKey,
    /// The data key as KMS encrypted it (`CiphertextBlob`), to store.
    pub ciphertext_blob: Vec<u8>,
    /// ARN of the KMS key that encrypted it.
    pub key_arn: String,
}

/// Where data keys come from. In the enclave: KMS `GenerateDataKey` and `Decrypt`, each with a
/// fresh attestation document as `Recipient`, through the gateway's relay. In tests: an
/// in-memory stand-in. Errors carry the stable code the gateway reports.
pub trait DataKeySource: Send + Sync {
    /// A new data key for `context`.
    fn generate(
        &self,
        credentials: &AwsCredentials,
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<NewDataKey, ErrorReply>> + Send;

    /// A stored data key back, with the ARN KMS says encrypted it.
    fn decrypt(
        &self,
        credentials: &AwsCredentials,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<(DataKey, String), ErrorReply>> + Send;

    /// `len` random bytes from KMS (`GenerateRandom`), answered to the enclave only.
    fn random(
        &self,
        credentials: &AwsCredentials,
        len: u16,
    ) -> impl Future<Output = Result<zeroize::Zeroizing<Vec<u8>>, ErrorReply>> + Send;
}

impl<T: DataKeySource> DataKeySource for std::sync::Arc<T> {
    fn generate(
        &self,
        credentials: &AwsCredentials,
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<NewDataKey, ErrorReply>> + Send {
        T::generate(self, credentials, context)
    }

    fn decrypt(
        &self,
        credentials: &AwsCredentials,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<(DataKey, String), ErrorReply>> + Send {
        T::decrypt(self, credentials, ciphertext_blob, context)
    }

    fn random(
        &self,
        credentials: &AwsCredentials,
        len: u16,
    ) -> impl Future<Output = Result<zeroize::Zeroizing<Vec<u8>>, ErrorReply>> + Send {
        T::random(self, credentials, len)
    }
}

/// Randomness for keys, roots and nonces: the NSM in an enclave.
pub trait Randomness: Send + Sync {
    /// Fills `out`.
    fn fill(&self, out: &mut [u8]) -> Result<(), String>;
}

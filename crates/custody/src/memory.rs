//! Stand-ins for the enclave's seams, for unit tests here and in the gateway's domain core
//! (never wired into a binary): an in-memory KMS that binds every data key to
//! its encryption context as KMS does and can be told to refuse `Decrypt`, and the operating
//! system's randomness.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use keyward_proto::{AwsCredentials, ErrorCode, ErrorReply};
use keyward_seal::DataKey;

use crate::{DataKeySource, EncryptionContext, NewDataKey, Randomness};

/// The ARN the in-memory KMS reports for every data key.
pub const MEMORY_KMS_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// Its region.
pub const MEMORY_KMS_REGION: &str = "us-east-1";

const KMS_MASTER: [u8; 32] = [0x4b; 32];

/// KMS in memory: a data key's ciphertext is AES-GCM under a fixed key, with the encryption
/// context as AAD, so a blob decrypts only with the context it was made with.
#[derive(Debug, Default)]
pub struct MemoryKms {
    deny_decrypt: AtomicBool,
    decrypts: AtomicUsize,
}

impl MemoryKms {
    /// From now on `Decrypt` is refused (`kms_denied`), or allowed again.
    pub fn deny_decrypt(&self, deny: bool) {
        self.deny_decrypt.store(deny, Ordering::Relaxed);
    }

    /// How many `Decrypt` calls were made.
    pub fn decrypts(&self) -> usize {
        self.decrypts.load(Ordering::Relaxed)
    }
}

fn aad(context: &EncryptionContext) -> Vec<u8> {
    context.iter().flat_map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes(), b";"].concat()).collect()
}

fn random<const N: usize>() -> Result<[u8; N], ErrorReply> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| ErrorReply::new(ErrorCode::Internal, e.to_string()))?;
    Ok(out)
}

impl DataKeySource for MemoryKms {
    async fn generate(&self, _: &AwsCredentials, context: &EncryptionContext) -> Result<NewDataKey, ErrorReply> {
        let dek = zeroize::Zeroizing::new(random::<32>()?);
        let nonce = random::<12>()?;
        let sealed = Aes256Gcm::new(&KMS_MASTER.into())
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: dek.as_ref(), aad: &aad(context) })
            .map_err(|_| ErrorReply::new(ErrorCode::Internal, "in-memory KMS could not encrypt"))?;
        let dek = DataKey::from_slice(dek.as_ref())
            .ok_or_else(|| ErrorReply::new(ErrorCode::Internal, "in-memory KMS made a short key"))?;
        Ok(NewDataKey { dek, ciphertext_blob: [&nonce[..], &sealed].concat(), key_arn: MEMORY_KMS_ARN.into() })
    }

    async fn decrypt(
        &self,
        _: &AwsCredentials,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<(DataKey, String), ErrorReply> {
        self.decrypts.fetch_add(1, Ordering::Relaxed);
        if self.deny_decrypt.load(Ordering::Relaxed) {
            return Err(ErrorReply::new(
                ErrorCode::KmsDenied,
                "AccessDeniedException: Decrypt denied by the key policy",
            ));
        }
        let invalid = || ErrorReply::new(ErrorCode::KmsInvalidCiphertext, "InvalidCiphertextException");
        if blob.len() < 12 {
            return Err(invalid());
        }
        let (nonce, sealed) = blob.split_at(12);
        let dek = zeroize::Zeroizing::new(
            Aes256Gcm::new(&KMS_MASTER.into())
                .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad(context) })
                .map_err(|_| invalid())?,
        );
        Ok((DataKey::from_slice(&dek).ok_or_else(invalid)?, MEMORY_KMS_ARN.into()))
    }

    async fn random(&self, _: &AwsCredentials, len: u16) -> Result<zeroize::Zeroizing<Vec<u8>>, ErrorReply> {
        let mut out = zeroize::Zeroizing::new(vec![0u8; usize::from(len)]);
        getrandom::fill(&mut out).map_err(|e| ErrorReply::new(ErrorCode::Internal, e.to_string()))?;
        Ok(out)
    }
}

/// The operating system's randomness.
#[derive(Debug)]
pub struct OsRandom;

impl Randomness for OsRandom {
    fn fill(&self, out: &mut [u8]) -> Result<(), String> {
        getrandom::fill(out).map_err(|e| e.to_string())
    }
}

/// Test credentials (the in-memory KMS ignores them).
pub fn test_credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: zeroize::Zeroizing::new("not-a-secret".into()),
        session_token: None,
        expires_at: None,
    }
}

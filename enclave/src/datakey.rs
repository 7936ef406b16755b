//! Getting a data key from KMS: fresh (`GenerateDataKey`) or back (`Decrypt`), with or
//! without an attested `Recipient`.

use std::sync::Arc;

use keyward_attest::Nsm;
use keyward_kms::{Credentials, DataKeyResponse, EncryptionContext, KmsClient, KmsError};
use keyward_proto::{AwsCredentials, EnclaveId, ErrorCode, ErrorReply};
use keyward_seal::DataKey;

/// Talks to KMS on behalf of the vault.
#[derive(Debug)]
pub struct DataKeys {
    pub kms: KmsClient,
    pub key_id: String,
    pub attestation: bool,
    pub nsm: Arc<dyn Nsm>,
}

/// A new data key and its KMS ciphertext.
pub struct NewDataKey {
    pub dek: DataKey,
    pub ciphertext_blob: Vec<u8>,
    pub key_arn: String,
}

/// The KMS encryption context of a master key's data key. KMS authenticates it and logs it
/// in CloudTrail, so a data key only decrypts for the row it was made for.
pub fn encryption_context(enclave_id: EnclaveId, key_epoch: u32, public_key_hex: &str) -> EncryptionContext {
    EncryptionContext::from([
        ("keyward:enclave_id".to_owned(), enclave_id.to_string()),
        ("keyward:key_epoch".to_owned(), key_epoch.to_string()),
        ("keyward:public_key".to_owned(), public_key_hex.to_owned()),
    ])
}

impl DataKeys {
    pub async fn generate(&self, credentials: &AwsCredentials, context: &EncryptionContext) -> Result<NewDataKey, ErrorReply> {
        let recipient = self.recipient()?;
        let document = recipient.as_ref().map(|r| r.document.clone());
        let mut response = self
            .kms
            .generate_data_key(sdk_credentials(credentials), &self.key_id, context, document)
            .await
            .map_err(|e| kms_error(e))?;
        let dek = self.extract(&mut response, recipient.as_ref())?;
        let ciphertext_blob = response
            .ciphertext_blob
            .take()
            .ok_or_else(|| ErrorReply::new(ErrorCode::KmsUnavailable, "KMS GenerateDataKey returned no CiphertextBlob"))?;
        Ok(NewDataKey { dek, ciphertext_blob, key_arn: response.key_id })
    }

    /// Decrypts a stored data key. Returns the key and the ARN KMS reports for it.
    pub async fn decrypt(
        &self,
        credentials: &AwsCredentials,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<(DataKey, String), ErrorReply> {
        let recipient = self.recipient()?;
        let document = recipient.as_ref().map(|r| r.document.clone());
        let mut response = self
            .kms
            .decrypt(sdk_credentials(credentials), &self.key_id, ciphertext_blob, context, document)
            .await
            .map_err(|e| kms_error(e))?;
        let dek = self.extract(&mut response, recipient.as_ref())?;
        Ok((dek, response.key_id))
    }

    fn recipient(&self) -> Result<Option<Recipient>, ErrorReply> {
        if !self.attestation {
            return Ok(None);
        }
        Err(ErrorReply::new(ErrorCode::Attestation, "attested KMS calls are not available in this build yet"))
    }

    fn extract(&self, response: &mut DataKeyResponse, recipient: Option<&Recipient>) -> Result<DataKey, ErrorReply> {
        match recipient {
            None => {
                let plaintext = response.plaintext.take().ok_or_else(|| {
                    ErrorReply::new(ErrorCode::KmsUnavailable, "KMS returned no Plaintext data key")
                })?;
                DataKey::from_slice(&plaintext).ok_or_else(|| {
                    ErrorReply::new(ErrorCode::KmsUnavailable, format!("KMS data key is {} bytes, expected 32", plaintext.len()))
                })
            }
            Some(_) => Err(ErrorReply::new(ErrorCode::Attestation, "attested KMS calls are not available in this build yet")),
        }
    }
}

struct Recipient {
    document: Vec<u8>,
}

fn sdk_credentials(credentials: &AwsCredentials) -> Credentials {
    let expiry = credentials
        .expires_at
        .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
    Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.as_str(),
        credentials.session_token.as_ref().map(|t| t.as_str().to_owned()),
        expiry,
        "keyward-gateway",
    )
}

pub fn kms_error(err: KmsError) -> ErrorReply {
    let code = match err {
        KmsError::Denied { .. } => ErrorCode::KmsDenied,
        KmsError::Unavailable { .. } | KmsError::InvalidResponse { .. } => ErrorCode::KmsUnavailable,
        _ => ErrorCode::Internal,
    };
    ErrorReply::new(code, err.to_string())
}

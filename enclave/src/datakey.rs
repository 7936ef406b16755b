//! Getting a data key from KMS: fresh (`GenerateDataKey`) or back (`Decrypt`).
//!
//! With attestation (always, in production) each call carries a `Recipient`: an attestation
//! document from the NSM holding the public half of a fresh RSA-2048 key pair. KMS checks
//! the document against the key policy and encrypts the data key to that RSA key
//! (`CiphertextForRecipient`); only this process can open it. An answer that carries
//! `Plaintext` instead is refused: genuine KMS never sends one for a Recipient call, and
//! accepting it would let whoever forged the answer choose our data key.

use std::sync::Arc;

use keyward_attest::{AttestationRequest, Nsm};
use keyward_custody::{DataKeySource, NewDataKey};
use keyward_kms::{
    Credentials, DataKeyResponse, EncryptionContext, KmsClient, KmsError,
    cms::{self, RecipientKey},
};
use keyward_proto::{AwsCredentials, ErrorCode, ErrorReply};
use keyward_seal::DataKey;
use zeroize::{Zeroize, Zeroizing};

/// Talks to KMS on behalf of the master key and the keyring.
#[derive(Debug)]
pub struct DataKeys {
    pub kms: KmsClient,
    pub key_id: String,
    pub attestation: bool,
    pub nsm: Arc<dyn Nsm>,
}

/// The RSA key and the document that names it, for one KMS call.
struct Recipient {
    key: RecipientKey,
    document: Vec<u8>,
}

impl DataKeys {
    pub async fn generate(
        &self,
        credentials: &AwsCredentials,
        context: &EncryptionContext,
    ) -> Result<NewDataKey, ErrorReply> {
        let recipient = self.recipient().await?;
        let document = recipient.as_ref().map(|r| r.document.clone());
        let mut response = self
            .kms
            .generate_data_key(sdk_credentials(credentials), &self.key_id, context, document)
            .await
            .map_err(kms_error)?;
        let dek = extract(&mut response, recipient.as_ref())?;
        let ciphertext_blob = response.ciphertext_blob.take().ok_or_else(|| {
            ErrorReply::new(ErrorCode::KmsUnavailable, "KMS GenerateDataKey returned no CiphertextBlob")
        })?;
        Ok(NewDataKey { dek, ciphertext_blob, key_arn: response.key_id })
    }

    /// Decrypts a stored data key. Returns the key and the ARN KMS reports for it.
    pub async fn decrypt(
        &self,
        credentials: &AwsCredentials,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<(DataKey, String), ErrorReply> {
        let recipient = self.recipient().await?;
        let document = recipient.as_ref().map(|r| r.document.clone());
        let mut response = self
            .kms
            .decrypt(sdk_credentials(credentials), &self.key_id, ciphertext_blob, context, document)
            .await
            .map_err(kms_error)?;
        let dek = extract(&mut response, recipient.as_ref())?;
        Ok((dek, response.key_id))
    }

    /// `len` random bytes from KMS `GenerateRandom`, answered (with attestation) only to
    /// this process's RSA key.
    pub async fn random(&self, credentials: &AwsCredentials, len: u16) -> Result<Zeroizing<Vec<u8>>, ErrorReply> {
        let recipient = self.recipient().await?;
        let document = recipient.as_ref().map(|r| r.document.clone());
        let mut response =
            self.kms.generate_random(sdk_credentials(credentials), len, document).await.map_err(kms_error)?;
        let bytes = extract_bytes(&mut response, recipient.as_ref())?;
        if bytes.len() != usize::from(len) {
            return Err(ErrorReply::new(
                ErrorCode::KmsAnswerRefused,
                format!("KMS GenerateRandom returned {} bytes, {len} were asked for", bytes.len()),
            ));
        }
        Ok(bytes)
    }

    /// A fresh RSA key pair and an attestation document for it (RSA key generation takes
    /// tens of milliseconds, so it runs off the async workers).
    async fn recipient(&self) -> Result<Option<Recipient>, ErrorReply> {
        if !self.attestation {
            return Ok(None);
        }
        let nsm = self.nsm.clone();
        let made = tokio::task::spawn_blocking(move || {
            let key = RecipientKey::generate().map_err(|e| format!("cannot create the recipient RSA key: {e}"))?;
            let request =
                AttestationRequest { public_key: Some(key.public_key_spki_der()), user_data: None, nonce: None };
            let document = nsm.attest(&request).map_err(|e| format!("cannot obtain an attestation document: {e}"))?;
            Ok::<_, String>(Recipient { key, document })
        })
        .await
        .map_err(|_| ErrorReply::new(ErrorCode::Internal, "recipient key task failed"))?
        .map_err(|message| ErrorReply::new(ErrorCode::Attestation, message))?;
        Ok(Some(made))
    }
}

impl DataKeySource for DataKeys {
    async fn generate(
        &self,
        credentials: &AwsCredentials,
        context: &EncryptionContext,
    ) -> Result<NewDataKey, ErrorReply> {
        DataKeys::generate(self, credentials, context).await
    }

    async fn decrypt(
        &self,
        credentials: &AwsCredentials,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<(DataKey, String), ErrorReply> {
        DataKeys::decrypt(self, credentials, ciphertext_blob, context).await
    }

    async fn random(&self, credentials: &AwsCredentials, len: u16) -> Result<Zeroizing<Vec<u8>>, ErrorReply> {
        DataKeys::random(self, credentials, len).await
    }
}

/// The NSM's randomness, for the keyring.
#[derive(Debug)]
pub struct NsmRandom(pub Arc<dyn Nsm>);

impl keyward_custody::Randomness for NsmRandom {
    fn fill(&self, out: &mut [u8]) -> Result<(), String> {
        self.0.random(out).map_err(|e| e.to_string())
    }
}

fn extract(response: &mut DataKeyResponse, recipient: Option<&Recipient>) -> Result<DataKey, ErrorReply> {
    to_data_key(&extract_bytes(response, recipient)?)
}

/// The secret bytes of a KMS answer: `Plaintext` without attestation; with it only
/// `CiphertextForRecipient`, opened with the recipient key.
fn extract_bytes(
    response: &mut DataKeyResponse,
    recipient: Option<&Recipient>,
) -> Result<Zeroizing<Vec<u8>>, ErrorReply> {
    let Some(recipient) = recipient else {
        return response
            .plaintext
            .take()
            .ok_or_else(|| ErrorReply::new(ErrorCode::KmsUnavailable, "KMS returned no Plaintext"));
    };
    if let Some(mut plaintext) = response.plaintext.take() {
        plaintext.zeroize();
        return Err(ErrorReply::new(
            ErrorCode::KmsAnswerRefused,
            "KMS answered an attested request with a Plaintext data key; refusing it (genuine KMS only returns CiphertextForRecipient)",
        ));
    }
    let wrapped = response.ciphertext_for_recipient.take().ok_or_else(|| {
        ErrorReply::new(ErrorCode::KmsAnswerRefused, "KMS answered an attested request without CiphertextForRecipient")
    })?;
    cms::decrypt_for_recipient(&wrapped, &recipient.key)
        .map_err(|e| ErrorReply::new(ErrorCode::KmsAnswerRefused, format!("cannot open CiphertextForRecipient: {e}")))
}

fn to_data_key(plaintext: &[u8]) -> Result<DataKey, ErrorReply> {
    DataKey::from_slice(plaintext).ok_or_else(|| {
        ErrorReply::new(ErrorCode::KmsAnswerRefused, format!("KMS data key is {} bytes, expected 32", plaintext.len()))
    })
}

fn sdk_credentials(credentials: &AwsCredentials) -> Credentials {
    let expiry = credentials.expires_at.map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
    Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.as_str(),
        credentials.session_token.as_ref().map(|t| t.as_str().to_owned()),
        expiry,
        "keyward-gateway",
    )
}

fn kms_error(err: KmsError) -> ErrorReply {
    let code = match &err {
        // KMS cannot decrypt a blob that was altered, or whose encryption context (enclave id,
        // epoch, public key) differs from the one it was made with.
        KmsError::Denied { code, .. } if code == "InvalidCiphertextException" => ErrorCode::KmsInvalidCiphertext,
        KmsError::Denied { .. } => ErrorCode::KmsDenied,
        KmsError::Unavailable { .. } | KmsError::InvalidResponse { .. } => ErrorCode::KmsUnavailable,
        _ => ErrorCode::Internal,
    };
    ErrorReply::new(code, err.to_string())
}

//! KMS `GenerateDataKey` and `Decrypt`, called by the enclave through the relay with
//! credentials the gateway hands over for that one call.

use std::{collections::BTreeMap, fmt, time::Duration};

use aws_credential_types::Credentials;
use aws_sdk_kms::{
    config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig},
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::Blob,
    types::{DataKeySpec, KeyEncryptionMechanism, RecipientInfo},
};
use zeroize::Zeroizing;

use crate::{KmsEndpoint, KmsError, RelayHttpClient};

/// KMS encryption context: authenticated, logged in CloudTrail, must match on `Decrypt`.
pub type EncryptionContext = BTreeMap<String, String>;

/// What KMS returned for a data-key request.
pub struct DataKeyResponse {
    /// ARN of the KMS key that was used.
    pub key_id: String,
    /// The encrypted data key (`GenerateDataKey` only).
    pub ciphertext_blob: Option<Vec<u8>>,
    /// The plaintext data key, when the call carried no `Recipient`.
    pub plaintext: Option<Zeroizing<Vec<u8>>>,
    /// The data key encrypted to the attested RSA key (`Recipient` calls).
    pub ciphertext_for_recipient: Option<Vec<u8>>,
}

impl fmt::Debug for DataKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeyResponse")
            .field("key_id", &self.key_id)
            .field("ciphertext_blob_len", &self.ciphertext_blob.as_ref().map(Vec::len))
            .field("plaintext", &self.plaintext.as_ref().map(|_| "[redacted]"))
            .field("ciphertext_for_recipient_len", &self.ciphertext_for_recipient.as_ref().map(Vec::len))
            .finish()
    }
}

/// A KMS client pinned to one endpoint and region, dialling through the relay.
#[derive(Debug, Clone)]
pub struct KmsClient {
    endpoint: KmsEndpoint,
    region: String,
    http: RelayHttpClient,
}

impl KmsClient {
    /// Builds the client. Nothing is contacted until a call is made.
    pub fn new(endpoint: KmsEndpoint, region: impl Into<String>, http: RelayHttpClient) -> Self {
        KmsClient { endpoint, region: region.into(), http }
    }

    /// The pinned endpoint.
    pub fn endpoint(&self) -> &KmsEndpoint {
        &self.endpoint
    }

    /// The pinned region.
    pub fn region(&self) -> &str {
        &self.region
    }

    fn sdk(&self, credentials: Credentials) -> aws_sdk_kms::Client {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .endpoint_url(self.endpoint.url())
            .credentials_provider(credentials)
            .http_client(self.http.clone())
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }

    /// `GenerateDataKey(KeySpec=AES_256)`, with a `Recipient` when `attestation_document`
    /// is given.
    pub async fn generate_data_key(
        &self,
        credentials: Credentials,
        key_id: &str,
        context: &EncryptionContext,
        attestation_document: Option<Vec<u8>>,
    ) -> Result<DataKeyResponse, KmsError> {
        const OP: &str = "GenerateDataKey";
        let mut output = self
            .sdk(credentials)
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context.clone().into_iter().collect()))
            .set_recipient(attestation_document.map(recipient))
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        Ok(DataKeyResponse {
            key_id: output.key_id.take().ok_or(KmsError::InvalidResponse { operation: OP, reason: "no KeyId" })?,
            ciphertext_blob: Some(
                output
                    .ciphertext_blob
                    .take()
                    .ok_or(KmsError::InvalidResponse { operation: OP, reason: "no CiphertextBlob" })?
                    .into_inner(),
            ),
            plaintext: output.plaintext.take().map(|b| Zeroizing::new(b.into_inner())),
            ciphertext_for_recipient: output.ciphertext_for_recipient.take().map(Blob::into_inner),
        })
    }

    /// `Decrypt` of a data key, pinned to `key_id`, with a `Recipient` when
    /// `attestation_document` is given.
    pub async fn decrypt(
        &self,
        credentials: Credentials,
        key_id: &str,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
        attestation_document: Option<Vec<u8>>,
    ) -> Result<DataKeyResponse, KmsError> {
        const OP: &str = "Decrypt";
        let mut output = self
            .sdk(credentials)
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(ciphertext_blob))
            .set_encryption_context(Some(context.clone().into_iter().collect()))
            .set_recipient(attestation_document.map(recipient))
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        Ok(DataKeyResponse {
            key_id: output.key_id.take().ok_or(KmsError::InvalidResponse { operation: OP, reason: "no KeyId" })?,
            ciphertext_blob: None,
            plaintext: output.plaintext.take().map(|b| Zeroizing::new(b.into_inner())),
            ciphertext_for_recipient: output.ciphertext_for_recipient.take().map(Blob::into_inner),
        })
    }
}

impl KmsClient {
    /// `GenerateRandom(NumberOfBytes)`, with a `Recipient` when `attestation_document` is
    /// given (then the bytes come back only as `CiphertextForRecipient`). `key_id` of the
    /// answer is empty: the operation uses no key.
    pub async fn generate_random(
        &self,
        credentials: Credentials,
        number_of_bytes: u16,
        attestation_document: Option<Vec<u8>>,
    ) -> Result<DataKeyResponse, KmsError> {
        const OP: &str = "GenerateRandom";
        let mut output = self
            .sdk(credentials)
            .generate_random()
            .number_of_bytes(i32::from(number_of_bytes))
            .set_recipient(attestation_document.map(recipient))
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        Ok(DataKeyResponse {
            key_id: String::new(),
            ciphertext_blob: None,
            plaintext: output.plaintext.take().map(|b| Zeroizing::new(b.into_inner())),
            ciphertext_for_recipient: output.ciphertext_for_recipient.take().map(Blob::into_inner),
        })
    }
}

fn recipient(document: Vec<u8>) -> RecipientInfo {
    RecipientInfo::builder()
        .attestation_document(Blob::new(document))
        .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
        .build()
}

/// Service errors that retrying will not fix are `Denied`; the rest are `Unavailable`.
fn classify<E, R>(operation: &'static str, err: SdkError<E, R>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("UnknownError").to_owned();
            let message = service.err().message().unwrap_or("").to_owned();
            let transient = matches!(
                code.as_str(),
                "KMSInternalException"
                    | "DependencyTimeoutException"
                    | "ThrottlingException"
                    | "LimitExceededException"
            );
            if transient {
                KmsError::Unavailable { operation, message: format!("{code}: {message}") }
            } else {
                KmsError::Denied { operation, code, message }
            }
        }
        _ => KmsError::Unavailable { operation, message: DisplayErrorContext(&err).to_string() },
    }
}

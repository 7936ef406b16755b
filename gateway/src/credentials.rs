//! AWS credentials for the enclave's KMS calls, from the standard aws-config chain
//! (environment in development, the instance role through IMDS in production). They are
//! cached until five minutes before they expire and handed to the enclave per operation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_credential_types::{
    Credentials,
    provider::{ProvideCredentials, SharedCredentialsProvider},
};
use keyward_proto::AwsCredentials;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "the enclave's TLS API holds no AWS credentials: rotate data keys through the gateway's API",
            ),
        ))
    }
}

/// Refresh this long before expiry.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct CredentialSource {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<Credentials>>,
}

impl CredentialSource {
    pub async fn from_environment(region: &str) -> anyhow::Result<Self> {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .load()
            .await;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| anyhow::anyhow!("no AWS credentials provider is configured"))?;
        Ok(Self::new(provider))
    }

    pub fn new(provider: SharedCredentialsProvider) -> Self {
        CredentialSource { provider, cached: Mutex::new(None) }
    }

    /// No credentials: inside the enclave (its TLS API) the instance's role is out of reach;
    /// what needs it (data-key rotations) is done through the gateway's own API.
    pub fn none() -> Self {
        Self::new(SharedCredentialsProvider::new(NoCredentials))
    }

    /// Current credentials, refreshed when within the margin of expiry.
    pub async fn get(&self) -> Result<AwsCredentials, String> {
        let mut cached = self.cached.lock().await;
        let fresh = cached.as_ref().is_some_and(|c| c.expiry().is_none_or(|e| e > SystemTime::now() + REFRESH_MARGIN));
        if !fresh {
            let credentials = self
                .provider
                .provide_credentials()
                .await
                .map_err(|e| format!("cannot obtain AWS credentials: {}", crate::error_chain(&e)))?;
            tracing::info!(
                access_key_id_prefix = credentials.access_key_id().get(..4).unwrap_or(""),
                expires = ?credentials.expiry(),
                "obtained AWS credentials"
            );
            *cached = Some(credentials);
        }
        let c = cached.as_ref().ok_or("no credentials")?;
        Ok(AwsCredentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: Zeroizing::new(c.secret_access_key().to_owned()),
            session_token: c.session_token().map(|t| Zeroizing::new(t.to_owned())),
            expires_at: c.expiry().and_then(|e| e.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
        })
    }
}

impl keyward_admission::Credentials for CredentialSource {
    async fn get(&self) -> Result<AwsCredentials, String> {
        CredentialSource::get(self).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use aws_credential_types::provider::future;

    use super::*;

    /// Hands out credentials that expire `lifetime` from now and counts the calls.
    #[derive(Debug)]
    struct Issuer {
        calls: Arc<AtomicUsize>,
        lifetime: Option<Duration>,
    }

    impl ProvideCredentials for Issuer {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let expiry = self.lifetime.map(|l| SystemTime::now() + l);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("ASIA{n:016}"),
                format!("secret-{n}"),
                Some(format!("token-{n}")),
                expiry,
                "test",
            )))
        }
    }

    fn source(lifetime: Option<Duration>) -> (CredentialSource, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let issuer = Issuer { calls: calls.clone(), lifetime };
        (CredentialSource::new(SharedCredentialsProvider::new(issuer)), calls)
    }

    #[tokio::test]
    async fn long_lived_credentials_are_reused() {
        let (source, calls) = source(Some(Duration::from_secs(3600)));
        let first = source.get().await.unwrap();
        let second = source.get().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(first.access_key_id, second.access_key_id);
        assert_eq!(first.session_token.as_deref().map(String::as_str), Some("token-0"));
        assert!(first.expires_at.is_some());
    }

    #[tokio::test]
    async fn credentials_near_expiry_are_refreshed_before_use() {
        // Inside the five-minute margin: every use fetches fresh ones.
        let (source, calls) = source(Some(Duration::from_secs(120)));
        let first = source.get().await.unwrap();
        let second = source.get().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_ne!(first.access_key_id, second.access_key_id);
        assert_eq!(second.secret_access_key.as_str(), "secret-1");
    }

    #[tokio::test]
    async fn static_credentials_without_expiry_are_fetched_once() {
        let (source, calls) = source(None);
        for _ in 0..3 {
            source.get().await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

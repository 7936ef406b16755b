//! The async HTTP SDK.

use std::{sync::Arc, time::Duration};

use serde::de::DeserializeOwned;

use crate::principal::PrincipalSigner;

use crate::api::{
    AttestationResponse, ErrorResponse, HealthResponse, PublicKeyResponse, RotateRequest, RotateResponse,
    SignBatchRequest, SignBatchResponse, SignItem, SignRequest, SignResponse,
};
/// The deadline of one streamed encryption or decryption.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The keystore a key name without a `<keystore>/` prefix belongs to.
pub const DEFAULT_KEYSTORE: &str = "default";

use crate::crypt::{
    DataKey, Decrypt, Decrypted, Encrypt, Encrypted, GenerateDataKey, KeyConfig, MacInfo, MacRequest, RandomBytes,
    RandomRequest, VerifyMac,
};
use crate::keys::{
    CreateKey, CreateKeys, ExportKey, ExportedKey, ImportKey, KeyInfo, KeyInfos, KeyPage, KeyPolicyInfo,
    KeySignatureBatch, KeySignatureInfo, KeystorePolicyInfo, RootRotated, SignWithKey, SignWithKeyBatch, Verified,
    VerifyWithKey,
};

/// Client errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The gateway could not be reached or the exchange failed.
    #[error("cannot reach the gateway: {0}")]
    Transport(#[from] reqwest::Error),
    /// The gateway answered with an error.
    #[error("gateway answered {status}: {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error code.
        code: String,
        /// The explanation.
        message: String,
    },
    /// The request could not be signed with the principal's key.
    #[error("cannot sign the request: {0}")]
    Signing(String),
    /// The request cannot be sent as asked (nothing was sent).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The gateway answered with something that is not the expected JSON.
    #[error("unexpected answer from the gateway (HTTP {status}): {reason}")]
    Decode {
        /// HTTP status.
        status: u16,
        /// Why it did not decode.
        reason: String,
    },
}

/// A keyward gateway client.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    principal: Option<Arc<PrincipalSigner>>,
}

/// Never prints the bearer token: a client in a logged struct must not leak it.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("principal", &self.principal.as_ref().map(|p| p.public()))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the gateway at `base_url` (e.g. `http://127.0.0.1:8080`). `token` is the
    /// bearer token for signing and admin calls.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, ClientError> {
        install_crypto_provider();
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(64);
        if let Ok(tls) = tls {
            builder = builder.use_preconfigured_tls(tls);
        }
        Ok(Client { base: base_url.trim_end_matches('/').to_owned(), token, http: builder.build()?, principal: None })
    }

    /// A client that trusts exactly what `tls` trusts: the enclave's TLS API with its key
    /// pinned ([`crate::tls_pin`], or [`Client::connect_attested`] in one step).
    pub fn with_tls_config(
        base_url: &str,
        token: Option<String>,
        tls: rustls::ClientConfig,
    ) -> Result<Self, ClientError> {
        install_crypto_provider();
        // Plain HTTP or a redirect would take the client off the pinned connection.
        if !base_url.starts_with("https://") {
            return Err(ClientError::Invalid(format!(
                "the enclave's TLS API is reached over https://, not {:?}",
                base_url.chars().take(64).collect::<String>()
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .use_preconfigured_tls(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Client { base: base_url.trim_end_matches('/').to_owned(), token, http, principal: None })
    }

    /// This client, signing key operations with `principal` (needed when the enclave has
    /// owners; docs/authorization.md).
    pub fn with_principal(mut self, principal: Arc<PrincipalSigner>) -> Self {
        self.principal = Some(principal);
        self
    }

    /// `request` with `body` as JSON, signed by the principal when the client has one.
    fn signed_json<T: serde::Serialize>(
        &self,
        request: reqwest::RequestBuilder,
        operation: keyward_authz::Operation,
        target: (&str, &str),
        body: &T,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        self.approved_json(request, operation, target, body, &[])
    }

    /// [`Self::signed_json`], with `approvers` signing the same request (M-of-N rules).
    fn approved_json<T: serde::Serialize>(
        &self,
        request: reqwest::RequestBuilder,
        operation: keyward_authz::Operation,
        (keystore, key): (&str, &str),
        body: &T,
        approvers: &[&PrincipalSigner],
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let Some(principal) = &self.principal else {
            return Ok(request.json(body));
        };
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Signing(e.to_string()))?;
        let mut request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in
            principal.headers(operation, keystore, key, &bytes, approvers).map_err(ClientError::Signing)?
        {
            request = request.header(name, value);
        }
        Ok(request.body(bytes))
    }

    /// Whether this client signs its requests with a principal's key.
    pub fn has_principal(&self) -> bool {
        self.principal.is_some()
    }

    /// Signs a digest.
    pub async fn sign(
        &self,
        digest: &[u8; 32],
        scheme: &str,
        enclave_id: Option<u32>,
    ) -> Result<SignResponse, ClientError> {
        let body = SignRequest { digest_hex: hex::encode(digest), scheme: scheme.to_owned(), enclave_id };
        let request = self.authorized(self.http.post(self.url("/v1/sign")));
        // The master keys' keystore; the key name is empty (the body names the enclave).
        self.send(self.signed_json(request, keyward_authz::Operation::Sign, ("master", ""), &body)?).await
    }

    /// Signs several digests at once.
    pub async fn sign_batch(
        &self,
        items: &[([u8; 32], &str)],
        enclave_id: Option<u32>,
    ) -> Result<SignBatchResponse, ClientError> {
        let items =
            items.iter().map(|(d, s)| SignItem { digest_hex: hex::encode(d), scheme: (*s).to_owned() }).collect();
        let body = SignBatchRequest { items, enclave_id };
        let post = self.authorized(self.http.post(self.url("/v1/sign-batch")));
        // One signature over the whole batch, in the master keys' keystore.
        self.send(self.signed_json(post, keyward_authz::Operation::Sign, ("master", ""), &body)?).await
    }

    /// The master public key.
    pub async fn public_key(&self, enclave_id: Option<u32>) -> Result<PublicKeyResponse, ClientError> {
        self.send(self.http.get(self.url("/v1/public-key")).query(&enclave_query(enclave_id))).await
    }

    /// A fresh attestation document for `nonce`.
    pub async fn attestation(&self, nonce: &[u8], enclave_id: Option<u32>) -> Result<AttestationResponse, ClientError> {
        let mut query = enclave_query(enclave_id);
        query.push(("nonce", hex::encode(nonce)));
        self.send(self.http.get(self.url("/v1/attestation")).query(&query)).await
    }

    /// On the enclave's TLS API: a document binding the certificate that served it.
    pub async fn tls_attestation(&self, nonce: &[u8]) -> Result<crate::api::TlsAttestationResponse, ClientError> {
        self.send(self.http.get(self.url("/v1/attestation")).query(&[("nonce", hex::encode(nonce))])).await
    }

    /// Health, whatever the status code (503 still carries the body).
    pub async fn health(&self) -> Result<(u16, HealthResponse), ClientError> {
        let response = self.http.get(self.url("/v1/health")).send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let health =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode { status, reason: e.to_string() })?;
        Ok((status, health))
    }

    /// Audit records after `after` (admin token), at most 1,000 per page, of the enclave's
    /// current chain.
    pub async fn audit_page(
        &self,
        after: u64,
        enclave_id: Option<u32>,
    ) -> Result<crate::audit::AuditPage, ClientError> {
        self.audit_page_of(after, enclave_id, None).await
    }

    /// [`Self::audit_page`] of a stored chain, named by its audit key (hex), when given.
    pub async fn audit_page_of(
        &self,
        after: u64,
        enclave_id: Option<u32>,
        chain: Option<&str>,
    ) -> Result<crate::audit::AuditPage, ClientError> {
        let mut query = enclave_query(enclave_id);
        query.push(("after", after.to_string()));
        if let Some(chain) = chain {
            query.push(("chain", chain.to_owned()));
        }
        self.send(self.authorized(self.http.get(self.url("/v1/admin/audit"))).query(&query)).await
    }

    /// Every stored audit chain, oldest first (admin token).
    pub async fn audit_chains(&self) -> Result<crate::audit::AuditChains, ClientError> {
        self.send(self.authorized(self.http.get(self.url("/v1/admin/audit/chains")))).await
    }

    /// Rotates the data key of an enclave (admin token).
    pub async fn rotate(&self, enclave_id: Option<u32>) -> Result<RotateResponse, ClientError> {
        let body = RotateRequest { enclave_id };
        self.send(self.authorized(self.http.post(self.url("/v1/admin/rotate"))).json(&body)).await
    }

    /// Creates a key (admin token); `name` is a full name (`<keystore>/<name>` for a key of
    /// another keystore than the default one).
    pub async fn create_key(&self, name: &str, key_type: &str, exportable: bool) -> Result<KeyInfo, ClientError> {
        let (keystore, local) = scope(name);
        let body = CreateKey { name: local.to_owned(), key_type: key_type.to_owned(), exportable };
        let post = self.authorized(self.http.post(self.url(&keys_path(keystore, ""))));
        self.send(self.signed_json(post, keyward_authz::Operation::Create, (keystore, local), &body)?).await
    }

    /// Creates many keys at once, all or none (admin token), all in one keystore (full names).
    pub async fn create_keys(&self, mut keys: Vec<CreateKey>) -> Result<KeyInfos, ClientError> {
        let keystore = keys.first().map_or(DEFAULT_KEYSTORE, |k| scope(&k.name).0).to_owned();
        for key in &mut keys {
            let (theirs, local) = scope(&key.name);
            if theirs != keystore {
                return Err(ClientError::Invalid(format!(
                    "a batch is in one keystore: {} is not in {keystore}",
                    key.name
                )));
            }
            key.name = local.to_owned();
        }
        let post = self.authorized(self.http.post(self.url(&keys_path(&keystore, "/batch"))));
        // A batch is signed with an empty key name: the body names the keys.
        let operation = keyward_authz::Operation::Create;
        self.send(self.signed_json(post, operation, (&keystore, ""), &CreateKeys { keys })?).await
    }

    /// A page of keys of the default keystore in name order, after `after`.
    pub async fn list_keys(&self, after: Option<&str>, limit: Option<u32>) -> Result<KeyPage, ClientError> {
        self.list_keys_in(DEFAULT_KEYSTORE, after, limit).await
    }

    /// A page of keystore `keystore`'s keys in name order, after `after` (a full name).
    pub async fn list_keys_in(
        &self,
        keystore: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<KeyPage, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        self.send(self.authorized(self.http.get(self.url(&keys_path(keystore, "")))).query(&query)).await
    }

    /// The keys of the default keystore holding a version with this public key.
    pub async fn find_key(&self, public_key: &[u8]) -> Result<KeyPage, ClientError> {
        self.find_key_in(DEFAULT_KEYSTORE, public_key).await
    }

    /// The keys of keystore `keystore` holding a version with this public key.
    pub async fn find_key_in(&self, keystore: &str, public_key: &[u8]) -> Result<KeyPage, ClientError> {
        let query = [("public_key_hex", hex::encode(public_key))];
        self.send(self.authorized(self.http.get(self.url(&keys_path(keystore, "")))).query(&query)).await
    }

    /// A key's metadata.
    pub async fn key(&self, name: &str) -> Result<KeyInfo, ClientError> {
        self.send(self.authorized(self.http.get(self.url(&key_path(name, ""))))).await
    }

    /// A new version of a key (admin token).
    pub async fn rotate_key(&self, name: &str) -> Result<KeyInfo, ClientError> {
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/rotate"))));
        if self.principal.is_none() {
            return self.send(post).await;
        }
        // The signed body names the version the rotation makes: the latest the gateway shows,
        // plus 1 (a wrong one is refused in the enclave, never applied).
        let key = self.key(name).await?;
        let version = key.latest_version.saturating_add(1);
        let body = crate::keys::RotateKey { version, key_type: key.key_type, exportable: key.exportable };
        self.send(self.signed_json(post, keyward_authz::Operation::Rotate, scope(name), &body)?).await
    }

    /// `disable`, `enable` or `cancel-deletion` (admin token), signed when this client has a
    /// principal.
    pub async fn set_key_state(&self, name: &str, action: &str) -> Result<KeyInfo, ClientError> {
        self.set_key_state_approved(name, action, &[]).await
    }

    /// Schedules a key's deletion (admin token), signed when this client has a principal
    /// (then final after [`DEFAULT_WAITING_DAYS`]).
    pub async fn delete_key(&self, name: &str) -> Result<KeyInfo, ClientError> {
        self.delete_key_approved(name, DEFAULT_WAITING_DAYS, &[]).await
    }

    /// A deletion final after `waiting_days`, signed by this client's principal and approved by
    /// `approvers` (without a principal: the gateway's configured waiting time).
    pub async fn delete_key_approved(
        &self,
        name: &str,
        waiting_days: u32,
        approvers: &[&PrincipalSigner],
    ) -> Result<KeyInfo, ClientError> {
        self.state_change(name, "delete", Some(waiting_days), approvers).await
    }

    /// A state change (`disable`, `enable`, `delete`, `cancel-deletion`) signed by this
    /// client's principal and approved by `approvers`.
    pub async fn set_key_state_approved(
        &self,
        name: &str,
        action: &str,
        approvers: &[&PrincipalSigner],
    ) -> Result<KeyInfo, ClientError> {
        let waiting_days = (action == "delete").then_some(DEFAULT_WAITING_DAYS);
        self.state_change(name, action, waiting_days, approvers).await
    }

    /// Operation `disable`, `enable`, or `delete` (for delete and cancel-deletion); the body
    /// names the action and the key's next policy row version (read from the gateway: a wrong
    /// one is refused in the enclave, never applied).
    async fn state_change(
        &self,
        name: &str,
        action: &str,
        waiting_days: Option<u32>,
        approvers: &[&PrincipalSigner],
    ) -> Result<KeyInfo, ClientError> {
        use keyward_authz::Operation;
        let (request, operation) = match action {
            "delete" => (self.http.delete(self.url(&key_path(name, ""))), Operation::Delete),
            "cancel-deletion" => (self.http.post(self.url(&key_path(name, "/cancel-deletion"))), Operation::Delete),
            "enable" => (self.http.post(self.url(&key_path(name, "/enable"))), Operation::Enable),
            other => (self.http.post(self.url(&key_path(name, &format!("/{other}")))), Operation::Disable),
        };
        let request = self.authorized(request);
        if self.principal.is_none() {
            return self.send(request).await;
        }
        let version = match self.key_policy(name).await {
            Ok(current) => current.version + 1,
            Err(ClientError::Api { status: 404, .. }) => 1,
            Err(e) => return Err(e),
        };
        let body = crate::keys::KeyStateAction { action: action.to_owned(), version, waiting_days };
        self.send(self.approved_json(request, operation, scope(name), &body, approvers)?).await
    }

    /// Signs with a key.
    pub async fn sign_with_key(&self, name: &str, request: &SignWithKey) -> Result<KeySignatureInfo, ClientError> {
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/sign"))));
        self.send(self.signed_json(post, keyward_authz::Operation::Sign, scope(name), request)?).await
    }

    /// Sets a key's policy to `policy` (a document as docs/authorization.md describes, its
    /// `version` the next one), signed by this client's principal and approved by `approvers`.
    pub async fn set_key_policy(
        &self,
        name: &str,
        policy: &serde_json::Value,
        approvers: &[&PrincipalSigner],
    ) -> Result<KeyPolicyInfo, ClientError> {
        let put = self.authorized(self.http.put(self.url(&key_path(name, "/policy"))));
        let operation = keyward_authz::Operation::SetPolicy;
        self.send(self.approved_json(put, operation, scope(name), policy, approvers)?).await
    }

    /// A key's newest policy.
    pub async fn key_policy(&self, name: &str) -> Result<KeyPolicyInfo, ClientError> {
        self.send(self.authorized(self.http.get(self.url(&key_path(name, "/policy"))))).await
    }

    /// Sets the policy of keystore `keystore` (grants on all its keys and on creating keys in
    /// it), signed by this client's principal and approved by `approvers`. The canonical
    /// request names the keystore and an empty key.
    pub async fn set_keystore_policy(
        &self,
        keystore: &str,
        policy: &serde_json::Value,
        approvers: &[&PrincipalSigner],
    ) -> Result<KeystorePolicyInfo, ClientError> {
        let put = self.authorized(self.http.put(self.url(&keystore_path(keystore, "/policy"))));
        let operation = keyward_authz::Operation::SetPolicy;
        self.send(self.approved_json(put, operation, (keystore, ""), policy, approvers)?).await
    }

    /// A keystore's newest policy.
    pub async fn keystore_policy(&self, keystore: &str) -> Result<KeystorePolicyInfo, ClientError> {
        self.send(self.authorized(self.http.get(self.url(&keystore_path(keystore, "/policy"))))).await
    }

    /// Signs several items with a key.
    pub async fn sign_batch_with_key(
        &self,
        name: &str,
        items: Vec<SignWithKey>,
    ) -> Result<KeySignatureBatch, ClientError> {
        let body = SignWithKeyBatch { items };
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/sign-batch"))));
        // One signature over the whole batch (operation sign); the enclave checks every item.
        self.send(self.signed_json(post, keyward_authz::Operation::Sign, scope(name), &body)?).await
    }

    /// Checks a signature by a key.
    pub async fn verify_with_key(&self, name: &str, request: &VerifyWithKey) -> Result<Verified, ClientError> {
        self.send(self.authorized(self.http.post(self.url(&key_path(name, "/verify")))).json(request)).await
    }

    /// Imports a key sealed to an enclave's transfer key (admin token).
    pub async fn import_key(&self, name: &str, request: &ImportKey) -> Result<KeyInfo, ClientError> {
        self.import_key_approved(name, request, &[]).await
    }

    /// [`Self::import_key`], approved by `approvers` too (the owners' quorum imports).
    pub async fn import_key_approved(
        &self,
        name: &str,
        request: &ImportKey,
        approvers: &[&PrincipalSigner],
    ) -> Result<KeyInfo, ClientError> {
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/import"))));
        let operation = keyward_authz::Operation::Import;
        self.send(self.approved_json(post, operation, scope(name), request, approvers)?).await
    }

    /// Exports a version of an exportable key, sealed to the caller's key (admin token).
    pub async fn export_key(&self, name: &str, request: &ExportKey) -> Result<ExportedKey, ClientError> {
        self.export_key_approved(name, request, &[]).await
    }

    /// [`Self::export_key`], approved by `approvers` too (the owners' quorum exports).
    pub async fn export_key_approved(
        &self,
        name: &str,
        request: &ExportKey,
        approvers: &[&PrincipalSigner],
    ) -> Result<ExportedKey, ClientError> {
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/export"))));
        let operation = keyward_authz::Operation::Export;
        self.send(self.approved_json(post, operation, scope(name), request, approvers)?).await
    }

    /// Reseals the keyring root under a new KMS data key (admin token).
    pub async fn rotate_keyring_root(&self) -> Result<RootRotated, ClientError> {
        self.send(self.authorized(self.http.post(self.url("/v1/admin/keyring/rotate")))).await
    }

    /// Encrypts with an aes256-gcm key.
    pub async fn encrypt(&self, name: &str, request: &Encrypt) -> Result<Encrypted, ClientError> {
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/encrypt"))));
        self.send(self.signed_json(post, keyward_authz::Operation::Encrypt, scope(name), request)?).await
    }

    /// Decrypts a ciphertext (or a wrapped data key).
    pub async fn decrypt(&self, name: &str, request: &Decrypt) -> Result<Decrypted, ClientError> {
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/decrypt"))));
        self.send(self.signed_json(post, keyward_authz::Operation::Decrypt, scope(name), request)?).await
    }

    /// Re-encrypts a ciphertext under the key's latest version (signed as a decryption: the
    /// enclave decrypts before it encrypts again).
    pub async fn rewrap(&self, name: &str, request: &Decrypt) -> Result<Encrypted, ClientError> {
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/rewrap"))));
        self.send(self.signed_json(post, keyward_authz::Operation::Decrypt, scope(name), request)?).await
    }

    /// A new data key wrapped under the key.
    pub async fn data_key(&self, name: &str, request: &GenerateDataKey) -> Result<DataKey, ClientError> {
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/datakey"))));
        self.send(self.signed_json(post, keyward_authz::Operation::DataKey, scope(name), request)?).await
    }

    /// HMAC-SHA256 with an hmac-sha256 key (signed as `sign`).
    pub async fn hmac(&self, name: &str, request: &MacRequest) -> Result<MacInfo, ClientError> {
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/hmac"))));
        self.send(self.signed_json(post, keyward_authz::Operation::Sign, scope(name), request)?).await
    }

    /// Checks an HMAC-SHA256.
    pub async fn verify_hmac(&self, name: &str, request: &VerifyMac) -> Result<Verified, ClientError> {
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/verify-hmac"))));
        self.send(self.signed_json(post, keyward_authz::Operation::Verify, scope(name), request)?).await
    }

    /// Changes a key's settings (admin token).
    pub async fn configure_key(&self, name: &str, request: &KeyConfig) -> Result<KeyInfo, ClientError> {
        self.send(self.authorized(self.http.post(self.url(&key_path(name, "/config")))).json(request)).await
    }

    /// The public JWK of an x25519 or p256 key.
    pub async fn key_jwk(&self, name: &str) -> Result<crate::agree::PublicJwk, ClientError> {
        self.send(self.authorized(self.http.get(self.url(&key_path(name, "/jwk"))))).await
    }

    /// The ECDH secret of an x25519 or p256 key and a peer's public key.
    pub async fn derive_shared_secret(
        &self,
        name: &str,
        request: &crate::agree::DeriveSharedSecret,
    ) -> Result<crate::agree::SharedSecret, ClientError> {
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/derive-shared-secret"))));
        self.send(self.signed_json(post, keyward_authz::Operation::Agree, scope(name), request)?).await
    }

    /// Opens, in the enclave, a content key wrapped to the key with ECDH-ES+A256KW.
    pub async fn unwrap_key(
        &self,
        name: &str,
        request: &crate::agree::UnwrapKey,
    ) -> Result<crate::agree::UnwrappedKey, ClientError> {
        let post = self.authorized(self.http.post(self.url(&key_path(name, "/unwrap"))));
        self.send(self.signed_json(post, keyward_authz::Operation::Decrypt, scope(name), request)?).await
    }

    /// Wraps a content key to a recipient's public key with ECDH-ES+A256KW.
    pub async fn wrap_key(&self, request: &crate::agree::WrapKey) -> Result<crate::agree::WrappedKey, ClientError> {
        self.send(self.authorized(self.http.post(self.url("/v1/wrap"))).json(request)).await
    }

    /// Random bytes from the enclave's NSM or from KMS.
    pub async fn random(&self, bytes: u32, source: Option<&str>) -> Result<RandomBytes, ClientError> {
        let body = RandomRequest { bytes, source: source.map(str::to_owned) };
        self.send(self.authorized(self.http.post(self.url("/v1/random"))).json(&body)).await
    }

    /// Encrypts a body of any size with an aes256-gcm key, streamed in segments. The answer's
    /// body is the streamed ciphertext (read it with `bytes_stream`); a transfer that breaks
    /// off is a failure.
    pub async fn encrypt_stream(
        &self,
        name: &str,
        body: reqwest::Body,
        associated_data: Option<&[u8]>,
    ) -> Result<reqwest::Response, ClientError> {
        self.send_stream(&key_path(name, "/encrypt"), body, associated_data, None).await
    }

    /// [`Self::encrypt_stream`], signed by this client's principal (required when the enclaves
    /// have owners): the principal signs the associated data and `plaintext_sha256`, the
    /// SHA-256 of the whole body, which the caller computes first; the enclave seals the
    /// stream's last segment only if what it sealed has that digest.
    pub async fn encrypt_stream_signed(
        &self,
        name: &str,
        body: reqwest::Body,
        associated_data: Option<&[u8]>,
        plaintext_sha256: &[u8; 32],
    ) -> Result<reqwest::Response, ClientError> {
        let request = crate::crypt::StreamEncryptBody {
            associated_data_b64: b64(associated_data.unwrap_or_default()),
            plaintext_sha256_hex: hex::encode(plaintext_sha256),
        };
        let signed = (keyward_authz::Operation::Encrypt, name, serde_json::to_vec(&request));
        self.send_stream(&key_path(name, "/encrypt"), body, associated_data, Some(signed)).await
    }

    /// [`Self::decrypt_stream`], signed by this client's principal: the principal signs the
    /// stream's `header` (its first [`crate::crypt::STREAM_HEADER_LEN`] bytes, which `body`
    /// also starts with) and the associated data.
    pub async fn decrypt_stream_signed(
        &self,
        name: &str,
        body: reqwest::Body,
        associated_data: Option<&[u8]>,
        header: &[u8],
    ) -> Result<reqwest::Response, ClientError> {
        let request = crate::crypt::StreamDecryptBody {
            header_b64: b64(header),
            associated_data_b64: b64(associated_data.unwrap_or_default()),
        };
        let signed = (keyward_authz::Operation::Decrypt, name, serde_json::to_vec(&request));
        self.send_stream(&key_path(name, "/decrypt"), body, associated_data, Some(signed)).await
    }

    /// Decrypts a streamed ciphertext. The answer's body is the plaintext; a transfer that
    /// breaks off means the stream was cut or altered after its start: discard what came.
    pub async fn decrypt_stream(
        &self,
        name: &str,
        body: reqwest::Body,
        associated_data: Option<&[u8]>,
    ) -> Result<reqwest::Response, ClientError> {
        self.send_stream(&key_path(name, "/decrypt"), body, associated_data, None).await
    }

    /// A stream, signed over `signed`'s request (in `X-Keyward-Stream-Request`) when this
    /// client has a principal.
    async fn send_stream(
        &self,
        path: &str,
        body: reqwest::Body,
        associated_data: Option<&[u8]>,
        signed: Option<(keyward_authz::Operation, &str, serde_json::Result<Vec<u8>>)>,
    ) -> Result<reqwest::Response, ClientError> {
        use base64::Engine;
        let mut request = self
            .authorized(self.http.post(self.url(path)))
            // A stream takes as long as its size needs; the 30 s deadline is for the rest.
            .timeout(STREAM_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(data) = associated_data {
            request =
                request.header("x-keyward-associated-data", base64::engine::general_purpose::STANDARD.encode(data));
        }
        if let (Some(principal), Some((operation, name, bytes))) = (&self.principal, signed) {
            let bytes = bytes.map_err(|e| ClientError::Signing(e.to_string()))?;
            let (keystore, key) = scope(name);
            for (header, value) in
                principal.headers(operation, keystore, key, &bytes, &[]).map_err(ClientError::Signing)?
            {
                request = request.header(header, value);
            }
            request = request.header(crate::crypt::STREAM_REQUEST_HEADER, b64(&bytes));
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let bytes = response.bytes().await?;
        match serde_json::from_slice::<ErrorResponse>(&bytes) {
            Ok(e) => Err(ClientError::Api { status, code: e.error.code, message: e.error.message }),
            Err(_) => Err(ClientError::Decode { status, reason: "error body is not JSON".into() }),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode { status, reason: e.to_string() });
        }
        match serde_json::from_slice::<ErrorResponse>(&bytes) {
            Ok(e) => Err(ClientError::Api { status, code: e.error.code, message: e.error.message }),
            Err(_) => Err(ClientError::Decode {
                status,
                reason: format!("error body is not JSON: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(200)])),
            }),
        }
    }
}

fn enclave_query(enclave_id: Option<u32>) -> Vec<(&'static str, String)> {
    enclave_id.map(|id| vec![("enclave_id", id.to_string())]).unwrap_or_default()
}

/// Makes aws-lc-rs the process-wide rustls provider (idempotent). reqwest is built without a
/// provider of its own so that keyward links one TLS crypto library, not two; any
/// `reqwest::Client` in the same process needs this first.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Days a signed deletion waits before it is final, unless the caller says otherwise.
pub const DEFAULT_WAITING_DAYS: u32 = 7;

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The keystore and the name within it of a key's full name (`<keystore>/<name>`, or a name
/// in the default keystore): what a signed request about the key names.
pub fn scope(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or((DEFAULT_KEYSTORE, name))
}

/// The path of key `name` (a full name), then `suffix`: `/v1/keys/<name><suffix>` or
/// `/v1/keystores/<keystore>/keys/<name><suffix>`, each part percent-encoded (key names are
/// URL-safe by rule, but a caller's typo must not become another path).
fn key_path(name: &str, suffix: &str) -> String {
    match name.split_once('/') {
        None => format!("/v1/keys/{}{suffix}", path_segment(name)),
        Some((keystore, local)) => {
            format!("/v1/keystores/{}/keys/{}{suffix}", path_segment(keystore), path_segment(local))
        }
    }
}

/// The path of keystore `keystore`'s keys, then `suffix`.
fn keys_path(keystore: &str, suffix: &str) -> String {
    match keystore {
        DEFAULT_KEYSTORE => format!("/v1/keys{suffix}"),
        other => keystore_path(other, &format!("/keys{suffix}")),
    }
}

fn keystore_path(id: &str, suffix: &str) -> String {
    format!("/v1/keystores/{}{suffix}", path_segment(id))
}

/// `text` percent-encoded as one path segment.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pinned_client_takes_https_only() {
        let config = || crate::tls_pin::client_config(crate::tls_pin::PinnedServer::new([0; 32]), None).unwrap();
        assert!(matches!(
            super::Client::with_tls_config("http://127.0.0.1:8443", None, config()),
            Err(super::ClientError::Invalid(_))
        ));
        assert!(super::Client::with_tls_config("https://127.0.0.1:8443", None, config()).is_ok());
    }

    use super::*;

    #[test]
    fn debug_never_prints_the_bearer_token() {
        let token = "0123456789abcdef-secret-bearer-token";
        let client = Client::new("http://127.0.0.1:8080", Some(token.to_owned())).unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("secret-bearer"), "{shown}");
        assert!(shown.contains("[redacted]") && shown.contains("127.0.0.1:8080"), "{shown}");
    }
}

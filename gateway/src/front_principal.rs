//! The principal a front door (BitGo's key provider, ProgressDB's KMS) signs its requests as,
//! when the enclaves have owners. A front door's clients authenticate with what their own
//! protocol has (BitGo: mutual TLS; ProgressDB: the peer's user id on a Unix socket), which
//! only the host can check until client TLS ends in the enclave; the front door then signs,
//! with its own principal key, the same request bodies the keyring API takes, and the enclave
//! checks them against the policies like any other signed request.
//!
//! The owners decide what that principal may do, normally with a keystore policy rule scoped to
//! the front door's keys (`"key_prefix": "bitgo."`): a host that steals the principal's key
//! can do what the rule grants on those keys, and nothing on any other key (docs/security.md).

use std::{path::Path, sync::Arc};

use anyhow::Context;
use axum::{
    body::Bytes,
    http::{HeaderMap, HeaderName, HeaderValue},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_authz::Operation;
use keyward_client::principal::PrincipalSigner;
use keyward_client::{
    crypt::{Decrypt, Encrypt, GenerateDataKey, OpenSecretBody, SealSecretBody, SignPsbtBody},
    keys::{CreateKey, SignWithKey},
};
use keyward_proto::{Authorization, CryptOp, CryptOutput, KeySign, SignFormat, SignPayload, WrappedKey};

use crate::{api::AppState, errors::ApiError, signed};

/// A front door's principal, or none (the enclaves have no owners: nothing is signed).
#[derive(Debug, Clone, Default)]
pub struct FrontPrincipal {
    signer: Option<Arc<PrincipalSigner>>,
}

impl FrontPrincipal {
    /// Reads the principal's PKCS#8 PEM key (`keyward principal new` writes one).
    pub fn load(path: &Path) -> anyhow::Result<FrontPrincipal> {
        let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let signer = PrincipalSigner::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(FrontPrincipal { signer: Some(Arc::new(signer)) })
    }

    /// The principal's id, when there is one.
    pub fn id(&self) -> Option<String> {
        self.signer.as_ref().map(|s| s.id())
    }

    /// `operation` on `key` of the default keystore with `body` (JSON, as the keyring API takes
    /// it), signed now; `None` without a principal.
    pub fn authorize<T: serde::Serialize>(
        &self,
        operation: Operation,
        key: &str,
        body: &T,
    ) -> Result<Option<Authorization>, ApiError> {
        let Some(signer) = &self.signer else { return Ok(None) };
        let bytes = serde_json::to_vec(body).map_err(|e| ApiError::internal(format!("a front door body: {e}")))?;
        let pairs = signer
            .headers(operation, signed::DEFAULT_KEYSTORE, key, &bytes, &[])
            .map_err(|e| ApiError::internal(format!("signing as the front door's principal: {e}")))?;
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            let value = HeaderValue::from_str(&value).map_err(|e| ApiError::internal(e.to_string()))?;
            headers.append(HeaderName::from_static(name), value);
        }
        signed::authorization(&headers, signed::DEFAULT_KEYSTORE, &Bytes::from(bytes))
    }
}

/// The operation and the signed body (the keyring API's shape) of a front door's `op`.
fn crypt_body(op: &CryptOp) -> Result<(Operation, serde_json::Value), ApiError> {
    let b = |bytes: &[u8]| STANDARD.encode(bytes);
    let value = |v: Result<serde_json::Value, serde_json::Error>| v.map_err(|e| ApiError::internal(e.to_string()));
    Ok(match op {
        CryptOp::Encrypt { plaintext, associated_data } => (
            Operation::Encrypt,
            value(serde_json::to_value(Encrypt {
                plaintext_b64: b(plaintext.expose()),
                associated_data_b64: Some(b(associated_data)),
            }))?,
        ),
        CryptOp::Decrypt { ciphertext, associated_data } => (
            Operation::Decrypt,
            value(serde_json::to_value(Decrypt {
                ciphertext_b64: b(ciphertext),
                associated_data_b64: Some(b(associated_data)),
            }))?,
        ),
        CryptOp::DataKey { spec, plaintext, associated_data } => (
            Operation::DataKey,
            value(serde_json::to_value(GenerateDataKey {
                spec: spec.as_str().to_owned(),
                plaintext: *plaintext,
                associated_data_b64: Some(b(associated_data)),
            }))?,
        ),
        CryptOp::SealSecret { secret, associated_data } => (
            Operation::Encrypt,
            value(serde_json::to_value(SealSecretBody {
                secret_b64: b(secret.expose()),
                associated_data_b64: b(associated_data),
            }))?,
        ),
        CryptOp::OpenSecret { sealed, associated_data } => (
            Operation::Decrypt,
            value(serde_json::to_value(OpenSecretBody {
                sealed_b64: b(sealed),
                associated_data_b64: b(associated_data),
            }))?,
        ),
        CryptOp::SignPsbt { psbt } => {
            (Operation::Sign, value(serde_json::to_value(SignPsbtBody { psbt_b64: b(psbt) }))?)
        }
        _ => return Err(ApiError::internal("a front door asked for an operation it has no signed body for")),
    })
}

/// Creates a key for a front door, signed as its principal.
pub(crate) async fn create(app: &AppState, front: &FrontPrincipal, key: CreateKey) -> Result<(), ApiError> {
    let auth = front.authorize(Operation::Create, &key.name, &key)?;
    crate::keys_api::create(app, &keyward_proto::KeystoreId::default_keystore(), vec![key], auth).await.map(drop)
}

/// An encryption operation of a front door, signed as its principal.
pub(crate) async fn crypt(
    app: &AppState,
    front: &FrontPrincipal,
    row: WrappedKey,
    op: CryptOp,
) -> Result<CryptOutput, ApiError> {
    let auth = match front.signer {
        Some(_) => {
            let (operation, body) = crypt_body(&op)?;
            front.authorize(operation, row.identity.name.as_str(), &body)?
        }
        None => None,
    };
    crate::keys_crypt::crypt_signed(app, row, op, auth).await
}

/// A digest to sign for a front door (`SignPayload::Digest`), as a signed request's `KeySign`.
pub(crate) fn key_sign(
    front: &FrontPrincipal,
    row: WrappedKey,
    digest: [u8; 32],
    format: SignFormat,
) -> Result<KeySign, ApiError> {
    let body = SignWithKey {
        digest_hex: Some(hex::encode(digest)),
        algorithm: Some("ecdsa".into()),
        format: Some(crate::keys_sign::format_name(format).into()),
        ..SignWithKey::default()
    };
    let auth = front.authorize(Operation::Sign, row.identity.name.as_str(), &body)?;
    Ok(KeySign {
        row,
        algorithm: keyward_proto::SignAlgorithm::Ecdsa,
        payload: SignPayload::Digest(keyward_proto::Digest(digest)),
        format,
        auth,
    })
}

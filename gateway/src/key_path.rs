//! The keystore and key a path names. `/v1/keys/{name}/…` addresses the default keystore and
//! `/v1/keystores/{keystore}/keys/{name}/…` any other, with the same handlers: the extractors
//! here turn either form into the key's full name (`<keystore>/<name>`, or the bare name in
//! the default keystore), the one the key's rows and the enclave know it by.

use std::collections::HashMap;

use axum::{
    extract::{FromRequestParts, Path},
    http::request::Parts,
};
use keyward_proto::{KeyName, KeystoreId};

use crate::errors::ApiError;

/// The route prefixes every per-keystore route is served under.
pub const PREFIXES: [&str; 2] = ["/v1/keys", "/v1/keystores/{keystore}/keys"];

/// The full name of the key the path names (checked).
#[derive(Debug)]
pub struct KeyPath(pub String);

/// The keystore the path names (the default one for `/v1/keys…`).
#[derive(Debug)]
pub struct KeystorePath(pub KeystoreId);

async fn params<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<HashMap<String, String>, ApiError> {
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::invalid("invalid_path", e.body_text()))?;
    Ok(params)
}

/// The keystore id a path parameter names.
pub fn keystore(id: Option<&str>) -> Result<KeystoreId, ApiError> {
    match id {
        None => Ok(KeystoreId::default_keystore()),
        Some(id) => KeystoreId::parse(id).map_err(|e| ApiError::invalid("invalid_keystore", e.to_string())),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for KeystorePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = params(parts, state).await?;
        keystore(params.get("keystore").map(String::as_str)).map(KeystorePath)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for KeyPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = params(parts, state).await?;
        let keystore = keystore(params.get("keystore").map(String::as_str))?;
        let local = params.get("name").ok_or_else(|| ApiError::internal("a key route without {name}"))?;
        let name =
            KeyName::qualified(&keystore, local).map_err(|e| ApiError::invalid("invalid_key_name", e.to_string()))?;
        Ok(KeyPath(name.to_string()))
    }
}

/// A key name from a request body, within keystore `keystore` (a body never names another).
pub fn key_in(keystore: &KeystoreId, local: &str) -> Result<KeyName, ApiError> {
    KeyName::qualified(keystore, local).map_err(|e| ApiError::invalid("invalid_key_name", e.to_string()))
}

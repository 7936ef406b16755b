//! Bearer-token authentication for the signing and admin endpoints.

use std::path::Path;

use anyhow::{Context, bail};
use aws_lc_rs::{constant_time, digest};
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};

use crate::errors::ApiError;

/// Tokens shorter than this are refused at start.
const MIN_TOKEN_LEN: usize = 32;

/// A token, kept only as its SHA-256 so that comparisons run in constant time and the
/// process never holds it in the clear after start. Inside the enclave (its TLS API) one
/// `Token` may stand for several secrets: an admin certificate's token passes the API's check
/// too.
pub struct Token([u8; 32], Vec<[u8; 32]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

impl Token {
    /// Whether two tokens are the same secret (compared in constant time).
    pub fn same_as(&self, other: &Token) -> bool {
        constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }

    /// A token from its secret.
    pub fn from_secret(secret: &str) -> Self {
        Token(sha256(secret.as_bytes()), Vec::new())
    }

    /// This token, also accepting `other`'s secret.
    pub fn or(mut self, other: &str) -> Self {
        self.1.push(sha256(other.as_bytes()));
        self
    }

    /// Reads a token file. With `require_private_file` (production) a file that group or
    /// others can access is refused.
    pub fn load(path: &Path, require_private_file: bool) -> anyhow::Result<Self> {
        let text = keyward_transport::read_secret_file(path, require_private_file).context("token file")?;
        let token = text.trim();
        if token.len() < MIN_TOKEN_LEN {
            bail!("API token in {} is shorter than {MIN_TOKEN_LEN} characters", path.display());
        }
        Ok(Token(sha256(token.as_bytes()), Vec::new()))
    }

    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing \"Authorization: Bearer <token>\" header",
                )
            })?;
        let presented = sha256(presented.trim().as_bytes());
        // Every accepted secret is compared, so the time does not say which one matched.
        let matches = std::iter::once(&self.0).chain(&self.1).fold(false, |found, accepted| {
            constant_time::verify_slices_are_equal(&presented, accepted).is_ok() | found
        });
        if matches { Ok(()) } else { Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "invalid API token")) }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> anyhow::Result<Token> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("token");
        std::fs::write(&path, text)?;
        Token::load(&path, false)
    }

    #[test]
    fn short_tokens_are_refused() {
        assert!(token("short").unwrap_err().to_string().contains("shorter than 32"));
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let t = token("0123456789abcdef0123456789abcdef\n").unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(t.authorize(&headers).unwrap_err().status, StatusCode::UNAUTHORIZED);
        headers.insert(AUTHORIZATION, "Bearer 0123456789abcdef0123456789abcdeX".parse().unwrap());
        assert_eq!(t.authorize(&headers).unwrap_err().message, "invalid API token");
        headers.insert(AUTHORIZATION, "Bearer 0123456789abcdef0123456789abcdef".parse().unwrap());
        t.authorize(&headers).unwrap();
        headers.insert(AUTHORIZATION, "Basic 0123456789abcdef0123456789abcdef".parse().unwrap());
        assert!(t.authorize(&headers).is_err());
    }

    #[test]
    fn token_files_others_can_read_are_refused_when_they_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef").unwrap();
        for (mode, private) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(Token::load(&path, true).is_ok(), private, "{mode:o}");
            assert!(Token::load(&path, false).is_ok(), "development takes any mode");
        }
    }

    #[test]
    fn equal_tokens_are_recognised() {
        let a = token("0123456789abcdef0123456789abcdef").unwrap();
        assert!(a.same_as(&token("0123456789abcdef0123456789abcdef\n").unwrap()));
        assert!(!a.same_as(&token("0123456789abcdef0123456789abcdeX").unwrap()));
    }

    #[test]
    fn debug_does_not_show_the_token_digest() {
        assert_eq!(format!("{:?}", token("0123456789abcdef0123456789abcdef").unwrap()), "Token([redacted])");
    }
}

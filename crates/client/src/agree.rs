//! Request and response bodies of key agreement (`/v1/keys/{name}/jwk`,
//! `/derive-shared-secret`, `/unwrap`; `/v1/wrap`). Keys and JWE parts travel as JOSE writes
//! them (base64url without padding); other binary values are standard base64.

use serde::{Deserialize, Serialize};

/// A public JWK: `OKP`/`X25519` with `x`, or `EC`/`P-256` with `x` and `y`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    /// `OKP` or `EC`.
    pub kty: String,
    /// `X25519` or `P-256`.
    pub crv: String,
    /// base64url.
    pub x: String,
    /// base64url (`EC` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The key's name, in keyward's answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

#[cfg(feature = "sign-fields")]
impl PublicJwk {
    /// The curve and the public key as the keyring takes it (X25519 raw; P-256 SEC1
    /// uncompressed), or why the JWK is not one.
    pub fn point(&self) -> Result<(keyward_keyring::Curve, Vec<u8>), String> {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        use keyward_keyring::{Curve, peer_public_key};
        let coordinate = |name: &str, value: &str| {
            URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| format!("the JWK's {name} is not 32 bytes of base64url"))
        };
        match (self.kty.as_str(), self.crv.as_str()) {
            ("OKP", "X25519") => Ok((Curve::X25519, coordinate("x", &self.x)?)),
            ("EC", "P-256") => {
                let y = self.y.as_deref().ok_or("an EC JWK needs y")?;
                let point = [&[4u8][..], &coordinate("x", &self.x)?, &coordinate("y", y)?].concat();
                let point = peer_public_key(Curve::P256, &point).map_err(|e| e.to_string())?;
                Ok((Curve::P256, point))
            }
            (kty, crv) => Err(format!("a JWK of kty {kty:?} and crv {crv:?}: use OKP with X25519, or EC with P-256")),
        }
    }
}

/// `POST /v1/keys/{name}/derive-shared-secret`: the peer's public key, one of the two forms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeriveSharedSecret {
    /// Raw X25519 (32 bytes) or SEC1 P-256, standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_b64: Option<String>,
    /// Or a JWK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_jwk: Option<PublicJwk>,
    /// The key version (default: the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// The raw ECDH secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedSecret {
    /// X25519's 32 bytes, or P-256's x coordinate.
    pub shared_secret_b64: String,
    /// The key version that agreed.
    pub version: u32,
}

/// `POST /v1/keys/{name}/unwrap`: a JWE recipient's `ECDH-ES+A256KW` parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnwrapKey {
    /// `ECDH-ES+A256KW` (the only one; the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// The JWE's ephemeral public key.
    pub epk: PublicJwk,
    /// The JWE's encrypted key, base64url.
    pub encrypted_key: String,
    /// Agreement PartyUInfo, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apu: Option<String>,
    /// Agreement PartyVInfo, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apv: Option<String>,
    /// The key version it was wrapped to (default: the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// An unwrapped content key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnwrappedKey {
    /// Standard base64.
    pub cek_b64: String,
    /// The key version that unwrapped it.
    pub version: u32,
}

/// `POST /v1/wrap`: a content key to wrap to a recipient's public key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrapKey {
    /// The recipient's public JWK.
    pub recipient_jwk: PublicJwk,
    /// 16 to 64 bytes, a multiple of 8; standard base64.
    pub cek_b64: String,
    /// Agreement PartyUInfo, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apu: Option<String>,
    /// Agreement PartyVInfo, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apv: Option<String>,
}

/// A wrapped content key: the JWE's `epk` header and its encrypted key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrappedKey {
    /// `ECDH-ES+A256KW`.
    pub alg: String,
    /// The ephemeral public key.
    pub epk: PublicJwk,
    /// base64url.
    pub encrypted_key: String,
}

//! A principal's key, and the headers that carry its signature over a request
//! (docs/authorization.md specifies them and the canonical encoding).

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair},
};
use base64::Engine;
use keyward_authz::{Operation, RequestToSign};

/// `ed25519:<hex>` or `p256:<hex>`: the requester's public key.
pub const PRINCIPAL_HEADER: &str = "x-keyward-principal";
/// Hex of the requester's signature over the canonical request.
pub const SIGNATURE_HEADER: &str = "x-keyward-signature";
/// 32 hex digits, random per request.
pub const REQUEST_ID_HEADER: &str = "x-keyward-request-id";
/// Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-keyward-timestamp";
/// `<algorithm>:<public key hex>:<signature hex>` of another principal approving the same
/// request; repeated for each.
pub const APPROVAL_HEADER: &str = "x-keyward-approval";

enum Pair {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

/// A principal's private key (Ed25519 or P-256), read from a PKCS#8 PEM file.
pub struct PrincipalSigner {
    pair: Pair,
}

impl std::fmt::Debug for PrincipalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalSigner").field("public", &self.public()).finish_non_exhaustive()
    }
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

impl PrincipalSigner {
    /// A PKCS#8 `PRIVATE KEY` PEM of Ed25519 or P-256 (`openssl genpkey -algorithm ed25519`,
    /// or `keyward principal new`).
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let body = text
            .split_once(PEM_BEGIN)
            .and_then(|(_, rest)| rest.split_once(PEM_END))
            .map(|(body, _)| body)
            .ok_or("not a PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)")?;
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD.decode(compact).map_err(|_| "the PEM body is not base64")?,
        );
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
            return Ok(PrincipalSigner { pair: Pair::Ed25519(pair) });
        }
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
            .map(|pair| PrincipalSigner { pair: Pair::P256(pair) })
            .map_err(|_| "the key is neither Ed25519 nor P-256 PKCS#8".to_owned())
    }

    /// A new Ed25519 key, as PEM.
    pub fn generate_ed25519_pem() -> Result<zeroize::Zeroizing<String>, String> {
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| "no randomness")?;
        let b64 = zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der.as_ref()));
        let mut pem = zeroize::Zeroizing::new(format!("{PEM_BEGIN}\n"));
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        Ok(pem)
    }

    /// The principal's id (32 hex digits), as policies name it.
    pub fn id(&self) -> String {
        let key = match &self.pair {
            Pair::Ed25519(p) => keyward_authz::PrincipalKey::ed25519(p.public_key().as_ref()),
            Pair::P256(p) => keyward_authz::PrincipalKey::p256(p.public_key().as_ref()),
        };
        // The key came from a valid pair, so it parses.
        key.map(|k| k.id().to_string()).unwrap_or_default()
    }

    /// `ed25519:<hex>` or `p256:<hex>` (what the enclave's `--owner` takes).
    pub fn public(&self) -> String {
        match &self.pair {
            Pair::Ed25519(p) => format!("ed25519:{}", hex::encode(p.public_key().as_ref())),
            Pair::P256(p) => format!("p256:{}", hex::encode(p.public_key().as_ref())),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        match &self.pair {
            Pair::Ed25519(p) => Ok(p.sign(message).as_ref().to_vec()),
            Pair::P256(p) => {
                p.sign(&SystemRandom::new(), message).map(|s| s.as_ref().to_vec()).map_err(|_| "signing failed".into())
            }
        }
    }

    /// The headers that authorize `operation` on `key` of `keystore` with exactly `body`,
    /// signed now; `approvers` sign the same request.
    pub fn headers(
        &self,
        operation: Operation,
        keystore: &str,
        key: &str,
        body: &[u8],
        approvers: &[&PrincipalSigner],
    ) -> Result<Vec<(&'static str, String)>, String> {
        let mut request_id = [0u8; 16];
        getrandom::fill(&mut request_id).map_err(|e| format!("no randomness: {e}"))?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| "the clock is before 1970")?
            .as_secs();
        let request = RequestToSign {
            operation,
            keystore: keystore.to_owned(),
            key: key.to_owned(),
            body_digest: RequestToSign::digest(body),
            request_id,
            timestamp,
        };
        let canonical = request.canonical().map_err(|e| e.to_string())?;
        let mut headers = vec![
            (PRINCIPAL_HEADER, self.public()),
            (SIGNATURE_HEADER, hex::encode(self.sign(&canonical)?)),
            (REQUEST_ID_HEADER, hex::encode(request_id)),
            (TIMESTAMP_HEADER, timestamp.to_string()),
        ];
        for approver in approvers {
            headers
                .push((APPROVAL_HEADER, format!("{}:{}", approver.public(), hex::encode(approver.sign(&canonical)?))));
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_and_its_signatures_verify_as_the_enclave_checks_them() {
        let pem = PrincipalSigner::generate_ed25519_pem().unwrap();
        let signer = PrincipalSigner::from_pem(&pem).unwrap();
        let headers = signer.headers(Operation::Sign, "default", "treasury", b"{}", &[]).unwrap();
        let get = |name| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap();
        let public = hex::decode(get(PRINCIPAL_HEADER).strip_prefix("ed25519:").unwrap()).unwrap();
        let mut request_id = [0u8; 16];
        hex::decode_to_slice(get(REQUEST_ID_HEADER), &mut request_id).unwrap();
        let request = RequestToSign {
            operation: Operation::Sign,
            keystore: "default".into(),
            key: "treasury".into(),
            body_digest: RequestToSign::digest(b"{}"),
            request_id,
            timestamp: get(TIMESTAMP_HEADER).parse().unwrap(),
        };
        let key = keyward_authz::PrincipalKey::ed25519(&public).unwrap();
        let signature = hex::decode(get(SIGNATURE_HEADER)).unwrap();
        assert!(key.verifies(&request.canonical().unwrap(), &signature));
        assert!(!key.verifies(&RequestToSign { key: "other".into(), ..request }.canonical().unwrap(), &signature));
        assert!(PrincipalSigner::from_pem("not a key").is_err());
    }
}

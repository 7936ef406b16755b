//! Principals: public keys that sign requests. P-256 ECDSA (hardware keys, passkeys) or
//! Ed25519 (services). A principal's id is derived from its key, so a row that names an id with
//! another key is detected by recomputing the id.

use std::fmt;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ED25519, UnparsedPublicKey};

/// A principal's public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PrincipalKey {
    /// P-256, SEC1 (compressed or uncompressed); signatures are ASN.1 DER ECDSA over SHA-256.
    P256(Vec<u8>),
    /// Ed25519, 32 bytes; signatures are RFC 8032 over the message.
    Ed25519([u8; 32]),
}

/// Why a public key is not a principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    /// Not a point of P-256 in SEC1 form.
    #[error("not a P-256 public key (SEC1, 33 or 65 bytes)")]
    BadP256,
    /// Not 32 bytes.
    #[error("an Ed25519 public key is 32 bytes, this one has {0}")]
    BadEd25519(usize),
}

impl PrincipalKey {
    /// A P-256 key in SEC1 form. Its shape is checked here; a key that is not a point of
    /// the curve verifies no signature (aws-lc-rs parses it at each verification).
    pub fn p256(sec1: &[u8]) -> Result<Self, PrincipalError> {
        match (sec1.len(), sec1.first()) {
            (33, Some(2 | 3)) | (65, Some(4)) => Ok(PrincipalKey::P256(sec1.to_vec())),
            _ => Err(PrincipalError::BadP256),
        }
    }

    /// An Ed25519 key.
    pub fn ed25519(bytes: &[u8]) -> Result<Self, PrincipalError> {
        bytes.try_into().map(PrincipalKey::Ed25519).map_err(|_| PrincipalError::BadEd25519(bytes.len()))
    }

    /// A key from its algorithm name (`ed25519`, `p256`) and bytes.
    pub fn from_parts(algorithm: &str, bytes: &[u8]) -> Result<Self, String> {
        match algorithm {
            "ed25519" => Self::ed25519(bytes).map_err(|e| e.to_string()),
            "p256" => Self::p256(bytes).map_err(|e| e.to_string()),
            other => Err(format!(
                "unknown principal algorithm {:?}: use ed25519 or p256",
                other.chars().take(16).collect::<String>()
            )),
        }
    }

    /// Parses `ed25519:<64 hex>` or `p256:<SEC1 hex>` (the form `--owner` and the gateway's
    /// `authorization.owners` take).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (algorithm, hex_key) = text.split_once(':').ok_or_else(|| {
            format!("a principal is ed25519:<hex> or p256:<hex>, not {:?}", text.chars().take(16).collect::<String>())
        })?;
        let bytes = hex::decode(hex_key).map_err(|_| format!("the {algorithm} principal key is not hex"))?;
        Self::from_parts(algorithm, &bytes)
    }

    fn algorithm_byte(&self) -> u8 {
        match self {
            PrincipalKey::P256(_) => 1,
            PrincipalKey::Ed25519(_) => 2,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            PrincipalKey::P256(key) => key,
            PrincipalKey::Ed25519(key) => key,
        }
    }

    /// Whether `signature` signs `message` under this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm: &dyn aws_lc_rs::signature::VerificationAlgorithm = match self {
            PrincipalKey::P256(_) => &ECDSA_P256_SHA256_ASN1,
            PrincipalKey::Ed25519(_) => &ED25519,
        };
        UnparsedPublicKey::new(algorithm, self.bytes()).verify(message, signature).is_ok()
    }

    /// The id this key has: the first 16 bytes of SHA-256 over a label, the algorithm and
    /// the key.
    pub fn id(&self) -> PrincipalId {
        let mut input = b"keyward principal v1\0".to_vec();
        input.push(self.algorithm_byte());
        input.extend_from_slice(self.bytes());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest.as_ref()[..16]);
        PrincipalId(id)
    }
}

/// A principal's id (derived from its key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrincipalId(pub [u8; 16]);

impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrincipalId({self})")
    }
}

/// A principal: its key and the id derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    key: PrincipalKey,
    id: PrincipalId,
}

impl Principal {
    /// The principal of `key`.
    pub fn new(key: PrincipalKey) -> Self {
        let id = key.id();
        Principal { key, id }
    }

    /// A stored principal: `id` must be the one `key` derives (a row re-keyed by the host is
    /// refused).
    pub fn stored(id: PrincipalId, key: PrincipalKey) -> Option<Self> {
        (key.id() == id).then_some(Principal { key, id })
    }

    /// Its id.
    pub fn id(&self) -> PrincipalId {
        self.id
    }

    /// Its key.
    pub fn key(&self) -> &PrincipalKey {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::{
        rand::SystemRandom,
        signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair},
    };

    use super::*;

    pub(crate) fn ed25519(seed: u8) -> (Ed25519KeyPair, Principal) {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
        let principal = Principal::new(PrincipalKey::ed25519(pair.public_key().as_ref()).unwrap());
        (pair, principal)
    }

    #[test]
    fn both_kinds_verify_their_own_signatures_only() {
        let (pair, principal) = ed25519(1);
        let signature = pair.sign(b"request");
        assert!(principal.key().verifies(b"request", signature.as_ref()));
        assert!(!principal.key().verifies(b"request!", signature.as_ref()));
        let (_, other) = ed25519(2);
        assert!(!other.key().verifies(b"request", signature.as_ref()));

        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let principal = Principal::new(PrincipalKey::p256(pair.public_key().as_ref()).unwrap());
        let signature = pair.sign(&rng, b"request").unwrap();
        assert!(principal.key().verifies(b"request", signature.as_ref()));
        assert!(!principal.key().verifies(b"other", signature.as_ref()));
    }

    #[test]
    fn ids_are_derived_so_a_re_keyed_row_is_refused() {
        let (_, a) = ed25519(1);
        let (_, b) = ed25519(2);
        assert_ne!(a.id(), b.id());
        assert_eq!(Principal::stored(a.id(), a.key().clone()), Some(a.clone()));
        assert_eq!(Principal::stored(a.id(), b.key().clone()), None, "a's id with b's key");
        // The same 32 bytes as another algorithm are another principal.
        let PrincipalKey::Ed25519(bytes) = a.key() else { unreachable!() };
        let as_p256 = PrincipalKey::P256([&[2u8][..], bytes].concat());
        assert_ne!(as_p256.id(), a.id());
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert_eq!(PrincipalKey::ed25519(&[1; 31]), Err(PrincipalError::BadEd25519(31)));
        assert_eq!(PrincipalKey::p256(&[9; 33]), Err(PrincipalError::BadP256));
        assert_eq!(PrincipalKey::p256(&[2; 20]), Err(PrincipalError::BadP256));
    }
}

//! The request a principal signs: its canonical encoding, which other languages can produce
//! byte for byte (docs/authorization.md specifies it).
//!
//! ```text
//! "keyward request v1\0"
//! ‖ operation   (u16 BE length ‖ ASCII name)
//! ‖ keystore    (u16 BE length ‖ UTF-8)
//! ‖ key         (u16 BE length ‖ UTF-8; empty for keystore-wide operations)
//! ‖ body digest (32 bytes: SHA-256 of the request body as sent)
//! ‖ request id  (16 bytes, random per request)
//! ‖ timestamp   (u64 BE, Unix seconds)
//! ```

/// What a principal may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    DataKey,
    Create,
    Import,
    Export,
    Rotate,
    Disable,
    Delete,
    SetPolicy,
    /// Key agreement: the raw ECDH secret of a key and a peer (`derive-shared-secret`).
    Agree,
    /// Use a disabled key again (apart from `disable`, so that a principal trusted to stop a
    /// key cannot undo the owners' stop).
    Enable,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 14] = [
        Operation::Sign,
        Operation::Verify,
        Operation::Encrypt,
        Operation::Decrypt,
        Operation::DataKey,
        Operation::Create,
        Operation::Import,
        Operation::Export,
        Operation::Rotate,
        Operation::Disable,
        Operation::Delete,
        Operation::SetPolicy,
        Operation::Agree,
        Operation::Enable,
    ];

    /// The name in policies and in the canonical encoding.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Sign => "sign",
            Operation::Verify => "verify",
            Operation::Encrypt => "encrypt",
            Operation::Decrypt => "decrypt",
            Operation::DataKey => "datakey",
            Operation::Create => "create",
            Operation::Import => "import",
            Operation::Export => "export",
            Operation::Rotate => "rotate",
            Operation::Disable => "disable",
            Operation::Delete => "delete",
            Operation::SetPolicy => "set-policy",
            Operation::Agree => "agree",
            Operation::Enable => "enable",
        }
    }

    /// Parses [`Operation::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// Whether a replay of the request must be refused: it changes stored state or releases
    /// key material. Repeating a signature, a verification, an encryption, a decryption or a
    /// data key gives the replayer nothing the first answer did not.
    pub fn refuses_replay(self) -> bool {
        !matches!(
            self,
            Operation::Sign
                | Operation::Verify
                | Operation::Encrypt
                | Operation::Decrypt
                | Operation::DataKey
                | Operation::Agree
        )
    }
}

/// A request as its principal signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestToSign {
    pub operation: Operation,
    pub keystore: String,
    pub key: String,
    pub body_digest: [u8; 32],
    pub request_id: [u8; 16],
    pub timestamp: u64,
}

const LABEL: &[u8] = b"keyward request v1\0";

/// A keystore or key name longer than a field holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a keystore or key name in a signed request is at most 65,535 bytes, this one has {0}")]
pub struct FieldTooLong(pub usize);

fn field(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), FieldTooLong> {
    let len = u16::try_from(bytes.len()).map_err(|_| FieldTooLong(bytes.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

impl RequestToSign {
    /// The bytes the principal signs.
    pub fn canonical(&self) -> Result<Vec<u8>, FieldTooLong> {
        let mut out = Vec::with_capacity(LABEL.len() + 6 + 16 + self.keystore.len() + self.key.len() + 56);
        out.extend_from_slice(LABEL);
        field(&mut out, self.operation.as_str().as_bytes())?;
        field(&mut out, self.keystore.as_bytes())?;
        field(&mut out, self.key.as_bytes())?;
        out.extend_from_slice(&self.body_digest);
        out.extend_from_slice(&self.request_id);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        Ok(out)
    }

    /// SHA-256 of a request body, as the request carries it.
    pub fn digest(body: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body).as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RequestToSign {
        RequestToSign {
            operation: Operation::Sign,
            keystore: "default".into(),
            key: "treasury".into(),
            body_digest: RequestToSign::digest(b"{}"),
            request_id: [7; 16],
            timestamp: 1_764_547_200,
        }
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        let bytes = request().canonical().unwrap();
        let expected = [
            &b"keyward request v1\0"[..],
            &[0, 4],
            b"sign",
            &[0, 7],
            b"default",
            &[0, 8],
            b"treasury",
            &RequestToSign::digest(b"{}"),
            &[7; 16],
            &1_764_547_200u64.to_be_bytes(),
        ]
        .concat();
        assert_eq!(bytes, expected);
        // The worked example of docs/authorization.md, computed there with Python.
        assert_eq!(
            hex::encode(RequestToSign::digest(&bytes)),
            "c99a8bad289b5abfa1afd0a9b579224779aa8b92c0151532422d40b5932c8f07"
        );
    }

    #[test]
    fn every_field_changes_the_encoding_and_fields_cannot_slide_into_each_other() {
        let base = request().canonical().unwrap();
        let changes: [fn(&mut RequestToSign); 6] = [
            |r| r.operation = Operation::Verify,
            |r| r.keystore = "other".into(),
            |r| r.key = "treasury2".into(),
            |r| r.body_digest[0] ^= 1,
            |r| r.request_id[15] ^= 1,
            |r| r.timestamp += 1,
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut r = request();
            change(&mut r);
            assert_ne!(r.canonical().unwrap(), base, "change {i}");
        }
        // "ab" + "c" and "a" + "bc" are different requests.
        let mut one = request();
        (one.keystore, one.key) = ("ab".into(), "c".into());
        let mut two = request();
        (two.keystore, two.key) = ("a".into(), "bc".into());
        assert_ne!(one.canonical().unwrap(), two.canonical().unwrap());
        let mut long = request();
        long.key = "k".repeat(70_000);
        assert_eq!(long.canonical(), Err(FieldTooLong(70_000)), "refused, never truncated");
    }

    #[test]
    fn operations_round_trip_by_name_and_only_harmless_repeats_are_allowed() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
        }
        assert_eq!(Operation::parse("SIGN"), None);
        assert!(!Operation::Sign.refuses_replay() && !Operation::DataKey.refuses_replay());
        assert!(
            Operation::Rotate.refuses_replay()
                && Operation::Export.refuses_replay()
                && Operation::SetPolicy.refuses_replay()
        );
    }
}

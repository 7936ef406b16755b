//! Every message type of the link decoded from arbitrary CBOR bodies, in two ways per input:
//! the raw bytes as a body (mutations of real encoded messages from the seed corpus), and a
//! CBOR value built from the bytes out of the protocol's own field and variant names, so deep
//! message shapes are reached without the fuzzer having to guess names.
//!
//! Checks: decoding never panics, and anything that decodes re-encodes and decodes to the
//! same value.
#![no_main]

use keyward_fuzz::round_trips;
use keyward_proto::{
    AttestRequest, Authenticate, AwsCredentials, Commit, CompressedPublicKey, Digest, EnclaveId, EnclaveInfo,
    EnclaveState, ErrorCode, ErrorReply, Hello, HelloReply, NsmKind, Provision, PublicKeyInfo, Reply, Request,
    RequestFrame, Response, ResponseFrame, Rotate, Scheme, SealedKey, SignRequest, SignatureReply, Status, Unseal,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_cbor::Value;

fuzz_target!(|data: &[u8]| {
    decode_as_every_message(data);
    if let Ok(shape) = Unstructured::new(data).arbitrary::<Shape>() {
        // A tree of Values always serialises.
        let body = serde_cbor::to_vec(&shape.into_value(0)).expect("a CBOR value tree encodes");
        decode_as_every_message(&body);
    }
});

fn decode_as_every_message(body: &[u8]) {
    round_trips::<RequestFrame>(body);
    round_trips::<ResponseFrame>(body);
    round_trips::<Request>(body);
    round_trips::<Response>(body);
    round_trips::<Reply>(body);
    round_trips::<Hello>(body);
    round_trips::<Authenticate>(body);
    round_trips::<Provision>(body);
    round_trips::<Commit>(body);
    round_trips::<Unseal>(body);
    round_trips::<Rotate>(body);
    round_trips::<SignRequest>(body);
    round_trips::<Vec<SignRequest>>(body);
    round_trips::<AttestRequest>(body);
    round_trips::<HelloReply>(body);
    round_trips::<EnclaveInfo>(body);
    round_trips::<NsmKind>(body);
    round_trips::<EnclaveState>(body);
    round_trips::<Status>(body);
    round_trips::<SignatureReply>(body);
    round_trips::<Vec<Result<SignatureReply, ErrorReply>>>(body);
    round_trips::<PublicKeyInfo>(body);
    round_trips::<ErrorReply>(body);
    round_trips::<ErrorCode>(body);
    round_trips::<AwsCredentials>(body);
    round_trips::<SealedKey>(body);
    round_trips::<CompressedPublicKey>(body);
    round_trips::<Digest>(body);
    round_trips::<EnclaveId>(body);
    round_trips::<Scheme>(body);
}

/// Deeper trees add nothing the decoders have not refused already (no message nests more
/// than five levels) and only slow the fuzzer down.
const MAX_DEPTH: usize = 8;

/// A CBOR value drawn from the fuzzer's bytes, biased towards what the protocol uses.
#[derive(Debug, Arbitrary)]
enum Shape {
    Null,
    Bool(bool),
    Unsigned(u64),
    Negative(i64),
    Text(Name),
    FreeText(String),
    Bytes(Vec<u8>),
    /// Byte strings of the fixed sizes the protocol uses (digest, public key, signature).
    SizedBytes(Size, u8),
    Array(Vec<Shape>),
    Map(Vec<(Name, Shape)>),
    /// A one-entry map: how serde encodes an enum variant with data.
    Variant(Name, Box<Shape>),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Size {
    Digest = 32,
    PublicKey = 33,
    Signature = 64,
    Short = 31,
    Long = 65,
}

/// Field names, enum variant names and enum values of the protocol.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Name {
    Id,
    Request,
    Reply,
    Ok,
    Err,
    Hello,
    Authenticate,
    Provision,
    Commit,
    Unseal,
    Sign,
    SignBatch,
    PublicKey,
    Status,
    Attest,
    Rotate,
    Provisioned,
    Signature,
    Signatures,
    Attestation,
    Rotated,
    ProtocolVersion,
    EnclaveIdField,
    KmsKeyId,
    Region,
    Credentials,
    PublicKeyField,
    KeyEpoch,
    Sealed,
    Digest,
    Scheme,
    Nonce,
    Info,
    StatusField,
    SoftwareVersion,
    Nsm,
    KmsRegion,
    KmsEndpoint,
    AttestationField,
    State,
    SignatureField,
    RecoveryId,
    XonlyPublicKey,
    Code,
    Message,
    AccessKeyId,
    SecretAccessKey,
    SessionToken,
    ExpiresAt,
    KmsEncryptedDek,
    EncryptedPrivateKey,
    Ecdsa,
    Bip340,
    Nitro,
    Mock,
    Empty,
    AwaitingCommit,
    Ready,
    BadRequest,
    VersionMismatch,
    Internal,
    Challenge,
    Unauthenticated,
}

impl Name {
    fn as_str(self) -> &'static str {
        match self {
            Name::Id => "id",
            Name::Request => "request",
            Name::Reply => "reply",
            Name::Ok => "Ok",
            Name::Err => "Err",
            Name::Hello => "Hello",
            Name::Authenticate => "Authenticate",
            Name::Provision => "Provision",
            Name::Commit => "Commit",
            Name::Unseal => "Unseal",
            Name::Sign => "Sign",
            Name::SignBatch => "SignBatch",
            Name::PublicKey => "PublicKey",
            Name::Status => "Status",
            Name::Attest => "Attest",
            Name::Rotate => "Rotate",
            Name::Provisioned => "Provisioned",
            Name::Signature => "Signature",
            Name::Signatures => "Signatures",
            Name::Attestation => "Attestation",
            Name::Rotated => "Rotated",
            Name::ProtocolVersion => "protocol_version",
            Name::EnclaveIdField => "enclave_id",
            Name::KmsKeyId => "kms_key_id",
            Name::Region => "region",
            Name::Credentials => "credentials",
            Name::PublicKeyField => "public_key",
            Name::KeyEpoch => "key_epoch",
            Name::Sealed => "sealed",
            Name::Digest => "digest",
            Name::Scheme => "scheme",
            Name::Nonce => "nonce",
            Name::Info => "info",
            Name::StatusField => "status",
            Name::SoftwareVersion => "software_version",
            Name::Nsm => "nsm",
            Name::KmsRegion => "kms_region",
            Name::KmsEndpoint => "kms_endpoint",
            Name::AttestationField => "attestation",
            Name::State => "state",
            Name::SignatureField => "signature",
            Name::RecoveryId => "recovery_id",
            Name::XonlyPublicKey => "xonly_public_key",
            Name::Code => "code",
            Name::Message => "message",
            Name::AccessKeyId => "access_key_id",
            Name::SecretAccessKey => "secret_access_key",
            Name::SessionToken => "session_token",
            Name::ExpiresAt => "expires_at",
            Name::KmsEncryptedDek => "kms_encrypted_dek",
            Name::EncryptedPrivateKey => "encrypted_private_key",
            Name::Ecdsa => "ecdsa",
            Name::Bip340 => "bip340",
            Name::Nitro => "nitro",
            Name::Mock => "mock",
            Name::Empty => "empty",
            Name::AwaitingCommit => "awaiting_commit",
            Name::Ready => "ready",
            Name::BadRequest => "bad_request",
            Name::VersionMismatch => "version_mismatch",
            Name::Internal => "internal",
            Name::Challenge => "challenge",
            Name::Unauthenticated => "unauthenticated",
        }
    }

    fn text(self) -> Value {
        Value::Text(self.as_str().to_owned())
    }
}

impl Shape {
    fn into_value(self, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        match self {
            Shape::Null => Value::Null,
            Shape::Bool(b) => Value::Bool(b),
            Shape::Unsigned(n) => Value::Integer(n.into()),
            Shape::Negative(n) => Value::Integer(n.into()),
            Shape::Text(name) => name.text(),
            Shape::FreeText(s) => Value::Text(s),
            Shape::Bytes(b) => Value::Bytes(b),
            Shape::SizedBytes(size, fill) => Value::Bytes(vec![fill; size as usize]),
            Shape::Array(items) => Value::Array(items.into_iter().map(|s| s.into_value(depth + 1)).collect()),
            Shape::Map(entries) => {
                Value::Map(entries.into_iter().map(|(k, v)| (k.text(), v.into_value(depth + 1))).collect())
            }
            Shape::Variant(name, inner) => {
                Value::Map([(name.text(), inner.into_value(depth + 1))].into_iter().collect())
            }
        }
    }
}

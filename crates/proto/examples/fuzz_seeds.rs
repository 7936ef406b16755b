//! Writes seed inputs for the link fuzz targets: one valid encoded message of every request
//! and response variant, as CBOR bodies (`cbor_messages/`) and as length-prefixed frames
//! (`frame_decoder/`, plus a stream of several frames and the edge cases of the reader).
//! Generated from the current message types, so the seeds never go stale.
//!
//! Usage: `cargo run -p keyward-proto --example fuzz_seeds -- OUT_DIR`

use std::{error::Error, fs, path::Path};

use keyward_proto::{
    AttestRequest, Authenticate, AwsCredentials, Commit, CompressedPublicKey, Digest, EnclaveId, EnclaveInfo,
    EnclaveState, ErrorCode, ErrorReply, Hello, HelloReply, MAX_FRAME_LEN, NsmKind, PROTOCOL_VERSION, Provision,
    PublicKeyInfo, Reply, Request, RequestFrame, Response, ResponseFrame, Rotate, Scheme, SealedKey, SignRequest,
    SignatureReply, Status, Unseal, encode,
};
use zeroize::Zeroizing;

fn main() -> Result<(), Box<dyn Error>> {
    let out = std::env::args().nth(1).ok_or("usage: fuzz_seeds OUT_DIR")?;
    let out = Path::new(&out);
    let bodies = out.join("cbor_messages");
    let frames = out.join("frame_decoder");
    fs::create_dir_all(&bodies)?;
    fs::create_dir_all(&frames)?;

    let mut stream = Vec::new();
    let mut write = |name: &str, frame: Vec<u8>| -> Result<(), Box<dyn Error>> {
        fs::write(bodies.join(format!("{name}.cbor")), &frame[4..])?;
        fs::write(frames.join(format!("{name}.frame")), &frame)?;
        stream.extend_from_slice(&frame);
        Ok(())
    };
    for (i, request) in requests().into_iter().enumerate() {
        let name = format!("request_{i:02}_{}", variant_name(&request, 1));
        write(&name, encode(&RequestFrame { id: i as u64 + 1, request })?)?;
    }
    for (i, reply) in replies().into_iter().enumerate() {
        let name = format!("response_{i:02}_{}", variant_name(&reply, 2));
        write(&name, encode(&ResponseFrame { id: i as u64 + 1, reply })?)?;
    }
    // Several frames back to back, as on a live link, then the reader's edge cases: a header
    // announcing one byte over the limit, and a frame cut short.
    fs::write(frames.join("stream.frames"), &stream)?;
    fs::write(frames.join("oversized_header.frame"), ((MAX_FRAME_LEN + 1) as u32).to_be_bytes())?;
    fs::write(frames.join("truncated.frame"), &stream[..stream.len().min(9)])?;
    println!("wrote fuzz seeds to {}", out.display());
    Ok(())
}

/// The first `words` names of the `Debug` output (`Ok(Hello(..` gives `ok_hello`), for file
/// names.
fn variant_name<T: std::fmt::Debug>(value: &T, words: usize) -> String {
    let shown = format!("{value:?}").to_lowercase();
    shown.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(words).collect::<Vec<_>>().join("_")
}

const KMS_KEY: &str = "arn:aws:kms:us-east-1:000000000000:key/0b9a5c8e-1111-2222-3333-444455556666";

fn public_key() -> CompressedPublicKey {
    let mut key = [0x5a; 33];
    key[0] = 0x02;
    CompressedPublicKey(key)
}

fn credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: "AKIAFUZZSEEDEXAMPLE".into(),
        secret_access_key: Zeroizing::new("fuzz-seed-secret-access-key".into()),
        session_token: Some(Zeroizing::new("fuzz-seed-session-token".into())),
        expires_at: Some(1_900_000_000),
    }
}

fn sealed() -> SealedKey {
    SealedKey {
        enclave_id: EnclaveId(1),
        kms_encrypted_dek: vec![0xc1; 184],
        encrypted_private_key: vec![0xe7; 61],
        public_key: public_key(),
        kms_key_id: KMS_KEY.into(),
        key_epoch: 3,
    }
}

fn status() -> Status {
    Status {
        state: EnclaveState::Ready,
        enclave_id: Some(EnclaveId(1)),
        public_key: Some(public_key()),
        key_epoch: Some(3),
    }
}

fn signature(scheme: Scheme) -> SignatureReply {
    SignatureReply {
        scheme,
        signature: [0x3c; 64],
        recovery_id: if scheme == Scheme::Ecdsa { Some(1) } else { None },
        receipt: None,
    }
}

fn requests() -> Vec<Request> {
    let sign = |scheme| SignRequest { digest: Digest([0x11; 32]), scheme, auth: None };
    vec![
        Request::Hello(Hello { protocol_version: PROTOCOL_VERSION }),
        Request::Authenticate(Authenticate { public_key: [0x2d; 32], signature: [0x5e; 64] }),
        Request::Provision(Provision {
            enclave_id: EnclaveId(1),
            kms_key_id: KMS_KEY.into(),
            region: "us-east-1".into(),
            credentials: credentials(),
        }),
        Request::Commit(Commit { enclave_id: EnclaveId(1), public_key: public_key(), key_epoch: 1 }),
        Request::Unseal(Unseal { sealed: sealed(), credentials: credentials() }),
        Request::Sign(sign(Scheme::Ecdsa)),
        Request::SignBatch(vec![sign(Scheme::Ecdsa), sign(Scheme::Bip340)]),
        Request::PublicKey,
        Request::Status,
        Request::Attest(AttestRequest { nonce: vec![0x4e; 32] }),
        Request::Rotate(Rotate { sealed: sealed(), credentials: credentials() }),
    ]
}

fn replies() -> Vec<Reply> {
    let info = EnclaveInfo {
        software_version: "0.1.0".into(),
        nsm: NsmKind::Mock,
        kms_key_id: KMS_KEY.into(),
        kms_region: "us-east-1".into(),
        kms_endpoint: "http://127.0.0.1:4567".into(),
        attestation: true,
        authorization: None,
    };
    vec![
        Reply::Ok(Response::Hello(HelloReply { protocol_version: PROTOCOL_VERSION, info, challenge: [0xc4; 32] })),
        Reply::Ok(Response::Provisioned(sealed())),
        Reply::Ok(Response::Status(status())),
        Reply::Ok(Response::Signature(signature(Scheme::Ecdsa))),
        Reply::Ok(Response::Signatures(vec![
            Ok(signature(Scheme::Bip340)),
            Err(ErrorReply::new(ErrorCode::BadRequest, "digest must be 32 bytes")),
        ])),
        Reply::Ok(Response::PublicKey(PublicKeyInfo {
            enclave_id: EnclaveId(1),
            public_key: public_key(),
            xonly_public_key: [0x5a; 32],
            key_epoch: 3,
        })),
        Reply::Ok(Response::Attestation(vec![0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0])),
        Reply::Ok(Response::Rotated(sealed())),
        Reply::Err(ErrorReply::new(ErrorCode::VersionMismatch, "enclave speaks protocol 1")),
    ]
}

#![doc = include_str!("../README.md")]

pub mod fault;
mod frame;
mod message;
#[cfg(test)]
mod properties;
mod types;
mod writer;

pub use frame::{
    FRAME_STALL_LIMIT, FrameError, MAX_FRAME_LEN, decode, decode_request_id, encode, read_frame, read_frame_within,
    write_frame,
};
pub use message::{
    AttestRequest, Commit, EnclaveInfo, EnclaveState, ErrorCode, ErrorReply, Hello, HelloReply, NsmKind, Provision,
    PublicKeyInfo, Reply, Request, RequestFrame, Response, ResponseFrame, Rotate, SignRequest, SignatureReply, Status,
    Unseal,
};
pub use types::{AwsCredentials, CompressedPublicKey, Digest, EnclaveId, Scheme, SealedKey};
pub use writer::{WriterEnd, write_frames};

/// The protocol version this build speaks. Bumped on any incompatible message change.
pub const PROTOCOL_VERSION: u16 = 1;

/// Request id reserved for errors that belong to the connection, not to one request.
pub const CONNECTION_ERROR_ID: u64 = 0;

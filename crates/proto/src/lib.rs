#![doc = include_str!("../README.md")]

mod authz;
mod crypt;
pub mod fault;
mod frame;
mod keyring;
mod keys;
mod message;
#[cfg(test)]
mod properties;
mod types;
mod writer;

pub use authz::{
    AuditRead, AuditReceipt, AuditRecord, Authorization, AuthorizationInfo, ChannelPrincipal, KeyStateChange,
    KeyStateSet, PolicyCheck, PolicyRow, PolicySealed, PolicySet, PrincipalSignature,
};
pub use crypt::{
    CryptOp, CryptOutput, DataKeySpec, KeyCrypt, MAX_CRYPT_PAYLOAD_LEN, MAX_RANDOM_LEN, RandomRequest, RandomSource,
    SecretBytes, StreamTicket,
};
pub use frame::{
    FRAME_STALL_LIMIT, FrameError, MAX_FRAME_LEN, decode, decode_request_id, encode, read_frame, read_frame_within,
    write_frame,
};
pub use keyring::{
    KeyCreate, KeyExport, KeyImport, KeySign, KeySignBatchSigned, KeySignature, KeyringPhase, KeyringStatus,
    MAX_KEYS_PER_BATCH, MessageHash, RootCommit, RootProvision, RootRotate, RootUnseal, SignAlgorithm, SignFormat,
    SignPayload, TransferSealed,
};
pub use keys::{
    DEFAULT_KEYSTORE, KeyFlags, KeyIdentity, KeyName, KeyNameError, KeyType, KeyVersion, KeystoreId, KeystoreIdError,
    MASTER_KEYSTORE, MAX_FULL_KEY_NAME_LEN, MAX_KEY_NAME_LEN, MAX_KEYSTORE_LEN, MAX_PUBLIC_KEY_LEN, MAX_WRAPPED_LEN,
    Origin, RootId, SealedRoot, WrappedKey, split_key_name,
};
pub use message::{
    AttestRequest, Authenticate, Commit, EnclaveInfo, EnclaveState, ErrorCode, ErrorReply, Hello, HelloReply, NsmKind,
    Provision, PublicKeyInfo, Reply, Request, RequestFrame, Response, ResponseFrame, Rotate, SignBatchSigned,
    SignRequest, SignatureReply, Status, Unseal,
};
pub use types::{AwsCredentials, CompressedPublicKey, Digest, EnclaveId, Scheme, SealedKey};
pub use writer::{WriterEnd, write_frames};

/// The protocol version this build speaks. Bumped on any incompatible message change.
/// Version 2: the gateway proves its link key (`Authenticate`) before any other request.
/// Version 3: the keyring (root lifecycle, key creation and signing).
/// Version 4: encryption, data keys, MACs and random bytes (`KeyCrypt`, `Random`).
/// Version 5: BIP32 keys and sealed secrets (`bip32`, `secret`; `SealSecret`, `OpenSecret`).
/// Version 6: signed requests checked in the enclave (`KeySign::auth`), audit receipts and
/// `AuditRead`.
/// Version 7: key policies bound to the keyring root (`PolicySet`, `Authorization::policy`).
/// Version 8: keystore policies (`Authorization::keystore_policy`, `PolicySet` with no key),
/// signed batches (`KeySignBatchSigned`, `SignBatchSigned`), key states in policy rows
/// (`KeyStateSet`).
/// Version 9: keystores beyond the default one (a key's keystore is the prefix of its name),
/// `ErrorCode::KeyVersionConflict` (a signed rotation names the version it makes).
/// Version 10: `KeyCheck` (the enclave's TLS API checks rows before it shows their public
/// keys).
pub const PROTOCOL_VERSION: u16 = 10;

/// Domain separation for link authentication signatures: a signature made for this purpose
/// can be used for nothing else, and nothing else can pass for it.
pub const LINK_AUTH_CONTEXT: &[u8] = b"keyward link authentication v1\0";

/// The bytes the gateway signs with its link key to answer `challenge`: the context, the
/// protocol version and the challenge. A fresh challenge per connection makes every proof
/// single-use.
pub fn link_auth_message(challenge: &[u8; 32]) -> Vec<u8> {
    [LINK_AUTH_CONTEXT, &PROTOCOL_VERSION.to_be_bytes(), challenge].concat()
}

/// Request id reserved for errors that belong to the connection, not to one request.
pub const CONNECTION_ERROR_ID: u64 = 0;

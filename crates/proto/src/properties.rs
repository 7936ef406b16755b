//! Property tests for the link: every request and response variant survives
//! encode → read_frame → decode unchanged, and the reader and decoders return errors, never
//! panic, on arbitrary bytes. The fuzz targets in `fuzz/` push the same properties further.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use proptest::prelude::*;
use proptest::strategy::LazyJust;
use tokio::io::{AsyncRead, ReadBuf};
use zeroize::Zeroizing;

use crate::*;

/// Polls a future over in-memory readers once: they never wait, so `Pending` is a hang.
fn complete_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("reading from memory returned Pending"),
    }
}

/// Hands out at most `chunk` bytes per read, as a socket may.
struct Trickle<'a> {
    bytes: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.bytes.len()).min(buf.remaining());
        buf.put_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Poll::Ready(Ok(()))
    }
}

fn bytes_n<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    proptest::collection::vec(any::<u8>(), N).prop_map(|v| v.try_into().unwrap_or([0; N]))
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn public_key() -> impl Strategy<Value = CompressedPublicKey> {
    bytes_n::<33>().prop_map(CompressedPublicKey)
}

fn scheme() -> impl Strategy<Value = Scheme> {
    prop_oneof![Just(Scheme::Ecdsa), Just(Scheme::Bip340)]
}

fn credentials() -> impl Strategy<Value = AwsCredentials> {
    (text(), text(), proptest::option::of(text()), any::<Option<u64>>()).prop_map(
        |(access_key_id, secret, token, expires_at)| AwsCredentials {
            access_key_id,
            secret_access_key: Zeroizing::new(secret),
            session_token: token.map(Zeroizing::new),
            expires_at,
        },
    )
}

fn sealed_key() -> impl Strategy<Value = SealedKey> {
    (
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(any::<u8>(), 0..80),
        public_key(),
        text(),
        any::<u32>(),
    )
        .prop_map(|(id, dek, blob, public_key, kms_key_id, key_epoch)| SealedKey {
            enclave_id: EnclaveId(id),
            kms_encrypted_dek: dek,
            encrypted_private_key: blob,
            public_key,
            kms_key_id,
            key_epoch,
        })
}

fn sign_request() -> impl Strategy<Value = SignRequest> {
    (bytes_n::<32>(), scheme(), proptest::option::of(authorization().prop_map(Box::new)))
        .prop_map(|(digest, scheme, auth)| SignRequest { digest: Digest(digest), scheme, auth })
}

fn status() -> impl Strategy<Value = Status> {
    (
        prop_oneof![Just(EnclaveState::Empty), Just(EnclaveState::AwaitingCommit), Just(EnclaveState::Ready)],
        proptest::option::of(any::<u32>().prop_map(EnclaveId)),
        proptest::option::of(public_key()),
        any::<Option<u32>>(),
    )
        .prop_map(|(state, enclave_id, public_key, key_epoch)| Status { state, enclave_id, public_key, key_epoch })
}

/// Every error code; the match makes a new code a compile error here, a reminder to add it to
/// `ErrorCode::ALL`.
fn error_code() -> impl Strategy<Value = ErrorCode> {
    let _exhaustive = |code: ErrorCode| match code {
        ErrorCode::BadRequest
        | ErrorCode::HandshakeRequired
        | ErrorCode::VersionMismatch
        | ErrorCode::Unauthenticated
        | ErrorCode::TooManyConnections
        | ErrorCode::Busy
        | ErrorCode::NotReady
        | ErrorCode::AlreadyProvisioned
        | ErrorCode::ConfigMismatch
        | ErrorCode::KmsDenied
        | ErrorCode::KmsUnavailable
        | ErrorCode::KmsInvalidCiphertext
        | ErrorCode::KmsAnswerRefused
        | ErrorCode::KmsKeyMismatch
        | ErrorCode::SealOpenFailed
        | ErrorCode::PublicKeyMismatch
        | ErrorCode::RoundTripFailed
        | ErrorCode::Attestation
        | ErrorCode::KeyringNotReady
        | ErrorCode::RootDoesNotOpen
        | ErrorCode::WrongKeyringRoot
        | ErrorCode::KeyRowDoesNotOpen
        | ErrorCode::KeyRowDamaged
        | ErrorCode::NotASigningKey
        | ErrorCode::UnsupportedScheme
        | ErrorCode::UnknownTransferKey
        | ErrorCode::TransferDoesNotOpen
        | ErrorCode::InvalidKeyMaterial
        | ErrorCode::KeyNotExportable
        | ErrorCode::DecryptionFailed
        | ErrorCode::CiphertextMalformed
        | ErrorCode::UnsupportedOperation
        | ErrorCode::SignatureRequired
        | ErrorCode::BadRequestSignature
        | ErrorCode::RequestExpired
        | ErrorCode::RequestReplayed
        | ErrorCode::RequestMismatch
        | ErrorCode::NotPermitted
        | ErrorCode::QuorumNotMet
        | ErrorCode::InvalidPolicy
        | ErrorCode::PolicyTampered
        | ErrorCode::PolicyRollback
        | ErrorCode::PolicyVersionConflict
        | ErrorCode::KeyDisabled
        | ErrorCode::KeyPendingDeletion
        | ErrorCode::KeyDeleted
        | ErrorCode::InvalidKeyState
        | ErrorCode::KeyVersionConflict
        | ErrorCode::Internal => (),
    };
    proptest::sample::select(&ErrorCode::ALL[..])
}

fn error_reply() -> impl Strategy<Value = ErrorReply> {
    (error_code(), text()).prop_map(|(code, message)| ErrorReply { code, message })
}

fn signature_reply() -> impl Strategy<Value = SignatureReply> {
    let receipt =
        proptest::option::of((any::<u64>(), bytes_n::<32>()).prop_map(|(seq, hash)| AuditReceipt { seq, hash }));
    (scheme(), bytes_n::<64>(), any::<Option<u8>>(), receipt).prop_map(|(scheme, signature, recovery_id, receipt)| {
        SignatureReply { scheme, signature, recovery_id, receipt }
    })
}

fn key_name() -> impl Strategy<Value = KeyName> {
    "[A-Za-z0-9._-]{1,40}".prop_map(|name| KeyName::parse(&name).unwrap_or_else(|_| KeyName::parse("k").unwrap()))
}

fn key_type() -> impl Strategy<Value = KeyType> {
    proptest::sample::select(&KeyType::ALL[..])
}

fn identity() -> impl Strategy<Value = KeyIdentity> {
    (key_name(), 1..u32::MAX, key_type(), any::<bool>(), any::<bool>()).prop_map(
        |(name, version, key_type, exportable, imported)| KeyIdentity {
            name,
            version: KeyVersion::new(version).unwrap_or(KeyVersion::FIRST),
            key_type,
            flags: KeyFlags { exportable, origin: if imported { Origin::Imported } else { Origin::Generated } },
        },
    )
}

fn wrapped_key() -> impl Strategy<Value = WrappedKey> {
    (
        identity(),
        bytes_n::<16>(),
        proptest::collection::vec(any::<u8>(), 0..66),
        proptest::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(identity, root, public_key, wrapped)| WrappedKey {
            identity,
            root_id: RootId(root),
            public_key,
            wrapped,
        })
}

fn sealed_root() -> impl Strategy<Value = SealedRoot> {
    (
        bytes_n::<16>(),
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec(any::<u8>(), 0..80),
        text(),
        any::<u32>(),
    )
        .prop_map(|(root, kms_encrypted_dek, sealed_root, kms_key_id, root_epoch)| SealedRoot {
            root_id: RootId(root),
            kms_encrypted_dek,
            sealed_root,
            kms_key_id,
            root_epoch,
        })
}

fn key_sign() -> impl Strategy<Value = KeySign> {
    let algorithm = prop_oneof![Just(SignAlgorithm::Ecdsa), Just(SignAlgorithm::Bip340), Just(SignAlgorithm::Ed25519)];
    let hash = prop_oneof![Just(MessageHash::Sha256), Just(MessageHash::Keccak256), Just(MessageHash::None)];
    let payload = prop_oneof![
        bytes_n::<32>().prop_map(|d| SignPayload::Digest(Digest(d))),
        (proptest::collection::vec(any::<u8>(), 0..100), hash)
            .prop_map(|(bytes, hash)| SignPayload::Message { bytes, hash }),
    ];
    let format = prop_oneof![Just(SignFormat::Compact), Just(SignFormat::Der), Just(SignFormat::Ethereum)];
    (wrapped_key(), algorithm, payload, format, proptest::option::of(authorization()))
        .prop_map(|(row, algorithm, payload, format, auth)| KeySign { row, algorithm, payload, format, auth })
}

fn principal_signature() -> impl Strategy<Value = PrincipalSignature> {
    (text(), small_bytes(), small_bytes()).prop_map(|(algorithm, public_key, signature)| PrincipalSignature {
        algorithm,
        public_key,
        signature,
    })
}

fn authorization() -> impl Strategy<Value = Authorization> {
    (
        text(),
        small_bytes(),
        bytes_n::<16>(),
        any::<u64>(),
        principal_signature(),
        proptest::collection::vec(principal_signature(), 0..3),
        proptest::option::of(policy_row()),
        proptest::option::of(policy_row()),
    )
        .prop_map(|(keystore, body, request_id, timestamp, requester, approvals, policy, keystore_policy)| {
            Authorization {
                keystore,
                body,
                request_id,
                timestamp,
                requester,
                approvals,
                policy,
                keystore_policy,
                channel: None,
            }
        })
}

fn policy_row() -> impl Strategy<Value = PolicyRow> {
    (text(), text(), any::<u64>(), small_bytes(), bytes_n::<32>())
        .prop_map(|(keystore, key, version, body, tag)| PolicyRow { keystore, key, version, body, tag })
}

fn audit_record() -> impl Strategy<Value = AuditRecord> {
    (
        (any::<u64>(), any::<u64>(), proptest::option::of(bytes_n::<16>()), text(), text(), text()),
        (any::<Option<u32>>(), text(), bytes_n::<32>(), bytes_n::<32>(), bytes_n::<32>(), small_bytes()),
    )
        .prop_map(
            |(
                (seq, time, principal, operation, keystore, key),
                (version, outcome, request_digest, prev_hash, hash, signature),
            )| AuditRecord {
                seq,
                time,
                principal,
                operation,
                keystore,
                key,
                version,
                outcome,
                request_digest,
                prev_hash,
                hash,
                signature,
            },
        )
}

fn keyring_status() -> impl Strategy<Value = KeyringStatus> {
    let phase = prop_oneof![Just(KeyringPhase::Empty), Just(KeyringPhase::AwaitingCommit), Just(KeyringPhase::Ready)];
    (phase, proptest::option::of(bytes_n::<16>()), any::<Option<u32>>())
        .prop_map(|(phase, root, root_epoch)| KeyringStatus { phase, root_id: root.map(RootId), root_epoch })
}

fn key_signature() -> impl Strategy<Value = KeySignature> {
    let receipt =
        proptest::option::of((any::<u64>(), bytes_n::<32>()).prop_map(|(seq, hash)| AuditReceipt { seq, hash }));
    (proptest::collection::vec(any::<u8>(), 0..72), any::<Option<u8>>(), receipt)
        .prop_map(|(signature, recovery_id, receipt)| KeySignature { signature, recovery_id, receipt })
}

/// Every request variant. The match in `request_variant` fails to compile when a variant is
/// added, as a reminder to add it here too.
fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        any::<u16>().prop_map(|protocol_version| Request::Hello(Hello { protocol_version })),
        (bytes_n::<32>(), bytes_n::<64>())
            .prop_map(|(public_key, signature)| Request::Authenticate(Authenticate { public_key, signature })),
        (any::<u32>(), text(), text(), credentials()).prop_map(|(id, kms_key_id, region, credentials)| {
            Request::Provision(Provision { enclave_id: EnclaveId(id), kms_key_id, region, credentials })
        }),
        (any::<u32>(), public_key(), any::<u32>()).prop_map(|(id, public_key, key_epoch)| Request::Commit(Commit {
            enclave_id: EnclaveId(id),
            public_key,
            key_epoch
        })),
        (sealed_key(), credentials()).prop_map(|(sealed, credentials)| Request::Unseal(Unseal { sealed, credentials })),
        sign_request().prop_map(Request::Sign),
        proptest::collection::vec(sign_request(), 0..8).prop_map(Request::SignBatch),
        (proptest::collection::vec(sign_request(), 0..3), authorization())
            .prop_map(|(items, auth)| Request::SignBatchSigned(Box::new(SignBatchSigned { items, auth }))),
        LazyJust::new(|| Request::PublicKey),
        LazyJust::new(|| Request::Status),
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(|nonce| Request::Attest(AttestRequest { nonce })),
        (sealed_key(), credentials()).prop_map(|(sealed, credentials)| Request::Rotate(Rotate { sealed, credentials })),
        (text(), text(), credentials()).prop_map(|(kms_key_id, region, credentials)| Request::RootProvision(
            RootProvision { kms_key_id, region, credentials }
        )),
        (bytes_n::<16>(), any::<u32>())
            .prop_map(|(root, root_epoch)| Request::RootCommit(RootCommit { root_id: RootId(root), root_epoch })),
        (sealed_root(), credentials())
            .prop_map(|(sealed, credentials)| Request::RootUnseal(RootUnseal { sealed, credentials })),
        (sealed_root(), credentials())
            .prop_map(|(sealed, credentials)| Request::RootRotate(RootRotate { sealed, credentials })),
        LazyJust::new(|| Request::KeyringStatus),
        (proptest::collection::vec(identity(), 0..4), proptest::option::of(authorization()))
            .prop_map(|(keys, auth)| Request::KeyCreate(KeyCreate { keys, auth: auth.map(Box::new) })),
        key_sign().prop_map(|sign| Request::KeySign(Box::new(sign))),
        proptest::collection::vec(key_sign(), 0..3).prop_map(Request::KeySignBatch),
        (proptest::collection::vec(key_sign(), 0..3), authorization())
            .prop_map(|(items, auth)| Request::KeySignBatchSigned(Box::new(KeySignBatchSigned { items, auth }))),
        (identity(), proptest::collection::vec(any::<u8>(), 0..40), transfer_sealed()).prop_map(
            |(identity, transfer_public_key, sealed)| Request::KeyImport(Box::new(KeyImport {
                identity,
                transfer_public_key,
                sealed,
                auth: None,
            }))
        ),
        (wrapped_key(), proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(row, recipient_public_key)| {
            Request::KeyExport(Box::new(KeyExport { row, recipient_public_key, auth: None }))
        }),
        (wrapped_key(), crypt_op(), proptest::option::of(authorization()))
            .prop_map(|(row, op, auth)| Request::KeyCrypt(Box::new(KeyCrypt { row, op, auth: auth.map(Box::new) }))),
        (any::<u16>(), any::<bool>(), proptest::option::of(credentials())).prop_map(|(bytes, kms, credentials)| {
            let source = if kms { RandomSource::Kms } else { RandomSource::Nsm };
            Request::Random(RandomRequest { bytes, source, credentials })
        }),
        (any::<u64>(), any::<u32>()).prop_map(|(after, max)| Request::AuditRead(AuditRead { after, max })),
        (text(), text(), proptest::option::of(authorization()))
            .prop_map(|(keystore, key, auth)| Request::PolicySet(Box::new(PolicySet { keystore, key, auth }))),
        (text(), text(), key_state_change(), proptest::option::of(authorization())).prop_map(
            |(keystore, key, change, auth)| Request::KeyStateSet(Box::new(KeyStateSet { keystore, key, change, auth }))
        ),
        proptest::collection::vec(wrapped_key(), 0..3).prop_map(Request::KeyCheck),
        (text(), text(), proptest::option::of(policy_row()))
            .prop_map(|(keystore, key, row)| Request::PolicyCheck(Box::new(keyward_check(keystore, key, row)))),
    ]
}

fn keyward_check(keystore: String, key: String, row: Option<PolicyRow>) -> crate::PolicyCheck {
    crate::PolicyCheck { keystore, key, row }
}

fn key_state_change() -> impl Strategy<Value = KeyStateChange> {
    prop_oneof![
        Just(KeyStateChange::Disable),
        Just(KeyStateChange::Enable),
        any::<u64>().prop_map(|waiting_seconds| KeyStateChange::ScheduleDeletion { waiting_seconds }),
        Just(KeyStateChange::CancelDeletion),
    ]
}

fn small_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..64)
}

fn crypt_op() -> impl Strategy<Value = CryptOp> {
    let spec = prop_oneof![Just(DataKeySpec::Aes256), Just(DataKeySpec::Rsa2048), Just(DataKeySpec::P256)];
    prop_oneof![
        (small_bytes(), small_bytes()).prop_map(|(plaintext, associated_data)| CryptOp::Encrypt {
            plaintext: SecretBytes::new(plaintext),
            associated_data
        }),
        (small_bytes(), small_bytes())
            .prop_map(|(ciphertext, associated_data)| CryptOp::Decrypt { ciphertext, associated_data }),
        (wrapped_key(), small_bytes(), small_bytes()).prop_map(|(to, ciphertext, associated_data)| CryptOp::Rewrap {
            to: Box::new(to),
            ciphertext,
            associated_data
        }),
        (spec, any::<bool>(), small_bytes()).prop_map(|(spec, plaintext, associated_data)| CryptOp::DataKey {
            spec,
            plaintext,
            associated_data
        }),
        small_bytes().prop_map(|message| CryptOp::Mac { message }),
        (small_bytes(), small_bytes()).prop_map(|(message, mac)| CryptOp::VerifyMac { message, mac }),
        LazyJust::new(|| CryptOp::BeginStream),
        (small_bytes(), small_bytes(), any::<u32>(), any::<bool>(), small_bytes()).prop_map(
            |(header, associated_data, index, last, plaintext)| CryptOp::SealSegment {
                header,
                associated_data,
                index,
                last,
                plaintext: SecretBytes::new(plaintext),
                ticket: None,
            }
        ),
        (small_bytes(), small_bytes(), any::<u32>(), any::<bool>(), small_bytes(), proptest::option::of(ticket()))
            .prop_map(|(header, associated_data, index, last, sealed, ticket)| CryptOp::OpenSegment {
                header,
                associated_data,
                index,
                last,
                sealed,
                ticket,
            }),
        (small_bytes(), small_bytes())
            .prop_map(|(associated_data, plaintext_sha256)| CryptOp::BeginSeal { associated_data, plaintext_sha256 }),
        (small_bytes(), small_bytes())
            .prop_map(|(header, associated_data)| CryptOp::BeginOpen { header, associated_data }),
    ]
}

fn ticket() -> impl Strategy<Value = crate::StreamTicket> {
    (any::<u64>(), small_bytes(), small_bytes()).prop_map(|(expires, plaintext_sha256, mac)| crate::StreamTicket {
        expires,
        plaintext_sha256,
        mac,
    })
}

fn crypt_output() -> impl Strategy<Value = CryptOutput> {
    prop_oneof![
        small_bytes().prop_map(CryptOutput::Ciphertext),
        small_bytes().prop_map(|p| CryptOutput::Plaintext(SecretBytes::new(p))),
        (small_bytes(), proptest::option::of(small_bytes()), small_bytes()).prop_map(
            |(wrapped, plaintext, public_key)| CryptOutput::DataKey {
                wrapped,
                plaintext: plaintext.map(SecretBytes::new),
                public_key
            }
        ),
        small_bytes().prop_map(CryptOutput::Mac),
        any::<bool>().prop_map(CryptOutput::Valid),
        small_bytes().prop_map(CryptOutput::StreamHeader),
        (small_bytes(), ticket()).prop_map(|(header, ticket)| CryptOutput::SealTicket { header, ticket }),
        ticket().prop_map(CryptOutput::StreamTicket),
    ]
}

fn transfer_sealed() -> impl Strategy<Value = TransferSealed> {
    (proptest::collection::vec(any::<u8>(), 0..40), proptest::collection::vec(any::<u8>(), 0..60))
        .prop_map(|(encapsulated_key, ciphertext)| TransferSealed { encapsulated_key, ciphertext })
}

fn request_variant(request: &Request) -> &'static str {
    match request {
        Request::Hello(_) => "Hello",
        Request::Authenticate(_) => "Authenticate",
        Request::Provision(_) => "Provision",
        Request::Commit(_) => "Commit",
        Request::Unseal(_) => "Unseal",
        Request::Sign(_) => "Sign",
        Request::SignBatch(_) => "SignBatch",
        Request::SignBatchSigned(_) => "SignBatchSigned",
        Request::PublicKey => "PublicKey",
        Request::Status => "Status",
        Request::Attest(_) => "Attest",
        Request::Rotate(_) => "Rotate",
        Request::RootProvision(_) => "RootProvision",
        Request::RootCommit(_) => "RootCommit",
        Request::RootUnseal(_) => "RootUnseal",
        Request::RootRotate(_) => "RootRotate",
        Request::KeyringStatus => "KeyringStatus",
        Request::KeyCreate(_) => "KeyCreate",
        Request::KeySign(_) => "KeySign",
        Request::KeySignBatch(_) => "KeySignBatch",
        Request::KeySignBatchSigned(_) => "KeySignBatchSigned",
        Request::KeyImport(_) => "KeyImport",
        Request::KeyExport(_) => "KeyExport",
        Request::KeyCrypt(_) => "KeyCrypt",
        Request::Random(_) => "Random",
        Request::AuditRead(_) => "AuditRead",
        Request::PolicySet(_) => "PolicySet",
        Request::KeyStateSet(_) => "KeyStateSet",
        Request::KeyCheck(_) => "KeyCheck",
        Request::PolicyCheck(_) => "PolicyCheck",
    }
}

/// Every response variant, each also as an error reply (`Response::kind` names them).
fn reply() -> impl Strategy<Value = Reply> {
    let authorization = proptest::option::of(
        (proptest::collection::vec(text(), 0..3), any::<u8>(), small_bytes())
            .prop_map(|(owners, quorum, audit_public_key)| AuthorizationInfo { owners, quorum, audit_public_key }),
    );
    let info = (
        text(),
        prop_oneof![Just(NsmKind::Nitro), Just(NsmKind::Mock)],
        text(),
        text(),
        text(),
        any::<bool>(),
        authorization,
    )
        .prop_map(|(software_version, nsm, kms_key_id, kms_region, kms_endpoint, attestation, authorization)| {
            EnclaveInfo { software_version, nsm, kms_key_id, kms_region, kms_endpoint, attestation, authorization }
        });
    let response = prop_oneof![
        (any::<u16>(), info, bytes_n::<32>()).prop_map(|(protocol_version, info, challenge)| Response::Hello(
            HelloReply { protocol_version, info, challenge }
        )),
        sealed_key().prop_map(Response::Provisioned),
        status().prop_map(Response::Status),
        signature_reply().prop_map(Response::Signature),
        proptest::collection::vec(prop_oneof![signature_reply().prop_map(Ok), error_reply().prop_map(Err)], 0..6)
            .prop_map(Response::Signatures),
        (any::<u32>(), public_key(), bytes_n::<32>(), any::<u32>()).prop_map(
            |(id, public_key, xonly_public_key, key_epoch)| Response::PublicKey(PublicKeyInfo {
                enclave_id: EnclaveId(id),
                public_key,
                xonly_public_key,
                key_epoch,
            })
        ),
        proptest::collection::vec(any::<u8>(), 0..2000).prop_map(Response::Attestation),
        sealed_key().prop_map(Response::Rotated),
        sealed_root().prop_map(Response::RootSealed),
        keyring_status().prop_map(Response::Keyring),
        proptest::collection::vec(wrapped_key(), 0..4).prop_map(Response::WrappedKeys),
        key_signature().prop_map(Response::KeySignature),
        proptest::collection::vec(prop_oneof![key_signature().prop_map(Ok), error_reply().prop_map(Err)], 0..4)
            .prop_map(Response::KeySignatures),
        Just(()).prop_map(|()| Response::KeysChecked),
        transfer_sealed().prop_map(Response::ExportedKey),
        crypt_output().prop_map(Response::Crypt),
        small_bytes().prop_map(|b| Response::Random(SecretBytes::new(b))),
        proptest::collection::vec(audit_record(), 0..3).prop_map(Response::AuditRecords),
        (policy_row(), any::<u64>(), bytes_n::<32>()).prop_map(|(row, seq, hash)| Response::PolicySealed(Box::new(
            PolicySealed { row, receipt: AuditReceipt { seq, hash } }
        ))),
    ];
    prop_oneof![response.prop_map(Reply::Ok), error_reply().prop_map(Reply::Err)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_request_round_trips_through_a_frame(id in any::<u64>(), request in request()) {
        let frame = RequestFrame { id, request };
        let bytes = encode(&frame).unwrap();
        let body = complete_now(read_frame(&mut bytes.as_slice(), MAX_FRAME_LEN)).unwrap();
        let back: RequestFrame = decode(&body).unwrap();
        prop_assert_eq!(decode_request_id(&body), Some(id));
        prop_assert_eq!(&back, &frame, "{} changed in transit", request_variant(&frame.request));
    }

    #[test]
    fn every_response_round_trips_through_a_frame(id in any::<u64>(), reply in reply()) {
        let frame = ResponseFrame { id, reply };
        let bytes = encode(&frame).unwrap();
        let body = complete_now(read_frame(&mut bytes.as_slice(), MAX_FRAME_LEN)).unwrap();
        let back: ResponseFrame = decode(&body).unwrap();
        let variant = match &frame.reply { Reply::Ok(r) => r.kind(), Reply::Err(_) => "Err" };
        prop_assert_eq!(&back, &frame, "{} changed in transit", variant);
    }

    #[test]
    fn frames_read_back_in_order_from_a_trickling_stream(
        requests in proptest::collection::vec(request(), 1..5),
        chunk in 1usize..16,
    ) {
        let frames: Vec<RequestFrame> =
            requests.into_iter().zip(1u64..).map(|(request, id)| RequestFrame { id, request }).collect();
        let mut stream = Vec::new();
        for frame in &frames {
            stream.extend_from_slice(&encode(frame).unwrap());
        }
        let mut reader = Trickle { bytes: &stream, chunk };
        for frame in &frames {
            let body = complete_now(read_frame(&mut reader, MAX_FRAME_LEN)).unwrap();
            prop_assert_eq!(&decode::<RequestFrame>(&body).unwrap(), frame);
        }
        prop_assert!(matches!(complete_now(read_frame(&mut reader, MAX_FRAME_LEN)), Err(FrameError::Closed)));
    }

    #[test]
    fn reader_and_decoders_never_panic_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        max in prop_oneof![Just(MAX_FRAME_LEN), 0usize..64],
    ) {
        let mut rest = bytes.as_slice();
        match complete_now(read_frame(&mut rest, max)) {
            Ok(body) => {
                let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                prop_assert!(len <= max);
                prop_assert_eq!(&body[..], &bytes[4..4 + len]);
                let _ = decode::<RequestFrame>(&body);
                let _ = decode::<ResponseFrame>(&body);
                let _ = decode_request_id(&body);
            }
            Err(FrameError::Closed) => prop_assert!(bytes.is_empty()),
            Err(FrameError::TooLarge { len, max: limit }) => prop_assert!(len > limit && limit == max),
            Err(FrameError::Truncated) => prop_assert!(!bytes.is_empty()),
            Err(other) => prop_assert!(false, "unexpected error from memory: {}", other),
        }
        for result in [decode::<RequestFrame>(&bytes).err(), decode::<ResponseFrame>(&bytes).err()].into_iter().flatten() {
            prop_assert!(matches!(result, FrameError::Malformed { .. }), "{}", result);
        }
        let _ = decode_request_id(&bytes);
    }

    #[test]
    fn corrupted_frames_fail_or_decode_to_a_value_that_round_trips(
        request in request(),
        flip_at in any::<proptest::sample::Index>(),
        mask in 1u8..=255,
    ) {
        // Corruption the decoder does not catch (a flipped bit inside a string, say) must
        // still give a value that encodes and decodes to itself, so logs and replies show
        // what was actually received.
        let frame = RequestFrame { id: 1, request };
        let mut body = encode(&frame).unwrap().split_off(4);
        let i = flip_at.index(body.len());
        body[i] ^= mask;
        if let Ok(decoded) = decode::<RequestFrame>(&body) {
            let again = encode(&decoded).unwrap();
            prop_assert_eq!(decode::<RequestFrame>(&again[4..]).unwrap(), decoded);
        }
    }
}

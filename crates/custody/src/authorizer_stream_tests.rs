//! Signed streams: a stream's begin is checked like any signed request, its segments only with
//! the ticket the enclave issued for that stream; to seal, the plaintext must hash, in order,
//! to what the principal signed before the last segment is sealed.

use aws_lc_rs::digest;
use base64::{Engine, engine::general_purpose::STANDARD};
use keyward_proto::{
    CryptOp, CryptOutput, ErrorCode, KeyCrypt, KeyFlags, KeyIdentity, KeyName, KeyType, KeyVersion, Origin, RootId,
    SecretBytes, StreamTicket, WrappedKey,
};

use super::policy_tests::{auth, authorizer};
use super::tests::tagger;
use super::*;

const NOW: u64 = 1_764_547_200;
/// A stream header of version 1 of a key, segments of 6 bytes, salt `salt`.
fn header(salt: u8) -> Vec<u8> {
    let header =
        keyward_keyring::StreamHeader { version: KeyVersion::new(1).unwrap(), segment_len: 6, salt: [salt; 32] };
    header.encode().to_vec()
}

fn row(name: &str) -> WrappedKey {
    let identity = KeyIdentity {
        name: KeyName::parse(name).unwrap(),
        version: KeyVersion::new(1).unwrap(),
        key_type: KeyType::Aes256Gcm,
        flags: KeyFlags { exportable: false, origin: Origin::Generated },
    };
    WrappedKey { identity, root_id: RootId([0; 16]), public_key: vec![], wrapped: vec![] }
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    digest::digest(&digest::SHA256, &parts.concat()).as_ref().to_vec()
}

/// An owner's signed `BeginSeal` of a stream of `plaintext` with `ad`, and the ticket issued
/// (for the stream `header(request_id)`).
fn begin_seal(a: &Authorizer, plaintext: &[u8], ad: &[u8], request_id: u8) -> StreamTicket {
    let digest = sha256(&[plaintext]);
    let body = format!(
        r#"{{"associated_data_b64":"{}","plaintext_sha256_hex":"{}"}}"#,
        STANDARD.encode(ad),
        hex::encode(&digest)
    );
    let op = CryptOp::BeginSeal { associated_data: ad.to_vec(), plaintext_sha256: digest };
    let auth = auth(Operation::Encrypt, "vault", &body, &[1], request_id, None);
    let request = KeyCrypt { row: row("vault"), op, auth: Some(Box::new(auth)) };
    a.authorize_crypt(&request, NOW, &tagger()).expect("the owner's signed stream");
    match a.stream_ticket(&request, CryptOutput::StreamHeader(header(request_id)), NOW).unwrap() {
        CryptOutput::SealTicket { header: issued, ticket } => {
            assert_eq!(issued, header(request_id));
            ticket
        }
        other => panic!("{other:?}"),
    }
}

/// Segment `index` of stream `header(1)`.
fn seal(key: &str, ad: &[u8], index: u32, last: bool, plaintext: &[u8], ticket: Option<&StreamTicket>) -> KeyCrypt {
    let op = CryptOp::SealSegment {
        header: header(1),
        associated_data: ad.to_vec(),
        index,
        last,
        plaintext: SecretBytes::new(plaintext.to_vec()),
        ticket: ticket.cloned(),
    };
    KeyCrypt { row: row(key), op, auth: None }
}

fn code(a: &Authorizer, request: &KeyCrypt, now: u64) -> Result<(), ErrorCode> {
    a.check_segment(request, now).map_err(|e| e.code)
}

#[test]
fn a_signed_stream_seals_what_was_signed_in_order_and_nothing_else() {
    let a = authorizer();
    let ticket = begin_seal(&a, b"hello world", b"ad", 1);
    let segment = |index, last, plaintext: &[u8]| seal("vault", b"ad", index, last, plaintext, Some(&ticket));
    // Refused without touching the stream: another key, associated data, no ticket, expired,
    // out of order.
    let mut forged = ticket.clone();
    forged.plaintext_sha256 = sha256(&[b"HELLO world"]);
    let refused: [(&str, KeyCrypt, u64, ErrorCode); 6] = [
        ("no ticket", seal("vault", b"ad", 0, false, b"hello ", None), NOW, ErrorCode::SignatureRequired),
        ("another key", seal("other", b"ad", 0, false, b"hello ", Some(&ticket)), NOW, ErrorCode::RequestMismatch),
        (
            "other associated data",
            seal("vault", b"xx", 0, false, b"hello ", Some(&ticket)),
            NOW,
            ErrorCode::RequestMismatch,
        ),
        (
            "the host's digest",
            seal("vault", b"ad", 0, false, b"HELLO ", Some(&forged)),
            NOW,
            ErrorCode::RequestMismatch,
        ),
        ("expired", segment(0, false, b"hello "), ticket.expires + 1, ErrorCode::RequestExpired),
        ("out of order", segment(1, true, b"world"), NOW, ErrorCode::RequestMismatch),
    ];
    for (what, request, now, expected) in refused {
        assert_eq!(code(&a, &request, now), Err(expected), "{what}");
    }
    let short = segment(0, false, b"hell");
    assert_eq!(code(&a, &short, NOW), Err(ErrorCode::BadRequest), "a short segment before the last");
    assert_eq!(code(&a, &segment(0, false, b"hello "), NOW), Ok(()), "the stream did not move for it");
    assert_eq!(code(&a, &segment(0, false, b"hello "), NOW), Err(ErrorCode::RequestMismatch), "the same index again");
    assert_eq!(code(&a, &segment(1, true, b"world"), NOW), Ok(()), "the signed plaintext ends the stream");
    assert_eq!(code(&a, &segment(0, false, b"hello "), NOW), Err(ErrorCode::RequestMismatch), "it never begins again");
}

#[test]
fn substituted_plaintext_never_gets_its_last_segment() {
    let a = authorizer();
    let ticket = begin_seal(&a, b"pay alice 5", b"", 1);
    let segment = |index, last, plaintext: &[u8]| seal("vault", b"", index, last, plaintext, Some(&ticket));
    assert_eq!(code(&a, &segment(0, false, b"pay ma"), NOW), Ok(()), "an early segment is sealed");
    assert_eq!(code(&a, &segment(1, true, b"llory"), NOW), Err(ErrorCode::RequestMismatch), "the last is not");
    // The stream is over: neither the right end nor a new run of it is sealed now.
    assert_eq!(code(&a, &segment(1, true, b"ice 5"), NOW), Err(ErrorCode::RequestMismatch));
    assert_eq!(code(&a, &segment(0, false, b"pay al"), NOW), Err(ErrorCode::RequestMismatch));
    // Positive control: a stream begun afresh with the same signed plaintext completes.
    let b = authorizer();
    let ticket = begin_seal(&b, b"pay alice 5", b"", 1);
    assert_eq!(code(&b, &seal("vault", b"", 0, false, b"pay al", Some(&ticket)), NOW), Ok(()));
    assert_eq!(code(&b, &seal("vault", b"", 1, true, b"ice 5", Some(&ticket)), NOW), Ok(()));
}

#[test]
fn an_open_ticket_opens_its_stream_only() {
    let a = authorizer();
    let body = format!(
        r#"{{"header_b64":"{}","associated_data_b64":"{}"}}"#,
        STANDARD.encode(header(7)),
        STANDARD.encode(b"ad")
    );
    let op = CryptOp::BeginOpen { header: header(7), associated_data: b"ad".to_vec() };
    let begin = KeyCrypt {
        row: row("vault"),
        op,
        auth: Some(Box::new(auth(Operation::Decrypt, "vault", &body, &[1], 1, None))),
    };
    a.authorize_crypt(&begin, NOW, &tagger()).expect("the owner's signed decryption");
    let CryptOutput::StreamTicket(ticket) = a.stream_ticket(&begin, CryptOutput::Valid(true), NOW).unwrap() else {
        panic!("a ticket")
    };
    let open = |header: &[u8], ad: &[u8], ticket: &StreamTicket| KeyCrypt {
        row: row("vault"),
        op: CryptOp::OpenSegment {
            header: header.to_vec(),
            associated_data: ad.to_vec(),
            index: 3,
            last: false,
            sealed: vec![0; 40],
            ticket: Some(ticket.clone()),
        },
        auth: None,
    };
    assert_eq!(code(&a, &open(&header(7), b"ad", &ticket), NOW), Ok(()), "any segment of its stream, in any order");
    assert_eq!(code(&a, &open(&header(8), b"ad", &ticket), NOW), Err(ErrorCode::RequestMismatch));
    assert_eq!(code(&a, &open(&header(7), b"", &ticket), NOW), Err(ErrorCode::RequestMismatch));
    // A sealing ticket does not open, nor an opening ticket seal.
    let sealing = begin_seal(&a, b"x", b"ad", 2);
    assert_eq!(code(&a, &open(&header(7), b"ad", &sealing), NOW), Err(ErrorCode::RequestMismatch));
    assert_eq!(code(&a, &seal("vault", b"ad", 0, true, b"x", Some(&ticket)), NOW), Err(ErrorCode::RequestMismatch));
    // Another enclave's ticket (another key) is worthless here.
    let elsewhere = authorizer();
    assert_eq!(code(&elsewhere, &open(&header(7), b"ad", &ticket), NOW), Err(ErrorCode::RequestMismatch));
}

#[test]
fn a_begin_is_compared_with_its_signed_body() {
    let a = authorizer();
    let digest = sha256(&[b"signed"]);
    let body = format!(r#"{{"associated_data_b64":"","plaintext_sha256_hex":"{}"}}"#, hex::encode(&digest));
    let other = CryptOp::BeginSeal { associated_data: vec![], plaintext_sha256: sha256(&[b"the host's"]) };
    let request = KeyCrypt {
        row: row("vault"),
        op: other,
        auth: Some(Box::new(auth(Operation::Encrypt, "vault", &body, &[1], 1, None))),
    };
    assert_eq!(
        a.authorize_crypt(&request, NOW, &tagger()).map(|_| ()).map_err(|e| e.code),
        Err(ErrorCode::RequestMismatch)
    );
    let unsigned = KeyCrypt { row: row("vault"), op: CryptOp::BeginStream, auth: None };
    assert_eq!(
        a.authorize_crypt(&unsigned, NOW, &tagger()).map(|_| ()).map_err(|e| e.code),
        Err(ErrorCode::SignatureRequired)
    );
    assert_eq!(keyward_client::crypt::STREAM_HEADER_LEN, keyward_keyring::STREAM_HEADER_LEN, "the SDK reads headers");
}

#[test]
fn a_key_disabled_since_its_stream_began_stops_the_stream() {
    let a = authorizer();
    let ticket = begin_seal(&a, b"hello world", b"", 1);
    assert_eq!(code(&a, &seal("vault", b"", 0, false, b"hello ", Some(&ticket)), NOW), Ok(()));
    let disabled = keyward_authz::Policy { version: 1, rules: vec![], state: keyward_authz::KeyState::Disabled };
    let row = keyward_proto::PolicyRow {
        keystore: "default".into(),
        key: "vault".into(),
        version: 1,
        body: disabled.to_json(),
        tag: [0; 32],
    };
    a.policies.sealed(&row, disabled);
    assert_eq!(code(&a, &seal("vault", b"", 1, true, b"world", Some(&ticket)), NOW), Err(ErrorCode::KeyDisabled));
}

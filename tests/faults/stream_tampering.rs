//! A streamed ciphertext cut, spliced or altered anywhere never decrypts to a complete
//! answer: damage in the header or first segment is a 4xx with nothing sent, damage further on
//! breaks the transfer off. A client that goes away mid-stream costs the gateway nothing.

use futures_util::StreamExt;
use keyward_client::{Client, ClientError};
use keyward_e2e::{Stack, StackOptions};

const HEADER: usize = 41;
const SEALED_SEGMENT: usize = 64 * 1024 + 16;

/// What decrypting `sealed` came to: a complete answer (its length and SHA-256, so a failed
/// assertion stays readable), a refusal with its code before any byte, or a transfer that
/// broke off.
#[derive(Debug, PartialEq)]
enum Outcome {
    Complete { len: usize, sha256: String },
    Refused(String),
    BrokeOff,
}

fn complete(plaintext: &[u8]) -> Outcome {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, plaintext);
    Outcome::Complete { len: plaintext.len(), sha256: hex::encode(digest.as_ref()) }
}

async fn decrypt(client: &Client, sealed: Vec<u8>, aad: &[u8]) -> Outcome {
    match client.decrypt_stream("files", reqwest::Body::from(sealed), Some(aad)).await {
        Err(ClientError::Api { status: 400, code, .. }) => Outcome::Refused(code),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(response) => {
            let mut body = response.bytes_stream();
            let mut plaintext = Vec::new();
            while let Some(part) = body.next().await {
                match part {
                    Ok(bytes) => plaintext.extend_from_slice(&bytes),
                    Err(_) => return Outcome::BrokeOff,
                }
            }
            complete(&plaintext)
        }
    }
}

fn segment(sealed: &[u8], i: usize) -> &[u8] {
    let start = HEADER + i * SEALED_SEGMENT;
    &sealed[start..(start + SEALED_SEGMENT).min(sealed.len())]
}

fn assemble(sealed: &[u8], order: &[usize]) -> Vec<u8> {
    let mut out = sealed[..HEADER].to_vec();
    for &i in order {
        out.extend_from_slice(segment(sealed, i));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_spliced_or_altered_stream_never_decrypts_to_a_complete_answer() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.wait_health("keyring ready", |_, h| h.enclaves.iter().all(|e| e.keyring.state == "ready")).await;
    stack.admin_client().create_key("files", "aes256-gcm", false).await.expect("aes key");
    let client = stack.client.clone();
    // Four full segments and a partial fifth.
    let plaintext: Vec<u8> = (0..4 * 65536 + 1000).map(|i| (i % 253) as u8).collect();
    let response =
        client.encrypt_stream("files", reqwest::Body::from(plaintext.clone()), Some(b"aad")).await.expect("encrypt");
    let sealed = response.bytes().await.expect("the whole ciphertext").to_vec();
    assert_eq!(sealed.len(), HEADER + plaintext.len() + 5 * 16);
    assert_eq!(decrypt(&client, sealed.clone(), b"aad").await, complete(&plaintext));

    let refused = |code: &str| Outcome::Refused(code.to_owned());
    let cases: Vec<(&str, Vec<u8>, Outcome)> = vec![
        ("the last segment dropped (cut at a boundary)", assemble(&sealed, &[0, 1, 2, 3]), Outcome::BrokeOff),
        ("cut inside the last segment", sealed[..sealed.len() - 7].to_vec(), Outcome::BrokeOff),
        ("cut inside a middle segment", sealed[..HEADER + 2 * SEALED_SEGMENT + 100].to_vec(), Outcome::BrokeOff),
        ("two segments swapped", assemble(&sealed, &[0, 2, 1, 3, 4]), Outcome::BrokeOff),
        ("segments reordered", assemble(&sealed, &[0, 3, 1, 2, 4]), Outcome::BrokeOff),
        ("a segment repeated", assemble(&sealed, &[0, 1, 1, 2, 3, 4]), Outcome::BrokeOff),
        ("a segment dropped", assemble(&sealed, &[0, 1, 3, 4]), Outcome::BrokeOff),
        ("extended past its end", [sealed.clone(), segment(&sealed, 4).to_vec()].concat(), Outcome::BrokeOff),
        ("the first segment dropped", assemble(&sealed, &[1, 2, 3, 4]), refused("decryption_failed")),
        ("header only", sealed[..HEADER].to_vec(), refused("decryption_failed")),
        ("a short header", sealed[..20].to_vec(), refused("ciphertext_malformed")),
        ("nothing", Vec::new(), refused("ciphertext_malformed")),
    ];
    let mut cases = cases;
    // The header is bound into the stream's key: any change fails at the first segment.
    for (what, byte) in [("the salt", 20), ("the segment length", 7), ("the first segment", HEADER + 9)] {
        let mut altered = sealed.clone();
        altered[byte] ^= 1;
        cases.push((what, altered, refused("decryption_failed")));
    }
    let mut middle = sealed.clone();
    middle[HEADER + 3 * SEALED_SEGMENT + 500] ^= 0x40;
    cases.push(("a byte of the fourth segment", middle, Outcome::BrokeOff));
    for (what, altered, expected) in cases {
        let outcome = decrypt(&client, altered, b"aad").await;
        assert_eq!(outcome, expected, "{what}");
    }
    assert_eq!(decrypt(&client, sealed.clone(), b"other").await, refused("decryption_failed"), "other associated data");

    // A client that sends part of a stream and goes away, and one that stops reading its
    // answer: the gateway carries on serving.
    let broken = futures_util::stream::iter(0..3)
        .map(|i| if i < 2 { Ok(vec![7u8; 100_000]) } else { Err(std::io::Error::other("client went away")) });
    if let Ok(response) = client.encrypt_stream("files", reqwest::Body::wrap_stream(broken), None).await {
        let mut body = response.bytes_stream();
        let mut broke = false;
        while let Some(part) = body.next().await {
            broke |= part.is_err();
        }
        assert!(broke, "a stream whose upload broke off must not complete");
    }
    let response = client.decrypt_stream("files", reqwest::Body::from(sealed.clone()), Some(b"aad")).await.expect("ok");
    let mut body = response.bytes_stream();
    let _ = body.next().await;
    drop(body);
    assert_eq!(decrypt(&client, sealed, b"aad").await, complete(&plaintext), "still serving");
}

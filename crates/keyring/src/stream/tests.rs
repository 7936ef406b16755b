//! Streams: every segment opens only at its own place in its own stream.

use super::*;

fn key() -> KeyMaterial {
    KeyMaterial::from_secret(KeyType::Aes256Gcm, &[3; 32]).unwrap()
}

fn name() -> KeyName {
    KeyName::parse("files").unwrap()
}

fn header(segment_len: u32) -> StreamHeader {
    StreamHeader { version: KeyVersion::new(2).unwrap(), segment_len, salt: [9; 32] }
}

/// Seals `data` as a stream of `segment_len`-byte segments; returns the sealed segments.
fn seal_all(header: &StreamHeader, data: &[u8], aad: &[u8]) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> =
        if data.is_empty() { vec![&[][..]] } else { data.chunks(header.segment_len as usize).collect() };
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| seal_segment(&key(), &name(), header, aad, i as u32, i == last, chunk).unwrap())
        .collect()
}

/// Opens segments in order, the final one as last; the first refusal ends it.
fn open_all(header: &StreamHeader, segments: &[Vec<u8>], aad: &[u8]) -> Result<Vec<u8>, KeyringError> {
    let mut out = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        out.extend_from_slice(&open_segment(&key(), &name(), header, aad, i as u32, last, segment)?);
    }
    Ok(out)
}

#[test]
fn streams_of_any_length_round_trip_and_the_header_round_trips() {
    let header = header(16);
    assert_eq!(StreamHeader::parse(&header.encode()).unwrap(), header);
    for len in [0, 1, 15, 16, 17, 32, 100] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let segments = seal_all(&header, &data, b"aad");
        assert_eq!(segments.len(), (len as usize).div_ceil(16).max(1), "{len}");
        assert_eq!(open_all(&header, &segments, b"aad").unwrap(), data, "{len}");
    }
}

#[test]
fn dropped_repeated_swapped_reordered_and_cut_streams_are_refused() {
    let header = header(16);
    let data: Vec<u8> = (0..64u8).collect();
    let segments = seal_all(&header, &data, b"");
    assert_eq!(segments.len(), 4);
    let refused = |segments: Vec<Vec<u8>>, what: &str| {
        assert!(open_all(&header, &segments, b"").is_err(), "{what}");
    };
    refused(segments[..3].to_vec(), "cut at a segment boundary (the last is missing)");
    refused(segments[1..].to_vec(), "the first segment dropped");
    refused(vec![segments[0].clone(), segments[2].clone(), segments[3].clone()], "a middle segment dropped");
    refused(vec![segments[0].clone(), segments[1].clone(), segments[1].clone(), segments[3].clone()], "repeated");
    refused(vec![segments[1].clone(), segments[0].clone(), segments[2].clone(), segments[3].clone()], "swapped");
    refused(vec![segments[0].clone(), segments[2].clone(), segments[1].clone(), segments[3].clone()], "reordered");
    refused([segments.clone(), vec![segments[3].clone()]].concat(), "extended past its end");
    let mut short = segments.clone();
    short[3].truncate(10);
    refused(short, "the last segment cut");
    // A segment of another stream (another salt) at the same position.
    let other = StreamHeader { salt: [8; 32], ..header };
    let foreign = seal_all(&other, &data, b"");
    refused(vec![segments[0].clone(), foreign[1].clone(), segments[2].clone(), segments[3].clone()], "spliced");
}

#[test]
fn every_flipped_bit_of_a_segment_and_other_associated_data_or_key_are_refused() {
    let header = header(8);
    let segments = seal_all(&header, b"0123456789", b"thread");
    for i in 0..segments[0].len() {
        let mut altered = segments.clone();
        altered[0][i] ^= 0x80;
        assert!(open_all(&header, &altered, b"thread").is_err(), "byte {i}");
    }
    assert!(open_all(&header, &segments, b"thread2").is_err());
    let renamed = KeyName::parse("files2").unwrap();
    assert!(open_segment(&key(), &renamed, &header, b"thread", 0, false, &segments[0]).is_err());
    let other_key = KeyMaterial::from_secret(KeyType::Aes256Gcm, &[4; 32]).unwrap();
    assert!(open_segment(&other_key, &name(), &header, b"thread", 0, false, &segments[0]).is_err());
    let other_version = StreamHeader { version: KeyVersion::new(3).unwrap(), ..header };
    assert!(open_all(&other_version, &segments, b"thread").is_err());
}

#[test]
fn malformed_headers_and_segment_sizes_are_refused() {
    let good = header(16).encode();
    assert!(StreamHeader::parse(&good[..40]).is_err());
    for (byte, value) in [(0, 1u8), (4, 0)] {
        let mut bad = good;
        bad[byte] = value;
        if byte == 4 {
            bad[1..5].fill(0);
        }
        assert!(StreamHeader::parse(&bad).is_err(), "byte {byte}");
    }
    let mut zero_segments = good;
    zero_segments[5..9].fill(0);
    assert!(StreamHeader::parse(&zero_segments).is_err());
    let mut huge = good;
    huge[5..9].copy_from_slice(&(MAX_STREAM_SEGMENT_LEN + 1).to_be_bytes());
    assert!(StreamHeader::parse(&huge).is_err());
    let header = header(16);
    assert!(seal_segment(&key(), &name(), &header, b"", 0, false, &[0; 15]).is_err(), "short non-final segment");
    assert!(seal_segment(&key(), &name(), &header, b"", 0, true, &[0; 17]).is_err(), "oversized segment");
    let hmac = KeyMaterial::from_secret(KeyType::HmacSha256, &[3; 32]).unwrap();
    assert!(matches!(
        seal_segment(&hmac, &name(), &header, b"", 0, true, b"x"),
        Err(KeyringError::UnsupportedOperation(_))
    ));
}

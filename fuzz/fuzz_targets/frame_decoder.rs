//! The link's frame reader on an arbitrary byte stream, with the real 1 MiB limit, and every
//! frame it yields decoded as a request, a response and for its request id.
//!
//! Checks: the reader never panics or waits on finite input; a header announcing more than
//! `MAX_FRAME_LEN` is refused on the header alone; a body is exactly the announced bytes;
//! a stream that ends mid-frame is `Truncated` and a clean end between frames is `Closed`.
#![no_main]

use keyward_fuzz::complete_now;
use keyward_proto::{FrameError, MAX_FRAME_LEN, RequestFrame, ResponseFrame, decode, decode_request_id, read_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        let before = rest;
        match complete_now(read_frame(&mut rest, MAX_FRAME_LEN)) {
            Ok(body) => {
                let announced = u32::from_be_bytes([before[0], before[1], before[2], before[3]]) as usize;
                assert!(announced <= MAX_FRAME_LEN);
                assert_eq!(body.len(), announced);
                assert_eq!(&body[..], &before[4..4 + announced]);
                assert_eq!(rest.len(), before.len() - 4 - announced);
                decode_body(&body);
            }
            Err(FrameError::Closed) => {
                assert!(before.is_empty(), "Closed reported with {} bytes left", before.len());
                break;
            }
            Err(FrameError::TooLarge { len, max }) => {
                assert!(len > max && max == MAX_FRAME_LEN);
                break;
            }
            Err(FrameError::Truncated) => {
                assert!(!before.is_empty());
                break;
            }
            Err(other) => panic!("unexpected error reading from memory: {other}"),
        }
    }
    // The body decoders must also hold up on bytes that never passed the reader.
    decode_body(data);
});

fn decode_body(body: &[u8]) {
    let request = decode::<RequestFrame>(body);
    let response = decode::<ResponseFrame>(body);
    let id = decode_request_id(body);
    // The id-only decoder (used to answer a request that failed to decode) must never find
    // an id other than the one the full decoder sees.
    if let (Ok(frame), Some(id)) = (&request, id) {
        assert_eq!(id, frame.id);
    }
    if let (Ok(frame), Some(id)) = (&response, id) {
        assert_eq!(id, frame.id);
    }
    for err in [request.err(), response.err()].into_iter().flatten() {
        assert!(matches!(err, FrameError::Malformed { .. }), "{err}");
    }
}

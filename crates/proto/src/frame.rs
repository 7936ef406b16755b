//! Length-prefixed frames: a `u32` big-endian length, then that many bytes of CBOR.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

/// Largest frame either side accepts or sends: 2 MiB. The largest request is an encryption
/// of [`crate::MAX_CRYPT_PAYLOAD_LEN`] (1 MiB) with its key row; a batch of a thousand
/// signatures is about 100 KiB. This bounds what a misbehaving peer can make us allocate.
pub const MAX_FRAME_LEN: usize = 2 << 20;

/// How long either side of the enclave link waits for the rest of a frame it has started
/// to receive (see [`read_frame_within`]). A full-size frame takes milliseconds over vsock.
pub const FRAME_STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What can go wrong reading, writing or decoding a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the connection cleanly between frames.
    #[error("peer closed the connection")]
    Closed,
    /// The length prefix announces more than the limit; nothing was allocated.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The connection ended inside a frame.
    #[error("connection ended in the middle of a frame")]
    Truncated,
    /// The bytes are not a valid message of the expected type.
    #[error("frame is not a valid {what}: {reason}")]
    Malformed {
        /// The message type that was expected.
        what: &'static str,
        /// The decoder's explanation (never includes the frame's bytes).
        reason: String,
    },
    /// A frame was started but not finished within the allowed time.
    #[error("peer stalled in the middle of a frame for {0:?}")]
    Stalled(std::time::Duration),
    /// An I/O error on the underlying stream.
    #[error("i/o error on the link: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame body. The length is checked before allocation; the returned buffer is
/// zeroized on drop because request bodies may carry credentials.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let first = read_first_byte(reader).await?;
    read_rest(reader, first, max).await
}

/// [`read_frame`] for a long-lived link: the connection may idle between frames for as long as
/// it likes, but once a frame's first byte has arrived the whole frame must follow within
/// `stall`. A peer that sends half a frame and goes quiet then costs a timeout, not a
/// connection task (and up to [`MAX_FRAME_LEN`] of buffer) held forever.
pub async fn read_frame_within<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
    stall: std::time::Duration,
) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let first = read_first_byte(reader).await?;
    tokio::time::timeout(stall, read_rest(reader, first, max)).await.map_err(|_| FrameError::Stalled(stall))?
}

async fn read_first_byte<R: AsyncRead + Unpin>(reader: &mut R) -> Result<u8, FrameError> {
    let mut first = [0u8; 1];
    match reader.read(&mut first).await? {
        0 => Err(FrameError::Closed),
        _ => Ok(first[0]),
    }
}

async fn read_rest<R: AsyncRead + Unpin>(
    reader: &mut R,
    first: u8,
    max: usize,
) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let mut header = [first, 0, 0, 0];
    let mut filled = 1;
    while filled < header.len() {
        match reader.read(&mut header[filled..]).await? {
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = Zeroizing::new(vec![0u8; len]);
    match reader.read_exact(&mut body).await {
        Ok(_) => Ok(body),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(FrameError::Io(e)),
    }
}

/// Writes an already encoded frame (header included, see [`encode`]) and flushes.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> Result<(), FrameError> {
    writer.write_all(frame).await?;
    writer.flush().await?;
    Ok(())
}

/// Encodes `message` as a complete frame: length prefix followed by CBOR.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; 4];
    serde_cbor::to_writer(&mut out, message)
        .map_err(|e| FrameError::Malformed { what: std::any::type_name::<T>(), reason: e.to_string() })?;
    let len = out.len() - 4;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len, max: MAX_FRAME_LEN });
    }
    // The length fits in u32 because it is at most MAX_FRAME_LEN.
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes a frame body (without its length prefix).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_cbor::from_slice(body)
        .map_err(|e| FrameError::Malformed { what: short_type_name::<T>(), reason: e.to_string() })
}

/// Recovers only the request id from a body whose full decoding failed, so that the error
/// reply can still be matched to its request.
pub fn decode_request_id(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: u64,
    }
    serde_cbor::from_slice::<IdOnly>(body).ok().map(|f| f.id)
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, RequestFrame};

    fn frame_of(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[tokio::test]
    async fn round_trips_a_request() {
        let frame = RequestFrame { id: 7, request: Request::Status };
        let bytes = encode(&frame).unwrap();
        let body = read_frame(&mut bytes.as_slice(), MAX_FRAME_LEN).await.unwrap();
        let back: RequestFrame = decode(&body).unwrap();
        assert_eq!(back.id, 7);
        assert!(matches!(back.request, Request::Status));
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_reading_the_body() {
        // Announces 16 MiB but carries nothing: the reader must refuse on the header alone.
        let bytes = (16u32 << 20).to_be_bytes();
        let err = read_frame(&mut bytes.as_slice(), MAX_FRAME_LEN).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len, .. } if len == 16 << 20), "{err}");
    }

    #[tokio::test]
    async fn truncated_header_and_body_are_reported() {
        let err = read_frame(&mut [0u8, 0].as_slice(), MAX_FRAME_LEN).await.unwrap_err();
        assert!(matches!(err, FrameError::Truncated), "{err}");
        let mut short = frame_of(&[1, 2, 3, 4]);
        short.truncate(6);
        let err = read_frame(&mut short.as_slice(), MAX_FRAME_LEN).await.unwrap_err();
        assert!(matches!(err, FrameError::Truncated), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_link_may_idle_between_frames_but_not_inside_one() {
        use std::time::Duration;
        use tokio::io::AsyncWriteExt;

        let frame = encode(&RequestFrame { id: 3, request: Request::Status }).unwrap();
        let (mut peer, mut link) = tokio::io::duplex(64);
        // Idle for an hour, then send a whole frame: fine.
        let whole = frame.clone();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            peer.write_all(&whole).await.unwrap();
            peer
        });
        let body = read_frame_within(&mut link, MAX_FRAME_LEN, Duration::from_secs(1)).await.unwrap();
        assert_eq!(decode::<RequestFrame>(&body).unwrap().id, 3);
        let mut peer = sender.await.unwrap();

        // Half a header, then silence: refused after the stall limit.
        peer.write_all(&frame[..2]).await.unwrap();
        let err = read_frame_within(&mut link, MAX_FRAME_LEN, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, FrameError::Stalled(d) if d == Duration::from_secs(1)), "{err}");

        // A header that announces a body which never comes: the same.
        let (mut peer, mut link) = tokio::io::duplex(64);
        peer.write_all(&frame[..frame.len() - 1]).await.unwrap();
        let err = read_frame_within(&mut link, MAX_FRAME_LEN, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, FrameError::Stalled(_)), "{err}");
        drop(peer);
    }

    #[tokio::test]
    async fn clean_close_between_frames_is_not_an_error_in_disguise() {
        let err = read_frame(&mut [].as_slice(), MAX_FRAME_LEN).await.unwrap_err();
        assert!(matches!(err, FrameError::Closed), "{err}");
    }

    #[test]
    fn garbage_is_malformed_and_never_panics() {
        for body in [&b""[..], b"\xff\xff\xff", b"garbage bytes", &[0xa1, 0x62, b'i', b'd']] {
            let err = decode::<RequestFrame>(body).unwrap_err();
            assert!(matches!(err, FrameError::Malformed { what: "RequestFrame", .. }), "{err}");
        }
    }

    #[test]
    fn id_survives_an_unknown_request_variant() {
        // {"id": 9, "request": "FutureThing"}
        let body = serde_cbor::to_vec(&serde_cbor::Value::Map(
            [
                (serde_cbor::Value::Text("id".into()), serde_cbor::Value::Integer(9)),
                (serde_cbor::Value::Text("request".into()), serde_cbor::Value::Text("FutureThing".into())),
            ]
            .into_iter()
            .collect(),
        ))
        .unwrap();
        assert!(decode::<RequestFrame>(&body).is_err());
        assert_eq!(decode_request_id(&body), Some(9));
    }
}

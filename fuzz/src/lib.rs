//! Helpers shared by the fuzz targets. A panic anywhere in a target is a finding, so these
//! assert freely.

use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use keyward_proto::{FrameError, decode, encode};
use serde::{Serialize, de::DeserializeOwned};

/// Runs a future that reads only from memory to completion with a single poll. Reading from a
/// byte slice never waits, so `Pending` would mean the reader hangs on finite input.
pub fn complete_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a reader over an in-memory slice returned Pending: it would hang"),
    }
}

/// `../shared/fixtures`, beside the repository (where CI and every developer have it).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

/// Decodes `body` as `T`. If that works, the value must encode again, and that encoding must
/// decode to the same value: a message the enclave accepts is one it can also echo and log
/// faithfully. Returns whether `body` decoded.
pub fn round_trips<T>(body: &[u8]) -> bool
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(value) = decode::<T>(body) else {
        return false;
    };
    let frame = match encode(&value) {
        Ok(frame) => frame,
        // A body within the fuzzer's input limit never re-encodes beyond 1 MiB; anything else
        // is a finding.
        Err(e @ FrameError::TooLarge { .. }) => panic!("re-encoding a {}-byte body: {e}", body.len()),
        Err(e) => panic!("a decoded {} does not re-encode: {e}", std::any::type_name::<T>()),
    };
    let again: T = decode(&frame[4..])
        .unwrap_or_else(|e| panic!("a re-encoded {} does not decode: {e}", std::any::type_name::<T>()));
    assert_eq!(value, again, "round trip changed the value");
    true
}

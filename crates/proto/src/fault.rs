//! Crash points for the fault-injection tests, shared by both binaries.
//!
//! With the `fault-injection` feature (on in development builds), setting
//! `KEYWARD_FAULT=<point>` makes the process abort at that point, exactly as if it had been
//! killed there, so a test can stop the gateway or the enclave between two steps of a flow
//! and check that a restart converges. Without the feature (production images are built with
//! `--no-default-features`) every crash point compiles to nothing.

/// Aborts the process if `KEYWARD_FAULT` names `point`.
#[cfg(feature = "fault-injection")]
pub fn crash_point(point: &str) {
    if std::env::var("KEYWARD_FAULT").is_ok_and(|v| v == point) {
        eprintln!("KEYWARD_FAULT: aborting at {point}");
        std::process::abort();
    }
}

/// Compiled out without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn crash_point(_point: &str) {}

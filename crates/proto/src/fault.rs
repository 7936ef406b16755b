//! Crash points for the fault-injection tests, shared by both binaries.
//!
//! With the `fault-injection` feature (on in development builds), setting
//! `KEYWARD_FAULT=<point>` makes the process abort at that point, exactly as if it had been
//! killed there, so a test can stop the gateway or the enclave between two steps of a flow
//! and check that a restart converges. `KEYWARD_FAULT=pause:<point>` holds it there instead
//! (see [`pause_point`]). Without the feature (production images are built with
//! `--no-default-features`) every crash and pause point compiles to nothing.

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

/// Holds the process at `point` while a test does something else: with
/// `KEYWARD_FAULT=pause:<point>` it writes `<KEYWARD_FAULT_DIR>/paused` and waits until
/// `<KEYWARD_FAULT_DIR>/resume` exists. Lets a test put two processes' steps in a chosen
/// order (two gateways meeting at the rotation's compare-and-swap) instead of hoping a race
/// goes its way.
#[cfg(feature = "fault-injection")]
pub async fn pause_point(point: &str) {
    let Ok(fault) = std::env::var("KEYWARD_FAULT") else { return };
    if fault.strip_prefix("pause:") != Some(point) {
        return;
    }
    let Some(dir) = std::env::var_os("KEYWARD_FAULT_DIR").map(std::path::PathBuf::from) else {
        eprintln!("KEYWARD_FAULT: pause:{point} needs KEYWARD_FAULT_DIR; not pausing");
        return;
    };
    eprintln!("KEYWARD_FAULT: pausing at {point}");
    if let Err(e) = std::fs::write(dir.join("paused"), point) {
        eprintln!("KEYWARD_FAULT: cannot write {}: {e}; not pausing", dir.join("paused").display());
        return;
    }
    while !dir.join("resume").exists() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    eprintln!("KEYWARD_FAULT: resuming at {point}");
}

/// Compiled out without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub async fn pause_point(_point: &str) {}

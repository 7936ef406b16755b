//! Seeding the keyring through the API: batches of secp256k1 keys named
//! [`key_name`](crate::load::key_name)`(0..total)`, sent over a few connections at once with
//! the admin token, as an operator creating keys in bulk would. Progress goes to stderr.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use keyward_client::{Client, keys::CreateKey};
use tokio::task::JoinSet;

use crate::{BenchError, load::key_name};

/// Seconds between progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What seeding took.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    /// Keys created.
    pub keys: u64,
    pub elapsed: Duration,
}

impl Seeded {
    /// Keys created per second, over the whole seeding.
    pub fn per_s(&self) -> f64 {
        self.keys as f64 / self.elapsed.as_secs_f64()
    }
}

/// Creates keys `0..total` in batches of `batch` over `connections` concurrent requests;
/// fails on the first batch the gateway refuses (nothing is retried, so the count is exact).
pub async fn seed(admin: &Client, total: u64, batch: u64, connections: usize) -> Result<Seeded, BenchError> {
    let batches = total.div_ceil(batch.max(1));
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..connections.max(1) {
        let (admin, next, done) = (admin.clone(), next.clone(), done.clone());
        tasks.spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return Ok(());
                }
                let keys: Vec<CreateKey> = (b * batch..((b + 1) * batch).min(total))
                    .map(|i| CreateKey { name: key_name(i), key_type: "secp256k1".into(), exportable: false })
                    .collect();
                let count = keys.len() as u64;
                let made = admin.create_keys(keys).await.map_err(|e| BenchError::Seed(format!("batch {b}: {e}")))?;
                if made.keys.len() as u64 != count {
                    return Err(BenchError::Seed(format!("batch {b}: {} keys made of {count}", made.keys.len())));
                }
                done.fetch_add(count, Ordering::Relaxed);
            }
        });
    }
    let mut report = tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(BenchError::Seed(format!("a seeding task failed: {e}"))),
            },
            _ = report.tick() => {
                let made = done.load(Ordering::Relaxed);
                let rate = made as f64 / start.elapsed().as_secs_f64();
                eprintln!("[bench] seeding: {made} of {total} keys ({rate:.0}/s)");
            }
        }
    }
    Ok(Seeded { keys: done.load(Ordering::Relaxed), elapsed: start.elapsed() })
}

//! A flood of `/v1/attestation` requests (no token needed, an NSM call each in the enclave)
//! running beside a signing load, to show that the gateway's rate limit and the enclave's
//! separate attestation workers keep signing latency where it was.
//!
//! The flood is paced (a fixed number of requests per second over a few connections), not a
//! tight loop: it must stress the gateway, not the load generator's one thread that also
//! times the signatures.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, header::HOST};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::load::{Endpoint, connect};

/// What the flood got back.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FloodOutcome {
    /// Attestation documents served (HTTP 200).
    pub served: u64,
    /// Requests refused with 429 `rate_limited`.
    pub limited: u64,
    /// Anything else (a 503 `busy` from the enclave, a transport error).
    pub other: u64,
    /// How long it ran.
    pub seconds: f64,
}

impl FloodOutcome {
    pub fn served_per_s(&self) -> f64 {
        self.served as f64 / self.seconds.max(f64::EPSILON)
    }

    pub fn limited_per_s(&self) -> f64 {
        self.limited as f64 / self.seconds.max(f64::EPSILON)
    }
}

/// Sends `rate` attestation requests per second over `connections` connections until `stop`
/// is set.
pub async fn attestation_flood(
    endpoint: Arc<Endpoint>,
    connections: usize,
    rate: f64,
    stop: Arc<AtomicBool>,
) -> FloodOutcome {
    let started = Instant::now();
    let interval = Duration::from_secs_f64(connections as f64 / rate);
    let mut tasks = JoinSet::new();
    for worker in 0..connections {
        let (endpoint, stop) = (endpoint.clone(), stop.clone());
        tasks.spawn(async move {
            let mut outcome = FloodOutcome::default();
            let mut sender = None;
            let mut next = tokio::time::Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(next).await;
                next += interval;
                n += 1;
                if sender.is_none() {
                    sender = connect(&endpoint).await.ok();
                }
                let Some(conn) = sender.as_mut() else {
                    outcome.other += 1;
                    continue;
                };
                let request = Request::builder()
                    .method(Method::GET)
                    .uri(format!("/v1/attestation?nonce={worker:04x}{n:016x}"))
                    .header(HOST, endpoint.host().clone())
                    .body(Full::new(Bytes::new()));
                let answer = match request {
                    Ok(request) if conn.ready().await.is_ok() => conn.send_request(request).await.ok(),
                    _ => None,
                };
                match answer {
                    Some(response) => {
                        let status = response.status().as_u16();
                        // Read the body so the connection can carry the next request.
                        let read = response.into_body().collect().await.is_ok();
                        match status {
                            200 if read => outcome.served += 1,
                            429 if read => outcome.limited += 1,
                            _ => outcome.other += 1,
                        }
                        if !read {
                            sender = None;
                        }
                    }
                    None => {
                        outcome.other += 1;
                        sender = None;
                    }
                }
            }
            outcome
        });
    }
    let mut total = FloodOutcome::default();
    while let Some(joined) = tasks.join_next().await {
        let part = joined.unwrap_or(FloodOutcome { other: 1, ..FloodOutcome::default() });
        total.served += part.served;
        total.limited += part.limited;
        total.other += part.other;
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}

//! The HTTP load generator: keep-alive HTTP/1.1 connections (hyper), each carrying one
//! request at a time, driven either in a closed loop (throughput: the next request goes out
//! when the previous answer is in) or in an open loop (latency at a fixed offered rate).
//!
//! Open loop: request `i` is due at `origin + i / rate`, whatever happened to earlier ones.
//! Whichever connection is free takes the next due request; when every connection is busy,
//! due requests wait, and their latency counts from the due time, so a stall in the system
//! under test is seen in the percentiles instead of quietly lowering the offered load
//! (coordinated omission). A request is sent up to [`TIMER_SLACK`] before it is due, because
//! tokio's timer fires on whole milliseconds; its latency then counts from the moment it was
//! actually sent. Latency therefore always starts at the earlier of "due" and "sent".

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode,
    client::conn::http1::{self, SendRequest},
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue},
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, task::JoinSet};

use crate::{BenchError, stats::Samples};

/// Distinct request bodies prepared per point (digests repeat after this many requests).
const BODY_POOL: usize = 4096;
/// The generator wakes this much before a request is due (tokio's timer resolution).
pub const TIMER_SLACK: Duration = Duration::from_millis(1);
/// After the measured window, requests already due may still be sent until this passes;
/// the rest count as failures.
const DRAIN: Duration = Duration::from_secs(2);
/// A request without an answer after this is a failure (the gateway's own enclave deadline
/// is 5 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway's API.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    host: HeaderValue,
    authorization: HeaderValue,
    /// Signs [`Workload::SignedKeySign`] requests when the pool is prepared.
    principal: Option<Arc<keyward_client::principal::PrincipalSigner>>,
    /// TLS to the enclave's own API (through the gateway's pass-through).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    pub fn new(addr: SocketAddr, token: &str) -> Result<Self, BenchError> {
        Ok(Endpoint {
            addr,
            host: HeaderValue::from_str(&addr.to_string()).map_err(|_| BenchError::Header("Host"))?,
            authorization: HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| BenchError::Header("Authorization"))?,
            principal: None,
            tls: None,
        })
    }

    /// This endpoint over TLS (the enclave's TLS API), trusting what `config` trusts.
    pub fn with_tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// This endpoint, with a principal that signs [`Workload::SignedKeySign`] requests.
    pub fn with_principal(mut self, principal: Arc<keyward_client::principal::PrincipalSigner>) -> Self {
        self.principal = Some(principal);
        self
    }

    /// The `Host` header value.
    pub(crate) fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Opens one connection, to check that the gateway listens.
    pub async fn probe(&self) -> Result<(), BenchError> {
        connect(self).await.map(drop)
    }
}

/// What each request asks for. All signatures are ECDSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `POST /v1/sign`, one digest.
    Single,
    /// `POST /v1/sign-batch` with this many digests.
    Batch(usize),
    /// `POST /v1/keys/{name}/sign`, one digest, with a key drawn uniformly at random from
    /// the `keys` keys named [`key_name`]`(0..keys)` for every request (`keys: 1` is one key).
    KeySign { keys: u64 },
    /// `POST /v1/keys/{name}/sign` with key [`key_name`]`(0)`, each request signed by the
    /// endpoint's principal (docs/authorization.md); the pool is signed before the point starts,
    /// as clients sign on their own machines.
    SignedKeySign,
    /// `POST /v1/keys/{CRYPT_KEY}/encrypt` with `bytes` of plaintext: as a binary body
    /// (`application/octet-stream`, answered with the streamed ciphertext) or in JSON (base64).
    Encrypt { bytes: usize, binary: bool },
    /// `POST /v1/keys/{CRYPT_KEY}/datakey`, an aes-256 data key with its plaintext.
    DataKey,
}

/// The aes256-gcm key the encryption points use.
pub const CRYPT_KEY: &str = "bench-aes";

/// The name of the `index`th key the bench seeds.
pub fn key_name(index: u64) -> String {
    format!("k{index:07}")
}

impl Workload {
    /// The endpoint, as reported.
    pub fn path(self) -> &'static str {
        match self {
            Workload::Single => "/v1/sign",
            Workload::Batch(_) => "/v1/sign-batch",
            Workload::KeySign { .. } | Workload::SignedKeySign => "/v1/keys/{name}/sign",
            Workload::Encrypt { .. } => "/v1/keys/bench-aes/encrypt",
            Workload::DataKey => "/v1/keys/bench-aes/datakey",
        }
    }

    /// The path of request number `seq` (distinct per request of a point).
    fn uri(self, seq: u64) -> String {
        match self {
            Workload::KeySign { keys } => format!("/v1/keys/{}/sign", key_name(pick_key(seq, keys))),
            Workload::SignedKeySign => format!("/v1/keys/{}/sign", key_name(0)),
            other => other.path().to_owned(),
        }
    }

    /// The request's media type.
    fn content_type(self) -> &'static str {
        match self {
            Workload::Encrypt { binary: true, .. } => "application/octet-stream",
            _ => "application/json",
        }
    }

    /// Signatures per request.
    pub fn signatures(self) -> usize {
        match self {
            Workload::Single
            | Workload::KeySign { .. }
            | Workload::SignedKeySign
            | Workload::Encrypt { .. }
            | Workload::DataKey => 1,
            Workload::Batch(n) => n,
        }
    }

    /// `count` request bodies over distinct digests (a few distinct plaintexts for
    /// encryption, whose bodies are large).
    fn bodies(self, count: usize) -> Vec<Bytes> {
        if let Workload::Encrypt { bytes, binary } = self {
            use base64::Engine;
            return (0..4u64)
                .map(|i| {
                    let plaintext: Vec<u8> = (0..bytes).map(|j| digest(i * 7919 + j as u64 / 32)[j % 32]).collect();
                    if binary {
                        return Bytes::from(plaintext);
                    }
                    let b64 = base64::engine::general_purpose::STANDARD.encode(plaintext);
                    Bytes::from(format!(r#"{{"plaintext_b64":"{b64}"}}"#))
                })
                .collect();
        }
        if self == Workload::DataKey {
            return vec![Bytes::from_static(br#"{"spec":"aes-256","plaintext":true}"#)];
        }
        let mut seed = 0u64;
        let mut next_digest = || {
            seed += 1;
            hex::encode(digest(seed))
        };
        let item = |digest_hex: String| format!(r#"{{"digest_hex":"{digest_hex}","scheme":"ecdsa"}}"#);
        (0..count)
            .map(|_| match self {
                Workload::Single => Bytes::from(item(next_digest())),
                // The key endpoint signs ECDSA by default for secp256k1; it takes no `scheme`.
                Workload::KeySign { .. } | Workload::SignedKeySign => {
                    Bytes::from(format!(r#"{{"digest_hex":"{}"}}"#, next_digest()))
                }
                Workload::Batch(n) => {
                    let items: Vec<String> = (0..n).map(|_| item(next_digest())).collect();
                    Bytes::from(format!(r#"{{"items":[{}]}}"#, items.join(",")))
                }
                Workload::Encrypt { .. } | Workload::DataKey => Bytes::new(),
            })
            .collect()
    }
}

impl Workload {
    /// `count` requests ready to send: the bodies, and for [`Workload::SignedKeySign`] each
    /// one's signature headers.
    fn prepare(self, count: usize, endpoint: &Endpoint) -> Result<Vec<Prepared>, BenchError> {
        let bodies = self.bodies(count);
        let Workload::SignedKeySign = self else {
            return Ok(bodies.into_iter().map(|body| Prepared { body, headers: Vec::new() }).collect());
        };
        let principal = endpoint.principal.as_ref().ok_or(BenchError::Header("no principal to sign with"))?;
        let key = key_name(0);
        bodies
            .into_iter()
            .map(|body| {
                let signed = principal
                    .headers(keyward_authz::Operation::Sign, "default", &key, &body, &[])
                    .map_err(|_| BenchError::Header("x-keyward-signature"))?;
                let headers = signed
                    .into_iter()
                    .map(|(name, value)| {
                        Ok((name, HeaderValue::from_str(&value).map_err(|_| BenchError::Header(name))?))
                    })
                    .collect::<Result<_, BenchError>>()?;
                Ok(Prepared { body, headers })
            })
            .collect()
    }
}

/// A request body and its extra headers.
#[derive(Debug, Clone)]
struct Prepared {
    body: Bytes,
    headers: Vec<(&'static str, HeaderValue)>,
}

/// A 32-byte digest derived from `seed` (splitmix64), distinct per seed.
pub fn digest(seed: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = seed;
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        chunk.copy_from_slice(&mix(x).to_le_bytes());
    }
    out
}

/// splitmix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key of request `seq`: uniform over `0..keys` (the bias of `%` is below 2^-40 here).
fn pick_key(seq: u64, keys: u64) -> u64 {
    if keys <= 1 { 0 } else { mix(seq.wrapping_add(0x9e37_79b9_7f4a_7c15)) % keys }
}

/// Warm-up (driven but not recorded) and the measured window that follows it.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

/// The result of one point.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub workload: Workload,
    pub connections: usize,
    /// Open loop: requests per second offered. `None` for a closed loop.
    pub offered_per_s: Option<f64>,
    /// Closed loop: the measured window. Open loop: from the window's start until the last
    /// of its requests was answered (longer than the window when the system fell behind).
    pub measured: Duration,
    pub samples: Samples,
}

impl Outcome {
    /// Successful requests per second over the measured window.
    pub fn requests_per_s(&self) -> f64 {
        self.samples.ok as f64 / self.measured.as_secs_f64()
    }

    /// Successful signatures per second over the measured window.
    pub fn signatures_per_s(&self) -> f64 {
        self.requests_per_s() * self.workload.signatures() as f64
    }
}

/// Closed loop: `connections` connections each send their next request as soon as the
/// previous one is answered. Requests that start inside the measured window are recorded.
pub async fn closed_loop(endpoint: &Arc<Endpoint>, workload: Workload, connections: usize, window: Window) -> Outcome {
    let bodies = match workload.prepare(BODY_POOL, endpoint) {
        Ok(prepared) => Arc::new(prepared),
        Err(_) => return unprepared(workload, connections, None, window),
    };
    let measure_from = Instant::now() + window.warmup;
    let end = measure_from + window.measure;
    let mut tasks = JoinSet::new();
    for k in 0..connections {
        let mut conn = Conn { endpoint: endpoint.clone(), sender: None };
        let bodies = bodies.clone();
        tasks.spawn(async move {
            let mut samples = Samples::default();
            let mut next = k * BODY_POOL / connections.max(1);
            // Each connection draws its own sequence of keys.
            let mut seq = (k as u64) << 40;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let result = conn.exchange(workload, seq, &bodies[next % bodies.len()]).await;
                next += 1;
                seq += 1;
                if sent >= measure_from {
                    match &result {
                        Ok(()) => samples.record_ok(sent.elapsed()),
                        Err(kind) => samples.record_failure(*kind),
                    }
                }
                conn.pause_after(&result).await;
            }
            samples
        });
    }
    Outcome { workload, connections, offered_per_s: None, measured: window.measure, samples: collect(tasks).await }
}

/// Open loop at `rate` requests per second over `connections` connections (see the module
/// documentation for how latency is counted). Requests due inside the measured window that
/// never got an answer by the drain deadline are failures.
pub async fn open_loop(
    endpoint: &Arc<Endpoint>,
    workload: Workload,
    connections: usize,
    rate: f64,
    window: Window,
) -> Outcome {
    let bodies = match workload.prepare(BODY_POOL, endpoint) {
        Ok(prepared) => Arc::new(prepared),
        Err(_) => return unprepared(workload, connections, Some(rate), window),
    };
    // Connect first, so that connection setup is not part of the schedule.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Conn { endpoint: endpoint.clone(), sender: connect(endpoint).await.ok() });
    }
    let schedule = Schedule::new(Instant::now() + Duration::from_millis(20), rate, window);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for mut conn in conns {
        let bodies = bodies.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut samples = Samples::default();
            let mut last_done = schedule.measure_end;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let due = schedule.due(i);
                if due >= schedule.measure_end || Instant::now() >= schedule.drain_deadline {
                    break;
                }
                if let Some(wake) = due.checked_sub(TIMER_SLACK).filter(|w| *w > Instant::now()) {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
                }
                let sent = Instant::now();
                let from = sent.min(due);
                let result = conn.exchange(workload, i, &bodies[i as usize % bodies.len()]).await;
                if due >= schedule.measure_from {
                    if sent > due + crate::stats::LATE {
                        samples.late += 1;
                    }
                    match &result {
                        Ok(()) => samples.record_ok(from.elapsed()),
                        Err(kind) => samples.record_failure(*kind),
                    }
                    last_done = last_done.max(Instant::now());
                }
                conn.pause_after(&result).await;
            }
            (samples, last_done)
        });
    }
    let mut samples = Samples::default();
    let mut last_done = schedule.measure_end;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((worker, done)) => {
                samples.merge(worker);
                last_done = last_done.max(done);
            }
            Err(_) => samples.record_failure("load generator task failed"),
        }
    }
    let unsent = schedule.due_in_window().saturating_sub(samples.total());
    samples.record_failures("unsent: due but not sent before the drain deadline", unsent);
    // An overloaded system answers the window's requests only during the drain: the rate
    // is what was answered over the time it took, not over the window alone.
    let measured = last_done.duration_since(schedule.measure_from);
    Outcome { workload, connections, offered_per_s: Some(rate), measured, samples }
}

/// A point whose requests could not be prepared: every request a failure, none sent.
fn unprepared(workload: Workload, connections: usize, offered_per_s: Option<f64>, window: Window) -> Outcome {
    let mut samples = Samples::default();
    samples.record_failure("the requests could not be prepared (signed)");
    Outcome { workload, connections, offered_per_s, measured: window.measure, samples }
}

/// When each request of an open loop is due.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    origin: Instant,
    rate: f64,
    measure_from: Instant,
    measure_end: Instant,
    drain_deadline: Instant,
}

impl Schedule {
    fn new(origin: Instant, rate: f64, window: Window) -> Self {
        let measure_from = origin + window.warmup;
        let measure_end = measure_from + window.measure;
        Schedule { origin, rate, measure_from, measure_end, drain_deadline: measure_end + DRAIN }
    }

    fn due(&self, i: u64) -> Instant {
        self.origin + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many requests fall due inside the measured window (the same arithmetic as
    /// [`Schedule::due`], so the count matches what the workers see).
    fn due_in_window(&self) -> u64 {
        let mut i = (self.measure_from - self.origin).as_secs_f64() * self.rate;
        i = (i - 2.0).max(0.0).floor();
        let mut i = i as u64;
        while self.due(i) < self.measure_from {
            i += 1;
        }
        let first = i;
        while self.due(i) < self.measure_end {
            i += 1;
        }
        i - first
    }
}

async fn collect(mut tasks: JoinSet<Samples>) -> Samples {
    let mut all = Samples::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(samples) => all.merge(samples),
            Err(_) => all.record_failure("load generator task failed"),
        }
    }
    all
}

/// One keep-alive connection; reconnects after a transport failure.
struct Conn {
    endpoint: Arc<Endpoint>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// One request and its full answer. `Err` names the kind of failure.
    async fn exchange(&mut self, workload: Workload, seq: u64, request: &Prepared) -> Result<(), &'static str> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.try_exchange(workload, seq, request)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Failure::Answer(kind))) => Err(kind),
            Ok(Err(Failure::Transport(kind))) => {
                self.sender = None;
                Err(kind)
            }
            Err(_) => {
                self.sender = None;
                Err("timeout: no answer within 10 s")
            }
        }
    }

    async fn try_exchange(&mut self, workload: Workload, seq: u64, prepared: &Prepared) -> Result<(), Failure> {
        if self.sender.is_none() {
            self.sender = Some(connect(&self.endpoint).await.map_err(|_| Failure::Transport("connect"))?);
        }
        let Some(sender) = self.sender.as_mut() else { return Err(Failure::Transport("connect")) };
        sender.ready().await.map_err(|_| Failure::Transport("connection closed"))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(workload.uri(seq))
            .header(HOST, self.endpoint.host.clone())
            .header(AUTHORIZATION, self.endpoint.authorization.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(workload.content_type()));
        for (name, value) in &prepared.headers {
            request = request.header(*name, value.clone());
        }
        let request = request
            .body(Full::new(prepared.body.clone()))
            .map_err(|_| Failure::Answer("request could not be built"))?;
        let response = sender.send_request(request).await.map_err(|_| Failure::Transport("connection error"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| Failure::Transport("connection error in the body"))?
            .to_bytes();
        check_answer(workload, status, &body).map_err(Failure::Answer)
    }

    /// After a transport failure, wait a little so a refused connection does not spin.
    async fn pause_after(&self, result: &Result<(), &'static str>) {
        if result.is_err() && self.sender.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

enum Failure {
    /// The connection is unusable.
    Transport(&'static str),
    /// The gateway answered, but not with success.
    Answer(&'static str),
}

/// Success means HTTP 200 with one signature per digest asked for (a ciphertext for an
/// encryption, a wrapped key with its plaintext for a data key).
fn check_answer(workload: Workload, status: StatusCode, body: &[u8]) -> Result<(), &'static str> {
    if status != StatusCode::OK {
        return Err(match status.as_u16() {
            400..=499 => "http 4xx",
            503 => "http 503",
            504 => "http 504",
            500..=599 => "http 5xx",
            _ => "http other",
        });
    }
    if let Workload::Encrypt { bytes, binary: true } = workload {
        // Header, the plaintext, and a tag per 64 KiB segment.
        let expected = 41 + bytes + bytes.div_ceil(64 * 1024).max(1) * 16;
        return if body.len() == expected { Ok(()) } else { Err("ciphertext of the wrong length") };
    }
    let mark: &[u8] = match workload {
        Workload::Encrypt { .. } => br#""ciphertext_b64""#,
        Workload::DataKey => br#""plaintext_b64""#,
        _ => br#""signature_hex""#,
    };
    let signatures = body.windows(mark.len()).filter(|w| *w == mark).count();
    if signatures != workload.signatures() {
        return Err("answer without one signature per digest");
    }
    Ok(())
}

/// One keep-alive HTTP/1.1 connection to the gateway.
pub(crate) async fn connect(endpoint: &Endpoint) -> Result<SendRequest<Full<Bytes>>, BenchError> {
    let failed = |e: &dyn std::fmt::Display| BenchError::Connect { addr: endpoint.addr, reason: e.to_string() };
    let stream = TcpStream::connect(endpoint.addr).await.map_err(|e| failed(&e))?;
    stream.set_nodelay(true).map_err(|e| failed(&e))?;
    if let Some(config) = &endpoint.tls {
        let name = rustls::pki_types::ServerName::IpAddress(endpoint.addr.ip().into());
        let tls =
            tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream).await.map_err(|e| failed(&e))?;
        let (sender, connection) = http1::handshake(TokioIo::new(tls)).await.map_err(|e| failed(&e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        return Ok(sender);
    }
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed(&e))?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the peer closes; either way the next request
        // on this slot reconnects.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Full TLS handshakes (no resumption) completed per second against `endpoint` by
/// `concurrency` connectors for `duration`, each followed by one `GET /v1/health` so the
/// server's side is done too; and how many failed.
pub async fn handshake_rate(endpoint: &Arc<Endpoint>, concurrency: usize, duration: Duration) -> (f64, u64) {
    let until = Instant::now() + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let endpoint = endpoint.clone();
        tasks.spawn(async move {
            let (mut done, mut failed) = (0u64, 0u64);
            while Instant::now() < until {
                let ok = match connect(&endpoint).await {
                    Ok(mut sender) => {
                        let request = hyper::Request::get("/v1/health")
                            .header(hyper::header::HOST, endpoint.host().clone())
                            .body(Full::new(Bytes::new()));
                        match request {
                            Ok(request) => sender.send_request(request).await.is_ok(),
                            Err(_) => false,
                        }
                    }
                    Err(_) => false,
                };
                if ok { done += 1 } else { failed += 1 }
            }
            (done, failed)
        });
    }
    let (mut done, mut failed) = (0u64, 0u64);
    while let Some(Ok((d, f))) = tasks.join_next().await {
        done += d;
        failed += f;
    }
    (done as f64 / duration.as_secs_f64(), failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_api_shapes_with_distinct_digests() {
        let single = Workload::Single.bodies(3);
        let parsed: Vec<serde_json::Value> = single.iter().map(|b| serde_json::from_slice(b).unwrap()).collect();
        assert_eq!(parsed[0]["scheme"], "ecdsa");
        assert_eq!(parsed[0]["digest_hex"].as_str().unwrap().len(), 64);
        assert_ne!(parsed[0]["digest_hex"], parsed[1]["digest_hex"]);
        let batch: serde_json::Value = serde_json::from_slice(&Workload::Batch(5).bodies(1)[0]).unwrap();
        assert_eq!(batch["items"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn key_requests_draw_every_key_about_equally() {
        let keys = 10;
        let mut counts = [0u32; 10];
        for seq in 0..100_000 {
            counts[pick_key(seq, keys) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)), "{counts:?}");
        assert_eq!(Workload::KeySign { keys: 1 }.uri(12345), "/v1/keys/k0000000/sign");
        assert_eq!(
            Workload::KeySign { keys: 2_000_000 }.uri(7),
            format!("/v1/keys/{}/sign", key_name(pick_key(7, 2_000_000)))
        );
        let body: serde_json::Value = serde_json::from_slice(&Workload::KeySign { keys: 3 }.bodies(1)[0]).unwrap();
        assert_eq!(body["digest_hex"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn an_answer_counts_only_with_every_signature() {
        let one = br#"{"signature_hex":"ab","public_key_hex":"02"}"#;
        assert_eq!(check_answer(Workload::Single, StatusCode::OK, one), Ok(()));
        assert!(check_answer(Workload::Single, StatusCode::SERVICE_UNAVAILABLE, one).is_err());
        let two = br#"{"results":[{"signature_hex":"ab"},{"error":{"code":"x"}}]}"#;
        assert!(check_answer(Workload::Batch(2), StatusCode::OK, two).is_err(), "an item error is a failure");
    }

    #[test]
    fn the_schedule_counts_what_falls_due_in_the_window() {
        let origin = Instant::now();
        let window = Window { warmup: Duration::from_millis(500), measure: Duration::from_secs(2) };
        let schedule = Schedule::new(origin, 1000.0, window);
        assert_eq!(schedule.due_in_window(), 2000);
        assert_eq!(schedule.due(1000) - origin, Duration::from_secs(1));
        let slow = Schedule::new(origin, 3.0, window);
        // Due at 2/3 s, 1, 4/3, 5/3, 2 and 7/3 s: six inside [0.5 s, 2.5 s).
        assert_eq!(slow.due_in_window(), 6);
    }
}

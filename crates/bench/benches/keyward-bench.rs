//! `just bench`: raw signing rate, then the dev stack (release binaries) under load, a few
//! enclave restarts, and peak memory; prints a table and writes `target/bench/summary.json`.
//! See the crate README for how each number is taken.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

#[path = "keyward-bench/pg_point.rs"]
mod pg_point;
#[path = "keyward-bench/tls_point.rs"]
mod tls_point;

use anyhow::{Context, bail};
use clap::Parser;
use keyward_bench::{
    authz::{AuthzSummary, SIGNED_KEY_POINT},
    crypt::{self, CryptSummary},
    flood::{FloodOutcome, attestation_flood},
    keyring::{KeyringSummary, MULTI_KEY_OPEN_POINT, MULTI_KEY_POINT, SINGLE_KEY_POINT},
    load::{self, Endpoint, Outcome, Window, Workload},
    procfs::{self, CpuProbe},
    raw::{self, RawRate, Scheme},
    report::{PointReport, Summary, median},
    seed,
    timeline::RestartRun,
};
use keyward_client::{api::BatchResult, principal::PrincipalSigner};
use keyward_e2e::{Stack, StackOptions, assert_signature_verifies};

#[derive(Debug, Parser)]
#[command(name = "keyward-bench", about = "keyward benchmark against the development stack")]
struct Args {
    /// Measured seconds per point (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    measure: f64,
    /// Warm-up seconds per point (driven, not recorded).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds per raw signing measurement.
    #[arg(long, default_value_t = 2.0)]
    raw: f64,
    /// Digests per request for the batch throughput point.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Digests per request for the batch latency points.
    #[arg(long, default_value_t = 4)]
    latency_batch: usize,
    /// Connections for the single-signature throughput points; the best one is reported.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    single_connections: Vec<usize>,
    /// Connections for the batch throughput point.
    #[arg(long, default_value_t = 4)]
    batch_connections: usize,
    /// Connections available to the open-loop (latency) points.
    #[arg(long, default_value_t = 64)]
    open_connections: usize,
    /// Offered loads (requests per second) of the latency points.
    #[arg(long, value_delimiter = ',', default_value = "200,1000,5000")]
    rates: Vec<f64>,
    /// `/v1/attestation` requests per second sent beside signing at 1,000 req/s (the gateway
    /// serves 20 per second and answers the rest 429).
    #[arg(long, default_value_t = 1000.0)]
    attestation_flood: f64,
    /// Keys seeded into the keyring through the batch API before the key points.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Keys per seeding request (the API takes at most 1,000).
    #[arg(long, default_value_t = 1000)]
    key_batch: u64,
    /// Seeding requests in flight at once.
    #[arg(long, default_value_t = 4)]
    key_create_connections: usize,
    /// Connections for the random-key and one-key signing throughput points.
    #[arg(long, default_value_t = 16)]
    key_connections: usize,
    /// Connections for the 1 MiB encryption point.
    #[arg(long, default_value_t = 4)]
    encrypt_connections: usize,
    /// Keys seeded into PostgreSQL for the fleet points (default: as many as `--keys`).
    #[arg(long)]
    pg_keys: Option<u64>,
    /// Enclave restarts to time.
    #[arg(long, default_value_t = 3)]
    restarts: usize,
    /// Where the JSON summary goes (default: target/bench/summary.json in the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`. Without it the target runs under `cargo test`
    /// (`--all-targets` includes benches), where it only says how to run it.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.bench {
        eprintln!("keyward-bench: not started by `cargo bench`; nothing measured (run `just bench`)");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keyward-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One OS thread drives all the load (and the harness's own client calls), so the load
    // generator can take at most one of the cores it shares with the gateway and enclave.
    let result = runtime.block_on(async {
        tokio::select! {
            result = bench(&args) => result,
            signal = interrupted() => bail!("{signal}: stopped the stack and gave up"),
        }
    });
    // Every process the run started has stopped here: the stack is dropped inside `bench`,
    // or with its future when a signal cut it short.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: &Args) -> anyhow::Result<()> {
    let window =
        Window { warmup: Duration::from_secs_f64(args.warmup), measure: Duration::from_secs_f64(args.measure) };
    let mut builds = BTreeSet::new();
    note_builds(&mut builds);
    let idle = CpuProbe::start(&[]);
    std::thread::sleep(Duration::from_secs(1));
    let machine_busy_before = idle.finish().machine_busy;
    if machine_busy_before > 0.1 {
        eprintln!("[bench] WARNING: the machine is {:.0}% busy before the run", machine_busy_before * 100.0);
    }

    eprintln!("[bench] raw signing on one thread, {:.1} s per scheme", args.raw);
    let key = raw::bench_key().context("generating a throwaway key")?;
    let raw_time = Duration::from_secs_f64(args.raw);
    let raw_ecdsa = raw::rate(&key, Scheme::Ecdsa, Duration::from_millis(300), raw_time);
    let raw_bip340 = raw::rate(&key, Scheme::Bip340, Duration::from_millis(300), raw_time);
    drop(key);
    report_raw(raw_ecdsa, raw_bip340);
    note_builds(&mut builds);

    eprintln!("[bench] building release binaries and starting the dev stack (LocalStack, dev KMS, enclave, gateway)");
    let mut stack = Stack::start(StackOptions::default()).await;
    check_signatures(&stack).await?;
    let endpoint = Arc::new(Endpoint::new(SocketAddr::from(([127, 0, 0, 1], stack.api_port)), &stack.token)?);
    endpoint.probe().await?;
    let gateway_pid = stack.gateway.as_ref().map(|p| p.pid()).context("the stack has no gateway")?;
    let enclave_pid = stack.enclaves.get(&1).map(|p| p.pid()).context("the stack has no enclave 1")?;
    let pids = [("gateway", gateway_pid), ("enclave", enclave_pid), ("loadgen", std::process::id())];
    note_builds(&mut builds);
    // What the stack costs with no load at all, to read the low-rate points against.
    let idle = CpuProbe::start(&pids);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_cpu_cores = idle.finish().cores.into_iter().collect();

    let mut points = load_points(args, window, &endpoint, &pids, &mut builds).await;
    let flood = flooded_point(args, window, &endpoint, &pids, &mut points).await?;

    // The enclave that served all the load; the restarts below replace it.
    let enclave_peak_rss_mib = procfs::peak_rss_mib(enclave_pid);
    let mut restarts = Vec::new();
    for run in 0..args.restarts {
        let timed = restart(&mut stack, run).await?;
        eprintln!("[bench] restart {}: ready after {:.3} s", run + 1, timed.ready_s);
        restarts.push(timed);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let gateway_peak_rss_mib = procfs::peak_rss_mib(gateway_pid);
    let restarted_enclave_peak_rss_mib = stack.enclaves.get(&1).and_then(|p| procfs::peak_rss_mib(p.pid()));
    note_builds(&mut builds);
    let keyring = keyring_points(args, window, &mut stack, &endpoint, &mut points).await?;
    note_builds(&mut builds);
    let crypt = crypt_points(args, window, &mut stack, &endpoint, &mut points).await?;
    note_builds(&mut builds);
    let tls =
        tls_point::tls_points(args.key_connections, window, &mut stack, &mut points, keyring.singlekey_sign_per_s)
            .await?;
    note_builds(&mut builds);
    authz_point(args, window, &mut stack, &mut points).await?;
    let authz = AuthzSummary::new(&points, keyring.singlekey_sign_per_s, args.key_connections);
    note_builds(&mut builds);
    drop(stack);
    let fleet = pg_point::pg_points(pg_point::PgRun {
        keys: args.pg_keys.unwrap_or(args.keys),
        key_batch: args.key_batch,
        key_create_connections: args.key_create_connections,
        connections: args.key_connections,
        window,
        sqlite_multikey_per_s: keyring.multikey_sign_per_s,
        points: &mut points,
    })
    .await?;
    note_builds(&mut builds);

    let best_single = points
        .iter()
        .filter(|p| p.name.starts_with("single closed"))
        .max_by(|a, b| a.achieved_req_per_s.total_cmp(&b.achieved_req_per_s))
        .cloned()
        .context("no single-signature throughput point")?;
    let batch_point = points.iter().find(|p| p.name == "batch closed").cloned().context("no batch point")?;
    let at = |rate: f64, pick: fn(&PointReport) -> Option<f64>| {
        points.iter().find(|p| p.name == format!("single open {rate:.0}")).and_then(pick)
    };
    let raw_ecdsa_per_s = raw_ecdsa.per_s();
    let mut summary = Summary {
        raw_ecdsa_per_s,
        raw_bip340_per_s: raw_bip340.per_s(),
        e2e_single_per_s: best_single.achieved_req_per_s,
        e2e_batch_sigs_per_s: batch_point.achieved_sigs_per_s,
        ratio_batch_to_raw: batch_point.achieved_sigs_per_s / raw_ecdsa_per_s,
        p50_ms_at_1000: at(1000.0, |p| p.p50_ms),
        p99_ms_at_1000: at(1000.0, |p| p.p99_ms),
        restart_to_ready_s: median(&restarts.iter().map(|r| r.ready_s).collect::<Vec<_>>()),
        gateway_peak_rss_mib,
        enclave_peak_rss_mib,
        ratio_single_to_raw: best_single.achieved_req_per_s / raw_ecdsa_per_s,
        p50_ms_at_200: at(200.0, |p| p.p50_ms),
        p99_ms_at_200: at(200.0, |p| p.p99_ms),
        p50_ms_at_5000: at(5000.0, |p| p.p50_ms),
        p99_ms_at_5000: at(5000.0, |p| p.p99_ms),
        batch_size: args.batch,
        batch_latency_size: args.latency_batch,
        single_connections: best_single.connections,
        batch_connections: args.batch_connections,
        open_loop_connections: args.open_connections,
        p99_ms_at_1000_attestation_flood: at_named(&points, FLOODED_POINT, |p| p.p99_ms),
        ratio_p99_flood_to_quiet: at_named(&points, FLOODED_POINT, |p| p.p99_ms)
            .zip(at(1000.0, |p| p.p99_ms))
            .map(|(flooded, quiet)| flooded / quiet),
        attestation_flood_offered_per_s: args.attestation_flood,
        attestation_flood: flood,
        restart_runs: restarts,
        restarted_enclave_peak_rss_mib,
        load_generator: LOAD_GENERATOR.to_owned(),
        warmup_s: window.warmup.as_secs_f64(),
        measure_s: window.measure.as_secs_f64(),
        competing_builds: builds.into_iter().collect(),
        machine_busy_before,
        idle_cpu_cores,
        cpus: procfs::cpu_count(),
        keyring,
        crypt,
        authz,
        tls,
        fleet,
        points,
        targets: Vec::new(),
    };
    summary.judge();
    print!("\n{}", summary.table());
    let out = args.out.clone().unwrap_or_else(|| keyward_e2e::workspace_root().join("target/bench/summary.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("\nsummary written to {}", out.display());
    let missing = summary.missing_required();
    if !missing.is_empty() {
        bail!("no measurement for {} (null in the summary); see the table above", missing.join(", "));
    }
    Ok(())
}

const LOAD_GENERATOR: &str = "this process: one OS thread (tokio current-thread runtime), not pinned; hyper \
                              HTTP/1.1 keep-alive connections, one request in flight per connection";

/// The name of the point that signs at 1,000 req/s while `/v1/attestation` is flooded.
const FLOODED_POINT: &str = "single open 1000 + attestation flood";

fn at_named(points: &[PointReport], name: &str, pick: fn(&PointReport) -> Option<f64>) -> Option<f64> {
    points.iter().find(|p| p.name == name).and_then(pick)
}

/// Signing at 1,000 req/s (open loop, as the quiet point) while `--attestation-flood`
/// attestation requests per second arrive beside it.
async fn flooded_point(
    args: &Args,
    window: Window,
    endpoint: &Arc<Endpoint>,
    pids: &[(&str, u32)],
    points: &mut Vec<PointReport>,
) -> anyhow::Result<FloodOutcome> {
    let stop = Arc::new(AtomicBool::new(false));
    let flood = tokio::spawn(attestation_flood(endpoint.clone(), 4, args.attestation_flood, stop.clone()));
    let load = load::open_loop(endpoint, Workload::Single, args.open_connections, 1000.0, window);
    points.push(measured(FLOODED_POINT, pids, window, load).await);
    stop.store(true, Ordering::Relaxed);
    let flood = flood.await.context("the attestation flood task")?;
    eprintln!(
        "[bench] attestation flood: {:.0}/s served, {:.0}/s rate-limited, {} other",
        flood.served_per_s(),
        flood.limited_per_s(),
        flood.other
    );
    Ok(flood)
}

/// Throughput (closed loop) and then latency (open loop) points, in that order.
async fn load_points(
    args: &Args,
    window: Window,
    endpoint: &Arc<Endpoint>,
    pids: &[(&str, u32)],
    builds: &mut BTreeSet<String>,
) -> Vec<PointReport> {
    let mut points = Vec::new();
    for &connections in &args.single_connections {
        let name = format!("single closed c{connections}");
        let load = load::closed_loop(endpoint, Workload::Single, connections, window);
        points.push(measured(&name, pids, window, load).await);
        note_builds(builds);
    }
    let load = load::closed_loop(endpoint, Workload::Batch(args.batch), args.batch_connections, window);
    points.push(measured("batch closed", pids, window, load).await);
    note_builds(builds);
    for (kind, workload) in [("single", Workload::Single), ("batch", Workload::Batch(args.latency_batch))] {
        for &rate in &args.rates {
            let name = format!("{kind} open {rate:.0}");
            let load = load::open_loop(endpoint, workload, args.open_connections, rate, window);
            points.push(measured(&name, pids, window, load).await);
            note_builds(builds);
        }
    }
    points
}

/// Seeds `--keys` keys through the batch API, then signs through `POST /v1/keys/{name}/sign`
/// with one key and with a uniformly random key of all of them (closed loop, same
/// connections), and at 1,000 req/s with random keys (open loop). Runs on the enclave the
/// restarts left, so its peak RSS covers the seeding and these points only.
async fn keyring_points(
    args: &Args,
    window: Window,
    stack: &mut Stack,
    endpoint: &Arc<Endpoint>,
    points: &mut Vec<PointReport>,
) -> anyhow::Result<KeyringSummary> {
    let gateway_pid = stack.gateway.as_ref().map(|p| p.pid()).context("the stack has no gateway")?;
    let enclave_pid = stack.enclaves.get(&1).map(|p| p.pid()).context("the stack has no enclave 1")?;
    let pids = [("gateway", gateway_pid), ("enclave", enclave_pid), ("loadgen", std::process::id())];
    stack.wait_keyring().await;
    eprintln!(
        "[bench] seeding {} keys through POST /v1/keys/batch ({} per request, {} at once)",
        args.keys, args.key_batch, args.key_create_connections
    );
    let admin = stack.admin_client();
    let seeded = seed::seed(&admin, args.keys, args.key_batch, args.key_create_connections).await?;
    let keys_in_store = stack.count("SELECT COUNT(*) FROM keys");
    eprintln!(
        "[bench] seeded {} keys in {:.1} s ({:.0}/s); {keys_in_store} in the store",
        seeded.keys,
        seeded.elapsed.as_secs_f64(),
        seeded.per_s()
    );
    let one = Workload::KeySign { keys: 1 };
    let all = Workload::KeySign { keys: args.keys };
    let connections = args.key_connections;
    points.push(measured(SINGLE_KEY_POINT, &pids, window, load::closed_loop(endpoint, one, connections, window)).await);
    points.push(measured(MULTI_KEY_POINT, &pids, window, load::closed_loop(endpoint, all, connections, window)).await);
    let open = load::open_loop(endpoint, all, args.open_connections, 1000.0, window);
    points.push(measured(MULTI_KEY_OPEN_POINT, &pids, window, open).await);
    let rate = |name: &str| points.iter().find(|p| p.name == name).map_or(0.0, |p| p.achieved_req_per_s);
    let (multikey_sign_per_s, singlekey_sign_per_s) = (rate(MULTI_KEY_POINT), rate(SINGLE_KEY_POINT));
    let open_point = points.iter().find(|p| p.name == MULTI_KEY_OPEN_POINT);
    Ok(KeyringSummary {
        keys_in_store,
        key_create_per_s: seeded.per_s(),
        key_create_batch: args.key_batch,
        key_create_connections: args.key_create_connections,
        multikey_sign_per_s,
        singlekey_sign_per_s,
        ratio_multikey_to_singlekey: multikey_sign_per_s / singlekey_sign_per_s,
        key_sign_connections: connections,
        multikey_p50_ms_at_1000: open_point.and_then(|p| p.p50_ms),
        multikey_p99_ms_at_1000: open_point.and_then(|p| p.p99_ms),
        enclave_peak_rss_mib_multikey: procfs::peak_rss_mib(enclave_pid),
        gateway_peak_rss_mib_multikey: procfs::peak_rss_mib(gateway_pid),
    })
}

/// AES-256-GCM on one core in this process, then 1 MiB encryptions and aes-256 data keys
/// through the API (closed loops) with one aes256-gcm key.
async fn crypt_points(
    args: &Args,
    window: Window,
    stack: &mut Stack,
    endpoint: &Arc<Endpoint>,
    points: &mut Vec<PointReport>,
) -> anyhow::Result<CryptSummary> {
    let raw = crypt::raw_aes_gcm_mib_per_s(crypt::ENCRYPT_PAYLOAD, window.warmup, window.measure);
    eprintln!("[bench] raw AES-256-GCM, one core: {raw:.0} MiB/s");
    let gateway_pid = stack.gateway.as_ref().map(|p| p.pid()).context("the stack has no gateway")?;
    let enclave_pid = stack.enclaves.get(&1).map(|p| p.pid()).context("the stack has no enclave 1")?;
    let pids = [("gateway", gateway_pid), ("enclave", enclave_pid), ("loadgen", std::process::id())];
    stack.admin_client().create_key(load::CRYPT_KEY, "aes256-gcm", false).await.context("the bench's aes key")?;
    for (name, binary) in [(crypt::ENCRYPT_POINT, true), (crypt::ENCRYPT_JSON_POINT, false)] {
        let encrypt = Workload::Encrypt { bytes: crypt::ENCRYPT_PAYLOAD, binary };
        let load = load::closed_loop(endpoint, encrypt, args.encrypt_connections, window);
        points.push(measured(name, &pids, window, load).await);
    }
    let load = load::closed_loop(endpoint, Workload::DataKey, args.key_connections, window);
    points.push(measured(crypt::DATAKEY_POINT, &pids, window, load).await);
    let mut summary = CryptSummary::new(raw, points);
    // Fresh processes, so that the peaks are the stream's own, not the million keys' or the
    // 1 MiB points' (four JSON requests of 1 MiB at once hold several copies each).
    stack.kill_gateway();
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    stack.start_gateway();
    stack.wait_keyring().await;
    let gateway_pid = stack.gateway.as_ref().map(|p| p.pid()).context("the stack has no gateway")?;
    let enclave_pid = stack.enclaves.get(&1).map(|p| p.pid()).context("the stack has no enclave 1")?;
    let (mib, streamed) = stream_gib(stack).await?;
    eprintln!("[bench] streamed 1 GiB through encryption at {mib:.0} MiB/s ({streamed} bytes back)");
    summary.stream_encrypt_mib_per_s = Some(mib);
    summary.stream_1gib_gateway_peak_rss_mib = procfs::peak_rss_mib(gateway_pid);
    summary.stream_1gib_enclave_peak_rss_mib = procfs::peak_rss_mib(enclave_pid);
    Ok(summary)
}

/// The enclave restarted with an owner (authorization on), and one key signed through the
/// keyring endpoint with every request signed by the owner, as the single-key point did
/// without. One signed request is checked first, so a refusal fails the run instead of
/// filling the point with 4xx.
async fn authz_point(
    args: &Args,
    window: Window,
    stack: &mut Stack,
    points: &mut Vec<PointReport>,
) -> anyhow::Result<()> {
    let pem = PrincipalSigner::generate_ed25519_pem().map_err(anyhow::Error::msg)?;
    let owner = Arc::new(PrincipalSigner::from_pem(&pem).map_err(anyhow::Error::msg)?);
    eprintln!("[bench] restarting the enclave with an owner: every request signed, checked and audited");
    stack.options.owners = vec![owner.public()];
    stack.kill_enclave(1).await;
    stack.start_enclave(1);
    stack.wait_keyring().await;
    let signed = stack.client.clone().with_principal(owner.clone());
    let digest = hex::encode(load::digest(1));
    let request = keyward_client::keys::SignWithKey { digest_hex: Some(digest), ..Default::default() };
    let answer = signed.sign_with_key(&load::key_name(0), &request).await.context("a signed request")?;
    anyhow::ensure!(answer.receipt.is_some(), "a signed request was answered without an audit receipt");
    let gateway_pid = stack.gateway.as_ref().map(|p| p.pid()).context("the stack has no gateway")?;
    let enclave_pid = stack.enclaves.get(&1).map(|p| p.pid()).context("the stack has no enclave 1")?;
    let pids = [("gateway", gateway_pid), ("enclave", enclave_pid), ("loadgen", std::process::id())];
    let endpoint = Arc::new(
        Endpoint::new(SocketAddr::from(([127, 0, 0, 1], stack.api_port)), &stack.token)?.with_principal(owner),
    );
    let load = load::closed_loop(&endpoint, Workload::SignedKeySign, args.key_connections, window);
    points.push(measured(SIGNED_KEY_POINT, &pids, window, load).await);
    Ok(())
}

/// Streams 1 GiB (made on the fly) through `POST /v1/keys/{name}/encrypt` as
/// `application/octet-stream` and reads the ciphertext back as it comes; returns plaintext
/// MiB/s and the ciphertext's length.
async fn stream_gib(stack: &Stack) -> anyhow::Result<(f64, u64)> {
    use futures_util::StreamExt;
    const CHUNK: usize = 1 << 20;
    let chunk = bytes::Bytes::from(vec![0x5au8; CHUNK]);
    let body = futures_util::stream::iter(0..1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    let start = Instant::now();
    let response =
        stack.client.encrypt_stream(load::CRYPT_KEY, reqwest::Body::wrap_stream(body), None).await.context("stream")?;
    let mut answer = response.bytes_stream();
    let mut len = 0u64;
    while let Some(part) = answer.next().await {
        len += part.context("the encryption stream broke off")?.len() as u64;
    }
    Ok((1024.0 / start.elapsed().as_secs_f64(), len))
}

/// Runs one load point and measures the CPU of the stack's processes over its measured
/// window (the probe starts when the warm-up ends).
async fn measured(
    name: &str,
    pids: &[(&str, u32)],
    window: Window,
    load: impl std::future::Future<Output = Outcome>,
) -> PointReport {
    eprintln!("[bench] {name}: {:.1} s warm-up + {:.1} s", window.warmup.as_secs_f64(), window.measure.as_secs_f64());
    let probe = async {
        tokio::time::sleep(window.warmup).await;
        CpuProbe::start(pids)
    };
    let (outcome, probe) = tokio::join!(load, probe);
    let cpu = probe.finish();
    // Let the stack settle between points.
    tokio::time::sleep(Duration::from_millis(300)).await;
    PointReport::new(name, outcome, cpu)
}

/// SIGKILL the enclave, start it again, and time until a signature succeeds: process start,
/// the gateway's reconnect, attestation check, and unseal through the dev KMS. The enclave's
/// log splits the time into those parts.
async fn restart(stack: &mut Stack, run: usize) -> anyhow::Result<RestartRun> {
    let digest = load::digest(1_000_000 + run as u64);
    stack.kill_enclave(1).await;
    let spawned_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let start = Instant::now();
    stack.start_enclave(1);
    loop {
        if stack.client.sign(&digest, "ecdsa", None).await.is_ok() {
            let ready_s = start.elapsed().as_secs_f64();
            let log = stack.enclaves.get(&1).map(|p| p.log_text()).unwrap_or_default();
            return Ok(RestartRun::from_log(&log, spawned_unix, ready_s));
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the restarted enclave did not sign within 60 s:\n{}", stack.logs());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Before measuring anything: both schemes and a batch sign, and every signature verifies.
async fn check_signatures(stack: &Stack) -> anyhow::Result<()> {
    let items: Vec<([u8; 32], &str)> =
        (0..8).map(|i| (load::digest(i), if i % 2 == 0 { "ecdsa" } else { "bip340" })).collect();
    for (digest, scheme) in &items[..2] {
        let signed = stack.client.sign(digest, scheme, None).await.context("a first signature")?;
        let sig = &signed.signature.signature_hex;
        assert_signature_verifies(scheme, digest, sig, &signed.public_key_hex, &signed.xonly_public_key_hex);
    }
    let batch = stack.client.sign_batch(&items, None).await.context("a first batch")?;
    if batch.results.len() != items.len() {
        bail!("batch of {} answered with {} results", items.len(), batch.results.len());
    }
    for ((digest, scheme), result) in items.iter().zip(&batch.results) {
        match result {
            BatchResult::Ok(sig) => assert_signature_verifies(
                scheme,
                digest,
                &sig.signature_hex,
                &batch.public_key_hex,
                &batch.xonly_public_key_hex,
            ),
            BatchResult::Err { error } => bail!("batch item failed: {}: {}", error.code, error.message),
        }
    }
    Ok(())
}

fn report_raw(ecdsa: RawRate, bip340: RawRate) {
    eprintln!(
        "[bench] raw: ECDSA {} signatures in {:.2} s, BIP340 {} in {:.2} s",
        ecdsa.signatures,
        ecdsa.elapsed.as_secs_f64(),
        bip340.signatures,
        bip340.elapsed.as_secs_f64()
    );
}

fn note_builds(seen: &mut BTreeSet<String>) {
    for build in procfs::competing_builds() {
        if seen.insert(build.clone()) {
            eprintln!("[bench] WARNING: {build} is running; numbers taken now are not comparable");
        }
    }
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "interrupted";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    }
}

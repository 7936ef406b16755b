//! Issue 14's points: a real PostgreSQL server (`fsync` on, 1 GB of shared buffers), a gateway and enclave pair on it
//! and a second pair, `--pg-keys` keys seeded through the first, then random-key signing on
//! both nodes at once with half the connections each.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use keyward_bench::{
    fleet::{FleetSummary, PG_NODE_POINTS},
    load::{self, Endpoint, Window, Workload},
    report::PointReport,
    seed,
};
use keyward_e2e::{Stack, StackOptions};
use keyward_store_pg::testing::TestServer;

pub struct PgRun<'a> {
    pub keys: u64,
    pub key_batch: u64,
    pub key_create_connections: usize,
    pub connections: usize,
    pub window: Window,
    pub sqlite_multikey_per_s: f64,
    pub points: &'a mut Vec<PointReport>,
}

pub async fn pg_points(run: PgRun<'_>) -> anyhow::Result<FleetSummary> {
    eprintln!("[bench] starting PostgreSQL (fsync on, 1 GB shared buffers) and two gateway and enclave pairs on it");
    let pg = TestServer::start_with(true).context("starting PostgreSQL (scripts/postgres install)")?;
    let url = pg.create_database("keyward").context("creating the database")?;
    let mut stack = Stack::start(StackOptions { database_url: Some(url), ..StackOptions::default() }).await;
    stack.wait_keyring().await;
    let b = stack.start_second_pair(2).await;
    let admin = stack.admin_client();
    eprintln!(
        "[bench] seeding {} keys into PostgreSQL ({} per request, {} at once)",
        run.keys, run.key_batch, run.key_create_connections
    );
    let seeded = seed::seed(&admin, run.keys, run.key_batch, run.key_create_connections).await?;
    eprintln!("[bench] seeded {} keys in {:.1} s ({:.0}/s)", seeded.keys, seeded.elapsed.as_secs_f64(), seeded.per_s());

    let a_endpoint = Arc::new(Endpoint::new(SocketAddr::from(([127, 0, 0, 1], stack.api_port)), &stack.token)?);
    let b_endpoint = Arc::new(Endpoint::new(SocketAddr::from(([127, 0, 0, 1], b.api_port)), &stack.token)?);
    a_endpoint.probe().await?;
    b_endpoint.probe().await?;
    let pids = [
        ("gateway", stack.gateway.as_ref().map(|p| p.pid()).context("no gateway")?),
        ("enclave", stack.enclaves.get(&1).map(|p| p.pid()).context("no enclave 1")?),
        ("gateway-b", b.gateway.pid()),
        ("enclave-b", b.enclave.pid()),
        ("loadgen", std::process::id()),
    ];
    let all = Workload::KeySign { keys: run.keys };
    let half = (run.connections / 2).max(1);
    let (a, b_point) = tokio::join!(
        crate::measured(PG_NODE_POINTS[0], &pids, run.window, load::closed_loop(&a_endpoint, all, half, run.window)),
        crate::measured(PG_NODE_POINTS[1], &pids, run.window, load::closed_loop(&b_endpoint, all, half, run.window)),
    );
    run.points.extend([a, b_point]);
    drop(b);
    drop(stack);
    drop(pg);
    Ok(FleetSummary::new(run.points, run.sqlite_multikey_per_s, seeded.per_s(), seeded.keys, half * 2))
}

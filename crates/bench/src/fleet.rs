//! Issue 14's part of the summary: a fleet on PostgreSQL. Keys seeded through the batch API
//! into a real PostgreSQL server (`fsync` on, 1 GB of shared buffers), then random-key signing split over two
//! gateway and enclave pairs on that database, against the same workload on one pair with
//! SQLite (`multikey_sign_per_s`, same run, same connections in all). Flattened into
//! `summary.json` at the top level.

use serde::Serialize;

use crate::report::{PointReport, Target};

/// Point names: one per node, measured at the same time.
pub const PG_NODE_POINTS: [&str; 2] = ["key multi pg node A closed", "key multi pg node B closed"];

#[derive(Debug, Clone, Serialize)]
pub struct FleetSummary {
    /// Random-key signatures per second, both nodes together.
    pub pg_multikey_sign_per_s: f64,
    /// Over one node on SQLite (`multikey_sign_per_s`).
    pub ratio_pg_to_sqlite: f64,
    /// Keys created per second through the batch API into PostgreSQL.
    pub pg_key_create_per_s: f64,
    pub pg_keys: u64,
    pub pg_nodes: usize,
    /// Connections in all (half to each node).
    pub pg_sign_connections: usize,
}

impl FleetSummary {
    pub fn new(
        points: &[PointReport],
        sqlite_multikey_per_s: f64,
        key_create_per_s: f64,
        keys: u64,
        connections: usize,
    ) -> Self {
        let rate: f64 = PG_NODE_POINTS
            .iter()
            .filter_map(|n| points.iter().find(|p| p.name == *n))
            .map(|p| p.achieved_req_per_s)
            .sum();
        FleetSummary {
            pg_multikey_sign_per_s: rate,
            ratio_pg_to_sqlite: rate / sqlite_multikey_per_s,
            pg_key_create_per_s: key_create_per_s,
            pg_keys: keys,
            pg_nodes: PG_NODE_POINTS.len(),
            pg_sign_connections: connections,
        }
    }

    /// Issue 14's targets.
    pub fn targets(&self, points: &[PointReport]) -> Vec<Target> {
        let failed: u64 =
            PG_NODE_POINTS.iter().map(|n| points.iter().find(|p| p.name == *n).map_or(1, |p| p.failed)).sum();
        vec![
            Target {
                name: "random keys, two nodes on PostgreSQL vs one on SQLite",
                goal: "≥ 0.8 × (no failures)",
                measured: format!(
                    "{:.2} × ({:.0}/s; {failed} failed)",
                    self.ratio_pg_to_sqlite, self.pg_multikey_sign_per_s
                ),
                met: self.pg_multikey_sign_per_s > 0.0
                    && self.ratio_pg_to_sqlite.is_finite()
                    && self.ratio_pg_to_sqlite >= 0.8
                    && failed == 0,
            },
            Target {
                name: "key creation into PostgreSQL (batched)",
                goal: "≥ 5,000 keys/s",
                measured: format!("{:.0} keys/s", self.pg_key_create_per_s),
                met: self.pg_key_create_per_s >= 5000.0,
            },
        ]
    }
}

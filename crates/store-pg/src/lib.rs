#![doc = include_str!("../README.md")]

mod copy;
mod rows;
mod schema;
mod settings;
pub mod testing;

pub use copy::{CopyError, CopyReport, copy_from_sqlite};
pub use settings::{PgSettings, SettingsError, Tls};

use std::time::Duration;

use keyward_store::{KeyStore, StoreError};
use tokio_postgres::error::SqlState;

/// The longest one store call may take, waiting for a connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether opening may turn an empty database into a keyward one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// `gateway init-db`, and development: an empty database gets the schema.
    IfEmpty,
    /// Production start: an empty database is refused (it would mean new keys).
    Never,
}

/// A keyward database on a PostgreSQL server: a pool of connections. Cloning shares the pool.
#[derive(Clone)]
pub struct PgDb {
    pool: deadpool_postgres::Pool,
    handle: tokio::runtime::Handle,
    settings: PgSettings,
}

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgDb").field("url", &self.settings.to_string()).field("connections", &status.size).finish()
    }
}

impl PgDb {
    /// Connects (at most `connections` at once), checks the database is keyward's (or, with
    /// [`Create::IfEmpty`], makes an empty one so) and applies pending migrations, under an
    /// advisory lock so that gateways starting together migrate once.
    pub async fn open(settings: &PgSettings, create: Create, connections: usize) -> Result<Self, StoreError> {
        let tls = settings.rustls().map_err(|e| StoreError::Postgres {
            op: "configure TLS",
            code: "database_unavailable",
            message: e.to_string(),
        })?;
        let manager_config =
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast };
        let manager = match tls {
            Some(config) => deadpool_postgres::Manager::from_config(
                settings.config.clone(),
                tokio_postgres_rustls::MakeRustlsConnect::new(config),
                manager_config,
            ),
            None => {
                deadpool_postgres::Manager::from_config(settings.config.clone(), tokio_postgres::NoTls, manager_config)
            }
        };
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(connections.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .post_create(deadpool_postgres::Hook::async_fn(|client, _| {
                Box::pin(async move {
                    // Every statement is prepared once per connection; with the default
                    // (`auto`) the server plans the key read again at every execution (its
                    // estimate favours a plan for each name), which costs twice the execution.
                    // The generic plan is the same index lookups.
                    client
                        .batch_execute("SET plan_cache_mode = force_generic_plan")
                        .await
                        .map_err(deadpool_postgres::HookError::Backend)
                })
            }))
            .build()
            .map_err(|e| StoreError::Postgres {
                op: "make the pool",
                code: "database_unavailable",
                message: e.to_string(),
            })?;
        let db = PgDb { pool, handle: tokio::runtime::Handle::current(), settings: settings.clone() };
        let mut client = db.client("connect").await?;
        schema::prepare(&mut client, settings, create).await?;
        Ok(db)
    }

    /// The database as a [`KeyStore`]. Its methods block: call them off the async runtime
    /// (`spawn_blocking`), as the gateway's `Db` does.
    pub fn store(&self) -> Box<dyn KeyStore> {
        Box::new(rows::PgStore { db: self.clone() })
    }

    /// The highest pool size: how many calls can run at once.
    pub fn connections(&self) -> usize {
        self.pool.status().max_size
    }

    /// The URL, without password.
    pub fn settings(&self) -> &PgSettings {
        &self.settings
    }

    /// The current schema version.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let client = self.client("read schema version").await?;
        schema::current_version(&**client).await
    }

    pub(crate) async fn client(&self, op: &'static str) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            let code = match &e {
                deadpool_postgres::PoolError::Backend(e)
                | deadpool_postgres::PoolError::PostCreateHook(deadpool_postgres::HookError::Backend(e)) => classify(e),
                // Waiting for a connection, or making one, timed out; the pool is closed.
                _ => "database_unavailable",
            };
            StoreError::Postgres { op, code, message: e.to_string() }
        })
    }

    /// Runs one call to its end, or fails it as unreachable after [`CALL_TIMEOUT`] (a server
    /// that stopped answering without closing the connection).
    pub(crate) fn block<T>(&self, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.handle.block_on(self.timed(f))
    }

    /// `f`, failed as unreachable after [`CALL_TIMEOUT`].
    pub(crate) async fn timed<T>(&self, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        tokio::time::timeout(CALL_TIMEOUT, f).await.unwrap_or_else(|_| {
            Err(StoreError::Postgres {
                op: "call",
                code: "database_unavailable",
                message: format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
            })
        })
    }
}

/// The stable code of a driver error, as [`StoreError::code`] gives SQLite's. Only failures
/// to reach the server are `database_unavailable` (the outage grace serves rows through
/// those); an error the server answered, or one decoding its answer, is `database_error`.
pub(crate) fn classify(e: &tokio_postgres::Error) -> &'static str {
    if let Some(code) = e.code() {
        return match code.code() {
            "40001" | "40P01" | "55P03" | "57014" => "database_busy",
            "53000" | "53100" => "database_full",
            "25006" => "database_read_only",
            "3D000" => "database_missing",
            // Too many connections, an administrator's or a crash's shutdown, still starting.
            "53300" | "57P01" | "57P02" | "57P03" => "database_unavailable",
            c if c.starts_with("08") => "database_unavailable",
            _ => "database_error",
        };
    }
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    let text = e.to_string();
    let unreachable = ["error connecting to server", "timeout waiting for server", "error performing TLS handshake"];
    if e.is_closed() || io || unreachable.iter().any(|t| text.starts_with(t)) {
        "database_unavailable"
    } else {
        "database_error"
    }
}

pub(crate) fn pg(op: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Postgres { op, code: classify(&e), message: error_text(&e) }
}

/// The driver's message with the server's detail (its `Display` alone says only "db error").
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_connection_of_the_pool_plans_its_statements_once() {
        let server = testing::TestServer::start().unwrap();
        let url = server.create_database("plans").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let db = PgDb::open(&url.parse().unwrap(), Create::IfEmpty, 2).await.unwrap();
            let (one, two) = (db.client("first").await.unwrap(), db.client("second").await.unwrap());
            for client in [&one, &two] {
                let mode: String = client.query_one("SHOW plan_cache_mode", &[]).await.unwrap().get(0);
                assert_eq!(mode, "force_generic_plan");
            }
        });
    }
}

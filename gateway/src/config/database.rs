//! `database:`: a SQLite file (`path`), or a PostgreSQL server (`url`) that a fleet of
//! gateways shares. Parsed once; opening it is [`Database::open`].

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use keyward_admission::Db;
use keyward_store::StoreError;
use keyward_store_pg::{Create, PgDb, PgSettings, Tls};
use serde::Deserialize;

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// A SQLite file (one gateway).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `postgres://user@host:port/db?sslmode=verify-full&sslrootcert=/path/ca.pem`.
    #[serde(default)]
    pub url: Option<String>,
    /// The PostgreSQL password, alone in a file (production refuses one in `url`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL connections this gateway opens at most (its share of the server's
    /// `max_connections`).
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// While the database is unreachable, key operations use the rows this gateway read for
    /// them within this many seconds (writes fail); 0 turns it off. At most 3600.
    #[serde(default = "default_outage_grace")]
    pub outage_grace_seconds: u64,
}

fn default_outage_grace() -> u64 {
    60
}

impl DatabaseSection {
    /// `outage_grace_seconds`, checked.
    pub fn outage_grace(&self) -> anyhow::Result<std::time::Duration> {
        if self.outage_grace_seconds > 3600 {
            bail!("database.outage_grace_seconds must be at most 3600, got {}", self.outage_grace_seconds);
        }
        Ok(std::time::Duration::from_secs(self.outage_grace_seconds))
    }
}

fn default_connections() -> usize {
    16
}

/// Where the rows are.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres {
        settings: Box<PgSettings>,
        connections: usize,
        /// The URL carried a password (production refuses that).
        inline_password: bool,
    },
}

impl DatabaseSection {
    pub fn parse(self) -> anyhow::Result<Database> {
        match (self.path, self.url) {
            (Some(path), None) => {
                if self.password_file.is_some() {
                    bail!("database.password_file is for database.url (PostgreSQL), not a SQLite path");
                }
                Ok(Database::Sqlite(path))
            }
            (None, Some(url)) => {
                let mut settings: PgSettings = url.parse()?;
                let inline_password = settings.has_password();
                if let Some(file) = &self.password_file {
                    if inline_password {
                        bail!("database.url carries a password and database.password_file names another: keep one");
                    }
                    let password = std::fs::read_to_string(file)
                        .with_context(|| format!("database.password_file {}", file.display()))?;
                    settings.set_password(password.trim_end_matches(['\r', '\n']));
                }
                if !(1..=500).contains(&self.connections) {
                    bail!("database.connections must be 1 to 500, got {}", self.connections);
                }
                Ok(Database::Postgres { settings: Box::new(settings), connections: self.connections, inline_password })
            }
            (Some(_), Some(_)) => bail!("database: give path (SQLite) or url (PostgreSQL), not both"),
            (None, None) => bail!("database: give path (a SQLite file) or url (postgres://…)"),
        }
    }
}

impl Database {
    /// The SQLite file, if that is the engine.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres { .. } => None,
        }
    }

    /// Production: the SQLite file's directory exists (a mounted volume); PostgreSQL is
    /// reached over TLS that checks the server, with the password in a file.
    pub fn check_production(&self) -> anyhow::Result<()> {
        match self {
            Database::Sqlite(path) => match path.parent() {
                Some(dir) if dir.as_os_str().is_empty() || dir.is_dir() => Ok(()),
                Some(dir) => bail!(
                    "production refuses a missing database directory {}: create and mount it first (a fresh database would mean a new key)",
                    dir.display()
                ),
                None => bail!("database.path {} has no directory", path.display()),
            },
            Database::Postgres { settings, inline_password, .. } => {
                if settings.tls() == &Tls::Disabled {
                    bail!(
                        "production refuses database.url with sslmode=disable: the rows would cross the network in the clear and anyone on the path could answer; use sslmode=verify-full with sslrootcert=<the server's CA bundle>"
                    );
                }
                if *inline_password {
                    bail!(
                        "production refuses a password in database.url: put it in database.password_file (mode 0600)"
                    );
                }
                Ok(())
            }
        }
    }

    /// Opens the store; `create` lets an absent SQLite file or an empty PostgreSQL database
    /// become a new keyward database (development and `gateway init-db`).
    pub async fn open(&self, create: bool) -> Result<Db, StoreError> {
        match self {
            Database::Sqlite(path) => Db::open(path, create),
            Database::Postgres { settings, connections, .. } => {
                let pg =
                    PgDb::open(settings, if create { Create::IfEmpty } else { Create::Never }, *connections).await?;
                tracing::info!(database = %settings, connections, "database: PostgreSQL");
                let reads = std::sync::Arc::new(pg.clone());
                Ok(Db::shared_with(move || pg.store(), *connections, Some(reads)))
            }
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres { settings, .. } => write!(f, "{settings}"),
        }
    }
}

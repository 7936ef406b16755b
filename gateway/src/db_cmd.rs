//! `gateway init-db` and `gateway migrate-db`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use keyward_store_pg::{Create, PgDb, PgSettings, copy_from_sqlite};

use crate::config::{Config, database::Database};

/// `gateway init-db`: creates (or migrates) the database the config names. An existing
/// database of another program is refused, as on start.
pub async fn init_db(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    match &config.database {
        Database::Sqlite(path) => {
            let existed = path.exists();
            let store = keyward_store::Store::open(path)?;
            println!(
                "{} {} (schema version {})",
                if existed { "database already present:" } else { "created database" },
                path.display(),
                store.schema_version()?
            );
        }
        Database::Postgres { settings, .. } => {
            let db = PgDb::open(settings, Create::IfEmpty, 1).await?;
            println!("database ready: {settings} (schema version {})", db.schema_version().await?);
        }
    }
    Ok(())
}

/// `gateway migrate-db --from <sqlite> --to <postgres url>`: copies every row, reads each
/// table back before committing, and refuses a target that holds rows.
pub async fn migrate_db(from: &Path, to: &str, password_file: Option<PathBuf>) -> anyhow::Result<()> {
    if !from.is_file() {
        bail!("--from {}: no such SQLite database", from.display());
    }
    let mut settings: PgSettings = to.parse()?;
    if let Some(file) = password_file {
        let password = std::fs::read_to_string(&file).with_context(|| format!("--password-file {}", file.display()))?;
        settings.set_password(password.trim_end_matches(['\r', '\n']));
    }
    if settings.tls() == &keyward_store_pg::Tls::Disabled && !settings.is_loopback() {
        bail!(
            "--to has sslmode=disable for a server that is not on this machine: the keys' rows would cross the network in the clear; use sslmode=verify-full"
        );
    }
    let target = PgDb::open(&settings, Create::IfEmpty, 2).await.context("opening the target")?;
    eprintln!(
        "copying {} into {settings} (one transaction; nothing is kept unless every table reads back equal)",
        from.display()
    );
    let report =
        copy_from_sqlite(from, &target, |table, rows| eprintln!("  {table}: {rows} rows copied and read back"))
            .await
            .context("nothing was copied")?;
    let total: u64 = report.tables.iter().map(|(_, rows)| rows).sum();
    println!("copied {total} rows from {} into {settings}; point database.url at it", from.display());
    Ok(())
}

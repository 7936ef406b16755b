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
    if settings.has_password() {
        bail!(
            "--to carries a password: it would show in the process list and the shell's history; put it in a file (mode 0600) and pass --password-file"
        );
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Refused before anything connects: the URL alone decides.
    #[tokio::test]
    async fn migrate_db_refuses_a_password_on_the_command_line_and_cleartext_across_the_network() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("keyward.db");
        std::fs::write(&from, b"").unwrap();
        let refused = |to: &'static str| {
            let from = from.clone();
            async move { migrate_db(&from, to, None).await.unwrap_err().to_string() }
        };
        let with_password = refused("postgres://keyward:secret@db.example.com/keyward").await;
        assert!(with_password.contains("--to carries a password"), "{with_password}");
        assert!(!with_password.contains("secret"), "{with_password}");
        let cleartext = refused("postgres://keyward@db.example.com/keyward?sslmode=disable").await;
        assert!(cleartext.contains("sslmode=disable for a server that is not on this machine"), "{cleartext}");
        let missing = migrate_db(&dir.path().join("absent.db"), "postgres://keyward@localhost/k", None).await;
        assert!(missing.unwrap_err().to_string().contains("no such SQLite database"));
    }
}

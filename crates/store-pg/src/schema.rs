//! Opening a PostgreSQL database: is it keyward's, and which migrations does it lack. Runs in
//! one transaction under an advisory lock, so three gateways starting at once migrate once
//! and none sees half a schema (PostgreSQL's DDL is transactional).

use std::path::PathBuf;

use keyward_store::{
    StoreError,
    migrations::{self, MIGRATIONS, POSTGRES_SCHEMA_TABLE},
};

use crate::{Create, PgSettings, pg};

/// "KWRD", as SQLite's `application_id`: the advisory lock keyward's migrations take.
const MIGRATION_LOCK: i64 = 0x4B57_5244;

pub(crate) async fn current_version(client: &impl tokio_postgres::GenericClient) -> Result<i64, StoreError> {
    let row = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
        .await
        .map_err(pg("read schema version"))?;
    row.try_get(0).map_err(pg("read schema version"))
}

pub(crate) async fn prepare(
    client: &mut deadpool_postgres::Object,
    settings: &PgSettings,
    create: Create,
) -> Result<(), StoreError> {
    let shown = || PathBuf::from(settings.to_string());
    let tx = client.transaction().await.map_err(pg("begin opening"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg("take the migration lock"))?;
    // pg_tables lists every table, also those this role may not read (information_schema
    // would hide them, and another program's database could look empty).
    let tables: Vec<String> = tx
        .query(
            "SELECT tablename::text FROM pg_catalog.pg_tables \
             WHERE schemaname = current_schema() ORDER BY tablename",
            &[],
        )
        .await
        .map_err(pg("list tables"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let ours = ["enclave_master_keys", "schema_migrations"].iter().all(|t| tables.iter().any(|found| found == t));
    let found = if ours {
        current_version(&*tx).await?
    } else if tables.is_empty() && create == Create::IfEmpty {
        tx.batch_execute(POSTGRES_SCHEMA_TABLE).await.map_err(pg("create schema_migrations"))?;
        0
    } else {
        let found = if tables.is_empty() {
            "an empty database without tables".to_owned()
        } else {
            format!("tables {}", tables.iter().take(8).cloned().collect::<Vec<_>>().join(", "))
        };
        return Err(StoreError::NotKeyward { path: shown(), found });
    };
    if found > migrations::latest() {
        return Err(StoreError::SchemaTooNew { path: shown(), found, known: migrations::latest() });
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.batch_execute(m.postgres).await.map_err(pg("apply migration"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
            &[&m.version, &m.description, &now],
        )
        .await
        .map_err(pg("record migration"))?;
        tracing::info!(version = m.version, description = m.description, database = %settings, "applied database migration");
    }
    tx.commit().await.map_err(pg("commit opening"))
}

//! `gateway migrate-db`: every row of a SQLite database copied into an empty PostgreSQL one,
//! value for value, in one transaction that commits only after every table was read back
//! and found equal to its source. SQLite is dynamically typed, so a value of another type
//! than its column's (a damaged row) stops the copy instead of being converted.

use std::{path::Path, pin::pin};

use keyward_store::{
    StoreError,
    migrations::{self, TABLES},
};
use rusqlite::{OpenFlags, types::Value};
use tokio_postgres::{binary_copy::BinaryCopyInWriter, types::Type};

use crate::{PgDb, pg};

/// What was copied: `(table, rows)` in copy order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(&'static str, u64)>,
}

/// Why a copy did not happen; nothing was written to the target then.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot read the SQLite database {path}: {source}")]
    Source { path: String, source: rusqlite::Error },
    #[error(
        "the SQLite database has schema version {found}, this build writes {latest}: {}",
        if found < latest { "start this build's gateway on it once (or run `gateway init-db` with database.path), then copy" } else { "copy it with the keyward build that wrote it" }
    )]
    SourceSchema { found: i64, latest: i64 },
    #[error("the target database is not empty ({table} has rows); refusing to copy into it")]
    TargetNotEmpty { table: &'static str },
    #[error("{table}: row {row} column {column} holds {found} where the schema has {expected}; nothing was copied")]
    Damaged { table: &'static str, row: u64, column: String, found: &'static str, expected: String },
    #[error("{table}: the rows read back differ from the source; nothing was copied")]
    Mismatch { table: &'static str },
    #[error(transparent)]
    Target(#[from] StoreError),
}

/// One value in a form both engines give back; ordered so that a table compares as a sorted
/// list, whatever order each engine returns its rows in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Cell {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
}

impl tokio_postgres::types::ToSql for Cell {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Cell::Null => Ok(tokio_postgres::types::IsNull::Yes),
            Cell::Int(v) => v.to_sql(ty, out),
            Cell::Bool(v) => v.to_sql(ty, out),
            Cell::Text(v) => v.to_sql(ty, out),
            Cell::Bytes(v) => v.to_sql(ty, out),
        }
    }
    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::BOOL, Type::TEXT, Type::BYTEA].contains(ty)
    }
    tokio_postgres::types::to_sql_checked!();
}

/// Copies every row of the SQLite database at `source` into `target`, which must hold
/// keyward's schema at the same version and no rows. `progress` hears each table as it is
/// done.
pub async fn copy_from_sqlite(
    source: &Path,
    target: &PgDb,
    mut progress: impl FnMut(&'static str, u64),
) -> Result<CopyReport, CopyError> {
    let sqlite = rusqlite::Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| CopyError::Source { path: source.display().to_string(), source: e })?;
    let read_err = |e| CopyError::Source { path: source.display().to_string(), source: e };
    // One read transaction: every table from the same snapshot, even if something writes.
    let snapshot = sqlite.unchecked_transaction().map_err(read_err)?;
    let found: i64 = sqlite
        .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
        .map_err(read_err)?;
    if found != migrations::latest() {
        return Err(CopyError::SourceSchema { found, latest: migrations::latest() });
    }
    let mut client = target.client("copy rows").await?;
    let tx = client.transaction().await.map_err(pg("begin copy"))?;
    let mut report = CopyReport { tables: Vec::new() };
    for &table in TABLES {
        let columns: Vec<(String, Type)> = tx
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[&table],
            )
            .await
            .map_err(pg("read the target's columns"))?
            .iter()
            .map(|r| {
                let ty = match r.get::<_, String>(1).as_str() {
                    "bigint" => Type::INT8,
                    "boolean" => Type::BOOL,
                    "bytea" => Type::BYTEA,
                    _ => Type::TEXT,
                };
                (r.get(0), ty)
            })
            .collect();
        let any: Option<i64> = tx
            .query_opt(&format!("SELECT 1::int8 FROM {table} LIMIT 1"), &[])
            .await
            .map_err(pg("check the target is empty"))?
            .map(|r| r.get(0));
        if any.is_some() {
            return Err(CopyError::TargetNotEmpty { table });
        }
        let names = columns.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
        let rows = read_sqlite(&sqlite, table, &names, &columns).map_err(|e| match e {
            Read::Sqlite(e) => read_err(e),
            Read::Damaged { row, column, found, expected } => {
                CopyError::Damaged { table, row, column, found, expected }
            }
        })?;
        let sink = tx.copy_in(&format!("COPY {table} ({names}) FROM STDIN BINARY")).await.map_err(pg("copy rows"))?;
        let types: Vec<Type> = columns.iter().map(|(_, t)| t.clone()).collect();
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
        for row in &rows {
            let values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = row.iter().map(|c| c as _).collect();
            writer.as_mut().write(&values).await.map_err(pg("copy rows"))?;
        }
        let copied = writer.finish().await.map_err(pg("copy rows"))?;
        // Read back inside the transaction: it commits only if every table matches.
        let mut back: Vec<Vec<Cell>> = tx
            .query(&format!("SELECT {names} FROM {table}"), &[])
            .await
            .map_err(pg("read copied rows"))?
            .iter()
            .map(|r| (0..columns.len()).map(|i| cell_of(r, i, &columns[i].1)).collect())
            .collect::<Result<_, _>>()
            .map_err(pg("read copied rows"))?;
        let mut source_rows = rows;
        back.sort();
        source_rows.sort();
        if copied != source_rows.len() as u64 || back != source_rows {
            return Err(CopyError::Mismatch { table });
        }
        progress(table, copied);
        report.tables.push((table, copied));
    }
    tx.commit().await.map_err(pg("commit copy"))?;
    drop(snapshot);
    Ok(report)
}

enum Read {
    Sqlite(rusqlite::Error),
    Damaged { row: u64, column: String, found: &'static str, expected: String },
}

fn read_sqlite(
    sqlite: &rusqlite::Connection,
    table: &str,
    names: &str,
    columns: &[(String, Type)],
) -> Result<Vec<Vec<Cell>>, Read> {
    let mut statement = sqlite.prepare(&format!("SELECT {names} FROM {table}")).map_err(Read::Sqlite)?;
    let mut rows = statement.query([]).map_err(Read::Sqlite)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(Read::Sqlite)? {
        let mut cells = Vec::with_capacity(columns.len());
        for (i, (column, ty)) in columns.iter().enumerate() {
            let value: Value = row.get(i).map_err(Read::Sqlite)?;
            let damaged = |found| Read::Damaged {
                row: out.len() as u64 + 1,
                column: column.clone(),
                found,
                expected: ty.to_string(),
            };
            cells.push(match (value, ty) {
                (Value::Null, _) => Cell::Null,
                (Value::Integer(v), t) if *t == Type::INT8 => Cell::Int(v),
                (Value::Integer(v @ (0 | 1)), t) if *t == Type::BOOL => Cell::Bool(v == 1),
                (Value::Text(v), t) if *t == Type::TEXT => Cell::Text(v),
                (Value::Blob(v), t) if *t == Type::BYTEA => Cell::Bytes(v),
                (Value::Integer(_), _) => return Err(damaged("an integer")),
                (Value::Real(_), _) => return Err(damaged("a real")),
                (Value::Text(_), _) => return Err(damaged("text")),
                (Value::Blob(_), _) => return Err(damaged("a blob")),
            });
        }
        out.push(cells);
    }
    Ok(out)
}

fn cell_of(row: &tokio_postgres::Row, i: usize, ty: &Type) -> Result<Cell, tokio_postgres::Error> {
    let cell = if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?.map(Cell::Int)
    } else if *ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i)?.map(Cell::Bool)
    } else if *ty == Type::BYTEA {
        row.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Bytes)
    } else {
        row.try_get::<_, Option<String>>(i)?.map(Cell::Text)
    };
    Ok(cell.unwrap_or(Cell::Null))
}

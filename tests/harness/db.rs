//! The test's own view of the database under a stack, SQLite or PostgreSQL, read and written
//! with each engine's driver (not through `keyward-store`, so a test checks the rows
//! independently of the code under test). SQL is written once with `?1`-style placeholders;
//! for PostgreSQL they become `$1`.

use std::path::PathBuf;

use keyward_store_pg::testing::TestServer;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// One value of a row, as either engine gives it (SQLite has no booleans: it stores 0 and 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Blob(Vec<u8>),
}

/// Which engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The database a stack is started on: nothing for SQLite (the stack makes its file), a
/// PostgreSQL server of the test's own for PostgreSQL. Declare it before the stack, so the
/// stack stops first.
pub struct TestDatabase {
    server: Option<TestServer>,
    url: Option<String>,
}

impl Engine {
    pub fn start(self) -> TestDatabase {
        match self {
            Engine::Sqlite => TestDatabase { server: None, url: None },
            Engine::Postgres => {
                let server = TestServer::start().expect("PostgreSQL (scripts/postgres install)");
                let url = server.create_database("keyward").expect("create the database");
                TestDatabase { server: Some(server), url: Some(url) }
            }
        }
    }
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase").field("url", &self.url).finish()
    }
}

impl TestDatabase {
    /// Stack options on this database.
    pub fn options(&self) -> crate::StackOptions {
        crate::StackOptions { database_url: self.url.clone(), ..crate::StackOptions::default() }
    }

    pub fn server(&mut self) -> Option<&mut TestServer> {
        self.server.as_mut()
    }
}

/// Where a stack's rows are.
pub(crate) enum Rows {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Rows {
    /// Every row `sql` returns.
    pub(crate) fn query(&self, sql: &str, params: &[Cell]) -> Vec<Vec<Cell>> {
        match self {
            Rows::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).expect("open database");
                let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let columns = statement.column_count();
                let mut found = statement.query(rusqlite::params_from_iter(params.iter())).expect("query");
                let mut rows = Vec::new();
                while let Some(row) = found.next().expect("row") {
                    rows.push((0..columns).map(|i| row.get::<_, Cell>(i).expect("value")).collect());
                }
                rows
            }
            Rows::Postgres(url) => with_postgres(url, |runtime, client| {
                let sql = dollar_placeholders(sql);
                let rows = runtime.block_on(client.query(&sql, &refs(params)));
                let rows = rows.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
                rows.iter().map(|row| (0..row.len()).map(|i| cell(row, i)).collect()).collect()
            }),
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub(crate) fn execute(&self, sql: &str, params: &[Cell]) -> u64 {
        match self {
            Rows::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).expect("open database");
                let changed = conn.execute(sql, rusqlite::params_from_iter(params.iter()));
                changed.unwrap_or_else(|e| panic!("{sql}: {e}")) as u64
            }
            Rows::Postgres(url) => with_postgres(url, |runtime, client| {
                let sql = dollar_placeholders(sql);
                runtime.block_on(client.execute(&sql, &refs(params))).unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            }),
        }
    }
}

/// Runs `job` with a fresh connection and a runtime of its own, on a thread of its own (the
/// tests call this from async code, where blocking on the caller's runtime would panic).
fn with_postgres<T: Send>(
    url: &str,
    job: impl FnOnce(&tokio::runtime::Runtime, &tokio_postgres::Client) -> T + Send,
) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let client = runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
                tokio::spawn(connection);
                client
            });
            job(&runtime, &client)
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

fn refs(params: &[Cell]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// `?1` → `$1`.
fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn cell(row: &tokio_postgres::Row, i: usize) -> Cell {
    let ty = row.columns()[i].type_().clone();
    let value = match ty {
        Type::INT8 => row.get::<_, Option<i64>>(i).map(Cell::Int),
        Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| Cell::Int(v.into())),
        Type::BOOL => row.get::<_, Option<bool>>(i).map(Cell::Bool),
        Type::TEXT | Type::VARCHAR | Type::NAME => row.get::<_, Option<String>>(i).map(Cell::Text),
        Type::BYTEA => row.get::<_, Option<Vec<u8>>>(i).map(Cell::Blob),
        other => panic!("a column of type {other} in a test query"),
    };
    value.unwrap_or(Cell::Null)
}

impl ToSql for Cell {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Int(v) if *ty == Type::BOOL => (*v != 0).to_sql(ty, out),
            Cell::Int(v) => v.to_sql(ty, out),
            Cell::Bool(v) => v.to_sql(ty, out),
            Cell::Text(v) => v.to_sql(ty, out),
            Cell::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl rusqlite::ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Cell::Null => ToSqlOutput::Owned(Value::Null),
            Cell::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            Cell::Bool(v) => ToSqlOutput::Owned(Value::Integer(i64::from(*v))),
            Cell::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Cell::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

impl rusqlite::types::FromSql for Cell {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::ValueRef;
        Ok(match value {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(v) => Cell::Int(v),
            ValueRef::Real(v) => return Err(rusqlite::types::FromSqlError::Other(format!("a real {v}").into())),
            ValueRef::Text(v) => Cell::Text(String::from_utf8_lossy(v).into_owned()),
            ValueRef::Blob(v) => Cell::Blob(v.to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_become_dollars_and_question_marks_alone_stay() {
        assert_eq!(super::dollar_placeholders("a = ?1 AND b = ?12 OR c = '?'"), "a = $1 AND b = $12 OR c = '?'");
    }
}

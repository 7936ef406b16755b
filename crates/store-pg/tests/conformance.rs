//! The store conformance suite, and what only PostgreSQL has (its schema, its opening rules,
//! a restart), against a real server this test starts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward_store_pg::{Create, PgDb, PgSettings, testing::TestServer};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn open(runtime: &tokio::runtime::Runtime, url: &str, create: Create) -> Result<PgDb, keyward_store::StoreError> {
    let settings: PgSettings = url.parse().unwrap();
    runtime.block_on(PgDb::open(&settings, create, 8))
}

#[test]
fn postgresql_passes_the_store_conformance_suite() {
    let server = TestServer::start().unwrap();
    let runtime = runtime();
    keyward_store::conformance::run_all(|name| {
        let url = server.create_database(&name.chars().take(60).collect::<String>()).unwrap();
        let db = open(&runtime, &url, Create::IfEmpty).unwrap();
        move || db.store()
    });
}

/// Runs SQL on a database directly, as another program would.
fn sql(runtime: &tokio::runtime::Runtime, url: &str, statements: &str) {
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        let task = tokio::spawn(connection);
        client.batch_execute(statements).await.unwrap();
        drop(client);
        task.await.unwrap().unwrap();
    })
}

fn tables(runtime: &tokio::runtime::Runtime, url: &str) -> Vec<String> {
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let rows = client
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
                &[],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    })
}

#[test]
fn an_empty_database_becomes_keywards_only_when_asked_and_another_programs_is_left_untouched() {
    let server = TestServer::start().unwrap();
    let runtime = runtime();
    let empty = server.create_database("empty").unwrap();
    let refused = open(&runtime, &empty, Create::Never).unwrap_err();
    assert_eq!(refused.code(), "database_not_keyward", "{refused}");
    assert!(tables(&runtime, &empty).is_empty(), "nothing was created");
    let made = open(&runtime, &empty, Create::IfEmpty).unwrap();
    let latest = keyward_store::migrations::latest();
    assert_eq!(runtime.block_on(made.schema_version()).unwrap(), latest);
    let again = open(&runtime, &empty, Create::Never).unwrap();
    assert_eq!(runtime.block_on(again.schema_version()).unwrap(), latest);

    let foreign = server.create_database("foreign").unwrap();
    sql(&runtime, &foreign, "CREATE TABLE invoices (id BIGINT PRIMARY KEY); INSERT INTO invoices VALUES (7);");
    let refused = open(&runtime, &foreign, Create::IfEmpty).unwrap_err();
    assert_eq!(refused.code(), "database_not_keyward", "{refused}");
    assert!(refused.to_string().contains("invoices"), "{refused}");
    assert_eq!(tables(&runtime, &foreign), ["invoices"], "left untouched");

    sql(&runtime, &empty, &format!("INSERT INTO schema_migrations VALUES ({}, 'from the future', 0)", latest + 1));
    let refused = open(&runtime, &empty, Create::Never).unwrap_err();
    assert_eq!(refused.code(), "database_schema_too_new", "{refused}");
}

#[test]
fn gateways_opening_one_empty_database_at_once_migrate_it_once() {
    let server = TestServer::start().unwrap();
    let runtime = runtime();
    let url = server.create_database("fleet").unwrap();
    let settings: PgSettings = url.parse().unwrap();
    let opened: Vec<_> = runtime.block_on(async {
        let opens = (0..3).map(|_| {
            let settings = settings.clone();
            tokio::spawn(async move { PgDb::open(&settings, Create::IfEmpty, 2).await })
        });
        let mut out = Vec::new();
        for open in opens.collect::<Vec<_>>() {
            out.push(open.await.unwrap());
        }
        out
    });
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    let store = opened[0].as_ref().unwrap().store();
    store.ping().unwrap();
    let applied = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.query_one("SELECT count(*) FROM schema_migrations", &[]).await.unwrap().get::<_, i64>(0)
    });
    assert_eq!(applied, keyward_store::migrations::latest(), "each migration recorded once");
}

#[test]
fn while_the_server_restarts_calls_fail_with_a_code_and_succeed_again_after() {
    let mut server = TestServer::start().unwrap();
    let runtime = runtime();
    let db = open(&runtime, &server.create_database("restart").unwrap(), Create::IfEmpty).unwrap();
    let mut store = db.store();
    store.insert_keys(&[keyward_store::conformance::new_key("before")]).unwrap();
    server.stop().unwrap();
    let read = store.key("before").unwrap_err();
    assert_eq!(read.code(), "database_unavailable", "{read}");
    let write = store.insert_keys(&[keyward_store::conformance::new_key("during")]).unwrap_err();
    assert_eq!(write.code(), "database_unavailable", "{write}");
    server.start_again().unwrap();
    assert!(store.key("before").unwrap().is_some());
    assert!(store.key("during").unwrap().is_none(), "the failed write left nothing");
    store.insert_keys(&[keyward_store::conformance::new_key("after")]).unwrap();
}

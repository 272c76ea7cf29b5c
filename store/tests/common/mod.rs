//! A fresh database per test from the workspace's test kit: a temporary
//! SQLite file, or a uniquely named PostgreSQL database dropped (best effort)
//! when the test ends, pass or fail.

#![allow(dead_code)]

use store::Store;
use testkit::Database;

pub struct TestDb {
    /// Declared before `db`: the pool closes before the database is dropped.
    pub store: Store,
    pub url: String,
    db: Database,
}

pub async fn sqlite() -> TestDb {
    // A nested path checks that connect creates missing parent directories.
    let db = Database::sqlite_at("store", "nested/chat.db");
    let store = Store::connect(&db.url).await.expect("sqlite connect");
    TestDb { store, url: db.url.clone(), db }
}

pub async fn postgres() -> TestDb {
    let db = Database::postgres("store").await;
    let store = Store::connect(&db.url).await.expect("postgres connect");
    TestDb { store, url: db.url.clone(), db }
}

pub async fn create_pg_db() -> (String, String) {
    testkit::create_pg_db("store").await
}

pub fn drop_pg_db(name: String) {
    testkit::drop_pg_db(name)
}

//! A fresh database per test: a temporary SQLite file, or a uniquely named
//! PostgreSQL database created through an admin connection and dropped (best
//! effort) when the test ends, pass or fail.

#![allow(dead_code)]

use std::path::PathBuf;

use sqlx::{Connection, Executor};
use store::Store;

/// Admin connection for creating test databases (trust auth).
pub fn pg_admin_url() -> String {
    std::env::var("STORE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn unique(tag: &str) -> String {
    format!("t_{tag}_{}", uuid::Uuid::new_v4().simple())
}

pub struct TestDb {
    pub store: Store,
    pub url: String,
    pg: Option<String>,
    dir: Option<PathBuf>,
}

pub async fn sqlite() -> TestDb {
    let dir = std::env::temp_dir().join(unique("store"));
    // A nested path checks that connect creates missing parent directories.
    let url = format!("sqlite://{}/nested/chat.db", dir.display());
    let store = Store::connect(&url).await.expect("sqlite connect");
    TestDb { store, url, pg: None, dir: Some(dir) }
}

pub async fn create_pg_db() -> (String, String) {
    let admin = pg_admin_url();
    let name = unique("store");
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("postgres admin connect");
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create database");
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin.clone());
    (format!("{base}/{name}"), name)
}

pub async fn postgres() -> TestDb {
    let (url, name) = create_pg_db().await;
    let store = Store::connect(&url).await.expect("postgres connect");
    TestDb { store, url, pg: Some(name), dir: None }
}

pub fn drop_pg_db(name: String) {
    // Drop runs outside any runtime we can block on: use a thread with its own.
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                let _ = conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
            }
        });
    })
    .join();
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg.take() {
            if std::env::var_os("STORE_TEST_KEEP").is_some() {
                eprintln!("kept database {name}");
                return;
            }
            drop_pg_db(name);
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

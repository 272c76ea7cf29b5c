//! A fresh database per test: a SQLite file in a temporary directory, or a
//! uniquely named PostgreSQL database created through an admin connection.
//! Dropping a [`Database`] removes it (best effort), pass or fail.

use std::path::PathBuf;

use sqlx::{Connection, Executor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl std::str::FromStr for Db {
    type Err = String;
    fn from_str(s: &str) -> Result<Db, String> {
        match s {
            "sqlite" => Ok(Db::Sqlite),
            "postgres" | "postgresql" => Ok(Db::Postgres),
            other => Err(format!("unknown database `{other}` (sqlite or postgres)")),
        }
    }
}

impl Db {
    pub fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        }
    }
}

/// Admin connection for creating test databases (trust auth);
/// `STORE_TEST_PG_URL` overrides it.
pub fn pg_admin_url() -> String {
    std::env::var("STORE_TEST_PG_URL").unwrap_or_else(|_| crate::PG_ADMIN.into())
}

fn unique(tag: &str) -> String {
    format!("t_{tag}_{}", uuid::Uuid::new_v4().simple())
}

/// Creates a PostgreSQL database named after `tag`; returns (url, name).
pub async fn create_pg_db(tag: &str) -> (String, String) {
    let admin = pg_admin_url();
    let name = unique(tag);
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("postgres reachable at 127.0.0.1:5432 (STORE_TEST_PG_URL)");
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create database");
    let _ = conn.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin.clone());
    (format!("{base}/{name}"), name)
}

/// Drops a database made by [`create_pg_db`], even while connections remain.
/// Callable from `Drop` inside or outside a runtime: it blocks on a thread
/// with a runtime of its own.
pub fn drop_pg_db(name: String) {
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

/// One test's database. Set `STORE_TEST_KEEP` to keep PostgreSQL databases
/// for a look after the test.
pub struct Database {
    pub kind: Db,
    pub url: String,
    /// The PostgreSQL database's name.
    pub pg_name: Option<String>,
    /// A directory this database owns (removed on drop).
    dir: Option<PathBuf>,
}

impl Database {
    pub async fn new(kind: Db, tag: &str) -> Database {
        match kind {
            Db::Sqlite => Database::sqlite(tag),
            Db::Postgres => Database::postgres(tag).await,
        }
    }

    /// `chat.db` in a new temporary directory (the store creates the file).
    pub fn sqlite(tag: &str) -> Database {
        Database::sqlite_at(tag, "chat.db")
    }

    /// `file` (a relative path, possibly with missing directories) in a new
    /// temporary directory.
    pub fn sqlite_at(tag: &str, file: &str) -> Database {
        let dir = std::env::temp_dir().join(unique(tag));
        let url = format!("sqlite://{}/{file}", dir.display());
        Database { kind: Db::Sqlite, url, pg_name: None, dir: Some(dir) }
    }

    /// `chat.db` in `dir`, which belongs to someone else (not removed).
    pub fn sqlite_in(dir: &std::path::Path) -> Database {
        Database { kind: Db::Sqlite, url: format!("sqlite://{}/chat.db", dir.display()), pg_name: None, dir: None }
    }

    pub async fn postgres(tag: &str) -> Database {
        let (url, name) = create_pg_db(tag).await;
        Database { kind: Db::Postgres, url, pg_name: Some(name), dir: None }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            if std::env::var_os("STORE_TEST_KEEP").is_some() {
                eprintln!("kept database {name}");
            } else {
                drop_pg_db(name);
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

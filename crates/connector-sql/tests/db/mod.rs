//! Test databases: the machine's PostgreSQL and MariaDB on 127.0.0.1 (trust auth, database
//! `test`) and an SQLite file in a temporary directory. Every table a test names gets a prefix
//! unique to the test run and is dropped when the `Db` goes. A server that cannot be reached
//! fails the test (it never skips). Shared with the engine's scenario tests.
#![allow(dead_code)]

use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;
use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    MariaDb,
    Sqlite,
}

impl Kind {
    pub fn boolean(self) -> &'static str {
        "BOOLEAN"
    }
    pub fn timestamp(self) -> &'static str {
        match self {
            Kind::Postgres => "TIMESTAMP",
            _ => "DATETIME",
        }
    }
    pub fn binary(self) -> &'static str {
        match self {
            Kind::Postgres => "BYTEA",
            _ => "BLOB",
        }
    }
    pub fn float(self) -> &'static str {
        match self {
            Kind::Postgres => "NUMERIC(10,2)",
            Kind::MariaDb => "DECIMAL(10,2)",
            Kind::Sqlite => "REAL",
        }
    }
    pub fn bytes_literal(self, hex: &str) -> String {
        match self {
            Kind::Postgres => format!("decode('{hex}', 'hex')"),
            _ => format!("X'{hex}'"),
        }
    }
}

enum Conn {
    Pg(PgConnection),
    My(MySqlConnection),
    Lite(SqliteConnection),
}

pub struct Db {
    pub kind: Kind,
    dir: tempfile::TempDir,
    pub url: String,
    prefix: String,
    tables: RefCell<Vec<String>>,
    rt: tokio::runtime::Runtime,
    conn: RefCell<Option<Conn>>,
}

/// A handle another thread can use to kill the session running a query.
pub struct Killer {
    kind: Kind,
    url: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn connect(kind: Kind, url: &str) -> Conn {
    let what = match kind {
        Kind::Postgres => "PostgreSQL on 127.0.0.1:5432 (start it as scripts/test does)",
        Kind::MariaDb => "MariaDB on 127.0.0.1:3306 (start it as scripts/test does)",
        Kind::Sqlite => "an SQLite file",
    };
    let res = match kind {
        Kind::Postgres => PgConnection::connect(url).await.map(Conn::Pg),
        Kind::MariaDb => MySqlConnection::connect(url).await.map(Conn::My),
        Kind::Sqlite => SqliteConnection::connect(url).await.map(Conn::Lite),
    };
    res.unwrap_or_else(|e| panic!("cannot reach {what}: {e}"))
}

async fn exec(c: &mut Conn, sql: &str) -> Result<u64, sqlx::Error> {
    let q = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()));
    Ok(match c {
        Conn::Pg(c) => q.execute(c).await?.rows_affected(),
        Conn::My(c) => q.execute(c).await?.rows_affected(),
        Conn::Lite(c) => q.execute(c).await?.rows_affected(),
    })
}

impl Db {
    /// A database of `kind` for one test; `tag` names the test in table names.
    pub fn new(kind: Kind, tag: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = match kind {
            Kind::Postgres => "postgres://postgres@127.0.0.1:5432/test".to_owned(),
            Kind::MariaDb => "mysql://root@127.0.0.1:3306/test".to_owned(),
            Kind::Sqlite => format!("sqlite://{}/test.db?mode=rwc", dir.path().display()),
        };
        std::fs::write(dir.path().join("url"), &url).expect("url file");
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() % 1_000_000)
            .unwrap_or(0);
        let prefix = format!(
            "idsync_{tag}_{}_{}_{nonce}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let rt = runtime();
        let conn = rt.block_on(connect(kind, &url));
        Db {
            kind,
            dir,
            url,
            prefix,
            tables: RefCell::new(Vec::new()),
            rt,
            conn: RefCell::new(Some(conn)),
        }
    }

    /// The directory holding the `url` file (connectors say `url = "file:url"`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A unique table name, dropped with the `Db`.
    pub fn table(&self, name: &str) -> String {
        let t = format!("{}_{name}", self.prefix).to_ascii_lowercase();
        let mut tables = self.tables.borrow_mut();
        if !tables.contains(&t) {
            tables.push(t.clone());
        }
        t
    }

    pub fn exec(&self, sql: &str) -> u64 {
        let mut guard = self.conn.borrow_mut();
        let c = guard.as_mut().expect("connection");
        self.rt
            .block_on(exec(c, sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn clone_handle(&self) -> Killer {
        Killer {
            kind: self.kind,
            url: self.url.clone(),
        }
    }
}

impl Killer {
    /// Kills the server session whose running query contains `marker`, from a new connection on
    /// its own thread (the caller may be inside another runtime).
    pub fn kill_session_running(&self, marker: &str) {
        let (kind, url, marker) = (self.kind, self.url.clone(), marker.to_owned());
        std::thread::spawn(move || {
            let rt = runtime();
            rt.block_on(async {
                let mut c = connect(kind, &url).await;
                match kind {
                    Kind::Postgres => {
                        exec(
                            &mut c,
                            &format!(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                                 WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
                            ),
                        )
                        .await
                        .expect("terminate");
                    }
                    Kind::MariaDb => {
                        let Conn::My(my) = &mut c else { unreachable!() };
                        let ids: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                            "SELECT ID FROM information_schema.PROCESSLIST \
                             WHERE INFO LIKE '%{marker}%' AND ID <> CONNECTION_ID()"
                        )))
                        .fetch_all(&mut *my)
                        .await
                        .expect("processlist");
                        for (id,) in ids {
                            exec(&mut c, &format!("KILL {id}")).await.expect("kill");
                        }
                    }
                    Kind::Sqlite => {}
                }
            });
        })
        .join()
        .expect("killer thread");
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let Some(mut c) = self.conn.borrow_mut().take() else {
            return;
        };
        for t in self.tables.borrow().iter().rev() {
            let _ = self
                .rt
                .block_on(exec(&mut c, &format!("DROP TABLE IF EXISTS {t}")));
        }
    }
}

//! What differs between the three servers: quoting, placeholders, aggregation, connecting (with
//! TLS verified by default), and streaming a query's rows.

use crate::rows::{SqlRow, Watermark};
use futures_util::TryStreamExt;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl Dialect {
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::MySql),
            "sqlite" => Some(Dialect::Sqlite),
            _ => None,
        }
    }

    /// Quotes an identifier, part by part (`schema.table`).
    pub fn quote(self, ident: &str) -> String {
        ident
            .split('.')
            .map(|p| match self {
                Dialect::MySql => format!("`{p}`"),
                _ => format!("\"{p}\""),
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        }
    }

    /// An aggregate joining `expr`'s values with `sep` (a literal control character).
    pub fn aggregate(self, expr: &str, sep: &str) -> String {
        match self {
            Dialect::Postgres => format!("string_agg(CAST({expr} AS TEXT), chr(31))"),
            Dialect::MySql => format!("GROUP_CONCAT({expr} SEPARATOR '{sep}')"),
            Dialect::Sqlite => format!("group_concat({expr}, char(31))"),
        }
    }
}

/// Identifiers are quoted, never bound: only plain names are accepted, so a setting cannot carry
/// SQL. (A `query` is SQL by design, written by the administrator.)
pub fn check_identifier(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a plain SQL name (letters, digits, `_`, `$`, dotted parts)"
        ))
    }
}

fn is_local(host: &str) -> bool {
    host.is_empty()
        || host.starts_with('/')
        || host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub enum Conn {
    Postgres(PgConnection),
    MySql(MySqlConnection),
    Sqlite(SqliteConnection),
}

pub enum StreamError {
    /// The server or the connection failed.
    Sql(sqlx::Error),
    /// The row handler stopped the read.
    Stop(idsync_connectors::Error),
}

impl Conn {
    /// Connects. Without an explicit TLS mode in the URL, a server elsewhere must offer TLS with
    /// a certificate valid for its name; one on this machine (loopback, a socket) may not.
    pub async fn open(dialect: Dialect, url: &str) -> Result<Self, sqlx::Error> {
        let lower = url.to_ascii_lowercase();
        Ok(match dialect {
            Dialect::Postgres => {
                let mut o = PgConnectOptions::from_str(url)?;
                if !lower.contains("sslmode=") && !is_local(o.get_host()) {
                    o = o.ssl_mode(PgSslMode::VerifyFull);
                }
                Conn::Postgres(o.connect().await?)
            }
            Dialect::MySql => {
                let mut o = MySqlConnectOptions::from_str(url)?;
                if !lower.contains("ssl-mode=")
                    && !lower.contains("sslmode=")
                    && !is_local(o.get_host())
                {
                    o = o.ssl_mode(MySqlSslMode::VerifyIdentity);
                }
                let mut c = o.connect().await?;
                // GROUP_CONCAT (child tables) cuts at 1,024 bytes by default.
                sqlx::query("SET SESSION group_concat_max_len = 16777216")
                    .execute(&mut c)
                    .await?;
                Conn::MySql(c)
            }
            Dialect::Sqlite => {
                let o = SqliteConnectOptions::from_str(url)?;
                Conn::Sqlite(SqliteConnection::connect_with(&o).await?)
            }
        })
    }

    /// Streams the rows of `sql` into `f`, one at a time.
    pub async fn stream(
        &mut self,
        sql: &str,
        bind: Option<&Watermark>,
        f: &mut dyn FnMut(&dyn SqlRow) -> idsync_connectors::Result<()>,
    ) -> Result<(), StreamError> {
        macro_rules! run {
            ($conn:expr) => {{
                // Identifiers in it are checked and quoted; values are bound.
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                if let Some(w) = bind {
                    q = match w {
                        Watermark::Int(i) => q.bind(*i),
                        Watermark::Naive(t) => q.bind(*t),
                        Watermark::Utc(t) => q.bind(*t),
                        Watermark::Text(t) => q.bind(t.clone()),
                    };
                }
                let mut rows = q.fetch($conn);
                while let Some(row) = rows.try_next().await.map_err(StreamError::Sql)? {
                    f(&row).map_err(StreamError::Stop)?;
                }
                Ok(())
            }};
        }
        match self {
            Conn::Postgres(c) => run!(&mut *c),
            Conn::MySql(c) => run!(&mut *c),
            Conn::Sqlite(c) => run!(&mut *c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_plain_names() {
        assert!(check_identifier("hr.employees").is_ok());
        assert!(check_identifier("emp_id").is_ok());
        assert!(check_identifier("x; DROP TABLE t").is_err());
        assert!(check_identifier("a\"b").is_err());
        assert!(check_identifier("").is_err());
        assert_eq!(Dialect::MySql.quote("hr.t"), "`hr`.`t`");
        assert_eq!(Dialect::Postgres.quote("t"), "\"t\"");
    }

    #[test]
    fn remote_hosts_are_not_local() {
        assert!(is_local("127.0.0.1"));
        assert!(is_local("/var/run/postgresql"));
        assert!(!is_local("db.example.test"));
    }
}

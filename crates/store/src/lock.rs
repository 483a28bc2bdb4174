//! One runner per store: an OS file lock on a file beside the store (`<store>.lock`), held for
//! as long as a process runs steps. The operating system drops the lock when its holder exits,
//! however it exits (SIGKILL included), so a killed run never leaves the store stuck. The holder
//! writes who it is (process id, what it runs, since when) into the file, so a second run can
//! say who holds the lock.
//!
//! A PostgreSQL store's lock is a session advisory lock (`pg_try_advisory_lock`) on a connection
//! of its own, held for as long as the process runs: the server releases it when that
//! connection ends, however its holder ends (a killed process's socket is closed by its kernel;
//! a machine that vanishes is noticed by TCP keepalive). The holder names itself in the
//! `runner_lock` table (written outside any step), which a second run reads to say who holds it.

use crate::postgres::{connect, runtime, PgLocation};
use crate::{now, Error, Result, StoreLocation};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Held while a process runs steps on a store; dropping it releases the store.
#[derive(Debug)]
pub struct RunnerLock {
    _held: Held,
    path: PathBuf,
}

#[derive(Debug)]
enum Held {
    File(#[allow(dead_code)] File),
    /// The connection that holds the advisory lock, and the runtime that drives it.
    Postgres(
        #[allow(dead_code)] sqlx::postgres::PgConnection,
        #[allow(dead_code)] tokio::runtime::Runtime,
    ),
}

/// The advisory lock key of the runner lock ("idsync-r" in ASCII). Advisory locks belong to a
/// database: one key serves every store, each in its own database.
const RUNNER_KEY: i64 = 0x6964_7379_6e63_2d72;

/// Who a process is, as the lock tells another: its process id, host, command and start.
fn holder_text(what: &str, host: bool) -> String {
    let since = chrono::DateTime::from_timestamp(now(), 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let on = if host {
        format!(" on {}", hostname())
    } else {
        String::new()
    };
    format!(
        "pid {}{on} running `{what}` since {since}",
        std::process::id()
    )
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its length; gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "an unknown host".to_owned()
    }
}

impl RunnerLock {
    /// The lock file of a store file.
    pub fn path_for(store: &Path) -> PathBuf {
        let mut p = store.as_os_str().to_owned();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Takes the runner lock of a store of either backend (see [`Self::acquire`] and
    /// [`Self::acquire_postgres`]).
    pub fn acquire_for(store: &StoreLocation, what: &str, wait: Duration) -> Result<RunnerLock> {
        match store {
            StoreLocation::File(p) => Self::acquire(p, what, wait),
            StoreLocation::Postgres(l) => Self::acquire_postgres(l, what, wait),
        }
    }

    /// Takes a PostgreSQL store's runner lock: a session advisory lock on a connection kept
    /// for as long as the lock, tried every 100 ms for up to `wait`.
    pub fn acquire_postgres(store: &PgLocation, what: &str, wait: Duration) -> Result<RunnerLock> {
        use sqlx::Row;
        let rt = runtime(&store.url)?;
        let mut conn = connect(&rt, store)?;
        let started = Instant::now();
        let sql_err = |e: sqlx::Error| Error::Open {
            path: store.url.clone(),
            message: format!("the runner lock: {e}"),
        };
        loop {
            let got: bool = rt
                .block_on(
                    sqlx::query("SELECT pg_try_advisory_lock($1)")
                        .bind(RUNNER_KEY)
                        .fetch_one(&mut conn),
                )
                .and_then(|r| r.try_get(0))
                .map_err(sql_err)?;
            if got {
                break;
            }
            if started.elapsed() >= wait {
                // Who holds it, as it wrote itself (a holder that died before writing is
                // "unknown"; the lock is the server's, the row only a label).
                let holder: Option<String> = rt
                    .block_on(
                        sqlx::query("SELECT holder FROM runner_lock WHERE id = 1")
                            .fetch_optional(&mut conn),
                    )
                    .ok()
                    .flatten()
                    .and_then(|r| r.try_get(0).ok());
                return Err(Error::Busy {
                    store: store.url.clone(),
                    holder: holder.unwrap_or_else(|| "holder unknown".to_owned()),
                    waited: started.elapsed().as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let holder = holder_text(what, true);
        rt.block_on(async {
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS runner_lock(id INT PRIMARY KEY, holder TEXT NOT NULL)",
            )
            .execute(&mut conn)
            .await?;
            sqlx::query(
                "INSERT INTO runner_lock(id, holder) VALUES (1, $1) \
                 ON CONFLICT(id) DO UPDATE SET holder = excluded.holder",
            )
            .bind(&holder)
            .execute(&mut conn)
            .await
        })
        .map_err(sql_err)?;
        Ok(RunnerLock {
            _held: Held::Postgres(conn, rt),
            path: PathBuf::new(),
        })
    }

    /// Takes the store's runner lock, waiting up to `wait` for another run to finish. `what`
    /// says what this process runs (shown to a run that finds the lock held).
    pub fn acquire(store: &Path, what: &str, wait: Duration) -> Result<RunnerLock> {
        let path = Self::path_for(store);
        let io = |e: std::io::Error| Error::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        // The lock file names its holder: readable by the store's owner only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(io)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if started.elapsed() >= wait {
                        let mut holder = String::new();
                        let _ = file.read_to_string(&mut holder);
                        return Err(Error::Busy {
                            store: std::path::absolute(store)
                                .unwrap_or_else(|_| store.to_owned())
                                .display()
                                .to_string(),
                            holder: holder.trim().to_owned(),
                            waited: started.elapsed().as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", holder_text(what, false)).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(RunnerLock {
            _held: Held::File(file),
            path,
        })
    }

    /// The lock file (empty for a PostgreSQL store's lock).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_who_holds_it_and_gets_it_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("idsync.db");
        let first = RunnerLock::acquire(&store, "full-cycle", Duration::ZERO).unwrap();
        let e = RunnerLock::acquire(&store, "export", Duration::from_millis(200)).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains(&format!("pid {}", std::process::id())) && m.contains("full-cycle"),
            "{m}"
        );
        // Issue 22 item 16: the holder's start as people read it (RFC 3339, UTC), not a
        // unix time, and the store by its absolute path.
        let since = m.split(" since ").nth(1).unwrap_or("");
        assert!(
            since.len() > 20 && since.as_bytes()[10] == b'T' && since[..20].ends_with('Z'),
            "{m}"
        );
        assert!(!m.contains("unix time"), "{m}");
        // A store named by a relative path is named in full.
        let here = tempfile::tempdir_in(".").unwrap();
        let relative = Path::new(here.path().file_name().unwrap()).join("idsync.db");
        let held = RunnerLock::acquire(&relative, "full-cycle", Duration::ZERO).unwrap();
        let m2 = RunnerLock::acquire(&relative, "export", Duration::ZERO)
            .unwrap_err()
            .to_string();
        drop(held);
        let full = std::env::current_dir().unwrap().join(&relative);
        assert!(m2.contains(&format!("store {} ", full.display())), "{m2}");
        drop(first);
        RunnerLock::acquire(&store, "export", Duration::ZERO).unwrap();
    }
}

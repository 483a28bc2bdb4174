//! One runner per store: an OS file lock on a file beside the store (`<store>.lock`), held for
//! as long as a process runs steps. The operating system drops the lock when its holder exits,
//! however it exits (SIGKILL included), so a killed run never leaves the store stuck. The holder
//! writes who it is (process id, what it runs, since when) into the file, so a second run can
//! say who holds the lock. A PostgreSQL store would take an advisory lock instead.

use crate::{now, Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Held while a process runs steps on a store; dropping it releases the store.
#[derive(Debug)]
pub struct RunnerLock {
    _file: File,
    path: PathBuf,
}

impl RunnerLock {
    /// The lock file of a store file.
    pub fn path_for(store: &Path) -> PathBuf {
        let mut p = store.as_os_str().to_owned();
        p.push(".lock");
        PathBuf::from(p)
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
        let since = chrono::DateTime::from_timestamp(now(), 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        writeln!(
            file,
            "pid {} running `{what}` since {since}",
            std::process::id(),
        )
        .map_err(io)?;
        file.flush().map_err(io)?;
        Ok(RunnerLock { _file: file, path })
    }

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

//! The running step's progress, kept outside its transaction: a step runs in one store
//! transaction, so when its process is killed everything it wrote is rolled back, its run
//! record included were it written there. The SQLite store has one writer at a time, and the
//! step holds the write lock for as long as it runs: no second connection can write the run
//! record meanwhile. So the progress goes to a small file beside the store (`<store>.progress`,
//! owner-only), replaced whole (written beside it and renamed over it, so a reader never sees
//! half of it) once a second by a thread of its own, with the counts the step last reported
//! and how long it has run. The next process that holds the runner lock records an interrupted
//! step with them (`Runs::mark_interrupted`); `history` shows a running step with them.
//!
//! The file is not synced to disk: a killed process loses nothing the kernel holds, and after
//! a power cut an interrupted step only loses its last counts.

use crate::{now, RunId};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often the running step's progress is written.
const EVERY: Duration = Duration::from_secs(1);

/// What the progress file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Progress {
    pub run: i64,
    /// When it was written (seconds since the epoch).
    pub at: i64,
    /// How long the step had run then.
    pub seconds: f64,
    /// What the step last reported (`Runs::run_progress`): its statistics and notes, as
    /// `run_finish` stores them.
    pub stats: serde_json::Value,
}

impl Progress {
    /// The progress file of a store, if there is one holding a progress.
    pub(crate) fn read(path: &Path) -> Option<Progress> {
        let text = std::fs::read(path).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The run's statistics as history keeps them: the step's last report, with how long it
    /// had run and when, marked as not committed.
    pub(crate) fn as_stats(&self) -> serde_json::Value {
        let mut stats = match &self.stats {
            serde_json::Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        stats.insert("seconds".into(), self.seconds.into());
        stats.insert("as_of".into(), self.at.into());
        stats.insert("committed".into(), false.into());
        serde_json::Value::Object(stats)
    }
}

struct Current {
    run: RunId,
    started: Instant,
    stats: serde_json::Value,
}

#[derive(Default)]
struct Shared {
    current: Option<Current>,
    stop: bool,
}

/// Writes the running step's progress to the file once a second, on a thread started with the
/// first step.
pub(crate) struct Heartbeat {
    path: PathBuf,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub(crate) fn new(path: PathBuf) -> Heartbeat {
        Heartbeat {
            path,
            shared: Arc::default(),
            thread: None,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A step began: its progress is written from now on, the first time at once.
    pub(crate) fn start(&mut self, run: RunId) {
        let (lock, _) = &*self.shared;
        let Ok(mut shared) = lock.lock() else { return };
        shared.current = Some(Current {
            run,
            started: Instant::now(),
            stats: serde_json::Value::Null,
        });
        write(&self.path, &shared);
        drop(shared);
        if self.thread.is_none() {
            let shared = Arc::clone(&self.shared);
            let path = self.path.clone();
            self.thread = std::thread::Builder::new()
                .name("store-progress".to_owned())
                .spawn(move || beat(&path, &shared))
                .ok();
        }
    }

    /// What the running step has done so far (written with the next beat).
    pub(crate) fn report(&self, run: RunId, stats: &serde_json::Value) {
        let (lock, _) = &*self.shared;
        let Ok(mut shared) = lock.lock() else { return };
        if let Some(c) = shared.current.as_mut().filter(|c| c.run == run) {
            c.stats = stats.clone();
        }
    }

    /// The step finished (its record says so): its progress is no longer needed.
    pub(crate) fn finish(&self, run: RunId) {
        let (lock, _) = &*self.shared;
        let Ok(mut shared) = lock.lock() else { return };
        if shared.current.as_ref().is_some_and(|c| c.run == run) {
            shared.current = None;
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut shared) = lock.lock() {
            shared.stop = true;
        }
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The heartbeat thread: writes the progress every [`EVERY`] until the store is dropped.
fn beat(path: &Path, shared: &(Mutex<Shared>, Condvar)) {
    let (lock, wake) = shared;
    let Ok(mut guard) = lock.lock() else { return };
    loop {
        guard = match wake.wait_timeout(guard, EVERY) {
            Ok((g, _)) => g,
            Err(_) => return,
        };
        if guard.stop {
            return;
        }
        // Written holding the lock: a step that finishes meanwhile removes the file after.
        write(path, &guard);
    }
}

/// Replaces the progress file with the current step's progress (nothing when no step runs).
/// A failure only leaves the last progress in place: the step goes on.
fn write(path: &Path, shared: &Shared) {
    let Some(c) = &shared.current else { return };
    let p = Progress {
        run: c.run.0,
        at: now(),
        seconds: c.started.elapsed().as_secs_f64(),
        stats: c.stats.clone(),
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut f| {
        use std::io::Write;
        f.write_all(serde_json::to_string(&p).unwrap_or_default().as_bytes())
    });
    if written.is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

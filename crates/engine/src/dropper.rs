//! Drops values on a helper thread, in batches.
//!
//! A full import builds each connector-space object from an entry that the connector's reading
//! thread allocated (tens of small strings and vectors an entry), and writes it on the storing
//! thread, which is the import's bottleneck. Freeing what another thread allocated is the
//! slowest kind of free with any allocator: done on the storing thread it took about a tenth of
//! it (per-thread `perf` profile of a 100,000-entry LDAP import). A [`Dropper`] takes the objects
//! once they are written and frees them on a thread of its own.
//!
//! Unlike crates that send each value to a global thread over an unbounded channel
//! (`defer-drop`), values go in batches (one channel message per [`BATCH`]) over a channel of a
//! few batches: when the helper falls behind, the storing thread waits, so memory stays bounded.
//! The thread starts with the first full batch (a small import never starts one); where it
//! cannot start, values are dropped where they are.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

/// Values a batch holds.
const BATCH: usize = 256;
/// Batches waiting for the helper at most.
const QUEUE: usize = 4;

pub(crate) struct Dropper<T: Send + 'static> {
    batch: Vec<T>,
    helper: Option<(SyncSender<Vec<T>>, JoinHandle<()>)>,
    /// The helper could not be started: drop here.
    inline: bool,
}

impl<T: Send + 'static> Dropper<T> {
    pub(crate) fn new() -> Self {
        Dropper {
            batch: Vec::new(),
            helper: None,
            inline: false,
        }
    }

    /// Takes a value to drop later, on the helper thread.
    pub(crate) fn drop_later(&mut self, value: T) {
        if self.inline {
            return drop(value);
        }
        if self.batch.capacity() == 0 {
            self.batch.reserve_exact(BATCH);
        }
        self.batch.push(value);
        if self.batch.len() >= BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        if self.helper.is_none() {
            let (tx, rx) = sync_channel::<Vec<T>>(QUEUE);
            let spawned = std::thread::Builder::new()
                .name("drop-written".to_owned())
                .spawn(move || rx.into_iter().for_each(drop));
            match spawned {
                Ok(thread) => self.helper = Some((tx, thread)),
                Err(_) => self.inline = true,
            }
        }
        match &self.helper {
            Some((tx, _)) => {
                // The helper ends only when this side closes the channel; a helper that died
                // hands the batch back, and it is dropped here.
                if tx.send(batch).is_err() {
                    self.inline = true;
                }
            }
            None => drop(batch),
        }
    }
}

impl<T: Send + 'static> Drop for Dropper<T> {
    /// Drops what is left and waits for the helper to finish, so nothing outlives the step.
    fn drop(&mut self) {
        self.batch.clear();
        if let Some((tx, thread)) = self.helper.take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts its drops, and the threads they ran on.
    struct Counted(Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
            let name = std::thread::current().name().unwrap_or("").to_owned();
            let mut threads = self.1.lock().unwrap();
            if !threads.contains(&name) {
                threads.push(name);
            }
        }
    }

    #[test]
    fn every_value_is_dropped_by_the_time_the_dropper_is() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut d = Dropper::new();
        let n = BATCH * (QUEUE + 3) + 7;
        for _ in 0..n {
            d.drop_later(Counted(dropped.clone(), threads.clone()));
        }
        drop(d);
        assert_eq!(dropped.load(Ordering::SeqCst), n);
        // Full batches went to the helper; the rest was dropped here.
        assert!(threads.lock().unwrap().iter().any(|t| t == "drop-written"));
    }

    #[test]
    fn a_small_step_starts_no_thread() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut d = Dropper::new();
        for _ in 0..BATCH - 1 {
            d.drop_later(Counted(dropped.clone(), threads.clone()));
        }
        assert!(d.helper.is_none());
        drop(d);
        assert_eq!(dropped.load(Ordering::SeqCst), BATCH - 1);
        assert!(!threads.lock().unwrap().iter().any(|t| t == "drop-written"));
    }
}

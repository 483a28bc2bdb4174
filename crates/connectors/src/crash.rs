//! Deterministic crash points, for the crash-safety harness.
//!
//! The engine and the connectors name the places where a sudden death matters (an object staged,
//! a batch sent, an export applied to the target but not yet committed in the store) with
//! [`crash_point!`]. Nothing happens unless the process was started with one of two environment
//! variables, read once:
//!
//! - `IDSYNC_CRASH_AT=<point>:<n>` ends the process with `std::process::abort()` (no destructor,
//!   no flush: as close to SIGKILL as a process can do to itself) at the `n`-th hit of `<point>`.
//!   `IDSYNC_CRASH_AT=<point>:<n>:sleep-<ms>` sleeps instead (tests use it to hold a lock).
//! - `IDSYNC_CRASH_TRACE=<file>` appends the name of every point hit to the file, one a line, so
//!   a harness learns which points a run passes and how often, and picks some from a seed.
//!
//! Points are named `<step>:<connector>:<where>`; hits are counted per name in this process, so
//! a point and a count replay the same crash on the same input.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

enum Action {
    Abort,
    Sleep(u64),
}

struct Armed {
    at: Option<(String, u64, Action)>,
    trace: Option<Mutex<std::fs::File>>,
    hits: Mutex<HashMap<String, u64>>,
}

fn armed_state() -> &'static Option<Armed> {
    static STATE: OnceLock<Option<Armed>> = OnceLock::new();
    STATE.get_or_init(|| {
        let at = std::env::var("IDSYNC_CRASH_AT")
            .ok()
            .and_then(|v| parse_at(&v));
        let trace = std::env::var_os("IDSYNC_CRASH_TRACE").and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
                .map(Mutex::new)
        });
        if at.is_none() && trace.is_none() {
            return None;
        }
        Some(Armed {
            at,
            trace,
            hits: Mutex::new(HashMap::new()),
        })
    })
}

/// Parses `<point>:<n>[:abort|:sleep-<ms>]`; the point itself may hold colons.
fn parse_at(v: &str) -> Option<(String, u64, Action)> {
    let (rest, last) = v.rsplit_once(':')?;
    if let Ok(n) = last.parse::<u64>() {
        return Some((rest.to_owned(), n, Action::Abort));
    }
    let action = match last {
        "abort" => Action::Abort,
        s => Action::Sleep(s.strip_prefix("sleep-")?.parse().ok()?),
    };
    let (point, n) = rest.rsplit_once(':')?;
    Some((point.to_owned(), n.parse().ok()?, action))
}

/// Whether any crash point is armed (callers skip building point names otherwise).
pub fn armed() -> bool {
    armed_state().is_some()
}

/// Records a hit of `point`, and crashes (or sleeps) when it is the armed one.
pub fn hit(point: &str) {
    let Some(state) = armed_state() else { return };
    if let Some(trace) = &state.trace {
        if let Ok(mut f) = trace.lock() {
            // The trace is test instrumentation: a failed write only makes the trace shorter.
            let _ = writeln!(f, "{point}");
        }
    }
    let Some((at, n, action)) = &state.at else {
        return;
    };
    if at != point {
        return;
    }
    let count = {
        let Ok(mut hits) = state.hits.lock() else {
            return;
        };
        let c = hits.entry(point.to_owned()).or_insert(0);
        *c += 1;
        *c
    };
    if count == *n {
        match action {
            Action::Abort => {
                eprintln!("idsync: crash point {point}:{n} reached, aborting");
                std::process::abort();
            }
            Action::Sleep(ms) => std::thread::sleep(std::time::Duration::from_millis(*ms)),
        }
    }
}

/// A named crash point: `crash_point!("{}:{}:applied", step, connector)`. Costs one check of a
/// static when no crash point is armed.
#[macro_export]
macro_rules! crash_point {
    ($($arg:tt)*) => {
        if $crate::crash::armed() {
            $crate::crash::hit(&format!($($arg)*));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_specs_parse() {
        let (p, n, a) = parse_at("export:profiles:applied:3").unwrap();
        assert_eq!((p.as_str(), n), ("export:profiles:applied", 3));
        assert!(matches!(a, Action::Abort));
        let (p, n, a) = parse_at("export:profiles:applied:1:sleep-250").unwrap();
        assert_eq!((p.as_str(), n), ("export:profiles:applied", 1));
        assert!(matches!(a, Action::Sleep(250)));
        assert!(parse_at("nonsense").is_none());
    }
}

//! When a schedule is due. Times are seconds since the epoch; the clock is always a parameter,
//! so every rule here is tested without waiting.
//!
//! - An interval schedule is due `every` after its last due time; a cron schedule at the next
//!   time its expression matches, in its time zone (daylight saving changes included, by
//!   `croner` over `chrono-tz`).
//! - A service that starts with no due time recorded runs an interval schedule at once and a
//!   cron schedule at its next match.
//! - Due times missed while the service was down are not replayed one by one: one catch-up run
//!   starts at once (unless `catch_up = false`, which waits for the next due time).
//! - A due time that passes while a run is still going is skipped (`overlap = "skip"`, the
//!   default) or waits and runs once the run ends (`overlap = "wait"`); never two at once.
//! - After a failed run the schedule tries again after `retry`, doubling up to `retry_max`,
//!   instead of at every due time; a success resets it.

use chrono::{DateTime, Utc};
use idsync_rules::{Overlap, Schedule, When};

/// The first due time strictly after `t`.
pub fn next_after(when: &When, t: i64) -> i64 {
    match when {
        When::Every(d) => t.saturating_add(d.as_secs().max(1) as i64),
        When::Cron { cron, zone, .. } => {
            let Some(at) = DateTime::<Utc>::from_timestamp(t, 0) else {
                return i64::MAX;
            };
            cron.find_next_occurrence(&at.with_timezone(zone), false)
                .map_or(i64::MAX, |n| n.timestamp())
        }
    }
}

/// The first due time strictly after `now` of a schedule last due at `anchor`: an interval
/// keeps its rhythm (`anchor + k * every`), a cron expression its matches.
pub fn next_from(when: &When, anchor: i64, now: i64) -> i64 {
    match when {
        When::Every(d) => {
            let d = d.as_secs().max(1) as i64;
            if now < anchor {
                return anchor.saturating_add(d);
            }
            anchor.saturating_add(((now - anchor) / d + 1).saturating_mul(d))
        }
        When::Cron { .. } => next_after(when, now),
    }
}

/// Due times in `(after, until]`, counted up to `cap`.
pub fn due_between(when: &When, after: i64, until: i64, cap: u64) -> u64 {
    let mut n = 0;
    let mut t = after;
    while n < cap {
        t = next_after(when, t);
        if t > until {
            break;
        }
        n += 1;
    }
    n
}

/// Why a run starts when it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its due time came.
    Due,
    /// It makes up for `missed` due times that passed while the service was down.
    CatchUp { missed: u64 },
    /// A due time passed while the previous run was going; it waited for it (`overlap = "wait"`).
    Waited,
    /// The last run failed; this is try number `failures + 1`.
    Retry { failures: u32 },
}

/// When a schedule runs next, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    pub at: i64,
    pub reason: Reason,
}

/// The first run of a schedule when the service starts at `now`, from the due time of its
/// last run (`last_due`, kept in the store) and its failures in a row.
pub fn at_start(s: &Schedule, last_due: Option<i64>, failures: u32, now: i64) -> Next {
    let Some(last) = last_due else {
        return match s.when {
            When::Every(_) => Next {
                at: now,
                reason: Reason::Due,
            },
            When::Cron { .. } => Next {
                at: next_after(&s.when, now),
                reason: Reason::Due,
            },
        };
    };
    if failures > 0 {
        return Next {
            at: now,
            reason: Reason::Retry { failures },
        };
    }
    let next = next_after(&s.when, last);
    if next > now {
        return Next {
            at: next,
            reason: Reason::Due,
        };
    }
    if s.catch_up {
        Next {
            at: now,
            reason: Reason::CatchUp {
                missed: due_between(&s.when, last, now, 1_000_000),
            },
        }
    } else {
        Next {
            at: next_from(&s.when, last, now),
            reason: Reason::Due,
        }
    }
}

/// What follows a run that was due at `due` and ended at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterRun {
    pub next: Next,
    /// Due times that passed during the run and are skipped (`overlap = "skip"`).
    pub skipped: u64,
}

/// The next run after one that was due at `due`, ended at `now`, and left `failures` failures
/// in a row (0 after a success).
pub fn after_run(s: &Schedule, due: i64, failures: u32, now: i64) -> AfterRun {
    if failures > 0 {
        return AfterRun {
            next: Next {
                at: now.saturating_add(s.retry_delay(failures).as_secs() as i64),
                reason: Reason::Retry { failures },
            },
            skipped: 0,
        };
    }
    let next = next_after(&s.when, due);
    if next > now {
        return AfterRun {
            next: Next {
                at: next,
                reason: Reason::Due,
            },
            skipped: 0,
        };
    }
    let passed = due_between(&s.when, due, now, 1_000_000);
    match s.overlap {
        Overlap::Wait => AfterRun {
            next: Next {
                at: now,
                reason: Reason::Waited,
            },
            // One run makes up for them all; the others are skipped.
            skipped: passed.saturating_sub(1),
        },
        Overlap::Skip => AfterRun {
            next: Next {
                at: next_from(&s.when, due, now),
                reason: Reason::Due,
            },
            skipped: passed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idsync_rules::Rules;

    fn schedule(tail: &str) -> Schedule {
        let src = format!(
            "[[connector]]\nname = \"d\"\ntype = \"ldif\"\nrole = \"directory\"\npath = \"x.ldif\"\n[[connector.object_type]]\nname = \"person\"\n[[schedule]]\nrun = \"delta-cycle\"\n{tail}\n"
        );
        Rules::load(&src, "t.toml")
            .unwrap()
            .schedules
            .into_iter()
            .next()
            .unwrap()
    }

    #[test]
    fn an_interval_runs_at_once_on_first_start_then_every_interval() {
        let s = schedule("every = \"10m\"");
        assert_eq!(at_start(&s, None, 0, 1000).at, 1000);
        let a = after_run(&s, 1000, 0, 1030);
        assert_eq!(a.next.at, 1600);
        assert_eq!(a.skipped, 0);
    }

    #[test]
    fn missed_runs_while_down_make_one_catch_up_run() {
        let s = schedule("every = \"10m\"");
        let n = at_start(&s, Some(0), 0, 3 * 3600);
        assert_eq!(n.at, 3 * 3600);
        assert_eq!(n.reason, Reason::CatchUp { missed: 18 });
        // Not yet due: waits for its time.
        assert_eq!(at_start(&s, Some(0), 0, 100).at, 600);
        // catch_up = false: the next due time.
        let s = schedule("every = \"10m\"\ncatch_up = false");
        assert_eq!(at_start(&s, Some(0), 0, 3 * 3600 + 1).at, 3 * 3600 + 600);
    }

    #[test]
    fn a_due_time_during_a_run_is_skipped_or_waits_never_doubled() {
        let s = schedule("every = \"1m\"");
        // Due at 0, ran until 150: the due times 60 and 120 passed.
        let a = after_run(&s, 0, 0, 150);
        assert_eq!(a.skipped, 2);
        assert_eq!(a.next.at, 180);
        let s = schedule("every = \"1m\"\noverlap = \"wait\"");
        let a = after_run(&s, 0, 0, 150);
        assert_eq!(
            a.next,
            Next {
                at: 150,
                reason: Reason::Waited
            }
        );
        assert_eq!(a.skipped, 1);
    }

    #[test]
    fn a_failed_run_is_retried_with_backoff_not_at_every_due_time() {
        let s = schedule("every = \"1s\"\nretry = \"30s\"\nretry_max = \"5m\"");
        assert_eq!(after_run(&s, 0, 1, 2).next.at, 32);
        assert_eq!(after_run(&s, 0, 2, 2).next.at, 62);
        assert_eq!(after_run(&s, 0, 9, 2).next.at, 302);
        assert_eq!(after_run(&s, 0, 0, 2).next.reason, Reason::Due);
    }

    #[test]
    fn cron_follows_its_time_zone() {
        // 02:00 in Paris is 01:00 UTC in winter.
        let s = schedule("cron = \"0 2 * * *\"\ntime_zone = \"Europe/Paris\"");
        let jan1 = 1_767_225_600; // 2026-01-01T00:00:00Z
        assert_eq!(next_after(&s.when, jan1), jan1 + 3600);
        assert_eq!(at_start(&s, None, 0, jan1).at, jan1 + 3600);
        // Down for three days: one catch-up run for the three nights missed.
        let n = at_start(&s, Some(jan1 + 3600), 0, jan1 + 3 * 86400 + 7200);
        assert_eq!(n.reason, Reason::CatchUp { missed: 3 });
    }
}

//! The service loop: sleeps until a schedule is due, runs it (one run at a time, whatever the
//! number of schedules), records it in the run history, and plans the next one (`plan`).
//!
//! Each scheduled run is one history row, `schedule:<name>`, besides the rows of its steps: its
//! status (`success`, `completed-with-errors`, `failed`, `stopped`), why it started (due,
//! catch-up, waited, retry) and the steps it ran. A due time skipped because a run was still
//! going is a row of its own with the status `skipped`. The paused flag and each schedule's last
//! due time and failures in a row are kept in the store ([`ServiceState`]), so `idsync schedule
//! pause` reaches a running service and a restarted service knows what it missed.
//!
//! SIGTERM or SIGINT sets the stop flag: the step in progress completes (or fails and rolls
//! back) as always, no further step starts, and the loop ends. A second signal ends the process
//! at once; its step rolls back, as after a kill.

use crate::plan::{self, Next, Reason};
use crate::profile::run_profile;
use crate::Result;
use idsync_engine::{CycleKind, Engine};
use idsync_rules::{Cycle, RunTarget, Schedule};
use idsync_store::{now, Runs, ServiceState, Store};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PAUSED: &str = "schedule.paused";

fn key(schedule: &str, what: &str) -> String {
    format!("schedule.{schedule}.{what}")
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Sets the stop flag on SIGTERM and SIGINT; a second one ends the process at once (exit 1).
pub fn install_signal_handlers() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        // Registered first, so it sees the flag as it was before this signal set it.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))
            .map_err(crate::Error::Signals)?;
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(crate::Error::Signals)?;
    }
    Ok(stop)
}

/// Whether the schedule is paused, and since when (RFC 3339).
pub fn paused<S: ServiceState>(store: &mut S) -> Result<Option<String>> {
    Ok(store.service_get(PAUSED)?)
}

/// Pauses the schedule: the service starts no new scheduled run until it is resumed (a run in
/// progress goes on). Recorded in the run history. Returns false if it was paused already.
pub fn pause<S: ServiceState + Runs>(store: &mut S) -> Result<bool> {
    if paused(store)?.is_some() {
        return Ok(false);
    }
    store.service_set(PAUSED, Some(&rfc3339(now())))?;
    let run = store.run_start("schedule-pause", None)?;
    store.run_finish(
        run,
        "success",
        &json!({}),
        Some("the schedule was paused: no scheduled run starts until `idsync schedule resume`"),
        &[],
    )?;
    Ok(true)
}

/// Resumes a paused schedule: due times that passed while it was paused are not made up.
/// Returns false if it was not paused.
pub fn resume<S: ServiceState + Runs>(store: &mut S) -> Result<bool> {
    let Some(since) = paused(store)? else {
        return Ok(false);
    };
    store.service_set(PAUSED, None)?;
    let run = store.run_start("schedule-resume", None)?;
    store.run_finish(
        run,
        "success",
        &json!({}),
        Some(&format!(
            "the schedule was resumed (paused since {since}); runs due meanwhile are not made up"
        )),
        &[],
    )?;
    Ok(true)
}

/// Each schedule as the store knows it: what it runs, when, its last due time and failures,
/// and when it would run next if the service started now.
pub fn status<S: ServiceState>(
    store: &mut S,
    schedules: &[Schedule],
) -> Result<Vec<serde_json::Value>> {
    let t = now();
    let mut out = Vec::new();
    for s in schedules {
        let last = last_due(store, &s.name)?;
        let failures = failures(store, &s.name)?;
        let next = plan::at_start(s, last, failures, t);
        let when = match &s.when {
            idsync_rules::When::Every(d) => format!("every {}s", d.as_secs()),
            idsync_rules::When::Cron {
                expression, zone, ..
            } => format!("cron {expression} ({zone})"),
        };
        out.push(json!({
            "schedule": s.name,
            "run": s.run.name(),
            "when": when,
            "staging": s.staging,
            "last_due": last.map(rfc3339),
            "last_success": store.service_get(&key(&s.name, "last_success"))?,
            "failures": failures,
            "next": rfc3339(next.at),
        }));
    }
    Ok(out)
}

fn last_due<S: ServiceState>(store: &mut S, name: &str) -> Result<Option<i64>> {
    Ok(store
        .service_get(&key(name, "last_due"))?
        .and_then(|v| v.parse().ok()))
}

fn failures<S: ServiceState>(store: &mut S, name: &str) -> Result<u32> {
    Ok(store
        .service_get(&key(name, "failures"))?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

fn reason_text(r: Reason) -> String {
    match r {
        Reason::Due => "due".to_owned(),
        Reason::CatchUp { missed } => {
            format!("catch-up: {missed} due time(s) passed while the service was not running")
        }
        Reason::Waited => {
            "waited: its due time passed while the previous run was going (overlap = \"wait\")"
                .to_owned()
        }
        Reason::Retry { failures } => format!("retry after {failures} failed run(s) in a row"),
    }
}

/// How a run ended, for its history row.
pub struct Ended {
    pub status: &'static str,
    pub stats: serde_json::Value,
    pub message: Option<String>,
}

/// Runs a cycle or a run profile as the history row `run` (started by the caller, who
/// finishes it with what this returns).
pub fn run_target<S: Store>(
    engine: &mut Engine<S>,
    target: &RunTarget,
    run: i64,
    dir: &std::path::Path,
    stop: Option<&AtomicBool>,
) -> Ended {
    match target {
        RunTarget::Cycle(c) => {
            let kind = match c {
                Cycle::Full => CycleKind::Full,
                Cycle::Delta => CycleKind::Delta,
            };
            match engine.run_cycle(kind) {
                Ok(r) => {
                    let errors: usize = r.steps.iter().map(|s| s.errors.len()).sum();
                    Ended {
                        status: if errors == 0 {
                            "success"
                        } else {
                            "completed-with-errors"
                        },
                        stats: json!({
                            "steps": r.steps.iter().map(|s| json!({
                                "run": s.run, "step": s.step, "connector": s.connector,
                                "errors": s.errors.len(), "seconds": s.seconds,
                            })).collect::<Vec<_>>(),
                            "pending_exports_left": r.pending_exports_left,
                            "seconds": r.seconds,
                        }),
                        message: None,
                    }
                }
                Err(idsync_engine::Error::StopRequested) => Ended {
                    status: "stopped",
                    stats: json!({}),
                    message: Some(idsync_engine::Error::StopRequested.to_string()),
                },
                Err(e) => Ended {
                    status: "failed",
                    stats: json!({}),
                    message: Some(e.to_string()),
                },
            }
        }
        RunTarget::Profile(name) => {
            let Some(p) = engine.rules.run_profile(name).cloned() else {
                return Ended {
                    status: "failed",
                    stats: json!({}),
                    message: Some(format!("no run profile `{name}`")),
                };
            };
            let out = run_profile(engine, &p, run, dir, stop);
            Ended {
                status: out.status(),
                stats: out.stats(),
                message: out.error,
            }
        }
    }
}

/// The service over one engine (whose store the caller holds the runner lock of).
pub struct Service<'a, S: Store + ServiceState> {
    pub engine: &'a mut Engine<S>,
    /// Where hooks run (the configuration's directory).
    pub dir: PathBuf,
    pub stop: Arc<AtomicBool>,
}

impl<S: Store + ServiceState> Service<'_, S> {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`, waking early when a stop is asked for.
    fn nap(&self, d: Duration) {
        let tick = Duration::from_millis(100);
        let mut left = d;
        while !left.is_zero() && !self.stopping() {
            let t = left.min(tick);
            std::thread::sleep(t);
            left -= t;
        }
    }

    /// Runs until the stop flag is set.
    pub fn run(&mut self) -> Result<()> {
        let schedules = self.engine.rules.schedules.clone();
        if schedules.is_empty() {
            tracing::warn!("the configuration has no [[schedule]]: the service runs nothing until it is stopped");
        }
        let t = now();
        let mut next: Vec<Next> = Vec::new();
        for s in &schedules {
            let last = last_due(&mut self.engine.store, &s.name)?;
            let f = failures(&mut self.engine.store, &s.name)?;
            let n = plan::at_start(s, last, f, t);
            tracing::info!(schedule = %s.name, run = s.run.name(), next = %rfc3339(n.at), reason = %reason_text(n.reason), "schedule loaded");
            next.push(n);
        }
        let mut was_paused: Option<bool> = None;
        loop {
            if self.stopping() {
                tracing::info!("stopped: no run was in progress");
                return Ok(());
            }
            let paused = paused(&mut self.engine.store)?.is_some();
            if was_paused != Some(paused) {
                if paused {
                    tracing::info!(
                        "the schedule is paused: no scheduled run starts until it is resumed"
                    );
                } else if was_paused.is_some() {
                    tracing::info!("the schedule is resumed");
                }
                was_paused = Some(paused);
            }
            let t = now();
            if paused {
                // Due times pass while paused; none is run, nor made up on resume.
                for (s, n) in schedules.iter().zip(next.iter_mut()) {
                    if n.at <= t {
                        *n = Next {
                            at: plan::next_after(&s.when, t),
                            reason: Reason::Due,
                        };
                    }
                }
                self.nap(Duration::from_millis(500));
                continue;
            }
            let due = next
                .iter()
                .enumerate()
                .filter(|(_, n)| n.at <= t)
                .min_by_key(|(_, n)| n.at)
                .map(|(i, _)| i);
            let Some(i) = due else {
                // Due times are whole seconds: a quarter of one is soon enough, and the pause
                // flag is read as often.
                self.nap(Duration::from_millis(250));
                continue;
            };
            let s = &schedules[i];
            let at = next[i].at;
            let f = self.run_one(s, at, next[i].reason)?;
            if self.stopping() {
                tracing::info!("stopped after the run in progress ended");
                return Ok(());
            }
            let ended = now();
            let a = plan::after_run(s, at, f, ended);
            if a.skipped > 0 {
                let run = self
                    .engine
                    .store
                    .run_start(&format!("schedule:{}", s.name), None)?;
                self.engine.store.run_finish(
                    run,
                    "skipped",
                    &json!({ "schedule": s.name, "run": s.run.name(), "skipped": a.skipped }),
                    Some(&format!(
                        "{} due time(s) passed while the run due at {} was still going; skipped (never two runs at once)",
                        a.skipped,
                        rfc3339(at)
                    )),
                    &[],
                )?;
                tracing::info!(schedule = %s.name, skipped = a.skipped, "due times skipped: the previous run was still going");
            }
            tracing::info!(schedule = %s.name, next = %rfc3339(a.next.at), reason = %reason_text(a.next.reason), "next run planned");
            next[i] = a.next;
        }
    }

    /// Runs one schedule due at `due`; returns its failures in a row after it.
    fn run_one(&mut self, s: &Schedule, due: i64, reason: Reason) -> Result<u32> {
        let store = &mut self.engine.store;
        let run = store.run_start(&format!("schedule:{}", s.name), None)?;
        store.service_set(&key(&s.name, "last_due"), Some(&due.to_string()))?;
        let before = failures(store, &s.name)?;
        tracing::info!(schedule = %s.name, run = run.0, what = s.run.name(), staging = s.staging, reason = %reason_text(reason), "run started");
        self.engine.options.staging = s.staging;
        self.engine.options.stop = Some(Arc::clone(&self.stop));
        let Ended {
            status,
            mut stats,
            message,
        } = run_target(self.engine, &s.run, run.0, &self.dir, Some(&self.stop));
        if let Some(o) = stats.as_object_mut() {
            o.insert("schedule".into(), json!(s.name));
            o.insert("run".into(), json!(s.run.name()));
            o.insert("reason".into(), json!(reason_text(reason)));
            o.insert("staging".into(), json!(s.staging));
        }
        let store = &mut self.engine.store;
        store.run_finish(run, status, &stats, message.as_deref(), &[])?;
        let after = match status {
            "failed" => before + 1,
            "stopped" => before,
            _ => 0,
        };
        store.service_set(&key(&s.name, "failures"), Some(&after.to_string()))?;
        if after == 0 && status != "stopped" {
            store.service_set(&key(&s.name, "last_success"), Some(&now().to_string()))?;
        }
        match status {
            "failed" => {
                tracing::warn!(schedule = %s.name, run = run.0, failures = after, message = message.as_deref().unwrap_or(""), "run failed")
            }
            _ => tracing::info!(schedule = %s.name, run = run.0, status, "run ended"),
        }
        Ok(after)
    }
}

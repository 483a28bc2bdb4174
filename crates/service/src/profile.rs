//! A run profile: its steps in order, each optionally with a command before and after it (seed
//! 003: "stop the sync after AD sync is done, run the timer job, then continue with BCS").
//!
//! A hook runs through `sh -c` in the configuration's directory, with the run's id
//! (`IDSYNC_RUN_ID`), the profile (`IDSYNC_PROFILE`), the step (`IDSYNC_STEP`), the connector
//! (`IDSYNC_CONNECTOR`) and `IDSYNC_HOOK` (`before` or `after`) in its environment; an `after`
//! hook also gets the step's own run id (`IDSYNC_STEP_RUN_ID`). A hook that exits non-zero stops
//! the run: no further hook or step runs, and its output is kept in the run's history.

use idsync_engine::{Engine, StepReport};
use idsync_rules::RunProfile;
use idsync_store::Store;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// At most this much of a hook's output is kept (its end, where errors usually are).
const OUTPUT_KEPT: usize = 64 * 1024;

/// What a run profile did.
#[derive(Debug, Default)]
pub struct ProfileOutcome {
    pub steps: Vec<StepReport>,
    /// One per hook run: which, for which step, its exit status and output.
    pub hooks: Vec<serde_json::Value>,
    /// Set when the run stopped before its end: a failed step or hook, or a stop asked for.
    pub error: Option<String>,
    /// Set when the run stopped because the process was asked to end.
    pub stopped: bool,
}

impl ProfileOutcome {
    /// The run's status in history: `success`, `completed-with-errors` (objects with errors),
    /// `failed` (a step or hook failed) or `stopped` (the process was asked to end).
    pub fn status(&self) -> &'static str {
        let errors: usize = self.steps.iter().map(|s| s.errors.len()).sum();
        match (&self.error, self.stopped) {
            (Some(_), true) => "stopped",
            (Some(_), false) => "failed",
            (None, _) if errors > 0 => "completed-with-errors",
            (None, _) => "success",
        }
    }

    /// The run's statistics for its history row.
    pub fn stats(&self) -> serde_json::Value {
        json!({
            "steps": self.steps.iter().map(|r| json!({
                "run": r.run, "step": r.step, "connector": r.connector,
                "errors": r.errors.len(), "seconds": r.seconds,
            })).collect::<Vec<_>>(),
            "hooks": self.hooks,
        })
    }
}

/// The end of `bytes` as text, at most [`OUTPUT_KEPT`] bytes.
fn kept(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= OUTPUT_KEPT {
        return text.into_owned();
    }
    let mut start = text.len() - OUTPUT_KEPT;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[... cut]{}", &text[start..])
}

struct HookCall<'a> {
    which: &'static str,
    command: &'a str,
    run: i64,
    profile: &'a str,
    step: &'a str,
    connector: &'a str,
    step_run: Option<i64>,
}

/// Runs one hook; `Err` carries the message that stops the run.
fn hook(dir: &Path, h: &HookCall, out: &mut ProfileOutcome) -> Result<(), String> {
    tracing::info!(
        hook = h.which,
        step = h.step,
        connector = h.connector,
        command = h.command,
        "hook started"
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(h.command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .env("IDSYNC_RUN_ID", h.run.to_string())
        .env("IDSYNC_PROFILE", h.profile)
        .env("IDSYNC_STEP", h.step)
        .env("IDSYNC_CONNECTOR", h.connector)
        .env("IDSYNC_HOOK", h.which);
    if let Some(r) = h.step_run {
        cmd.env("IDSYNC_STEP_RUN_ID", r.to_string());
    }
    let result = cmd.output();
    let (status, output, ok) = match &result {
        Ok(o) => {
            let mut all = o.stdout.clone();
            all.extend_from_slice(&o.stderr);
            (o.status.to_string(), kept(&all), o.status.success())
        }
        Err(e) => (format!("could not start: {e}"), String::new(), false),
    };
    out.hooks.push(json!({
        "hook": h.which, "step": h.step, "connector": h.connector, "command": h.command,
        "status": status, "output": output,
    }));
    if ok {
        tracing::info!(
            hook = h.which,
            step = h.step,
            connector = h.connector,
            "hook done"
        );
        return Ok(());
    }
    tracing::warn!(hook = h.which, step = h.step, connector = h.connector, %status, "hook failed: the run stops");
    Err(format!(
        "the {} hook of {} `{}` failed ({status}); the run stopped there. Its output:\n{output}",
        h.which, h.step, h.connector
    ))
}

/// Runs `profile` as the run `run` (its history row, which the caller starts and finishes),
/// with hooks run in `dir`. Stops between steps when `stop` is set.
pub fn run_profile<S: Store>(
    engine: &mut Engine<S>,
    profile: &RunProfile,
    run: i64,
    dir: &Path,
    stop: Option<&AtomicBool>,
) -> ProfileOutcome {
    let mut out = ProfileOutcome::default();
    for (i, s) in profile.steps.iter().enumerate() {
        if stop.is_some_and(|f| f.load(Ordering::SeqCst)) {
            out.stopped = true;
            out.error = Some(format!(
                "stopped before step {} of {} ({} `{}`): the process was asked to end; the steps done are kept",
                i + 1,
                profile.steps.len(),
                s.step,
                s.connector
            ));
            return out;
        }
        let mut call = HookCall {
            which: "before",
            command: "",
            run,
            profile: &profile.name,
            step: &s.step,
            connector: s.connector.as_str(),
            step_run: None,
        };
        if let Some(c) = &s.before {
            call.command = c;
            if let Err(m) = hook(dir, &call, &mut out) {
                out.error = Some(m);
                return out;
            }
        }
        let Some(step) = idsync_engine::Step::parse(&s.step) else {
            // Rules checked the name at load.
            out.error = Some(format!("unknown step `{}`", s.step));
            return out;
        };
        tracing::info!(profile = %profile.name, step = %s.step, connector = %s.connector, "step started");
        match engine.run_step(step, s.connector.as_str()) {
            Ok(r) => {
                tracing::info!(profile = %profile.name, step = %s.step, connector = %s.connector, run = r.run.0, errors = r.errors.len(), "step done");
                call.step_run = Some(r.run.0);
                out.steps.push(r);
            }
            Err(e) => {
                tracing::warn!(profile = %profile.name, step = %s.step, connector = %s.connector, error = %e, "step failed: the run stops");
                out.error = Some(e.to_string());
                return out;
            }
        }
        if let Some(c) = &s.after {
            call.which = "after";
            call.command = c;
            if let Err(m) = hook(dir, &call, &mut out) {
                out.error = Some(m);
                return out;
            }
        }
    }
    out
}

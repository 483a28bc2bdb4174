//! `idsync service`, `[[schedule]]` and `[[run_profile]]` against the real binary over the sample
//! file estate (LDIF directory, CSV HR table, CSV profile target): schedules that run by
//! themselves, never two runs at once, SIGTERM mid-step, pause and resume, run profiles and
//! their hooks (issue 18 items 1-3). Waits are polls with generous deadlines, never timings.

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn idsync() -> Command {
    Command::cargo_bin("idsync").expect("the idsync binary is built")
}

fn json(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("idsync runs");
    assert!(
        out.status.success(),
        "idsync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("idsync prints JSON")
}

/// The sample estate after one full cycle, with `extra` appended to its configuration.
fn estate(dir: &Path, extra: &str) -> PathBuf {
    let mut o = idsync_sample::Options::demo();
    o.people = 10;
    let g = idsync_sample::generate(dir, &o).unwrap();
    json(
        idsync()
            .arg("-c")
            .arg(&g.config)
            .args(["run", "full-cycle", "--json"]),
    );
    let mut text = std::fs::read_to_string(&g.config).unwrap();
    text.push_str(extra);
    std::fs::write(&g.config, text).unwrap();
    g.config
}

/// Every run in history, oldest first.
fn history(config: &Path) -> Vec<Value> {
    let runs = json(
        idsync()
            .arg("-c")
            .arg(config)
            .args(["history", "--json", "--limit", "100000"]),
    );
    let mut runs = runs.as_array().unwrap().clone();
    runs.reverse();
    runs
}

fn rows<'a>(runs: &'a [Value], step: &str) -> Vec<&'a Value> {
    runs.iter().filter(|r| r["step"] == step).collect()
}

/// Polls `f` until it holds, for at most two minutes.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(config: &Path, env: &[(&str, &str)], log_format: &str) -> Service {
        let log = config.with_file_name(format!(
            "service-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("idsync"));
        cmd.arg("-c")
            .arg(config)
            .args(["service", "--log-format", log_format])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Service {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to the child this test started.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// SIGTERM, then waits for the process to end; returns its exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not end after SIGTERM: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const EVERY_SECOND: &str = r#"
[[schedule]]
name = "often"
run = "delta-cycle"
every = "1s"
"#;

#[test]
fn an_interval_schedule_runs_cycles_by_itself_holding_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let config = estate(&tmp.path().join("e"), EVERY_SECOND);
    let service = Service::start(&config, &[], "json");
    wait_until("three scheduled runs succeed", || {
        rows(&history(&config), "schedule:often")
            .iter()
            .filter(|r| r["status"] == "success")
            .count()
            >= 3
    });
    // Each scheduled run ran a whole delta cycle: its steps are in its statistics.
    let runs = history(&config);
    let done = rows(&runs, "schedule:often");
    let first = done.iter().find(|r| r["status"] == "success").unwrap();
    let steps = first["stats"]["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["step"] == "delta-import")
            && steps.iter().any(|s| s["step"] == "delta-sync"),
        "{first}"
    );
    assert_eq!(first["stats"]["reason"], "due");
    // While the service runs, it holds the store: a run by hand is refused, naming it.
    let out = idsync()
        .arg("-c")
        .arg(&config)
        .args(["run", "delta-cycle"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another idsync run") && err.contains("service -c"),
        "{err}"
    );
    let log = service.log();
    assert!(service.stop().success());
    // Structured logs: every line one JSON object; the runs are there with their fields.
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "run started"
            && l["fields"]["schedule"] == "often"
            && l["level"] == "INFO"),
        "{log}"
    );
    // Stopped between runs: nothing is left running.
    assert!(history(&config).iter().all(|r| r["status"] != "running"));
}

#[test]
fn a_run_still_going_when_the_next_is_due_is_not_doubled() {
    let tmp = tempfile::tempdir().unwrap();
    let config = estate(&tmp.path().join("e"), EVERY_SECOND);
    // The first scheduled run stalls 4 s in its first sync: four due times pass meanwhile.
    let service = Service::start(
        &config,
        &[("IDSYNC_CRASH_AT", "delta-sync:directory:begin:1:sleep-4000")],
        "text",
    );
    wait_until("a skipped due time and two more runs", || {
        let runs = history(&config);
        let runs = rows(&runs, "schedule:often");
        runs.iter().any(|r| r["status"] == "skipped")
            && runs.iter().filter(|r| r["status"] == "success").count() >= 3
    });
    assert!(service.stop().success());
    let runs = history(&config);
    let scheduled = rows(&runs, "schedule:often");
    let skipped = scheduled.iter().find(|r| r["status"] == "skipped").unwrap();
    assert!(
        skipped["message"]
            .as_str()
            .unwrap()
            .contains("passed while the run due at"),
        "{skipped}"
    );
    assert!(
        skipped["stats"]["skipped"].as_u64().unwrap() >= 1,
        "{skipped}"
    );
    // Runs never overlap: each starts after the one before it finished, and no step of one
    // lies between another's steps.
    let ran: Vec<&&Value> = scheduled
        .iter()
        .filter(|r| r["status"] != "skipped")
        .collect();
    for pair in ran.windows(2) {
        assert!(
            pair[1]["started_at"].as_i64() >= pair[0]["finished_at"].as_i64(),
            "{} overlaps {}",
            pair[0],
            pair[1]
        );
        let last_step = pair[0]["stats"]["steps"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["run"]
            .as_i64()
            .unwrap();
        assert!(pair[1]["id"].as_i64().unwrap() > last_step);
    }
}

#[test]
fn sigterm_during_a_step_completes_it_and_a_restart_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let config = estate(&tmp.path().join("e"), EVERY_SECOND);
    let service = Service::start(
        &config,
        &[("IDSYNC_CRASH_AT", "delta-sync:directory:begin:1:sleep-3000")],
        "text",
    );
    let mut stalled = 0;
    wait_until("the first scheduled run is inside its sync", || {
        let runs = history(&config);
        match runs
            .iter()
            .find(|r| r["step"] == "delta-sync" && r["status"] == "running")
        {
            Some(r) => {
                stalled = r["id"].as_i64().unwrap();
                true
            }
            None => false,
        }
    });
    let status = service.stop();
    assert!(status.success(), "{status}");
    let runs = history(&config);
    // The step in progress completed (committed, not cut), and no step started after it.
    let step = runs.iter().find(|r| r["id"] == stalled).unwrap();
    assert_eq!(step["status"], "success", "{step}");
    assert!(
        runs.iter()
            .all(|r| r["id"].as_i64().unwrap() <= stalled || r["step"] == "schedule:often"),
        "{runs:?}"
    );
    let scheduled = rows(&runs, "schedule:often");
    assert_eq!(scheduled.last().unwrap()["status"], "stopped");
    assert!(runs.iter().all(|r| r["status"] != "running"));
    // The store is consistent: a run by hand finds nothing interrupted and goes through.
    let out = idsync()
        .arg("-c")
        .arg(&config)
        .args(["run", "delta-cycle"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("interrupted"), "{err}");
    // A restarted service goes on: its due time passed while it was down, so one run catches up.
    let before = scheduled.len();
    let service = Service::start(&config, &[], "text");
    wait_until("the restarted service runs", || {
        rows(&history(&config), "schedule:often")
            .iter()
            .skip(before)
            .any(|r| r["status"] == "success")
    });
    assert!(service.stop().success());
    let runs = history(&config);
    let after = rows(&runs, "schedule:often");
    let first = after
        .iter()
        .skip(before)
        .find(|r| r["status"] == "success")
        .unwrap();
    assert!(
        first["stats"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("catch-up"),
        "{first}"
    );
}

#[test]
fn pause_stops_new_runs_and_resume_starts_them_again() {
    let tmp = tempfile::tempdir().unwrap();
    let config = estate(&tmp.path().join("e"), EVERY_SECOND);
    let service = Service::start(&config, &[], "text");
    let scheduled = || {
        rows(&history(&config), "schedule:often")
            .iter()
            .filter(|r| r["status"] != "skipped")
            .count()
    };
    wait_until("a scheduled run", || scheduled() >= 1);
    let out = idsync()
        .arg("-c")
        .arg(&config)
        .args(["schedule", "pause"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the service sees the pause", || {
        service.log().contains("the schedule is paused")
    });
    wait_until("no run in progress", || {
        history(&config).iter().all(|r| r["status"] != "running")
    });
    let paused_at = scheduled();
    // Over several due times (every second), no new run starts.
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(scheduled(), paused_at, "a run started while paused");
    }
    let status = json(
        idsync()
            .arg("-c")
            .arg(&config)
            .args(["schedule", "status", "--json"]),
    );
    assert!(status["paused"].is_string(), "{status}");
    assert_eq!(status["schedules"][0]["schedule"], "often");
    idsync()
        .arg("-c")
        .arg(&config)
        .args(["schedule", "resume"])
        .assert()
        .success();
    wait_until("runs start again", || scheduled() > paused_at);
    assert!(service.stop().success());
    let runs = history(&config);
    assert_eq!(rows(&runs, "schedule-pause").len(), 1);
    assert_eq!(rows(&runs, "schedule-resume").len(), 1);
}

const PROFILES: &str = r#"
[[run_profile]]
name = "hr-then-directory"
[[run_profile.step]]
connector = "hr"
step = "full-import"
before = 'echo "before $IDSYNC_HOOK $IDSYNC_STEP $IDSYNC_CONNECTOR run=$IDSYNC_RUN_ID" >> hooks.log'
after = 'echo "after $IDSYNC_STEP $IDSYNC_CONNECTOR step-run=$IDSYNC_STEP_RUN_ID" >> hooks.log'
[[run_profile.step]]
connector = "directory"
step = "delta-import"
[[run_profile.step]]
connector = "directory"
step = "delta-sync"

[[run_profile]]
name = "timer-job"
[[run_profile.step]]
connector = "hr"
step = "full-import"
after = 'echo "timer job: site collection locked" >&2; echo partial output; exit 3'
[[run_profile.step]]
connector = "hr"
step = "delta-sync"

[[schedule]]
run = "timer-job"
every = "1s"
retry = "1h"
"#;

#[test]
fn run_profiles_run_by_hand_and_a_failing_hook_stops_its_run_with_its_output_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let config = estate(&tmp.path().join("e"), PROFILES);
    let dir = config.parent().unwrap();
    // By hand: its steps in order, the hooks with the run's id, step and connector.
    let out = json(
        idsync()
            .arg("-c")
            .arg(&config)
            .args(["run", "hr-then-directory", "--json"]),
    );
    assert_eq!(out["status"], "success", "{out}");
    let steps: Vec<(String, String)> = out["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["connector"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("full-import".into(), "hr".into()),
            ("delta-import".into(), "directory".into()),
            ("delta-sync".into(), "directory".into())
        ]
    );
    let run = out["run"].as_i64().unwrap();
    let first_step = out["steps"][0]["run"].as_i64().unwrap();
    let hooks = std::fs::read_to_string(dir.join("hooks.log")).unwrap();
    assert_eq!(
        hooks,
        format!(
            "before before full-import hr run={run}\nafter full-import hr step-run={first_step}\n"
        )
    );
    let runs = history(&config);
    let row = runs.iter().find(|r| r["id"] == run).unwrap();
    assert_eq!(row["step"], "run-profile:hr-then-directory");
    assert_eq!(row["status"], "success");

    // A failing hook stops its run profile: exit 1, its output in the message and the history.
    let out = idsync()
        .arg("-c")
        .arg(&config)
        .args(["run", "timer-job"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("site collection locked"), "{err}");
    let runs = history(&config);
    let row = rows(&runs, "run-profile:timer-job")[0];
    assert_eq!(row["status"], "failed", "{row}");
    let message = row["message"].as_str().unwrap();
    assert!(
        message.contains("after hook of full-import `hr` failed")
            && message.contains("site collection locked")
            && message.contains("partial output"),
        "{message}"
    );
    assert_eq!(row["stats"]["hooks"][0]["status"], "exit status: 3");
    // The step after the hook never ran.
    let id = row["id"].as_i64().unwrap();
    assert!(
        !runs
            .iter()
            .any(|r| r["id"].as_i64().unwrap() > id && r["step"] == "delta-sync"),
        "{runs:?}"
    );

    // Scheduled, the same profile fails once and is retried after its backoff (1h), not at
    // every due time (1s).
    let service = Service::start(&config, &[], "text");
    wait_until("the scheduled run fails", || {
        rows(&history(&config), "schedule:timer-job")
            .iter()
            .any(|r| r["status"] == "failed")
    });
    wait_until("the retry is planned", || {
        service.log().contains("retry after 1 failed run")
    });
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(rows(&history(&config), "schedule:timer-job").len(), 1);
    }
    assert!(service.stop().success());
    let status = json(
        idsync()
            .arg("-c")
            .arg(&config)
            .args(["schedule", "status", "--json"]),
    );
    assert_eq!(status["schedules"][0]["failures"], 1, "{status}");
    let row = rows(&history(&config), "schedule:timer-job")[0].clone();
    assert!(
        row["message"]
            .as_str()
            .unwrap()
            .contains("site collection locked"),
        "{row}"
    );
}

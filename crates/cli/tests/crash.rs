//! The crash-safety harness: the real `idsync` binary killed at many deterministic points of
//! full and delta cycles, run again, and compared with a run never killed. The scenarios are
//! data (`tests/crash/scenarios.toml`), so a connector is added to the harness by adding a
//! scenario. A failure names the scenario and the crash point (`IDSYNC_CRASH_AT=<point>:<n>`
//! replays it by hand).

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "crash/servers.rs"]
mod servers;
use servers::Servers;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenarios {
    scenario: Vec<Scenario>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Scenario {
    name: String,
    /// `sample`: the generated sample estate (with `people`).
    estate: String,
    #[serde(default = "default_people")]
    people: usize,
    /// A configuration file (beside scenarios.toml) that replaces the estate's idsync.toml.
    config: Option<String>,
    /// Text appended to the estate's idsync.toml (another connector and its rules).
    config_append: Option<String>,
    /// Commands run in the estate's folder before anything else (start and fill servers).
    #[serde(default)]
    setup: Vec<Vec<String>>,
    /// idsync argument lists run, never killed, before the changes are written.
    #[serde(default)]
    prepare: Vec<Vec<String>>,
    #[serde(default)]
    write: Vec<WriteFile>,
    #[serde(default)]
    replace: Vec<Replace>,
    cycle: String,
    points: usize,
    seed: u64,
    /// Crash points (`<point>:<n>`) always killed, besides those chosen from the seed.
    #[serde(default)]
    always: Vec<String>,
    #[serde(default)]
    compare: Vec<String>,
    /// Commands whose standard output is compared (a target server's content).
    #[serde(default)]
    dump: Vec<Vec<String>>,
    /// Real servers each estate folder gets (`slapd`, `postgres`, `profile-store`; see
    /// `crash/servers.rs`): started before its runs, their content compared, stopped after.
    #[serde(default)]
    servers: Vec<String>,
    /// LDIF change records applied to the slapd after `prepare` (the delta a cycle then sees).
    ldap_change: Option<String>,
    /// SQL run on PostgreSQL after `prepare` (`@PG@` is the scenario's table prefix).
    sql_change: Option<String>,
    /// Seeded points are chosen among those whose name contains one of these (all if empty);
    /// `always` points are not filtered.
    #[serde(default)]
    focus: Vec<String>,
}

fn default_people() -> usize {
    16
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct WriteFile {
    path: String,
    text: String,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Replace {
    path: String,
    from: String,
    to: String,
}

fn idsync_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("idsync")
}

fn idsync(estate: &Path, args: &[String], env: &[(&str, String)]) -> Output {
    let mut c = Command::new(idsync_bin());
    c.arg("-c").arg(estate.join("idsync.toml")).args(args);
    c.env_remove("IDSYNC_CRASH_AT")
        .env_remove("IDSYNC_CRASH_TRACE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("idsync starts")
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

fn run_cmds(dir: &Path, cmds: &[Vec<String>]) -> Vec<String> {
    cmds.iter()
        .map(|c| {
            let out = Command::new(&c[0])
                .args(&c[1..])
                .current_dir(dir)
                .env("IDSYNC_ESTATE", dir)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
            assert!(
                out.status.success(),
                "{c:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Builds the estate a scenario starts from (before its cycle), its servers' state included
/// (left stopped).
fn prepare(s: &Scenario, dir: &Path, servers: &mut Servers) {
    match s.estate.as_str() {
        "sample" => {
            let mut o = idsync_sample::Options::demo();
            o.people = s.people;
            idsync_sample::generate(dir, &o).expect("the sample estate is written");
        }
        other => panic!("scenario {}: unknown estate `{other}`", s.name),
    }
    if let Some(c) = &s.config {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/crash")
            .join(c);
        std::fs::copy(&src, dir.join("idsync.toml")).unwrap();
    }
    if let Some(extra) = &s.config_append {
        let p = dir.join("idsync.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("{text}\n{extra}")).unwrap();
    }
    if servers.any() {
        let p = dir.join("idsync.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, servers.fill(&text)).unwrap();
        servers.setup(dir);
    }
    run_cmds(dir, &s.setup);
    servers.start(dir);
    for args in &s.prepare {
        ok(idsync(dir, args, &[]), &format!("prepare {args:?}"));
    }
    if let Some(ldif) = &s.ldap_change {
        servers.ldap_change(dir, ldif);
    }
    if let Some(sql) = &s.sql_change {
        servers.sql_change(sql);
    }
    servers.stop();
    servers.snapshot();
    for w in &s.write {
        let p = dir.join(&w.path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, w.text.trim_start()).unwrap();
    }
    for r in &s.replace {
        let p = dir.join(&r.path);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains(&r.from),
            "scenario {}: {} has no `{}`",
            s.name,
            r.path,
            r.from
        );
        std::fs::write(&p, text.replacen(&r.from, &r.to, 1)).unwrap();
    }
}

/// Masks generated ids: idsync's (UUID v7), the profile store's and slapd's entryUUIDs of what
/// was exported (two runs give the same objects different ids). The sample's fixed entryUUIDs
/// (`00000000-0000-...`) are kept.
fn mask_ids(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let hex = |c: u8| c.is_ascii_hexdigit();
    while i < b.len() {
        if i + 36 <= b.len() {
            let w = &b[i..i + 36];
            let shape = w.iter().enumerate().all(|(k, &c)| match k {
                8 | 13 | 18 | 23 => c == b'-',
                _ => hex(c),
            });
            if shape && !w.starts_with(b"00000000-0000-") {
                out.push_str("<id>");
                i += 36;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// What is compared between two runs, by name.
fn observe(s: &Scenario, dir: &Path, servers: &Servers) -> BTreeMap<String, Vec<String>> {
    let mut seen = BTreeMap::new();
    for c in &s.compare {
        let p = dir.join(c);
        if p.is_dir() {
            let mut files = BTreeSet::new();
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                let bytes = std::fs::read(e.path()).unwrap();
                files.insert(format!(
                    "{} {}",
                    e.file_name().to_string_lossy(),
                    blake3::hash(&bytes).to_hex()
                ));
            }
            seen.insert(c.clone(), files.into_iter().collect());
        } else {
            let text = mask_ids(&std::fs::read_to_string(&p).unwrap_or_default());
            // Records, not their order: an LDIF file by its blank-line-separated records, other
            // files by line. A record written twice shows as a duplicate.
            let mut recs: Vec<String> = if c.ends_with(".ldif") {
                text.split("\n\n")
                    .map(|r| r.trim().to_owned())
                    .filter(|r| !r.is_empty())
                    .collect()
            } else {
                text.lines().map(str::to_owned).collect()
            };
            recs.sort();
            seen.insert(c.clone(), recs);
        }
    }
    for (i, out) in run_cmds(dir, &s.dump).into_iter().enumerate() {
        let mut lines: Vec<String> = mask_ids(&out).lines().map(str::to_owned).collect();
        lines.sort();
        seen.insert(format!("dump {:?}", s.dump[i]), lines);
    }
    for (name, recs) in servers.dump() {
        seen.insert(name, recs.iter().map(|r| mask_ids(r)).collect());
    }
    let out = ok(idsync(dir, &["dump".into()], &[]), "idsync dump");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
                o.remove("mv_id");
            }
            mask_ids(&v.to_string())
        })
        .collect();
    lines.sort();
    seen.insert("store".into(), lines);
    seen
}

/// The differences between two observations, as readable lines.
fn differences(
    a: &BTreeMap<String, Vec<String>>,
    b: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, va) in a {
        let vb = b.get(k).cloned().unwrap_or_default();
        if *va != vb {
            let sa: BTreeSet<_> = va.iter().collect();
            let sb: BTreeSet<_> = vb.iter().collect();
            for x in sa.difference(&sb).take(5) {
                out.push(format!("{k}: only in the run never killed: {x}"));
            }
            for x in sb.difference(&sa).take(5) {
                out.push(format!("{k}: only after the crash: {x}"));
            }
            if sa == sb {
                out.push(format!(
                    "{k}: same records, different counts ({} vs {}): something applied twice",
                    va.len(),
                    vb.len()
                ));
            }
        }
    }
    out
}

/// A small deterministic generator (SplitMix64), so a seed replays the same points.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Chooses `k` crash points (name, hit) from a trace: distinct names first, in a seeded order.
fn choose(trace: &str, k: usize, seed: u64) -> Vec<(String, u64)> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for l in trace.lines() {
        *counts.entry(l).or_default() += 1;
    }
    let mut names: Vec<(&str, u64)> = counts.into_iter().collect();
    let mut rng = Rng(seed);
    for i in (1..names.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        names.swap(i, j);
    }
    let mut out = BTreeSet::new();
    let mut i = 0;
    while out.len() < k && i < k * 4 {
        let (name, count) = names[i % names.len()];
        out.insert((name.to_owned(), 1 + rng.next() % count));
        i += 1;
    }
    out.into_iter().collect()
}

struct Outcome {
    points: Vec<(String, u64)>,
    failures: Vec<String>,
}

fn run_scenario(s: &Scenario, root: &Path) -> Outcome {
    let started = std::time::Instant::now();
    let mut servers = Servers::new(&s.servers, &s.name, idsync_bin());
    let base = root.join(format!("{}-base", s.name));
    prepare(s, &base, &mut servers);
    let cycle = vec!["run".to_owned(), s.cycle.clone(), "--json".to_owned()];
    // The run never killed, traced to learn the crash points it passes.
    let reference = root.join(format!("{}-reference", s.name));
    copy_dir(&base, &reference);
    let trace = root.join(format!("{}.trace", s.name));
    servers.start(&reference);
    ok(
        idsync(
            &reference,
            &cycle,
            &[("IDSYNC_CRASH_TRACE", trace.display().to_string())],
        ),
        "the reference run",
    );
    let expected = observe(s, &reference, &servers);
    servers.stop();
    let compared: Vec<String> = expected
        .iter()
        .map(|(k, v)| format!("{k} ({})", v.len()))
        .collect();
    eprintln!(
        "crash harness: scenario {} compares {}",
        s.name,
        compared.join(", ")
    );
    // IDSYNC_CRASH_SHOW=<text> prints the compared records of the run never killed holding it.
    if let Ok(show) = std::env::var("IDSYNC_CRASH_SHOW") {
        for (k, v) in &expected {
            for r in v.iter().filter(|r| r.contains(&show)) {
                eprintln!("  {k}: {r}");
            }
        }
    }
    let trace = std::fs::read_to_string(&trace).unwrap();
    let focused: String = trace
        .lines()
        .filter(|l| s.focus.is_empty() || s.focus.iter().any(|f| l.contains(f.as_str())))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut points = choose(&focused, s.points, s.seed);
    for a in &s.always {
        let (p, n) = a.rsplit_once(':').expect("always: <point>:<n>");
        let n: u64 = n.parse().expect("always: <point>:<n>");
        let hits = trace.lines().filter(|l| *l == p).count() as u64;
        assert!(
            hits >= n,
            "scenario {}: a run never killed passes {p} {hits} times, not {n}",
            s.name
        );
        if !points.contains(&(p.to_owned(), n)) {
            points.push((p.to_owned(), n));
        }
    }
    let mut failures = Vec::new();
    for (i, (point, n)) in points.iter().enumerate() {
        let dir = root.join(format!("{}-{i}", s.name));
        copy_dir(&base, &dir);
        let spec = format!("{point}:{n}");
        // The servers stay up across the killed run and its rerun.
        servers.start(&dir);
        let killed = idsync(&dir, &cycle, &[("IDSYNC_CRASH_AT", spec.clone())]);
        if killed.status.success()
            || !String::from_utf8_lossy(&killed.stderr).contains("crash point")
        {
            failures.push(format!(
                "{} {spec}: the run did not crash there: {}",
                s.name,
                String::from_utf8_lossy(&killed.stderr)
            ));
            servers.stop();
            continue;
        }
        let again = idsync(&dir, &cycle, &[]);
        if !again.status.success() {
            failures.push(format!(
                "{} {spec}: the run after the crash failed: {}",
                s.name,
                String::from_utf8_lossy(&again.stderr)
            ));
            servers.stop();
            continue;
        }
        let diffs = differences(&expected, &observe(s, &dir, &servers));
        servers.stop();
        if diffs.is_empty() {
            // Keep the disk small: a passing point's copy is not needed.
            let _ = std::fs::remove_dir_all(&dir);
        }
        for d in diffs {
            failures.push(format!("{} {spec}: {d}", s.name));
        }
    }
    let distinct: BTreeSet<&str> = points.iter().map(|(p, _)| p.as_str()).collect();
    let killed: Vec<String> = points.iter().map(|(p, n)| format!("{p}:{n}")).collect();
    eprintln!(
        "crash harness: scenario {} killed at {}",
        s.name,
        killed.join(" ")
    );
    eprintln!(
        "crash harness: scenario {}: {} kills at {} distinct points, {} runs compared, {} differences, {:.1} s",
        s.name,
        points.len(),
        distinct.len(),
        points.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    Outcome { points, failures }
}

#[test]
fn killed_cycles_end_as_if_never_killed() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crash/scenarios.toml"),
    )
    .unwrap();
    let scenarios: Scenarios = toml::from_str(&text).expect("scenarios.toml parses");
    let tmp = tempfile::tempdir().unwrap();
    let mut names = BTreeSet::new();
    let mut kills = 0;
    let mut failures = Vec::new();
    // IDSYNC_CRASH_SCENARIO=<name> runs one scenario (to replay or develop it).
    let only = std::env::var("IDSYNC_CRASH_SCENARIO").ok();
    for s in &scenarios.scenario {
        if only.as_ref().is_some_and(|o| *o != s.name) {
            continue;
        }
        let o = run_scenario(s, tmp.path());
        kills += o.points.len();
        names.extend(o.points.iter().map(|(p, _)| p.clone()));
        failures.extend(o.failures);
    }
    eprintln!(
        "crash harness: {kills} kills at {} distinct points, {kills} runs compared, {} differences",
        names.len(),
        failures.len()
    );
    assert!(
        only.is_some() || names.len() >= 30,
        "only {} distinct crash points",
        names.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A run the test stalled: killed (SIGKILL) when the test ends, whatever way it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn history(dir: &Path) -> serde_json::Value {
    let args: Vec<String> = ["history", "--json", "--limit", "50"]
        .map(String::from)
        .to_vec();
    let out = ok(idsync(dir, &args, &[]), "idsync history");
    serde_json::from_slice(&out.stdout).expect("history prints JSON")
}

fn full_cycle(dir: &Path) -> serde_json::Value {
    let args: Vec<String> = ["run", "full-cycle", "--json"].map(String::from).to_vec();
    let out = ok(idsync(dir, &args, &[]), "idsync run full-cycle");
    serde_json::from_slice(&out.stdout).expect("run prints JSON")
}

/// Issue 22 item 16: a step killed with SIGKILL while it runs is kept in history with how long
/// it ran and what it had done by its last progress report (marked as such: nothing of it was
/// committed), and the next run goes on as if the step had never begun.
#[test]
fn a_killed_step_is_kept_with_its_time_and_its_last_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = idsync_sample::Options::demo();
    o.people = 2200;
    let dir = tmp.path().join("killed");
    let reference = tmp.path().join("reference");
    for d in [&dir, &reference] {
        idsync_sample::generate(d, &o).expect("the sample estate is written");
    }
    // The directory's import stalls at its 2,100th object, after the progress reports at
    // 1,024 and 2,048 objects.
    let mut run = KillOnDrop(
        Command::new(idsync_bin())
            .arg("-c")
            .arg(dir.join("idsync.toml"))
            .args(["run", "full-cycle"])
            .env(
                "IDSYNC_CRASH_AT",
                "full-import:directory:object:2100:sleep-600000",
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // While it runs, history shows its progress.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let runs = history(&dir);
        let r = &runs[0];
        if r["status"] == "running"
            && r["step"] == "full-import"
            && r["stats"]["stats"]["read"] == 2048
            && r["stats"]["seconds"].as_f64().unwrap_or(0.0) >= 1.0
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the import never reported 2,048 objects: {runs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    run.0.kill().unwrap();
    run.0.wait().unwrap();
    // Killed: history (finding the store free) marks the step interrupted, with its time and
    // counts as of its last progress report.
    let runs = history(&dir);
    let r = &runs[0];
    assert_eq!(r["status"], "interrupted", "{r}");
    assert_eq!(r["step"], "full-import", "{r}");
    assert_eq!(r["stats"]["stats"]["read"], 2048, "{r}");
    assert!(r["stats"]["seconds"].as_f64().unwrap_or(0.0) >= 1.0, "{r}");
    assert_eq!(r["stats"]["committed"], false, "{r}");
    assert_eq!(r["finished_at"], r["stats"]["as_of"], "{r}");
    let message = r["message"].as_str().unwrap_or("");
    assert!(
        message.contains("rolled back") && message.contains("as of its last progress report"),
        "{r}"
    );
    let out = ok(idsync(&dir, &["history".into()], &[]), "idsync history");
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.contains("interrupted*"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("2048") && !row.contains("0.00"), "{table}");
    assert!(
        table.contains("as of the step's last progress report"),
        "{table}"
    );
    // The next run goes on as a run never killed does.
    let after = full_cycle(&dir);
    let expected = full_cycle(&reference);
    let stats = |report: &serde_json::Value| -> Vec<String> {
        report["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| format!("{} {} {}", s["step"], s["connector"], s["stats"]))
            .collect()
    };
    assert_eq!(stats(&after), stats(&expected));
    let runs = history(&dir);
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] != "running"),
        "{runs}"
    );
}

//! `idsync bench`: the benchmark suites, on generated data, printing one JSON object with the
//! same field names in every suite (`suite`, `people`, `changes`, `seconds`,
//! `objects_per_second`, `peak_rss_mb`, and `baseline_seconds` with `ratio` where a comparison is
//! made). BENCHMARKS.md records the figures.

use anyhow::{bail, Context, Result};
use idsync_engine::{CycleKind, Step};
use serde_json::{json, Value};
use std::io::Write;
use std::time::Instant;

/// The process's peak resident memory in MB (VmHWM), or 0 where /proc is missing.
pub(crate) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
}

/// CPU seconds (user and system) used so far by the whole process and by the calling thread,
/// from `getrusage`: steadier figures than elapsed time on a shared machine. (0, 0) where the
/// call is missing.
pub(crate) fn cpu_seconds() -> (f64, f64) {
    fn of(who: libc::c_int) -> f64 {
        // SAFETY: getrusage only writes the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut u) } != 0 {
            return 0.0;
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        secs(u.ru_utime) + secs(u.ru_stime)
    }
    #[cfg(target_os = "linux")]
    return (of(libc::RUSAGE_SELF), of(libc::RUSAGE_THREAD));
    #[cfg(not(target_os = "linux"))]
    return (of(libc::RUSAGE_SELF), 0.0);
}

/// The sample configuration with the profile table replaced by an LDIF change log: export
/// appends change records and never rewrites a file, so a delta cycle's cost is the engine's.
fn change_log_config() -> String {
    let text = idsync_sample::config_text();
    let start = text.find("[[connector]]\nname = \"profiles\"").unwrap_or(0);
    let end = text[start..]
        .find("[[join]]")
        .map_or(text.len(), |e| start + e);
    let profiles = r#"[[connector]]
name = "profiles"
type = "ldif"
role = "target"
export_changes = "profiles-changes.ldif"
anchor = "uid"

[[connector.object_type]]
name = "person"

"#;
    let mut out = String::new();
    out.push_str(&text[..start]);
    out.push_str(profiles);
    out.push_str(&text[end..]);
    out.replace(
        "dn = \"{uid}\"",
        "dn = \"uid={uid},ou=Profiles,dc=example,dc=test\"\nobject_classes = [\"inetOrgPerson\"]",
    )
}

pub(crate) fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn run(suite: &str, people: usize, changes: usize) -> Result<Value> {
    if suite == "augment-sql" {
        return crate::bench_sql::run(people);
    }
    if suite == "ad-import" {
        return crate::bench_ad::run(people);
    }
    if suite.starts_with("ldap-") {
        return crate::bench_ldap::run(suite, people, changes);
    }
    if suite == "profile-api" {
        return crate::bench_api::run(people);
    }
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let opts = idsync_sample::Options::bench(people);
    let gen_started = Instant::now();
    let g =
        idsync_sample::generate(dir.path(), &opts).context("cannot generate the sample estate")?;
    let generate_seconds = gen_started.elapsed().as_secs_f64();
    match suite {
        "ldif-import" => {
            let mut engine = crate::open_engine(&g.config)?;
            let t = Instant::now();
            let r = engine.run_step(Step::FullImport, "directory")?;
            let secs = t.elapsed().as_secs_f64();
            Ok(json!({
                "suite": suite, "people": people, "seconds": round(secs),
                "objects_per_second": (r.stats.read as f64 / secs).round(),
                "peak_rss_mb": peak_rss_mb(), "added": r.stats.added,
                "ldif_bytes": std::fs::metadata(&g.directory).map(|m| m.len()).unwrap_or(0),
                "generate_seconds": round(generate_seconds),
            }))
        }
        "full-sync" => {
            std::fs::write(&g.config, change_log_config())?;
            let mut engine = crate::open_engine(&g.config)?;
            let t = Instant::now();
            engine.run_step(Step::FullImport, "directory")?;
            engine.run_step(Step::FullImport, "hr")?;
            let import_seconds = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let a = engine.run_step(Step::FullSync, "directory")?;
            let b = engine.run_step(Step::FullSync, "hr")?;
            let secs = t.elapsed().as_secs_f64();
            let objects = (people + g.hr_rows) as f64;
            Ok(json!({
                "suite": suite, "people": people, "seconds": round(secs),
                "objects_per_second": (objects / secs).round(),
                "peak_rss_mb": peak_rss_mb(),
                "projected": a.stats.projected, "joined": b.stats.joined,
                "provisioned": a.stats.provisioned + b.stats.provisioned,
                "import_seconds": round(import_seconds),
            }))
        }
        "delta-cycle" => {
            std::fs::write(&g.config, change_log_config())?;
            let mut engine = crate::open_engine(&g.config)?;
            let t = Instant::now();
            let setup = engine.run_cycle(CycleKind::Full)?;
            let setup_seconds = t.elapsed().as_secs_f64();
            if setup.pending_exports_left > 0 {
                bail!(
                    "the setup cycle left {} exports pending",
                    setup.pending_exports_left
                );
            }
            // K people get a new mail address in one change file (the directory owns mail).
            let changes_dir = dir.path().join("changes");
            std::fs::create_dir_all(&changes_dir)?;
            let mut f =
                std::io::BufWriter::new(std::fs::File::create(changes_dir.join("0001.ldif"))?);
            writeln!(f, "version: 1\n")?;
            let step = (people / changes.max(1)).max(1);
            let mut written = 0;
            for i in (0..people).step_by(step).take(changes) {
                writeln!(
                    f,
                    "dn: {}\nchangetype: modify\nreplace: mail\nmail: changed{i}@example.test\n-\n",
                    idsync_sample::person_dn(i)
                )?;
                written += 1;
            }
            f.flush()?;
            drop(f);
            let t = Instant::now();
            let r = engine.run_cycle(CycleKind::Delta)?;
            let secs = t.elapsed().as_secs_f64();
            let exported: u64 = r.steps.iter().map(|s| s.stats.exported).sum();
            Ok(json!({
                "suite": suite, "people": people, "changes": written, "seconds": round(secs),
                "objects_per_second": (written as f64 / secs).round(),
                "peak_rss_mb": peak_rss_mb(), "exported": exported,
                "setup_seconds": round(setup_seconds),
                // Where the cycle's time went, step by step.
                "steps": r.steps.iter().map(|s| json!({
                    "step": s.step.name(), "connector": s.connector, "seconds": round(s.seconds),
                })).collect::<Vec<_>>(),
            }))
        }
        "process-import" => process_import(dir.path(), &g, people),
        "profile-export" => crate::bench_profile::run(dir.path(), &g, people),
        other => {
            bail!("unknown benchmark suite `{other}`: say ldif-import, full-sync, delta-cycle, process-import, profile-export, profile-api, augment-sql, ldap-import, ldap-export or ad-import")
        }
    }
}

/// A connector program for `process-import`: the sample's HR CSV read with Python's csv module
/// and sent as protocol objects, so the difference from the CSV connector on the same file is
/// the protocol's own cost (a process, JSON both ways, the checks).
const EMIT_CSV: &str = r#"import csv, json, sys
out = sys.stdout
json.loads(sys.stdin.readline())
out.write(json.dumps({"type": "ready", "protocol": 1, "capabilities": {"full_import": True},
    "object_types": ["person"], "attribute_types": {"hireDate": "timestamp"}}) + "\n")
out.flush()
for line in sys.stdin:
    with open(sys.argv[1], newline="") as f:
        for row in csv.DictReader(f):
            attrs = {k: (v.split(";") if k == "phones" else [v]) for k, v in row.items() if v}
            if row.get("hireDate", "").isdigit():
                attrs["hireDate"] = [int(row["hireDate"])]  # seconds since 1970
            out.write(json.dumps({"type": "object", "anchor": row["employee_id"],
                "id": row["employee_id"], "object_type": "person", "attributes": attrs}) + "\n")
    out.write(json.dumps({"type": "end", "watermark": None}) + "\n")
    out.flush()
"#;

/// The sample's HR table full-imported by the CSV connector, then the same file through the
/// process connector (a Python program sending it as protocol objects), in one run.
fn process_import(
    dir: &std::path::Path,
    g: &idsync_sample::Generated,
    people: usize,
) -> Result<Value> {
    let mut engine = crate::open_engine(&g.config)?;
    let t = Instant::now();
    let csv = engine.run_step(Step::FullImport, "hr")?;
    let csv_secs = t.elapsed().as_secs_f64();
    drop(engine);

    std::fs::write(dir.join("emit_csv.py"), EMIT_CSV)?;
    let text = std::fs::read_to_string(&g.config)?;
    let text = text
        .replacen("path = \"idsync.db\"", "path = \"process.db\"", 1)
        .replacen(
            "type = \"csv\"\nrole = \"business\"\npath = \"hr.csv\"\nanchor = \"employee_id\"\nmulti_valued = [\"phones\"]\nattribute_types = { hireDate = \"timestamp\" }",
            "type = \"process\"\nrole = \"business\"\ncommand = [\"python3\", \"emit_csv.py\", \"hr.csv\"]",
            1,
        );
    if !text.contains("emit_csv.py") {
        bail!("the sample's hr connector is not the CSV connector this suite replaces");
    }
    let config = dir.join("process.toml");
    std::fs::write(&config, text)?;
    let mut engine = crate::open_engine(&config)?;
    let t = Instant::now();
    let process = engine.run_step(Step::FullImport, "hr")?;
    let process_secs = t.elapsed().as_secs_f64();
    if process.stats.added != csv.stats.added {
        bail!(
            "the process connector added {} objects, the CSV connector {}",
            process.stats.added,
            csv.stats.added
        );
    }
    let n = process.stats.read.max(1) as f64;
    Ok(json!({
        "suite": "process-import", "people": people, "objects": process.stats.read,
        "seconds": round(process_secs),
        "objects_per_second": (n / process_secs).round(),
        "csv_seconds": round(csv_secs),
        "csv_objects_per_second": (csv.stats.read as f64 / csv_secs).round(),
        "protocol_overhead_us_per_object": round((process_secs - csv_secs) / n * 1e6),
        "peak_rss_mb": peak_rss_mb(),
    }))
}

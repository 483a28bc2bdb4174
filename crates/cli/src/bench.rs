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
        "profile-export" => crate::bench_profile::run(dir.path(), &g, people),
        other => {
            bail!("unknown benchmark suite `{other}`: say ldif-import, full-sync, delta-cycle, profile-export, profile-api, augment-sql, ldap-import, ldap-export or ad-import")
        }
    }
}

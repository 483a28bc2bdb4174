//! LDAP benchmarks against real throwaway slapd servers (`idsync-testbed`), each compared with
//! OpenLDAP's own client tools in the same run:
//!
//! - `ldap-import`: a full import of N people (10% with a 5 KB photo, most with a manager) into an
//!   empty connector space against `ldapsearch -LLL -E pr=1000/noprompt` of the same entries to
//!   /dev/null (`ratio`; the baseline is the median of three dumps); a second full import of the
//!   unchanged directory (`reimport_ratio`, same baseline) once the store's checkpointer has
//!   copied the first import's log into the database (`settle_seconds`); then a syncrepl delta
//!   import of 100 changes (`delta_seconds`).
//! - `ldap-export`: K value-level modifications exported to a durable slapd against `ldapmodify`
//!   applying the same changes from an LDIF file to an identical server (`ratio`).
//!
//! Also the sample estate's directory as a slapd seed, for `idsync demo --ldap`.

use anyhow::{bail, Context, Result};
use idsync_engine::Step;
use idsync_store::Transactions;
use idsync_testbed::{base_ldif, Slapd, SlapdOptions, ROOT_PASSWORD};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const SUFFIX: &str = "dc=example,dc=test";

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A photo of about 5 KB: a sample portrait padded with JPEG comment segments.
pub(crate) fn photo_5k(uid: &str) -> Vec<u8> {
    let base = idsync_sample::photo(uid, 1);
    let mut out = base[..2].to_vec();
    let filler = format!("padding for {uid} ").repeat(64);
    while out.len() + base.len() < 5 * 1024 {
        let take = (5 * 1024 - out.len() - base.len()).clamp(1, filler.len());
        let chunk = &filler.as_bytes()[..take];
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend_from_slice(&((chunk.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&base[2..]);
    out
}

/// Writes the benchmark directory as a slapadd seed: the containers and N people.
fn write_seed(path: &Path, people: usize) -> Result<()> {
    use base64::Engine;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    f.write_all(base_ldif(SUFFIX).as_bytes())?;
    for i in 0..people {
        let uid = idsync_sample::uid(i);
        write!(
            f,
            "dn: {}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: Person {i}\nsn: Number{i}\ngivenName: Person\nmail: {uid}@example.test\ntitle: Engineer\ntelephoneNumber: +1 555 {:04}\n",
            idsync_sample::person_dn(i),
            i % 10000
        )?;
        if i > 0 && i % 20 != 0 {
            writeln!(f, "manager: {}", idsync_sample::person_dn(i / 10))?;
        }
        if i % 10 == 3 {
            writeln!(
                f,
                "jpegPhoto:: {}",
                base64::engine::general_purpose::STANDARD.encode(photo_5k(&uid))
            )?;
        }
        writeln!(f)?;
    }
    f.flush()?;
    Ok(())
}

fn start(seed: &Path, durable: bool) -> Result<Slapd> {
    Slapd::start(SlapdOptions {
        seed_file: Some(seed.to_owned()),
        durable,
        ..Default::default()
    })
    .context("cannot start slapd (is the `slapd` package installed?)")
}

/// The configuration of an engine whose `name` connector reads people from `slapd`.
fn ldap_connector(name: &str, role: &str, slapd: &Slapd, base: &str) -> String {
    format!(
        "[[connector]]\nname = \"{name}\"\ntype = \"ldap\"\nrole = \"{role}\"\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"file:ldap.pw\"\nbase_dns = [\"{base}\"]\n\n[[connector.object_type]]\nname = \"person\"\nobject_classes = [\"inetOrgPerson\"]\n\n",
        slapd.url(),
        slapd.root_dn()
    )
}

/// 100 changes (or one per person, when fewer) spread over `people` entries named by `dn`: a
/// new mail address each, as an LDIF change file. Returns how many and the file.
pub(crate) fn mail_changes(people: usize, dn: impl Fn(usize) -> String) -> (usize, String) {
    let n = 100.min(people);
    let mut ldif = String::new();
    for i in (0..people).step_by((people / n.max(1)).max(1)).take(n) {
        ldif.push_str(&format!(
            "dn: {}\nchangetype: modify\nreplace: mail\nmail: changed{i}@example.test\n-\n\n",
            dn(i)
        ));
    }
    (n, ldif)
}

pub(crate) fn timed(cmd: &mut Command) -> Result<f64> {
    let t = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(t.elapsed().as_secs_f64())
}

pub fn run(suite: &str, people: usize, changes: usize) -> Result<Value> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    crate::serve::write_private(&dir.path().join("ldap.pw"), ROOT_PASSWORD)?;
    let seed = dir.path().join("seed.ldif");
    let t = Instant::now();
    write_seed(&seed, people)?;
    match suite {
        "ldap-import" => {
            let slapd = start(&seed, false)?;
            let setup_seconds = t.elapsed().as_secs_f64();
            let base = format!("ou=People,{SUFFIX}");
            // The median of three dumps: the first one after the server started reads a cold
            // server, the later ones what the imports read.
            let mut baselines = (0..3)
                .map(|_| {
                    timed(
                        slapd
                            .tool("ldapsearch")
                            .args(["-LLL", "-E", "pr=1000/noprompt", "-b", &base])
                            .arg("(objectClass=*)")
                            .args(["*", "entryUUID", "modifyTimestamp"]),
                    )
                })
                .collect::<Result<Vec<f64>>>()?;
            let runs: Vec<f64> = baselines.iter().map(|b| round(*b)).collect();
            baselines.sort_by(f64::total_cmp);
            let baseline = baselines[1];
            let config = dir.path().join("idsync.toml");
            std::fs::write(
                &config,
                ldap_connector("directory", "directory", &slapd, &base),
            )?;
            let mut engine = crate::open_engine(&config)?;
            let cpu = crate::bench::cpu_seconds();
            let t = Instant::now();
            let r = engine.run_step(Step::FullImport, "directory")?;
            let secs = t.elapsed().as_secs_f64();
            let import_cpu = crate::bench::cpu_seconds();
            // The import is durable in the store's log when it returns; the store's
            // checkpointer then copies the log into the database file in the background. Wait
            // for it, so the re-import is measured alone (as a daily import would run).
            let t = Instant::now();
            engine.store.settle()?;
            let settle = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let cpu_before_reimport = crate::bench::cpu_seconds();
            let again = engine.run_step(Step::FullImport, "directory")?;
            let reimport = t.elapsed().as_secs_f64();
            let reimport_cpu = crate::bench::cpu_seconds();
            // 100 changes (a new mail address) spread over the directory, then a delta import.
            let (delta_changes, ldif) = mail_changes(people, idsync_sample::person_dn);
            slapd.modify(&ldif)?;
            let t = Instant::now();
            let d = engine.run_step(Step::DeltaImport, "directory")?;
            let delta_seconds = t.elapsed().as_secs_f64();
            Ok(json!({
                "suite": suite, "people": people, "seconds": round(secs),
                "objects_per_second": (r.stats.read as f64 / secs).round(),
                "baseline": "ldapsearch -LLL -E pr=1000/noprompt > /dev/null",
                "baseline_seconds": round(baseline), "baseline_runs": runs,
                "ratio": round(secs / baseline), "settle_seconds": round(settle),
                "reimport_seconds": round(reimport), "reimport_ratio": round(reimport / baseline),
                "reimport_unchanged": again.stats.unchanged, "added": r.stats.added,
                "delta_changes": delta_changes, "delta_seconds": round(delta_seconds),
                "delta_updated": d.stats.updated, "delta_method": d.notes.join("; "),
                "peak_rss_mb": crate::bench::peak_rss_mb(),
                "setup_seconds": round(setup_seconds),
                // CPU during each import: all of idsync's threads, and the storing thread.
                "cpu_seconds": round(import_cpu.0 - cpu.0),
                "storing_cpu_seconds": round(import_cpu.1 - cpu.1),
                "reimport_cpu_seconds": round(reimport_cpu.0 - cpu_before_reimport.0),
                "reimport_storing_cpu_seconds": round(reimport_cpu.1 - cpu_before_reimport.1),
            }))
        }
        "ldap-export" => {
            let changes = changes.min(people);
            // Two identical durable servers: one for idsync, one for ldapmodify.
            let target = start(&seed, true)?;
            let reference = start(&seed, true)?;
            // The directory idsync exports from: the same people as an LDIF file, joined to the
            // target's by uid; K of them get a new title.
            let source = dir.path().join("directory.ldif");
            std::fs::copy(&seed, &source)?;
            let base = format!("ou=People,{SUFFIX}");
            let config = format!(
                "[[connector]]\nname = \"directory\"\ntype = \"ldif\"\nrole = \"directory\"\npath = \"directory.ldif\"\nanchor = \"uid\"\n\n[[connector.object_type]]\nname = \"person\"\nobject_classes = [\"inetOrgPerson\"]\n\n{}[[join]]\nconnector = \"target\"\ncs = \"uid\"\nmv = \"uid\"\n\n[[import_flow]]\nconnector = \"directory\"\nmv = \"uid\"\ncs = \"uid\"\n\n[[import_flow]]\nconnector = \"directory\"\nmv = \"title\"\ncs = \"title\"\n\n[[export_flow]]\nconnector = \"target\"\ncs = \"title\"\nmv = \"title\"\n",
                ldap_connector("target", "target", &target, &base)
            );
            let config_path = dir.path().join("idsync.toml");
            std::fs::write(&config_path, config)?;
            let mut engine = crate::open_engine(&config_path)?;
            for (step, c) in [
                (Step::FullImport, "directory"),
                (Step::FullImport, "target"),
                (Step::FullSync, "directory"),
                (Step::FullSync, "target"),
            ] {
                engine.run_step(step, c)?;
            }
            let step = (people / changes.max(1)).max(1);
            let chosen: Vec<usize> = (0..people).step_by(step).take(changes).collect();
            let text = std::fs::read_to_string(&source)?;
            let mut changed = String::with_capacity(text.len());
            let mut ldif = String::new();
            let mut next = chosen.iter().peekable();
            for (i, record) in text.split("\n\n").enumerate() {
                // The first records are the suffix and the three containers.
                let person = i.checked_sub(4);
                if person.is_some() && next.peek().map(|&&p| Some(p)) == Some(person) {
                    let p = *next.next().unwrap_or(&0);
                    changed.push_str(&record.replace("title: Engineer", "title: Architect"));
                    ldif.push_str(&format!(
                        "dn: {}\nchangetype: modify\nreplace: title\ntitle: Architect\n-\n\n",
                        idsync_sample::person_dn(p)
                    ));
                } else {
                    changed.push_str(record);
                }
                changed.push_str("\n\n");
            }
            std::fs::write(&source, changed)?;
            engine.run_step(Step::FullImport, "directory")?;
            engine.run_step(Step::DeltaSync, "directory")?;
            let t = Instant::now();
            let r = engine.run_step(Step::Export, "target")?;
            let secs = t.elapsed().as_secs_f64();
            if r.stats.exported as usize != chosen.len() {
                bail!(
                    "exported {} of {} changes: {:?}",
                    r.stats.exported,
                    chosen.len(),
                    r.errors.first()
                );
            }
            let changes_file = dir.path().join("changes.ldif");
            std::fs::write(&changes_file, ldif)?;
            let baseline = timed(reference.tool("ldapmodify").arg("-f").arg(&changes_file))?;
            Ok(json!({
                "suite": suite, "people": people, "changes": chosen.len(),
                "seconds": round(secs),
                "objects_per_second": (chosen.len() as f64 / secs).round(),
                "baseline": "ldapmodify -f changes.ldif (identical durable slapd)",
                "baseline_seconds": round(baseline), "ratio": round(secs / baseline),
                "peak_rss_mb": crate::bench::peak_rss_mb(),
            }))
        }
        other => bail!("unknown LDAP benchmark suite `{other}`"),
    }
}

/// The sample directory (`idsync-sample`'s LDIF) as a slapd seed: the containers first, and
/// plain `person` entries given the auxiliary `uidObject` class (their `uid` needs it in
/// OpenLDAP's schema) and without the photo only inetOrgPerson allows.
pub fn sample_seed(ldif: &Path, out: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(ldif).with_context(|| format!("cannot read {}", ldif.display()))?;
    let body = text.strip_prefix("version: 1\n").unwrap_or(&text);
    let mut seed = base_ldif(SUFFIX);
    for record in body.split("\n\n").filter(|r| !r.trim().is_empty()) {
        let plain = record.contains("objectClass: organizationalPerson\n")
            && !record.contains("objectClass: inetOrgPerson");
        if plain {
            for line in record.lines().filter(|l| !l.starts_with("jpegPhoto")) {
                seed.push_str(line);
                seed.push('\n');
                if line == "objectClass: organizationalPerson" {
                    seed.push_str("objectClass: uidObject\n");
                }
            }
        } else {
            seed.push_str(record);
            seed.push('\n');
        }
        seed.push('\n');
    }
    std::fs::write(out, seed).with_context(|| format!("cannot write {}", out.display()))
}

/// The sample configuration with its directory read from `slapd` instead of the LDIF file.
pub fn sample_config_over(text: &str, slapd: &Slapd) -> String {
    let start = text
        .find("[[connector]]\nname = \"directory\"")
        .unwrap_or(0);
    let end = text[start..]
        .find("[[connector.object_type]]")
        .map_or(text.len(), |e| start + e);
    format!(
        "{}[[connector]]\nname = \"directory\"\ntype = \"ldap\"\nrole = \"directory\"\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"file:ldap.pw\"\nbase_dns = [\"{SUFFIX}\"]\n\n{}",
        &text[..start],
        slapd.url(),
        slapd.root_dn(),
        &text[end..]
    )
}

/// Starts a throwaway slapd seeded with the sample directory in `dir` (its password in
/// `dir/ldap.pw`, which [`sample_config_over`] references). The server stops when the returned
/// value is dropped.
pub fn demo_server(dir: &Path, ldif: &Path) -> Result<Slapd> {
    let seed = dir.join("slapd-seed.ldif");
    sample_seed(ldif, &seed)?;
    let slapd = Slapd::start(SlapdOptions {
        seed_file: Some(seed),
        ..Default::default()
    })
    .context("cannot start a throwaway slapd (install Debian's `slapd` package)")?;
    crate::serve::write_private(&dir.join("ldap.pw"), ROOT_PASSWORD)?;
    Ok(slapd)
}

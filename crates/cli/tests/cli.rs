//! End-to-end: the real `idsync` binary through whole cycles, as an administrator runs it.

use assert_cmd::Command;
use serde_json::Value;
use std::path::Path;

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

fn demo(dir: &Path, people: usize) -> Value {
    json(
        idsync()
            .args(["demo", "--json", "--listen", "127.0.0.1:0"])
            .args(["--people", &people.to_string(), "--dir"])
            .arg(dir),
    )
}

/// The sample estate with its file-based configuration (a CSV profile table as the target), run
/// through one full cycle.
fn file_estate(dir: &Path, people: usize) -> Value {
    let mut o = idsync_sample::Options::demo();
    o.people = people;
    let g = idsync_sample::generate(dir, &o).unwrap();
    json(
        idsync()
            .arg("-c")
            .arg(&g.config)
            .args(["run", "full-cycle", "--json"]),
    )
}

fn total(report: &Value, step: &str, field: &str) -> u64 {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == step)
        .map(|s| s["stats"][field].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn demo_runs_one_full_cycle_into_the_profile_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let report = demo(&dir, 80);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for (path, want) in [
            (dir.clone(), 0o700),
            (dir.join("idsync.db"), 0o600),
            (dir.join("engine.token"), 0o600),
        ] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, want, "{} is {mode:o}", path.display());
        }
    }
    // 80 people and (issue 22 item 13) the 6 groups projected from the directory; the 12
    // devices are counted as filtered with their reason, never dropped silently.
    assert_eq!(total(&report, "full-sync", "projected"), 86);
    let filtered = &report["steps"][0]["stats"]["filtered"];
    assert_eq!(
        filtered["object class device not in scope"], 12,
        "{filtered}"
    );
    assert!(
        filtered
            .get("object class groupOfNames not in scope")
            .is_none(),
        "{filtered}"
    );
    assert_eq!(total(&report, "export", "exported"), 86);
    assert_eq!(total(&report, "full-import", "confirmed"), 86);
    assert_eq!(report["pending_exports_left"], 0);
    // HR rows with no person are counted, not projected.
    assert_eq!(total(&report, "full-sync", "disconnectors"), 5);
    // After it, `idsync serve` shows the demo people over the SCIM API.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = std::process::Command::new(assert_cmd::cargo::cargo_bin("idsync"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.join("profile-store.db"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let token = std::fs::read_to_string(dir.join("engine.token")).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let started = std::time::Instant::now();
    let users: Value = loop {
        match agent
            .get(&format!("http://127.0.0.1:{port}/scim/v2/Users?count=1"))
            .header("Authorization", format!("Bearer {}", token.trim()))
            .call()
        {
            Ok(mut r) if r.status() == 200 => break r.body_mut().read_json().unwrap(),
            _ if started.elapsed().as_secs() < 20 => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            other => panic!("idsync serve does not answer: {other:?}"),
        }
    };
    // The groups are under /Groups, with their members.
    let groups: Value = agent
        .get(&format!("http://127.0.0.1:{port}/scim/v2/Groups?count=100"))
        .header("Authorization", format!("Bearer {}", token.trim()))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(users["totalResults"], 80, "{users}");
    assert_eq!(groups["totalResults"], 6, "{groups}");
    let ldif = std::fs::read_to_string(dir.join("directory.ldif")).unwrap();
    let members: usize = groups["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["members"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        members,
        ldif.lines().filter(|l| l.starts_with("member:")).count(),
        "{groups}"
    );
    assert!(members > 0);
    // Issue 22 item 12: the metaverse holds what an LDAP inetOrgPerson target needs.
    let config = dir.join("idsync.toml");
    let people: Vec<Value> = dump_lines(&config, &[])
        .into_iter()
        .filter(|l| l["kind"] == "mv" && l["object_type"] == "person")
        .collect();
    assert_eq!(people.len(), 80);
    for p in &people {
        for a in ["cn", "sn"] {
            assert!(p["attributes"][a].is_array(), "{a}: {p}");
        }
    }
    // ...and listed.
    let listed = json(idsync().arg("-c").arg(dir.join("idsync.toml")).args([
        "show",
        "--connector",
        "hr",
        "--not-joined",
        "--json",
    ]));
    assert_eq!(listed.as_array().map(Vec::len), Some(5), "{listed}");
    assert!(listed[0]["mv_id"].is_null());
    // The human summary prints too.
    idsync()
        .args(["demo", "--listen", "127.0.0.1:0", "--people", "20", "--dir"])
        .arg(tmp.path().join("demo2"))
        .assert()
        .success()
        .stdout(predicates::str::contains("Metaverse: 26 objects."));
}

#[test]
fn staging_plans_and_delta_cycle_exports_a_directory_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    file_estate(&dir, 30);
    let config = dir.join("idsync.toml");
    std::fs::create_dir_all(dir.join("changes")).unwrap();
    std::fs::write(
        dir.join("changes/0001.ldif"),
        "version: 1\n\ndn: uid=u0000001,ou=People,dc=example,dc=test\nchangetype: modify\nreplace: mail\nmail: rosa@example.test\n-\n",
    )
    .unwrap();
    // Staging: import and sync, nothing sent.
    let staged =
        json(
            idsync()
                .arg("-c")
                .arg(&config)
                .args(["run", "delta-cycle", "--staging", "--json"]),
        );
    assert_eq!(total(&staged, "export", "exported"), 0);
    let plan = json(idsync().arg("-c").arg(&config).args(["plan", "--json"]));
    assert_eq!(plan["summary"]["update"], 1, "{plan}");
    let change = &plan["exports"][0]["changes"][0];
    assert_eq!(change["attribute"], "mail");
    assert_eq!(change["old"][0], "u0000001@example.test");
    assert_eq!(change["new"][0], "rosa@example.test");
    assert!(!std::fs::read_to_string(dir.join("profiles.csv"))
        .unwrap()
        .contains("rosa@example.test"));
    // The real delta cycle sends it, and the confirming import confirms it.
    let report = json(
        idsync()
            .arg("-c")
            .arg(&config)
            .args(["run", "delta-cycle", "--json"]),
    );
    assert_eq!(total(&report, "export", "exported"), 1);
    assert!(std::fs::read_to_string(dir.join("profiles.csv"))
        .unwrap()
        .contains("rosa@example.test"));
    let plan = json(idsync().arg("-c").arg(&config).args(["plan", "--json"]));
    assert_eq!(plan["summary"]["update"], 0);
    // History keeps every run with its statistics.
    let runs = json(
        idsync()
            .arg("-c")
            .arg(&config)
            .args(["history", "--json", "--limit", "200"]),
    );
    assert!(runs.as_array().unwrap().len() >= 15);
    // `show` gives each value's contributor.
    let shown = json(idsync().arg("-c").arg(&config).args([
        "show",
        "uid=u0000001,ou=People,dc=example,dc=test",
        "--connector",
        "directory",
        "--json",
    ]));
    let mv = shown["mv_id"].as_str().unwrap().to_owned();
    let mv_shown = json(
        idsync()
            .arg("-c")
            .arg(&config)
            .args(["show", &mv, "--json"]),
    );
    let mail = mv_shown["lineage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["attribute"] == "mail")
        .unwrap();
    assert_eq!(mail["connector"], "directory");
    assert_eq!(mail["values"][0], "rosa@example.test");
}

#[test]
fn a_config_error_names_file_and_line_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("idsync.toml");
    std::fs::write(
        &config,
        "[[connector]]\nname = \"d\"\ntype = \"ldif\"\nrole = \"directory\"\npath = \"x.ldif\"\n[[connector.object_type]]\nname = \"person\"\n\n[[import_flow]]\nconnector = \"d\"\nmv = \"x\"\nexpr = \"cs.a +\"\n",
    )
    .unwrap();
    let out = idsync()
        .arg("-c")
        .arg(&config)
        .args(["run", "full-cycle"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // The error points at the expression itself (line 12), not at its table.
    assert!(err.contains("idsync.toml:12:"), "{err}");
    // A misspelt connector setting is reported when the configuration loads, at its connector.
    std::fs::write(
        &config,
        "[[connector]]\nname = \"d\"\ntype = \"ldif\"\nrole = \"directory\"\npath = \"x.ldif\"\ndelta_pth = \"changes\"\n[[connector.object_type]]\nname = \"person\"\n",
    )
    .unwrap();
    let out = idsync()
        .arg("-c")
        .arg(&config)
        .args(["plan"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // Issue 22 item 6: at the misspelt key's own line, not at `[[connector]]`.
    assert!(
        err.contains("idsync.toml:6:") && err.contains("delta_pth"),
        "{err}"
    );
    // A value of the wrong kind inside a connector's sub-table: at the value's line.
    std::fs::write(
        &config,
        "[[connector]]\nname = \"d\"\ntype = \"ldif\"\nrole = \"directory\"\npath = \"x.ldif\"\n\n[connector.attribute_types]\nmail = \"text\"\njpegPhoto = \"picture\"\n\n[[connector.object_type]]\nname = \"person\"\n",
    )
    .unwrap();
    let out = idsync()
        .arg("-c")
        .arg(&config)
        .args(["plan"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("idsync.toml:9:") && err.contains("picture"),
        "{err}"
    );
    let out = idsync()
        .arg("-c")
        .arg(&config)
        .args(["run", "bogus-step"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

fn run_cycle(config: &Path, args: &[&str]) -> std::process::Output {
    idsync()
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("idsync runs")
}

fn rows(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("profiles.csv"))
        .unwrap()
        .lines()
        .count()
}

#[test]
fn delete_threshold_stops_a_mass_export_delete_until_released() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    file_estate(&dir, 16);
    let config = dir.join("idsync.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[safety]\nmax_deletes = 3\n")).unwrap();
    std::fs::create_dir_all(dir.join("changes")).unwrap();
    let deletes: String = (2..7)
        .map(|i| format!("dn: uid=u{i:07},ou=People,dc=example,dc=test\nchangetype: delete\n\n"))
        .collect();
    std::fs::write(
        dir.join("changes/0001.ldif"),
        format!("version: 1\n\n{deletes}"),
    )
    .unwrap();
    let before = std::fs::read(dir.join("profiles.csv")).unwrap();
    let out = run_cycle(&config, &["run", "delta-cycle"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("export of `profiles` would delete or disable 5 of 16 objects")
            && err.contains("u0000002")
            && err.contains("--allow-deletes 5"),
        "{err}"
    );
    // Nothing was sent.
    assert_eq!(std::fs::read(dir.join("profiles.csv")).unwrap(), before);
    let plan = json(idsync().arg("-c").arg(&config).args(["plan", "--json"]));
    assert_eq!(plan["summary"]["delete"], 5, "{plan}");
    // A release for fewer is not enough; for 5 it goes through.
    let out = run_cycle(&config, &["run", "delta-cycle", "--allow-deletes", "4"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(dir.join("profiles.csv")).unwrap(), before);
    let out = run_cycle(&config, &["run", "delta-cycle", "--allow-deletes", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&dir), 1 + 16 - 5);
}

#[test]
fn a_full_import_that_finds_the_space_gone_stops_until_released() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    file_estate(&dir, 16);
    let config = dir.join("idsync.toml");
    let ldif = dir.join("directory.ldif");
    let full = std::fs::read(&ldif).unwrap();
    // The directory export came back empty (a wrong base DN, a failed dump).
    std::fs::write(&ldif, "version: 1\n").unwrap();
    let out = run_cycle(&config, &["run", "full-cycle"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("full import of `directory` would delete or disable 16 of 16 objects"),
        "{err}"
    );
    // Nothing was stored: with the file back, a full cycle finds nothing to do.
    assert_eq!(rows(&dir), 17);
    std::fs::write(&ldif, &full).unwrap();
    let report = json(
        idsync()
            .arg("-c")
            .arg(&config)
            .args(["run", "full-cycle", "--json"]),
    );
    assert_eq!(total(&report, "full-import", "deleted"), 0);
    assert_eq!(total(&report, "export", "exported"), 0);
    // Released, the import and then the export of the deletes go through.
    std::fs::write(&ldif, "version: 1\n").unwrap();
    let out = run_cycle(&config, &["run", "full-cycle", "--allow-deletes", "16"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&dir), 1);
}

#[test]
fn invalid_utf8_in_a_text_value_stops_the_import_at_its_line_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    file_estate(&dir, 16);
    let config = dir.join("idsync.toml");
    let ldif = dir.join("directory.ldif");
    let full = std::fs::read(&ldif).unwrap();
    // The cn of one person is broken: bytes that are not UTF-8, in an attribute that is text.
    let text = String::from_utf8(full.clone()).unwrap();
    let (number, _) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("cn: "))
        .expect("a cn line");
    let mut broken = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if i == number {
            broken.extend_from_slice(b"cn: \xff\xfe broken");
        } else {
            broken.extend_from_slice(l.as_bytes());
        }
        broken.push(b'\n');
    }
    std::fs::write(&ldif, &broken).unwrap();
    let out = run_cycle(&config, &["run", "full-import", "--connector", "directory"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:{}: invalid UTF-8 in value of attribute 'cn'",
        ldif.display(),
        number + 1
    );
    assert!(err.contains(&expected), "{err}");
    // Nothing was stored: with the file back, a full cycle finds nothing to do.
    std::fs::write(&ldif, &full).unwrap();
    let report = json(
        idsync()
            .arg("-c")
            .arg(&config)
            .args(["run", "full-cycle", "--json"]),
    );
    for field in ["added", "updated", "deleted"] {
        assert_eq!(total(&report, "full-import", field), 0, "{field}: {report}");
    }
    assert_eq!(total(&report, "export", "exported"), 0, "{report}");
}

/// Waits until the store's lock file names `pid` (the first run holds the store).
fn wait_for_holder(lock: &Path, pid: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if std::fs::read_to_string(lock).is_ok_and(|t| t.contains(&format!("pid {pid} "))) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the first run never took the store lock");
}

#[test]
fn two_runs_on_one_store_never_overlap_and_a_killed_run_leaves_no_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    file_estate(&dir, 10);
    let config = dir.join("idsync.toml");
    let lock = dir.join("idsync.db.lock");
    let bin = assert_cmd::cargo::cargo_bin("idsync");
    // The first run stalls 3 s inside its first sync, holding the store.
    let mut first = std::process::Command::new(&bin)
        .arg("-c")
        .arg(&config)
        .args(["run", "full-cycle"])
        .env("IDSYNC_CRASH_AT", "full-sync:directory:begin:1:sleep-3000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_holder(&lock, first.id());
    // A second run says who holds the store and runs nothing.
    let out = run_cycle(&config, &["run", "export", "--connector", "profiles"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another idsync run")
            && err.contains(&format!("pid {}", first.id()))
            && err.contains("run full-cycle"),
        "{err}"
    );
    // With --wait it runs once the first has finished.
    let out = run_cycle(&config, &["run", "full-cycle", "--wait", "60"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(first.wait().unwrap().success());
    // A run killed (SIGKILL) while it holds the store leaves it free.
    let mut killed = std::process::Command::new(&bin)
        .arg("-c")
        .arg(&config)
        .args(["run", "full-cycle"])
        .env("IDSYNC_CRASH_AT", "full-sync:directory:begin:1:sleep-30000")
        .spawn()
        .unwrap();
    wait_for_holder(&lock, killed.id());
    // Killed inside its first sync (stalled there), with that step recorded as running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let runs = json(
            idsync()
                .arg("-c")
                .arg(&config)
                .args(["history", "--json", "--limit", "5"]),
        );
        if runs[0]["status"] == "running" && runs[0]["step"] == "full-sync" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached the sync"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    let out = run_cycle(&config, &["run", "full-cycle"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The killed run's step is recorded as interrupted, not left running.
    assert!(
        err.contains("1 step(s) of an earlier run were interrupted"),
        "{err}"
    );
    let runs = json(
        idsync()
            .arg("-c")
            .arg(&config)
            .args(["history", "--json", "--limit", "500"]),
    );
    let runs = runs.as_array().unwrap();
    assert!(runs.iter().all(|r| r["status"] != "running"));
    assert_eq!(
        runs.iter()
            .filter(|r| r["status"] == "interrupted" && r["step"] == "full-sync")
            .count(),
        1
    );
}

#[test]
fn a_damaged_store_is_refused_at_start_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    file_estate(&dir, 60);
    let config = dir.join("idsync.toml");
    let db = dir.join("idsync.db");
    let good = std::fs::read(&db).unwrap();
    for (how, bytes) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("overwritten", {
            let mut b = good.clone();
            // Four pages' worth (16 KB pages), so whole pages are overwritten whatever lies
            // in the middle of the file: half of an empty table's root page alone is unused
            // space, which no check can tell from damage.
            let mid = b.len() / 2;
            for (i, x) in b[mid..mid + 65536].iter_mut().enumerate() {
                *x = (i * 31 % 251) as u8;
            }
            b
        }),
    ] {
        std::fs::write(&db, &bytes).unwrap();
        let out = run_cycle(&config, &["run", "delta-cycle"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{how}: {err}");
        assert!(
            err.contains("idsync.db") && !err.contains("panicked"),
            "{how}: {err}"
        );
        // Not repaired silently either.
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "{how}");
    }
}

#[test]
fn every_export_sent_is_audited_with_its_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    file_estate(&dir, 6);
    let config = dir.join("idsync.toml");
    let runs = json(
        idsync()
            .arg("-c")
            .arg(&config)
            .args(["history", "--json", "--limit", "100"]),
    );
    let export_run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["step"] == "export")
        .expect("the demo exported")["id"]
        .as_i64()
        .unwrap();
    let audit = json(idsync().arg("-c").arg(&config).args([
        "history",
        "--run",
        &export_run.to_string(),
        "--exports",
        "--json",
    ]));
    let rows = audit.as_array().unwrap();
    assert_eq!(rows.len(), 6, "{audit}");
    for r in rows {
        assert_eq!(r["run"], export_run);
        assert_eq!(r["connector"], "profiles");
        assert_eq!(r["op"], "add");
        assert_eq!(r["result"], "applied");
        assert!(r["at"].as_i64().unwrap() > 0);
        let rules = r["rules"].to_string();
        assert!(rules.contains("provision person profiles"), "{rules}");
        assert!(rules.contains("export flow account"), "{rules}");
        assert!(r["changes"]["account"].is_array(), "{r}");
    }
    // Issue 22 item 8: the text prints times as RFC 3339 (UTC, or the local zone by flag);
    // JSON (above) keeps seconds since the epoch.
    let text = |extra: &[&str]| {
        let out = idsync()
            .arg("-c")
            .arg(&config)
            .args(["history", "--run", &export_run.to_string(), "--exports"])
            .args(extra)
            .env("TZ", "Europe/Paris")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let rfc3339 = |t: &str, zone: &str| {
        t.len() == 19 + zone.len()
            && t.as_bytes()[4] == b'-'
            && t.as_bytes()[10] == b'T'
            && t.ends_with(zone)
    };
    let utc = text(&[]);
    let first = utc.lines().next().unwrap();
    let at = first.split(' ').next().unwrap();
    assert!(rfc3339(at, "Z"), "{first}");
    let local = text(&["--local-time"]);
    let first = local.lines().next().unwrap();
    let at = first.split(' ').next().unwrap();
    assert!(rfc3339(at, "+01:00"), "{first}");
    // --exports needs a run.
    idsync()
        .arg("-c")
        .arg(&config)
        .args(["history", "--exports"])
        .assert()
        .code(2);
}

#[test]
fn a_staging_cycle_sends_nothing_and_the_plan_shows_it_per_target() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("estate");
    let mut o = idsync_sample::Options::demo();
    o.people = 12;
    let g = idsync_sample::generate(&dir, &o).unwrap();
    let before: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let report =
        json(
            idsync()
                .arg("-c")
                .arg(&g.config)
                .args(["run", "full-cycle", "--staging", "--json"]),
        );
    assert_eq!(total(&report, "full-sync", "provisioned"), 12);
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["step"] != "export" || s["stats"]["exported"] == 0),
        "{report}"
    );
    // No target file was created; only the store appeared.
    assert!(!dir.join("profiles.csv").exists());
    let after: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().starts_with("idsync.db"))
        .collect();
    assert_eq!(after.len(), before.len(), "{after:?}");
    let plan = json(idsync().arg("-c").arg(&g.config).args(["plan", "--json"]));
    assert_eq!(plan["targets"]["profiles"]["add"], 12, "{plan}");
    assert_eq!(plan["summary"]["add"], 12, "{plan}");
    let out = idsync()
        .arg("-c")
        .arg(&g.config)
        .arg("plan")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("profiles: 12 to add, 0 to update (0 renamed), 0 to delete."),
        "{text}"
    );
}

#[test]
fn demo_against_a_throwaway_slapd() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo-ldap");
    let report = json(
        idsync()
            .args(["demo", "--ldap", "--json", "--listen", "127.0.0.1:0"])
            .args(["--people", "40", "--dir"])
            .arg(&dir),
    );
    // The 40 people and the 6 groups.
    assert_eq!(total(&report, "full-sync", "projected"), 46);
    let filtered = &report["steps"][0]["stats"]["filtered"];
    assert_eq!(
        filtered["object class device not in scope"], 12,
        "{filtered}"
    );
    assert_eq!(report["pending_exports_left"], 0);
    let config = std::fs::read_to_string(dir.join("idsync.toml")).unwrap();
    assert!(config.contains("type = \"ldap\""), "{config}");
    assert!(
        !config.contains(idsync_testbed_password()),
        "no secret inline"
    );
}

fn idsync_testbed_password() -> &'static str {
    "idsync-test-secret"
}

/// Issue 22 item 7: `idsync history | head` (a reader that closes the pipe) ends the command
/// quietly, for every command that prints: no panic, no backtrace, nothing on stderr.
#[test]
fn a_closed_stdout_ends_each_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    file_estate(&dir, 6);
    let config = dir.join("idsync.toml");
    let commands: &[&[&str]] = &[
        &["history"],
        &["history", "--json"],
        &["history", "--run", "1"],
        &["history", "--run", "3", "--exports"],
        &["show", "1"],
        &["plan"],
        &["dump"],
        &["run", "delta-cycle"],
    ];
    for args in commands {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("idsync"))
            .arg("-c")
            .arg(&config)
            .args(*args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command prints anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    }
}

#[test]
fn a_token_for_a_user_the_profile_store_does_not_have_is_refused_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    demo(&dir, 8);
    let db = dir.join("profile-store.db");
    let create = |args: &[&str]| {
        idsync()
            .args(["token", "create", "--db"])
            .arg(&db)
            .args(args)
            .output()
            .unwrap()
    };
    let out = create(&["--user", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no user `nobody`") && err.contains("--force"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no token printed");
    let listed = json(idsync().args(["--json", "token", "list", "--db"]).arg(&db));
    assert!(!listed.to_string().contains("user:nobody"), "{listed}");
    // A user the store has, and one not provisioned yet when asked with --force.
    for args in [
        &["--user", "u0000001"][..],
        &["--user", "nobody", "--force"],
    ] {
        let out = create(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[cfg(unix)]
#[test]
fn token_create_out_writes_the_token_owner_only_and_prints_nothing_of_it() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("profile-store.db");
    let fresh = tmp.path().join("engine.token");
    let existing = tmp.path().join("old.token");
    std::fs::write(&existing, "an old token, longer than the new one is\n").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (file, json) in [(&fresh, false), (&existing, true)] {
        let mut cmd = std::process::Command::new("sh");
        // A umask that would leave the file readable by everyone.
        cmd.arg("-c")
            .arg("umask 022; exec \"$@\"")
            .arg("sh")
            .arg(assert_cmd::cargo::cargo_bin("idsync"));
        if json {
            cmd.arg("--json");
        }
        let out = cmd
            .args(["token", "create", "--engine", "--db"])
            .arg(&db)
            .arg("--out")
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", file.display());
        let written = std::fs::read_to_string(file).unwrap();
        let token = written.strip_suffix('\n').expect("one line");
        assert!(!token.is_empty() && !token.contains('\n'), "{written:?}");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!printed.contains(token), "the token is printed: {printed}");
    }
    let listed = json(idsync().args(["--json", "token", "list", "--db"]).arg(&db));
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

fn dump_lines(config: &Path, extra: &[&str]) -> Vec<Value> {
    let out = idsync()
        .arg("-c")
        .arg(config)
        .arg("dump")
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Issue 22 item 9: `dump` keeps attribute names as configured, includes object classes and
/// what is pending (not just that something is), and with `--binary` binary values in full
/// (base64), so two stores can be compared byte for byte from the CLI.
#[test]
fn dump_keeps_names_classes_pending_changes_and_binary_values() {
    use base64::Engine as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    file_estate(&dir, 6);
    let config = dir.join("idsync.toml");
    let ldif = dir.join("directory.ldif");
    let text = std::fs::read_to_string(&ldif).unwrap();
    std::fs::write(&ldif, text.replacen("title: ", "title: Chief ", 1)).unwrap();
    let out = run_cycle(&config, &["run", "full-import", "--connector", "directory"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = dump_lines(&config, &[]);
    let people: Vec<&Value> = lines
        .iter()
        .filter(|l| l["kind"] == "cs" && l["connector"] == "directory")
        .collect();
    assert!(!people.is_empty());
    for p in &people {
        assert!(p["hologram"]["givenName"].is_array(), "{p}");
        assert!(p["hologram"].get("givenname").is_none(), "{p}");
        let classes = p["object_classes"].to_string();
        assert!(classes.contains("\"inetOrgPerson\""), "{p}");
    }
    let pending: Vec<&&Value> = people
        .iter()
        .filter(|p| !p["pending_import"].is_null())
        .collect();
    assert_eq!(pending.len(), 1, "{people:?}");
    let change = pending[0]["pending_import"].to_string();
    assert!(
        change.contains("update") && change.contains("Chief"),
        "{change}"
    );
    // Binary values: as size and hash by default, in full with --binary.
    let shown = |lines: &[Value]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["kind"] == "cs" && l["connector"] == "directory")
            .filter_map(|l| l["hologram"]["jpegPhoto"][0].as_str().map(str::to_owned))
            .collect()
    };
    let hashed = shown(&lines);
    let full = shown(&dump_lines(&config, &["--binary"]));
    assert!(!hashed.is_empty() && hashed.len() == full.len());
    for (h, f) in hashed.iter().zip(&full) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(f.strip_prefix("base64:").expect(f))
            .unwrap();
        let hex = blake3::hash(&bytes).to_hex();
        assert_eq!(
            *h,
            format!("<{} bytes, blake3 {}>", bytes.len(), &hex[..16]),
            "{f}"
        );
    }
}

/// Issue 22 item 11: plain LDIF without `entryUUID` (an `ldapsearch` export, a hand-written
/// file) is read with a stable attribute as the anchor (`anchor = "uid"`, as the README says);
/// an entry out of scope is counted by its object class, not as missing its anchor.
#[test]
fn plain_ldif_without_entry_uuid_imports_with_an_attribute_anchor() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("people.ldif"),
        "dn: uid=ann,ou=People,dc=example,dc=test\nobjectClass: inetOrgPerson\nuid: ann\ncn: Ann\nsn: Lee\n\n\
         dn: uid=bob,ou=People,dc=example,dc=test\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob\nsn: Ray\n\n\
         dn: cn=printer,ou=Devices,dc=example,dc=test\nobjectClass: device\ncn: printer\n\n",
    )
    .unwrap();
    let config = tmp.path().join("idsync.toml");
    let write = |anchor: &str| {
        std::fs::write(
            &config,
            format!("[[connector]]\nname = \"d\"\ntype = \"ldif\"\nrole = \"directory\"\npath = \"people.ldif\"\n{anchor}\n[[connector.object_type]]\nname = \"person\"\nobject_classes = [\"inetOrgPerson\"]\n"),
        )
        .unwrap();
    };
    let import = || {
        json(idsync().arg("-c").arg(&config).args([
            "run",
            "full-import",
            "--connector",
            "d",
            "--json",
        ]))
    };
    // The default anchor (entryUUID) is missing from every person; the device is a device.
    write("");
    let r = import();
    let filtered = &r["stats"]["filtered"];
    assert_eq!(filtered["missing anchor"], 2, "{r}");
    assert_eq!(filtered["object class device not in scope"], 1, "{r}");
    // With `uid` as the anchor, both people are taken.
    std::fs::remove_file(tmp.path().join("idsync.db")).ok();
    write("anchor = \"uid\"");
    let r = import();
    assert_eq!(r["stats"]["added"], 2, "{r}");
    let filtered = &r["stats"]["filtered"];
    assert!(filtered.get("missing anchor").is_none(), "{r}");
    assert_eq!(filtered["object class device not in scope"], 1, "{r}");
}

fn show(config: &Path, id: &str, json: bool) -> std::process::Output {
    let mut c = idsync();
    c.arg("-c").arg(config).args(["show", id]);
    if json {
        c.arg("--json");
    }
    c.output().unwrap()
}

fn stdout_of(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Issue 22 item 10: `show` on an object an import read and did not take says why (by any
/// spelling of its DN), delta imports keep that up to date, and once the configuration brings
/// it into scope a full import takes it and `show` shows it as any other object.
#[test]
fn show_says_why_an_object_was_not_taken_until_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let ann = "dn: uid=ann,ou=People,dc=example,dc=test\nobjectClass: inetOrgPerson\nentryUUID: 00000000-0000-4000-8000-000000000001\nuid: ann\ncn: Ann\nsn: Lee\n\n";
    let admins = "dn: cn=Admins,ou=Groups,dc=example,dc=test\nobjectClass: groupOfNames\nentryUUID: 00000000-0000-4000-8000-000000000002\ncn: Admins\nmember: uid=ann,ou=People,dc=example,dc=test\n\n";
    let bob = "dn: uid=bob,ou=People,dc=example,dc=test\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob\nsn: Ray\n\n";
    let printer = "dn: cn=printer,ou=Devices,dc=example,dc=test\nobjectClass: device\nentryUUID: 00000000-0000-4000-8000-000000000003\ncn: printer\n\n";
    let content = tmp.path().join("people.ldif");
    std::fs::write(&content, format!("{ann}{admins}{bob}")).unwrap();
    std::fs::create_dir(tmp.path().join("changes")).unwrap();
    let config = tmp.path().join("idsync.toml");
    let write = |types: &str| {
        std::fs::write(
            &config,
            format!("[[connector]]\nname = \"d\"\ntype = \"ldif\"\nrole = \"directory\"\npath = \"people.ldif\"\ndelta_path = \"changes\"\n{types}"),
        )
        .unwrap();
    };
    let person =
        "[[connector.object_type]]\nname = \"person\"\nobject_classes = [\"inetOrgPerson\"]\n";
    let step = |what: &str| {
        json(
            idsync()
                .arg("-c")
                .arg(&config)
                .args(["run", what, "--connector", "d", "--json"]),
        )
    };
    write(person);
    let r = step("full-import");
    assert_eq!(r["stats"]["added"], 1, "{r}");
    // The group out of scope, found by another spelling of its DN.
    let out = stdout_of(show(
        &config,
        "CN=admins, ou=groups,DC=Example,dc=test",
        false,
    ));
    assert!(
        out.contains("not taken by connector d in run 1 (")
            && out.contains("): object class groupOfNames not in scope")
            && out.contains("cn=Admins,ou=Groups,dc=example,dc=test"),
        "{out}"
    );
    let shown: Value = serde_json::from_str(&stdout_of(show(
        &config,
        "00000000-0000-4000-8000-000000000002",
        true,
    )))
    .unwrap();
    assert_eq!(
        shown[0]["not_taken"]["reason"], "object class groupOfNames not in scope",
        "{shown}"
    );
    assert_eq!(shown[0]["not_taken"]["run"], 1, "{shown}");
    // The entry without its anchor.
    let out = stdout_of(show(&config, "uid=bob,ou=People,dc=example,dc=test", false));
    assert!(
        out.contains("not taken by connector d in run 1 (") && out.contains("): missing anchor"),
        "{out}"
    );
    // A taken object is shown as before.
    let out = stdout_of(show(&config, "uid=ann,ou=People,dc=example,dc=test", false));
    assert!(
        out.contains("uid: ann") && !out.contains("not taken"),
        "{out}"
    );

    // A delta import: a device added, the entry without anchor deleted, the group changed.
    std::fs::write(
        tmp.path().join("changes/0001.ldif"),
        "dn: cn=printer,ou=Devices,dc=example,dc=test\nchangetype: add\nobjectClass: device\nentryUUID: 00000000-0000-4000-8000-000000000003\ncn: printer\n\n\
         dn: uid=bob,ou=People,dc=example,dc=test\nchangetype: delete\n\n\
         dn: cn=Admins,ou=Groups,dc=example,dc=test\nchangetype: modify\nadd: description\ndescription: the admins\n-\n\n"
    )
    .unwrap();
    let r = step("delta-import");
    assert_eq!(r["stats"]["object_errors"], 0, "{r}");
    assert_eq!(
        r["stats"]["filtered"]["object class device not in scope"], 1,
        "{r}"
    );
    let out = stdout_of(show(
        &config,
        "cn=printer,ou=Devices,dc=example,dc=test",
        false,
    ));
    assert!(
        out.contains("not taken by connector d in run 2 (")
            && out.contains("): object class device not in scope"),
        "{out}"
    );
    let out = stdout_of(show(
        &config,
        "cn=admins,ou=groups,dc=example,dc=test",
        false,
    ));
    assert!(out.contains("in run 2 ("), "{out}");
    let gone = show(&config, "uid=bob,ou=People,dc=example,dc=test", false);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("no metaverse object, anchor or DN"),
        "{gone:?}"
    );

    // Groups come into scope: the next full import takes the group, and `show` shows it.
    std::fs::write(&content, format!("{ann}{admins}{printer}")).unwrap();
    write(&format!(
        "{person}[[connector.object_type]]\nname = \"group\"\nobject_classes = [\"groupOfNames\"]\n"
    ));
    let r = step("full-import");
    assert_eq!(r["stats"]["added"], 1, "{r}");
    let out = stdout_of(show(
        &config,
        "cn=admins,ou=groups,dc=example,dc=test",
        false,
    ));
    assert!(
        out.contains("d cn=Admins,ou=Groups,dc=example,dc=test (anchor 00000000-0000-4000-8000-000000000002)")
            && out.contains("cn: Admins")
            && !out.contains("not taken"),
        "{out}"
    );
    // What is still left out says so, as of this import.
    let out = stdout_of(show(
        &config,
        "cn=printer,ou=devices,dc=example,dc=test",
        false,
    ));
    assert!(
        out.contains("not taken by connector d in run 3 (")
            && out.contains("): object class device not in scope"),
        "{out}"
    );
}

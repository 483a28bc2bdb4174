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
            .args(["demo", "--json", "--people", &people.to_string(), "--dir"])
            .arg(dir),
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
fn demo_runs_one_full_cycle_into_the_profile_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let report = demo(&dir, 80);
    // 80 people projected from the directory; the 12 devices and 6 groups are counted as
    // filtered with their reason, never dropped silently.
    assert_eq!(total(&report, "full-sync", "projected"), 80);
    let filtered = &report["steps"][0]["stats"]["filtered"];
    assert_eq!(
        filtered["object class device not in scope"], 12,
        "{filtered}"
    );
    assert_eq!(
        filtered["object class groupOfNames not in scope"], 6,
        "{filtered}"
    );
    assert_eq!(total(&report, "export", "exported"), 80);
    assert_eq!(total(&report, "full-import", "confirmed"), 80);
    assert_eq!(report["pending_exports_left"], 0);
    // HR rows with no person are counted, not projected.
    assert_eq!(total(&report, "full-sync", "disconnectors"), 5);
    let profiles = std::fs::read_to_string(dir.join("profiles.csv")).unwrap();
    assert_eq!(
        profiles.lines().count(),
        81,
        "header and one row per person"
    );
    // The human summary prints too.
    idsync()
        .args(["demo", "--people", "20", "--dir"])
        .arg(tmp.path().join("demo2"))
        .assert()
        .success()
        .stdout(predicates::str::contains("Metaverse: 20 objects."));
}

#[test]
fn staging_plans_and_delta_cycle_exports_a_directory_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    demo(&dir, 30);
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
    assert!(
        err.contains("idsync.toml:1:") && err.contains("delta_pth"),
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

#[test]
fn demo_against_a_throwaway_slapd() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo-ldap");
    let report = json(
        idsync()
            .args(["demo", "--ldap", "--json", "--people", "40", "--dir"])
            .arg(&dir),
    );
    assert_eq!(total(&report, "full-sync", "projected"), 40);
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

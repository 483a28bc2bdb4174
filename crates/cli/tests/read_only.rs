//! Commands that only read the store (`dump`, `show`, `history`, `plan`) connect to nothing, so
//! they need no connector's secret: an administrator reads the store where the secrets are not.

mod support;
use support::*;

const VAR: &str = "IDSYNC_TEST_READ_ONLY_TOKEN";

#[test]
fn dump_show_history_and_plan_run_without_the_connectors_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut o = idsync_sample::Options::demo();
    o.people = 20;
    let g = idsync_sample::generate(dir, &o).unwrap();
    let db = dir.join("profiles.db");
    let engine_token = token(&db, &["--engine"]);
    let port = free_port();
    let _server = serve(&db, port);
    let config = idsync_sample::profile_store_config_text(
        &format!("http://127.0.0.1:{port}"),
        &format!("env:{VAR}"),
    );
    std::fs::write(&g.config, &config).unwrap();
    let report: serde_json::Value = serde_json::from_str(&run_ok(
        idsync()
            .env(VAR, &engine_token)
            .args(["--json", "run", "full-cycle", "-c"])
            .arg(&g.config),
    ))
    .unwrap();
    assert!(errors(&report).is_empty(), "{:#?}", errors(&report));

    let read = |args: &[&str]| run_ok(idsync().env_remove(VAR).args(args).arg("-c").arg(&g.config));
    let dump = read(&["dump"]);
    assert!(dump.contains("u0000001"), "{dump}");
    let history = read(&["--json", "history"]);
    assert!(
        history.contains("full-cycle") || history.contains("export"),
        "{history}"
    );
    read(&["show", "--connector", "profiles", "--not-joined"]);
    let plan: serde_json::Value = serde_json::from_str(&read(&["--json", "plan"])).unwrap();
    assert_eq!(plan["exports"].as_array().map(Vec::len), Some(0), "{plan}");

    // A command that connects still needs the secret, and says which one is missing.
    let out = idsync()
        .env_remove(VAR)
        .args(["run", "full-cycle", "-c"])
        .arg(&g.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(VAR), "{stderr}");
}

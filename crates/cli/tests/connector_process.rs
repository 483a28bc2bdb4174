//! Issue 21: connectors in any language (`type = "process"`), through the real binary.
//!
//! - The Python example (`examples/connectors/hr-python/`) against its HR service: a full
//!   cycle and a delta cycle into the profile store (`idsync serve`), with idsync's `mail`
//!   exported back to HR and confirmed, the HR service read in pages, never once per person.
//! - Each way a connector program misbehaves (`crates/connector-process/tests/programs/
//!   failing.py`) fails its step with the right message and the program's last standard-error
//!   lines; `idsync dump` is the same before and after, and no process of it is left.

mod support;

use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::{free_port, idsync, run_ok, serve, token, Api};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn programs() -> PathBuf {
    repo().join("crates/connector-process/tests/programs")
}

struct Hr {
    child: Child,
    port: u16,
    token: String,
}

impl Drop for Hr {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hr {
    fn start(dir: &Path, employees: &Json) -> Hr {
        let token = "hr-token-for-tests".to_owned();
        std::fs::write(dir.join("hr.token"), format!("{token}\n")).unwrap();
        std::fs::write(
            dir.join("hr.json"),
            serde_json::json!({ "employees": employees }).to_string(),
        )
        .unwrap();
        let port = free_port();
        let child = std::process::Command::new("python3")
            .arg(repo().join("examples/connectors/hr-python/hr_service.py"))
            .args(["--port", &port.to_string(), "--data"])
            .arg(dir.join("hr.json"))
            .arg("--token-file")
            .arg(dir.join("hr.token"))
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the HR service");
        let hr = Hr { child, port, token };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the HR service did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        hr
    }

    fn call(&self, method: &str, path: &str, body: Option<Json>) -> Json {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let auth = format!("Bearer {}", self.token);
        let mut r = match (method, body) {
            ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
            ("POST", Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
            ("PATCH", Some(b)) => agent
                .patch(&url)
                .header("Authorization", &auth)
                .send_json(b),
            other => panic!("{other:?}"),
        }
        .unwrap();
        assert!(r.status().is_success(), "{method} {path}: {}", r.status());
        r.body_mut().read_json().unwrap()
    }
}

fn cycle(config: &Path, kind: &str) -> Json {
    let out = run_ok(idsync().args(["--json", "run", kind, "-c"]).arg(config));
    serde_json::from_str(&out).expect("a JSON report")
}

/// The example HR connector's command: `python` or `node`.
fn hr_command(lang: &str) -> String {
    match lang {
        "python" => format!(
            "\"python3\", \"{}\"",
            repo()
                .join("examples/connectors/hr-python/hr_connector.py")
                .display()
        ),
        "node" => format!(
            "\"node\", \"{}\"",
            repo()
                .join("examples/connectors/hr-node/hr_connector.mjs")
                .display()
        ),
        other => panic!("{other}"),
    }
}

fn hr_config(lang: &str, hr_port: u16, profiles_port: u16) -> String {
    let command = hr_command(lang);
    format!(
        r#"[store]
path = "idsync.db"

[[connector]]
name = "hr"
type = "process"
role = "directory"
command = [{command}]
api_token = "file:hr.token"
timeout = 30

[connector.settings]
base_url = "http://127.0.0.1:{hr_port}"
page_size = 3

[[connector.object_type]]
name = "person"
object_classes = ["person"]

[[connector]]
name = "profiles"
type = "profile-store"
role = "target"
url = "http://127.0.0.1:{profiles_port}"
token = "file:engine.token"

[[connector.object_type]]
name = "person"
object_classes = ["User"]

[[import_flow]]
connector = "hr"
mv = "uid"
cs = "account"

[[import_flow]]
connector = "hr"
mv = "displayName"
cs = "displayName"

[[import_flow]]
connector = "hr"
mv = "title"
cs = "title"

[[provision]]
connector = "profiles"
mv_type = "person"
object_type = "person"
dn = "{{uid}}"

[[export_flow]]
connector = "profiles"
cs = "displayName"
mv = "displayName"

[[export_flow]]
connector = "profiles"
cs = "title"
mv = "title"

[[export_flow]]
connector = "profiles"
cs = "mail"
expr = "mv.uid + '@example.test'"

# idsync gives every employee a mail address, written back to HR.
[[export_flow]]
connector = "hr"
cs = "mail"
expr = "mv.uid + '@example.test'"
"#
    )
}

fn step<'a>(report: &'a Json, connector: &str, kind: &str) -> Vec<&'a Json> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["connector"] == connector && s["step"].as_str().is_some_and(|k| k.contains(kind))
        })
        .collect()
}

#[test]
fn the_python_hr_connector_runs_full_and_delta_cycles_into_the_profile_store() {
    hr_cycles("python");
}

/// Issue 21 item 5: the same contract in a second language.
#[test]
fn the_node_hr_connector_runs_full_and_delta_cycles_into_the_profile_store() {
    hr_cycles("node");
}

fn hr_cycles(lang: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let employees: serde_json::Map<String, Json> = (1..=7)
        .map(|i| {
            (
                format!("E{}", 1000 + i),
                serde_json::json!({
                    "account": format!("user{i}"),
                    "displayName": format!("User {i}"),
                    "title": "Clerk",
                    "hired": "2020-01-01T00:00:00Z",
                }),
            )
        })
        .collect();
    let hr = Hr::start(dir, &Json::Object(employees));
    let db = dir.join("profiles.db");
    let engine_token = token(&db, &["--engine"]);
    std::fs::write(dir.join("engine.token"), format!("{engine_token}\n")).unwrap();
    let port = free_port();
    let _server = serve(&db, port);
    let api = Api::new(port);
    let config = dir.join("idsync.toml");
    std::fs::write(&config, hr_config(lang, hr.port, port)).unwrap();

    // 1. A full cycle: seven people from HR become profiles, and HR gets their mail.
    let first = cycle(&config, "full-cycle");
    assert_eq!(first["pending_exports_left"], 0, "{first:#}");
    let stats = hr.call("GET", "/stats", None);
    let pages = stats["GET /employees"].as_u64().unwrap();
    assert!(
        pages > 0 && pages.is_multiple_of(3),
        "full imports read 3 pages of 3 each: {stats}"
    );
    assert_eq!(
        stats["GET /employees/ID"],
        Json::Null,
        "never one request per person: {stats}"
    );
    assert_eq!(stats["PATCH /employees/ID"], 7, "{stats}");
    for i in 1..=7 {
        let u = api.user(&engine_token, &format!("user{i}"));
        assert_eq!(u["displayName"], format!("User {i}"), "{u}");
        assert_eq!(u["title"], "Clerk", "{u}");
        let e = hr.call("GET", &format!("/employees/E{}", 1000 + i), None);
        assert_eq!(e["mail"], format!("user{i}@example.test"), "{e}");
    }

    // 2. HR changes: a new hire, a new title, a leaver. The delta cycle reads them from HR's
    //    change feed and the profile store follows.
    hr.call(
        "POST",
        "/employees",
        Some(serde_json::json!({"account": "user8", "displayName": "User 8", "title": "Intern"})),
    );
    hr.call(
        "PATCH",
        "/employees/E1002",
        Some(serde_json::json!({"title": "Head Clerk"})),
    );
    hr.call("DELETE", "/employees/E1003", None);
    let delta = cycle(&config, "delta-cycle");
    assert_eq!(delta["pending_exports_left"], 0, "{delta:#}");
    let imports = step(&delta, "hr", "import");
    assert!(
        imports.iter().any(|s| s["step"] == "delta-import"),
        "{delta:#}"
    );
    assert_eq!(
        api.user(&engine_token, "user2")["title"],
        "Head Clerk",
        "the modify reached the profile"
    );
    assert_eq!(api.user(&engine_token, "user8")["displayName"], "User 8");
    assert!(
        api.user(&engine_token, "user3").is_null(),
        "the leaver's profile is gone"
    );
    let e8 = hr.call("GET", "/employees/E1008", None);
    assert_eq!(e8["mail"], "user8@example.test", "{e8}");
    let stats = hr.call("GET", "/stats", None);
    assert!(stats["GET /changes"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(
        stats["GET /employees"].as_u64().unwrap(),
        pages,
        "no full read: {stats}"
    );
}

/// A store holding a few people from a well-behaved program, and pending exports to it.
fn failing_setup(dir: &Path) -> PathBuf {
    let config = dir.join("idsync.toml");
    std::fs::write(&config, failing_config(dir, "python3\", \"scripted.py", "")).unwrap();
    run_ok(
        idsync()
            .args(["run", "full-import", "--connector", "hr", "-c"])
            .arg(&config),
    );
    run_ok(
        idsync()
            .args(["run", "full-sync", "--connector", "hr", "-c"])
            .arg(&config),
    );
    config
}

fn failing_config(dir: &Path, command: &str, extra: &str) -> String {
    format!(
        r#"[store]
path = "idsync.db"

[[connector]]
name = "hr"
type = "process"
role = "directory"
command = ["{command}"]
working_directory = "{programs}"
environment = {{ PIDFILE = "{pids}" }}
timeout = 5
{extra}

[connector.settings]
objects = [
  {{ anchor = "e1", id = "alice", object_type = "person", attributes = {{ cn = "Alice" }} }},
  {{ anchor = "e2", id = "bob", object_type = "person", attributes = {{ cn = "Bob" }} }},
  {{ anchor = "e3", id = "carol", object_type = "person", attributes = {{ cn = "Carol" }} }},
]

[[connector.object_type]]
name = "person"
object_classes = ["person"]

[[import_flow]]
connector = "hr"
mv = "uid"
cs = "cn"

[[export_flow]]
connector = "hr"
cs = "mail"
expr = "mv.uid + '@example.test'"
"#,
        programs = programs().display(),
        pids = dir.join("pids").display(),
    )
}

fn dump(config: &Path) -> String {
    run_ok(idsync().args(["dump", "-c"]).arg(config))
}

fn gone(pid: &str) -> bool {
    for _ in 0..200 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                return true
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    false
}

#[test]
fn a_misbehaving_program_fails_its_step_and_leaves_the_store_and_no_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = failing_setup(dir);
    let before = dump(&config);
    assert_eq!(
        before.lines().count(),
        8,
        "three people and the probe, and their objects: {before}"
    );
    assert!(
        before.contains("@example.test"),
        "exports are pending: {before}"
    );

    for (mode, step, extra, expected) in [
        (
            "exit-half",
            "full-import",
            "",
            vec![
                "ended its output",
                "(after line 6)",
                "exit status: 3",
                "HR service: connection reset while reading page 2",
            ],
        ),
        (
            "hang",
            "full-import",
            "timeout = 3",
            vec![
                "sent nothing for 3 s",
                "waiting for the HR service to answer",
            ],
        ),
        (
            "not-protocol",
            "full-import",
            "",
            vec![
                "standard output line 1 is not a protocol message",
                "{\"not\":\"protocol\"}",
            ],
        ),
        (
            "bad-json-line-3",
            "full-import",
            "",
            vec![
                "standard output line 3 is not valid JSON",
                "got full_import",
            ],
        ),
        (
            "wrong-export",
            "export",
            "",
            vec![
                "a result for `someone-else`, which is not an object of the export batch",
                "got export",
            ],
        ),
        (
            "stderr-flood",
            "full-import",
            "",
            vec![
                "wrote more than 16777216 bytes on standard error",
                "xxxxxxxx",
            ],
        ),
    ] {
        let _ = std::fs::remove_file(dir.join("pids"));
        let mut text = failing_config(dir, &format!("python3\", \"failing.py\", \"{mode}"), "");
        if !extra.is_empty() {
            text = text.replace("timeout = 5", extra);
        }
        std::fs::write(&config, text).unwrap();
        let out = idsync()
            .args(["run", step, "--connector", "hr", "-c"])
            .arg(&config)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{mode}: the step succeeded");
        for e in &expected {
            assert!(stderr.contains(e), "{mode}: no `{e}` in {stderr}");
        }
        let pids = std::fs::read_to_string(dir.join("pids")).unwrap();
        for pid in pids.split_whitespace() {
            assert!(gone(pid), "{mode}: process {pid} is left");
        }
        // Restore the good program's configuration to compare the stores.
        std::fs::write(&config, failing_config(dir, "python3\", \"scripted.py", "")).unwrap();
        assert_eq!(dump(&config), before, "{mode}: the store changed");
    }
}

fn connector_check(config: &Path) -> (bool, String) {
    let out = idsync()
        .args(["connector", "check", "--connector", "hr", "-c"])
        .arg(config)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Issue 21 item 4: `idsync connector check` passes the example connectors (the Python HR
/// connector against its service, and the scripted test program), and lists the violations
/// of programs that break the protocol.
#[test]
fn connector_check_passes_the_examples_and_names_violations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let employees = serde_json::json!({
        "E1001": {"account": "user1", "displayName": "User 1"},
        "E1002": {"account": "user2", "displayName": "User 2"},
        "E1003": {"account": "user3", "displayName": "User 3"},
        "E1004": {"account": "user4", "displayName": "User 4"},
    });
    let hr = Hr::start(dir, &employees);
    let config = dir.join("idsync.toml");
    for lang in ["python", "node"] {
        std::fs::write(&config, hr_config(lang, hr.port, free_port())).unwrap();
        let (ok, out) = connector_check(&config);
        assert!(ok, "{lang}: {out}");
        for check in [
            "ok    handshake",
            "ok    full import: 4 objects",
            "ok    two full imports agree",
            "ok    delta import",
            "ok    export",
            "ok    confirming import",
        ] {
            assert!(out.contains(check), "{lang}: no `{check}` in {out}");
        }
    }

    std::fs::write(&config, failing_config(dir, "python3\", \"scripted.py", "")).unwrap();
    let (ok, out) = connector_check(&config);
    assert!(ok, "{out}");
    assert!(out.contains("ok    confirming import"), "{out}");

    std::fs::write(&config, failing_config(dir, "python3\", \"unstable.py", "")).unwrap();
    let (ok, out) = connector_check(&config);
    assert!(!ok, "{out}");
    for v in [
        "FAIL  watermark: the full import's `end` has no watermark",
        "FAIL  two full imports agree: nothing changed, yet `p1` is in the first and not in the second",
        "FAIL  delta import: a change names `nobody`, which the full import did not read",
        "3 violation(s)",
    ] {
        assert!(out.contains(v), "no `{v}` in {out}");
    }

    std::fs::write(
        &config,
        failing_config(dir, "python3\", \"failing.py\", \"not-protocol", ""),
    )
    .unwrap();
    let (ok, out) = connector_check(&config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL  handshake: connector `hr`: program `python3 failing.py not-protocol`: standard output line 1 is not a protocol message"),
        "{out}"
    );
}

/// The venv with Singer taps from PyPI that scripts/test installs (`tap-jsonl`).
fn singer_venv() -> PathBuf {
    let v = std::env::var_os("IDSYNC_SINGER_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/singer-venv"));
    assert!(
        v.join("bin/tap-jsonl").exists(),
        "no tap-jsonl in {} (scripts/test installs it)",
        v.display()
    );
    v
}

/// Issue 21 items 6 and 7: `tap-jsonl`, a Singer tap from PyPI that no one here wrote, reads a
/// JSON-lines HR export as a business source keyed `DOMAIN\user`, joined to the directory's
/// people through `strip_domain` and `lowercase`, in one full cycle; its last STATE is the
/// watermark, handed back to the tap by the delta import.
#[test]
fn a_singer_tap_from_pypi_augments_directory_people_keyed_domain_backslash_user() {
    let venv = singer_venv();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("hr.jsonl"),
        "{\"id\": \"E1\", \"account\": \"EXAMPLE\\\\Alice\", \"department\": \"Payroll\", \"hired\": \"2020-01-01T00:00:00Z\", \"grade\": 7}\n\
         {\"id\": \"E2\", \"account\": \"EXAMPLE\\\\bob\", \"department\": \"IT\"}\n\
         {\"id\": \"E9\", \"account\": \"EXAMPLE\\\\nobody\", \"department\": \"Ghosts\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("tap-config.json"),
        serde_json::json!({"path": dir.join("hr.jsonl"), "stream_name": "employees", "primary_keys": ["id"]})
            .to_string(),
    )
    .unwrap();
    let config = singer_config(dir, &venv.join("bin/tap-jsonl"));
    let report = cycle(&config, "full-cycle");
    let people: Vec<Json> = dump(&config)
        .lines()
        .map(|l| serde_json::from_str::<Json>(l).unwrap())
        .filter(|o| o["kind"] == "mv")
        .collect();
    assert_eq!(people.len(), 3, "HR creates no one: {people:#?}");
    let person = |uid: &str| {
        people
            .iter()
            .find(|p| p["attributes"]["uid"][0] == uid)
            .unwrap_or_else(|| panic!("no {uid} in {people:#?}"))
            .clone()
    };
    assert_eq!(
        person("alice")["attributes"]["department"][0],
        "Payroll",
        "{report:#}"
    );
    assert_eq!(person("bob")["attributes"]["department"][0], "IT");
    assert!(person("carol")["attributes"]["department"].is_null());
    let hired = &person("alice")["attributes"]["hired"][0];
    assert_eq!(hired, "1577836800", "2020-01-01T00:00:00Z as a timestamp");

    // The tap's last STATE is the watermark; the delta import hands it back (--state).
    let delta = run_ok(
        idsync()
            .args(["--json", "run", "delta-import", "--connector", "hr", "-c"])
            .arg(&config),
    );
    let delta: Json = serde_json::from_str(&delta).unwrap();
    assert!(
        delta["notes"].to_string().contains("singer state"),
        "{delta:#}"
    );
}

/// An LDIF directory of alice, bob and carol, augmented by the tap (config `tap-config.json`,
/// stream `employees`) joined by `DOMAIN\\user` accounts.
fn singer_config(dir: &Path, tap: &Path) -> PathBuf {
    let mut ldif = String::new();
    for (i, uid) in ["alice", "bob", "carol"].iter().enumerate() {
        ldif.push_str(&format!(
            "dn: uid={uid},ou=People,dc=example,dc=test\nobjectClass: inetOrgPerson\nentryUUID: 00000000-0000-0000-0000-00000000000{i}\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\n"
        ));
    }
    std::fs::write(dir.join("directory.ldif"), ldif).unwrap();
    let config = dir.join("idsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"[store]
path = "idsync.db"

[[connector]]
name = "directory"
type = "ldif"
role = "directory"
path = "directory.ldif"

[[connector.object_type]]
name = "person"
object_classes = ["inetOrgPerson"]

[[connector]]
name = "hr"
type = "singer"
role = "business"
command = ["{tap}"]
config = "tap-config.json"
streams = {{ employees = "person" }}
timeout = 120

[[connector.object_type]]
name = "person"
object_classes = ["person"]

[[join]]
connector = "hr"
cs = "account"
mv = "uid"
normalize = ["strip_domain", "lowercase"]

[[import_flow]]
connector = "directory"
mv = "uid"
cs = "uid"

[[import_flow]]
connector = "hr"
mv = "department"
cs = "department"

[[import_flow]]
connector = "hr"
mv = "hired"
cs = "hired"
"#,
            tap = tap.display()
        ),
    )
    .unwrap();
    config
}

/// Issue 21 item 6: `tap-spreadsheets` from PyPI (its own venv, target/sheets-venv: its
/// Singer SDK conflicts with tap-jsonl's) reads an `.xlsx` HR sheet made here with openpyxl,
/// augmenting the directory's people in a full cycle; the second run, handed the tap's STATE,
/// reads nothing, since the sheet did not change.
#[test]
fn a_singer_spreadsheet_tap_reads_an_xlsx_hr_sheet_and_its_state_makes_the_next_run_incremental() {
    let venv = std::env::var_os("IDSYNC_SHEETS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/sheets-venv"));
    assert!(
        venv.join("bin/tap-spreadsheets").exists(),
        "no tap-spreadsheets in {} (scripts/test installs it)",
        venv.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sheet = dir.join("hr.xlsx");
    let made = std::process::Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(
            "import openpyxl, sys\n\
             wb = openpyxl.Workbook(); ws = wb.active; ws.title = 'HR'\n\
             ws.append(['id', 'account', 'department'])\n\
             ws.append(['E1', 'EXAMPLE\\\\Alice', 'Payroll'])\n\
             ws.append(['E2', 'EXAMPLE\\\\bob', 'IT'])\n\
             ws.append(['E9', 'EXAMPLE\\\\nobody', 'Ghosts'])\n\
             wb.save(sys.argv[1])\n",
        )
        .arg(&sheet)
        .status()
        .unwrap();
    assert!(made.success(), "openpyxl makes the sheet");
    std::fs::write(
        dir.join("tap-config.json"),
        serde_json::json!({"files": [{"path": sheet, "format": "excel", "worksheet": "HR",
            "table_name": "employees", "primary_keys": ["id"]}]})
        .to_string(),
    )
    .unwrap();
    let config = singer_config(dir, &venv.join("bin/tap-spreadsheets"));
    let report = cycle(&config, "full-cycle");
    let people: Vec<Json> = dump(&config)
        .lines()
        .map(|l| serde_json::from_str::<Json>(l).unwrap())
        .filter(|o| o["kind"] == "mv")
        .collect();
    assert_eq!(people.len(), 3, "HR creates no one: {people:#?}");
    let department = |uid: &str| {
        people
            .iter()
            .find(|p| p["attributes"]["uid"][0] == uid)
            .map(|p| p["attributes"]["department"][0].clone())
    };
    assert_eq!(
        department("alice"),
        Some(Json::from("Payroll")),
        "{report:#}"
    );
    assert_eq!(department("bob"), Some(Json::from("IT")));
    assert_eq!(department("carol"), Some(Json::Null));

    let delta = run_ok(
        idsync()
            .args(["--json", "run", "delta-import", "--connector", "hr", "-c"])
            .arg(&config),
    );
    let delta: Json = serde_json::from_str(&delta).unwrap();
    assert_eq!(
        delta["stats"]["read"], 0,
        "the unchanged sheet reads nothing: {delta:#}"
    );
}

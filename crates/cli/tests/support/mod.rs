//! What the end-to-end seed tests share: the real `idsync` binary, its cycles and plan read as
//! JSON, `idsync serve` on a free port, tokens made with `idsync token create`, the profile
//! store's SCIM API as a person or the engine sees it, and tables in the machine's PostgreSQL.
// Each test file uses its own part of these helpers.
#![allow(dead_code)]

pub mod ldap;

use assert_cmd::Command;
use serde_json::Value as Json;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub fn idsync() -> Command {
    Command::cargo_bin("idsync").expect("the idsync binary is built")
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("idsync runs");
    assert!(
        out.status.success(),
        "idsync failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

pub struct Serve(pub Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn serve(db: &Path, port: u16) -> Serve {
    let bin = assert_cmd::cargo::cargo_bin("idsync");
    let child = std::process::Command::new(bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("idsync serve starts");
    let s = Serve(child);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "idsync serve did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

pub fn token(db: &Path, args: &[&str]) -> String {
    let out = run_ok(
        idsync()
            .args(["token", "create"])
            .args(args)
            .arg("--db")
            .arg(db),
    );
    out.split_whitespace()
        .last()
        .expect("the token is printed")
        .to_owned()
}

pub struct Api {
    pub base: String,
    pub agent: ureq::Agent,
}

impl Api {
    pub fn new(port: u16) -> Api {
        Api {
            base: format!("http://127.0.0.1:{port}/scim/v2"),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into(),
        }
    }

    pub fn user(&self, token: &str, user_name: &str) -> Json {
        let mut r = self
            .agent
            .get(&format!("{}/Users", self.base))
            .query("filter", format!("userName eq \"{user_name}\""))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: Json = r.body_mut().read_json().unwrap();
        page["Resources"][0].clone()
    }

    /// Replaces one attribute of a user, as an administrator's tool would (SCIM PATCH).
    pub fn replace(&self, token: &str, id: &str, path: &str, value: Json) {
        let r = self
            .agent
            .patch(&format!("{}/Users/{id}", self.base))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/scim+json")
            .send_json(serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": path, "value": value}]
            }))
            .unwrap();
        assert_eq!(r.status(), 200, "PATCH {path}");
    }

    pub fn upload(&self, token: &str, id: &str, bytes: &[u8]) {
        let r = self
            .agent
            .put(&format!("{}/Users/{id}/photo", self.base))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "image/jpeg")
            .send(bytes)
            .unwrap();
        assert_eq!(r.status(), 200, "photo upload");
    }
}

/// A cycle (`full-cycle`, `delta-cycle`) run as an administrator runs it, its report as JSON.
pub fn cycle(config: &Path, kind: &str) -> Json {
    let out = run_ok(idsync().args(["--json", "run", kind, "-c"]).arg(config));
    serde_json::from_str(&out).expect("a JSON report")
}

/// One step (`delta-import`, `export`, ...) of one connector, its report as JSON.
pub fn step(config: &Path, kind: &str, connector: &str) -> Json {
    let out = run_ok(
        idsync()
            .args(["--json", "run", kind, "--connector", connector, "-c"])
            .arg(config),
    );
    serde_json::from_str(&out).expect("a JSON report")
}

/// `idsync plan` as JSON.
pub fn plan(config: &Path) -> Json {
    serde_json::from_str(&run_ok(idsync().args(["--json", "plan", "-c"]).arg(config)))
        .expect("a JSON plan")
}

/// A counter summed over a cycle's steps of one kind (`export`, `delta-sync`, ...).
pub fn total(report: &Json, step: &str, field: &str) -> u64 {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == step)
        .map(|s| s["stats"][field].as_u64().unwrap_or(0))
        .sum()
}

/// Every per-object error of a cycle's steps, as `object: message`.
pub fn errors(report: &Json) -> Vec<String> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .flat_map(|s| s["errors"].as_array().cloned().unwrap_or_default())
        .map(|e| format!("{}: {}", e["object"], e["message"]))
        .collect()
}

/// The machine's PostgreSQL (`test` database, trust on loopback) as the tests reach it.
pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Tables in the machine's PostgreSQL named with a prefix unique to one test (its name and
/// the process), dropped when this is dropped.
pub struct Pg {
    pub prefix: String,
    tables: Vec<String>,
}

impl Pg {
    pub fn new(test: &str) -> Pg {
        Pg {
            prefix: format!("t{}_{test}_", std::process::id()),
            tables: Vec::new(),
        }
    }

    /// Runs SQL (`@T@` stands for the prefix); the rows it returns, `|`-separated.
    pub fn sql(&self, sql: &str) -> String {
        let out = std::process::Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c"])
            .arg(sql.replace("@T@", &self.prefix))
            .output()
            .expect("psql runs (PostgreSQL on 127.0.0.1:5432)");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// Creates a table (`name` without the prefix), dropped with this.
    pub fn create(&mut self, name: &str, columns: &str) {
        self.sql(&format!(
            "DROP TABLE IF EXISTS @T@{name} CASCADE; CREATE TABLE @T@{name} ({columns})"
        ));
        self.tables.push(format!("{}{name}", self.prefix));
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        for t in &self.tables {
            let _ = std::process::Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "test",
                    "-c",
                ])
                .arg(format!("DROP TABLE IF EXISTS {t} CASCADE"))
                .output();
        }
    }
}

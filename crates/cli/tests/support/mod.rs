//! What the end-to-end seed tests share: the real `idsync` binary, `idsync serve` on a free
//! port, tokens made with `idsync token create`, and the profile store's SCIM API as a person or
//! the engine sees it.
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

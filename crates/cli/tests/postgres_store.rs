//! End-to-end on a PostgreSQL store (`[store] url = "postgres://..."`): the real binary through
//! the sample estate's cycles, compared with the same run on a SQLite store, and the runner lock
//! as a session advisory lock. Each test makes a database of its own on the machine's
//! PostgreSQL (127.0.0.1:5432, as `scripts/test` starts it) and drops it after.

use assert_cmd::Command;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn admin(sql: &str) -> Vec<String> {
    use sqlx::{Connection, Row};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(ADMIN_URL)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at {ADMIN_URL} (start it as scripts/test does): {e}")
            });
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
            .collect()
    })
}

/// A database of the test's own, dropped at the end.
struct Db {
    name: String,
}

impl Db {
    fn new(what: &str) -> Db {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("idsync_cli_{what}_{}_{nanos}", std::process::id());
        admin(&format!("CREATE DATABASE {name} TEMPLATE template0"));
        Db { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    fn query(&self, sql: &str) -> Vec<String> {
        use sqlx::{Connection, Row};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(&self.url()).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_all(&mut c)
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
                        .collect()
                })
                .unwrap_or_default()
        })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn idsync(config: &Path, args: &[&str]) -> std::process::Output {
    Command::cargo_bin("idsync")
        .unwrap()
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn ok(config: &Path, args: &[&str]) -> String {
    let out = idsync(config, args);
    assert!(
        out.status.success(),
        "idsync {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The sample estate (directory LDIF, HR CSV, a profile table) in `dir`, its store on
/// PostgreSQL when `url` is given.
fn estate(dir: &Path, url: Option<&str>) -> std::path::PathBuf {
    let mut o = idsync_sample::Options::demo();
    o.people = 60;
    let g = idsync_sample::generate(dir, &o).unwrap();
    if let Some(url) = url {
        let text = std::fs::read_to_string(&g.config).unwrap();
        let text = text.replacen(
            "[store]\npath = \"idsync.db\"",
            &format!("[store]\nurl = \"{url}\""),
            1,
        );
        assert!(text.contains(url));
        std::fs::write(&g.config, text).unwrap();
    }
    g.config
}

fn mask_uuids(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if i + 36 <= b.len() {
            let w = &b[i..i + 36];
            let shape = w.iter().enumerate().all(|(k, &c)| match k {
                8 | 13 | 18 | 23 => c == b'-',
                _ => c.is_ascii_hexdigit(),
            });
            if shape {
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

/// A store's dump with binary values in full, its generated ids replaced by what they name:
/// a metaverse object by its content, a connector-space object's link by the content of the
/// object it joins (so joins are compared too), sorted.
fn canonical_dump(config: &Path) -> Vec<String> {
    let text = ok(config, &["dump", "--binary"]);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut mv_key = BTreeMap::new();
    for l in &lines {
        if l["kind"] == "mv" {
            let mut v = l.clone();
            let id = v["id"].as_str().unwrap().to_owned();
            v.as_object_mut().unwrap().remove("id");
            mv_key.insert(id, mask_uuids(&v.to_string()));
        }
    }
    let mut out: Vec<String> = lines
        .into_iter()
        .map(|mut v| {
            let o = v.as_object_mut().unwrap();
            o.remove("id");
            if let Some(Value::String(m)) = o.get("mv_id").cloned() {
                o.insert("mv_id".into(), Value::String(mv_key[&m].clone()));
            }
            mask_uuids(&v.to_string())
        })
        .collect();
    out.sort();
    out
}

fn steps_changed(report: &str) -> u64 {
    let v: Value = serde_json::from_str(report).unwrap();
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            [
                "added",
                "updated",
                "deleted",
                "exported",
                "projected",
                "joined",
            ]
            .iter()
            .map(|f| s["stats"][f].as_u64().unwrap_or(0))
            .sum::<u64>()
        })
        .sum()
}

#[test]
fn the_sample_estate_on_postgresql_dumps_as_on_sqlite_and_a_delta_cycle_then_does_nothing() {
    let db = Db::new("estate");
    let tmp = tempfile::tempdir().unwrap();
    let on_sqlite = estate(&tmp.path().join("sqlite"), None);
    let on_pg = estate(&tmp.path().join("pg"), Some(&db.url()));
    let a = ok(&on_sqlite, &["run", "full-cycle", "--json"]);
    let b = ok(&on_pg, &["run", "full-cycle", "--json"]);
    assert!(steps_changed(&b) > 100, "{b}");
    // The store really is the database, and no SQLite file was made beside the configuration.
    assert!(!tmp.path().join("pg/idsync.db").exists());
    let objects = db.query("SELECT count(*)::text FROM cs_object");
    assert!(objects[0].parse::<u64>().unwrap() > 100, "{objects:?}");
    let sqlite_dump = canonical_dump(&on_sqlite);
    let pg_dump = canonical_dump(&on_pg);
    assert!(pg_dump.len() > 100, "{}", pg_dump.len());
    assert_eq!(sqlite_dump.len(), pg_dump.len());
    for (x, y) in sqlite_dump.iter().zip(&pg_dump) {
        assert_eq!(x, y);
    }
    // What the target received is the same too.
    let profiles = |config: &Path| {
        let dir = config.parent().unwrap();
        let mut rows: Vec<String> = std::fs::read_to_string(dir.join("profiles.csv"))
            .unwrap()
            .lines()
            .map(mask_uuids)
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(profiles(&on_sqlite), profiles(&on_pg));
    assert_eq!(steps_changed(&a), steps_changed(&b));
    // A delta cycle on the PostgreSQL store finds nothing to do.
    let delta = ok(&on_pg, &["run", "delta-cycle", "--json"]);
    assert_eq!(steps_changed(&delta), 0, "{delta}");
    assert_eq!(canonical_dump(&on_pg), pg_dump);
    // History reads back from the database.
    let history: Value = serde_json::from_str(&ok(&on_pg, &["history", "--json"])).unwrap();
    let statuses: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == "success"),
        "{history}"
    );
}

#[test]
fn a_postgresql_store_has_one_runner_and_a_killed_holder_frees_it_at_once() {
    let db = Db::new("lock");
    let tmp = tempfile::tempdir().unwrap();
    let config = estate(&tmp.path().join("pg"), Some(&db.url()));
    let bin = assert_cmd::cargo::cargo_bin("idsync");
    // The first run stalls inside its first sync, holding the store.
    let mut first = std::process::Command::new(&bin)
        .arg("-c")
        .arg(&config)
        .args(["run", "full-cycle"])
        .env("IDSYNC_CRASH_AT", "full-sync:directory:begin:1:sleep-60000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let running = db.query("SELECT step FROM run WHERE status = 'running'");
        if running.iter().any(|s| s == "full-sync") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never reached its sync"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A second run says who holds the store and runs nothing.
    let out = idsync(&config, &["run", "export", "--connector", "profiles"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another idsync run")
            && err.contains(&format!("pid {} on ", first.id()))
            && err.contains("run full-cycle")
            && err.contains(&db.url()),
        "{err}"
    );
    // The holder is killed: its connection closes with it and the server drops the lock.
    first.kill().unwrap();
    first.wait().unwrap();
    let out = idsync(&config, &["run", "full-cycle", "--wait", "30"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("1 step(s) of an earlier run were interrupted"),
        "{err}"
    );
    let interrupted = db.query("SELECT step FROM run WHERE status = 'interrupted' ORDER BY id");
    assert_eq!(interrupted, ["full-sync"]);
    assert!(db
        .query("SELECT step FROM run WHERE status = 'running'")
        .is_empty());
}

//! The connector against an independent SCIM 2.0 server that no one here wrote (`scim2-server`
//! from PyPI, installed by `scripts/test` into `target/py-venv`): creates with managers that
//! are created in the same batch (through `/Bulk`), value-level updates, deletes, and a full
//! import that reads it all back as idsync attributes.

use idsync_connector_profile_store::ProfileStoreConnector;
use idsync_connectors::{Connector, ExportItem, ExportOp, ExportResult, ImportChange, ImportSink};
use idsync_model::{
    Anchor, AttributeChange, AttributeDelta, AttributeName, Attributes, ConnectorId, CsEntry, CsId,
    Dn, ObjectTypeName, Reference, Value,
};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("IDSYNC_PY_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/py-venv"),
        PathBuf::from,
    );
    let p = venv.join("bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/test, which installs it",
        p.display()
    );
    p
}

fn start(token: &str) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(venv_bin("scim2-server"))
        .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
        .args(["--bearer-token", token])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("scim2-server starts");
    let server = Server(child);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "scim2-server did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, port)
}

#[derive(Default)]
struct Collect {
    entries: Vec<CsEntry>,
    errors: Vec<(String, String)>,
}
impl ImportSink for Collect {
    fn entry(&mut self, e: CsEntry) -> Result<(), String> {
        self.entries.push(e);
        Ok(())
    }
    fn change(&mut self, _: ImportChange) -> Result<(), String> {
        Ok(())
    }
    fn object_error(&mut self, place: String, message: String) {
        self.errors.push((place, message));
    }
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn add(name: &str, attrs: &[(&str, Value)]) -> ExportItem {
    let mut a = Attributes::new();
    for (k, v) in attrs {
        a.push(*k, v.clone());
    }
    ExportItem {
        cs_id: CsId::new(format!("cs-{name}")),
        anchor: None,
        dn: Dn::new(name),
        object_type: ObjectTypeName::new("person"),
        op: ExportOp::Add {
            object_classes: vec![],
            attributes: a,
        },
    }
}

fn applied_id(r: &ExportResult) -> String {
    match r {
        ExportResult::Applied { anchor: Some(a) } => a.as_str().to_owned(),
        other => panic!("not applied with an id: {other:?}"),
    }
}

#[test]
fn exports_and_imports_against_an_independent_scim_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
    let (_server, port) = start("t0ken");
    let settings: toml::Table = toml::from_str(&format!(
        "url = \"http://127.0.0.1:{port}\"\nscim_path = \"/v2\"\ntoken = \"file:token\"\n"
    ))
    .unwrap();
    let mut c =
        ProfileStoreConnector::new(ConnectorId::new("scim"), &settings, dir.path()).unwrap();

    // The manager is created in the same batch, after the person who reports to them.
    let batch = vec![
        add(
            "alice",
            &[
                ("givenName", s("Alice")),
                ("familyName", s("Archer")),
                ("mail", s("alice@example.com")),
                ("department", s("R&D")),
                ("manager", Value::Reference(Reference::Dn(Dn::new("bob")))),
            ],
        ),
        add("bob", &[("displayName", s("Bob B")), ("title", s("Boss"))]),
    ];
    let r = c.export(&batch).unwrap();
    let (alice, bob) = (applied_id(&r[0]), applied_id(&r[1]));

    let mut sink = Collect::default();
    c.full_import(&mut sink).unwrap();
    assert!(sink.errors.is_empty(), "{:?}", sink.errors);
    assert_eq!(sink.entries.len(), 2);
    let a = sink
        .entries
        .iter()
        .find(|e| e.dn.as_str() == "alice")
        .unwrap();
    assert_eq!(a.anchor, Anchor::new(alice.clone()));
    assert_eq!(a.attributes.first("mail"), Some(&s("alice@example.com")));
    assert_eq!(a.attributes.first("department"), Some(&s("R&D")));
    assert_eq!(
        a.attributes.first("manager"),
        Some(&Value::Reference(Reference::Dn(Dn::new("bob"))))
    );

    // Value-level update, a rename, and a delete.
    let update = ExportItem {
        cs_id: CsId::new("cs-alice"),
        anchor: Some(Anchor::new(alice.clone())),
        dn: Dn::new("alice"),
        object_type: ObjectTypeName::new("person"),
        op: ExportOp::Update {
            new_dn: Some(Dn::new("alice.archer")),
            changes: vec![
                AttributeDelta {
                    name: AttributeName::new("title"),
                    change: AttributeChange::Replace(vec![s("Engineer")]),
                },
                AttributeDelta {
                    name: AttributeName::new("phones"),
                    change: AttributeChange::Update {
                        add: vec![s("+1 555 0100"), s("+1 555 0101")],
                        remove: vec![],
                    },
                },
                AttributeDelta {
                    name: AttributeName::new("manager"),
                    change: AttributeChange::Replace(vec![]),
                },
            ],
        },
    };
    let delete = ExportItem {
        cs_id: CsId::new("cs-bob"),
        anchor: Some(Anchor::new(bob)),
        dn: Dn::new("bob"),
        object_type: ObjectTypeName::new("person"),
        op: ExportOp::Delete,
    };
    let r = c.export(&[update, delete]).unwrap();
    assert!(
        r.iter().all(|r| matches!(r, ExportResult::Applied { .. })),
        "{r:?}"
    );

    let mut sink = Collect::default();
    c.full_import(&mut sink).unwrap();
    assert_eq!(sink.entries.len(), 1, "{:?}", sink.entries);
    let a = &sink.entries[0];
    assert_eq!(a.dn.as_str(), "alice.archer");
    assert_eq!(a.attributes.first("title"), Some(&s("Engineer")));
    assert_eq!(a.attributes.get("phones").map(<[Value]>::len), Some(2));
    assert_eq!(a.attributes.first("manager"), None);

    // A refused create is that object's error; the batch goes on.
    let r = c
        .export(&[add("alice.archer", &[]), add("carol", &[])])
        .unwrap();
    assert!(
        matches!(&r[0], ExportResult::Failed(m) if m.contains("409")),
        "{r:?}"
    );
    applied_id(&r[1]);
}

#[derive(Default)]
struct Changes(Vec<ImportChange>);
impl ImportSink for Changes {
    fn entry(&mut self, _: CsEntry) -> Result<(), String> {
        Ok(())
    }
    fn change(&mut self, c: ImportChange) -> Result<(), String> {
        self.0.push(c);
        Ok(())
    }
    fn object_error(&mut self, place: String, message: String) {
        panic!("{place}: {message}");
    }
}

/// A SCIM service without idsync's change feed: delta import falls back to a
/// `meta.lastModified` filter, says so, and advances its watermark.
#[test]
fn delta_import_without_a_change_feed_filters_on_last_modified() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
    let (_server, port) = start("t0ken");
    let settings: toml::Table = toml::from_str(&format!(
        "url = \"http://127.0.0.1:{port}\"\nscim_path = \"/v2\"\ntoken = \"file:token\"\n"
    ))
    .unwrap();
    let mut c =
        ProfileStoreConnector::new(ConnectorId::new("scim"), &settings, dir.path()).unwrap();
    let r = c.export(&[add("dave", &[("title", s("Clerk"))])]).unwrap();
    let dave = applied_id(&r[0]);
    c.full_import(&mut Collect::default()).unwrap();
    let wm = c
        .watermark_after_full_import()
        .unwrap()
        .expect("a watermark");
    assert!(wm.starts_with("lastModified:"), "{wm}");

    // A second later (timestamps have second resolution), erin is created.
    std::thread::sleep(Duration::from_millis(1100));
    applied_id(&c.export(&[add("erin", &[])]).unwrap()[0]);
    let mut changes = Changes::default();
    let out = c.delta_import(Some(&wm), &mut changes).unwrap();
    assert!(out.method.contains("lastModified"), "{}", out.method);
    let names: Vec<String> = changes
        .0
        .iter()
        .map(|c| match c {
            ImportChange::Upsert(e) => e.dn.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(names.contains(&"erin".to_owned()), "{names:?}");
    // `ge`, not `gt`: a change in the watermark's own second is read again (upserts are
    // idempotent), never lost. Only what changed since then, or in that second, comes back.
    assert!(names.len() <= 2, "{names:?} ({dave})");
    assert_ne!(out.watermark.as_deref(), Some(wm.as_str()));
}

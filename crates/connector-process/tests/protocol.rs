//! The process connector against real programs (Python, in `tests/programs/`): the protocol's
//! happy path (secrets only in `hello`, full and delta import, export answered per object in
//! any order), and each way a program misbehaves failing with the right message, its last
//! standard-error lines, and no process left behind.

use idsync_connector_process::ProcessConnector;
use idsync_connectors::{Connector, ExportItem, ExportOp, ExportResult, ImportChange, ImportSink};
use idsync_model::{
    Anchor, AttributeChange, AttributeDelta, Attributes, Blob, ConnectorId, CsEntry, CsId, Dn,
    ObjectTypeName, Value,
};
use std::path::{Path, PathBuf};

#[derive(Default)]
struct Sink {
    entries: Vec<CsEntry>,
    changes: Vec<ImportChange>,
}

impl ImportSink for Sink {
    fn entry(&mut self, e: CsEntry) -> Result<(), String> {
        self.entries.push(e);
        Ok(())
    }
    fn change(&mut self, c: ImportChange) -> Result<(), String> {
        self.changes.push(c);
        Ok(())
    }
    fn object_error(&mut self, place: String, message: String) {
        panic!("{place}: {message}");
    }
}

fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

fn connector(toml_text: &str) -> ProcessConnector {
    let t: toml::Table = toml::from_str(toml_text).unwrap();
    ProcessConnector::new(ConnectorId::new("hr"), &t, &programs()).unwrap()
}

#[test]
fn a_scripted_program_imports_and_exports_with_its_secret_only_in_hello() {
    std::env::set_var("IDSYNC_TEST_PROCESS_TOKEN", "s3cret");
    let mut c = connector(
        r#"
        command = ["python3", "scripted.py"]
        api_token = "env:IDSYNC_TEST_PROCESS_TOKEN"
        environment = { EXTRA = "x1" }
        [settings]
        watermark = "w7"
        objects = [
          { anchor = "e1", id = "alice", object_type = "person", attributes = { cn = "Alice", mail = ["a@x", "alice@x"], photo = "aGk=", since = "2024-01-31T12:00:00Z", manager = "bob", level = 3, active = true } },
          { anchor = "e2", object_type = "person", attributes = { cn = "Bob" } },
        ]
        changes = [
          { op = "add", anchor = "e3", id = "carol", object_type = "person", attributes = { cn = "Carol" } },
          { op = "modify", anchor = "e1", id = "alice", changes = [ { attribute = "mail", add = ["new@x"], remove = ["a@x"] }, { attribute = "cn", replace = ["Alice B"] } ] },
          { op = "delete", anchor = "e2", id = "e2" },
          { op = "rename", anchor = "e1", id = "alice", new_id = "alice.b" },
        ]
        "#,
    );
    assert!(c.capabilities().full_import && c.capabilities().export);

    let mut sink = Sink::default();
    c.full_import(&mut sink).unwrap();
    assert_eq!(
        c.watermark_after_full_import().unwrap().as_deref(),
        Some("w7")
    );
    assert_eq!(sink.entries.len(), 3);
    let alice = &sink.entries[0];
    assert_eq!((alice.anchor.as_str(), alice.dn.as_str()), ("e1", "alice"));
    assert_eq!(alice.object_classes, ["person"]);
    let a = &alice.attributes;
    assert_eq!(a.get("mail").unwrap().len(), 2);
    assert_eq!(
        a.first("photo"),
        Some(&Value::Binary(Blob::from_bytes(b"hi".to_vec())))
    );
    assert_eq!(a.first("since"), Some(&Value::Timestamp(1_706_702_400)));
    assert_eq!(a.first("level"), Some(&Value::Integer(3)));
    assert_eq!(a.first("active"), Some(&Value::Boolean(true)));
    assert!(matches!(a.first("manager"), Some(Value::Reference(_))));
    assert_eq!(
        sink.entries[1].dn.as_str(),
        "e2",
        "the id defaults to the anchor"
    );
    let probe = &sink.entries[2].attributes;
    assert_eq!(probe.first("secret_in_hello"), Some(&Value::Boolean(true)));
    assert_eq!(probe.first("secret_in_argv"), Some(&Value::Boolean(false)));
    assert_eq!(
        probe.first("secret_in_environment"),
        Some(&Value::Boolean(false)),
        "idsync's own environment (where the secret came from) is not passed on"
    );
    assert_eq!(probe.first("extra"), Some(&Value::String("x1".into())));

    let mut sink = Sink::default();
    let out = c.delta_import(Some("w7"), &mut sink).unwrap();
    assert_eq!(out.watermark.as_deref(), Some("after-w7"));
    assert!(!out.full);
    assert!(matches!(&sink.changes[0], ImportChange::Upsert(e) if e.dn.as_str() == "carol"));
    match &sink.changes[1] {
        ImportChange::Modify {
            anchor, changes, ..
        } => {
            assert_eq!(anchor.as_ref().unwrap().as_str(), "e1");
            assert_eq!(
                changes[0].change,
                AttributeChange::Update {
                    add: vec![Value::String("new@x".into())],
                    remove: vec![Value::String("a@x".into())]
                }
            );
            assert_eq!(
                changes[1].change,
                AttributeChange::Replace(vec![Value::String("Alice B".into())])
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&sink.changes[2], ImportChange::Delete { .. }));
    assert!(
        matches!(&sink.changes[3], ImportChange::Rename { new_dn, .. } if new_dn.as_str() == "alice.b")
    );

    let item = |id: &str, op: ExportOp| ExportItem {
        cs_id: CsId::new(format!("cs-{id}")),
        anchor: None,
        dn: Dn::new(id),
        object_type: ObjectTypeName::new("person"),
        op,
    };
    let mut attrs = Attributes::new();
    attrs.set("cn", vec![Value::String("Dana".into())]);
    attrs.set(
        "photo",
        vec![Value::Binary(Blob::from_bytes(b"jpeg".to_vec()))],
    );
    let batch = vec![
        item(
            "dana",
            ExportOp::Add {
                object_classes: vec![],
                attributes: attrs,
            },
        ),
        item("bad-eve", ExportOp::Delete),
        item(
            "dup-frank",
            ExportOp::Add {
                object_classes: vec![],
                attributes: Attributes::new(),
            },
        ),
        ExportItem {
            anchor: Some(Anchor::new("e1")),
            ..item(
                "alice",
                ExportOp::Update {
                    new_dn: None,
                    changes: vec![AttributeDelta {
                        name: "title".into(),
                        change: AttributeChange::Replace(vec![Value::String("Boss".into())]),
                    }],
                },
            )
        },
    ];
    let results = c.export(&batch).unwrap();
    assert!(
        matches!(&results[0], ExportResult::Applied { anchor: Some(a) } if a.as_str() == "A-dana")
    );
    assert!(matches!(&results[1], ExportResult::Failed(m) if m == "HR refuses bad-eve"));
    assert!(
        matches!(&results[2], ExportResult::Applied { anchor: Some(a) } if a.as_str() == "A-dup-frank")
    );
    assert!(matches!(
        &results[3],
        ExportResult::Applied { anchor: None }
    ));
    c.close();
}

/// Runs `failing.py MODE` through a full import (or an export), returning the error message
/// after checking that every process it started is gone.
fn failure(mode: &str, export: bool, extra: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let mut c = connector(&format!(
        "command = [\"python3\", \"failing.py\", \"{mode}\"]\n\
         environment = {{ PIDFILE = \"{}\" }}\n{extra}",
        pidfile.display()
    ));
    let err = if export {
        let batch = [ExportItem {
            cs_id: CsId::new("cs-1"),
            anchor: None,
            dn: Dn::new("alice"),
            object_type: ObjectTypeName::new("person"),
            op: ExportOp::Delete,
        }];
        c.export(&batch).unwrap_err()
    } else {
        c.full_import(&mut Sink::default()).unwrap_err()
    };
    let pids = std::fs::read_to_string(&pidfile).unwrap();
    for pid in pids.split_whitespace() {
        assert!(
            gone(pid),
            "{mode}: process {pid} is still there after the step failed"
        );
    }
    eprintln!("{mode}: {err}");
    err.to_string()
}

/// Whether a process is gone: no such process, or a zombie its parent will reap (a child of
/// the program, reparented when the program was killed).
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
            // A SIGKILL is delivered at once, but the kernel may take a moment to tear down.
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    false
}

#[test]
fn a_program_that_exits_half_way_fails_the_import_with_its_last_words() {
    let m = failure("exit-half", false, "");
    assert!(m.contains("ended its output"), "{m}");
    assert!(m.contains("after line 6"), "{m}");
    assert!(m.contains("exit status: 3"), "{m}");
    assert!(
        m.contains("HR service: connection reset while reading page 2"),
        "{m}"
    );
}

#[test]
fn a_program_that_hangs_past_the_timeout_is_killed_with_what_it_started() {
    // Long enough for Python to start on a loaded machine: the wait for `ready` has it too.
    let m = failure("hang", false, "timeout = 3");
    assert!(m.contains("sent nothing for 3 s"), "{m}");
    assert!(m.contains("waiting for the HR service to answer"), "{m}");
}

#[test]
fn a_line_that_is_not_the_protocol_is_named() {
    let m = failure("not-protocol", false, "timeout = 5");
    assert!(
        m.contains("standard output line 1 is not a protocol message"),
        "{m}"
    );
    assert!(m.contains("missing field `type`"), "{m}");
    assert!(m.contains(r#"`{"not":"protocol"}`"#), "{m}");
}

#[test]
fn invalid_json_names_its_line() {
    let m = failure("bad-json-line-3", false, "timeout = 5");
    assert!(
        m.contains("standard output line 3 is not valid JSON"),
        "{m}"
    );
    assert!(m.contains("got full_import"), "{m}");
}

#[test]
fn an_export_answer_for_an_object_not_sent_fails_the_export() {
    let m = failure("wrong-export", true, "timeout = 5");
    assert!(
        m.contains(
            "line 2: a result for `someone-else`, which is not an object of the export batch"
        ),
        "{m}"
    );
}

#[test]
fn a_flood_on_standard_error_is_stopped() {
    let m = failure("stderr-flood", false, "timeout = 30");
    assert!(
        m.contains("wrote more than 16777216 bytes on standard error"),
        "{m}"
    );
    assert!(m.contains("xxxxxxxx"), "the last lines are shown: {m}");
    assert!(
        m.len() < 100_000,
        "the message is bounded: {} bytes",
        m.len()
    );
}

#[test]
fn a_secret_written_into_settings_or_environment_is_refused() {
    for (text, key) in [
        (
            "command = [\"x\"]\n[settings]\napi_token = \"hunter2\"",
            "settings.api_token",
        ),
        (
            "command = [\"x\"]\nenvironment = { HR_PASSWORD = \"hunter2\" }",
            "environment.HR_PASSWORD",
        ),
    ] {
        let t: toml::Table = toml::from_str(text).unwrap();
        let e = ProcessConnector::new(ConnectorId::new("hr"), &t, &programs())
            .err()
            .expect("refused");
        let m = e.to_string();
        assert!(!m.contains("hunter2"), "{m}");
        match e {
            idsync_connectors::Error::Setting { key: k, .. } => assert_eq!(k, key),
            other => panic!("{other:?}"),
        }
    }
}

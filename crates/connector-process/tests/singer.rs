//! The Singer connector against a small tap (`tests/programs/fake_tap.py`): streams become
//! object types (others are counted as filtered), `key_properties` the anchor, JSON Schema types
//! values; the last STATE is the watermark and the next run starts from it; a tap that fails
//! fails the import with its last standard-error lines.

use idsync_connector_process::SingerConnector;
use idsync_connectors::{Connector, ImportChange, ImportSink};
use idsync_model::{ConnectorId, CsEntry, Value};
use std::path::Path;

#[derive(Default)]
struct Sink {
    entries: Vec<CsEntry>,
    changes: Vec<ImportChange>,
    filtered: usize,
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
    fn filtered(&mut self, _: &idsync_model::Dn, _: &str) {
        self.filtered += 1;
    }
}

fn tap(dir: &Path, config: serde_json::Value) -> SingerConnector {
    std::fs::write(dir.join("tap.json"), config.to_string()).unwrap();
    let programs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs");
    let t: toml::Table = toml::from_str(&format!(
        "command = [\"python3\", \"{}\"]\nconfig = \"tap.json\"\nstreams = {{ people = \"person\" }}\ntimeout = 30",
        programs.join("fake_tap.py").display()
    ))
    .unwrap();
    SingerConnector::new(ConnectorId::new("hr"), &t, dir).unwrap()
}

#[test]
fn records_become_objects_and_the_state_is_the_next_runs_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = tap(
        dir.path(),
        serde_json::json!({"rows": [
            {"id": "E1", "version": 1, "since": "2024-01-31T12:00:00Z", "tags": ["a", "b"]},
            {"id": "E2", "version": 2},
        ]}),
    );
    let mut sink = Sink::default();
    c.full_import(&mut sink).unwrap();
    assert_eq!(sink.entries.len(), 2);
    assert_eq!(sink.filtered, 1, "the audit stream is not configured");
    let e1 = &sink.entries[0];
    assert_eq!(
        (e1.anchor.as_str(), e1.object_classes[0].as_str()),
        ("E1", "person")
    );
    assert_eq!(e1.attributes.first("version"), Some(&Value::Integer(1)));
    assert_eq!(
        e1.attributes.first("since"),
        Some(&Value::Timestamp(1_706_702_400))
    );
    assert_eq!(e1.attributes.get("tags").unwrap().len(), 2);
    let w = c.watermark_after_full_import().unwrap().unwrap();
    assert_eq!(w, r#"{"bookmarks":{"people":{"version":2}}}"#);

    // A row changed (version 3): the delta from the state reads only it.
    let mut c = tap(
        dir.path(),
        serde_json::json!({"rows": [{"id": "E1", "version": 1}, {"id": "E2", "version": 3}]}),
    );
    let mut sink = Sink::default();
    let out = c.delta_import(Some(&w), &mut sink).unwrap();
    assert_eq!(sink.changes.len(), 1);
    assert!(matches!(&sink.changes[0], ImportChange::Upsert(e) if e.anchor.as_str() == "E2"));
    assert_eq!(
        out.watermark.as_deref(),
        Some(r#"{"bookmarks":{"people":{"version":3}}}"#)
    );
}

#[test]
fn a_tap_that_fails_fails_the_import_with_its_last_words() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = tap(
        dir.path(),
        serde_json::json!({"fail": true, "rows": [{"id": "E1", "version": 1}]}),
    );
    let m = c.full_import(&mut Sink::default()).unwrap_err().to_string();
    assert!(m.contains("the tap failed (exit status: 2)"), "{m}");
    assert!(m.contains("tap: the API answered 503"), "{m}");
}

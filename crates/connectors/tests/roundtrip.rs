//! Export then import is the identity, for every value type, through the LDIF and CSV
//! connectors: what idsync writes to a file is what it reads back (property tests); and a cell
//! naming a file cannot make the CSV connector read outside its folder.

use idsync_connectors::{ExportItem, ExportOp, ExportResult, ImportChange, ImportSink};
use idsync_model::{
    AttributeName, Attributes, Blob, ConnectorId, CsEntry, CsId, Dn, ObjectTypeName, Reference,
    Value,
};
use proptest::prelude::*;
use std::path::Path;

#[derive(Default)]
struct Collect {
    entries: Vec<CsEntry>,
    errors: Vec<(String, String)>,
}

impl ImportSink for Collect {
    fn entry(&mut self, entry: CsEntry) -> Result<(), String> {
        self.entries.push(entry);
        Ok(())
    }
    fn change(&mut self, _: ImportChange) -> Result<(), String> {
        Ok(())
    }
    fn object_error(&mut self, place: String, message: String) {
        self.errors.push((place, message));
    }
}

const TYPES: &str = r#"attribute_types = { n = "integer", ok = "boolean", at = "timestamp", raw = "binary", boss = "reference" }"#;

fn settings(text: &str) -> toml::Table {
    toml::from_str(text).expect("test settings parse")
}

/// Exports one add, then reads the file back with a full import.
fn round_trip(
    kind: &str,
    settings: &toml::Table,
    dir: &Path,
    dn: &str,
    attrs: &Attributes,
) -> CsEntry {
    let id = ConnectorId::new("t");
    let mut c = idsync_connectors::open(&id, kind, settings, dir).expect("open");
    let item = ExportItem {
        cs_id: CsId::new("cs-1"),
        anchor: None,
        dn: Dn::new(dn),
        object_type: ObjectTypeName::new("person"),
        op: ExportOp::Add {
            object_classes: vec!["inetOrgPerson".into()],
            attributes: attrs.clone(),
        },
    };
    let r = c.export(&[item]).expect("export");
    assert!(matches!(r[0], ExportResult::Applied { .. }), "{r:?}");
    c.finish_export().expect("finish export");
    let mut c = idsync_connectors::open(&id, kind, settings, dir).expect("reopen");
    let mut sink = Collect::default();
    c.full_import(&mut sink).expect("import");
    assert!(sink.errors.is_empty(), "{:?}", sink.errors);
    assert_eq!(sink.entries.len(), 1);
    sink.entries.remove(0)
}

/// Attributes by name (case-insensitive) and value (compared as the engine compares them).
fn canonical(a: &Attributes, skip: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = a
        .iter()
        .filter(|(k, v)| !v.is_empty() && !skip.iter().any(|s| k.as_str().eq_ignore_ascii_case(s)))
        .map(|(k, v)| {
            let mut vs: Vec<String> = v.iter().map(|x| format!("{:?}", x.compare_key())).collect();
            vs.sort();
            vs.dedup();
            (k.as_str().to_ascii_lowercase(), vs)
        })
        .collect();
    out.sort();
    out
}

fn text() -> impl Strategy<Value = String> {
    // Any text, with the characters file formats treat specially.
    prop_oneof![
        "[^\u{0}]{1,16}",
        "[ a-z,;:\"'<=#+\\\\]{1,12}",
        "[a-zé中 ]{0,6}[\r\n]?[a-z]{1,4}",
    ]
    .prop_filter("a value is not blank", |s| !s.trim().is_empty())
}

fn dn_value() -> impl Strategy<Value = Value> {
    "[a-z]{1,8}".prop_map(|s| {
        Value::Reference(Reference::Dn(Dn::new(format!(
            "uid={s},ou=People,dc=example,dc=test"
        ))))
    })
}

type Pairs = Vec<(&'static str, Vec<Value>)>;

/// One value of every type, and a multi-valued attribute.
fn typed_attrs() -> impl Strategy<Value = Pairs> {
    (
        text(),
        any::<i64>(),
        any::<bool>(),
        0i64..253_402_300_799,
        proptest::collection::vec(any::<u8>(), 1..48),
        dn_value(),
        proptest::collection::btree_set("[a-z0-9.@-][a-z0-9 .@-]{0,8}[a-z0-9.@-]", 1..4),
    )
        .prop_map(|(s, n, ok, at, raw, boss, tags)| {
            vec![
                ("s", vec![Value::String(s)]),
                ("n", vec![Value::Integer(n)]),
                ("ok", vec![Value::Boolean(ok)]),
                ("at", vec![Value::Timestamp(at)]),
                ("raw", vec![Value::Binary(Blob::from_bytes(raw))]),
                ("boss", vec![boss]),
                ("tags", tags.into_iter().map(Value::String).collect()),
            ]
        })
}

fn attrs_of(pairs: &[(&str, Vec<Value>)]) -> Attributes {
    let mut a = Attributes::new();
    for (k, v) in pairs {
        a.set(AttributeName::from(*k), v.clone());
    }
    a
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ldif_export_then_import_is_the_identity(values in typed_attrs(), uid in "[a-z]{1,8}") {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(&format!("path = \"out.ldif\"\noptional = true\n{TYPES}"));
        let mut pairs = values;
        pairs.push(("uid", vec![Value::String(uid.clone())]));
        let attrs = attrs_of(&pairs);
        let dn = format!("uid={uid},ou=People,dc=example,dc=test");
        let back = round_trip("ldif", &s, dir.path(), &dn, &attrs);
        prop_assert_eq!(back.dn.normalized(), Dn::new(&dn).normalized());
        prop_assert_eq!(
            canonical(&back.attributes, &["entryUUID", "objectClass"]),
            canonical(&attrs, &[])
        );
    }

    #[test]
    fn csv_export_then_import_is_the_identity(values in typed_attrs(), account in "[a-z]{1,8}") {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(&format!(
            "path = \"out.csv\"\noptional = true\nanchor = \"id\"\ndn = \"account\"\nmulti_valued = [\"tags\"]\ncolumns = [\"id\", \"account\", \"s\", \"n\", \"ok\", \"at\", \"raw\", \"boss\", \"tags\"]\n{TYPES}"
        ));
        let mut pairs = values;
        pairs.push(("account", vec![Value::String(account.clone())]));
        let attrs = attrs_of(&pairs);
        let back = round_trip("csv", &s, dir.path(), &account, &attrs);
        prop_assert_eq!(back.dn.as_str(), account.as_str());
        prop_assert_eq!(canonical(&back.attributes, &["id"]), canonical(&attrs, &[]));
    }
}

#[test]
fn a_csv_cell_cannot_name_a_file_outside_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), b"not yours").unwrap();
    let sub = dir.path().join("hr");
    std::fs::create_dir(&sub).unwrap();
    for name in ["../secret", "/etc/hostname"] {
        std::fs::write(sub.join("hr.csv"), format!("id,photo\n1,{name}\n")).unwrap();
        let s = settings(
            "path = \"hr.csv\"\nanchor = \"id\"\nattribute_types = { photo = \"binary-file\" }",
        );
        let mut c = idsync_connectors::open(&ConnectorId::new("hr"), "csv", &s, &sub).unwrap();
        let e = c
            .full_import(&mut Collect::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hr.csv:2") && e.contains("not a file name inside the CSV file's folder"),
            "{e}"
        );
    }
}

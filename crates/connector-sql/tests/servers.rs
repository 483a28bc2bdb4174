//! The SQL connector against the machine's real PostgreSQL and MariaDB (127.0.0.1) and an SQLite
//! file: full import with type mapping and multi-valued attributes, delta import of an insert,
//! an update and a delete, bad values named by row and column, a server that goes away
//! mid-import, and export (an insert repeated after a crash is adopted). Each test makes its own
//! uniquely named tables and drops them.

mod db;

use db::{Db, Kind};
use idsync_connector_sql::SqlConnector;
use idsync_connectors::{Connector, ExportItem, ExportOp, ExportResult, ImportChange, ImportSink};
use idsync_model::{Anchor, Attributes, ConnectorId, CsEntry, CsId, Dn, ObjectTypeName, Value};

#[derive(Default)]
struct Sink {
    entries: Vec<CsEntry>,
    changes: Vec<ImportChange>,
    /// Called after each entry (e.g. to kill the connection mid-import).
    on_entry: Option<Box<dyn FnMut(usize)>>,
}

impl ImportSink for Sink {
    fn entry(&mut self, entry: CsEntry) -> Result<(), String> {
        self.entries.push(entry);
        let n = self.entries.len();
        if let Some(f) = &mut self.on_entry {
            f(n);
        }
        Ok(())
    }
    fn change(&mut self, change: ImportChange) -> Result<(), String> {
        self.changes.push(change);
        Ok(())
    }
    fn object_error(&mut self, place: String, message: String) {
        panic!("unexpected object error {place}: {message}");
    }
}

fn connector(db: &Db, extra: &str) -> SqlConnector {
    let text = format!("url = \"file:url\"\n{extra}");
    let table: toml::Table = toml::from_str(&text).unwrap();
    SqlConnector::new(ConnectorId::new("hr"), &table, db.dir()).unwrap()
}

fn by_anchor<'a>(entries: &'a [CsEntry], anchor: &str) -> &'a CsEntry {
    entries
        .iter()
        .find(|e| e.anchor.as_str() == anchor)
        .unwrap_or_else(|| panic!("no entry {anchor}"))
}

fn texts(e: &CsEntry, attr: &str) -> Vec<String> {
    let mut v: Vec<String> = e
        .attributes
        .get(attr)
        .unwrap_or(&[])
        .iter()
        .map(Value::to_text)
        .collect();
    v.sort();
    v
}

/// The people table every test starts from: two rows with every mapped type.
fn people(db: &Db) -> String {
    let t = db.table("people");
    let (boolean, ts, bin) = (db.kind.boolean(), db.kind.timestamp(), db.kind.binary());
    db.exec(&format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, employee_id VARCHAR(40), name VARCHAR(100), \
         age INT, active {boolean}, hired {ts}, photo {bin}, phones VARCHAR(200), \
         version BIGINT NOT NULL, deleted {boolean} NOT NULL DEFAULT FALSE)"
    ));
    db.exec(&format!(
        "INSERT INTO {t} (id, employee_id, name, age, active, hired, photo, phones, version) VALUES \
         (1, 'E001', 'Ann Lee', 41, TRUE, '2020-01-02 03:04:05', {}, '+1 555 0100;+1 555 0101', 1), \
         (2, 'E002', 'Bo Chan', NULL, FALSE, NULL, NULL, NULL, 2)",
        db.kind.bytes_literal("ffd8ff00")
    ));
    let c = db.table("skills");
    db.exec(&format!(
        "CREATE TABLE {c} (employee INT NOT NULL, skill VARCHAR(40) NOT NULL)"
    ));
    db.exec(&format!(
        "INSERT INTO {c} VALUES (1, 'rust'), (1, 'sql'), (2, 'ldap')"
    ));
    t
}

fn settings(db: &Db, t: &str) -> String {
    format!(
        "table = \"{t}\"\nanchor = \"id\"\nwatermark_column = \"version\"\ndelete_mode = \"tombstone\"\n\
         tombstone_column = \"deleted\"\n\
         [[multi_valued]]\nattribute = \"phones\"\ncolumn = \"phones\"\nseparator = \";\"\n\
         [[multi_valued]]\nattribute = \"skills\"\ntable = \"{}\"\nkey = \"employee\"\ncolumn = \"skill\"\n",
        db.table("skills")
    )
}

fn full_import_maps_types(kind: Kind) {
    let db = Db::new(kind, "full");
    let t = people(&db);
    let mut c = connector(&db, &settings(&db, &t));
    let mut sink = Sink::default();
    c.full_import(&mut sink).unwrap();
    assert_eq!(sink.entries.len(), 2);
    let ann = by_anchor(&sink.entries, "1");
    assert_eq!(
        ann.attributes.first("name"),
        Some(&Value::String("Ann Lee".into()))
    );
    assert_eq!(ann.attributes.first("age"), Some(&Value::Integer(41)));
    assert_eq!(ann.attributes.first("active"), Some(&Value::Boolean(true)));
    assert_eq!(
        ann.attributes.first("hired"),
        Some(&Value::Timestamp(1_577_934_245)),
        "2020-01-02 03:04:05 UTC"
    );
    match ann.attributes.first("photo") {
        Some(Value::Binary(b)) => assert_eq!(b.data.as_deref(), Some(&[0xff, 0xd8, 0xff, 0][..])),
        other => panic!("photo: {other:?}"),
    }
    assert_eq!(texts(ann, "phones"), ["+1 555 0100", "+1 555 0101"]);
    assert_eq!(texts(ann, "skills"), ["rust", "sql"]);
    assert!(
        ann.attributes.get("deleted").is_none(),
        "the tombstone column is not an attribute"
    );
    let bo = by_anchor(&sink.entries, "2");
    assert_eq!(bo.attributes.first("active"), Some(&Value::Boolean(false)));
    assert!(bo.attributes.get("age").is_none(), "NULL is no value");
    assert_eq!(texts(bo, "skills"), ["ldap"]);
    assert_eq!(
        c.watermark_after_full_import().unwrap().as_deref(),
        Some("int:2")
    );
}

fn delta_import_sees_insert_update_delete(kind: Kind) {
    let db = Db::new(kind, "delta");
    let t = people(&db);
    let mut c = connector(&db, &settings(&db, &t));
    c.full_import(&mut Sink::default()).unwrap();
    let wm = c.watermark_after_full_import().unwrap().unwrap();
    db.exec(&format!(
        "INSERT INTO {t} (id, employee_id, name, version) VALUES (3, 'E003', 'Cy Diaz', 3)"
    ));
    db.exec(&format!(
        "UPDATE {t} SET name = 'Ann Lee-Smith', version = 4 WHERE id = 1"
    ));
    db.exec(&format!(
        "UPDATE {t} SET deleted = TRUE, version = 5 WHERE id = 2"
    ));
    let mut sink = Sink::default();
    let out = c.delta_import(Some(&wm), &mut sink).unwrap();
    assert!(!out.full);
    assert_eq!(out.watermark.as_deref(), Some("int:5"));
    assert!(
        out.method.contains("watermark column `version`"),
        "{}",
        out.method
    );
    assert!(out.method.contains("tombstone"), "{}", out.method);
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    for ch in &sink.changes {
        match ch {
            ImportChange::Upsert(e) => upserts.push((
                e.anchor.to_string(),
                e.attributes.first("name").map(Value::to_text),
            )),
            ImportChange::Delete { anchor, .. } => {
                deletes.push(anchor.as_ref().unwrap().to_string())
            }
            other => panic!("{other:?}"),
        }
    }
    upserts.sort();
    // Row 2 (version 2) is read again (`>=`), harmlessly; row 2 itself is now a delete.
    assert!(
        upserts.contains(&("1".into(), Some("Ann Lee-Smith".into()))),
        "{upserts:?}"
    );
    assert!(
        upserts.contains(&("3".into(), Some("Cy Diaz".into()))),
        "{upserts:?}"
    );
    assert_eq!(deletes, ["2"]);
    // Nothing changed since: the next delta reads only the boundary row.
    let mut again = Sink::default();
    let out2 = c
        .delta_import(out.watermark.as_deref(), &mut again)
        .unwrap();
    assert!(again.changes.len() <= 1, "{:?}", again.changes);
    assert_eq!(out2.watermark, out.watermark);
}

fn bad_values_name_row_and_column(kind: Kind) {
    let db = Db::new(kind, "bad");
    let t = db.table("t");
    db.exec(&format!(
        "CREATE TABLE {t} (id INT, name VARCHAR(40), salary {})",
        db.kind.float()
    ));
    db.exec(&format!(
        "INSERT INTO {t} VALUES (1, 'Ann', NULL), (2, 'Bo', 1.5)"
    ));
    let mut c = connector(&db, &format!("table = \"{t}\"\nanchor = \"id\""));
    let mut sink = Sink::default();
    let e = c.full_import(&mut sink).unwrap_err().to_string();
    assert!(e.contains("row 2 (anchor `2`), column `salary`"), "{e}");
    assert!(e.contains("not mapped"), "{e}");

    db.exec(&format!("DELETE FROM {t}"));
    db.exec(&format!(
        "INSERT INTO {t} VALUES (1, 'Ann', NULL), (NULL, 'Bo', NULL)"
    ));
    let mut c = connector(&db, &format!("table = \"{t}\"\nanchor = \"id\""));
    let e = c.full_import(&mut Sink::default()).unwrap_err().to_string();
    assert!(e.contains("row 2, column `id`: the anchor is NULL"), "{e}");
}

macro_rules! on_every_server {
    ($($name:ident),*) => {
        mod postgres { $( #[test] fn $name() { super::$name(super::Kind::Postgres) } )* }
        mod mariadb { $( #[test] fn $name() { super::$name(super::Kind::MariaDb) } )* }
        mod sqlite { $( #[test] fn $name() { super::$name(super::Kind::Sqlite) } )* }
    };
}

/// Every date and time type of the server, as a plain attribute and as the watermark column:
/// (declared type, literal, seconds since the epoch it means).
fn date_and_time_types_map(kind: Kind) {
    let types: &[(&str, &str, i64)] = match kind {
        Kind::Postgres => &[
            ("TIMESTAMP", "'2020-01-02 03:04:05'", 1_577_934_245),
            ("TIMESTAMPTZ", "'2020-01-02 05:04:05+02'", 1_577_934_245),
            ("DATE", "'2020-01-02'", 1_577_923_200),
        ],
        Kind::MariaDb => &[
            ("DATETIME", "'2020-01-02 03:04:05'", 1_577_934_245),
            (
                "TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP",
                "'2020-01-02 03:04:05'",
                1_577_934_245,
            ),
            ("DATE", "'2020-01-02'", 1_577_923_200),
        ],
        Kind::Sqlite => &[
            ("DATETIME", "'2020-01-02 03:04:05'", 1_577_934_245),
            ("DATETIME", "1577934245", 1_577_934_245),
            ("DATE", "'2020-01-02'", 1_577_923_200),
            ("DATE", "1577923200", 1_577_923_200),
        ],
    };
    let db = Db::new(kind, "times");
    let t = db.table("t");
    let columns: Vec<String> = (0..types.len()).map(|i| format!("c{i}")).collect();
    let declared: Vec<String> = columns
        .iter()
        .zip(types)
        .map(|(c, (ty, _, _))| format!("{c} {ty}"))
        .collect();
    db.exec(&format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, {})",
        declared.join(", ")
    ));
    let literals: Vec<&str> = types.iter().map(|(_, l, _)| *l).collect();
    db.exec(&format!(
        "INSERT INTO {t} (id, {}) VALUES (1, {})",
        columns.join(", "),
        literals.join(", ")
    ));
    let mut c = connector(&db, &format!("table = \"{t}\"\nanchor = \"id\""));
    let mut sink = Sink::default();
    c.full_import(&mut sink).unwrap();
    for (col, (ty, _, secs)) in columns.iter().zip(types) {
        assert_eq!(
            sink.entries[0].attributes.first(col),
            Some(&Value::Timestamp(*secs)),
            "{ty}"
        );
    }
    for (col, (ty, _, _)) in columns.iter().zip(types) {
        let mut c = connector(
            &db,
            &format!("table = \"{t}\"\nanchor = \"id\"\nwatermark_column = \"{col}\""),
        );
        c.full_import(&mut Sink::default())
            .unwrap_or_else(|e| panic!("{ty} as watermark: {e}"));
        let wm = c
            .watermark_after_full_import()
            .unwrap_or_else(|e| panic!("{ty} as watermark: {e}"))
            .unwrap_or_else(|| panic!("{ty}: no watermark"));
        let mut sink = Sink::default();
        c.delta_import(Some(&wm), &mut sink)
            .unwrap_or_else(|e| panic!("{ty} as watermark {wm}: {e}"));
        assert_eq!(
            sink.changes.len(),
            1,
            "{ty}: the boundary row is read again"
        );
    }
}

on_every_server!(
    full_import_maps_types,
    date_and_time_types_map,
    delta_import_sees_insert_update_delete,
    bad_values_name_row_and_column,
    export_only_when_configured
);

#[test]
fn postgres_arrays_and_timestamp_watermark() {
    let db = Db::new(Kind::Postgres, "arr");
    let t = db.table("t");
    db.exec(&format!(
        "CREATE TABLE {t} (id TEXT PRIMARY KEY, mail TEXT[], changed TIMESTAMPTZ NOT NULL)"
    ));
    db.exec(&format!(
        "INSERT INTO {t} VALUES ('a', ARRAY['a@x.test','a2@x.test'], '2026-01-01 10:00:00.5+02')"
    ));
    let mut c = connector(
        &db,
        &format!("table = \"{t}\"\nanchor = \"id\"\nwatermark_column = \"changed\""),
    );
    let mut sink = Sink::default();
    c.full_import(&mut sink).unwrap();
    assert_eq!(texts(&sink.entries[0], "mail"), ["a2@x.test", "a@x.test"]);
    let wm = c.watermark_after_full_import().unwrap().unwrap();
    assert!(wm.starts_with("tstz:2026-01-01T08:00:00.5"), "{wm}");
    db.exec(&format!(
        "INSERT INTO {t} VALUES ('b', NULL, '2026-01-01 09:00:00+00')"
    ));
    let mut sink = Sink::default();
    let out = c.delta_import(Some(&wm), &mut sink).unwrap();
    assert_eq!(sink.changes.len(), 2, "the boundary row and the new one");
    assert!(out.method.contains("next full import"), "{}", out.method);
}

/// The connection is killed from a second session while rows stream: the import fails with the
/// server's error and reports no success.
fn goes_away_mid_import(kind: Kind) {
    let db = Db::new(kind, "away");
    let marker = db.table("marker");
    let query = match kind {
        Kind::Postgres => format!(
            "SELECT g AS id, 'person ' || g AS {marker} FROM generate_series(1, 3000000) g"
        ),
        _ => format!(
            "SELECT a.seq * 10000 + b.seq AS id, 'x' AS {marker} FROM seq_0_to_9999 a, seq_0_to_299 b"
        ),
    };
    let mut c = connector(&db, &format!("query = \"{query}\"\nanchor = \"id\""));
    let killer = db.clone_handle();
    let mut sink = Sink {
        on_entry: Some(Box::new(move |n| {
            if n == 10 {
                killer.kill_session_running(&marker);
            }
        })),
        ..Sink::default()
    };
    let e = c.full_import(&mut sink).unwrap_err().to_string();
    assert!(e.contains("query failed"), "{e}");
    assert!(sink.entries.len() < 3_000_000, "the read stopped early");
}

#[test]
fn postgres_goes_away_mid_import() {
    goes_away_mid_import(Kind::Postgres)
}

#[test]
fn mariadb_goes_away_mid_import() {
    goes_away_mid_import(Kind::MariaDb)
}

fn item(anchor: Option<&str>, op: ExportOp) -> ExportItem {
    ExportItem {
        cs_id: CsId::new("x"),
        anchor: anchor.map(Anchor::new),
        dn: Dn::new(anchor.unwrap_or("new")),
        object_type: ObjectTypeName::new("person"),
        op,
    }
}

fn export_only_when_configured(kind: Kind) {
    let db = Db::new(kind, "exp");
    let t = people(&db);
    let mut ro = connector(&db, &format!("table = \"{t}\"\nanchor = \"id\""));
    assert!(!ro.capabilities().export);
    assert!(ro.export(&[]).is_err(), "read-only by default");

    let mut c = connector(&db, &format!("table = \"{t}\"\nanchor = \"id\"\nexport = true\n[[multi_valued]]\nattribute = \"phones\"\ncolumn = \"phones\""));
    let mut add = Attributes::new();
    add.set("id", vec![Value::Integer(7)]);
    add.set("name", vec![Value::String("O'Brien; DROP TABLE x".into())]);
    add.set("version", vec![Value::Integer(9)]);
    add.set(
        "phones",
        vec![Value::String("1".into()), Value::String("2".into())],
    );
    let mut dup = add.clone();
    dup.set("name", vec![Value::String("duplicate".into())]);
    let repeated = add.clone();
    let batch = vec![
        item(
            None,
            ExportOp::Add {
                object_classes: vec![],
                attributes: add,
            },
        ),
        item(
            None,
            ExportOp::Add {
                object_classes: vec![],
                attributes: dup,
            },
        ),
        item(
            Some("1"),
            ExportOp::Update {
                new_dn: None,
                changes: vec![idsync_model::AttributeDelta {
                    name: "name".into(),
                    change: idsync_model::AttributeChange::Replace(vec![Value::String(
                        "Ann B".into(),
                    )]),
                }],
            },
        ),
        item(Some("2"), ExportOp::Delete),
    ];
    let res = c.export(&batch).unwrap();
    assert!(
        matches!(&res[0], ExportResult::Applied { anchor: Some(a) } if a.as_str() == "7"),
        "{res:?}"
    );
    assert!(
        matches!(&res[1], ExportResult::Failed(_)),
        "a duplicate key fails alone: {res:?}"
    );
    assert!(matches!(&res[2], ExportResult::Applied { .. }), "{res:?}");
    assert!(matches!(&res[3], ExportResult::Applied { .. }), "{res:?}");
    // The same insert sent again (a crash after the server committed it, before idsync recorded
    // it) finds its own row: adopted, not a duplicate-key error, and no second row.
    let again = c
        .export(&[item(
            None,
            ExportOp::Add {
                object_classes: vec![],
                attributes: repeated,
            },
        )])
        .unwrap();
    assert!(
        matches!(&again[0], ExportResult::Applied { anchor: Some(a) } if a.as_str() == "7"),
        "{again:?}"
    );
    let mut sink = Sink::default();
    connector(&db, &format!("table = \"{t}\"\nanchor = \"id\""))
        .full_import(&mut sink)
        .unwrap();
    let mut names: Vec<String> = sink
        .entries
        .iter()
        .map(|e| e.attributes.first("name").unwrap().to_text())
        .collect();
    names.sort();
    assert_eq!(names, ["Ann B", "O'Brien; DROP TABLE x"]);
    assert_eq!(
        by_anchor(&sink.entries, "7")
            .attributes
            .first("phones")
            .unwrap()
            .to_text(),
        "1;2"
    );
}

#[test]
fn settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("url"), "postgres://127.0.0.1/test").unwrap();
    let open = |text: &str| {
        let table: toml::Table = toml::from_str(text).unwrap();
        SqlConnector::new(ConnectorId::new("hr"), &table, dir.path())
            .err()
            .map(|e| e.to_string())
    };
    let e = open("url = \"postgres://u:hunter2@db/x\"\ntable = \"t\"\nanchor = \"id\"").unwrap();
    assert!(!e.contains("hunter2") && e.contains("reference"), "{e}");
    let e = open("url = \"file:url\"\ntable = \"t; DROP TABLE t\"\nanchor = \"id\"").unwrap();
    assert!(e.contains("not a plain SQL name"), "{e}");
    let e = open("url = \"file:url\"\nanchor = \"id\"").unwrap();
    assert!(e.contains("exactly one of `table` and `query`"), "{e}");
    let e = open("url = \"file:url\"\ntable = \"t\"\nanchor = \"id\"\ndelete_mode = \"tombstone\"\nwatermark_column = \"v\"").unwrap();
    assert!(e.contains("tombstone_column"), "{e}");
    assert!(open("url = \"file:url\"\ntable = \"t\"\nanchor = [\"a\", \"b\"]").is_none());
}

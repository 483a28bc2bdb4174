//! The store's behaviour on both backends: every test here runs against a SQLite file and
//! against a fresh database on the machine's PostgreSQL (127.0.0.1:5432, as `scripts/test`
//! starts it; `IDSYNC_TEST_PG` names another server), created for the test and dropped after.
//! A test whose server cannot be reached fails.

use crate::sqlite::{mv_from_doc, mv_to_doc, to_json};
use crate::*;
use idsync_model::{
    content_digest, AttributeChange, AttributeDelta, AttributeName, Attributes, Blob, ContentHash,
    Contribution, CsObject, Dn, MvObject, ObjectTypeName, PendingExport, Value,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The server's administrative URL (a database that exists, to create the test's in).
pub(crate) fn admin_url() -> String {
    std::env::var("IDSYNC_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database of its own for one test, dropped when the test ends (its name is unique across
/// processes and threads, so tests of several helpers run side by side).
pub(crate) struct TestDb {
    pub name: String,
    pub location: PgLocation,
}

fn admin(sql: &str) {
    use sqlx::Connection;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&admin_url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {} (start it as scripts/test does): {e}",
                    admin_url()
                )
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

impl TestDb {
    pub fn new() -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "idsync_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        admin(&format!("CREATE DATABASE {name} TEMPLATE template0"));
        let base = admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => panic!("{base} names no database"),
        };
        TestDb {
            location: PgLocation {
                url,
                password: None,
            },
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// What keeps a test's store: its temporary folder or its database.
pub(crate) enum Place {
    Dir(tempfile::TempDir),
    Db(TestDb),
}

impl Place {
    pub fn location(&self) -> StoreLocation {
        match self {
            Place::Dir(d) => StoreLocation::File(d.path().join("idsync.db")),
            Place::Db(db) => StoreLocation::Postgres(db.location.clone()),
        }
    }

    /// The store opened again, as by another process.
    pub fn reopen(&self) -> AnyStore {
        AnyStore::open(&self.location()).unwrap()
    }
}

impl Backend {
    pub fn place(self) -> Place {
        match self {
            Backend::Sqlite => Place::Dir(tempfile::tempdir().unwrap()),
            Backend::Postgres => Place::Db(TestDb::new()),
        }
    }

    pub fn open(self) -> (AnyStore, Place) {
        let place = self.place();
        (place.reopen(), place)
    }
}

/// Runs SQL on the store's own connection (what an older idsync, or damage, left in it).
pub(crate) fn raw(s: &mut AnyStore, sql: &str) {
    match s {
        AnyStore::Sqlite(s) => s.raw(sql),
        AnyStore::Postgres(s) => s.raw(sql),
    }
}

pub(crate) fn raw_count(s: &mut AnyStore, sql: &str) -> i64 {
    match s {
        AnyStore::Sqlite(s) => s.raw_count(sql),
        AnyStore::Postgres(s) => s.raw_count(sql),
    }
}

/// Each test, once per backend.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { super::$name(super::Backend::Sqlite) } )* }
        mod postgres { $( #[test] fn $name() { super::$name(super::Backend::Postgres) } )* }
    };
}

both!(
    a_scan_for_pending_changes_leaves_out_adds,
    an_export_outcome_written_alone_reads_back_as_the_whole_object_would,
    metaverse_documents_group_by_source_and_older_documents_still_read,
    a_scan_for_a_few_values_loads_only_objects_that_may_hold_them,
    unchanged_objects_are_marked_seen_for_their_import_only,
    a_wire_digest_lasts_until_the_object_is_written_without_one,
    a_store_keyed_by_the_older_dn_normaliser_is_keyed_again_when_opened,
    connector_space_round_trips_and_blobs_are_kept_once,
    a_rolled_back_step_leaves_nothing,
    metaverse_join_keys_find_objects,
    index_counts_agree_with_the_full_counts,
    a_store_of_another_schema_version_is_refused,
    objects_not_taken_are_found_by_dn_key_or_anchor_and_swept_by_run,
    a_committed_step_is_kept_whole_and_seen_by_another_connection,
    runs_their_errors_and_the_export_audit_read_back,
    a_full_import_scan_returns_only_the_objects_it_did_not_see,
);

fn cs(id: &str, anchor: &str, photo: &[u8]) -> CsObject {
    let mut hologram = Attributes::new();
    hologram.set("cn", vec!["Ann".into()]);
    hologram.set(
        "jpegPhoto",
        vec![Value::Binary(Blob::from_bytes(photo.to_vec()))],
    );
    CsObject {
        id: CsId::new(id),
        connector: ConnectorId::new("dir"),
        anchor: Some(Anchor::new(anchor)),
        dn: Dn::new("uid=Ann,ou=People"),
        object_type: ObjectTypeName::new("person"),
        object_classes: vec!["inetOrgPerson".into()],
        hologram,
        pending_import: Some(idsync_model::PendingImport::Add),
        pending_export: None,
        awaiting: vec![],
        awaiting_add: false,
        export_error: None,
        retry_count: 0,
        mv_id: None,
        seen_run: Some(RunId(1)),
        provisioned: false,
    }
}

fn a_store_of_another_schema_version_is_refused(b: Backend) {
    let (mut s, place) = b.open();
    s.cs_put(&cs("c1", "a1", b"x")).unwrap();
    raw(
        &mut s,
        "UPDATE meta SET value = '9' WHERE key = 'schema_version'",
    );
    drop(s);
    let e = AnyStore::open(&place.location()).unwrap_err().to_string();
    assert!(
        e.contains("schema version 9") && e.contains("this idsync knows 1"),
        "{e}"
    );
}

fn a_committed_step_is_kept_whole_and_seen_by_another_connection(b: Backend) {
    let (mut s, place) = b.open();
    s.begin().unwrap();
    for i in 0..50 {
        s.cs_put(&cs(&format!("c{i:02}"), &format!("a{i}"), &[i as u8; 100]))
            .unwrap();
    }
    s.state_set(&ConnectorId::new("dir"), "watermark", Some("42"))
        .unwrap();
    // Not yet committed: another connection sees nothing of it.
    let mut other = place.reopen();
    assert_eq!(other.cs_object_count(&ConnectorId::new("dir")).unwrap(), 0);
    s.commit().unwrap();
    assert_eq!(other.cs_object_count(&ConnectorId::new("dir")).unwrap(), 50);
    assert_eq!(
        other
            .state_get(&ConnectorId::new("dir"), "watermark")
            .unwrap()
            .as_deref(),
        Some("42")
    );
    let page = other
        .cs_scan(
            &ConnectorId::new("dir"),
            CsFilter::All,
            Some(&CsId::new("c47")),
            10,
        )
        .unwrap();
    assert_eq!(
        page.iter().map(|o| o.id.to_string()).collect::<Vec<_>>(),
        ["c48", "c49"]
    );
    // Ids order bytewise on both backends (upper case before lower, as SQLite).
    s.cs_put(&cs("B", "aB", b"y")).unwrap();
    s.cs_put(&cs("a", "aa", b"y")).unwrap();
    let all: Vec<String> = s
        .cs_scan(&ConnectorId::new("dir"), CsFilter::All, None, 100)
        .unwrap()
        .into_iter()
        .map(|o| o.id.to_string())
        .collect();
    assert_eq!(&all[..2], ["B", "a"]);
}

fn runs_their_errors_and_the_export_audit_read_back(b: Backend) {
    let (mut s, _place) = b.open();
    let dir = ConnectorId::new("dir");
    let r1 = s.run_start("full-import", Some(&dir)).unwrap();
    let errors = [
        ObjectError {
            object: "uid=b".into(),
            message: "second".into(),
        },
        ObjectError {
            object: "uid=a".into(),
            message: "first".into(),
        },
    ];
    s.run_finish(
        r1,
        "ok",
        &serde_json::json!({"added": 3}),
        Some("done"),
        &errors,
    )
    .unwrap();
    let r2 = s.run_start("export", Some(&dir)).unwrap();
    assert!(r2.0 > r1.0);
    s.begin().unwrap();
    for i in 0..3 {
        s.audit_export(&ExportRecord {
            run: r2,
            connector: "dir".into(),
            object: format!("uid=u{i}"),
            cs_id: format!("c{i}"),
            op: "add".into(),
            changes: serde_json::json!({"cn": [format!("U {i}")]}),
            rules: vec!["provision".into()],
            at: 7,
            result: "applied".into(),
        })
        .unwrap();
    }
    s.commit().unwrap();
    assert_eq!(s.mark_interrupted().unwrap(), 1);
    let runs = s.runs(10).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].id, runs[0].status.as_str()), (r2, "interrupted"));
    assert_eq!(runs[1].stats, serde_json::json!({"added": 3}));
    assert_eq!(runs[1].message.as_deref(), Some("done"));
    let back = s.run_errors(r1).unwrap();
    assert_eq!(
        back.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["second", "first"]
    );
    let first = s.run_exports(r2, 0, 2).unwrap();
    assert_eq!(first.len(), 2);
    let rest = s.run_exports(r2, first[1].0, 10).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1.object, "uid=u2");
    assert_eq!(rest[0].1.rules, ["provision"]);
    s.retry_set(&CsId::new("c1"), Some(99)).unwrap();
    s.retry_set(&CsId::new("c1"), Some(100)).unwrap();
    assert_eq!(s.retry_at(&CsId::new("c1")).unwrap(), Some(100));
    s.cs_put(&cs("c1", "a1", b"x")).unwrap();
    s.cs_delete(&CsId::new("c1")).unwrap();
    assert_eq!(s.retry_at(&CsId::new("c1")).unwrap(), None);
    assert_eq!(s.blob_len(&ContentHash::of(b"x")).unwrap(), Some(1));
    assert_eq!(s.blob_len(&ContentHash::of(b"nope")).unwrap(), None);
}

fn a_full_import_scan_returns_only_the_objects_it_did_not_see(b: Backend) {
    let (mut s, _place) = b.open();
    let dir = ConnectorId::new("dir");
    for i in 0..30 {
        let mut o = cs(&format!("c{i:02}"), &format!("a{i}"), b"p");
        o.seen_run = Some(RunId(1));
        s.cs_put(&o).unwrap();
    }
    // Run 2 writes some, marks some unchanged; the rest were not seen.
    for i in 0..10 {
        let mut o = cs(&format!("c{i:02}"), &format!("a{i}"), b"p");
        o.seen_run = Some(RunId(2));
        s.cs_put(&o).unwrap();
    }
    for i in 10..25 {
        s.cs_mark_seen(&CsId::new(format!("c{i:02}")), RunId(2))
            .unwrap();
    }
    let mut after: Option<CsId> = None;
    let mut unseen = Vec::new();
    loop {
        let page = s
            .cs_scan(&dir, CsFilter::NotSeenIn(RunId(2)), after.as_ref(), 2)
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        unseen.extend(page.into_iter().map(|o| o.id.to_string()));
    }
    assert_eq!(unseen, ["c25", "c26", "c27", "c28", "c29"]);
}

fn a_scan_for_pending_changes_leaves_out_adds(b: Backend) {
    let (mut s, _db) = b.open();
    let pending = [
        Some(PendingExport::Add {
            object_classes: vec![],
            attributes: Attributes::new(),
        }),
        Some(PendingExport::Update {
            new_dn: None,
            changes: vec![],
        }),
        Some(PendingExport::Delete),
        None,
    ];
    for (i, p) in pending.into_iter().enumerate() {
        let mut o = cs(&format!("c{i}"), &format!("a{i}"), b"photo");
        o.pending_export = p;
        // A failed export keeps its error, pending or not (c3: not confirmed).
        if i == 1 || i == 3 {
            o.export_error = Some("refused".to_owned());
        }
        s.cs_put(&o).unwrap();
    }
    let ids = |s: &mut AnyStore, f| -> Vec<String> {
        s.cs_scan(&ConnectorId::new("dir"), f, None, 10)
            .unwrap()
            .into_iter()
            .map(|o| o.id.to_string())
            .collect()
    };
    assert_eq!(ids(&mut s, CsFilter::PendingChange), ["c1", "c2"]);
    assert_eq!(ids(&mut s, CsFilter::PendingExport), ["c0", "c1", "c2"]);
    assert_eq!(ids(&mut s, CsFilter::Failed), ["c1", "c3"]);
}

fn an_export_outcome_written_alone_reads_back_as_the_whole_object_would(b: Backend) {
    let (mut s, _db) = b.open();
    let mut o = cs("c1", "a1", b"photo");
    o.anchor = None;
    o.pending_import = None;
    o.pending_export = Some(PendingExport::Update {
        new_dn: None,
        changes: vec![],
    });
    s.cs_put(&o).unwrap();
    let mut other = cs("c2", "new-anchor", b"other");
    other.dn = Dn::new("uid=Bob,ou=People");
    s.cs_put(&other).unwrap();
    o.anchor = Some(Anchor::new("new-anchor"));
    o.pending_export = None;
    o.awaiting = vec![AttributeDelta {
        name: "photo".into(),
        change: AttributeChange::Replace(vec![Value::Binary(Blob::from_bytes(
            b"new photo".to_vec(),
        ))]),
    }];
    o.awaiting_add = true;
    o.export_error = None;
    s.cs_set_exported(&o).unwrap();
    assert_eq!(s.cs_get(&o.id).unwrap().unwrap(), o);
    // As with cs_put, the object that held the anchor before is replaced.
    assert_eq!(s.cs_get(&other.id).unwrap(), None);
    let AttributeChange::Replace(v) = &o.awaiting[0].change else {
        unreachable!()
    };
    let Value::Binary(b) = &v[0] else {
        unreachable!()
    };
    assert_eq!(s.blob_get(&b.hash).unwrap().unwrap(), b"new photo".to_vec());
}

fn metaverse_documents_group_by_source_and_older_documents_still_read(b: Backend) {
    let c = |attr: &str, cs: &str, t: i64| Contribution {
        attribute: AttributeName::new(attr),
        connector: ConnectorId::new(if cs == "c1" { "dir" } else { "hr" }),
        cs_id: CsId::new(cs),
        rule: format!("r-{attr}"),
        values: vec![Value::String(format!("{attr}-{cs}"))],
        time: t,
    };
    let o = MvObject {
        id: MvId::new("m1"),
        object_type: ObjectTypeName::new("person"),
        // Not grouped by the source where the order says otherwise.
        contributions: vec![
            c("cn", "c1", 5),
            c("mail", "c1", 5),
            c("title", "c2", 6),
            c("sn", "c1", 5),
        ],
    };
    let doc = mv_to_doc(&o);
    assert!(doc.starts_with("{\"v\":2"), "{doc}");
    assert_eq!(doc.matches("\"c1\"").count(), 2, "{doc}");
    assert_eq!(mv_from_doc("m1", "person", &doc).unwrap(), o);
    let (mut s, _db) = b.open();
    s.mv_put(&o, &[]).unwrap();
    assert_eq!(s.mv_get(&o.id).unwrap().unwrap(), o);
    assert_eq!(s.mv_scan(None, 10).unwrap(), vec![o.clone()]);
    // A row written by an idsync before grouped documents.
    raw(
        &mut s,
        &format!(
            "UPDATE mv_object SET doc = '{}'",
            to_json(&o).replace('\'', "''")
        ),
    );
    assert_eq!(s.mv_get(&o.id).unwrap().unwrap(), o);
    raw(&mut s, "UPDATE mv_object SET doc = '{\"v\":9,\"s\":[]}'");
    let e = s.mv_get(&o.id).unwrap_err().to_string();
    assert!(
        e.contains("metaverse object m1") && e.contains("version 9"),
        "{e}"
    );
}

fn a_scan_for_a_few_values_loads_only_objects_that_may_hold_them(b: Backend) {
    let (mut s, _db) = b.open();
    let with_mail = |id: &str, mail: &str| {
        let mut o = cs(id, id, id.as_bytes());
        o.hologram.set("mail", vec![mail.into()]);
        o
    };
    s.cs_put(&with_mail("c1", "Ann@Example.com")).unwrap();
    s.cs_put(&with_mail("c2", "bob@example.com")).unwrap();
    s.cs_put(&with_mail("c3", "\"quoted\"@example.com"))
        .unwrap();
    // Not ASCII: always loaded, the caller compares.
    s.cs_put(&with_mail("c4", "zoë@example.com")).unwrap();
    let dir = ConnectorId::new("dir");
    let ids = |s: &mut AnyStore, texts: &[&str], limit: usize| {
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        let mut after: Option<CsId> = None;
        let mut out = Vec::new();
        loop {
            let (last, page) = s
                .cs_scan_may_hold(&dir, &texts, after.as_ref(), limit)
                .unwrap();
            let Some(last) = last else { break };
            after = Some(last);
            out.extend(page.into_iter().map(|o| o.id.to_string()));
        }
        out
    };
    assert_eq!(ids(&mut s, &["ann@EXAMPLE.com"], 1), ["c1", "c4"]);
    assert_eq!(ids(&mut s, &["\"Quoted\"@example.com"], 10), ["c3", "c4"]);
    assert_eq!(ids(&mut s, &["nobody@example.com"], 2), ["c4"]);
}

fn unchanged_objects_are_marked_seen_for_their_import_only(b: Backend) {
    let (mut s, _db) = b.open();
    let o = cs("c1", "a1", b"x");
    s.cs_put(&o).unwrap();
    let state = s
        .cs_state_by_anchor(&o.connector, &Anchor::new("a1"))
        .unwrap()
        .unwrap();
    assert_eq!(
        state.digest,
        Some(content_digest(
            &o.dn,
            "person",
            &o.object_classes,
            &o.hologram
        ))
    );
    assert!(state.settled);
    let not_seen = |s: &mut AnyStore, run: i64| {
        s.cs_scan(&o.connector, CsFilter::NotSeenIn(RunId(run)), None, 10)
            .unwrap()
            .len()
    };
    assert_eq!(not_seen(&mut s, 2), 1);
    s.cs_mark_seen(&o.id, RunId(2)).unwrap();
    assert_eq!(not_seen(&mut s, 2), 0);
    // The row itself is not rewritten, and a later import starts with no marks.
    assert_eq!(s.cs_get(&o.id).unwrap().unwrap().seen_run, Some(RunId(1)));
    s.cs_mark_seen(&CsId::new("other"), RunId(3)).unwrap();
    assert_eq!(not_seen(&mut s, 3), 1);
}

fn a_wire_digest_lasts_until_the_object_is_written_without_one(b: Backend) {
    let (mut s, _db) = b.open();
    let o = cs("c1", "a1", b"x");
    let digest = content_digest(&o.dn, "person", &o.object_classes, &o.hologram);
    let state = |s: &mut AnyStore| {
        s.cs_state_by_anchor(&o.connector, &Anchor::new("a1"))
            .unwrap()
            .unwrap()
    };
    s.cs_put_digested(&o, Some(digest), Some([1; 32])).unwrap();
    assert_eq!(state(&mut s).wire_digest, Some([1; 32]));
    assert_eq!(state(&mut s).digest, Some(digest));
    s.cs_set_digest(&o.id, Some(digest), Some([2; 32])).unwrap();
    assert_eq!(state(&mut s).wire_digest, Some([2; 32]));
    // An export's bookkeeping leaves it; any write of the whole object forgets it.
    s.cs_set_exported(&o).unwrap();
    assert_eq!(state(&mut s).wire_digest, Some([2; 32]));
    s.cs_put(&o).unwrap();
    assert_eq!(state(&mut s).wire_digest, None);
    assert_eq!(state(&mut s).digest, Some(digest));
}

fn a_store_keyed_by_the_older_dn_normaliser_is_keyed_again_when_opened(b: Backend) {
    let (mut s, db) = b.open();
    let mut o = cs("c1", "a1", b"x");
    o.dn = Dn::new(r"uid=comma\2Cplus,ou=Staff");
    s.cs_put(&o).unwrap();
    let waiting = Dn::new(r"uid=Ann\2C B,ou=Staff");
    s.pending_ref_add(&o.connector, &waiting, &o.id).unwrap();
    s.filtered_put(&filtered(r"cn=Admins\2C Old,ou=Groups", None, 1))
        .unwrap();
    // What the older normaliser wrote: lower case, escapes as they came.
    raw(
        &mut s,
        r"UPDATE cs_object SET dn_norm = 'uid=comma\2cplus,ou=staff';
          UPDATE pending_ref SET target = 'uid=ann\2c b,ou=staff';
          UPDATE cs_filtered SET dn_norm = 'cn=admins\2c old,ou=groups';
          DELETE FROM meta WHERE key = 'dn_key';",
    );
    drop(s);
    let mut s = db.reopen();
    let found = s
        .cs_by_dn(&o.connector, &Dn::new(r"UID=comma\,plus, ou=staff"))
        .unwrap();
    assert_eq!(found.map(|f| f.id), Some(o.id.clone()));
    assert_eq!(
        s.pending_ref_take(&o.connector, &Dn::new(r"uid=ann\, B,ou=Staff"))
            .unwrap(),
        vec![o.id.clone()]
    );
    assert!(s
        .filtered_find(&o.connector, r"CN=admins\, old,ou=groups")
        .unwrap()
        .is_some());
}

fn connector_space_round_trips_and_blobs_are_kept_once(b: Backend) {
    let (mut s, _db) = b.open();
    let o = cs("c1", "a1", b"jpeg-bytes");
    s.cs_put(&o).unwrap();
    s.cs_put(&cs("c2", "a2", b"jpeg-bytes")).unwrap();
    let blobs = raw_count(&mut s, "SELECT count(*) FROM blob");
    assert_eq!(blobs, 1);
    let back = s
        .cs_by_anchor(&o.connector, &Anchor::new("a1"))
        .unwrap()
        .unwrap();
    assert_eq!(back, o); // binary values compare by hash
    assert_eq!(
        s.cs_by_dn(&o.connector, &Dn::new("UID=ann, ou=people"))
            .unwrap()
            .unwrap()
            .id,
        o.id
    );
    let hash = ContentHash::of(b"jpeg-bytes");
    assert_eq!(s.blob_get(&hash).unwrap().unwrap(), b"jpeg-bytes");
    let page = s
        .cs_scan(&o.connector, CsFilter::PendingImport, None, 1)
        .unwrap();
    assert_eq!(page.len(), 1);
    let page2 = s
        .cs_scan(&o.connector, CsFilter::PendingImport, Some(&page[0].id), 10)
        .unwrap();
    assert_eq!(page2.len(), 1);
    assert_eq!(
        s.cs_scan(&o.connector, CsFilter::NotSeenIn(RunId(1)), None, 10)
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        s.cs_scan(&o.connector, CsFilter::NotSeenIn(RunId(2)), None, 10)
            .unwrap()
            .len(),
        2
    );
}

fn a_rolled_back_step_leaves_nothing(b: Backend) {
    let (mut s, _db) = b.open();
    s.begin().unwrap();
    s.cs_put(&cs("c1", "a1", b"x")).unwrap();
    s.rollback().unwrap();
    assert!(s.cs_get(&CsId::new("c1")).unwrap().is_none());
}

fn metaverse_join_keys_find_objects(b: Backend) {
    let (mut s, _db) = b.open();
    let mv = MvObject {
        id: MvId::new("m1"),
        object_type: ObjectTypeName::new("person"),
        contributions: vec![Contribution {
            attribute: "uid".into(),
            connector: ConnectorId::new("dir"),
            cs_id: CsId::new("c1"),
            rule: "r".into(),
            values: vec!["ann".into()],
            time: 0,
        }],
    };
    s.mv_put(&mv, &[("join1".into(), "ann".into())]).unwrap();
    assert_eq!(s.mv_find("join1", "ann").unwrap(), vec![MvId::new("m1")]);
    s.mv_put(&mv, &[("join1".into(), "anne".into())]).unwrap();
    assert!(s.mv_find("join1", "ann").unwrap().is_empty());
    assert_eq!(s.mv_get(&mv.id).unwrap().unwrap(), mv);
}

/// A store with enough rows to span many pages, closed cleanly.
fn index_counts_agree_with_the_full_counts(b: Backend) {
    let (mut s, _db) = b.open();
    for i in 0..5 {
        let mut o = cs(&format!("c{i}"), &format!("a{i}"), b"p");
        if i % 2 == 0 {
            o.pending_import = None;
        }
        if i < 2 {
            o.pending_export = Some(PendingExport::Delete);
        }
        s.cs_put(&o).unwrap();
    }
    let mut other = cs("x", "ax", b"p");
    other.connector = ConnectorId::new("hr");
    s.cs_put(&other).unwrap();
    let dir = ConnectorId::new("dir");
    let full = s.cs_counts(&dir).unwrap();
    assert_eq!(
        (full.objects, full.pending_import, full.pending_export),
        (5, 2, 2)
    );
    assert_eq!(s.cs_object_count(&dir).unwrap(), full.objects);
    assert_eq!(
        s.cs_pending_import_count(&dir).unwrap(),
        full.pending_import
    );
    assert_eq!(
        s.cs_pending_export_count(&dir).unwrap(),
        full.pending_export
    );
}

#[test]
fn a_postgresql_store_has_one_runner_named_to_a_second_and_released_when_dropped() {
    let db = TestDb::new();
    let store = StoreLocation::Postgres(db.location.clone());
    let first = RunnerLock::acquire_for(&store, "full-cycle", Duration::ZERO).unwrap();
    let e = RunnerLock::acquire_for(&store, "export", Duration::from_millis(300)).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains(&format!("pid {} on ", std::process::id()))
            && m.contains("full-cycle")
            && m.contains("in use by another idsync run")
            && m.contains(&db.location.url),
        "{m}"
    );
    // The store itself opens and works beside the lock (the lock is on its own connection).
    let mut s = AnyStore::open(&store).unwrap();
    s.cs_put(&cs("c1", "a1", b"x")).unwrap();
    drop(first);
    let again = RunnerLock::acquire_for(&store, "export", Duration::from_secs(5)).unwrap();
    let m = RunnerLock::acquire_for(&store, "x", Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert!(m.contains("running `export`"), "{m}");
    drop(again);
}

#[test]
fn a_postgresql_url_with_a_password_is_refused_and_a_remote_server_must_verify_tls() {
    let l = |url: &str| PgLocation {
        url: url.to_owned(),
        password: None,
    };
    let e = l("postgres://u:hunter2@127.0.0.1/x").options().unwrap_err();
    assert!(e.to_string().contains("by reference"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = l("postgres://u@127.0.0.1/x?password=hunter2")
        .options()
        .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    use sqlx::postgres::PgSslMode;
    let mode = |url: &str| l(url).options().unwrap().get_ssl_mode();
    assert!(matches!(
        mode("postgres://u@db.example.com/x"),
        PgSslMode::VerifyFull
    ));
    assert!(matches!(
        mode("postgres://u@10.1.2.3/x"),
        PgSslMode::VerifyFull
    ));
    assert!(matches!(
        mode("postgres://u@127.0.0.1/x"),
        PgSslMode::Prefer
    ));
    assert!(matches!(
        mode("postgres://u@localhost/x"),
        PgSslMode::Prefer
    ));
    assert!(matches!(
        mode("postgres://u@db.example.com/x?sslmode=require"),
        PgSslMode::Require
    ));
    // The password given apart never shows in the debug form.
    let with = PgLocation {
        url: "postgres://u@db/x".into(),
        password: Some("hunter2".into()),
    };
    assert!(!format!("{with:?}").contains("hunter2"));
}

#[test]
fn a_step_whose_connection_is_terminated_fails_stores_nothing_and_the_next_step_works() {
    let db = TestDb::new();
    let location = StoreLocation::Postgres(db.location.clone());
    let mut s = AnyStore::open(&location).unwrap();
    let AnyStore::Postgres(pg) = &mut s else {
        unreachable!()
    };
    let pid = pg.backend_pid().unwrap();
    let run = s.run_start("full-import", None).unwrap();
    s.begin().unwrap();
    s.cs_put(&cs("c1", "a1", b"x")).unwrap();
    admin(&format!("SELECT pg_terminate_backend({pid})"));
    let e = s.cs_put(&cs("c2", "a2", b"y")).unwrap_err().to_string();
    assert!(e.contains("PostgreSQL"), "{e}");
    // The engine rolls back and records the failure: the store connects again for it.
    s.rollback().unwrap();
    s.run_finish(run, "failed", &serde_json::Value::Null, Some(&e), &[])
        .unwrap();
    let mut other = AnyStore::open(&location).unwrap();
    assert_eq!(other.cs_object_count(&ConnectorId::new("dir")).unwrap(), 0);
    assert_eq!(other.runs(1).unwrap()[0].status, "failed");
    s.begin().unwrap();
    s.cs_put(&cs("c2", "a2", b"y")).unwrap();
    s.commit().unwrap();
    assert_eq!(other.cs_object_count(&ConnectorId::new("dir")).unwrap(), 1);
}

fn filtered(dn: &str, anchor: Option<&str>, run: i64) -> FilteredObject {
    FilteredObject {
        connector: ConnectorId::new("dir"),
        dn: Dn::new(dn),
        anchor: anchor.map(Anchor::new),
        reason: "object class groupOfNames not in scope".into(),
        run: RunId(run),
        at: 1_700_000_000,
    }
}

/// Issue 22 item 10: an object not taken is found by any spelling of its DN or by its
/// anchor, one record per DN, and a sweep keeps only the records its import wrote.
fn objects_not_taken_are_found_by_dn_key_or_anchor_and_swept_by_run(b: Backend) {
    let (mut s, _db) = b.open();
    let c = ConnectorId::new("dir");
    let admins = filtered(r"cn=Admins\2C Old,ou=Groups,dc=example", Some("g-1"), 3);
    s.begin().unwrap();
    s.filtered_put(&admins).unwrap();
    s.rollback().unwrap();
    assert_eq!(s.filtered_find(&c, admins.dn.as_str()).unwrap(), None);
    s.filtered_put(&admins).unwrap();
    s.filtered_put(&filtered("uid=nobody,ou=People,dc=example", None, 3))
        .unwrap();
    for spelling in [
        r"CN=admins\, old, OU=groups,DC=Example",
        r"cn=Admins\2c Old,ou=Groups,dc=example",
        "g-1",
    ] {
        assert_eq!(
            s.filtered_find(&c, spelling).unwrap().as_ref(),
            Some(&admins),
            "{spelling}"
        );
    }
    assert_eq!(
        s.filtered_find(&ConnectorId::new("other"), "g-1").unwrap(),
        None
    );
    // The same DN again replaces its record.
    let mut again = admins.clone();
    again.run = RunId(4);
    again.reason = "missing anchor".into();
    again.dn = Dn::new(r"cn=admins\, old,ou=Groups,dc=example");
    s.filtered_put(&again).unwrap();
    assert_eq!(s.filtered_find(&c, "g-1").unwrap(), Some(again.clone()));
    // Run 4 read the whole content and did not find `nobody` again.
    assert_eq!(s.filtered_sweep(&c, RunId(4)).unwrap(), 1);
    assert_eq!(
        s.filtered_find(&c, "uid=nobody,ou=People,dc=example")
            .unwrap(),
        None
    );
    s.filtered_remove(&c, Some(&Anchor::new("g-1")), &Dn::new("cn=x"))
        .unwrap();
    assert_eq!(s.filtered_find(&c, again.dn.as_str()).unwrap(), None);
}

//! Export: a failing object keeps its pending export with the system's message and a retry
//! count while the others go on, and is retried by the next export; a person who leaves the
//! directory is deprovisioned from the target.

use crate::harness::*;
use idsync_connectors::{
    Capabilities, Connector, DeltaOutcome, ExportItem, ExportResult, ImportSink,
};
use idsync_engine::Step;
use idsync_model::{ConnectorId, PendingExport};
use std::cell::RefCell;
use std::rc::Rc;

fn config() -> String {
    format!("{}\n[retry]\nbackoff_seconds = 0\n", config_with_backoff())
}

fn config_with_backoff() -> String {
    format!(
        "{DIRECTORY}{}{}{}{PROVISION_PROFILES}{}{}",
        profiles(&["id", "account", "title"], ""),
        import_flow("directory", "uid", "uid"),
        import_flow("directory", "title", "title"),
        export_flow("profiles", "account", "uid"),
        export_flow("profiles", "title", "title"),
    )
}

fn three_people() -> String {
    [
        person("ann", "a-1", &["title: Engineer"]),
        person("bob", "b-2", &["title: Analyst"]),
        person("cat", "c-3", &["title: Manager"]),
    ]
    .concat()
}

/// The real CSV connector, except that the system refuses the objects named in `refuse`.
struct Refusing {
    inner: Box<dyn Connector>,
    refuse: Rc<RefCell<Vec<String>>>,
}

impl Connector for Refusing {
    fn id(&self) -> &ConnectorId {
        self.inner.id()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn full_import(&mut self, sink: &mut dyn ImportSink) -> idsync_connectors::Result<()> {
        self.inner.full_import(sink)
    }
    fn delta_import(
        &mut self,
        watermark: Option<&str>,
        sink: &mut dyn ImportSink,
    ) -> idsync_connectors::Result<DeltaOutcome> {
        self.inner.delta_import(watermark, sink)
    }
    fn export(&mut self, batch: &[ExportItem]) -> idsync_connectors::Result<Vec<ExportResult>> {
        let refuse = self.refuse.borrow().clone();
        let refused = |i: &ExportItem| refuse.iter().any(|d| d == i.dn.as_str());
        let pass: Vec<ExportItem> = batch.iter().filter(|i| !refused(i)).cloned().collect();
        let mut results = self.inner.export(&pass)?.into_iter();
        Ok(batch
            .iter()
            .map(|i| {
                if refused(i) {
                    ExportResult::Failed(format!("refused by the test system: {}", i.dn))
                } else {
                    results.next().expect("one result per item")
                }
            })
            .collect())
    }
    fn watermark_after_full_import(&mut self) -> idsync_connectors::Result<Option<String>> {
        self.inner.watermark_after_full_import()
    }
    fn finish_export(&mut self) -> idsync_connectors::Result<()> {
        self.inner.finish_export()
    }
}

fn accounts(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = env
        .csv_rows("profiles.csv")
        .into_iter()
        .map(|r| r["account"].clone())
        .collect();
    v.sort();
    v
}

fn refusing(env: &mut Env, who: &[&str]) -> Rc<RefCell<Vec<String>>> {
    let settings = env
        .engine
        .rules
        .connector("profiles")
        .expect("profiles")
        .settings
        .clone();
    let inner = idsync_connectors::open(
        &ConnectorId::new("profiles"),
        "csv",
        &settings,
        env.dir.path(),
    )
    .expect("open the CSV connector");
    let refuse = Rc::new(RefCell::new(who.iter().map(|s| s.to_string()).collect()));
    env.engine.set_connector(Box::new(Refusing {
        inner,
        refuse: Rc::clone(&refuse),
    }));
    refuse
}

#[test]
fn a_failing_export_backs_off_without_blocking_the_others() {
    let config = format!(
        "{}\n[retry]\nbackoff_seconds = 3600\nreport_after = 2\n",
        config_with_backoff()
    );
    let mut env = Env::new(&config, &[("directory.ldif", three_people().as_bytes())]);
    let refuse = refusing(&mut env, &["bob"]);
    env.step(Step::FullImport, "directory");
    env.step(Step::FullSync, "directory");
    let r = env.step(Step::Export, "profiles");
    assert_eq!((r.stats.exported, r.stats.export_errors), (2, 1));
    assert!(
        r.errors[0].message.contains("next attempt in 3600 s"),
        "{:?}",
        r.errors
    );
    // The next export waits for bob's backoff and says so; nothing is sent for him.
    let r = env.step(Step::Export, "profiles");
    assert_eq!(
        (
            r.stats.exported,
            r.stats.export_errors,
            r.stats.export_deferred
        ),
        (0, 0, 1),
        "{:?}",
        r.stats
    );
    assert!(
        r.notes.iter().any(|n| n.contains("--retry-now")),
        "{:?}",
        r.notes
    );
    assert_eq!(env.cs_dn("profiles", "bob").retry_count, 1);
    // Retried now, it fails again: the delay doubles and it is reported as failing repeatedly.
    env.engine.options.retry_now = true;
    let r = env.step(Step::Export, "profiles");
    assert_eq!(r.stats.export_errors, 1);
    assert!(
        r.errors[0]
            .message
            .contains("keeps failing (attempt 2, next attempt in 3600 s"),
        "{:?}",
        r.errors
    );
    // Accepted at last: the retry state is gone.
    refuse.borrow_mut().clear();
    let r = env.step(Step::Export, "profiles");
    assert_eq!((r.stats.exported, r.stats.export_errors), (1, 0));
    env.engine.options.retry_now = false;
    let bob = env.cs_dn("profiles", "bob");
    assert_eq!((bob.export_error.as_deref(), bob.retry_count), (None, 0));
    assert_eq!(accounts(&env), ["ann", "bob", "cat"]);
}

#[test]
fn export_error_is_kept_and_retried() {
    let mut env = Env::new(&config(), &[("directory.ldif", three_people().as_bytes())]);
    let settings = env
        .engine
        .rules
        .connector("profiles")
        .expect("profiles")
        .settings
        .clone();
    let inner = idsync_connectors::open(
        &ConnectorId::new("profiles"),
        "csv",
        &settings,
        env.dir.path(),
    )
    .expect("open the CSV connector");
    let refuse = Rc::new(RefCell::new(vec!["bob".to_owned()]));
    env.engine.set_connector(Box::new(Refusing {
        inner,
        refuse: Rc::clone(&refuse),
    }));

    env.step(Step::FullImport, "directory");
    let r = env.step(Step::FullSync, "directory");
    assert_eq!(r.stats.provisioned, 3);
    let r = env.step(Step::Export, "profiles");
    assert_eq!(
        (r.stats.exported, r.stats.export_errors),
        (2, 1),
        "{:?}",
        r.stats
    );
    assert!(
        r.errors
            .iter()
            .any(|e| e.object == "bob" && e.message.contains("refused by the test system")),
        "{:?}",
        r.errors
    );
    assert_eq!(env.last_run().status, "completed-with-errors");
    assert_eq!(accounts(&env), ["ann", "cat"], "the others were exported");

    let bob = env.cs_dn("profiles", "bob");
    assert!(
        matches!(bob.pending_export, Some(PendingExport::Add { .. })),
        "{:?}",
        bob.pending_export
    );
    assert!(
        bob.export_error
            .as_deref()
            .is_some_and(|m| m.contains("refused by the test system")),
        "{:?}",
        bob.export_error
    );
    assert_eq!(bob.retry_count, 1);
    for a in ["ann", "cat"] {
        let o = env.cs_dn("profiles", a);
        assert_eq!(o.pending_export, None, "{a}");
        assert_eq!((o.export_error.as_deref(), o.retry_count), (None, 0), "{a}");
    }

    // A sync in between keeps the pending export (and its error) as it is.
    env.step(Step::FullSync, "directory");
    let bob = env.cs_dn("profiles", "bob");
    assert!(matches!(
        bob.pending_export,
        Some(PendingExport::Add { .. })
    ));
    assert_eq!(bob.retry_count, 1);

    // The next export retries it (and it fails again).
    let r = env.step(Step::Export, "profiles");
    assert_eq!(
        (r.stats.exported, r.stats.export_errors),
        (0, 1),
        "{:?}",
        r.stats
    );
    assert_eq!(env.cs_dn("profiles", "bob").retry_count, 2);

    // The system accepts it now.
    refuse.borrow_mut().clear();
    let r = env.step(Step::Export, "profiles");
    assert_eq!(
        (r.stats.exported, r.stats.export_errors),
        (1, 0),
        "{:?}",
        r.stats
    );
    let bob = env.cs_dn("profiles", "bob");
    assert_eq!(bob.pending_export, None);
    assert_eq!((bob.export_error.as_deref(), bob.retry_count), (None, 0));
    assert_eq!(accounts(&env), ["ann", "bob", "cat"]);
    let r = env.step(Step::FullImport, "profiles");
    assert_eq!(r.stats.confirmed, 3, "{:?}", r.stats);
}

#[test]
fn deprovision_on_delete() {
    let mut env = Env::new(&config(), &[("directory.ldif", three_people().as_bytes())]);
    env.cycle(idsync_engine::CycleKind::Full);
    assert_eq!(accounts(&env), ["ann", "bob", "cat"]);
    assert_eq!(env.mv_count(), 3);

    // Bob leaves the directory.
    let two = [
        person("ann", "a-1", &["title: Engineer"]),
        person("cat", "c-3", &["title: Manager"]),
    ]
    .concat();
    env.write("directory.ldif", &two);
    let r = env.step(Step::FullImport, "directory");
    assert_eq!(r.stats.deleted, 1);
    let r = env.step(Step::DeltaSync, "directory");
    assert_eq!(
        (r.stats.mv_deleted, r.stats.deprovisioned),
        (1, 1),
        "{:?}",
        r.stats
    );
    assert_eq!(env.mv_count(), 2);
    assert!(env.cs_by_anchor("directory", "b-2").is_none());
    let bob = env.cs_dn("profiles", "bob");
    assert_eq!(bob.pending_export, Some(PendingExport::Delete));
    assert_eq!(bob.mv_id, None);
    for a in ["ann", "cat"] {
        assert_eq!(env.cs_dn("profiles", a).pending_export, None, "{a}");
    }

    let r = env.step(Step::Export, "profiles");
    assert_eq!(r.stats.exported, 1);
    assert_eq!(accounts(&env), ["ann", "cat"], "the target lost Bob's row");
    assert!(env.cs_by_dn("profiles", "bob").is_none());
    let r = env.step(Step::FullImport, "profiles");
    assert_eq!((r.stats.deleted, r.stats.added), (0, 0), "{:?}", r.stats);
}

#[test]
fn unique_value_conflict_is_reported_with_both_objects_and_not_exported() {
    // Titles are unique in this target: Ann holds "Engineer" there; then Bob becomes one too.
    let config = format!(
        "{}\n[[unique]]\nconnector = \"profiles\"\nattribute = \"title\"\n",
        config()
    );
    let mut env = Env::new(&config, &[("directory.ldif", three_people().as_bytes())]);
    env.cycle(idsync_engine::CycleKind::Full);
    assert_eq!(accounts(&env), ["ann", "bob", "cat"]);
    let changed = [
        person("ann", "a-1", &["title: Engineer"]),
        person("bob", "b-2", &["title: Engineer"]),
        person("cat", "c-3", &["title: Manager"]),
    ]
    .concat();
    env.write("directory.ldif", &changed);
    env.step(Step::FullImport, "directory");
    env.step(Step::DeltaSync, "directory");
    let r = env.step(Step::Export, "profiles");
    assert_eq!(r.stats.exported, 0);
    assert_eq!(r.stats.export_errors, 1);
    let msg = &r.errors[0].message;
    assert!(
        msg.contains("uniqueness conflict") && msg.contains("Engineer") && msg.contains("ann"),
        "{msg}"
    );
    assert_eq!(r.errors[0].object, "bob");
    // Bob's change stays pending with the reason; the target still has his old title.
    let bob = env.cs_dn("profiles", "bob");
    assert!(bob.pending_export.is_some());
    assert!(bob
        .export_error
        .as_deref()
        .unwrap_or("")
        .contains("uniqueness conflict"));
    let rows = env.csv_rows("profiles.csv");
    let bob_row = rows.iter().find(|r| r["account"] == "bob").unwrap();
    assert_eq!(bob_row["title"], "Analyst");
}

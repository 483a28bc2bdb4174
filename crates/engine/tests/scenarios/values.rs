//! Multi-valued attributes change value by value, from the import's delta to the pending export:
//! one value more is one added value, never the whole attribute again.

use crate::harness::*;
use idsync_engine::{CycleKind, Step};
use idsync_model::{AttributeChange, PendingExport, PendingImport, Value};

fn config() -> String {
    format!(
        "{DIRECTORY}{}{}{}{PROVISION_PROFILES}{}{}",
        profiles(&["id", "account", "mail"], "multi_valued = [\"mail\"]"),
        import_flow("directory", "uid", "uid"),
        import_flow("directory", "mail", "mail"),
        export_flow("profiles", "account", "uid"),
        export_flow("profiles", "mail", "mail"),
    )
}

const MAILS: [&str; 3] = [
    "mail: ann@example.test",
    "mail: ann.lee@example.test",
    "mail: a.lee@example.test",
];

#[test]
fn multi_valued_change_is_value_level() {
    let mut env = Env::new(
        &config(),
        &[("directory.ldif", person("ann", "a-1", &MAILS).as_bytes())],
    );
    env.cycle(CycleKind::Full);
    let row = env.csv_row("profiles.csv", "account", "ann");
    assert_eq!(row["mail"].split(';').count(), 3, "{row:?}");

    // One more mail address.
    let mut four = MAILS.to_vec();
    four.push("mail: lee@example.test");
    env.write("directory.ldif", person("ann", "a-1", &four));
    let r = env.step(Step::FullImport, "directory");
    assert_eq!(r.stats.updated, 1);
    let ann = env.cs_anchor("directory", "a-1");
    let Some(PendingImport::Update { changes, .. }) = &ann.pending_import else {
        panic!("expected a pending update: {:?}", ann.pending_import);
    };
    assert_eq!(changes.len(), 1, "only mail changed: {changes:?}");
    assert_eq!(
        delta_of(changes, "mail"),
        &AttributeChange::Update {
            add: vec![Value::from("lee@example.test")],
            remove: vec![]
        }
    );

    env.step(Step::DeltaSync, "directory");
    let profile = env.cs_dn("profiles", "ann");
    let Some(PendingExport::Update { changes, new_dn }) = &profile.pending_export else {
        panic!(
            "expected a pending export update: {:?}",
            profile.pending_export
        );
    };
    assert_eq!(new_dn, &None);
    assert_eq!(changes.len(), 1, "only mail is exported: {changes:?}");
    assert_eq!(
        delta_of(changes, "mail"),
        &AttributeChange::Update {
            add: vec![Value::from("lee@example.test")],
            remove: vec![]
        },
        "a value-level update, not a replacement of all four"
    );

    env.step(Step::Export, "profiles");
    let row = env.csv_row("profiles.csv", "account", "ann");
    let mut got: Vec<&str> = row["mail"].split(';').collect();
    got.sort();
    assert_eq!(
        got,
        [
            "a.lee@example.test",
            "ann.lee@example.test",
            "ann@example.test",
            "lee@example.test"
        ]
    );

    // One value removed is one removed value.
    env.write("directory.ldif", person("ann", "a-1", &four[1..]));
    env.step(Step::FullImport, "directory");
    let ann = env.cs_anchor("directory", "a-1");
    let Some(PendingImport::Update { changes, .. }) = &ann.pending_import else {
        panic!("expected a pending update: {:?}", ann.pending_import);
    };
    assert_eq!(
        delta_of(changes, "mail"),
        &AttributeChange::Update {
            add: vec![],
            remove: vec![Value::from("ann@example.test")]
        }
    );
    // The export of the first change is still awaiting its confirming import: the new pending
    // export sends only what is new.
    env.step(Step::DeltaSync, "directory");
    let profile = env.cs_dn("profiles", "ann");
    let Some(PendingExport::Update { changes, .. }) = &profile.pending_export else {
        panic!(
            "expected a pending export update: {:?}",
            profile.pending_export
        );
    };
    assert_eq!(
        delta_of(changes, "mail"),
        &AttributeChange::Update {
            add: vec![],
            remove: vec![Value::from("ann@example.test")]
        }
    );
}

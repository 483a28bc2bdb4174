//! Full and delta import: what each stages, what obsoletion deletes and when, watermarks, and
//! scope with the reason every object not taken is counted under.

use crate::harness::*;
use idsync_engine::Step;
use idsync_model::{AttributeChange, PendingImport, Value};

fn config() -> String {
    format!(
        "{DIRECTORY}{}{}{}",
        import_flow("directory", "uid", "uid"),
        import_flow("directory", "title", "title"),
        import_flow("directory", "mail", "mail"),
    )
}

fn four_people() -> String {
    [
        person("ann", "a-1", &["title: Engineer"]),
        person("bob", "b-2", &["title: Analyst"]),
        person("cat", "c-3", &["title: Manager"]),
        person("dan", "d-4", &["title: Director"]),
    ]
    .concat()
}

#[test]
fn full_import_adds_updates_renames_and_deletes() {
    let mut env = Env::new(&config(), &[("directory.ldif", four_people().as_bytes())]);
    let first = env.step(Step::FullImport, "directory");
    assert_eq!(first.stats.read, 4);
    assert_eq!(first.stats.added, 4);
    for o in env.cs("directory") {
        assert_eq!(o.pending_import, Some(PendingImport::Add), "{}", o.dn);
    }
    env.step(Step::FullSync, "directory");
    let bob_before = env.cs_anchor("directory", "b-2");

    // Ann's title changes, Bob moves to another branch, Cat leaves, Dan stays as he was.
    let edited = [
        person("ann", "a-1", &["title: Director"]),
        person("dan", "d-4", &["title: Director"]),
        person("bob", "b-2", &["title: Analyst"]).replace(
            "uid=bob,ou=People,dc=example,dc=test",
            "uid=bob,ou=Staff,dc=example,dc=test",
        ),
    ]
    .concat();
    env.write("directory.ldif", &edited);
    let second = env.step(Step::FullImport, "directory");
    let s = &second.stats;
    assert_eq!(
        (
            s.read,
            s.added,
            s.updated,
            s.renamed,
            s.deleted,
            s.unchanged
        ),
        (3, 0, 1, 1, 1, 1),
        "read, added, updated, renamed, deleted, unchanged: {s:?}"
    );

    let ann = env.cs_anchor("directory", "a-1");
    match &ann.pending_import {
        Some(PendingImport::Update {
            changes,
            renamed_from: None,
        }) => {
            assert_eq!(changes.len(), 1, "only the title changed: {changes:?}");
            assert_eq!(
                delta_of(changes, "title"),
                &AttributeChange::Replace(vec![Value::from("Director")])
            );
        }
        other => panic!("ann: expected a pending update, got {other:?}"),
    }
    assert_eq!(texts(ann.hologram.get("title")), ["Director"]);

    let bob = env.cs_anchor("directory", "b-2");
    assert_eq!(
        bob.id, bob_before.id,
        "a rename keeps the connector-space object"
    );
    assert_eq!(bob.dn.as_str(), "uid=bob,ou=Staff,dc=example,dc=test");
    match &bob.pending_import {
        Some(PendingImport::Update {
            changes,
            renamed_from: Some(from),
        }) => {
            assert!(changes.is_empty(), "no attribute changed: {changes:?}");
            assert_eq!(from.as_str(), dn("bob"));
        }
        other => panic!("bob: expected a pending rename, got {other:?}"),
    }

    // Cat is only staged as a delete: still in the connector space, still in the metaverse.
    let cat = env.cs_anchor("directory", "c-3");
    assert_eq!(cat.pending_import, Some(PendingImport::Delete));
    assert!(cat.mv_id.is_some());
    assert_eq!(env.mv_count(), 4);

    let dan = env.cs_anchor("directory", "d-4");
    assert_eq!(dan.pending_import, None);
}

#[test]
fn an_anchor_read_twice_into_an_empty_space_is_one_object() {
    // The first import into an empty space does not look objects up; an anchor it meets again
    // (the same entry under two bases, a renamed copy) is looked up as always.
    let ldif = [
        person("ann", "a-1", &["title: Engineer"]),
        person("bob", "b-2", &[]),
        person("ann", "a-1", &["title: Engineer"]),
        person("ann2", "a-1", &["title: Engineer"]),
    ]
    .concat();
    let mut env = Env::new(&config(), &[("directory.ldif", ldif.as_bytes())]);
    let first = env.step(Step::FullImport, "directory");
    assert_eq!(first.stats.read, 4);
    assert_eq!(first.stats.added, 2);
    assert_eq!(first.stats.unchanged, 1);
    assert_eq!(first.stats.renamed, 1);
    let space = env.cs("directory");
    assert_eq!(space.len(), 2);
    assert_eq!(env.cs_anchor("directory", "a-1").dn.as_str(), dn("ann2"));
}

#[test]
fn an_object_stored_with_another_digest_is_compared_once_and_gets_its_digest() {
    use idsync_store::ConnectorSpaces;
    let mut env = Env::new(&config(), &[("directory.ldif", four_people().as_bytes())]);
    env.step(Step::FullImport, "directory");
    env.step(Step::FullSync, "directory");
    let ann = env.cs_anchor("directory", "a-1");
    let space = idsync_model::ConnectorId::new("directory");
    let state = |env: &mut Env| {
        env.engine
            .store
            .cs_state_by_anchor(&space, &"a-1".into())
            .unwrap()
            .unwrap()
    };
    let right = state(&mut env).digest.unwrap();
    // A digest of an older form (or of a store made before digests): not equal to today's.
    env.engine
        .store
        .cs_set_digest(&ann.id, Some([7; 32]), None)
        .unwrap();
    let again = env.step(Step::FullImport, "directory");
    assert_eq!(again.stats.unchanged, 4);
    assert_eq!(again.stats.updated, 0);
    assert_eq!(state(&mut env).digest, Some(right));
    // Nothing else about the object changed.
    assert_eq!(env.cs_anchor("directory", "a-1").hologram, ann.hologram);
    assert_eq!(env.cs_anchor("directory", "a-1").pending_import, None);
}

#[test]
fn failed_full_import_deletes_nothing() {
    let mut env = Env::new(&config(), &[("directory.ldif", four_people().as_bytes())]);
    env.step(Step::FullImport, "directory");
    env.step(Step::FullSync, "directory");
    let before = env.snapshot();

    // Half a file: two good records (one changed, one new), then a value that is not base64,
    // and Cat and Dan after it never read.
    let broken = [
        person("ann", "a-1", &["title: Director"]),
        person("eve", "e-5", &[]),
        person("bob", "b-2", &["jpegPhoto:: !!!not-base64!!!"]),
        person("cat", "c-3", &[]),
        person("dan", "d-4", &[]),
    ]
    .concat();
    let line = line_of(broken.as_bytes(), "jpegPhoto::");
    env.write("directory.ldif", &broken);
    let err = env
        .try_step(Step::FullImport, "directory")
        .expect_err("a malformed file fails the import")
        .to_string();
    assert!(
        err.contains(&format!("directory.ldif:{line}:")),
        "the error names the file and line {line}: {err}"
    );
    assert_eq!(
        env.snapshot(),
        before,
        "no pending delete, no new object, no changed one"
    );
    let run = env.last_run();
    assert_eq!(run.step, "full-import");
    assert_eq!(run.status, "failed");
    assert!(
        run.message
            .as_deref()
            .unwrap_or("")
            .contains("directory.ldif"),
        "{run:?}"
    );
}

#[test]
fn delta_import_from_change_ldif() {
    let mut env = Env::new(
        &config(),
        &[(
            "directory.ldif",
            [
                person("ann", "a-1", &["mail: ann@example.test", "title: Engineer"]),
                person("bob", "b-2", &[]),
                person("cat", "c-3", &[]),
            ]
            .concat()
            .as_bytes(),
        )],
    );
    env.step(Step::FullImport, "directory");
    env.step(Step::FullSync, "directory");
    let bob_id = env.cs_anchor("directory", "b-2").id;

    let changes = format!(
        "dn: {eve}\nchangetype: add\nobjectClass: top\nobjectClass: inetOrgPerson\nentryUUID: e-5\nuid: eve\ncn: eve\nsn: eve\n\n\
         dn: {ann}\nchangetype: modify\nadd: mail\nmail: ann.other@example.test\n-\nreplace: title\ntitle: Director\n-\n\n\
         dn: {bob}\nchangetype: modrdn\nnewrdn: uid=bob\ndeleteoldrdn: 1\nnewsuperior: ou=Staff,dc=example,dc=test\n\n\
         dn: {cat}\nchangetype: delete\n\n",
        eve = dn("eve"),
        ann = dn("ann"),
        bob = dn("bob"),
        cat = dn("cat"),
    );
    env.write("changes/0001.ldif", &changes);
    let r = env.step(Step::DeltaImport, "directory");
    assert!(
        r.notes.iter().any(|n| n.contains("1 change file")),
        "the delta import read the change file: {:?}",
        r.notes
    );
    let s = &r.stats;
    assert_eq!(
        (s.read, s.added, s.updated, s.renamed, s.deleted),
        (4, 1, 1, 1, 1),
        "read, added, updated, renamed, deleted: {s:?}"
    );

    let eve = env.cs_anchor("directory", "e-5");
    assert_eq!(eve.pending_import, Some(PendingImport::Add));
    assert_eq!(texts(eve.hologram.get("uid")), ["eve"]);

    let ann = env.cs_anchor("directory", "a-1");
    let Some(PendingImport::Update { changes, .. }) = &ann.pending_import else {
        panic!(
            "ann: expected a pending update, got {:?}",
            ann.pending_import
        );
    };
    assert_eq!(
        delta_of(changes, "mail"),
        &AttributeChange::Update {
            add: vec![Value::from("ann.other@example.test")],
            remove: vec![]
        },
        "one mail value added, the other kept"
    );
    assert_eq!(
        delta_of(changes, "title"),
        &AttributeChange::Replace(vec![Value::from("Director")])
    );
    assert_eq!(
        texts(ann.hologram.get("mail")),
        ["ann.other@example.test", "ann@example.test"]
    );

    let bob = env.cs_anchor("directory", "b-2");
    assert_eq!(bob.id, bob_id);
    assert_eq!(bob.dn.as_str(), "uid=bob,ou=Staff,dc=example,dc=test");
    assert!(
        matches!(&bob.pending_import, Some(PendingImport::Update { renamed_from: Some(f), .. }) if f.as_str() == dn("bob")),
        "{:?}",
        bob.pending_import
    );

    let cat = env.cs_anchor("directory", "c-3");
    assert_eq!(cat.pending_import, Some(PendingImport::Delete));

    // The watermark moved past the file: the next delta import finds nothing to do.
    let after = env.snapshot();
    let again = env.step(Step::DeltaImport, "directory");
    assert!(
        again.notes.iter().any(|n| n.contains("0 change file")),
        "{:?}",
        again.notes
    );
    assert_eq!(again.stats.read, 0, "{:?}", again.stats);
    assert_eq!(env.snapshot(), after);

    // The staged changes reach the metaverse.
    env.step(Step::DeltaSync, "directory");
    let (_, a) = env.mv_where("uid", "ann");
    assert_eq!(
        texts(a.get("mail")),
        ["ann.other@example.test", "ann@example.test"]
    );
    assert_eq!(texts(a.get("title")), ["Director"]);
    assert_eq!(env.mv_count(), 3, "eve came, cat went");
}

#[test]
fn inetorgperson_and_person_in_scope_and_filtered_with_reason() {
    let ldif = [
        person("ann", "a-1", &[]),
        person("bob", "b-2", &[]),
        plain_person("pat", "p-3"),
        "dn: cn=pc1,ou=Devices,dc=example,dc=test\nobjectClass: top\nobjectClass: device\ncn: pc1\nentryUUID: d-9\n\n".to_owned(),
    ]
    .concat();
    let mut env = Env::new(&config(), &[("directory.ldif", ldif.as_bytes())]);
    let r = env.step(Step::FullImport, "directory");
    assert_eq!(r.stats.read, 4);
    assert_eq!(
        r.stats.added, 3,
        "inetOrgPerson and plain person both taken"
    );
    assert_eq!(r.stats.filtered_total(), 1, "{:?}", r.stats.filtered);
    assert!(
        r.stats
            .filtered
            .keys()
            .any(|k| k.contains("device") && k.contains("not in scope")),
        "the device is counted under its class: {:?}",
        r.stats.filtered
    );
    assert!(env.cs_by_anchor("directory", "p-3").is_some());
    env.step(Step::FullSync, "directory");

    // Narrow the scope to inetOrgPerson only.
    let narrowed = config().replace(
        "object_classes = [\"inetOrgPerson\", \"person\"]",
        "object_classes = [\"inetOrgPerson\"]",
    );
    assert_ne!(narrowed, config());
    env.reload(&narrowed);
    let r = env.step(Step::DeltaImport, "directory");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("scope changed") && n.contains("full import")),
        "a changed scope makes the delta import a full one, and says so: {:?}",
        r.notes
    );
    assert_eq!(r.stats.read, 4, "the whole file was read: {:?}", r.stats);
    assert_eq!(r.stats.filtered_total(), 2, "{:?}", r.stats.filtered);
    let person_reason: Vec<_> = r
        .stats
        .filtered
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k.contains("object class") && k.contains("person") && k.contains("not in scope")
        })
        .collect();
    assert_eq!(
        person_reason.len(),
        1,
        "the plain person is counted under a reason naming its class: {:?}",
        r.stats.filtered
    );
    assert_eq!(*person_reason[0].1, 1);
    // It left the scope: a pending delete (only after the complete read), not silence.
    assert_eq!(r.stats.deleted, 1, "{:?}", r.stats);
    assert_eq!(
        env.cs_anchor("directory", "p-3").pending_import,
        Some(PendingImport::Delete)
    );
    assert_eq!(env.cs_anchor("directory", "a-1").pending_import, None);

    // The next delta import is a delta again.
    let r = env.step(Step::DeltaImport, "directory");
    assert!(
        !r.notes.iter().any(|n| n.contains("full import")),
        "{:?}",
        r.notes
    );
}

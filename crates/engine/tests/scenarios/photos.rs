//! Photos. A binary value is compared by its bytes, and a value that only names its content (a
//! picture URL, a file name) is resolved to the content, which is what is compared: full and
//! delta import see the same changes. Seed 000: a photo flow reversed from import to export
//! takes effect on the next full sync, without clearing any connector space.

use crate::harness::*;
use idsync_engine::{CycleKind, Step};
use idsync_model::{AttributeChange, PendingImport, Value};
use idsync_sample::photo;

fn connectors() -> String {
    format!(
        "{DIRECTORY}{}{PROVISION_PROFILES}",
        profiles(
            &["id", "account", "photo"],
            "attribute_types = { photo = \"binary-file\" }"
        )
    )
}

/// Photos flow from the directory to the profile table.
fn photos_from_directory() -> String {
    format!(
        "{}{}{}{}{}",
        connectors(),
        import_flow("directory", "uid", "uid"),
        import_flow("directory", "photo", "jpegPhoto"),
        export_flow("profiles", "account", "uid"),
        export_flow("profiles", "photo", "photo"),
    )
}

/// The flow reversed: photos come from the profile table and are written back to the directory.
fn photos_from_profiles() -> String {
    format!(
        "{}{}{}{}{}",
        connectors(),
        import_flow("directory", "uid", "uid"),
        import_flow("profiles", "photo", "photo"),
        export_flow("profiles", "account", "uid"),
        export_flow("directory", "jpegPhoto", "photo"),
    )
}

/// The content hashes of a directory entry's photos, as the LDIF file holds them.
fn photo_hashes(env: &Env, uuid: &str) -> Vec<String> {
    env.ldif_entry("directory.ldif", uuid)
        .values("jpegPhoto")
        .iter()
        .map(|b| hash_of(b))
        .collect()
}

fn jpeg_line(bytes: &[u8]) -> String {
    format!("jpegPhoto:: {}", b64(bytes))
}

#[test]
fn reversed_photo_flow_takes_effect_on_next_full_sync() {
    let ldif = [
        person("ann", "a-1", &[&jpeg_line(&photo("ann", 1))]),
        person("bob", "b-2", &[&jpeg_line(&photo("bob", 1))]),
    ]
    .concat();
    let mut env = Env::new(
        &photos_from_directory(),
        &[("directory.ldif", ldif.as_bytes())],
    );
    let r = env.cycle(CycleKind::Full);
    assert_eq!(r.pending_exports_left, 0);
    let row = env.csv_row("profiles.csv", "account", "ann");
    let picture_url = row["photo"].clone();
    assert!(!picture_url.is_empty(), "{row:?}");
    assert_eq!(hash_of(&env.read(&picture_url)), hash_of(&photo("ann", 1)));
    let ann_dir_id = env.cs_anchor("directory", "a-1").id;
    let ann_profile_id = env.cs_dn("profiles", "ann").id;

    // The administrator reverses the flow; then Ann uploads a new photo. Her picture URL stays
    // the same: only the bytes behind it change.
    env.reload(&photos_from_profiles());
    env.write(&picture_url, photo("ann", 2));
    let r = env.cycle(CycleKind::Full);
    assert_eq!(r.pending_exports_left, 0, "{r:?}");
    assert!(!r.bound_reached);
    assert_eq!(
        env.csv_row("profiles.csv", "account", "ann")["photo"],
        picture_url,
        "the picture URL did not change"
    );
    assert_eq!(
        photo_hashes(&env, "a-1"),
        [hash_of(&photo("ann", 2))],
        "the full cycle wrote Ann's new photo to the directory"
    );
    assert_eq!(
        photo_hashes(&env, "b-2"),
        [hash_of(&photo("bob", 1))],
        "Bob's photo is left as it was"
    );
    // Nothing was cleared to get there.
    assert_eq!(env.cs_anchor("directory", "a-1").id, ann_dir_id);
    assert_eq!(env.cs_dn("profiles", "ann").id, ann_profile_id);
    assert_eq!(env.mv_count(), 2);

    // Another new photo behind the same URL; a delta cycle carries it too.
    env.write(&picture_url, photo("ann", 3));
    let r = env.cycle(CycleKind::Delta);
    assert_eq!(r.pending_exports_left, 0, "{r:?}");
    assert_eq!(
        photo_hashes(&env, "a-1"),
        [hash_of(&photo("ann", 3))],
        "the delta cycle wrote Ann's newest photo to the directory (steps: {:#?})",
        r.steps
            .iter()
            .map(|s| (
                s.step,
                s.connector.clone(),
                s.notes.clone(),
                s.stats.nonzero()
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(env.cs_anchor("directory", "a-1").id, ann_dir_id);
    assert_eq!(env.cs_dn("profiles", "ann").id, ann_profile_id);
}

/// The photo delta staged for an object, as the hash of its new bytes.
fn staged_photo(env: &mut Env, connector: &str, anchor: &str, attr: &str) -> Vec<String> {
    let o = env.cs_anchor(connector, anchor);
    let Some(PendingImport::Update { changes, .. }) = &o.pending_import else {
        panic!(
            "{anchor}: expected a pending update, got {:?}",
            o.pending_import
        );
    };
    assert_eq!(changes.len(), 1, "only the photo changed: {changes:?}");
    match delta_of(changes, attr) {
        AttributeChange::Replace(v) => v.iter().map(Value::to_text).collect(),
        other => panic!("expected the photo replaced: {other:?}"),
    }
}

#[test]
fn photo_bytes_change_detected_by_full_and_delta_import() {
    // LDIF: the photo is a file URL; the file's bytes change, the LDIF text does not.
    let config = format!(
        "{DIRECTORY}{}{}",
        import_flow("directory", "uid", "uid"),
        import_flow("directory", "photo", "jpegPhoto"),
    );
    let ldif = [
        person("ann", "a-1", &["jpegPhoto:< file:photos/ann.jpg"]),
        person("bob", "b-2", &[]),
    ]
    .concat();
    let mut env = Env::new(
        &config,
        &[
            ("directory.ldif", ldif.as_bytes()),
            ("photos/ann.jpg", &photo("ann", 1)),
        ],
    );
    env.step(Step::FullImport, "directory");
    env.step(Step::FullSync, "directory");

    env.write("photos/ann.jpg", photo("ann", 2));
    let r = env.step(Step::FullImport, "directory");
    assert_eq!(
        (r.stats.updated, r.stats.unchanged),
        (1, 1),
        "{:?}",
        r.stats
    );
    assert_eq!(
        staged_photo(&mut env, "directory", "a-1", "jpegPhoto"),
        [hash_of(&photo("ann", 2))]
    );
    env.step(Step::DeltaSync, "directory");
    let (_, a) = env.mv_where("uid", "ann");
    assert_eq!(texts(a.get("photo")), [hash_of(&photo("ann", 2))]);

    // Delta: a change file replaces the photo with the file's (new) content.
    env.write("photos/ann.jpg", photo("ann", 3));
    env.write(
        "changes/0001.ldif",
        format!(
            "dn: {}\nchangetype: modify\nreplace: jpegPhoto\njpegPhoto:< file:../photos/ann.jpg\n-\n\n",
            dn("ann")
        ),
    );
    let r = env.step(Step::DeltaImport, "directory");
    assert_eq!(r.stats.updated, 1, "{:?} {:?}", r.stats, r.notes);
    assert_eq!(
        staged_photo(&mut env, "directory", "a-1", "jpegPhoto"),
        [hash_of(&photo("ann", 3))]
    );

    // CSV: the photo cell names a file; only the file's bytes change.
    let config = r#"
[[connector]]
name = "people"
type = "csv"
role = "directory"
path = "people.csv"
anchor = "id"
attribute_types = { photo = "binary-file" }

[[connector.object_type]]
name = "person"

[[import_flow]]
connector = "people"
mv = "uid"
cs = "uid"

[[import_flow]]
connector = "people"
mv = "photo"
cs = "photo"
"#;
    let mut env = Env::new(
        config,
        &[
            (
                "people.csv",
                b"id,uid,photo\n1,ann,photos/ann.jpg\n2,bob,\n",
            ),
            ("photos/ann.jpg", &photo("ann", 1)),
        ],
    );
    env.step(Step::FullImport, "people");
    env.step(Step::FullSync, "people");

    env.write("photos/ann.jpg", photo("ann", 2));
    let r = env.step(Step::FullImport, "people");
    assert_eq!(
        (r.stats.updated, r.stats.unchanged),
        (1, 1),
        "{:?}",
        r.stats
    );
    assert_eq!(
        staged_photo(&mut env, "people", "1", "photo"),
        [hash_of(&photo("ann", 2))]
    );
    env.step(Step::DeltaSync, "people");

    env.write("photos/ann.jpg", photo("ann", 3));
    let r = env.step(Step::DeltaImport, "people");
    assert_eq!(
        r.stats.updated, 1,
        "the delta import sees the new photo as the full import does: {:?} {:?}",
        r.stats, r.notes
    );
    assert_eq!(
        staged_photo(&mut env, "people", "1", "photo"),
        [hash_of(&photo("ann", 3))]
    );
}

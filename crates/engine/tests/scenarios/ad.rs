//! The LDAP connector's Active Directory profile through the engine, against a real throwaway
//! Samba AD DC (one DC for the file): full import with computers counted as filtered and a
//! disabled account skipped by a rule on `accountDisabled`; DirSync deltas of an add, an attribute
//! change, member adds and removes at value level, a rename, a move and a delete, with the cookie
//! persisted across a restart of the engine.

use crate::harness::*;
use idsync_engine::Step;
use idsync_model::{Reference, Value};
use idsync_testbed::samba::ADMIN_PASSWORD;
use idsync_testbed::SambaDc;

fn config(dc: &SambaDc) -> String {
    format!(
        r#"
[[connector]]
name = "ad"
type = "ldap"
role = "directory"
profile = "active-directory"
url = "{url}"
bind_dn = "{bind}"
bind_password = "file:ad.pw"
base_dns = ["{base}"]

[[connector.object_type]]
name = "person"
object_classes = ["user"]
filter = "cs.accountDisabled == false"

[[connector.object_type]]
name = "group"
object_classes = ["group"]

[[connector.object_type]]
name = "contact"
object_classes = ["contact"]
"#,
        url = dc.url(),
        bind = dc.bind_dn(),
        base = dc.base_dn(),
    )
}

fn member_dns(env: &mut Env, dn: &str) -> Vec<String> {
    let mut v: Vec<String> = env
        .cs_dn("ad", dn)
        .hologram
        .get("member")
        .unwrap_or_default()
        .iter()
        .map(|v| match v {
            Value::Reference(Reference::Dn(d)) => d.as_str().to_ascii_lowercase(),
            o => panic!("{o:?}"),
        })
        .collect();
    v.sort();
    v
}

#[test]
fn active_directory_full_and_dirsync_delta_across_an_engine_restart() {
    let dc = SambaDc::start().expect("the Samba AD DC must start for this test");
    let base = dc.base_dn();
    dc.modify(&format!(
        "dn: OU=Staff,{base}\nchangetype: add\nobjectClass: organizationalUnit\n\n\
         dn: CN=Ann Example,CN=Users,{base}\nchangetype: add\nobjectClass: user\nsAMAccountName: ann\ndisplayName: Ann\nuserAccountControl: 544\n\n\
         dn: CN=Bob Example,CN=Users,{base}\nchangetype: add\nobjectClass: user\nsAMAccountName: bob\nuserAccountControl: 544\n\n\
         dn: CN=Eve Mover,CN=Users,{base}\nchangetype: add\nobjectClass: user\nsAMAccountName: eve\nuserAccountControl: 544\n\n\
         dn: CN=Dis Abled,CN=Users,{base}\nchangetype: add\nobjectClass: user\nsAMAccountName: dis\n\n\
         dn: CN=Carl Contact,CN=Users,{base}\nchangetype: add\nobjectClass: contact\n\n\
         dn: CN=team1,CN=Users,{base}\nchangetype: add\nobjectClass: group\nsAMAccountName: team1\nmember: CN=Ann Example,CN=Users,{base}\nmember: CN=Bob Example,CN=Users,{base}\n\n\
         dn: CN=PC1,CN=Computers,{base}\nchangetype: add\nobjectClass: computer\nsAMAccountName: PC1$\nuserAccountControl: 4096\n\n"
    ))
    .expect("seed the directory");
    let config = config(&dc);
    let mut env = Env::new(&config, &[("ad.pw", ADMIN_PASSWORD.as_bytes())]);
    let r = env.step(Step::FullImport, "ad");
    let computers = r
        .stats
        .filtered
        .iter()
        .find(|(k, _)| k.contains("computer account"))
        .map(|(_, n)| *n);
    // PC1 and the DC's own account.
    assert_eq!(computers, Some(2), "{:?}", r.stats.filtered);
    // The disabled account (and AD's built-in disabled ones, Guest and krbtgt) by the rule.
    assert!(
        r.stats
            .filtered
            .get("filter of object type person not met")
            .is_some_and(|n| *n >= 1),
        "{:?}",
        r.stats.filtered
    );
    assert!(env
        .cs_by_dn("ad", &format!("CN=Dis Abled,CN=Users,{base}"))
        .is_none());
    let ann = env.cs_dn("ad", &format!("CN=Ann Example,CN=Users,{base}"));
    assert_eq!(ann.anchor.as_ref().unwrap().as_str().len(), 36);
    assert_eq!(
        ann.hologram.get("accountDisabled"),
        Some(&[Value::Boolean(false)][..])
    );
    let team = format!("CN=team1,CN=Users,{base}");
    assert_eq!(member_dns(&mut env, &team).len(), 2);

    dc.modify(&format!(
        "dn: CN=Dave New,CN=Users,{base}\nchangetype: add\nobjectClass: user\nsAMAccountName: dave\nuserAccountControl: 544\n\n\
         dn: CN=Ann Example,CN=Users,{base}\nchangetype: modify\nreplace: displayName\ndisplayName: Ann Changed\n-\n\n\
         dn: CN=team1,CN=Users,{base}\nchangetype: modify\nadd: member\nmember: CN=Carl Contact,CN=Users,{base}\n-\ndelete: member\nmember: CN=Ann Example,CN=Users,{base}\n-\n\n\
         dn: CN=Carl Contact,CN=Users,{base}\nchangetype: modrdn\nnewrdn: CN=Carl Renamed\ndeleteoldrdn: 1\n\n\
         dn: CN=Eve Mover,CN=Users,{base}\nchangetype: modrdn\nnewrdn: CN=Eve Mover\ndeleteoldrdn: 1\nnewsuperior: OU=Staff,{base}\n\n\
         dn: CN=team1,CN=Users,{base}\nchangetype: modify\ndelete: member\nmember: CN=Bob Example,CN=Users,{base}\n-\n\n\
         dn: CN=Bob Example,CN=Users,{base}\nchangetype: delete\n\n"
    ))
    .expect("change the directory");
    // The engine restarts (a new process over the same store): the DirSync cookie was persisted.
    env.reload(&config);
    let r = env.step(Step::DeltaImport, "ad");
    assert!(
        r.notes.iter().any(|n| n.contains("DirSync")),
        "{:?}",
        r.notes
    );
    assert_eq!(r.stats.added, 1, "{:?}", r.stats);
    assert_eq!(r.stats.deleted, 1, "{:?}", r.stats);
    assert_eq!(r.stats.renamed, 2, "{:?}", r.stats);
    assert!(env
        .cs_by_dn("ad", &format!("CN=Dave New,CN=Users,{base}"))
        .is_some());
    assert!(env
        .cs_by_dn("ad", &format!("CN=Carl Renamed,CN=Users,{base}"))
        .is_some());
    assert!(env
        .cs_by_dn("ad", &format!("CN=Eve Mover,OU=Staff,{base}"))
        .is_some());
    assert_eq!(
        texts(
            env.cs_dn("ad", &format!("CN=Ann Example,CN=Users,{base}"))
                .hologram
                .get("displayName")
        ),
        ["Ann Changed"]
    );
    // The sAMAccountName was not in the delta and is kept (the change was merged).
    assert_eq!(
        texts(
            env.cs_dn("ad", &format!("CN=Ann Example,CN=Users,{base}"))
                .hologram
                .get("sAMAccountName")
        ),
        ["ann"]
    );
    assert_eq!(
        member_dns(&mut env, &team),
        vec![format!("CN=Carl Renamed,CN=Users,{base}").to_ascii_lowercase()]
    );
    // Nothing changed since: an empty delta.
    let r = env.step(Step::DeltaImport, "ad");
    assert_eq!(
        (
            r.stats.added,
            r.stats.updated,
            r.stats.renamed,
            r.stats.deleted
        ),
        (0, 0, 0, 0),
        "{:?} {:?}",
        r.stats,
        r.notes
    );
}

/// A noisy JPEG of `side` pixels (noise compresses badly: several MB at this size).
fn noisy_jpeg(side: u32) -> Vec<u8> {
    let mut x: u32 = 12345;
    let img = image::RgbImage::from_fn(side, side, |_, _| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        image::Rgb([(x >> 16) as u8, (x >> 8) as u8, x as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .encode_image(&img)
        .unwrap();
    out
}

#[test]
fn a_5mb_photo_reaches_thumbnail_photo_under_100kb() {
    use base64::Engine as _;
    let dc = SambaDc::start().expect("the Samba AD DC must start for this test");
    let base = dc.base_dn();
    dc.modify(&format!(
        "dn: OU=Staff,{base}\nchangetype: add\nobjectClass: organizationalUnit\n\n"
    ))
    .unwrap();
    let photo = noisy_jpeg(1500);
    assert!(photo.len() > 5_000_000, "{}", photo.len());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&photo);
    let config = format!(
        r#"{DIRECTORY}
[[connector]]
name = "ad"
type = "ldap"
role = "target"
profile = "active-directory"
url = "{url}"
bind_dn = "{bind}"
bind_password = "file:ad.pw"
base_dns = ["{base}"]
filter = "(!(isCriticalSystemObject=TRUE))"

[[connector.object_type]]
name = "person"
object_classes = ["user"]

[[provision]]
connector = "ad"
dn = "CN={{uid}},OU=Staff,{base}"
object_classes = ["user"]
{}{}{}{}{}"#,
        import_flow("directory", "uid", "uid"),
        import_flow("directory", "photo", "jpegPhoto"),
        export_flow("ad", "sAMAccountName", "uid"),
        export_flow("ad", "thumbnailPhoto", "photo"),
        "",
        url = dc.url(),
        bind = dc.bind_dn(),
    );
    let ldif = person("ann", "a-1", &[&format!("jpegPhoto:: {b64}")]);
    let mut env = Env::new(
        &config,
        &[
            ("ad.pw", ADMIN_PASSWORD.as_bytes()),
            ("directory.ldif", ldif.as_bytes()),
        ],
    );
    let r = env.cycle(idsync_engine::CycleKind::Full);
    let exported: u64 = r.steps.iter().map(|s| s.stats.exported).sum();
    assert_eq!(
        exported,
        1,
        "{:?}",
        r.steps.iter().map(|s| &s.stats).collect::<Vec<_>>()
    );
    let stored = thumbnail_photo(&dc, base, "ann");
    assert!(stored.len() <= 102_400, "{}", stored.len());
    let errors: Vec<_> = r.steps.iter().flat_map(|s| &s.errors).collect();
    assert!(errors.is_empty(), "{errors:?}");

    // The fitted bytes differ from the metaverse's photo, yet the next cycles export nothing
    // for it: the engine remembers which value was written for the desired one.
    let stats = |r: &idsync_engine::CycleReport| -> (u64, u64) {
        (
            r.steps.iter().map(|s| s.stats.exported).sum(),
            r.steps.iter().map(|s| s.stats.not_confirmed).sum(),
        )
    };
    for kind in [
        idsync_engine::CycleKind::Full,
        idsync_engine::CycleKind::Delta,
    ] {
        let r = env.cycle(kind);
        assert_eq!(stats(&r), (0, 0), "{kind:?}: {:?}", r.steps);
        assert_eq!(r.pending_exports_left, 0);
        let ann = env.cs("ad").into_iter().next().expect("Ann in AD");
        assert!(ann.pending_export.is_none(), "{:?}", ann.pending_export);
        assert!(ann.export_error.is_none(), "{:?}", ann.export_error);
    }

    // A new photo in the metaverse is exported (and fitted) again, once.
    let photo2 = noisy_jpeg(1200);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&photo2);
    env.write(
        "changes/0001.ldif",
        format!(
            "dn: {}\nchangetype: modify\nreplace: jpegPhoto\njpegPhoto:: {b64}\n-\n\n",
            dn("ann")
        ),
    );
    env.write(
        "directory.ldif",
        person("ann", "a-1", &[&format!("jpegPhoto:: {b64}")]),
    );
    let r = env.cycle(idsync_engine::CycleKind::Delta);
    assert_eq!(stats(&r), (1, 0), "{:?}", r.steps);
    let stored2 = thumbnail_photo(&dc, base, "ann");
    assert!(stored2.len() <= 102_400, "{}", stored2.len());
    assert_ne!(stored2, stored);
    for kind in [
        idsync_engine::CycleKind::Delta,
        idsync_engine::CycleKind::Full,
    ] {
        let r = env.cycle(kind);
        assert_eq!(stats(&r), (0, 0), "{kind:?}: {:?}", r.steps);
    }
}

/// The issue's text: "Because Samba does not report a group's link removal when a member is
/// deleted, the connector must remove references to deleted objects itself." A person who is a
/// member of a group and the manager of another person is deleted in AD: after the DirSync delta
/// import and a sync, neither the group's members nor the other person's manager name it, in the
/// connector space or in the metaverse.
#[test]
fn references_to_a_deleted_object_are_removed_after_a_dirsync_delta() {
    let dc = SambaDc::start().expect("the Samba AD DC must start for this test");
    let base = dc.base_dn();
    let ann = format!("CN=Ann Boss,CN=Users,{base}");
    let bob = format!("CN=Bob Report,CN=Users,{base}");
    let carl = format!("CN=Carl Stays,CN=Users,{base}");
    let team = format!("CN=team2,CN=Users,{base}");
    dc.modify(&format!(
        "dn: {ann}\nchangetype: add\nobjectClass: user\nsAMAccountName: annb\nuserAccountControl: 544\n\n\
         dn: {carl}\nchangetype: add\nobjectClass: user\nsAMAccountName: carls\nuserAccountControl: 544\n\n\
         dn: {bob}\nchangetype: add\nobjectClass: user\nsAMAccountName: bobr\nuserAccountControl: 544\nmanager: {ann}\n\n\
         dn: {team}\nchangetype: add\nobjectClass: group\nsAMAccountName: team2\nmember: {ann}\nmember: {carl}\n\n"
    ))
    .expect("seed the directory");
    let config = format!(
        "{}{}{}{}",
        config(&dc),
        import_flow("ad", "uid", "sAMAccountName"),
        import_flow("ad", "manager", "manager"),
        import_flow("ad", "member", "member"),
    );
    let mut env = Env::new(&config, &[("ad.pw", ADMIN_PASSWORD.as_bytes())]);
    env.cycle(idsync_engine::CycleKind::Full);
    let ann_mv = env
        .cs_dn("ad", &ann)
        .mv_id
        .expect("Ann is in the metaverse");
    let carl_mv = env
        .cs_dn("ad", &carl)
        .mv_id
        .expect("Carl is in the metaverse");
    let bob_o = env.cs_dn("ad", &bob);
    let team_o = env.cs_dn("ad", &team);
    let mv_refs = |env: &mut Env, o: &idsync_model::CsObject, attr: &str| {
        let (_, a) = env.mv_of(o);
        let mut v: Vec<String> = a
            .get(attr)
            .unwrap_or(&[])
            .iter()
            .map(|v| match v {
                Value::Reference(Reference::Mv(m)) => m.to_string(),
                o => panic!("{o:?}"),
            })
            .collect();
        v.sort();
        v
    };
    let mut both = vec![ann_mv.to_string(), carl_mv.to_string()];
    both.sort();
    assert_eq!(mv_refs(&mut env, &team_o, "member"), both);
    assert_eq!(
        mv_refs(&mut env, &bob_o, "manager"),
        vec![ann_mv.to_string()]
    );

    dc.modify(&format!("dn: {ann}\nchangetype: delete\n\n"))
        .expect("delete Ann");
    let r = env.step(Step::DeltaImport, "ad");
    assert_eq!(r.stats.deleted, 1, "{:?}", r.stats);
    assert!(
        r.notes.iter().any(|n| n.contains("removed 2 reference(s)")),
        "{:?}",
        r.notes
    );
    assert_eq!(member_dns(&mut env, &team), vec![carl.to_ascii_lowercase()]);
    assert!(
        env.cs_dn("ad", &bob).hologram.get("manager").is_none(),
        "{:?}",
        env.cs_dn("ad", &bob).hologram
    );
    env.step(Step::DeltaSync, "ad");
    assert!(env.cs_by_dn("ad", &ann).is_none());
    assert_eq!(
        mv_refs(&mut env, &team_o, "member"),
        vec![carl_mv.to_string()]
    );
    assert!(mv_refs(&mut env, &bob_o, "manager").is_empty());
    // The removals were ordinary imported changes, now synchronized: nothing is left pending.
    let r = env.step(Step::DeltaImport, "ad");
    assert_eq!((r.stats.updated, r.stats.deleted), (0, 0), "{:?}", r.stats);
}

/// The bytes of a user's `thumbnailPhoto` as the DC holds them.
fn thumbnail_photo(dc: &SambaDc, base: &str, account: &str) -> Vec<u8> {
    use base64::Engine as _;
    let out = dc
        .tool("ldapsearch")
        .args([
            "-b",
            base,
            "-LLL",
            "-o",
            "ldif-wrap=no",
            &format!("(sAMAccountName={account})"),
            "thumbnailPhoto",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    let stored = out
        .lines()
        .find_map(|l| l.strip_prefix("thumbnailPhoto:: "))
        .expect("thumbnailPhoto written");
    base64::engine::general_purpose::STANDARD
        .decode(stored)
        .unwrap()
}

//! The LDAP connector through the engine, against a real throwaway slapd started by
//! `idsync-testbed` (a test whose slapd cannot start fails).

use crate::harness::*;
use idsync_engine::{CycleKind, Engine, Progress, Step};
use idsync_model::{Reference, Value};
use idsync_rules::Rules;
use idsync_store::{ConnectorSpaces, SqliteStore};
use idsync_testbed::{base_ldif, Slapd, SlapdOptions, ROOT_PASSWORD};

const SUFFIX: &str = "dc=example,dc=test";

/// An LDAP connector section reading `base` from `slapd`.
fn ldap_connector(name: &str, role: &str, slapd: &Slapd, base: &str, extra: &str) -> String {
    format!(
        r#"
[[connector]]
name = "{name}"
type = "ldap"
role = "{role}"
url = "{url}"
bind_dn = "{root}"
bind_password = "file:ldap.pw"
base_dns = ["{base}"]
page_size = 500
{extra}
"#,
        url = slapd.url(),
        root = slapd.root_dn(),
    )
}

fn person_type() -> &'static str {
    "\n[[connector.object_type]]\nname = \"person\"\nobject_classes = [\"inetOrgPerson\"]\n"
}

/// One inetOrgPerson entry as LDIF (for slapadd or ldapadd), with extra lines.
fn ldap_person(uid: &str, extra: &[String]) -> String {
    let mut s = format!(
        "dn: uid={uid},ou=People,{SUFFIX}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
    );
    for l in extra {
        s.push_str(l);
        s.push('\n');
    }
    s.push('\n');
    s
}

fn start(seed: String, syncprov: bool, accesslog: bool) -> Slapd {
    Slapd::start(SlapdOptions {
        seed: Some(format!("{}{seed}", base_ldif(SUFFIX)).into_bytes()),
        syncprov,
        accesslog,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("slapd must start for this test: {e}"))
}

fn env_with(config: &str, files: &[(&str, &[u8])]) -> Env {
    let mut all: Vec<(&str, &[u8])> = vec![("ldap.pw", ROOT_PASSWORD.as_bytes())];
    all.extend_from_slice(files);
    Env::new(config, &all)
}

fn manager_line(uid: &str) -> String {
    format!("manager: uid={uid},ou=People,{SUFFIX}")
}

#[test]
fn full_import_pages_types_references_and_filters_by_class() {
    let mut seed = String::new();
    for i in 0..3000 {
        if i % 10 == 9 {
            // organizationalPerson only: out of scope, counted with its class.
            seed.push_str(&format!(
                "dn: cn=op{i},ou=People,{SUFFIX}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\ncn: op{i}\nsn: op{i}\n\n"
            ));
        } else {
            let mut extra = vec![format!("mail: p{i}@example.test")];
            if i > 0 {
                extra.push(manager_line(&format!("p{}", i / 10)));
            }
            if i == 5 {
                extra.push("jpegPhoto:: /9j/4AAQSkZJRgABAQ==".to_owned());
            }
            seed.push_str(&ldap_person(&format!("p{i}"), &extra));
        }
    }
    let slapd = start(seed, true, false);
    let config = format!(
        "{}{}",
        ldap_connector("directory", "directory", &slapd, SUFFIX, ""),
        person_type()
    );
    let mut env = env_with(&config, &[]);
    let r = env.step(Step::FullImport, "directory");
    assert_eq!(r.stats.added, 2700, "{:?}", r.stats);
    assert_eq!(
        r.stats
            .filtered
            .get("object class organizationalPerson not in scope"),
        Some(&300),
        "{:?}",
        r.stats.filtered
    );
    // The suffix and the ou entries are filtered too, each with its class.
    assert!(r
        .stats
        .filtered
        .contains_key("object class organizationalUnit not in scope"));
    let p12 = env.cs_dn("directory", &format!("uid=p12,ou=People,{SUFFIX}"));
    assert_eq!(
        p12.hologram.get("manager").unwrap(),
        &[Value::Reference(Reference::Dn(
            format!("uid=p1,ou=People,{SUFFIX}").as_str().into()
        ))]
    );
    let p5 = env.cs_dn("directory", &format!("uid=p5,ou=People,{SUFFIX}"));
    assert!(matches!(
        p5.hologram.first("jpegPhoto"),
        Some(Value::Binary(_))
    ));
    assert_eq!(p5.anchor.as_ref().unwrap().as_str().len(), 36, "entryUUID");
    // Each object is kept with the digest of its entry as the server sent it, and without a
    // content digest (the wire digest stands for it).
    let p12_anchor = p12.anchor.clone().unwrap();
    let state = |env: &mut Env| {
        env.engine
            .store
            .cs_state_by_anchor(&"directory".into(), &p12_anchor)
            .unwrap()
            .unwrap()
    };
    let first = state(&mut env);
    assert!(
        first.wire_digest.is_some() && first.digest.is_none(),
        "{first:?}"
    );
    // A second full import of the unchanged directory changes nothing, and still counts what
    // it filtered.
    let r = env.step(Step::FullImport, "directory");
    assert_eq!((r.stats.added, r.stats.updated, r.stats.deleted), (0, 0, 0));
    assert_eq!(r.stats.unchanged, 2700);
    assert_eq!(
        r.stats
            .filtered
            .get("object class organizationalPerson not in scope"),
        Some(&300)
    );
    // Unchanged entries are known by their bytes before they are converted; a change of a
    // value, of a photo's bytes only and of a name is still found.
    let dn = |i: usize| format!("uid=p{i},ou=People,{SUFFIX}");
    slapd
        .modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: mail\nmail: new@example.test\n-\n\n\
             dn: {}\nchangetype: modify\nreplace: jpegPhoto\njpegPhoto:: /9j/4AAQSkZJRgABAg==\n-\n\n\
             dn: {}\nchangetype: modrdn\nnewrdn: uid=p7b\ndeleteoldrdn: 1\n\n",
            dn(3),
            dn(5),
            dn(7)
        ))
        .unwrap();
    let r = env.step(Step::FullImport, "directory");
    assert_eq!(
        (r.stats.updated, r.stats.renamed, r.stats.unchanged),
        (3, 1, 2697),
        "{:?}",
        r.stats
    );
    let p5 = env.cs_dn("directory", &dn(5));
    assert_eq!(
        p5.hologram.first("jpegPhoto"),
        Some(&Value::Binary(idsync_model::Blob::from_bytes(vec![
            0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x02
        ])))
    );
    // Most of the directory changed at once (the reader converts everything again while that
    // lasts): every change is found, and the rest is unchanged.
    let mut ldif = String::new();
    for i in (0..3000).filter(|i| i % 10 != 9 && *i != 7 && *i < 2500) {
        ldif.push_str(&format!(
            "dn: {}\nchangetype: modify\nreplace: title\ntitle: Reorganised\n-\n\n",
            dn(i)
        ));
    }
    slapd.modify(&ldif).unwrap();
    let r = env.step(Step::FullImport, "directory");
    assert_eq!(
        (
            r.stats.updated,
            r.stats.unchanged,
            r.stats.added,
            r.stats.deleted
        ),
        (2249, 451, 0, 0),
        "{:?}",
        r.stats
    );
    let all_unchanged = |env: &mut Env| {
        let r = env.step(Step::FullImport, "directory");
        assert_eq!(
            (r.stats.updated, r.stats.unchanged),
            (0, 2700),
            "{:?}",
            r.stats
        );
    };
    // p12 changed (its title): it is kept with the new entry's wire digest, which the next
    // import finds equal.
    let retitled = state(&mut env);
    assert!(retitled.wire_digest.is_some() && retitled.wire_digest != first.wire_digest);
    all_unchanged(&mut env);
    assert_eq!(state(&mut env), retitled);
    // Changed settings change every wire digest: each object (kept without a content digest)
    // is converted, loaded and compared once, found unchanged, and kept with its new wire
    // digest, which the next import finds equal.
    env.reload(&config.replace("page_size = 500", "page_size = 400"));
    all_unchanged(&mut env);
    let rekeyed = state(&mut env);
    assert!(
        rekeyed.wire_digest.is_some() && rekeyed.wire_digest != retitled.wire_digest,
        "{rekeyed:?}"
    );
    all_unchanged(&mut env);
    assert_eq!(state(&mut env), rekeyed);
}

#[test]
fn syncrepl_delta_add_modify_delete_rename_move_across_restarts() {
    let seed = ["ann", "bob", "cat", "dan", "eve"]
        .iter()
        .map(|u| ldap_person(u, &["title: Engineer".to_owned()]))
        .collect::<String>();
    let mut slapd = start(seed, true, false);
    let config = format!(
        "{}{}",
        ldap_connector("directory", "directory", &slapd, SUFFIX, ""),
        person_type()
    );
    let mut env = env_with(&config, &[]);
    env.step(Step::FullImport, "directory");
    let eve = env.cs_dn("directory", &format!("uid=eve,ou=People,{SUFFIX}"));
    slapd
        .modify(&format!(
            "{}dn: uid=ann,ou=People,{SUFFIX}\nchangetype: modify\nreplace: title\ntitle: Director\n-\n\n\
             dn: uid=bob,ou=People,{SUFFIX}\nchangetype: delete\n\n\
             dn: uid=cat,ou=People,{SUFFIX}\nchangetype: modrdn\nnewrdn: uid=kat\ndeleteoldrdn: 1\n\n\
             dn: uid=dan,ou=People,{SUFFIX}\nchangetype: moddn\nnewrdn: uid=dan\ndeleteoldrdn: 1\nnewsuperior: ou=Devices,{SUFFIX}\n\n",
            format_args!("dn: uid=fay,ou=People,{SUFFIX}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: fay\ncn: fay\nsn: fay\n\n")
        ))
        .unwrap();
    // The engine restarts (a new process over the same store): the cookie was persisted.
    env.reload(&config);
    let r = env.step(Step::DeltaImport, "directory");
    assert!(
        r.notes.iter().any(|n| n.contains("syncrepl")),
        "{:?}",
        r.notes
    );
    assert_eq!(r.stats.added, 1, "{:?}", r.stats);
    assert_eq!(r.stats.deleted, 1, "{:?}", r.stats);
    assert_eq!(r.stats.renamed, 2, "{:?}", r.stats);
    // Ann's title, and kat's uid (the RDN attribute changed with the rename).
    assert_eq!(r.stats.updated, 2, "{:?}", r.stats);
    assert!(env
        .cs_by_dn("directory", &format!("uid=kat,ou=People,{SUFFIX}"))
        .is_some());
    assert!(env
        .cs_by_dn("directory", &format!("uid=dan,ou=Devices,{SUFFIX}"))
        .is_some());
    assert_eq!(
        texts(
            env.cs_dn("directory", &format!("uid=ann,ou=People,{SUFFIX}"))
                .hologram
                .get("title")
        ),
        ["Director"]
    );
    // Nothing changed: an empty delta.
    let r = env.step(Step::DeltaImport, "directory");
    assert_eq!(r.stats.read, 0, "{:?} {:?}", r.stats, r.notes);

    // slapd restarts too (its session log is in memory): a delete is still found, by deletes or
    // by a present list and a full read, whichever the server answers with.
    slapd.restart().unwrap();
    slapd
        .modify(&format!(
            "dn: uid=eve,ou=People,{SUFFIX}\nchangetype: delete\n\n"
        ))
        .unwrap();
    env.reload(&config);
    let r = env.step(Step::DeltaImport, "directory");
    assert_eq!(r.stats.deleted, 1, "{:?} {:?}", r.stats, r.notes);
    let eve_after = env.cs_anchor("directory", eve.anchor.as_ref().unwrap().as_str());
    assert_eq!(
        eve_after.pending_import,
        Some(idsync_model::PendingImport::Delete)
    );
}

#[test]
fn a_syncrepl_present_list_refresh_counts_each_object_once() {
    let seed = ["ann", "bob", "cat", "dan", "eve"]
        .iter()
        .map(|u| ldap_person(u, &["title: Engineer".to_owned()]))
        .collect::<String>();
    let mut slapd = start(seed, true, false);
    let config = format!(
        "{}{}",
        ldap_connector("directory", "directory", &slapd, SUFFIX, ""),
        person_type()
    );
    let mut env = env_with(&config, &[]);
    env.step(Step::FullImport, "directory");
    // One person changes, one is added and one leaves, and slapd restarts, losing its session
    // log (kept in memory): the refresh delivers the changed entries, then answers with a
    // present list, and the connector reads everything in the same step.
    slapd
        .modify(&format!(
            "dn: uid=ann,ou=People,{SUFFIX}\nchangetype: modify\nreplace: title\ntitle: Director\n-\n\n\
             dn: uid=fay,ou=People,{SUFFIX}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: fay\ncn: fay\nsn: fay\n\n\
             dn: uid=eve,ou=People,{SUFFIX}\nchangetype: delete\n\n"
        ))
        .unwrap();
    slapd.restart().unwrap();
    let r = env.step(Step::DeltaImport, "directory");
    assert!(
        r.notes.iter().any(|n| n.contains("present list")),
        "{:?}",
        r.notes
    );
    let s = &r.stats;
    // Five people are there (ann, bob, cat, dan, fay), besides the entries out of scope: each
    // is read once, and each read is counted once, as added, updated or unchanged.
    assert_eq!(
        (
            s.read - s.filtered_total(),
            s.added,
            s.updated,
            s.unchanged,
            s.deleted
        ),
        (5, 1, 1, 3, 1),
        "{s:?}"
    );
    assert_eq!(
        s.read,
        s.added + s.updated + s.renamed + s.unchanged + s.filtered_total()
    );
}

#[test]
fn without_syncprov_the_delta_falls_back_to_modify_timestamp_and_says_so() {
    let seed = ldap_person("ann", &["title: Engineer".to_owned()]);
    let slapd = start(seed, false, false);
    let config = format!(
        "{}{}",
        ldap_connector("directory", "directory", &slapd, SUFFIX, ""),
        person_type()
    );
    let mut env = env_with(&config, &[]);
    env.step(Step::FullImport, "directory");
    // modifyTimestamp has one-second resolution: the change lands in a later second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    slapd
        .modify(&format!(
            "dn: uid=ann,ou=People,{SUFFIX}\nchangetype: modify\nreplace: title\ntitle: Director\n-\n\n\
             dn: uid=bob,ou=People,{SUFFIX}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: bob\ncn: bob\nsn: bob\n\n"
        ))
        .unwrap();
    let r = env.step(Step::DeltaImport, "directory");
    assert!(
        r.notes.iter().any(|n| n.contains("modifyTimestamp")),
        "{:?}",
        r.notes
    );
    assert_eq!((r.stats.updated, r.stats.added), (1, 1), "{:?}", r.stats);
}

/// Stops slapd (by PID) the first time the import reports progress.
struct StopServer(std::cell::Cell<Option<u32>>);
impl Progress for StopServer {
    fn advance(&self, _n: u64) {
        if let Some(pid) = self.0.take() {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

#[test]
fn server_stopped_mid_import_fails_the_run_deletes_nothing_and_the_next_run_succeeds() {
    let seed: String = (0..3000)
        .map(|i| ldap_person(&format!("p{i}"), &[]))
        .collect();
    let mut slapd = start(seed, true, false);
    let config = format!(
        "{}{}",
        ldap_connector("directory", "directory", &slapd, SUFFIX, "page_size = 200"),
        person_type()
    )
    .replace("page_size = 500\n", "");
    let mut env = env_with(&config, &[]);
    env.step(Step::FullImport, "directory");
    let before = env.snapshot();

    let rules = Rules::load(&config, CONFIG_FILE).unwrap();
    let store = SqliteStore::open(&env.path("idsync.db")).unwrap();
    env.engine = Engine::new(rules, store, env.dir.path().to_path_buf())
        .with_opener(idsync_connectors_all::open)
        .with_progress(Box::new(StopServer(std::cell::Cell::new(slapd.pid()))));
    let err = env
        .try_step(Step::FullImport, "directory")
        .expect_err("the server went away mid-import");
    assert!(
        err.to_string().contains("nothing is deleted") || err.to_string().contains("failed"),
        "{err}"
    );
    assert_eq!(env.snapshot(), before, "a failed import changes nothing");
    assert_eq!(env.last_run().status, "failed");

    slapd.restart().unwrap();
    env.reload(&config);
    let r = env.step(Step::FullImport, "directory");
    assert_eq!((r.stats.unchanged, r.stats.deleted), (3000, 0));
}

#[test]
fn manager_reference_to_an_entry_imported_later_resolves() {
    let slapd = start(ldap_person("dan", &[manager_line("eve")]), true, false);
    let config = format!(
        "{}{}{}{}{}{}{}{PROVISION_PROFILES}",
        ldap_connector("directory", "directory", &slapd, SUFFIX, ""),
        person_type(),
        profiles(&["id", "account", "manager"], ""),
        import_flow("directory", "uid", "uid"),
        import_flow("directory", "manager", "manager"),
        export_flow("profiles", "account", "uid"),
        export_flow("profiles", "manager", "manager"),
    );
    let mut env = env_with(&config, &[]);
    env.cycle(CycleKind::Full);
    assert_eq!(env.csv_row("profiles.csv", "account", "dan")["manager"], "");
    slapd
        .modify(&format!(
            "dn: uid=eve,ou=People,{SUFFIX}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: eve\ncn: eve\nsn: eve\n\n"
        ))
        .unwrap();
    env.cycle(CycleKind::Delta);
    assert_eq!(
        env.csv_row("profiles.csv", "account", "dan")["manager"],
        "eve"
    );
}

/// People from an LDIF directory provisioned into slapd as the target.
fn export_config(slapd: &Slapd, extra_flows: &str) -> String {
    format!(
        r#"{DIRECTORY}{}
[[connector.object_type]]
name = "person"
object_classes = ["inetOrgPerson"]

[[provision]]
connector = "target"
dn = "uid={{uid}},ou=People,{SUFFIX}"
object_classes = ["inetOrgPerson"]
{}{}{}{}{}{}{}{}{}{}{extra_flows}"#,
        ldap_connector(
            "target",
            "target",
            slapd,
            &format!("ou=People,{SUFFIX}"),
            ""
        ),
        import_flow("directory", "uid", "uid"),
        import_flow("directory", "cn", "cn"),
        import_flow("directory", "sn", "sn"),
        import_flow("directory", "mail", "mail"),
        import_flow("directory", "photo", "jpegPhoto"),
        export_flow("target", "uid", "uid"),
        export_flow("target", "cn", "cn"),
        export_flow("target", "sn", "sn"),
        export_flow("target", "mail", "mail"),
        export_flow("target", "jpegPhoto", "photo"),
    )
}

fn ldif_person(uid: &str, uuid: &str, extra: &[&str]) -> String {
    let mut p = person(uid, uuid, extra);
    if extra.contains(&"-nosn") {
        p = p
            .replace(&format!("sn: {uid}\n"), "")
            .replace("-nosn\n", "");
    }
    p
}

#[test]
fn export_add_modify_photo_bytes_rename_delete_and_a_refused_entry() {
    let slapd = start(String::new(), true, false);
    let photo = |n: u8| format!("jpegPhoto:: {}", base64_of(&[0xff, 0xd8, n, n, 0xff, 0xd9]));
    let p1 = photo(1);
    let ldif = [
        ldif_person("ann", "a-1", &["mail: ann@example.test", &p1]),
        ldif_person("bob", "b-2", &["mail: bob@example.test"]),
        // No sn: inetOrgPerson requires it, so the server refuses this add.
        ldif_person("carol", "c-3", &["-nosn"]),
        ldif_person("dan", "d-4", &[]),
    ]
    .concat();
    let mut env = env_with(
        &export_config(&slapd, ""),
        &[("directory.ldif", ldif.as_bytes())],
    );
    let r = env.cycle(CycleKind::Full);
    let exported: u64 = r.steps.iter().map(|s| s.stats.exported).sum();
    assert_eq!(exported, 3, "ann, bob and dan are exported");
    let carol = env.cs_dn("target", &format!("uid=carol,ou=People,{SUFFIX}"));
    let err = carol.export_error.clone().expect("the refusal is kept");
    assert!(err.contains("objectClassViolation"), "{err}");
    assert!(carol.pending_export.is_some(), "kept for a retry");
    let out = slapd
        .search(
            &format!("ou=People,{SUFFIX}"),
            "(uid=ann)",
            &["mail", "jpegPhoto"],
        )
        .unwrap();
    assert!(out.contains("mail: ann@example.test"), "{out}");
    assert!(
        out.contains(&format!(
            "jpegPhoto:: {}",
            base64_of(&[0xff, 0xd8, 1, 1, 0xff, 0xd9])
        )),
        "{out}"
    );
    // The confirming import found the created entries with their entryUUID anchors.
    let ann = env.cs_dn("target", &format!("uid=ann,ou=People,{SUFFIX}"));
    assert!(ann.anchor.is_some() && !ann.awaiting_add);

    // Ann's photo changes by its bytes only; bob's mail changes; dan is renamed (uid); ann's
    // colleague cat arrives; bob... and carol gets her sn.
    let p2 = photo(2);
    let ldif = [
        ldif_person("ann", "a-1", &["mail: ann@example.test", &p2]),
        ldif_person("bob", "b-2", &["mail: robert@example.test"]),
        ldif_person("carol", "c-3", &[]),
        ldif_person("daniel", "d-4", &[]).replace("uid=daniel", "uid=dan"),
    ]
    .concat();
    env.write("directory.ldif", &ldif);
    let r = env.cycle(CycleKind::Full);
    assert_eq!(r.pending_exports_left, 0);
    let out = slapd
        .search(
            &format!("ou=People,{SUFFIX}"),
            "(objectClass=inetOrgPerson)",
            &["mail", "jpegPhoto", "uid"],
        )
        .unwrap();
    assert!(
        out.contains(&format!(
            "jpegPhoto:: {}",
            base64_of(&[0xff, 0xd8, 2, 2, 0xff, 0xd9])
        )),
        "{out}"
    );
    assert!(out.contains("mail: robert@example.test"), "{out}");
    assert!(
        out.contains(&format!("dn: uid=carol,ou=People,{SUFFIX}")),
        "the refused entry is retried: {out}"
    );
    assert!(
        out.contains(&format!("dn: uid=daniel,ou=People,{SUFFIX}")),
        "renamed: {out}"
    );
    assert!(
        !out.contains(&format!("dn: uid=dan,ou=People,{SUFFIX}")),
        "renamed: {out}"
    );

    // Bob leaves the directory: deprovisioned (deleted) from the target.
    let ldif = [
        ldif_person("ann", "a-1", &["mail: ann@example.test", &p2]),
        ldif_person("carol", "c-3", &[]),
        ldif_person("daniel", "d-4", &[]).replace("uid=daniel", "uid=dan"),
    ]
    .concat();
    env.write("directory.ldif", &ldif);
    env.cycle(CycleKind::Full);
    let out = slapd
        .search(&format!("ou=People,{SUFFIX}"), "(uid=bob)", &["uid"])
        .unwrap();
    assert!(out.trim().is_empty(), "bob is deleted: {out}");
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn hostile_values_round_trip_through_dns_and_filters() {
    let slapd = start(String::new(), true, false);
    let hostile = [
        "star*paren(close)",
        "back\\slash",
        "comma, plus+ quote\" semi;",
        "#leading hash",
        " leading space",
        "trailing space ",
        "<angle> = Zoé Müller 日本",
        "nul\0byte",
    ];
    let mut ldif = String::new();
    for (i, h) in hostile.iter().enumerate() {
        ldif.push_str(&person(&format!("h{i}"), &format!("h-{i}"), &[]).replace(
            &format!("cn: h{i}\n"),
            &format!("cn:: {}\n", base64_of(h.as_bytes())),
        ));
    }
    let config = export_config(&slapd, "").replace(
        "dn = \"uid={uid},ou=People,dc=example,dc=test\"",
        "dn = \"cn={cn},ou=People,dc=example,dc=test\"",
    );
    let mut env = env_with(&config, &[("directory.ldif", ldif.as_bytes())]);
    let r = env.cycle(CycleKind::Full);
    assert_eq!(
        r.pending_exports_left,
        0,
        "{:?}",
        r.steps.iter().map(|s| &s.errors).collect::<Vec<_>>()
    );
    let mut target = ldap_target(&slapd, env.dir.path());
    for (i, h) in hostile.iter().enumerate() {
        // The entry came back from the server (confirming import) under its escaped DN with the
        // exact value, and a filter with the value finds exactly it.
        let o = env.cs_anchor("directory", &format!("h-{i}"));
        let (_, mv) = env.mv_of(&o);
        assert_eq!(texts(mv.get("cn")), [h.to_string()]);
        let found = target.find_by("cn", h).unwrap();
        assert_eq!(found.len(), 1, "{h:?}");
        assert_eq!(texts(found[0].attributes.get("cn")), [h.to_string()]);
        assert_eq!(texts(found[0].attributes.get("uid")), [format!("h{i}")]);
        let t = env
            .cs_by_anchor("target", found[0].anchor.as_str())
            .expect("confirmed");
        assert!(t.export_error.is_none() && !t.awaiting_add, "{t:?}");
    }
    assert!(
        target.find_by("cn", "*").unwrap().is_empty(),
        "`*` is a value, not a wildcard"
    );
}

fn ldap_target(slapd: &Slapd, dir: &std::path::Path) -> idsync_connector_ldap::LdapConnector {
    let settings: toml::Table = toml::from_str(&format!(
        "url = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"file:ldap.pw\"\nbase_dns = [\"{SUFFIX}\"]\n",
        slapd.url(),
        slapd.root_dn()
    ))
    .unwrap();
    idsync_connector_ldap::LdapConnector::new("target".into(), &settings, dir).unwrap()
}

#[test]
fn one_member_of_a_10000_member_group_changes_value_by_value() {
    // The group's 10,000 members are the subject here, not 10,000 people: members are typed as
    // text (`attribute_types`), so no person has to be synchronized for them to flow. Member
    // references through the metaverse are covered by the reference scenarios.
    const N: usize = 10_000;
    let mut seed = format!("dn: cn=big,ou=Groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: big\n");
    for i in 0..N - 1 {
        seed.push_str(&format!("member: uid=m{i},ou=People,{SUFFIX}\n"));
    }
    seed.push('\n');
    let source = start(seed, true, false);
    let target = start(String::new(), true, true);
    let groups = "attribute_types = { member = \"string\" }\n\n[[connector.object_type]]\nname = \"group\"\nobject_classes = [\"groupOfNames\"]\nmv_type = \"group\"\n";
    let config = format!(
        r#"{}{}
[[provision]]
connector = "target"
mv_type = "group"
object_type = "group"
dn = "cn={{cn}},ou=Groups,{SUFFIX}"
object_classes = ["groupOfNames"]
{}{}{}{}"#,
        ldap_connector("directory", "directory", &source, SUFFIX, groups),
        ldap_connector("target", "target", &target, SUFFIX, groups),
        import_flow("directory", "cn", "cn"),
        import_flow("directory", "member", "member"),
        export_flow("target", "cn", "cn"),
        export_flow("target", "member", "member"),
    );
    let mut env = env_with(&config, &[]);
    let r = env.cycle(CycleKind::Full);
    assert_eq!(r.pending_exports_left, 0);
    let count = |s: &Slapd| {
        s.search(
            &format!("cn=big,ou=Groups,{SUFFIX}"),
            "(objectClass=*)",
            &["member"],
        )
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("member: "))
        .count()
    };
    assert_eq!(count(&target), N - 1);

    // One member leaves, another joins, in the source directory.
    source
        .modify(&format!(
            "dn: cn=big,ou=Groups,{SUFFIX}\nchangetype: modify\ndelete: member\nmember: uid=m7,ou=People,{SUFFIX}\n-\nadd: member\nmember: uid=m{},ou=People,{SUFFIX}\n-\n\n",
            N - 1
        ))
        .unwrap();
    let r = env.cycle(CycleKind::Delta);
    assert_eq!(r.pending_exports_left, 0);
    assert_eq!(count(&target), N - 1);
    // The target's access log shows what was sent: one value deleted and one added, no
    // replace of the whole list.
    let log = target
        .search_log(&format!(
            "(&(objectClass=auditModify)(reqDN=cn=big,ou=Groups,{SUFFIX}))"
        ))
        .unwrap();
    let mods: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("reqMod: member:"))
        .collect();
    assert_eq!(
        mods,
        [
            format!("reqMod: member:- uid=m7,ou=People,{SUFFIX}").as_str(),
            format!("reqMod: member:+ uid=m{},ou=People,{SUFFIX}", N - 1).as_str(),
        ],
        "{log}"
    );
}

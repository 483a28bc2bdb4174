//! The LDAP connector on its own against a real throwaway slapd: TLS (LDAPS verified against a
//! named CA, refused without it, StartTLS, verification turned off explicitly), export of a move
//! with a rename, errors that name the place, an add repeated after a crash adopted, and the
//! schema read from the server.

use idsync_connector_ldap::LdapConnector;
use idsync_connectors::{Connector, ExportItem, ExportOp, ExportResult, ImportChange, ImportSink};
use idsync_model::{AttributeChange, AttributeDelta, CsEntry, CsId, Dn, Value};
use idsync_testbed::{base_ldif, Slapd, SlapdOptions, ROOT_PASSWORD};

const SUFFIX: &str = "dc=example,dc=test";

fn slapd(tls: bool) -> Slapd {
    let seed = format!(
        "{}dn: uid=ann,ou=People,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: ann\ncn: Ann\nsn: Lee\n\n",
        base_ldif(SUFFIX)
    );
    Slapd::start(SlapdOptions {
        seed: Some(seed.into_bytes()),
        tls,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("slapd must start for this test: {e}"))
}

fn connector(dir: &std::path::Path, settings: &str) -> idsync_connectors::Result<LdapConnector> {
    std::fs::write(dir.join("pw"), ROOT_PASSWORD).unwrap();
    let t: toml::Table = toml::from_str(settings).unwrap();
    LdapConnector::new("dir".into(), &t, dir)
}

fn settings(url: &str, extra: &str) -> String {
    format!(
        "url = \"{url}\"\nbind_dn = \"cn=admin,{SUFFIX}\"\nbind_password = \"file:pw\"\nbase_dns = [\"{SUFFIX}\"]\n{extra}\n"
    )
}

#[derive(Default)]
struct Collect {
    entries: Vec<CsEntry>,
    errors: Vec<(String, String)>,
}
impl ImportSink for Collect {
    fn entry(&mut self, e: CsEntry) -> Result<(), String> {
        self.entries.push(e);
        Ok(())
    }
    fn change(&mut self, _: ImportChange) -> Result<(), String> {
        Ok(())
    }
    fn object_error(&mut self, place: String, message: String) {
        self.errors.push((place, message));
    }
}

fn people(c: &mut LdapConnector) -> Vec<CsEntry> {
    let mut sink = Collect::default();
    c.full_import(&mut sink).unwrap();
    sink.entries
        .into_iter()
        .filter(|e| e.object_classes.iter().any(|c| c == "inetOrgPerson"))
        .collect()
}

#[test]
fn ldaps_is_verified_against_the_named_ca_and_refused_without_it() {
    let s = slapd(true);
    let dir = tempfile::tempdir().unwrap();
    let ca = s.ca_file().unwrap();
    std::fs::copy(&ca, dir.path().join("ca.pem")).unwrap();
    let url = s.ldaps_url().unwrap();

    let mut c = connector(dir.path(), &settings(&url, "ca_file = \"ca.pem\"")).unwrap();
    assert_eq!(people(&mut c).len(), 1);

    // Without the CA the server's certificate is not trusted: verification is on by default.
    let mut c = connector(dir.path(), &settings(&url, "")).unwrap();
    let err = c
        .full_import(&mut Collect::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect"), "{err}");

    // Turning verification off is explicit (and logged).
    let mut c = connector(dir.path(), &settings(&url, "tls_verify = false")).unwrap();
    assert_eq!(people(&mut c).len(), 1);

    // StartTLS on the plain port, verified against the CA.
    let mut c = connector(
        dir.path(),
        &settings(&s.url(), "starttls = true\nca_file = \"ca.pem\""),
    )
    .unwrap();
    assert_eq!(people(&mut c).len(), 1);
}

#[test]
fn bad_settings_and_bad_credentials_name_the_problem() {
    let s = slapd(false);
    let dir = tempfile::tempdir().unwrap();
    let err = connector(dir.path(), &settings(&s.url(), "filter = \"(uid=ann\""))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not a valid LDAP filter"), "{err}");
    let err = connector(
        dir.path(),
        &format!("url = \"{}\"\nbind_dn = \"cn=admin,{SUFFIX}\"\nbind_password = \"hunter2\"\nbase_dns = [\"{SUFFIX}\"]", s.url()),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("bind_password") && !err.contains("hunter2"),
        "{err}"
    );
    std::fs::write(dir.path().join("wrong"), "nope").unwrap();
    let mut c = connector(
        dir.path(),
        &settings(&s.url(), "").replace("file:pw", "file:wrong"),
    )
    .unwrap();
    let err = c
        .full_import(&mut Collect::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalidCredentials") && !err.contains("nope"),
        "{err}"
    );
    // A base that does not exist: the server's answer, with the base, and nothing delivered.
    let mut c = connector(
        dir.path(),
        &settings(&s.url(), "").replace(
            &format!("[\"{SUFFIX}\"]"),
            &format!("[\"ou=Nowhere,{SUFFIX}\"]"),
        ),
    )
    .unwrap();
    let mut sink = Collect::default();
    let err = c.full_import(&mut sink).unwrap_err().to_string();
    assert!(
        err.contains("noSuchObject")
            && err.contains("ou=Nowhere")
            && err.contains("nothing is deleted"),
        "{err}"
    );
    assert!(sink.entries.is_empty());
}

#[test]
fn export_moves_and_renames_and_keeps_per_entry_errors() {
    let s = slapd(false);
    let dir = tempfile::tempdir().unwrap();
    let mut c = connector(dir.path(), &settings(&s.url(), "")).unwrap();
    let item = |dn: &str, op: ExportOp| ExportItem {
        cs_id: CsId::new("x"),
        anchor: None,
        dn: Dn::new(dn),
        object_type: "person".into(),
        op,
    };
    let results = c
        .export(&[
            item(
                &format!("uid=ann,ou=People,{SUFFIX}"),
                ExportOp::Update {
                    new_dn: Some(Dn::new(format!("uid=anna,ou=Devices,{SUFFIX}"))),
                    changes: vec![AttributeDelta {
                        name: "title".into(),
                        change: AttributeChange::Replace(vec![Value::from("Moved")]),
                    }],
                },
            ),
            item(&format!("uid=ghost,ou=People,{SUFFIX}"), ExportOp::Delete),
            item(
                &format!("uid=nobody,ou=People,{SUFFIX}"),
                ExportOp::Update {
                    new_dn: None,
                    changes: vec![AttributeDelta {
                        name: "title".into(),
                        change: AttributeChange::Replace(vec![Value::from("x")]),
                    }],
                },
            ),
        ])
        .unwrap();
    assert!(
        matches!(results[0], ExportResult::Applied { .. }),
        "{results:?}"
    );
    // Deleting what is already gone is what a delete wants.
    assert!(
        matches!(results[1], ExportResult::Applied { .. }),
        "{results:?}"
    );
    match &results[2] {
        ExportResult::Failed(m) => assert!(m.contains("noSuchObject"), "{m}"),
        r => panic!("{r:?}"),
    }
    let out = s.search(SUFFIX, "(uid=anna)", &["title"]).unwrap();
    assert!(
        out.contains(&format!("dn: uid=anna,ou=Devices,{SUFFIX}")),
        "{out}"
    );
    assert!(out.contains("title: Moved"), "{out}");
    assert!(s
        .search(SUFFIX, "(uid=ann)", &[])
        .unwrap()
        .trim()
        .is_empty());
}

#[test]
fn the_schema_comes_from_the_server() {
    let s = slapd(false);
    let dir = tempfile::tempdir().unwrap();
    let mut c = connector(dir.path(), &settings(&s.url(), "")).unwrap();
    let schema = c.schema().unwrap();
    assert!(schema.knows_class("inetOrgPerson"));
    assert!(schema.knows_attribute("jpegPhoto"));
    assert!(schema.single_valued("displayName"));
    assert!(!schema.single_valued("mail"));
    assert!(schema.hints()["seealso"] == idsync_connectors::TypeHint::Reference);
}

#[test]
fn pipelined_modifies_keep_each_result_in_its_place() {
    let s = slapd(false);
    let dir = tempfile::tempdir().unwrap();
    let mut c = connector(dir.path(), &settings(&s.url(), "")).unwrap();
    let mut ldif = String::new();
    for i in 0..40 {
        ldif.push_str(&format!(
            "dn: uid=p{i},ou=People,{SUFFIX}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: p{i}\ncn: p{i}\nsn: p{i}\n\n"
        ));
    }
    s.modify(&ldif).unwrap();
    // 40 plain modifies, one of them of an entry that does not exist.
    let batch: Vec<ExportItem> = (0..41)
        .map(|i| ExportItem {
            cs_id: CsId::new(format!("c{i}")),
            anchor: None,
            dn: Dn::new(if i == 20 {
                format!("uid=missing,ou=People,{SUFFIX}")
            } else {
                format!("uid=p{},ou=People,{SUFFIX}", if i > 20 { i - 1 } else { i })
            }),
            object_type: "person".into(),
            op: ExportOp::Update {
                new_dn: None,
                changes: vec![AttributeDelta {
                    name: "title".into(),
                    change: AttributeChange::Update {
                        add: vec![Value::from(format!("t{i}"))],
                        remove: vec![],
                    },
                }],
            },
        })
        .collect();
    let results = c.export(&batch).unwrap();
    assert_eq!(results.len(), 41);
    for (i, r) in results.iter().enumerate() {
        match (i, r) {
            (20, ExportResult::Failed(m)) => assert!(m.contains("noSuchObject"), "{m}"),
            (20, r) => panic!("{r:?}"),
            (_, ExportResult::Applied { .. }) => {}
            (_, r) => panic!("{i}: {r:?}"),
        }
    }
    let out = s.search(SUFFIX, "(uid=p39)", &["title"]).unwrap();
    assert!(out.contains("title: t40"), "{out}");
}

/// An add sent again after a crash (the entry was created, idsync did not record it) is adopted,
/// never an `entryAlreadyExists` error; an entry at that DN holding anything else is still a
/// conflict.
#[test]
fn an_add_repeated_after_a_crash_is_adopted_and_a_different_entry_is_a_conflict() {
    let s = slapd(false);
    let dir = tempfile::tempdir().unwrap();
    let mut c = connector(dir.path(), &settings(&s.url(), "")).unwrap();
    let add = |dn: &str, title: &str| {
        let mut attributes = idsync_model::Attributes::new();
        attributes.set("uid", vec![Value::from("bo")]);
        attributes.set("cn", vec![Value::from("Bo")]);
        attributes.set("sn", vec![Value::from("Berg")]);
        attributes.set("title", vec![Value::from(title)]);
        ExportItem {
            cs_id: CsId::new("x"),
            anchor: None,
            dn: Dn::new(dn),
            object_type: "person".into(),
            op: ExportOp::Add {
                object_classes: vec!["inetOrgPerson".to_owned()],
                attributes,
            },
        }
    };
    let dn = format!("uid=bo,ou=People,{SUFFIX}");
    for round in 0..2 {
        let results = c.export(&[add(&dn, "Engineer")]).unwrap();
        assert!(
            matches!(results[0], ExportResult::Applied { .. }),
            "round {round}: {results:?}"
        );
    }
    let results = c.export(&[add(&dn, "Director")]).unwrap();
    match &results[0] {
        ExportResult::Failed(m) => assert!(m.contains("entryAlreadyExists"), "{m}"),
        r => panic!("a different entry at the DN must stay a conflict: {r:?}"),
    }
    let out = s.search(SUFFIX, "(uid=bo)", &["title"]).unwrap();
    assert_eq!(out.matches("dn: ").count(), 1, "{out}");
    assert!(out.contains("title: Engineer"), "{out}");
}

/// Issue 22 item 14: a server that accepts the connection and then never answers (a hung
/// slapd, a firewall that drops after the handshake) ends the import within the timeout, with a
/// message naming the server and saying nothing was deleted, like the other connection errors.
#[test]
fn a_server_that_never_answers_the_bind_is_named_and_nothing_is_deleted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        // Accepts, reads nothing, answers nothing; keeps every connection open.
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = connector(dir.path(), &settings(&url, "timeout_seconds = 1"))
        .and_then(|mut c| c.full_import(&mut Collect::default()))
        .map(|_| ())
        .expect_err("the import fails")
        .to_string();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains(&url) && err.contains("nothing is deleted"),
        "{err}"
    );
}

/// Issue 22 item 17: LDAPS to a server whose certificate has no subjectAltName (Samba's
/// self-made one) fails with a message that says so and what to do, even with its CA named.
#[test]
fn ldaps_to_a_certificate_without_subject_alt_name_says_so_and_what_to_do() {
    let s = Slapd::start(SlapdOptions {
        seed: Some(base_ldif(SUFFIX).into_bytes()),
        tls: true,
        tls_without_san: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("slapd must start for this test: {e}"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(s.ca_file().unwrap(), dir.path().join("ca.pem")).unwrap();
    let url = s.ldaps_url().unwrap();
    let mut c = connector(dir.path(), &settings(&url, "ca_file = \"ca.pem\"")).unwrap();
    let err = c
        .full_import(&mut Collect::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&url)
            && err.contains("no subjectAltName")
            && err.contains("ca_file")
            && err.contains("nothing is deleted"),
        "{err}"
    );
}

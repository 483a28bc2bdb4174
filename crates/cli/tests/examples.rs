//! Issue 22 item 12: every configuration in `examples/` loads through the real configuration
//! loader and its connectors' settings pass the checks `idsync run` makes before connecting, so
//! the examples cannot rot. Secrets are references (`env:NAME`, `file:PATH`); the test gives
//! each one a placeholder, as an operator would. The LDAP → LDAP example also runs, against two
//! real slapds.

use assert_cmd::Command;
use idsync_testbed::{Slapd, SlapdOptions};
use std::path::{Path, PathBuf};

mod support;
use support::ldap::*;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The secret references in a configuration: `"env:NAME"` and `"file:PATH"` values.
fn references<'a>(text: &'a str, scheme: &str) -> Vec<&'a str> {
    let quoted = format!("\"{scheme}:");
    text.match_indices(&quoted)
        .filter_map(|(at, _)| {
            let rest = &text[at + quoted.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// Loads `config` as `idsync` does (a copy in a fresh folder, secrets given placeholders) and
/// returns the failure, if any.
fn check(config: &Path) -> Result<(), String> {
    let name = config.display();
    if config.extension().and_then(|e| e.to_str()) != Some("toml") {
        return Err(format!("{name}: examples/ holds idsync.toml files only"));
    }
    let text = std::fs::read_to_string(config).map_err(|e| format!("{name}: {e}"))?;
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("idsync.toml");
    std::fs::write(&copy, &text).unwrap();
    for path in references(&text, "file") {
        let secret = tmp.path().join(path);
        std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
        std::fs::write(secret, "placeholder-secret\n").unwrap();
    }
    let mut cmd = Command::cargo_bin("idsync").unwrap();
    cmd.current_dir(tmp.path())
        .env_remove("IDSYNC_CONFIG")
        .args(["-c", "idsync.toml", "plan", "--json"]);
    for var in references(&text, "env") {
        let value = if var.ends_with("_URL") {
            "postgres://127.0.0.1:5432/test"
        } else {
            "placeholder-secret"
        };
        cmd.env(var, value);
    }
    let out = cmd.output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn every_example_configuration_loads_and_its_connector_settings_pass() {
    let files = examples();
    for estate in [
        "ldap-to-profile-store.toml",
        "ad-to-profile-store-photo-writeback.toml",
        "ldap-sql-hr-to-profile-store.toml",
        "ldap-to-ldap.toml",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(estate)),
            "examples/{estate} is missing"
        );
    }
    let failures: Vec<String> = files.iter().filter_map(|f| check(f).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// No secret is written into an example: every password, token and database URL is a reference.
#[test]
fn example_secrets_are_references() {
    for file in examples() {
        let text = std::fs::read_to_string(&file).unwrap();
        let value = toml::from_str::<toml::Table>(&text).unwrap();
        for connector in value["connector"].as_array().unwrap() {
            for key in ["bind_password", "token", "password", "url"] {
                let Some(v) = connector.get(key).and_then(|v| v.as_str()) else {
                    continue;
                };
                let secret = key != "url" || connector["type"].as_str() == Some("sql");
                assert!(
                    !secret || v.starts_with("env:") || v.starts_with("file:"),
                    "{}: connector {}: {key} must be an env: or file: reference",
                    file.display(),
                    connector["name"]
                );
            }
        }
    }
}

/// The photo write-back example is the reversed flow `idsync_sample::photo_writeback_to` makes.
#[test]
fn the_ad_example_reverses_the_photo_flow() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/ad-to-profile-store-photo-writeback.toml"),
    )
    .unwrap();
    assert!(text
        .contains("[[import_flow]]\nconnector = \"profiles\"\nmv = \"photo\"\ncs = \"photo\"\n"));
    assert!(text.contains(
        "[[export_flow]]\nconnector = \"directory\"\ncs = \"thumbnailPhoto\"\nmv = \"photo\"\n"
    ));
    assert!(!text.contains("cs = \"photo\"\nmv = \"photo\""));
}

fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name),
    )
    .unwrap()
}

/// `text` with `from` replaced by `to`, which must be there (so the test follows the example).
fn set(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer has {from}");
    text.replace(from, to)
}

fn person(uid: &str, cn: &str, sn: &str, extra: &str) -> String {
    format!(
        "dn: uid={uid},ou=People,dc=example,dc=test\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {sn}\n{extra}\n"
    )
}

/// The LDAP → LDAP example against two real slapds, changed only where it says CHANGE (server
/// addresses, bind DNs, secrets): every source person gets an inetOrgPerson entry in the target
/// (no objectClassViolation: `cn` and `sn` flow), the one the target already had is joined, not
/// duplicated, managers are the target's DNs, and a person deleted from the source is deleted
/// from the target by a delta cycle.
#[test]
fn the_ldap_to_ldap_example_provisions_a_real_directory() {
    let mut seed = idsync_testbed::base_ldif("dc=example,dc=test");
    seed.push_str(&person(
        "ann",
        "Ann Archer",
        "Archer",
        "givenName: Ann\nmail: ann@example.test\ntitle: Director\n",
    ));
    seed.push_str(&person("bob", "Bob Baker", "Baker", "givenName: Bob\ntelephoneNumber: +1 555 0101\nmanager: uid=ann,ou=People,dc=example,dc=test\n"));
    seed.push_str(&person(
        "carl",
        "Carl Cook",
        "Cook",
        "manager: uid=ann,ou=People,dc=example,dc=test\n",
    ));
    seed.push_str(&person("dora", "Dora Dean", "Dean", "title: Clerk\n"));
    seed.push_str("dn: cn=team,ou=Groups,dc=example,dc=test\nobjectClass: groupOfNames\ncn: team\nmember: uid=ann,ou=People,dc=example,dc=test\n\n");
    let source = Slapd::start(SlapdOptions {
        seed: Some(seed.into_bytes()),
        ..SlapdOptions::default()
    })
    .expect("the source slapd starts");
    // The target already has an entry for bob, out of date.
    let mut seed = idsync_testbed::base_ldif("dc=target,dc=test");
    seed.push_str("dn: uid=bob,ou=People,dc=target,dc=test\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob Old\nsn: Old\n\n");
    let target = Slapd::start(SlapdOptions {
        suffix: "dc=target,dc=test".to_owned(),
        seed: Some(seed.into_bytes()),
        ..SlapdOptions::default()
    })
    .expect("the target slapd starts");

    let tmp = tempfile::tempdir().unwrap();
    let mut text = example("ldap-to-ldap.toml");
    text = set(&text, "ldaps://source.example.test", &source.url());
    text = set(&text, "ldaps://target.example.test", &target.url());
    text = set(
        &text,
        "cn=idsync,ou=Services,dc=example,dc=test",
        &source.root_dn(),
    );
    text = set(
        &text,
        "cn=idsync,ou=Services,dc=target,dc=test",
        &target.root_dn(),
    );
    // `dump` reads the configuration too: the source's secret from a file as well.
    text = set(&text, "env:IDSYNC_SOURCE_PASSWORD", "file:source.password");
    std::fs::write(
        tmp.path().join("source.password"),
        idsync_testbed::ROOT_PASSWORD,
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("target.password"),
        format!("{}\n", idsync_testbed::ROOT_PASSWORD),
    )
    .unwrap();
    let config = tmp.path().join("idsync.toml");
    std::fs::write(&config, text).unwrap();
    let run = |kind: &str| {
        let out = support::run_ok(
            support::idsync()
                .args(["--json", "run", kind, "-c"])
                .arg(&config),
        );
        let r: serde_json::Value = serde_json::from_str(&out).expect("a JSON report");
        assert_eq!(r["pending_exports_left"], 0, "{kind}: {r}");
        r
    };
    let people = |what: &str, n: usize| {
        let found = entries(
            &target,
            "ou=People,dc=target,dc=test",
            "(objectClass=inetOrgPerson)",
            &["*"],
        );
        assert_eq!(found.len(), n, "{what}: {found:#?}");
        assert_settled(&space(&config, "target"), n, what);
        found
    };

    let first = run("full-cycle");
    assert_eq!(
        step_total(&first, "target", "exported"),
        4,
        "three added, bob updated: {first}"
    );
    let found = people("first full cycle", 4);
    let by_uid = |uid: &str| {
        found
            .iter()
            .find(|e| e.one("uid") == uid)
            .unwrap_or_else(|| panic!("no {uid}: {found:#?}"))
            .clone()
    };
    let ann = by_uid("ann");
    assert_eq!(ann.dn, "uid=ann,ou=People,dc=target,dc=test");
    assert_eq!(
        (
            ann.one("cn"),
            ann.one("sn"),
            ann.one("givenName"),
            ann.one("mail"),
            ann.one("title")
        ),
        (
            "Ann Archer".into(),
            "Archer".into(),
            "Ann".into(),
            "ann@example.test".into(),
            "Director".into()
        )
    );
    let bob = by_uid("bob");
    assert_eq!(
        (bob.one("cn"), bob.one("sn"), bob.one("telephoneNumber")),
        ("Bob Baker".into(), "Baker".into(), "+1 555 0101".into()),
        "joined and updated"
    );
    assert_eq!(bob.one("manager"), "uid=ann,ou=People,dc=target,dc=test");
    assert_eq!(
        by_uid("carl").one("manager"),
        "uid=ann,ou=People,dc=target,dc=test"
    );
    assert_eq!(by_uid("dora").one("title"), "Clerk");
    let quiet = run("full-cycle");
    assert_eq!(step_total(&quiet, "target", "exported"), 0, "{quiet}");

    // Deprovisioning: carl leaves the source; dora's title changes.
    source
        .modify("dn: uid=carl,ou=People,dc=example,dc=test\nchangetype: delete\n\ndn: uid=dora,ou=People,dc=example,dc=test\nchangetype: modify\nreplace: title\ntitle: Manager\n")
        .unwrap();
    let delta = run("delta-cycle");
    assert_eq!(step_total(&delta, "target", "exported"), 2, "{delta}");
    let found = people("delta cycle", 3);
    assert!(found.iter().all(|e| e.one("uid") != "carl"), "{found:#?}");
    let dora = found.iter().find(|e| e.one("uid") == "dora").unwrap();
    assert_eq!(dora.one("title"), "Manager");
    let quiet = run("full-cycle");
    assert_eq!(step_total(&quiet, "target", "exported"), 0, "{quiet}");
    people("full cycle after", 3);
}

/// Issue 22 item 12: the demo's configuration has the flows an LDAP `inetOrgPerson` target
/// needs. The demo is made by `idsync demo`, the README's LDAP target is appended to its
/// `idsync.toml` as the README says (only the server's address changed, to a throwaway slapd),
/// and one full cycle creates every person in slapd: no objectClassViolation, nothing left
/// pending, every entry found by an LDAP search with its `cn` and `sn`.
#[test]
fn the_readmes_ldap_target_added_to_the_demo_receives_every_person() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let at = readme
        .find("The demo's people can also be provisioned into an LDAP directory")
        .expect("the README shows how to add an LDAP target to the demo");
    let block = readme[at..]
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a TOML block");

    let mut seed = idsync_testbed::base_ldif("dc=target,dc=test");
    seed.push('\n');
    let target = Slapd::start(SlapdOptions {
        suffix: "dc=target,dc=test".to_owned(),
        seed: Some(seed.into_bytes()),
        ..SlapdOptions::default()
    })
    .expect("the target slapd starts");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idsync-demo");
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    support::run_ok(
        support::idsync()
            .args(["--json", "demo", "--listen", &listen, "--dir"])
            .arg(&dir),
    );
    let _serve = support::serve(&dir.join("profile-store.db"), port);
    let config = dir.join("idsync.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push('\n');
    text.push_str(&set(block, "ldap://127.0.0.1:389", &target.url()));
    std::fs::write(&config, text).unwrap();
    std::fs::write(
        dir.join("ldap-target.password"),
        format!("{}\n", idsync_testbed::ROOT_PASSWORD),
    )
    .unwrap();

    let out = support::run_ok(
        support::idsync()
            .args(["--json", "run", "full-cycle", "-c"])
            .arg(&config),
    );
    assert!(!out.contains("objectClassViolation"), "{out}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("a JSON report");
    assert_eq!(r["pending_exports_left"], 0, "{r}");
    assert_eq!(step_total(&r, "ldap-target", "export_errors"), 0, "{r}");
    let people = idsync_sample::Options::demo().people;
    assert_eq!(step_total(&r, "ldap-target", "exported"), people as u64);

    let found = entries(
        &target,
        "ou=People,dc=target,dc=test",
        "(objectClass=inetOrgPerson)",
        &["uid", "cn", "sn", "manager"],
    );
    assert_eq!(found.len(), people, "{found:#?}");
    let uids: std::collections::BTreeSet<String> = found.iter().map(|e| e.one("uid")).collect();
    let expected: std::collections::BTreeSet<String> =
        (0..people).map(idsync_sample::uid).collect();
    assert_eq!(uids, expected);
    for e in &found {
        assert_eq!(
            e.dn,
            format!("uid={},ou=People,dc=target,dc=test", e.one("uid"))
        );
        assert!(!e.one("cn").is_empty() && !e.one("sn").is_empty(), "{e:?}");
        if let Some(m) = e.attrs.get("manager") {
            let m = String::from_utf8(m[0].clone()).unwrap();
            assert!(m.ends_with(",ou=People,dc=target,dc=test"), "{e:?}");
        }
    }
    assert!(found.iter().any(|e| e.attrs.contains_key("manager")));
    assert_settled(&space(&config, "ldap-target"), people, "ldap-target");
}

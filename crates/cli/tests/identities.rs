//! Identities through real servers with hostile but legal directory values: people read from a
//! throwaway slapd are provisioned to idsync's profile store (`idsync serve`), whose `userName`
//! must equal the source `uid` exactly, and back to the same slapd under `ou=Staff`, where every
//! provisioned entry must meet its own entry when it is imported again (one object per entry,
//! joined and confirmed), by full and by delta cycles.

use base64::Engine as _;
use idsync_testbed::{Slapd, SlapdOptions};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::path::Path;

mod support;
use support::*;

const SUFFIX: &str = "dc=example,dc=test";

/// The hostile uids, each with the RDN its source entry is named by (one is multi-valued).
const PEOPLE: &[(&str, &str)] = &[
    ("star*paren()", r"uid=star*paren()"),
    (r"back\slash", r"uid=back\\slash"),
    (
        r#"comma,plus+quote"lt<gt>semi;"#,
        r#"uid=comma\,plus\+quote\"lt\<gt\>semi\;"#,
    ),
    ("eq=sign", r"uid=eq\=sign"),
    ("#hash", r"uid=\#hash"),
    (" lead and trail ", r"uid=\ lead and trail\ "),
    ("Ångström 李", "uid=Ångström 李"),
    ("plain", "uid=plain"),
    ("multi", "uid=multi+cn=Multi Valued"),
];

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn seed() -> String {
    let mut s = idsync_testbed::base_ldif(SUFFIX);
    s.push_str(&format!(
        "dn: ou=Staff,{SUFFIX}\nobjectClass: organizationalUnit\nou: Staff\n\n"
    ));
    for (uid, rdn) in PEOPLE {
        let cn = if *uid == "multi" { "Multi Valued" } else { uid };
        s.push_str(&format!(
            "dn:: {}\nobjectClass: inetOrgPerson\nuid:: {}\ncn:: {}\nsn:: {}\n\n",
            b64(&format!("{rdn},ou=People,{SUFFIX}")),
            b64(uid),
            b64(cn),
            b64(uid),
        ));
    }
    s
}

fn config_toml(slapd: &Slapd, profile_port: u16, staff: bool) -> String {
    let url = slapd.url();
    let root = slapd.root_dn();
    let mut c = format!(
        r#"[store]
path = "idsync.db"

[[connector]]
name = "directory"
type = "ldap"
role = "directory"
url = "{url}"
bind_dn = "{root}"
bind_password = "file:ldap.pw"
base_dns = ["ou=People,{SUFFIX}"]

[[connector.object_type]]
name = "person"
object_classes = ["inetOrgPerson"]

[[connector]]
name = "profiles"
type = "profile-store"
role = "target"
url = "http://127.0.0.1:{profile_port}"
token = "file:engine.token"

[[connector.object_type]]
name = "person"
object_classes = ["User"]

[[import_flow]]
connector = "directory"
mv = "uid"
cs = "uid"

[[import_flow]]
connector = "directory"
mv = "sn"
cs = "sn"

[[import_flow]]
connector = "directory"
mv = "cn"
cs = "cn"

[[provision]]
connector = "profiles"
mv_type = "person"
object_type = "person"
dn = "{{uid}}"

[[export_flow]]
connector = "profiles"
cs = "displayName"
mv = "cn"
"#
    );
    if staff {
        c.push_str(&format!(
            r#"
[[connector]]
name = "staff"
type = "ldap"
role = "target"
url = "{url}"
bind_dn = "{root}"
bind_password = "file:ldap.pw"
base_dns = ["ou=Staff,{SUFFIX}"]

[[connector.object_type]]
name = "person"
object_classes = ["inetOrgPerson"]

[[provision]]
connector = "staff"
mv_type = "person"
object_type = "person"
dn = "uid={{uid}},ou=Staff,{SUFFIX}"
object_classes = ["inetOrgPerson"]

[[export_flow]]
connector = "staff"
cs = "uid"
mv = "uid"

[[export_flow]]
connector = "staff"
cs = "cn"
mv = "cn"

[[export_flow]]
connector = "staff"
cs = "sn"
mv = "sn"
"#
        ));
    }
    c
}

struct Estate {
    _slapd: Slapd,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    token: String,
    api: Api,
    _serve: Serve,
}

fn estate(staff: bool) -> Estate {
    let slapd = Slapd::start(SlapdOptions {
        seed: Some(seed().into_bytes()),
        ..SlapdOptions::default()
    })
    .expect("slapd starts");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("ldap.pw"), idsync_testbed::ROOT_PASSWORD).unwrap();
    let pdb = dir.join("profiles.db");
    let token = token(&pdb, &["--engine"]);
    std::fs::write(dir.join("engine.token"), format!("{token}\n")).unwrap();
    let port = free_port();
    let serve = serve(&pdb, port);
    let config = dir.join("idsync.toml");
    std::fs::write(&config, config_toml(&slapd, port, staff)).unwrap();
    Estate {
        _slapd: slapd,
        config,
        _dir: tmp,
        token,
        api: Api::new(port),
        _serve: serve,
    }
}

fn cycle(config: &Path, kind: &str) -> Json {
    let out = run_ok(idsync().args(["--json", "run", kind, "-c"]).arg(config));
    serde_json::from_str(&out).expect("a JSON report")
}

fn user_names(e: &Estate) -> BTreeSet<String> {
    let mut r = e
        .api
        .agent
        .get(&format!("{}/Users", e.api.base))
        .query("count", "100")
        .header("Authorization", format!("Bearer {}", e.token))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: Json = r.body_mut().read_json().unwrap();
    page["Resources"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|u| u["userName"].as_str().expect("a userName").to_owned())
        .collect()
}

fn uids() -> BTreeSet<String> {
    PEOPLE.iter().map(|(u, _)| (*u).to_owned()).collect()
}

#[test]
fn a_profile_user_name_equals_the_source_uid_exactly() {
    let e = estate(false);
    let first = cycle(&e.config, "full-cycle");
    assert_eq!(first["pending_exports_left"], 0, "{first}");
    assert_eq!(user_names(&e), uids(), "{first}");
    // A delta cycle changes none of them, and makes no second profile.
    let delta = cycle(&e.config, "delta-cycle");
    assert_eq!(delta["pending_exports_left"], 0, "{delta}");
    assert_eq!(user_names(&e), uids(), "{delta}");
}

fn step_total(report: &Json, connector: &str, field: &str) -> u64 {
    report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["connector"] == connector)
        .map(|s| s["stats"][field].as_u64().unwrap_or(0))
        .sum()
}

/// The objects of the `staff` connector space as `idsync dump` shows them.
fn staff_space(config: &Path) -> Vec<Json> {
    let out = run_ok(idsync().args(["dump", "-c"]).arg(config));
    out.lines()
        .map(|l| serde_json::from_str::<Json>(l).expect("a JSON line"))
        .filter(|o| o["kind"] == "cs" && o["connector"] == "staff")
        .collect()
}

#[test]
fn provisioned_entries_with_hostile_uids_meet_their_own_entries() {
    let e = estate(true);
    let first = cycle(&e.config, "full-cycle");
    assert_eq!(first["pending_exports_left"], 0, "{first}");
    assert_eq!(step_total(&first, "staff", "exported"), 9, "{first}");
    for kind in ["full-cycle", "delta-cycle", "full-cycle"] {
        let r = cycle(&e.config, kind);
        assert_eq!(r["pending_exports_left"], 0, "{kind}: {r}");
        assert_eq!(step_total(&r, "staff", "exported"), 0, "{kind}: {r}");
        assert_eq!(step_total(&r, "staff", "added"), 0, "{kind}: {r}");
        let space = staff_space(&e.config);
        assert_eq!(space.len(), 9, "{kind}: {space:#?}");
        for o in &space {
            assert!(o["mv_id"].is_string(), "not joined: {o:#}");
            assert_eq!(o["awaiting"], false, "not confirmed: {o:#}");
            assert!(o["pending_export"].is_null(), "{o:#}");
        }
    }
    // Every uid reached ou=Staff exactly as it is in the source.
    let out = e
        ._slapd
        .search(
            &format!("ou=Staff,{SUFFIX}"),
            "(objectClass=inetOrgPerson)",
            &["uid"],
        )
        .unwrap();
    assert_eq!(
        out.matches("\ndn").count() + usize::from(out.starts_with("dn")),
        9,
        "{out}"
    );
    assert_eq!(user_names(&e), uids());
    // `idsync show` finds an entry by any spelling of its DN (issue 22, item 10): type case,
    // `\2C` for `\,`, the order of a multi-valued RDN, spaces after separators.
    for (spelling, uid) in [
        (
            r"UID=comma\2Cplus\2Bquote\22lt\3Cgt\3Esemi\3B, OU=staff,dc=example,dc=test",
            r#"comma,plus+quote"lt<gt>semi;"#,
        ),
        (
            r#"uid=comma\,plus\+quote\"lt\<gt\>semi\;,ou=Staff,dc=example,dc=test"#,
            r#"comma,plus+quote"lt<gt>semi;"#,
        ),
        (
            "cn=multi valued+UID=Multi,ou=people,DC=example,dc=test",
            "multi",
        ),
        (
            "uid=Multi + cn=multi valued,ou=people,DC=example,dc=test",
            "multi",
        ),
        (r"uid=\23hash,ou=Staff,dc=example,dc=test", "#hash"),
        (r"uid=\#hash,ou=Staff,dc=example,dc=test", "#hash"),
    ] {
        let out = run_ok(
            idsync()
                .args(["--json", "show", spelling, "-c"])
                .arg(&e.config),
        );
        let o: Json = serde_json::from_str(&out).expect("a JSON object");
        assert!(
            out.contains(&serde_json::to_string(uid).unwrap()),
            "{spelling}: {o:#}"
        );
        assert!(o["mv_id"].is_string(), "{spelling}: not joined: {o:#}");
    }
}

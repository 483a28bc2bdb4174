//! Identities through real servers with hostile but legal directory values: people read from a
//! throwaway slapd are provisioned to idsync's profile store (`idsync serve`), whose `userName`
//! must equal the source `uid` exactly, and back to the same slapd under `ou=Staff`, where every
//! provisioned entry must meet its own entry when it is imported again (one object per entry,
//! joined and confirmed), by full and by delta cycles. The last test sends them from a source
//! slapd to the profile store and to a second slapd, and changes them there.

use idsync_testbed::{Slapd, SlapdOptions};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

mod support;
use support::ldap::*;
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

/// A value that would widen a filter built by pasting it in.
const INJECTION: &str = "*)(uid=*))(|(uid=*";

fn seed() -> String {
    let mut s = idsync_testbed::base_ldif(SUFFIX);
    s.push_str(&format!(
        "dn: ou=Staff,{SUFFIX}\nobjectClass: organizationalUnit\nou: Staff\n\n"
    ));
    for (uid, rdn) in PEOPLE {
        let cn = if *uid == "multi" { "Multi Valued" } else { uid };
        s.push_str(&format!(
            "dn:: {}\nobjectClass: inetOrgPerson\nuid:: {}\ncn:: {}\nsn:: {}\ndescription:: {}\ndescription:: {}\n\n",
            b64(format!("{rdn},ou=People,{SUFFIX}")),
            b64(uid),
            b64(cn),
            b64(uid),
            b64(format!(" {uid} ")),
            b64(INJECTION),
        ));
    }
    s
}

/// Where the `staff` target is: a slapd (the source's own or another) and the RDN of the entries
/// provisioned there, under `ou=Staff`.
struct Staff<'a> {
    slapd: &'a Slapd,
    rdn: &'a str,
}

fn config_toml(slapd: &Slapd, profile_port: u16, staff: Option<Staff>) -> String {
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

[[import_flow]]
connector = "directory"
mv = "description"
cs = "description"

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
    if let Some(Staff { slapd: target, rdn }) = staff {
        let url = target.url();
        let root = target.root_dn();
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
dn = "{rdn},ou=Staff,{SUFFIX}"
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

[[export_flow]]
connector = "staff"
cs = "description"
mv = "description"
"#
        ));
    }
    c
}

struct Estate {
    slapd: Slapd,
    /// The `staff` target's own slapd, when it is not the source's.
    target: Option<Slapd>,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    token: String,
    api: Api,
    _serve: Serve,
}

#[derive(PartialEq)]
enum Targets {
    /// The profile store only.
    Profiles,
    /// And `ou=Staff` of the source's own slapd, entries named `uid={uid}`.
    SameServer,
    /// And `ou=Staff` of a second slapd, entries named by a multi-valued RDN.
    OtherServer,
}

/// The RDN template of entries provisioned to a second slapd: multi-valued, both halves hostile.
const OTHER_RDN: &str = "uid={uid}+cn={cn}";

fn estate(targets: Targets) -> Estate {
    let slapd = Slapd::start(SlapdOptions {
        seed: Some(seed().into_bytes()),
        ..SlapdOptions::default()
    })
    .expect("slapd starts");
    let target = (targets == Targets::OtherServer).then(|| {
        let mut seed = idsync_testbed::base_ldif(SUFFIX);
        seed.push_str(&format!(
            "dn: ou=Staff,{SUFFIX}\nobjectClass: organizationalUnit\nou: Staff\n\n"
        ));
        Slapd::start(SlapdOptions {
            seed: Some(seed.into_bytes()),
            ..SlapdOptions::default()
        })
        .expect("the target slapd starts")
    });
    let staff = match (&targets, &target) {
        (Targets::Profiles, _) => None,
        (Targets::SameServer, _) => Some(Staff {
            slapd: &slapd,
            rdn: "uid={uid}",
        }),
        (Targets::OtherServer, Some(t)) => Some(Staff {
            slapd: t,
            rdn: OTHER_RDN,
        }),
        (Targets::OtherServer, None) => unreachable!(),
    };
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
        slapd,
        target,
        config,
        _dir: tmp,
        token,
        api: Api::new(port),
        _serve: serve,
    }
}

/// Every profile: its `userName` and `displayName`.
fn profiles(e: &Estate) -> BTreeMap<String, String> {
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
        .map(|u| {
            (
                u["userName"].as_str().expect("a userName").to_owned(),
                u["displayName"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn user_names(e: &Estate) -> BTreeSet<String> {
    profiles(e).into_keys().collect()
}

fn uids() -> BTreeSet<String> {
    PEOPLE.iter().map(|(u, _)| (*u).to_owned()).collect()
}

#[test]
fn a_profile_user_name_equals_the_source_uid_exactly() {
    let e = estate(Targets::Profiles);
    let first = cycle(&e.config, "full-cycle");
    assert_eq!(first["pending_exports_left"], 0, "{first}");
    assert_eq!(user_names(&e), uids(), "{first}");
    // A delta cycle changes none of them, and makes no second profile.
    let delta = cycle(&e.config, "delta-cycle");
    assert_eq!(delta["pending_exports_left"], 0, "{delta}");
    assert_eq!(user_names(&e), uids(), "{delta}");
}

#[test]
fn provisioned_entries_with_hostile_uids_meet_their_own_entries() {
    let e = estate(Targets::SameServer);
    let first = cycle(&e.config, "full-cycle");
    assert_eq!(first["pending_exports_left"], 0, "{first}");
    assert_eq!(step_total(&first, "staff", "exported"), 9, "{first}");
    for kind in ["full-cycle", "delta-cycle", "full-cycle"] {
        let r = cycle(&e.config, kind);
        assert_eq!(r["pending_exports_left"], 0, "{kind}: {r}");
        assert_eq!(step_total(&r, "staff", "exported"), 0, "{kind}: {r}");
        assert_eq!(step_total(&r, "staff", "added"), 0, "{kind}: {r}");
        assert_settled(&space(&e.config, "staff"), 9, kind);
    }
    // Every uid reached ou=Staff exactly as it is in the source.
    let staff = entries(
        &e.slapd,
        &format!("ou=Staff,{SUFFIX}"),
        "(objectClass=inetOrgPerson)",
        &["uid"],
    );
    let staff_uids: BTreeSet<String> = staff.iter().map(|s| s.one("uid")).collect();
    assert_eq!(staff_uids, uids(), "{staff:#?}");
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

/// The values a person's entry holds, as sets of bytes: what must arrive unchanged.
fn values(entry: &Entry) -> BTreeMap<&'static str, BTreeSet<Vec<u8>>> {
    ["uid", "cn", "sn", "description"]
        .into_iter()
        .map(|a| {
            let vs = entry.attrs.get(a).cloned().unwrap_or_default();
            (a, vs.into_iter().collect())
        })
        .collect()
}

/// Everything the source holds has arrived, exactly and once: each profile's `userName` is the
/// source `uid` and its `displayName` the `cn`; each target entry holds the source's values byte
/// for byte and is named by them, escaped as RFC 4514 says (the target server finds it by the
/// test's own escaping); every object of every connector space is joined and confirmed, one per
/// entry or profile, and the metaverse holds one person per source entry.
fn assert_arrived(e: &Estate, when: &str) {
    let target = e.target.as_ref().expect("a target slapd");
    let attrs = ["uid", "cn", "sn", "description"];
    let source = entries(
        &e.slapd,
        &format!("ou=People,{SUFFIX}"),
        "(objectClass=inetOrgPerson)",
        &attrs,
    );
    let by_uid: BTreeMap<String, &Entry> = source.iter().map(|s| (s.one("uid"), s)).collect();
    assert_eq!(
        by_uid.len(),
        source.len(),
        "{when}: one uid per source entry"
    );
    let expected: BTreeMap<String, String> =
        source.iter().map(|s| (s.one("uid"), s.one("cn"))).collect();
    assert_eq!(profiles(e), expected, "{when}: profiles");

    let staff = entries(
        target,
        &format!("ou=Staff,{SUFFIX}"),
        "(objectClass=inetOrgPerson)",
        &attrs,
    );
    assert_eq!(staff.len(), source.len(), "{when}: {staff:#?}");
    for t in &staff {
        let uid = t.one("uid");
        let s = by_uid
            .get(&uid)
            .unwrap_or_else(|| panic!("{when}: {uid:?} is in no source entry"));
        assert_eq!(values(t), values(s), "{when}: {:?}", t.dn);
        let dn = format!(
            "uid={}+cn={},ou=Staff,{SUFFIX}",
            rdn_value(&uid),
            rdn_value(&s.one("cn"))
        );
        assert!(exists(target, &dn), "{when}: {dn:?} not found ({:?})", t.dn);
    }
    let n = source.len();
    assert_settled(&space(&e.config, "staff"), n, &format!("{when}: staff"));
    assert_settled(
        &space(&e.config, "profiles"),
        n,
        &format!("{when}: profiles"),
    );
    assert_settled(
        &space(&e.config, "directory"),
        n,
        &format!("{when}: directory"),
    );
    let people = dump(&e.config)
        .into_iter()
        .filter(|o| o["kind"] == "mv")
        .count();
    assert_eq!(people, n, "{when}: metaverse");
}

/// A cycle that has nothing left to send, and sent nothing when nothing changed.
fn quiet(e: &Estate, kind: &str) {
    let r = cycle(&e.config, kind);
    assert_eq!(r["pending_exports_left"], 0, "{kind}: {r}");
    for c in ["staff", "profiles"] {
        assert_eq!(step_total(&r, c, "exported"), 0, "{kind}: {c}: {r}");
        assert_eq!(step_total(&r, c, "added"), 0, "{kind}: {c}: {r}");
    }
    assert_arrived(e, kind);
}

#[test]
fn hostile_values_reach_the_profile_store_and_another_directory_and_back_exactly() {
    let e = estate(Targets::OtherServer);
    let first = cycle(&e.config, "full-cycle");
    assert_eq!(first["pending_exports_left"], 0, "{first}");
    assert_eq!(step_total(&first, "staff", "exported"), 9, "{first}");
    assert_eq!(step_total(&first, "profiles", "exported"), 9, "{first}");
    assert_arrived(&e, "first full cycle");
    quiet(&e, "full-cycle");
    quiet(&e, "delta-cycle");

    // Changes at the source, each with hostile values: a changed value, a new person, a renamed
    // one (the uid in its RDN changes, so its target entry and profile are renamed) and a
    // deleted one (deprovisioned from both targets).
    let added = "#new, one+two ";
    e.slapd
        .modify(&format!(
            "dn:: {hash}\nchangetype: modify\nreplace: sn\nsn:: {sn}\n-\nreplace: description\ndescription:: {d1}\ndescription:: {d2}\n\n\
             dn:: {new}\nchangetype: add\nobjectClass: inetOrgPerson\nuid:: {uid}\ncn:: {cn}\nsn:: {uid}\ndescription:: {d1}\n\n\
             dn: uid=plain,ou=People,{SUFFIX}\nchangetype: modrdn\nnewrdn:: {renamed}\ndeleteoldrdn: 1\n\n\
             dn: uid=eq\\=sign,ou=People,{SUFFIX}\nchangetype: delete\n",
            hash = b64(format!(r"uid=\#hash,ou=People,{SUFFIX}")),
            sn = b64(r#";semi, "new" sn "#),
            d1 = b64(" \\back\\ <gt> "),
            d2 = b64("Ångström 李 = (*)"),
            new = b64(format!("uid={},ou=People,{SUFFIX}", rdn_value(added))),
            uid = b64(added),
            cn = b64("Ångström 李 + \"new\""),
            renamed = b64(r"uid=re\,named\+"),
        ))
        .expect("the changes are applied");
    let delta = cycle(&e.config, "delta-cycle");
    assert_eq!(delta["pending_exports_left"], 0, "{delta}");
    assert!(step_total(&delta, "staff", "exported") >= 4, "{delta}");
    assert_arrived(&e, "delta cycle after the changes");
    assert!(user_names(&e).contains(added));
    assert!(user_names(&e).contains("re,named+"));
    assert!(!user_names(&e).contains("eq=sign"));
    assert!(!user_names(&e).contains("plain"));
    quiet(&e, "delta-cycle");
    quiet(&e, "full-cycle");
}

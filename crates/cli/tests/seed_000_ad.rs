//! Seed 000 against Active Directory (a real throwaway Samba AD DC): photos flow from AD's
//! `thumbnailPhoto` into the profile store; then the picture flow is reversed (profile store →
//! AD, `idsync_sample::photo_writeback_to`) and a photo a person uploads to the profile store with
//! their own token reaches `thumbnailPhoto`, after a full cycle and after a delta cycle (DirSync),
//! for people who had a photo in AD and for people who never had one. Nothing is deleted and no
//! connector space is cleared: the changed rules re-evaluate by themselves. A photo then changed
//! by hand in AD is put back by a delta cycle (target drift, issue 17).
//!
//! Everything runs through the real `idsync` binary: `idsync serve` is the profile store,
//! `idsync token create` makes the tokens, `idsync run` runs the cycles.

use base64::Engine as _;
use idsync_testbed::samba::ADMIN_PASSWORD;
use idsync_testbed::SambaDc;
use serde_json::Value as Json;

mod support;
use support::*;

fn hash(bytes: &[u8]) -> String {
    idsync_model::ContentHash::of(bytes).to_hex()
}

/// A user's `thumbnailPhoto` as AD holds it, read with OpenLDAP's `ldapsearch`.
fn ad_photo(dc: &SambaDc, account: &str) -> Option<Vec<u8>> {
    let out = dc
        .tool("ldapsearch")
        .args(["-b", dc.base_dn(), "-LLL", "-o", "ldif-wrap=no"])
        .arg(format!("(sAMAccountName={account})"))
        .arg("thumbnailPhoto")
        .output()
        .expect("ldapsearch runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dn: "), "{account} is in AD: {text}");
    text.lines()
        .find_map(|l| l.strip_prefix("thumbnailPhoto:: "))
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
}

fn sum(report: &Json, stat: &str) -> u64 {
    report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["stats"][stat].as_u64().unwrap_or(0))
        .sum()
}

fn config(dc: &SambaDc, port: u16) -> String {
    format!(
        r#"[store]
path = "idsync.db"

[[connector]]
name = "directory"
type = "ldap"
role = "directory"
profile = "active-directory"
url = "{url}"
bind_dn = "{bind}"
bind_password = "file:ad.pw"
base_dns = ["{base}"]
filter = "(employeeID=*)"

[[connector.object_type]]
name = "person"
object_classes = ["user"]

[[connector]]
name = "profiles"
type = "profile-store"
role = "target"
url = "http://127.0.0.1:{port}"
token = "file:engine.token"

[[connector.object_type]]
name = "person"
object_classes = ["User"]

[[import_flow]]
connector = "directory"
mv = "uid"
cs = "sAMAccountName"

[[import_flow]]
connector = "directory"
mv = "displayName"
cs = "displayName"

[[import_flow]]
connector = "directory"
mv = "mail"
cs = "mail"

[[import_flow]]
connector = "directory"
mv = "manager"
cs = "manager"

[[import_flow]]
connector = "directory"
mv = "photo"
cs = "thumbnailPhoto"

[[provision]]
connector = "profiles"
mv_type = "person"
object_type = "person"
dn = "{{uid}}"

[[export_flow]]
connector = "profiles"
cs = "displayName"
mv = "displayName"

[[export_flow]]
connector = "profiles"
cs = "mail"
mv = "mail"

[[export_flow]]
connector = "profiles"
cs = "manager"
mv = "manager"

[[export_flow]]
connector = "profiles"
cs = "photo"
mv = "photo"
"#,
        url = dc.url(),
        bind = dc.bind_dn(),
        base = dc.base_dn(),
    )
}

#[test]
fn a_photo_uploaded_to_the_profile_store_reaches_active_directory() {
    let dc = SambaDc::start().expect("the Samba AD DC must start for this test");
    let base = dc.base_dn();
    // Six people: the first three with a photo in AD, the others never had one; most have a
    // manager.
    let people: Vec<String> = (0..6).map(|i| format!("s0user{i}")).collect();
    let dn = |i: usize| format!("CN={},OU=People,{base}", people[i]);
    let mut ldif =
        format!("dn: OU=People,{base}\nchangetype: add\nobjectClass: organizationalUnit\n\n");
    for (i, account) in people.iter().enumerate() {
        ldif.push_str(&format!(
            "dn: {}\nchangetype: add\nobjectClass: user\nsAMAccountName: {account}\nemployeeID: E{i}\ndisplayName: Person {i}\nmail: {account}@example.test\nuserAccountControl: 544\n",
            dn(i)
        ));
        if i > 0 {
            ldif.push_str(&format!("manager: {}\n", dn(0)));
        }
        if i < 3 {
            ldif.push_str(&format!(
                "thumbnailPhoto:: {}\n",
                base64::engine::general_purpose::STANDARD.encode(idsync_sample::photo(account, 1))
            ));
        }
        ldif.push('\n');
    }
    dc.modify(&ldif).expect("seed AD");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("ad.pw"), ADMIN_PASSWORD).unwrap();
    let db = dir.join("profiles.db");
    let engine_token = token(&db, &["--engine"]);
    std::fs::write(dir.join("engine.token"), format!("{engine_token}\n")).unwrap();
    let port = free_port();
    let _server = serve(&db, port);
    let api = Api::new(port);
    let config_path = dir.join("idsync.toml");
    let config = config(&dc, port);
    std::fs::write(&config_path, &config).unwrap();

    // 1. AD → profile store: every AD photo is in its profile, by content.
    let first = cycle(&config_path, "full-cycle");
    assert_eq!(first["pending_exports_left"], 0, "{first}");
    for account in &people[..3] {
        let u = api.user(&engine_token, account);
        let ext = &u["urn:idsync:params:scim:schemas:extension:profile:2.0:User"];
        assert_eq!(
            ext["photoHash"],
            hash(&ad_photo(&dc, account).expect("a photo in AD")),
            "{u}"
        );
    }
    for account in &people[3..] {
        assert!(ad_photo(&dc, account).is_none());
    }

    // 2. The flow is reversed; nothing else is touched. The re-evaluation sends nothing to AD:
    //    its photos are already what the profiles hold.
    std::fs::write(
        &config_path,
        idsync_sample::photo_writeback_to(&config, "thumbnailPhoto"),
    )
    .unwrap();
    let before: Vec<_> = people.iter().map(|a| ad_photo(&dc, a)).collect();
    let reversed = cycle(&config_path, "full-cycle");
    assert_eq!(sum(&reversed, "deleted"), 0, "{reversed}");
    assert_eq!(reversed["pending_exports_left"], 0, "{reversed}");
    let after: Vec<_> = people.iter().map(|a| ad_photo(&dc, a)).collect();
    assert_eq!(before, after);

    // 3. People upload new photos with their own tokens: a full cycle writes one back to AD,
    //    a delta cycle (DirSync) the next; for people who had a photo and people who had none.
    let cases = [
        (1, "full-cycle"),
        (2, "delta-cycle"),
        (3, "full-cycle"),
        (4, "delta-cycle"),
    ];
    for (n, (i, kind)) in cases.into_iter().enumerate() {
        let account = &people[i];
        let person = token(&db, &["--user", account]);
        let id = api.user(&engine_token, account)["id"]
            .as_str()
            .expect("the profile exists")
            .to_owned();
        let new_photo = idsync_sample::photo(account, 10 + n as u32);
        api.upload(&person, &id, &new_photo);
        let report = cycle(&config_path, kind);
        assert_eq!(sum(&report, "deleted"), 0, "{report}");
        assert_eq!(sum(&report, "exported"), 1, "{kind}: {report}");
        assert_eq!(
            ad_photo(&dc, account).map(|b| hash(&b)),
            Some(hash(&new_photo)),
            "{account} after a {kind}: {report}"
        );
        if kind == "delta-cycle" {
            let notes = report.to_string();
            assert!(notes.contains("DirSync"), "{report}");
        }
        // The profile's picture URL did not change; its content did.
        let u = api.user(&engine_token, account);
        assert!(
            u["photos"][0]["value"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/Users/{id}/photo")),
            "{u}"
        );
    }
    // Nothing is left to send, and the next delta cycle sends nothing.
    let last = cycle(&config_path, "delta-cycle");
    assert_eq!(sum(&last, "exported"), 0, "{last}");
    assert_eq!(sum(&last, "deleted"), 0, "{last}");

    // 4. Target drift (issue 17): someone changes a photo in AD by hand. The delta import
    //    reads it, the delta sync stages the export that puts the profile's photo back (the
    //    plan shows it), and the delta cycle sends it.
    let account = &people[1];
    let profile_photo = idsync_sample::photo(account, 10);
    dc.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: thumbnailPhoto\nthumbnailPhoto:: {}\n-\n\n",
        dn(1),
        base64::engine::general_purpose::STANDARD.encode(idsync_sample::photo(account, 99))
    ))
    .expect("change the photo in AD");
    run_ok(
        idsync()
            .args(["--json", "run", "delta-cycle", "--staging", "-c"])
            .arg(&config_path),
    );
    let planned = plan(&config_path);
    assert_eq!(planned["summary"]["update"], 1, "{planned}");
    let drift = cycle(&config_path, "delta-cycle");
    assert_eq!(sum(&drift, "exported"), 1, "{drift}");
    assert_eq!(
        ad_photo(&dc, account).map(|b| hash(&b)),
        Some(hash(&profile_photo)),
        "{drift}"
    );
    let full = cycle(&config_path, "full-cycle");
    assert_eq!(sum(&full, "exported"), 0, "{full}");
}

//! Issue 17: delta cycles alone reach the state a full cycle reaches, into the real profile
//! store (`idsync serve`), run as an administrator runs them.

use serde_json::Value as Json;
use std::path::Path;

mod support;
use support::*;

/// The profile store's users by user name: their id and their manager's id.
fn managers(
    api: &Api,
    token: &str,
) -> std::collections::BTreeMap<String, (String, Option<String>)> {
    let mut out = std::collections::BTreeMap::new();
    let mut start = 1;
    loop {
        let mut r = api
            .agent
            .get(&format!("{}/Users", api.base))
            .query("startIndex", start.to_string())
            .query("count", "100")
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: Json = r.body_mut().read_json().unwrap();
        let users = page["Resources"].as_array().cloned().unwrap_or_default();
        if users.is_empty() {
            break;
        }
        start += users.len();
        for u in users {
            let manager = u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]
                ["manager"]["value"]
                .as_str()
                .map(str::to_owned);
            out.insert(
                u["userName"].as_str().unwrap().to_owned(),
                (u["id"].as_str().unwrap().to_owned(), manager),
            );
        }
    }
    out
}

/// The directory's manager of each person who has one, by user name, read from its content
/// file.
fn directory_managers(ldif: &str) -> Vec<(String, String)> {
    let uid = |dn: &str| {
        dn.strip_prefix("uid=")
            .and_then(|r| r.split(',').next())
            .map(str::to_owned)
    };
    let mut out = Vec::new();
    let mut person = None;
    for line in ldif.lines() {
        if let Some(dn) = line.strip_prefix("dn: ") {
            person = uid(dn);
        } else if let (Some(m), Some(p)) = (line.strip_prefix("manager: "), &person) {
            out.push((p.clone(), uid(m).expect("a person's manager is a person")));
        }
    }
    out
}

/// The sample estate of `people` into a real profile store (`idsync serve`) on a free port:
/// the estate, the engine's token and the server (kept running while it is held).
fn estate(dir: &Path, people: usize) -> (idsync_sample::Generated, String, Api, Serve) {
    let mut o = idsync_sample::Options::demo();
    o.people = people;
    let g = idsync_sample::generate(dir, &o).unwrap();
    let db = dir.join("profiles.db");
    let engine_token = token(&db, &["--engine"]);
    std::fs::write(dir.join("engine.token"), format!("{engine_token}\n")).unwrap();
    let port = free_port();
    let server = serve(&db, port);
    let config = idsync_sample::profile_store_config_text(
        &format!("http://127.0.0.1:{port}"),
        "file:engine.token",
    );
    std::fs::write(&g.config, &config).unwrap();
    (g, engine_token, Api::new(port), server)
}

#[test]
fn a_deleted_manager_is_removed_from_the_reports_in_the_same_delta_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (g, engine_token, api, _server) = estate(dir, 200);
    let first = cycle(&g.config, "full-cycle");
    assert!(errors(&first).is_empty(), "{:#?}", errors(&first));
    let users = managers(&api, &engine_token);
    let manager_id = users["u0000001"].0.clone();
    assert_eq!(users["u0000011"].1.as_deref(), Some(manager_id.as_str()));

    // Person 1 leaves the directory: its content file and its change log.
    let dn = idsync_sample::person_dn(1);
    let ldif = std::fs::read_to_string(&g.directory).unwrap();
    let start = ldif.find(&format!("dn: {dn}\n")).unwrap();
    let end = start + ldif[start..].find("\n\n").unwrap() + 2;
    let mut left = format!("{}{}", &ldif[..start], &ldif[end..]);
    left = left.replace(&format!("manager: {dn}\n"), "");
    std::fs::write(&g.directory, &left).unwrap();
    std::fs::create_dir_all(dir.join("changes")).unwrap();
    std::fs::write(
        dir.join("changes/0001.ldif"),
        format!("version: 1\n\ndn: {dn}\nchangetype: delete\n"),
    )
    .unwrap();
    // Run as an administrator reads it: the step table counts the people whose metaverse
    // values changed (the reports, who lost their manager).
    let table = run_ok(idsync().args(["run", "delta-cycle", "-c"]).arg(&g.config));
    let header = table
        .lines()
        .find(|l| l.contains("read"))
        .expect("a step table");
    assert!(header.contains("flowed"), "{table}");
    let users = managers(&api, &engine_token);
    assert!(!users.contains_key("u0000001"));
    let dangling: Vec<&String> = users
        .iter()
        .filter(|(_, (_, m))| m.as_deref() == Some(manager_id.as_str()))
        .map(|(u, _)| u)
        .collect();
    assert!(
        dangling.is_empty(),
        "still managed by the deleted person: {dangling:?}"
    );
    let planned = plan(&g.config);
    assert_eq!(
        planned["exports"].as_array().map(Vec::len),
        Some(0),
        "{planned}"
    );
    let full = cycle(&g.config, "full-cycle");
    assert_eq!(total(&full, "export", "exported"), 0, "{full}");
    assert!(errors(&full).is_empty(), "{:#?}", errors(&full));
}

#[test]
fn a_uniqueness_conflict_holds_back_only_its_objects_and_delta_cycles_restore_every_manager() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let people = 300;
    let (g, engine_token, api, _server) = estate(dir, people);
    // Person 2 is given person 1's mail before the first cycle.
    let ldif = std::fs::read_to_string(&g.directory).unwrap();
    let dup = ldif.replacen(
        "mail: u0000002@example.test",
        "mail: u0000001@example.test",
        1,
    );
    assert_ne!(ldif, dup);
    std::fs::write(&g.directory, dup).unwrap();

    let first = cycle(&g.config, "full-cycle");
    let errs = errors(&first);
    // Both holders of the mail are held back, and nobody else fails.
    let conflicts: std::collections::BTreeSet<&String> = errs
        .iter()
        .filter(|e| e.contains("uniqueness conflict"))
        .collect();
    assert_eq!(conflicts.len(), 2, "{errs:#?}");
    assert!(
        errs.iter().all(|e| e.contains("uniqueness conflict")),
        "only the conflict is an error: {errs:#?}"
    );
    let users = managers(&api, &engine_token);
    assert_eq!(users.len(), people - 2);
    // The plan lists both held-back adds and the reports waiting for them.
    let planned = plan(&g.config);
    assert_eq!(planned["summary"]["add"], 2, "{planned}");
    let exports = planned["exports"].as_array().unwrap();
    assert!(
        exports.iter().any(|e| e["op"] == "add"
            && e["last_error"]
                .as_str()
                .is_some_and(|m| m.contains("uniqueness conflict"))),
        "the held-back adds say why: {planned}"
    );
    assert!(
        exports.iter().any(|e| e["op"] == "update"
            && e["last_error"]
                .as_str()
                .is_some_and(|m| m.contains("manager waiting for"))),
        "the reports waiting for a held-back manager are listed: {planned}"
    );

    // The duplicate is fixed in the directory (its content file and its change log, as the
    // directory's own export would write them); delta cycles alone bring everything back.
    std::fs::write(&g.directory, &ldif).unwrap();
    std::fs::create_dir_all(dir.join("changes")).unwrap();
    std::fs::write(
        dir.join("changes/0001.ldif"),
        format!(
            "version: 1\n\ndn: {}\nchangetype: modify\nreplace: mail\nmail: u0000002@example.test\n-\n",
            idsync_sample::person_dn(2)
        ),
    )
    .unwrap();
    let delta = cycle(&g.config, "delta-cycle");
    assert!(errors(&delta).is_empty(), "{:#?}", errors(&delta));
    let users = managers(&api, &engine_token);
    assert_eq!(users.len(), people);
    let expected = directory_managers(&ldif);
    assert!(expected.len() > 100);
    for (person, manager) in expected {
        let (_, got) = &users[&person];
        assert_eq!(
            got.as_deref(),
            Some(users[&manager].0.as_str()),
            "{person}'s manager is {manager}"
        );
    }
    let planned = plan(&g.config);
    assert_eq!(
        planned["exports"].as_array().map(Vec::len),
        Some(0),
        "{planned}"
    );
    // A second delta cycle finds nothing to do, and a full cycle nothing to change.
    let again = cycle(&g.config, "delta-cycle");
    assert_eq!(total(&again, "export", "exported"), 0, "{again}");
    let full = cycle(&g.config, "full-cycle");
    assert_eq!(total(&full, "export", "exported"), 0, "{full}");
    assert!(errors(&full).is_empty(), "{:#?}", errors(&full));
}

/// A person of the small directory the PostgreSQL tests use, as LDIF.
fn person_ldif(uid: &str, n: u32, mail: &str, manager: Option<&str>) -> String {
    let mut s = format!(
        "dn: uid={uid},ou=People,dc=example,dc=test\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {mail}\nentryUUID: 00000000-0000-0000-0000-{n:012}\n"
    );
    if let Some(m) = manager {
        s.push_str(&format!("manager: uid={m},ou=People,dc=example,dc=test\n"));
    }
    s.push('\n');
    s
}

/// A directory (LDIF with a change log) whose people go to an accounts table in the machine's
/// PostgreSQL: account (the uid, the table's key), mail and manager (the manager's account).
/// `columns` is the table's definition and `extra` more configuration (`@T@` for the tables'
/// prefix); the configuration is written to `dir/idsync.toml`.
fn accounts_estate(dir: &Path, pg: &mut Pg, columns: &str, extra: &str) -> std::path::PathBuf {
    pg.create("accounts", columns);
    std::fs::write(dir.join("pg.url"), PG_URL).unwrap();
    std::fs::create_dir_all(dir.join("changes")).unwrap();
    let config = dir.join("idsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"[store]
path = "idsync.db"

[[connector]]
name = "directory"
type = "ldif"
role = "directory"
path = "directory.ldif"
delta_path = "changes"
anchor = "entryUUID"

[[connector.object_type]]
name = "person"
object_classes = ["inetOrgPerson"]

[[connector]]
name = "accounts"
type = "sql"
role = "target"
url = "file:pg.url"
table = "{p}accounts"
anchor = "account"
dn = "account"
export = true
export_batch_size = 10

[[connector.object_type]]
name = "person"

[[import_flow]]
connector = "directory"
mv = "uid"
cs = "uid"

[[import_flow]]
connector = "directory"
mv = "mail"
cs = "mail"

[[import_flow]]
connector = "directory"
mv = "manager"
cs = "manager"

[[provision]]
connector = "accounts"
mv_type = "person"
object_type = "person"
dn = "{{uid}}"

[[export_flow]]
connector = "accounts"
cs = "account"
mv = "uid"

[[export_flow]]
connector = "accounts"
cs = "mail"
mv = "mail"

[[export_flow]]
connector = "accounts"
cs = "manager"
mv = "manager"
{extra}"#,
            p = pg.prefix,
            extra = extra.replace("@T@", &pg.prefix)
        ),
    )
    .unwrap();
    config
}

/// Writes the directory's content file and one change file of its change log.
fn directory_change(dir: &Path, content: &str, n: u32, change: &str) {
    std::fs::write(
        dir.join("directory.ldif"),
        format!("version: 1\n\n{content}"),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("changes/{n:04}.ldif")),
        format!("version: 1\n\n{change}"),
    )
    .unwrap();
}

#[test]
fn a_failed_export_whose_cause_a_later_export_fixes_is_retried_by_the_next_delta_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut pg = Pg::new("retry_resolved");
    // The table refuses a mail without `@` and a manager that is not one of its rows.
    let config = accounts_estate(
        dir,
        &mut pg,
        "account text PRIMARY KEY, mail text NOT NULL CHECK (mail LIKE '%@%'), \
         manager text REFERENCES @T@accounts(account)",
        "",
    );
    let people = |p1_mail: &str, p4_mail: &str| {
        person_ldif("p1", 1, p1_mail, None)
            + &person_ldif("p2", 2, "p2@example.test", Some("p1"))
            + &person_ldif("p3", 3, "p3@example.test", Some("p1"))
            + &person_ldif("p4", 4, p4_mail, None)
    };
    std::fs::write(
        dir.join("directory.ldif"),
        format!(
            "version: 1\n\n{}",
            people("p1-at-example.test", "p4@example.test")
        ),
    )
    .unwrap();
    let rows =
        || pg.sql("SELECT account, mail, coalesce(manager, '') FROM @T@accounts ORDER BY account");

    // The table refuses p1's mail, and so p1's reports, whose manager it does not hold.
    let first = cycle(&config, "full-cycle");
    let errs = errors(&first);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs.iter()
            .any(|e| e.contains("uid=p1") || e.contains("\"p1\"")),
        "{errs:#?}"
    );
    assert_eq!(rows(), "p4|p4@example.test|\n");

    // p1's mail is fixed in the directory: one delta cycle brings p1 and, since p1 is now in
    // the table, the reports that failed for want of it, without waiting for their backoff.
    directory_change(
        dir,
        &people("p1@example.test", "p4@example.test"),
        1,
        "dn: uid=p1,ou=People,dc=example,dc=test\nchangetype: modify\nreplace: mail\nmail: p1@example.test\n-\n",
    );
    let delta = cycle(&config, "delta-cycle");
    assert!(errors(&delta).is_empty(), "{:#?}", errors(&delta));
    let converged =
        "p1|p1@example.test|\np2|p2@example.test|p1\np3|p3@example.test|p1\np4|p4@example.test|\n";
    assert_eq!(rows(), converged, "{delta}");
    let planned = plan(&config);
    assert_eq!(
        planned["exports"].as_array().map(Vec::len),
        Some(0),
        "{planned}"
    );
    let again = cycle(&config, "delta-cycle");
    assert_eq!(total(&again, "export", "exported"), 0, "{again}");
    let full = cycle(&config, "full-cycle");
    assert_eq!(total(&full, "export", "exported"), 0, "{full}");
    assert!(errors(&full).is_empty(), "{:#?}", errors(&full));
    assert_eq!(rows(), converged);

    // p4's new mail is exported, and someone changes the row before the confirming import
    // reads it: the export failed (not confirmed) and nothing is pending until the next sync.
    // The plan lists it.
    directory_change(
        dir,
        &people("p1@example.test", "p4@new.example.test"),
        2,
        "dn: uid=p4,ou=People,dc=example,dc=test\nchangetype: modify\nreplace: mail\nmail: p4@new.example.test\n-\n",
    );
    step(&config, "delta-import", "directory");
    step(&config, "delta-sync", "directory");
    let export = step(&config, "export", "accounts");
    assert_eq!(export["stats"]["exported"], 1, "{export}");
    pg.sql("UPDATE @T@accounts SET mail = 'p4@elsewhere.test' WHERE account = 'p4'");
    step(&config, "full-import", "accounts");
    let planned = plan(&config);
    let exports = planned["exports"].as_array().unwrap();
    assert_eq!(exports.len(), 1, "{planned}");
    assert_eq!(exports[0]["op"], "failed", "{planned}");
    assert_eq!(exports[0]["dn"], "p4", "{planned}");
    assert!(
        exports[0]["last_error"]
            .as_str()
            .is_some_and(|m| m.contains("not confirmed: mail")),
        "{planned}"
    );
    assert_eq!(planned["summary"]["failed"], 1, "{planned}");
    // The next delta cycle compares the row with the metaverse again and puts the mail back.
    let delta = cycle(&config, "delta-cycle");
    assert!(errors(&delta).is_empty(), "{:#?}", errors(&delta));
    assert_eq!(
        rows(),
        converged.replace("p4@example.test", "p4@new.example.test")
    );
    let full = cycle(&config, "full-cycle");
    assert_eq!(total(&full, "export", "exported"), 0, "{full}");
}

#[test]
fn a_value_changed_by_hand_in_the_profile_store_is_restored_by_a_delta_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (g, engine_token, api, _server) = estate(dir, 20);
    let first = cycle(&g.config, "full-cycle");
    assert!(errors(&first).is_empty(), "{:#?}", errors(&first));
    let before = api.user(&engine_token, "u0000003");
    let name = before["displayName"].as_str().unwrap().to_owned();
    api.replace(
        &engine_token,
        before["id"].as_str().unwrap(),
        "displayName",
        Json::from("Changed By Hand"),
    );

    // The delta import reads the change; the delta sync stages the export that restores the
    // metaverse's value, and the plan shows it before anything is sent.
    let staged = run_ok(
        idsync()
            .args(["--json", "run", "delta-cycle", "--staging", "-c"])
            .arg(&g.config),
    );
    let planned = plan(&g.config);
    let exports = planned["exports"].as_array().unwrap();
    assert_eq!(exports.len(), 1, "{planned}\n{staged}");
    assert_eq!(exports[0]["dn"], "u0000003", "{planned}");
    assert_eq!(
        exports[0]["changes"][0]["attribute"], "displayName",
        "{planned}"
    );
    assert_eq!(
        exports[0]["changes"][0]["new"][0],
        name.as_str(),
        "{planned}"
    );

    let delta = cycle(&g.config, "delta-cycle");
    assert!(errors(&delta).is_empty(), "{:#?}", errors(&delta));
    assert_eq!(
        api.user(&engine_token, "u0000003")["displayName"],
        name.as_str()
    );
    let again = cycle(&g.config, "delta-cycle");
    assert_eq!(total(&again, "export", "exported"), 0, "{again}");
    let full = cycle(&g.config, "full-cycle");
    assert_eq!(total(&full, "export", "exported"), 0, "{full}");
}

#[test]
fn hr_rows_that_swap_join_keys_in_one_delta_both_join_as_a_full_sync_joins_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut pg = Pg::new("key_swap");
    pg.create(
        "hr",
        "employee_id text PRIMARY KEY, account text NOT NULL, department text, \
         updated_at timestamptz NOT NULL DEFAULT now()",
    );
    pg.sql(
        "INSERT INTO @T@hr (employee_id, account, department) VALUES \
         ('e1', 'EXAMPLE\\p1', 'Sales'), ('e2', 'EXAMPLE\\p2', 'Research')",
    );
    let config = accounts_estate(
        dir,
        &mut pg,
        "account text PRIMARY KEY, mail text, manager text, department text",
        r#"
[[connector]]
name = "hr"
type = "sql"
role = "business"
url = "file:pg.url"
table = "@T@hr"
anchor = "employee_id"
watermark_column = "updated_at"
delete_mode = "full-import"

[[connector.object_type]]
name = "person"

[[join]]
connector = "hr"
cs = "account"
mv = "uid"
normalize = ["strip_domain", "lowercase"]

[[import_flow]]
connector = "hr"
mv = "department"
cs = "department"

[[export_flow]]
connector = "accounts"
cs = "department"
mv = "department"
"#,
    );
    std::fs::write(
        dir.join("directory.ldif"),
        format!(
            "version: 1\n\n{}{}",
            person_ldif("p1", 1, "p1@example.test", None),
            person_ldif("p2", 2, "p2@example.test", None)
        ),
    )
    .unwrap();
    let rows =
        || pg.sql("SELECT account, coalesce(department, '') FROM @T@accounts ORDER BY account");
    let not_joined = || -> Json {
        serde_json::from_str(&run_ok(
            idsync()
                .args(["--json", "show", "--not-joined", "--connector", "hr", "-c"])
                .arg(&config),
        ))
        .unwrap()
    };
    let first = cycle(&config, "full-cycle");
    assert!(errors(&first).is_empty(), "{:#?}", errors(&first));
    assert_eq!(rows(), "p1|Sales\np2|Research\n");

    // The two rows exchange their keys in one update: one delta cycle joins both again.
    pg.sql(
        "UPDATE @T@hr SET account = CASE employee_id WHEN 'e1' THEN 'EXAMPLE\\p2' \
         ELSE 'EXAMPLE\\p1' END, updated_at = now() + interval '1 second'",
    );
    let delta = cycle(&config, "delta-cycle");
    assert!(errors(&delta).is_empty(), "{:#?}", errors(&delta));
    assert_eq!(not_joined(), Json::Array(vec![]));
    assert_eq!(rows(), "p1|Research\np2|Sales\n", "{delta}");
    let again = cycle(&config, "delta-cycle");
    assert_eq!(total(&again, "export", "exported"), 0, "{again}");
    let full = cycle(&config, "full-cycle");
    assert_eq!(total(&full, "export", "exported"), 0, "{full}");
    assert_eq!(rows(), "p1|Research\np2|Sales\n");

    // A third row takes p1's key: it is not joined, and the listing says why.
    pg.sql(
        "INSERT INTO @T@hr (employee_id, account, department, updated_at) \
         VALUES ('e3', 'EXAMPLE\\p1', 'Legal', now() + interval '2 seconds')",
    );
    cycle(&config, "delta-cycle");
    let listed = not_joined();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let reason = listed[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("`p1`") && reason.contains("already joined to e2"),
        "{reason}"
    );
    assert_eq!(rows(), "p1|Research\np2|Sales\n");
}

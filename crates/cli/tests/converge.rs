//! Issue 17: delta cycles alone reach the state a full cycle reaches, into the real profile
//! store (`idsync serve`), run as an administrator runs them.

use serde_json::Value as Json;
use std::path::Path;

mod support;
use support::*;

fn cycle(config: &Path, kind: &str) -> Json {
    let out = run_ok(idsync().args(["--json", "run", kind, "-c"]).arg(config));
    serde_json::from_str(&out).expect("a JSON report")
}

fn total(report: &Json, step: &str, field: &str) -> u64 {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == step)
        .map(|s| s["stats"][field].as_u64().unwrap_or(0))
        .sum()
}

fn errors(report: &Json) -> Vec<String> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .flat_map(|s| s["errors"].as_array().cloned().unwrap_or_default())
        .map(|e| format!("{}: {}", e["object"], e["message"]))
        .collect()
}

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
    let plan: Json = serde_json::from_str(&run_ok(
        idsync().args(["--json", "plan", "-c"]).arg(&g.config),
    ))
    .unwrap();
    assert_eq!(plan["exports"].as_array().map(Vec::len), Some(0), "{plan}");
    let full = cycle(&g.config, "full-cycle");
    assert_eq!(total(&full, "export", "exported"), 0, "{full}");
    assert!(errors(&full).is_empty(), "{:#?}", errors(&full));
}

#[test]
fn a_uniqueness_conflict_holds_back_only_its_objects_and_delta_cycles_restore_every_manager() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut o = idsync_sample::Options::demo();
    o.people = 300;
    let g = idsync_sample::generate(dir, &o).unwrap();
    // Person 2 is given person 1's mail before the first cycle.
    let ldif = std::fs::read_to_string(&g.directory).unwrap();
    let dup = ldif.replacen(
        "mail: u0000002@example.test",
        "mail: u0000001@example.test",
        1,
    );
    assert_ne!(ldif, dup);
    std::fs::write(&g.directory, dup).unwrap();
    let db = dir.join("profiles.db");
    let engine_token = token(&db, &["--engine"]);
    std::fs::write(dir.join("engine.token"), format!("{engine_token}\n")).unwrap();
    let port = free_port();
    let _server = serve(&db, port);
    let api = Api::new(port);
    let config = idsync_sample::profile_store_config_text(
        &format!("http://127.0.0.1:{port}"),
        "file:engine.token",
    );
    std::fs::write(&g.config, &config).unwrap();

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
    assert_eq!(users.len(), o.people - 2);
    // The plan lists both held-back adds and the reports waiting for them.
    let plan: Json = serde_json::from_str(&run_ok(
        idsync().args(["--json", "plan", "-c"]).arg(&g.config),
    ))
    .unwrap();
    assert_eq!(plan["summary"]["add"], 2, "{plan}");
    let exports = plan["exports"].as_array().unwrap();
    assert!(
        exports.iter().any(|e| e["op"] == "add"
            && e["last_error"]
                .as_str()
                .is_some_and(|m| m.contains("uniqueness conflict"))),
        "the held-back adds say why: {plan}"
    );
    assert!(
        exports.iter().any(|e| e["op"] == "update"
            && e["last_error"]
                .as_str()
                .is_some_and(|m| m.contains("manager waiting for"))),
        "the reports waiting for a held-back manager are listed: {plan}"
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
    assert_eq!(users.len(), o.people);
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
    let plan: Json = serde_json::from_str(&run_ok(
        idsync().args(["--json", "plan", "-c"]).arg(&g.config),
    ))
    .unwrap();
    assert_eq!(plan["exports"].as_array().map(Vec::len), Some(0), "{plan}");
    // A second delta cycle finds nothing to do, and a full cycle nothing to change.
    let again = cycle(&g.config, "delta-cycle");
    assert_eq!(total(&again, "export", "exported"), 0, "{again}");
    let full = cycle(&g.config, "full-cycle");
    assert_eq!(total(&full, "export", "exported"), 0, "{full}");
    assert!(errors(&full).is_empty(), "{:#?}", errors(&full));
}

//! Joins on normalised keys, projection where it is allowed and only there, and precedence
//! between two sources of one attribute.

use crate::harness::*;
use idsync_engine::Step;

/// The directory and an HR table that augments it, joined by account.
fn config(hr_flows: &[(&str, &str)], precedence: &str) -> String {
    let mut s = format!(
        "{DIRECTORY}{}",
        r#"
[[connector]]
name = "hr"
type = "csv"
role = "business"
path = "hr.csv"
anchor = "employee_id"

[[connector.object_type]]
name = "person"

[[join]]
connector = "hr"
cs = "account"
mv = "uid"
normalize = ["strip_domain", "lowercase"]
"#
    );
    s.push_str(&import_flow("directory", "uid", "uid"));
    s.push_str(&import_flow("directory", "title", "title"));
    for (mv, cs) in hr_flows {
        s.push_str(&import_flow("hr", mv, cs));
    }
    s.push_str(precedence);
    s
}

fn import_and_sync(env: &mut Env) -> (idsync_engine::StepReport, idsync_engine::StepReport) {
    env.step(Step::FullImport, "directory");
    env.step(Step::FullImport, "hr");
    let dir = env.step(Step::FullSync, "directory");
    let hr = env.step(Step::FullSync, "hr");
    (dir, hr)
}

#[test]
fn join_on_normalised_key() {
    let mut env = Env::new(
        &config(&[("department", "department")], ""),
        &[
            ("directory.ldif", person("ann", "a-1", &[]).as_bytes()),
            (
                "hr.csv",
                b"employee_id,account,department\nE1,EXAMPLE\\Ann,Engineering\n",
            ),
        ],
    );
    let (dir, hr) = import_and_sync(&mut env);
    assert_eq!(dir.stats.projected, 1);
    assert_eq!(hr.stats.joined, 1, "{:?}", hr.stats);
    assert_eq!(hr.stats.projected, 0);
    assert_eq!(env.mv_count(), 1);
    let row = env.cs_anchor("hr", "E1");
    let ann = env.cs_anchor("directory", "a-1");
    assert_eq!(row.mv_id, ann.mv_id, "EXAMPLE\\Ann joined uid ann");
    let (_, a) = env.mv_of(&ann);
    assert_eq!(texts(a.get("department")), ["Engineering"]);
    assert_eq!(texts(a.get("uid")), ["ann"]);
}

#[test]
fn projection_allowed_and_refused() {
    let mut env = Env::new(
        &config(&[("department", "department")], ""),
        &[
            (
                "directory.ldif",
                [person("ann", "a-1", &[]), person("bob", "b-2", &[])]
                    .concat()
                    .as_bytes(),
            ),
            (
                "hr.csv",
                b"employee_id,account,department\nE1,EXAMPLE\\ann,Engineering\nE9,EXAMPLE\\ghost,Sales\n",
            ),
        ],
    );
    let (dir, hr) = import_and_sync(&mut env);
    assert_eq!(dir.stats.projected, 2, "the directory creates people");
    assert_eq!(hr.stats.joined, 1, "{:?}", hr.stats);
    assert_eq!(hr.stats.projected, 0, "HR never creates people");
    assert_eq!(hr.stats.disconnectors, 1, "{:?}", hr.stats);
    assert_eq!(env.mv_count(), 2, "the metaverse did not grow");
    let ghost = env.cs_anchor("hr", "E9");
    assert_eq!(ghost.mv_id, None);
    assert_eq!(
        ghost.pending_import, None,
        "evaluated, kept as a disconnector"
    );
    assert!(
        env.mv()
            .iter()
            .all(|m| m.contributions.iter().all(|c| c.cs_id != ghost.id)),
        "the ghost contributed nothing"
    );
}

#[test]
fn precedence_between_two_sources() {
    let precedence = "\n[precedence]\ntitle = [\"hr\", \"directory\"]\n";
    let mut env = Env::new(
        &config(&[("title", "title")], precedence),
        &[
            (
                "directory.ldif",
                person("ann", "a-1", &["title: Engineer"]).as_bytes(),
            ),
            (
                "hr.csv",
                b"employee_id,account,title\nE1,EXAMPLE\\ann,Senior Engineer\n",
            ),
        ],
    );
    import_and_sync(&mut env);
    let ann = env.cs_anchor("directory", "a-1");
    let (m, a) = env.mv_of(&ann);
    assert_eq!(texts(a.get("title")), ["Senior Engineer"], "HR wins");
    assert_eq!(
        m.contributions
            .iter()
            .filter(|c| c.attribute.as_str().eq_ignore_ascii_case("title"))
            .count(),
        2,
        "both sources' values are kept"
    );

    // HR no longer has a title for Ann: the directory's value takes over.
    env.write("hr.csv", "employee_id,account,title\nE1,EXAMPLE\\ann,\n");
    let r = env.step(Step::FullImport, "hr");
    assert_eq!(r.stats.updated, 1, "{:?}", r.stats);
    env.step(Step::DeltaSync, "hr");
    let (_, a) = env.mv_of(&ann);
    assert_eq!(
        texts(a.get("title")),
        ["Engineer"],
        "the directory takes over"
    );

    // And HR wins again when it has a title again.
    env.write(
        "hr.csv",
        "employee_id,account,title\nE1,EXAMPLE\\ann,Architect\n",
    );
    env.step(Step::DeltaImport, "hr");
    env.step(Step::DeltaSync, "hr");
    let (_, a) = env.mv_of(&ann);
    assert_eq!(texts(a.get("title")), ["Architect"]);
}

//! Malformed input and configuration. Every error names the place (file and line) and a step
//! that fails stores nothing: the connector spaces, the metaverse and the watermarks are exactly
//! as before.

use crate::harness::*;
use idsync_engine::Step;
use idsync_rules::Rules;

fn config() -> String {
    format!(
        "{DIRECTORY}{}{}{}{}{}",
        r#"
[[connector]]
name = "hr"
type = "csv"
role = "business"
path = "hr.csv"
anchor = "employee_id"
attribute_types = { age = "integer" }

[[connector.object_type]]
name = "person"

[[join]]
connector = "hr"
cs = "account"
mv = "uid"
normalize = ["strip_domain", "lowercase"]
"#,
        import_flow("directory", "uid", "uid"),
        import_flow("directory", "title", "title"),
        import_flow("hr", "department", "department"),
        import_flow("hr", "age", "age"),
    )
}

const HR: &str =
    "employee_id,account,department,age\nE1,EXAMPLE\\ann,Sales,41\nE2,EXAMPLE\\bob,Legal,35\n";

fn directory() -> String {
    [
        person("ann", "a-1", &["title: Engineer"]),
        person("bob", "b-2", &["title: Analyst"]),
    ]
    .concat()
}

/// An estate imported and synced, ready to be fed bad input.
fn imported() -> Env {
    let mut env = Env::new(
        &config(),
        &[
            ("directory.ldif", directory().as_bytes()),
            ("hr.csv", HR.as_bytes()),
        ],
    );
    env.step(Step::FullImport, "directory");
    env.step(Step::FullImport, "hr");
    env.step(Step::FullSync, "directory");
    env.step(Step::FullSync, "hr");
    assert!(env.cs_anchor("hr", "E1").mv_id.is_some());
    env
}

/// Runs a step that must fail naming `file:line`, and checks the store did not change.
fn fails_at(env: &mut Env, step: Step, connector: &str, file: &str, line: usize, what: &str) {
    let before = env.snapshot();
    let err = env
        .try_step(step, connector)
        .expect_err(&format!("{what}: the step must fail"))
        .to_string();
    assert!(
        err.contains(&format!("{file}:{line}:")),
        "{what}: the error names {file} line {line}: {err}"
    );
    assert_eq!(env.snapshot(), before, "{what}: the store changed");
    assert_eq!(env.last_run().status, "failed", "{what}");
}

#[test]
fn malformed_input_fails_with_place_and_changes_nothing() {
    let mut env = imported();

    // LDIF: a value that is not base64, after good (and changed) records.
    let bad = [
        person("ann", "a-1", &["title: Director"]),
        person("cid", "c-3", &[]),
        person("bob", "b-2", &["description:: %%%%"]),
    ]
    .concat();
    env.write("directory.ldif", &bad);
    let line = line_of(bad.as_bytes(), "description::");
    fails_at(
        &mut env,
        Step::FullImport,
        "directory",
        "directory.ldif",
        line,
        "bad base64",
    );

    // LDIF: a continuation line with no record before it.
    let bad = format!(
        "{}\n continues nothing\n\n{}",
        person("ann", "a-1", &["title: Director"]),
        person("bob", "b-2", &[])
    );
    env.write("directory.ldif", &bad);
    let line = line_of(bad.as_bytes(), " continues nothing");
    fails_at(
        &mut env,
        Step::FullImport,
        "directory",
        "directory.ldif",
        line,
        "orphan continuation line",
    );

    // LDIF: invalid UTF-8 in a DN.
    let mut bad = person("ann", "a-1", &["title: Director"]).into_bytes();
    bad.extend_from_slice(b"dn: uid=b\xffb,ou=People,dc=example,dc=test\nobjectClass: inetOrgPerson\nentryUUID: x-1\nuid: bob\n\n");
    bad.extend_from_slice(person("bob", "b-2", &[]).as_bytes());
    env.write("directory.ldif", &bad);
    let line = line_of(&bad, "dn: uid=b");
    fails_at(
        &mut env,
        Step::FullImport,
        "directory",
        "directory.ldif",
        line,
        "invalid UTF-8 in a DN",
    );

    // LDIF change file: an unknown changetype after a good change.
    env.write("directory.ldif", directory());
    let bad = format!(
        "dn: {}\nchangetype: modify\nreplace: title\ntitle: Director\n-\n\ndn: {}\nchangetype: rename\nnewrdn: uid=robert\n\n",
        dn("ann"),
        dn("bob")
    );
    env.write("changes/0001.ldif", &bad);
    let line = line_of(bad.as_bytes(), "changetype: rename");
    fails_at(
        &mut env,
        Step::DeltaImport,
        "directory",
        "0001.ldif",
        line,
        "unknown changetype",
    );
    env.remove("changes/0001.ldif");

    // CSV: a quote never closed (it opens in the last field of line 3).
    let bad = "employee_id,account,department,age\nE1,EXAMPLE\\ann,Finance,41\nE2,EXAMPLE\\bob,\"Legal,35\nE3,EXAMPLE\\cid,Sales,20\n";
    env.write("hr.csv", bad);
    fails_at(
        &mut env,
        Step::FullImport,
        "hr",
        "hr.csv",
        3,
        "unterminated quote",
    );

    // CSV: invalid UTF-8 on line 3.
    let bad = b"employee_id,account,department,age\nE1,EXAMPLE\\ann,Finance,41\nE2,EXAMPLE\\bob,Le\xffgal,35\n";
    env.write("hr.csv", bad);
    fails_at(
        &mut env,
        Step::FullImport,
        "hr",
        "hr.csv",
        3,
        "invalid UTF-8 in CSV",
    );

    // CSV: a non-integer in an integer column on line 4.
    let bad = "employee_id,account,department,age\nE1,EXAMPLE\\ann,Finance,41\nE2,EXAMPLE\\bob,Legal,35\nE3,EXAMPLE\\cid,Sales,forty\n";
    env.write("hr.csv", bad);
    fails_at(
        &mut env,
        Step::FullImport,
        "hr",
        "hr.csv",
        4,
        "non-integer in an integer column",
    );
    // The delta import of the same file fails the same way (it reads the whole file too).
    fails_at(
        &mut env,
        Step::DeltaImport,
        "hr",
        "hr.csv",
        4,
        "non-integer in an integer column, delta",
    );

    // Good files again: the estate imports as before, nothing was lost on the way.
    env.write("directory.ldif", directory());
    env.write("hr.csv", HR);
    let r = env.step(Step::FullImport, "directory");
    assert_eq!(
        (r.stats.unchanged, r.stats.deleted),
        (2, 0),
        "{:?}",
        r.stats
    );
    let r = env.step(Step::FullImport, "hr");
    assert_eq!(
        (r.stats.unchanged, r.stats.deleted),
        (2, 0),
        "{:?}",
        r.stats
    );
}

#[test]
fn config_error_names_its_line() {
    let good = config();
    Rules::load(&good, CONFIG_FILE).expect("the base configuration loads");

    // An unknown key in a rule.
    let src = format!(
        "{good}\n[[import_flow]]\nconnector = \"hr\"\nmv = \"x\"\ncs = \"y\"\nnormalise = true\n"
    );
    let e = Rules::load(&src, CONFIG_FILE).expect_err("unknown key");
    assert_eq!(e.file, CONFIG_FILE);
    assert_eq!(e.line, line_of(src.as_bytes(), "normalise = true"), "{e}");
    assert!(e.message.contains("normalise"), "{e}");

    // An unknown key in an object type's scope.
    let src = good.replace(
        "object_classes = [\"inetOrgPerson\", \"person\"]",
        "object_classes = [\"inetOrgPerson\", \"person\"]\nobjectclass = \"user\"",
    );
    let e = Rules::load(&src, CONFIG_FILE).expect_err("unknown key in object type");
    assert_eq!(e.line, line_of(src.as_bytes(), "objectclass = "), "{e}");

    // A bad expression: the error names the line the expression is on.
    let src = format!(
        "{good}\n[[import_flow]]\nconnector = \"directory\"\nmv = \"displayName\"\nexpr = \"cs.givenName +\"\n"
    );
    let e = Rules::load(&src, CONFIG_FILE).expect_err("bad expression");
    assert!(e.message.contains("expression"), "{e}");
    assert_eq!(
        e.line,
        line_of(src.as_bytes(), "expr = \"cs.givenName +\""),
        "{e}"
    );
}

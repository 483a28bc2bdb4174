//! Business-system augmentation (seed 003's BCS): an HR source joined to directory people on a
//! normalised account name, from PostgreSQL, MariaDB, an SQLite file and a CSV export with the
//! same join and flow rules. Rows with no person are counted as not joined and never projected;
//! a corrected join key moves the columns to the right person; inserts, updates and deletes
//! arrive by delta import; a database that goes away mid-import fails the run and deletes
//! nothing.

use crate::db::{Db, Kind};
use crate::harness::*;
use idsync_engine::Step;

/// The rules every HR source shares: join on account (`EXAMPLE\Ann` is uid `ann`), flow
/// department. Only the connector block differs between sources.
fn rules() -> String {
    format!(
        r#"
[[join]]
connector = "hr"
cs = "account"
mv = "uid"
normalize = ["strip_domain", "lowercase"]
{}{}"#,
        import_flow("directory", "uid", "uid"),
        import_flow("hr", "department", "department")
    )
}

/// One HR row: id, account, department, version, deleted.
type Row = (i64, &'static str, &'static str, i64, bool);

/// An HR source the scenario can rewrite.
enum Source {
    Sql(Box<Db>, String),
    Csv,
}

impl Source {
    fn new(kind: Option<Kind>) -> Self {
        match kind {
            None => Source::Csv,
            Some(kind) => {
                let db = Box::new(Db::new(kind, "aug"));
                let t = db.table("hr");
                db.exec(&format!(
                    "CREATE TABLE {t} (id INT PRIMARY KEY, account VARCHAR(60) NOT NULL, \
                     department VARCHAR(60), version BIGINT NOT NULL, deleted BOOLEAN NOT NULL)"
                ));
                Source::Sql(db, t)
            }
        }
    }

    /// The HR connector block; `type_extra` goes into its object type (e.g. `project = true`).
    fn connector(&self, type_extra: &str) -> String {
        match self {
            Source::Sql(db, t) => format!(
                r#"
[[connector]]
name = "hr"
type = "sql"
role = "business"
url = "file:{}"
table = "{t}"
anchor = "id"
watermark_column = "version"
delete_mode = "tombstone"
tombstone_column = "deleted"

[[connector.object_type]]
name = "person"
{type_extra}
"#,
                db.dir().join("url").display()
            ),
            Source::Csv => format!(
                r#"
[[connector]]
name = "hr"
type = "csv"
role = "business"
path = "hr.csv"
anchor = "id"
attribute_types = {{ version = "integer" }}

[[connector.object_type]]
name = "person"
{type_extra}
"#
            ),
        }
    }

    /// Makes the source hold exactly these rows (a SQL table keeps tombstoned rows; a CSV
    /// export just leaves them out).
    fn write(&self, env: &Env, rows: &[Row]) {
        match self {
            Source::Sql(db, t) => {
                db.exec(&format!("DELETE FROM {t}"));
                for (id, account, dept, version, deleted) in rows {
                    let mut account = account.replace('\'', "''");
                    if db.kind == Kind::MariaDb {
                        // A backslash escapes in MariaDB's string literals.
                        account = account.replace('\\', "\\\\");
                    }
                    db.exec(&format!(
                        "INSERT INTO {t} VALUES ({id}, '{account}', '{dept}', {version}, {})",
                        if *deleted { "TRUE" } else { "FALSE" }
                    ));
                }
            }
            Source::Csv => {
                let mut s = String::from("id,account,department,version\n");
                for (id, account, dept, version, deleted) in rows {
                    if !deleted {
                        s.push_str(&format!("{id},{account},{dept},{version}\n"));
                    }
                }
                env.write("hr.csv", s);
            }
        }
    }
}

fn directory() -> String {
    [
        person("ann", "a-1", &[]),
        person("bob", "b-2", &[]),
        person("cy", "c-3", &[]),
    ]
    .concat()
}

fn department(env: &mut Env, uid: &str) -> Vec<String> {
    let (_, a) = env.mv_where("uid", uid);
    texts(a.get("department"))
}

fn augment(kind: Option<Kind>) {
    let src = Source::new(kind);
    let config = format!("{DIRECTORY}{}{}", src.connector(""), rules());
    let mut env = Env::new(&config, &[("directory.ldif", directory().as_bytes())]);
    // Row 2 names bob by mistake: it is cy's (corrected below). Row 9 has no person.
    src.write(
        &env,
        &[
            (1, "EXAMPLE\\Ann", "Engineering", 1, false),
            (2, "EXAMPLE\\bob", "Finance", 2, false),
            (9, "EXAMPLE\\ghost", "Ops", 3, false),
        ],
    );
    env.step(Step::FullImport, "directory");
    env.step(Step::FullSync, "directory");
    let imported = env.step(Step::FullImport, "hr");
    assert_eq!(imported.stats.added, 3, "{:?}", imported.stats);
    let hr = env.step(Step::FullSync, "hr");
    assert_eq!(hr.stats.joined, 2, "{:?}", hr.stats);
    assert_eq!(hr.stats.projected, 0, "HR never creates people");
    assert_eq!(
        hr.stats.disconnectors, 1,
        "the ghost is counted: {:?}",
        hr.stats
    );
    assert!(
        hr.stats.nonzero().contains(&("not joined".to_owned(), 1)),
        "{:?}",
        hr.stats.nonzero()
    );
    assert_eq!(env.mv_count(), 3, "the metaverse did not grow");
    assert_eq!(env.cs_anchor("hr", "9").mv_id, None);
    assert_eq!(department(&mut env, "ann"), ["Engineering"]);
    assert_eq!(department(&mut env, "bob"), ["Finance"]);

    // HR corrects row 2 (it is cy's), adds bob's row, changes ann's department and deletes
    // the ghost: one delta import and one delta sync put everything right.
    src.write(
        &env,
        &[
            (1, "EXAMPLE\\Ann", "Research", 5, false),
            (2, "EXAMPLE\\cy", "Finance", 4, false),
            (3, "EXAMPLE\\Bob", "Sales", 6, false),
            (9, "EXAMPLE\\ghost", "Ops", 7, true),
        ],
    );
    let delta = env.step(Step::DeltaImport, "hr");
    assert_eq!(delta.stats.added, 1, "{:?}", delta.stats);
    assert_eq!(delta.stats.deleted, 1, "{:?}", delta.stats);
    let sync = env.step(Step::DeltaSync, "hr");
    assert_eq!(
        department(&mut env, "cy"),
        ["Finance"],
        "the corrected key moved the row"
    );
    assert_eq!(
        department(&mut env, "bob"),
        ["Sales"],
        "bob has his own row now"
    );
    assert_eq!(department(&mut env, "ann"), ["Research"]);
    assert!(env.cs_by_anchor("hr", "9").is_none(), "the ghost is gone");
    assert_eq!(sync.stats.projected, 0);
    let row2 = env.cs_anchor("hr", "2");
    let cy = env.cs_anchor("directory", "c-3");
    assert_eq!(row2.mv_id, cy.mv_id);
    // The wrong person kept nothing of row 2.
    let (bob_mv, _) = env.mv_where("uid", "bob");
    assert!(bob_mv.contributions.iter().all(|c| c.cs_id != row2.id));

    // A full sync afterwards changes nothing.
    let before = env.snapshot();
    env.step(Step::FullSync, "hr");
    assert_eq!(env.snapshot().mv, before.mv);
}

#[test]
fn augment_from_postgres() {
    augment(Some(Kind::Postgres))
}

#[test]
fn augment_from_mariadb() {
    augment(Some(Kind::MariaDb))
}

#[test]
fn augment_from_sqlite() {
    augment(Some(Kind::Sqlite))
}

#[test]
fn augment_from_csv_with_the_same_rules() {
    augment(None)
}

#[test]
fn business_system_made_authoritative_projects() {
    let src = Source::new(Some(Kind::Sqlite));
    // The explicit switch: the HR object type may create people.
    let config = format!("{DIRECTORY}{}{}", src.connector("project = true"), rules());
    let mut env = Env::new(&config, &[("directory.ldif", directory().as_bytes())]);
    src.write(&env, &[(9, "EXAMPLE\\ghost", "Ops", 1, false)]);
    env.step(Step::FullImport, "hr");
    let sync = env.step(Step::FullSync, "hr");
    assert_eq!(sync.stats.projected, 1, "{:?}", sync.stats);
    assert_eq!(
        env.mv_count(),
        1,
        "only the HR row; the directory was not imported"
    );
}

/// PostgreSQL ends the import's own session after two rows (the query terminates its backend):
/// the step fails with the server's error and the store is exactly as before; nothing deleted.
#[test]
fn database_gone_mid_import_deletes_nothing() {
    let src = Source::new(Some(Kind::Postgres));
    let Source::Sql(_, t) = &src else {
        unreachable!()
    };
    let config = format!("{DIRECTORY}{}{}", src.connector(""), rules());
    let mut env = Env::new(&config, &[("directory.ldif", directory().as_bytes())]);
    src.write(
        &env,
        &[
            (1, "EXAMPLE\\ann", "Engineering", 1, false),
            (2, "EXAMPLE\\bob", "Finance", 2, false),
            (3, "EXAMPLE\\cy", "Sales", 3, false),
        ],
    );
    env.step(Step::FullImport, "directory");
    env.step(Step::FullSync, "directory");
    env.step(Step::FullImport, "hr");
    env.step(Step::FullSync, "hr");
    let before = env.snapshot();
    let query = format!(
        "SELECT id, account, department, version, deleted, \
         CASE WHEN id = 3 THEN pg_terminate_backend(pg_backend_pid()) END AS gone \
         FROM {t} ORDER BY id"
    );
    let dying = config.replace(&format!("table = \"{t}\""), &format!("query = \"{query}\""));
    env.reload(&dying);
    let err = env
        .try_step(Step::FullImport, "hr")
        .expect_err("the import must fail")
        .to_string();
    assert!(err.contains("connector `hr`"), "{err}");
    assert_eq!(env.snapshot(), before, "nothing staged, nothing deleted");
    assert_eq!(department(&mut env, "cy"), ["Sales"]);
}

/// A value of an unexpected type stops the import naming row and column; nothing is staged.
#[test]
fn unexpected_type_imports_nothing() {
    let db = Db::new(Kind::MariaDb, "augbad");
    let t = db.table("hr");
    db.exec(&format!(
        "CREATE TABLE {t} (id INT, account VARCHAR(40), department VARCHAR(40), bonus DOUBLE)"
    ));
    db.exec(&format!(
        "INSERT INTO {t} VALUES (1, 'ann', 'Eng', NULL), (2, 'bob', 'Ops', 0.5)"
    ));
    let config = format!(
        "{DIRECTORY}\n[[connector]]\nname = \"hr\"\ntype = \"sql\"\nrole = \"business\"\nurl = \"file:{}\"\ntable = \"{t}\"\nanchor = \"id\"\n\n[[connector.object_type]]\nname = \"person\"\n{}",
        db.dir().join("url").display(),
        rules()
    );
    let mut env = Env::new(&config, &[("directory.ldif", directory().as_bytes())]);
    let before = env.snapshot();
    let err = env
        .try_step(Step::FullImport, "hr")
        .expect_err("must fail")
        .to_string();
    assert!(err.contains("row 2 (anchor `2`), column `bonus`"), "{err}");
    assert_eq!(env.snapshot(), before);
    assert!(env.cs("hr").is_empty());
}

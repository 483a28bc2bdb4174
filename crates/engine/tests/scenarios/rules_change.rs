//! A changed rule re-evaluates every object it touches on the next sync, even a delta sync, and
//! nothing is cleared to get there.

use crate::harness::*;
use idsync_engine::Step;

fn config(title_source: &str) -> String {
    format!(
        "{DIRECTORY}{}{}",
        import_flow("directory", "uid", "uid"),
        import_flow("directory", "title", title_source),
    )
}

#[test]
fn rule_change_reevaluates_without_clearing() {
    let ldif = [
        person(
            "ann",
            "a-1",
            &["title: Engineer", "description: Chief Engineer"],
        ),
        person(
            "bob",
            "b-2",
            &["title: Analyst", "description: Lead Analyst"],
        ),
    ]
    .concat();
    let mut env = Env::new(&config("title"), &[("directory.ldif", ldif.as_bytes())]);
    env.step(Step::FullImport, "directory");
    env.step(Step::FullSync, "directory");
    let (_, a) = env.mv_where("uid", "ann");
    assert_eq!(texts(a.get("title")), ["Engineer"]);
    let cs_before: Vec<_> = env.cs("directory").into_iter().map(|o| o.id).collect();
    let mv_before: Vec<_> = env.mv().into_iter().map(|m| m.id).collect();

    // The title now comes from description. Nothing was imported since: only a full
    // evaluation can apply the new rule.
    env.reload(&config("description"));
    let r = env.step(Step::DeltaSync, "directory");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("rules changed") && n.contains("full sync")),
        "the delta sync ran as a full sync, and says so: {:?}",
        r.notes
    );
    assert_eq!(r.stats.flowed, 2, "{:?}", r.stats);
    let (_, a) = env.mv_where("uid", "ann");
    assert_eq!(texts(a.get("title")), ["Chief Engineer"]);
    let (_, b) = env.mv_where("uid", "bob");
    assert_eq!(texts(b.get("title")), ["Lead Analyst"]);
    assert_eq!(
        env.cs("directory")
            .into_iter()
            .map(|o| o.id)
            .collect::<Vec<_>>(),
        cs_before,
        "the connector space was kept"
    );
    assert_eq!(
        env.mv().into_iter().map(|m| m.id).collect::<Vec<_>>(),
        mv_before,
        "the metaverse objects were kept"
    );

    // The next delta sync under the same rules is a delta again.
    let r = env.step(Step::DeltaSync, "directory");
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    assert_eq!(r.stats.flowed, 0);
}

//! References (manager) flow as references: a DN in the directory, a metaverse object in the
//! metaverse, the target's own identifier in the target. Order of arrival does not matter.

use crate::harness::*;
use idsync_engine::CycleKind;
use idsync_model::{Reference, Value};

fn config() -> String {
    format!(
        "{DIRECTORY}{}{}{}{PROVISION_PROFILES}{}{}",
        profiles(&["id", "account", "manager"], ""),
        import_flow("directory", "uid", "uid"),
        import_flow("directory", "manager", "manager"),
        export_flow("profiles", "account", "uid"),
        export_flow("profiles", "manager", "manager"),
    )
}

/// Checks that `uid`'s metaverse manager is the metaverse object of `manager_uuid`'s person,
/// and that the profile table names the manager by account.
fn assert_manager(env: &mut Env, uuid: &str, manager_uuid: &str, manager_account: &str) {
    let o = env.cs_anchor("directory", uuid);
    let m = env.cs_anchor("directory", manager_uuid);
    let manager_mv = m.mv_id.clone().expect("the manager is in the metaverse");
    let (_, a) = env.mv_of(&o);
    assert_eq!(
        a.get("manager").unwrap_or(&[]),
        &[Value::Reference(Reference::Mv(manager_mv))],
        "{}: the metaverse manager is a reference to the manager's metaverse object",
        o.dn
    );
    let account = texts(o.hologram.get("uid")).remove(0);
    let row = env.csv_row("profiles.csv", "account", &account);
    assert_eq!(row["manager"], manager_account, "{row:?}");
}

#[test]
fn reference_arriving_before_its_target() {
    // Ann's manager Bob comes later in the file; Bob's manager Cat comes earlier.
    let ldif = [
        person("cat", "c-3", &[]),
        person("ann", "a-1", &[&format!("manager: {}", dn("bob"))]),
        person("bob", "b-2", &[&format!("manager: {}", dn("cat"))]),
    ]
    .concat();
    let mut env = Env::new(&config(), &[("directory.ldif", ldif.as_bytes())]);
    let r = env.cycle(CycleKind::Full);
    assert_eq!(r.pending_exports_left, 0);
    assert_manager(&mut env, "a-1", "b-2", "bob");
    assert_manager(&mut env, "b-2", "c-3", "cat");
    assert_eq!(env.csv_row("profiles.csv", "account", "cat")["manager"], "");
}

#[test]
fn reference_arriving_in_a_later_import() {
    // Dan's manager Eve is not in the directory yet.
    let mut env = Env::new(
        &config(),
        &[(
            "directory.ldif",
            person("dan", "d-4", &[&format!("manager: {}", dn("eve"))]).as_bytes(),
        )],
    );
    env.cycle(CycleKind::Full);
    let dan = env.cs_anchor("directory", "d-4");
    let (_, a) = env.mv_of(&dan);
    assert!(a.get("manager").is_none(), "nothing to refer to yet: {a:?}");
    assert_eq!(env.csv_row("profiles.csv", "account", "dan")["manager"], "");

    // Eve arrives; Dan himself did not change, yet his reference resolves.
    let ldif = [
        person("dan", "d-4", &[&format!("manager: {}", dn("eve"))]),
        person("eve", "e-5", &[]),
    ]
    .concat();
    env.write("directory.ldif", &ldif);
    env.write(
        "changes/0001.ldif",
        format!(
            "dn: {}\nchangetype: add\nobjectClass: inetOrgPerson\nentryUUID: e-5\nuid: eve\ncn: eve\nsn: eve\n\n",
            dn("eve")
        ),
    );
    let r = env.cycle(CycleKind::Delta);
    assert_eq!(r.pending_exports_left, 0);
    assert_manager(&mut env, "d-4", "e-5", "eve");
}

//! Issue 17's property: after any sequence of source changes, delta cycles alone reach the
//! state a full cycle reaches. Random batches of changes to a directory (LDIF content file and
//! change log) and an HR file (CSV) — adds, mail changes (uniqueness conflicts made and
//! undone), manager changes, deletes, renames, HR key changes and swaps, department changes —
//! each followed by a delta cycle; then a second delta cycle must find nothing to send, and a
//! full cycle must change neither the metaverse nor the profile table. CI runs a fixed seed
//! and a bounded number of cases; `PROPTEST_CASES=500` runs longer by hand.

use crate::harness::*;
use idsync_engine::{CycleKind, CycleReport};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Add,
    Mail(usize, u8),
    Manager(usize, Option<usize>),
    Delete(usize),
    Rename(usize),
    HrKey(usize, usize),
    HrSwap(usize, usize),
    HrDept(usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Add),
        3 => (any::<usize>(), 0u8..3).prop_map(|(i, k)| Op::Mail(i, k)),
        3 => (any::<usize>(), proptest::option::of(any::<usize>())).prop_map(|(i, j)| Op::Manager(i, j)),
        1 => any::<usize>().prop_map(Op::Delete),
        1 => any::<usize>().prop_map(Op::Rename),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(r, i)| Op::HrKey(r, i)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::HrSwap(a, b)),
        1 => (any::<usize>(), 0u8..3).prop_map(|(r, k)| Op::HrDept(r, k)),
    ]
}

#[derive(Debug, Clone)]
struct Person {
    uid: String,
    mail: String,
    /// The manager's entryUUID.
    manager: Option<String>,
}

/// The sources as the model holds them: people by entryUUID (in creation order), HR rows by
/// employee id (account, department).
#[derive(Default)]
struct Estate {
    people: BTreeMap<String, Person>,
    hr: BTreeMap<String, (String, String)>,
    next: u32,
}

impl Estate {
    fn uuid(n: u32) -> String {
        format!("00000000-0000-0000-0000-{n:012}")
    }

    fn nth_person(&self, i: usize) -> Option<String> {
        (!self.people.is_empty()).then(|| {
            self.people
                .keys()
                .nth(i % self.people.len())
                .cloned()
                .unwrap()
        })
    }

    fn nth_row(&self, i: usize) -> Option<String> {
        (!self.hr.is_empty()).then(|| self.hr.keys().nth(i % self.hr.len()).cloned().unwrap())
    }

    fn entry(&self, uuid: &str) -> String {
        let p = &self.people[uuid];
        let mut extra = vec![format!("mail: {}", p.mail)];
        if let Some(m) = &p.manager {
            extra.push(format!("manager: {}", dn(&self.people[m].uid)));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        person(&p.uid, uuid, &extra)
    }

    /// Adds a person (and an HR row for them); the change record.
    fn add(&mut self) -> String {
        self.next += 1;
        let n = self.next;
        let uuid = Self::uuid(n);
        let uid = format!("p{n}");
        self.people.insert(
            uuid.clone(),
            Person {
                uid: uid.clone(),
                mail: format!("{uid}@example.test"),
                manager: None,
            },
        );
        self.hr.insert(
            format!("e{n}"),
            (format!("EXAMPLE\\{uid}"), format!("D{}", n % 3)),
        );
        let e = self.entry(&uuid);
        let (first, rest) = e.split_once('\n').unwrap();
        format!("{first}\nchangetype: add\n{rest}")
    }

    /// Applies one operation to the model; the directory's change records it makes.
    fn apply(&mut self, op: &Op) -> String {
        match op {
            Op::Add => self.add(),
            Op::Mail(i, k) => {
                let Some(u) = self.nth_person(*i) else {
                    return String::new();
                };
                let p = self.people.get_mut(&u).unwrap();
                p.mail = format!("m{k}@example.test");
                format!(
                    "dn: {}\nchangetype: modify\nreplace: mail\nmail: {}\n-\n\n",
                    dn(&p.uid),
                    p.mail
                )
            }
            Op::Manager(i, j) => {
                let Some(u) = self.nth_person(*i) else {
                    return String::new();
                };
                let m = j.and_then(|j| self.nth_person(j)).filter(|m| *m != u);
                let had = self.people[&u].manager.is_some();
                let target = m.as_ref().map(|m| dn(&self.people[m].uid));
                let p = self.people.get_mut(&u).unwrap();
                p.manager = m;
                match target {
                    Some(t) => format!(
                        "dn: {}\nchangetype: modify\nreplace: manager\nmanager: {t}\n-\n\n",
                        dn(&p.uid)
                    ),
                    None if had => format!(
                        "dn: {}\nchangetype: modify\ndelete: manager\n-\n\n",
                        dn(&p.uid)
                    ),
                    None => String::new(),
                }
            }
            Op::Delete(i) => {
                let Some(u) = self.nth_person(*i) else {
                    return String::new();
                };
                let p = self.people.remove(&u).unwrap();
                // The content file no longer names the person; the change log says only the
                // delete (no referential integrity): the engine removes the references.
                for o in self.people.values_mut() {
                    if o.manager.as_deref() == Some(u.as_str()) {
                        o.manager = None;
                    }
                }
                format!("dn: {}\nchangetype: delete\n\n", dn(&p.uid))
            }
            Op::Rename(i) => {
                let Some(u) = self.nth_person(*i) else {
                    return String::new();
                };
                let old = self.people[&u].uid.clone();
                let new = format!("{old}r");
                self.people.get_mut(&u).unwrap().uid = new.clone();
                let mut out = format!(
                    "dn: {}\nchangetype: modrdn\nnewrdn: uid={new}\ndeleteoldrdn: 1\n\n",
                    dn(&old)
                );
                // The directory keeps its references (referential integrity): the reports'
                // managers are renamed too.
                for p in self.people.values() {
                    if p.manager.as_deref() == Some(u.as_str()) {
                        out.push_str(&format!(
                            "dn: {}\nchangetype: modify\nreplace: manager\nmanager: {}\n-\n\n",
                            dn(&p.uid),
                            dn(&new)
                        ));
                    }
                }
                out
            }
            Op::HrKey(r, i) => {
                if let (Some(r), Some(u)) = (self.nth_row(*r), self.nth_person(*i)) {
                    let uid = self.people[&u].uid.clone();
                    self.hr.get_mut(&r).unwrap().0 = format!("EXAMPLE\\{uid}");
                }
                String::new()
            }
            Op::HrSwap(a, b) => {
                if let (Some(a), Some(b)) = (self.nth_row(*a), self.nth_row(*b)) {
                    let ka = self.hr[&a].0.clone();
                    let kb = std::mem::replace(&mut self.hr.get_mut(&b).unwrap().0, ka);
                    self.hr.get_mut(&a).unwrap().0 = kb;
                }
                String::new()
            }
            Op::HrDept(r, k) => {
                if let Some(r) = self.nth_row(*r) {
                    self.hr.get_mut(&r).unwrap().1 = format!("D{k}");
                }
                String::new()
            }
        }
    }

    fn directory(&self) -> String {
        let mut s = String::from("version: 1\n\n");
        for u in self.people.keys() {
            s.push_str(&self.entry(u));
        }
        s
    }

    fn hr_file(&self) -> String {
        let mut s = String::from("employee_id,account,department\n");
        for (e, (account, dept)) in &self.hr {
            s.push_str(&format!("{e},{account},{dept}\n"));
        }
        s
    }
}

fn config() -> String {
    let mut c = format!("[store]\npath = \"idsync.db\"\n{DIRECTORY}");
    c.push_str(
        r#"
[[connector]]
name = "hr"
type = "csv"
role = "business"
path = "hr.csv"
anchor = "employee_id"

[[connector.object_type]]
name = "person"
"#,
    );
    c.push_str(&profiles(
        &["id", "account", "mail", "manager", "department"],
        "",
    ));
    c.push_str(
        r#"
[[join]]
connector = "hr"
cs = "account"
mv = "uid"
normalize = ["strip_domain", "lowercase"]
"#,
    );
    for (mv, cs) in [("uid", "uid"), ("mail", "mail"), ("manager", "manager")] {
        c.push_str(&import_flow("directory", mv, cs));
    }
    c.push_str(&import_flow("hr", "department", "department"));
    c.push_str(PROVISION_PROFILES);
    for (cs, mv) in [
        ("account", "uid"),
        ("mail", "mail"),
        ("manager", "manager"),
        ("department", "department"),
    ] {
        c.push_str(&export_flow("profiles", cs, mv));
    }
    c.push_str("\n[[unique]]\nconnector = \"profiles\"\nattribute = \"mail\"\n");
    c
}

fn exported(r: &CycleReport) -> u64 {
    r.steps.iter().map(|s| s.stats.exported).sum()
}

/// What must not differ between the end of the delta cycles and a full cycle after them: the
/// metaverse (each object's winning values) and the profile table's bytes.
fn state(env: &mut Env) -> (Vec<(String, String)>, String) {
    let mvs = env.mv();
    let mut out: Vec<(String, String)> = mvs
        .iter()
        .map(|m| {
            let a = env.effective(m);
            let text = a
                .iter()
                .map(|(k, v)| format!("{k}={}", texts(Some(v)).join("|")))
                .collect::<Vec<_>>()
                .join(";");
            (m.id.to_string(), text)
        })
        .collect();
    out.sort();
    let table = String::from_utf8(env.read("profiles.csv")).unwrap_or_default();
    (out, table)
}

fn run(batches: &[Vec<Op>]) -> Result<(), TestCaseError> {
    let mut estate = Estate::default();
    for _ in 0..4 {
        estate.add();
    }
    let mut env = Env::new(
        &config(),
        &[
            ("directory.ldif", estate.directory().as_bytes()),
            ("hr.csv", estate.hr_file().as_bytes()),
        ],
    );
    std::fs::create_dir_all(env.path("changes")).unwrap();
    env.cycle(CycleKind::Full);
    for (n, batch) in batches.iter().enumerate() {
        let mut changes = String::new();
        for op in batch {
            changes.push_str(&estate.apply(op));
        }
        env.write("directory.ldif", estate.directory());
        env.write("hr.csv", estate.hr_file());
        if !changes.is_empty() {
            env.write(
                &format!("changes/{:04}.ldif", n + 1),
                format!("version: 1\n\n{changes}"),
            );
        }
        let delta = env.cycle(CycleKind::Delta);
        let after_delta = state(&mut env);
        let again = env.cycle(CycleKind::Delta);
        prop_assert_eq!(
            exported(&again),
            0,
            "batch {}: a second delta cycle sent exports: {:?}\n{:?}",
            n,
            batch,
            again
        );
        let full = env.cycle(CycleKind::Full);
        let after_full = state(&mut env);
        prop_assert_eq!(
            &after_delta,
            &after_full,
            "batch {}: {:?}: the full cycle changed what delta cycles left\ndelta: {:?}\nfull: {:?}",
            n,
            batch,
            delta,
            full
        );
        prop_assert_eq!(exported(&full), 0, "batch {}: {:?}\n{:?}", n, batch, full);
    }
    Ok(())
}

#[test]
fn delta_cycles_reach_the_state_a_full_cycle_reaches() {
    let mut config = Config::with_cases(12);
    config.rng_seed = RngSeed::Fixed(17);
    config.failure_persistence = None;
    // `PROPTEST_CASES` (read by `Config::default`) runs longer by hand.
    if let Ok(n) = std::env::var("PROPTEST_CASES") {
        config.cases = n.parse().expect("PROPTEST_CASES is a number");
    }
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let batches = proptest::collection::vec(proptest::collection::vec(op(), 1..5), 1..5);
    runner
        .run(&batches, |b| run(&b))
        .unwrap_or_else(|e| panic!("{e}"));
}

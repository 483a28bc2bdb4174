//! Differential tests against independent LDIF implementations: python-ldap
//! (Debian's `python3-ldap`) must read the writer's output as the same data,
//! and OpenLDAP's `ldapmodify` (Debian's `ldap-utils`) must accept its change
//! records. `scripts/test` installs both; a test whose oracle is missing
//! fails, it does not skip.

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use common::{attr_name, attrs, value, write};
use idsync_ldif::{Attr, ChangeKind, Control, ModOp, Modification, Record};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A Python that can `import ldif`, if there is one.
fn python_with_ldif() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import ldif"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn has_ldapmodify() -> bool {
    Command::new("ldapmodify")
        .arg("-VV")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("idsync-ldif-{}-{name}", std::process::id()));
    let mut file = std::fs::File::create(&path).expect("create temp file");
    file.write_all(bytes).expect("write temp file");
    path
}

/// DNs python-ldap's DN check accepts (it rejects arbitrary strings), with
/// non-ASCII letters so that `dn::` is exercised.
fn simple_dn() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9\u{e9}\u{55b6}]{1,12}( [a-z]{1,8})?"
        .prop_map(|cn| format!("cn={cn},dc=example,dc=com"))
}

/// Generates `count` values from a strategy, the same ones every run.
fn sample<S: Strategy>(strategy: S, count: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..count)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("strategy generates")
                .current()
        })
        .collect()
}

const PYTHON_DUMP: &str = r#"
import base64, sys, ldif
mode, path = sys.argv[1], sys.argv[2]
b = lambda x: base64.b64encode(x).decode()
parser = ldif.LDIFRecordList(open(path, 'rb'))
if mode == 'content':
    parser.parse()
    for dn, entry in parser.all_records:
        print('C', b(dn.encode()))
        for name, values in entry.items():
            for v in values:
                print('A', b(name.encode()), b(v))
else:
    parser.parse_change_records()
    for dn, modops, controls in parser.all_modify_changes:
        print('M', b(dn.encode()))
        for op, attr, values in modops:
            print('O', op, b(attr.encode()), -1 if values is None else len(values))
            for v in values or []:
                print('V', b(v))
"#;

/// What the Python dump should print for these records: python-ldap groups
/// an entry's values by attribute name, in order of first appearance.
fn expected_dump(records: &[Record]) -> String {
    let mut out = String::new();
    for record in records {
        match record {
            Record::Content { dn, attrs } => {
                out += &format!("C {}\n", b64(dn.as_bytes()));
                let mut names: Vec<&str> = Vec::new();
                for a in attrs {
                    if !names.contains(&a.name.as_str()) {
                        names.push(&a.name);
                    }
                }
                for name in names {
                    for a in attrs.iter().filter(|a| a.name == name) {
                        out += &format!("A {} {}\n", b64(name.as_bytes()), b64(&a.value));
                    }
                }
            }
            Record::Change {
                dn,
                change: ChangeKind::Modify { mods },
                ..
            } => {
                out += &format!("M {}\n", b64(dn.as_bytes()));
                for m in mods {
                    let op = match m.op {
                        ModOp::Add => 0,
                        ModOp::Delete => 1,
                        ModOp::Replace => 2,
                        ModOp::Increment => 3,
                    };
                    let count = if m.values.is_empty() {
                        -1
                    } else {
                        m.values.len() as i64
                    };
                    out += &format!("O {op} {} {count}\n", b64(m.attr.as_bytes()));
                    for v in &m.values {
                        out += &format!("V {}\n", b64(v));
                    }
                }
            }
            Record::Change { .. } => {}
        }
    }
    out
}

fn python_dump(python: &str, mode: &str, ldif: &[u8]) -> String {
    let path = temp_file(&format!("{mode}.ldif"), ldif);
    let output = Command::new(python)
        .args(["-c", PYTHON_DUMP, mode])
        .arg(&path)
        .output()
        .expect("run python");
    std::fs::remove_file(&path).ok();
    assert!(
        output.status.success(),
        "python-ldap failed: {}\ninput:\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(ldif)
    );
    String::from_utf8(output.stdout).expect("dump is ASCII")
}

#[test]
fn python_ldap_reads_content_records_as_written() {
    let Some(python) = python_with_ldif() else {
        panic!("python-ldap is not installed: run scripts/test, which installs python3-ldap");
    };
    let content = (simple_dn(), attrs())
        .prop_filter("first attribute must not be a keyword", |(_, attrs)| {
            !["changetype", "control"]
                .iter()
                .any(|k| attrs[0].name.eq_ignore_ascii_case(k))
        })
        .prop_map(|(dn, attrs)| Record::Content { dn, attrs });
    let mut records = sample(content, 200);
    records.push(Record::Content {
        dn: "cn=edge,dc=example,dc=com".into(),
        attrs: vec![
            Attr::new("description", "\ttab first"),
            Attr::new("description", "trailing tab\t"),
            Attr::new("seeAlso", ""),
            Attr::new("title", "x".repeat(300)),
        ],
    });
    let ldif = write(&records);
    assert_eq!(
        python_dump(python, "content", &ldif),
        expected_dump(&records)
    );
}

#[test]
fn python_ldap_reads_modify_records_as_written() {
    let Some(python) = python_with_ldif() else {
        panic!("python-ldap is not installed: run scripts/test, which installs python3-ldap");
    };
    let op = prop::sample::select(vec![
        ModOp::Add,
        ModOp::Delete,
        ModOp::Replace,
        ModOp::Increment,
    ]);
    let modification = (op, attr_name(), vec(value(), 0..4))
        .prop_map(|(op, attr, values)| Modification { op, attr, values });
    // python-ldap drops modify records without modifications.
    let record = (simple_dn(), vec(modification, 1..5)).prop_map(|(dn, mods)| Record::Change {
        dn,
        controls: vec![],
        change: ChangeKind::Modify { mods },
    });
    let records = sample(record, 200);
    let ldif = write(&records);
    assert_eq!(
        python_dump(python, "modify", &ldif),
        expected_dump(&records)
    );
}

#[test]
fn openldap_ldapmodify_accepts_written_change_records() {
    if !has_ldapmodify() {
        panic!(
            "OpenLDAP's ldapmodify is not installed: run scripts/test, which installs ldap-utils"
        );
    }
    let change = prop_oneof![
        attrs().prop_map(|attrs| ChangeKind::Add { attrs }),
        Just(ChangeKind::Delete),
        vec(
            (
                prop::sample::select(vec![
                    ModOp::Add,
                    ModOp::Delete,
                    ModOp::Replace,
                    ModOp::Increment
                ]),
                attr_name(),
                vec(value(), 0..3)
            )
                .prop_map(|(op, attr, values)| Modification { op, attr, values }),
            0..4
        )
        .prop_map(|mods| ChangeKind::Modify { mods }),
        (
            simple_dn(),
            any::<bool>(),
            proptest::option::of(simple_dn())
        )
            .prop_map(|(rdn, delete_old_rdn, new_superior)| ChangeKind::ModDn {
                new_rdn: rdn.split(',').next().unwrap_or("cn=x").to_string(),
                delete_old_rdn,
                new_superior,
            }),
    ];
    // OpenLDAP reads at most one control line per record.
    let control = proptest::option::of(
        (
            "[0-9]{1,3}(\\.[0-9]{1,6}){1,6}",
            any::<bool>(),
            proptest::option::of(value()),
        )
            .prop_map(|(oid, criticality, value)| Control {
                oid,
                criticality,
                value,
            }),
    );
    let record = (simple_dn(), control, change).prop_map(|(dn, control, change)| Record::Change {
        dn,
        controls: control.into_iter().collect(),
        change,
    });
    let records = sample(record, 200);
    let ldif = write(&records);
    let path = temp_file("changes.ldif", &ldif);
    // -n parses and reports without ever connecting; the URI points at
    // loopback anyway.
    let output = Command::new("ldapmodify")
        .args(["-n", "-c", "-H", "ldap://127.0.0.1:9", "-f"])
        .arg(&path)
        .output()
        .expect("run ldapmodify");
    std::fs::remove_file(&path).ok();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "ldapmodify: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reported: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('!'))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    let dns: Vec<&str> = records.iter().map(Record::dn).collect();
    assert_eq!(reported, dns);
}

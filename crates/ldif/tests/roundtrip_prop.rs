//! Property tests: whatever records the writer accepts, the reader gives
//! back exactly, with LF or CRLF line endings; and the reader never panics
//! on arbitrary bytes.

use idsync_ldif::{
    needs_base64, Attr, ChangeKind, Control, ModOp, Modification, NoUrlResolver, Reader, Record,
    Writer,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Attribute descriptions: a name or a numeric OID, with options.
fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z][a-zA-Z0-9-]{0,20}",
        1 => "[0-9]{1,3}(\\.[0-9]{1,4}){0,5}",
    ]
    .prop_flat_map(|ty| {
        vec("[a-zA-Z0-9-]{1,10}", 0..3).prop_map(move |opts| {
            let mut name = ty.clone();
            for opt in opts {
                name.push(';');
                name.push_str(&opt);
            }
            name
        })
    })
}

/// Values that stress the encoder: arbitrary bytes, the characters that
/// force base64, long values that need folding, and plain text.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..40),
        vec(any::<u8>(), 200..600),
        vec(
            prop::sample::select(vec![
                b' ', b':', b'<', b'#', b'-', b'\0', b'\n', b'\r', b'\t', b'a', b'=', 0xc3, 0xa9,
                0xff, 0x7f,
            ]),
            0..30
        ),
        "[ :<]?[ -~]{0,300}".prop_map(String::into_bytes),
        any::<String>().prop_map(String::into_bytes),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ :<#]?[a-z]{1,5}=[ -~]{0,120}",
        "[a-z=, ]{150,300}",
        Just(String::new()),
    ]
}

fn oid() -> impl Strategy<Value = String> {
    "[0-9]{1,3}(\\.[0-9]{1,6}){0,8}"
}

fn attrs() -> impl Strategy<Value = Vec<Attr>> {
    vec(
        (attr_name(), value()).prop_map(|(name, value)| Attr { name, value }),
        1..6,
    )
}

fn content_record() -> impl Strategy<Value = Record> {
    (text(), attrs())
        .prop_filter("a first attribute named changetype or control is a change record", |(_, attrs)| {
            let first = &attrs[0].name;
            !first.eq_ignore_ascii_case("changetype") && !first.eq_ignore_ascii_case("control")
        })
        .prop_map(|(dn, attrs)| Record::Content { dn, attrs })
}

fn change_kind() -> impl Strategy<Value = ChangeKind> {
    let op = prop::sample::select(vec![ModOp::Add, ModOp::Delete, ModOp::Replace, ModOp::Increment]);
    let modification = (op, attr_name(), vec(value(), 0..4))
        .prop_map(|(op, attr, values)| Modification { op, attr, values });
    prop_oneof![
        attrs().prop_map(|attrs| ChangeKind::Add { attrs }),
        Just(ChangeKind::Delete),
        vec(modification, 0..5).prop_map(|mods| ChangeKind::Modify { mods }),
        (text(), any::<bool>(), proptest::option::of(text())).prop_map(
            |(new_rdn, delete_old_rdn, new_superior)| ChangeKind::ModDn {
                new_rdn,
                delete_old_rdn,
                new_superior,
            }
        ),
    ]
}

fn change_record() -> impl Strategy<Value = Record> {
    let control = (oid(), any::<bool>(), proptest::option::of(value())).prop_map(
        |(oid, criticality, value)| Control {
            oid,
            criticality,
            value,
        },
    );
    (text(), vec(control, 0..3), change_kind()).prop_map(|(dn, controls, change)| Record::Change {
        dn,
        controls,
        change,
    })
}

/// A whole file's worth: all content records or all change records.
fn records() -> impl Strategy<Value = Vec<Record>> {
    prop_oneof![vec(content_record(), 1..5), vec(change_record(), 1..5)]
}

/// Lines that often make sense in LDIF, to splice into inputs.
const SNIPPETS: &[&str] = &[
    "version: 1", "dn: cn=a", "dn:: Y249w6k=", "", "# comment", " folded", "-", "cn: x",
    "cn:: AAE=", "cn:", "cn:< file:///x", "changetype: add", "changetype: delete",
    "changetype: modify", "changetype: modrdn", "add: cn", "replace: sn", "control: 1.2 true: v",
    "newrdn: cn=z", "deleteoldrdn: 1", "newsuperior: dc=x",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Insert(usize, &'static str),
    FlipByte(usize, u8),
}

/// Valid LDIF with a few random mutations, so that the reader gets deep
/// into records (and error paths) far more often than with random bytes.
fn mutated_ldif() -> impl Strategy<Value = Vec<u8>> {
    let mutation = prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), prop::sample::select(SNIPPETS)).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipByte(i, b)),
    ];
    (records(), vec(mutation, 0..4), any::<bool>()).prop_map(|(recs, mutations, crlf)| {
        let out = write(&recs);
        let mut lines: Vec<Vec<u8>> = out.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        for m in mutations {
            let n = lines.len().max(1);
            match m {
                Mutation::Delete(i) if !lines.is_empty() => {
                    lines.remove(i % n);
                }
                Mutation::Duplicate(i) if !lines.is_empty() => {
                    let line = lines[i % n].clone();
                    lines.insert(i % n, line);
                }
                Mutation::Insert(i, s) => lines.insert(i % (lines.len() + 1), s.as_bytes().to_vec()),
                Mutation::FlipByte(i, b) if !lines.is_empty() => {
                    let line = &mut lines[i % n];
                    if !line.is_empty() {
                        let k = i % line.len();
                        line[k] = b;
                    }
                }
                _ => {}
            }
        }
        lines.join(if crlf { &b"\r\n"[..] } else { &b"\n"[..] })
    })
}

fn write(records: &[Record]) -> Vec<u8> {
    let mut writer = Writer::new(Vec::new());
    for r in records {
        writer.write(r).expect("generated records are writable");
    }
    writer.finish().expect("flush")
}

fn read(bytes: &[u8]) -> Result<Vec<(usize, Record)>, String> {
    Reader::new(bytes, "", Box::new(NoUrlResolver))
        .map(|r| r.map(|l| (l.line, l.record)).map_err(|e| e.to_string()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // Integration tests have no lib.rs for proptest's default lookup, so
        // failing cases are kept at a fixed path next to this file.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/roundtrip_prop.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn write_then_read_gives_the_same_records(recs in records()) {
        let out = write(&recs);
        let got = read(&out).map_err(|e| {
            TestCaseError::fail(format!("{e}\noutput:\n{}", String::from_utf8_lossy(&out)))
        })?;
        let got_records: Vec<Record> = got.iter().map(|(_, r)| r.clone()).collect();
        prop_assert_eq!(&got_records, &recs);

        // Output is ASCII, folded to 76 columns, and each record's line
        // number points at its dn line.
        prop_assert!(out.is_ascii());
        let text = String::from_utf8_lossy(&out);
        let lines: Vec<&str> = text.lines().collect();
        prop_assert!(lines.iter().all(|l| l.len() <= 76));
        prop_assert_eq!(lines[0], "version: 1");
        for (line, _) in &got {
            prop_assert!(lines[line - 1].starts_with("dn:"));
        }
    }

    #[test]
    fn crlf_output_reads_the_same(recs in records()) {
        let out = write(&recs);
        // Every LF the writer emits ends a line (values holding LF are base64),
        // so this turns the file into a CRLF file.
        let crlf = String::from_utf8(out).expect("ASCII").replace('\n', "\r\n");
        let got: Vec<Record> = read(crlf.as_bytes())
            .map_err(TestCaseError::fail)?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        prop_assert_eq!(got, recs);
    }

    #[test]
    fn plain_values_are_exactly_the_safe_strings(
        v in vec(
            prop::sample::select((1u8..=127).filter(|b| *b != b'\n' && *b != b'\r').collect::<Vec<_>>()),
            0..60,
        )
    ) {
        // Whatever needs_base64 lets through as plain text must come back
        // unchanged from a plain "name: value" line.
        prop_assume!(!needs_base64(&v));
        let mut input = b"dn: cn=a\ncn: ".to_vec();
        input.extend_from_slice(&v);
        input.push(b'\n');
        let got = read(&input).map_err(TestCaseError::fail)?;
        prop_assert_eq!(
            got.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
            vec![Record::Content { dn: "cn=a".into(), attrs: vec![Attr { name: "cn".into(), value: v }] }]
        );
    }

    #[test]
    fn reader_never_panics_and_its_records_round_trip(
        input in prop_oneof![
            vec(any::<u8>(), 0..400),
            vec(prop::sample::select(b"dn:cn=a \n\r-#:<\x00\xffchangetypemodifyaddcontrol1.2 true".to_vec()), 0..400),
            mutated_ldif(),
        ]
    ) {
        for item in Reader::new(&input[..], "", Box::new(NoUrlResolver)) {
            let Ok(located) = item else { continue };
            eprintln!("PARSED {:?}", located.record.is_change());
            let out = write(std::slice::from_ref(&located.record));
            let again = read(&out).map_err(TestCaseError::fail)?;
            prop_assert_eq!(again.len(), 1);
            prop_assert_eq!(&again[0].1, &located.record);
        }
    }
}

//! Property tests: whatever records the writer accepts, the reader gives
//! back exactly, with LF or CRLF line endings; and the reader never panics
//! on arbitrary bytes.

mod common;

use common::{records, write};
use idsync_ldif::{needs_base64, Attr, NoUrlResolver, Reader, Record};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Lines that often make sense in LDIF, to splice into inputs.
const SNIPPETS: &[&str] = &[
    "version: 1",
    "dn: cn=a",
    "dn:: Y249w6k=",
    "",
    "# comment",
    " folded",
    "-",
    "cn: x",
    "cn:: AAE=",
    "cn:",
    "cn:< file:///x",
    "changetype: add",
    "changetype: delete",
    "changetype: modify",
    "changetype: modrdn",
    "add: cn",
    "replace: sn",
    "control: 1.2 true: v",
    "newrdn: cn=z",
    "deleteoldrdn: 1",
    "newsuperior: dc=x",
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
                Mutation::Insert(i, s) => {
                    lines.insert(i % (lines.len() + 1), s.as_bytes().to_vec())
                }
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
            let out = write(std::slice::from_ref(&located.record));
            let again = read(&out).map_err(TestCaseError::fail)?;
            prop_assert_eq!(again.len(), 1);
            prop_assert_eq!(&again[0].1, &located.record);
        }
    }
}

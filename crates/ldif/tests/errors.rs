//! Malformed input gives errors that name the exact line and reason, the
//! reader resumes or stops as documented, and it never panics.

use std::io::{BufRead, BufReader, Read};

use idsync_ldif::{Attr, Error, NoUrlResolver, Reader, Record, DEFAULT_MAX_LINE_LEN};

/// Every item the reader yields: `Ok(dn)` or `Err((line, reason))`.
fn read(input: &[u8]) -> Vec<Result<String, (usize, String)>> {
    Reader::new(input, "", Box::new(NoUrlResolver))
        .map(|item| match item {
            Ok(located) => Ok(located.record.dn().to_string()),
            Err(e) => Err((e.line(), e.reason().into_owned())),
        })
        .collect()
}

fn first_error(input: &[u8]) -> (usize, String) {
    read(input)
        .into_iter()
        .find_map(Result::err)
        .unwrap_or_else(|| panic!("no error for {:?}", String::from_utf8_lossy(input)))
}

fn err(line: usize, reason: &str) -> (usize, String) {
    (line, reason.to_string())
}

#[test]
fn bad_base64() {
    assert_eq!(
        first_error(b"version: 1\ndn: cn=a\ncn: a\njpegPhoto:: not*base64!\n"),
        err(4, "invalid base64 in value of attribute 'jpegPhoto'")
    );
    assert_eq!(
        first_error(b"dn:: ***\ncn: a\n"),
        err(1, "invalid base64 in value of attribute 'dn'")
    );
}

#[test]
fn error_display_includes_source_name() {
    let input = b"version: 1\ndn: cn=a\njpegPhoto:: !!\n";
    let e: Error = Reader::new(&input[..], "people.ldif", Box::new(NoUrlResolver))
        .find_map(Result::err)
        .expect("an error");
    assert_eq!(
        e.to_string(),
        "people.ldif:3: invalid base64 in value of attribute 'jpegPhoto'"
    );
    let e: Error = Reader::new(&input[..], "", Box::new(NoUrlResolver))
        .find_map(Result::err)
        .expect("an error");
    assert_eq!(
        e.to_string(),
        "line 3: invalid base64 in value of attribute 'jpegPhoto'"
    );
}

#[test]
fn continuation_line_with_no_record() {
    let reason = "continuation line (starting with a space) has no line before it to continue";
    // At the very start of the input.
    assert_eq!(
        read(b" cn: a\ndn: cn=b\ncn: b\n"),
        vec![Err(err(1, reason)), Ok("cn=b".into())]
    );
    // Right after a blank line; its own continuations go with it and the
    // reader carries on with the next record.
    assert_eq!(
        read(b"dn: cn=a\ncn: a\n\n orphan\n  more\ndn: cn=b\ncn: b\n"),
        vec![Ok("cn=a".into()), Err(err(4, reason)), Ok("cn=b".into())]
    );
    // After a CRLF blank line.
    assert_eq!(
        first_error(b"dn: cn=a\r\ncn: a\r\n\r\n x\r\n"),
        err(4, reason)
    );
}

#[test]
fn unknown_changetype() {
    assert_eq!(
        read(b"dn: cn=a\nchangetype: frobnicate\ncn: a\n\ndn: cn=b\nchangetype: delete\n"),
        vec![
            Err(err(
                2,
                "unknown changetype 'frobnicate' (expected add, delete, modify, modrdn or moddn)"
            )),
            Ok("cn=b".into())
        ]
    );
}

#[test]
fn invalid_utf8_in_dn() {
    assert_eq!(
        first_error(b"dn: cn=caf\xe9\ncn: a\n"),
        err(1, "invalid UTF-8 in dn")
    );
    // The same bytes given in base64: "cn=caf\xe9".
    assert_eq!(
        first_error(b"version: 1\n\ndn:: Y249Y2Fm6Q==\ncn: a\n"),
        err(3, "invalid UTF-8 in dn")
    );
    assert_eq!(
        first_error(b"dn: cn=a\nchangetype: modrdn\nnewrdn: cn=\xff\ndeleteoldrdn: 1\n"),
        err(3, "invalid UTF-8 in newrdn")
    );
    assert_eq!(
        first_error(
            b"dn: cn=a\nchangetype: moddn\nnewrdn: cn=b\ndeleteoldrdn: 1\nnewsuperior:: /w==\n"
        ),
        err(5, "invalid UTF-8 in newsuperior")
    );
    assert_eq!(
        first_error(b"dn: cn=a\nc\xc3n: a\n"),
        err(2, "invalid UTF-8 in attribute name")
    );
}

#[test]
fn invalid_utf8_in_values_is_fine() {
    let got: Vec<Record> =
        Reader::new(&b"dn: cn=a\ncn: caf\xe9\n"[..], "", Box::new(NoUrlResolver))
            .map(|r| r.expect("values are bytes").record)
            .collect();
    assert_eq!(
        got,
        vec![Record::Content {
            dn: "cn=a".into(),
            attrs: vec![Attr::new("cn", &b"caf\xe9"[..])],
        }]
    );
}

#[test]
fn line_without_colon() {
    assert_eq!(
        first_error(b"dn: cn=a\ncn a\n"),
        err(2, "line has no ':' (expected 'attribute: value'): 'cn a'")
    );
    assert_eq!(
        first_error(b"version: 1\n\njunk\n"),
        err(3, "line has no ':' (expected 'attribute: value'): 'junk'")
    );
}

#[test]
fn mixing_content_and_change_records() {
    assert_eq!(
        read(b"dn: cn=a\ncn: a\n\ndn: cn=b\nchangetype: delete\n\ndn: cn=c\ncn: c\n"),
        vec![
            Ok("cn=a".into()),
            Err(err(
                5,
                "change record in a file of content records (RFC 2849 does not allow mixing them)"
            )),
            Ok("cn=c".into()),
        ]
    );
    assert_eq!(
        read(b"dn: cn=a\nchangetype: delete\n\ndn: cn=b\ncn: b\n"),
        vec![
            Ok("cn=a".into()),
            Err(err(
                5,
                "content record in a file of change records (RFC 2849 does not allow mixing them; expected 'changetype:')"
            )),
        ]
    );
    // A control line makes a change record too.
    assert_eq!(
        first_error(b"dn: cn=a\ncn: a\n\ndn: cn=b\ncontrol: 1.2.3\nchangetype: delete\n"),
        err(
            5,
            "change record in a file of content records (RFC 2849 does not allow mixing them)"
        )
    );
}

#[test]
fn unsupported_version_stops_the_reader() {
    assert_eq!(
        read(b"version: 2\n\ndn: cn=a\ncn: a\n"),
        vec![Err(err(
            1,
            "unsupported LDIF version '2' (only version 1 is supported)"
        ))]
    );
    assert_eq!(
        read(b"# comment\nversion: 1.0\ndn: cn=a\ncn: a\n"),
        vec![Err(err(
            2,
            "unsupported LDIF version '1.0' (only version 1 is supported)"
        ))]
    );
}

#[test]
fn version_later_in_the_file_is_not_a_version() {
    assert_eq!(
        first_error(b"dn: cn=a\ncn: a\n\nversion: 1\n"),
        err(
            4,
            "expected a 'dn:' line to start a record, found 'version:'"
        )
    );
}

#[test]
fn record_structure_errors() {
    let cases: &[(&[u8], (usize, &str))] = &[
        (
            b"cn: a\n",
            (1, "expected a 'dn:' line to start a record, found 'cn:'"),
        ),
        (
            b"dn: cn=a\n",
            (1, "record for dn 'cn=a' has no attributes or changetype"),
        ),
        (
            b"dn: cn=a\ncontrol: 1.2.3\n",
            (2, "record ends after 'control:' lines without a 'changetype:' line"),
        ),
        (
            b"dn: cn=a\ncontrol: 1.2.3\ncn: a\n",
            (3, "expected 'changetype:' after 'control:' lines, found 'cn:'"),
        ),
        (
            b"dn: cn=a\ncontrol: 1.2.x true\nchangetype: delete\n",
            (2, "invalid control OID '1.2.x'"),
        ),
        (
            b"dn: cn=a\ncontrol: 1.2.3 maybe\nchangetype: delete\n",
            (
                2,
                "unexpected 'maybe' in control line (expected 'true', 'false' or ':' and a value)",
            ),
        ),
        (
            b"dn: cn=a\ncontrol:: MS4y\nchangetype: delete\n",
            (2, "a control must be written 'control: <oid> [true|false] [value]'"),
        ),
        (
            b"dn: cn=a\nchangetype: add\n",
            (2, "'changetype: add' record has no attributes"),
        ),
        (
            b"dn: cn=a\nchangetype: delete\ncn: a\n",
            (3, "unexpected line after 'changetype: delete': 'cn: a'"),
        ),
        (
            b"dn: cn=a\nchangetype: modify\nfrob: cn\n-\n",
            (
                3,
                "expected 'add:', 'delete:', 'replace:' or 'increment:' in modify record, found 'frob:'",
            ),
        ),
        (
            b"dn: cn=a\nchangetype: modify\nadd: cn\nsn: x\n-\n",
            (
                4,
                "attribute 'sn' does not match 'cn' named in the 'add: cn' line (is a '-' line missing?)",
            ),
        ),
        (
            b"dn: cn=a\nchangetype: modify\nadd: cn\ncn: x\nreplace: sn\nsn: y\n-\n",
            (
                5,
                "attribute 'replace' does not match 'cn' named in the 'add: cn' line (is a '-' line missing?)",
            ),
        ),
        (
            b"dn: cn=a\nchangetype: modify\nadd: c n\n-\n",
            (3, "invalid attribute name 'c n' in 'add:' line"),
        ),
        (
            b"dn: cn=a\nchangetype: modrdn\n",
            (2, "'changetype: modrdn' record has no 'newrdn:' line"),
        ),
        (
            b"dn: cn=a\nchangetype: modrdn\ndeleteoldrdn: 1\n",
            (3, "expected 'newrdn:' after 'changetype: modrdn', found 'deleteoldrdn:'"),
        ),
        (
            b"dn: cn=a\nchangetype: moddn\nnewrdn: cn=b\n",
            (3, "'changetype: moddn' record has no 'deleteoldrdn:' line"),
        ),
        (
            b"dn: cn=a\nchangetype: modrdn\nnewrdn: cn=b\ndeleteoldrdn: yes\n",
            (4, "deleteoldrdn must be 0 or 1, found 'yes'"),
        ),
        (
            b"dn: cn=a\nchangetype: modrdn\nnewrdn: cn=b\ndeleteoldrdn: 1\ncn: x\n",
            (5, "expected 'newsuperior:' or the end of the record, found 'cn:'"),
        ),
        (
            b"dn: cn=a\nchangetype: modrdn\nnewrdn: cn=b\ndeleteoldrdn: 1\nnewsuperior: dc=x\nnewsuperior: dc=y\n",
            (6, "unexpected line after the end of a 'modrdn' record: 'newsuperior: dc=y'"),
        ),
        (
            b"dn:< file:///etc/passwd\ncn: a\n",
            (1, "dn cannot be given as a URL ('dn:<')"),
        ),
        (
            b"dn: cn=a\ncn;: a\n",
            (2, "invalid attribute name 'cn;'"),
        ),
        (
            b"dn: cn=a\n: a\n",
            (2, "invalid attribute name ''"),
        ),
        (
            b"dn: cn=a\ncn:<\n",
            (2, "empty URL in value of attribute 'cn'"),
        ),
        (
            b"dn: cn=a\ncn:< file:///\xff\n",
            (2, "invalid UTF-8 in URL of attribute 'cn'"),
        ),
        (
            b"dn: cn=a\ncontrol: 1.2.3 true:: %%%\nchangetype: delete\n",
            (2, "invalid base64 in value of control 1.2.3"),
        ),
    ];
    for (input, (line, reason)) in cases {
        assert_eq!(
            first_error(input),
            err(*line, reason),
            "input: {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn lenient_forms_are_accepted() {
    // Keywords in any case, no space after colons, trailing spaces after a
    // '-' and after keyword values, unpadded base64, a blank-line-free
    // version line, and a missing final '-'.
    let input =
        b"VERSION: 1\nDN:cn=a\nChangeType: Modify \nADD:cn\ncn:: QQ\n- \nreplace: sn\nsn: x\n";
    let got: Vec<_> = Reader::new(&input[..], "", Box::new(NoUrlResolver))
        .collect::<Result<Vec<_>, _>>()
        .expect("lenient input parses");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].line, 2);
}

#[test]
fn url_resolution_failure_names_the_line() {
    let input = b"dn: cn=a\ncn: a\njpegPhoto:< file:///nope.jpg\n";
    let e = Reader::new(&input[..], "p.ldif", Box::new(NoUrlResolver))
        .find_map(Result::err)
        .expect("an error");
    assert_eq!(
        e.to_string(),
        "p.ldif:3: cannot resolve URL 'file:///nope.jpg' in value of attribute 'jpegPhoto': URL values are not allowed here"
    );
}

/// An endless input of records: the reader must hand them out one at a
/// time instead of reading everything first.
struct EndlessRecords {
    n: u64,
    pending: Vec<u8>,
}

impl Read for EndlessRecords {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            self.n += 1;
            self.pending = format!("dn: cn=u{n}\ncn: u{n}\n\n", n = self.n).into_bytes();
        }
        let k = buf.len().min(self.pending.len());
        buf[..k].copy_from_slice(&self.pending[..k]);
        self.pending.drain(..k);
        Ok(k)
    }
}

#[test]
fn reads_one_record_at_a_time() {
    let input = BufReader::new(EndlessRecords {
        n: 0,
        pending: Vec::new(),
    });
    let dns: Vec<String> = Reader::new(input, "", Box::new(NoUrlResolver))
        .take(1000)
        .map(|r| r.expect("parses").record.dn().to_string())
        .collect();
    assert_eq!(dns.len(), 1000);
    assert_eq!(dns[999], "cn=u1000");
}

/// A reader of `len` bytes of 'a' that never holds them all.
fn huge_line(len: u64) -> impl BufRead {
    let head: &[u8] = b"dn: cn=a\ncn: ";
    BufReader::new(head.chain(std::io::repeat(b'a').take(len)))
}

#[test]
fn line_over_64_mib_is_an_error_and_stops() {
    let mut reader = Reader::new(
        huge_line(DEFAULT_MAX_LINE_LEN as u64 + 10),
        "big.ldif",
        Box::new(NoUrlResolver),
    );
    let e = reader.next().expect("an item").expect_err("too long");
    assert_eq!(
        e.to_string(),
        "big.ldif:2: line is longer than 67108864 bytes after unfolding"
    );
    assert!(reader.next().is_none());
}

#[test]
fn never_panics_on_odd_inputs() {
    let inputs: &[&[u8]] = &[
        b"",
        b"\n",
        b"\r\n\r\n",
        b" ",
        b"#",
        b"# only a comment\n folded\n",
        b"version: 1",
        b"version: 1\n",
        b"version:",
        b"version:: \xff\xff",
        b"dn",
        b"dn:",
        b"dn:\n-\n",
        b"dn: x\r",
        b"dn: x\ncn:",
        b"dn: x\ncn::",
        b"dn: x\ncn:<",
        b"dn: x\nchangetype:",
        b"dn: x\nchangetype: modify\n-\n",
        b"dn: x\nchangetype: modify\nadd:\n",
        b"dn: x\ncontrol:\nchangetype: delete",
        b"dn: x\ncontrol: 1 true:< \nchangetype: delete",
        b"dn: x\ncontrol: 1 tru\nchangetype: delete",
        b"\xff\xfe\x00",
        b":",
        b"::",
        b":<",
        b"\x00:\x00",
    ];
    for input in inputs {
        let _ = read(input);
    }
}

/// Items read with the text check on, `jpegPhoto` being the one binary attribute.
fn read_checked(input: &[u8]) -> Vec<Result<Vec<Attr>, (usize, String)>> {
    Reader::new(input, "", Box::new(NoUrlResolver))
        .with_text_check(|name| name.eq_ignore_ascii_case("jpegPhoto"))
        .map(|item| match item {
            Ok(located) => match located.record {
                Record::Content { attrs, .. } => Ok(attrs),
                other => panic!("not a content record: {other:?}"),
            },
            Err(e) => Err((e.line(), e.reason().into_owned())),
        })
        .collect()
}

#[test]
fn text_check_refuses_invalid_utf8_in_a_text_value() {
    let input = b"dn: cn=x,dc=example,dc=com\nobjectClass: person\ncn: \xff\xfe broken\nsn: x\n";
    assert_eq!(
        read_checked(input),
        vec![Err(err(3, "invalid UTF-8 in value of attribute 'cn'"))]
    );
    // The same bytes in base64 are refused too, and so is an attribute with other options.
    assert_eq!(
        read_checked(b"dn: cn=x\ncn:: //4gYnJva2Vu\n\ndn: cn=y\ncn;lang-fr: \xff\n"),
        vec![
            Err(err(2, "invalid UTF-8 in value of attribute 'cn'")),
            Err(err(5, "invalid UTF-8 in value of attribute 'cn;lang-fr'")),
        ]
    );
    // Without the check, values are bytes.
    assert_eq!(read(input), vec![Ok("cn=x,dc=example,dc=com".to_string())]);
}

#[test]
fn text_check_keeps_bytes_of_binary_attributes() {
    let input = b"dn: cn=x\njpegPhoto: \xff\xd8\xff\njpegPhoto:: /9j/\ncertificate;binary:: /9j/\nuserPassword;Binary: \xff\n";
    assert_eq!(
        read_checked(input),
        vec![Ok(vec![
            Attr::new("jpegPhoto", &b"\xff\xd8\xff"[..]),
            Attr::new("jpegPhoto", &b"\xff\xd8\xff"[..]),
            Attr::new("certificate;binary", &b"\xff\xd8\xff"[..]),
            Attr::new("userPassword;Binary", &b"\xff"[..]),
        ])]
    );
}

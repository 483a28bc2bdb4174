//! The examples of RFC 2849 (in `tests/fixtures/`, with the RFC's known
//! layout errata corrected as each file's header says) parse into exactly
//! the expected records, and survive a write and a re-read unchanged.

use std::path::PathBuf;

use idsync_ldif::{
    Attr, ChangeKind, Control, Located, ModOp, Modification, NoUrlResolver, Reader, Record,
    UrlResolver, Writer,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parse_with(input: &[u8], resolver: Box<dyn UrlResolver>) -> Vec<Located<Record>> {
    Reader::new(input, "fixture.ldif", resolver)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("fixture does not parse: {e}"))
}

fn parse(input: &[u8]) -> Vec<Located<Record>> {
    parse_with(input, Box::new(NoUrlResolver))
}

/// A resolver that hands out fixed bytes for the RFC's photo URLs, so the
/// tests do not depend on the file system.
fn photo_resolver() -> Box<dyn UrlResolver> {
    Box::new(|url: &str| match url {
        "file:///usr/local/directory/photos/hjensen.jpg" => Ok(b"\xff\xd8hjensen\xff\xd9".to_vec()),
        "file:///usr/local/directory/photos/fiona.jpg" => Ok(b"\xff\xd8fiona\xff\xd9".to_vec()),
        other => Err(format!("unexpected URL {other}")),
    })
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<Attr> {
    pairs.iter().map(|(n, v)| Attr::new(*n, *v)).collect()
}

fn records(located: &[Located<Record>]) -> Vec<Record> {
    located.iter().map(|l| l.record.clone()).collect()
}

/// Writes the records and reads them back, which must give them again.
fn assert_round_trip(recs: &[Record]) {
    let mut writer = Writer::new(Vec::new());
    for r in recs {
        writer.write(r).expect("record is writable");
    }
    let out = writer.finish().expect("flush");
    let again = parse(&out);
    assert_eq!(
        records(&again),
        recs,
        "output was:\n{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn example1_two_entries() {
    let got = parse(&fixture("rfc2849-example1.ldif"));
    assert_eq!(got.iter().map(|l| l.line).collect::<Vec<_>>(), vec![3, 15]);
    assert_eq!(
        records(&got),
        vec![
            Record::Content {
                dn: "cn=Barbara Jensen, ou=Product Development, dc=airius, dc=com".into(),
                attrs: attrs(&[
                    ("objectclass", "top"),
                    ("objectclass", "person"),
                    ("objectclass", "organizationalPerson"),
                    ("cn", "Barbara Jensen"),
                    ("cn", "Barbara J Jensen"),
                    ("cn", "Babs Jensen"),
                    ("sn", "Jensen"),
                    ("uid", "bjensen"),
                    ("telephonenumber", "+1 408 555 1212"),
                    ("description", "A big sailing fan."),
                ]),
            },
            Record::Content {
                dn: "cn=Bjorn Jensen, ou=Accounting, dc=airius, dc=com".into(),
                attrs: attrs(&[
                    ("objectclass", "top"),
                    ("objectclass", "person"),
                    ("objectclass", "organizationalPerson"),
                    ("cn", "Bjorn Jensen"),
                    ("sn", "Jensen"),
                    ("telephonenumber", "+1 408 555 1212"),
                ]),
            },
        ]
    );
    assert_round_trip(&records(&got));
}

#[test]
fn example1_with_crlf_line_endings() {
    let lf = fixture("rfc2849-example1.ldif");
    let text = String::from_utf8(lf.clone()).expect("fixture is UTF-8");
    let crlf = text.replace('\n', "\r\n");
    assert_eq!(records(&parse(crlf.as_bytes())), records(&parse(&lf)));
}

#[test]
fn example2_folded_value() {
    let got = parse(&fixture("rfc2849-example2.ldif"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].line, 4);
    assert_eq!(
        got[0].record,
        Record::Content {
            dn: "cn=Barbara Jensen, ou=Product Development, dc=airius, dc=com".into(),
            attrs: attrs(&[
                ("objectclass", "top"),
                ("objectclass", "person"),
                ("objectclass", "organizationalPerson"),
                ("cn", "Barbara Jensen"),
                ("cn", "Barbara J Jensen"),
                ("cn", "Babs Jensen"),
                ("sn", "Jensen"),
                ("uid", "bjensen"),
                ("telephonenumber", "+1 408 555 1212"),
                (
                    "description",
                    "Babs is a big sailing fan, and travels extensively in search of perfect sailing conditions."
                ),
                ("title", "Product Manager, Rod and Reel Division"),
            ]),
        }
    );
    assert_round_trip(&records(&got));
}

#[test]
fn example3_base64_value() {
    let got = parse(&fixture("rfc2849-example3.ldif"));
    assert_eq!(got.len(), 1);
    let Record::Content { dn, attrs } = &got[0].record else {
        panic!("expected a content record, got {:?}", got[0].record);
    };
    assert_eq!(dn, "cn=Gern Jensen, ou=Product Testing, dc=airius, dc=com");
    assert_eq!(attrs.len(), 9);
    let description = attrs.last().expect("has attributes");
    assert_eq!(description.name, "description");
    assert_eq!(
        description.value,
        b"What a careful reader you are!  This value is base-64-encoded because it has a \
          control character in it (a CR).\r  By the way, you should really get out more."
            .to_vec()
    );
    assert_round_trip(&records(&got));
}

#[test]
fn example4_utf8_values_and_language_options() {
    let got = parse(&fixture("rfc2849-example4.ldif"));
    assert_eq!(got.iter().map(|l| l.line).collect::<Vec<_>>(), vec![7, 20]);
    assert_eq!(
        got[0].record,
        Record::Content {
            dn: "ou=\u{55b6}\u{696d}\u{90e8},o=Airius".into(),
            attrs: attrs(&[
                ("objectclass", "top"),
                ("objectclass", "organizationalUnit"),
                ("ou", "\u{55b6}\u{696d}\u{90e8}"),
                ("ou;lang-ja", "\u{55b6}\u{696d}\u{90e8}"),
                (
                    "ou;lang-ja;phonetic",
                    "\u{3048}\u{3044}\u{304e}\u{3087}\u{3046}\u{3076}"
                ),
                ("ou;lang-en", "Sales"),
                ("description", "Japanese office"),
            ]),
        }
    );
    let Record::Content { dn, attrs } = &got[1].record else {
        panic!("expected a content record");
    };
    assert_eq!(dn, "uid=rogasawara,ou=\u{55b6}\u{696d}\u{90e8},o=Airius");
    assert_eq!(attrs.len(), 25);
    let find = |name: &str| {
        attrs
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.value_str())
            .unwrap_or_else(|| panic!("no text attribute {name}"))
    };
    assert_eq!(find("userpassword"), "{SHA}O3HSv1MusyL4kTjP+HKI5uxuNoM=");
    assert_eq!(
        find("cn;lang-ja"),
        "\u{5c0f}\u{7b20}\u{539f} \u{30ed}\u{30c9}\u{30cb}\u{30fc}"
    );
    assert_eq!(
        find("givenname;lang-ja;phonetic"),
        "\u{308d}\u{3069}\u{306b}\u{30fc}"
    );
    assert_eq!(
        find("title;lang-ja;phonetic"),
        "\u{3048}\u{3044}\u{304e}\u{3087}\u{3046}\u{3076} \u{3076}\u{3061}\u{3087}\u{3046}"
    );
    assert_eq!(find("title;lang-en"), "Sales, Director");
    assert_round_trip(&records(&got));
}

#[test]
fn example5_file_url() {
    let got = parse_with(&fixture("rfc2849-example5.ldif"), photo_resolver());
    assert_eq!(got.len(), 1);
    let Record::Content { attrs, .. } = &got[0].record else {
        panic!("expected a content record");
    };
    assert_eq!(
        attrs.last(),
        Some(&Attr::new("jpegphoto", &b"\xff\xd8hjensen\xff\xd9"[..]))
    );
    assert_round_trip(&records(&got));
}

#[test]
fn example5_file_url_refused_without_a_resolver() {
    let errs: Vec<String> = Reader::new(
        &fixture("rfc2849-example5.ldif")[..],
        "example5.ldif",
        Box::new(NoUrlResolver),
    )
    .filter_map(|r| r.err().map(|e| e.to_string()))
    .collect();
    assert_eq!(
        errs,
        vec![
            "example5.ldif:14: cannot resolve URL 'file:///usr/local/directory/photos/hjensen.jpg' \
             in value of attribute 'jpegphoto': URL values are not allowed here"
                .to_string()
        ]
    );
}

#[test]
fn example6_change_records() {
    let got = parse_with(&fixture("rfc2849-example6.ldif"), photo_resolver());
    assert_eq!(
        got.iter().map(|l| l.line).collect::<Vec<_>>(),
        vec![6, 18, 22, 29, 39, 59]
    );
    let mut add_attrs = attrs(&[
        ("objectclass", "top"),
        ("objectclass", "person"),
        ("objectclass", "organizationalPerson"),
        ("cn", "Fiona Jensen"),
        ("sn", "Jensen"),
        ("uid", "fiona"),
        ("telephonenumber", "+1 408 555 1212"),
    ]);
    add_attrs.push(Attr::new("jpegphoto", &b"\xff\xd8fiona\xff\xd9"[..]));
    let expected = vec![
        Record::Change {
            dn: "cn=Fiona Jensen, ou=Marketing, dc=airius, dc=com".into(),
            controls: vec![],
            change: ChangeKind::Add { attrs: add_attrs },
        },
        Record::Change {
            dn: "cn=Robert Jensen, ou=Marketing, dc=airius, dc=com".into(),
            controls: vec![],
            change: ChangeKind::Delete,
        },
        Record::Change {
            dn: "cn=Paul Jensen, ou=Product Development, dc=airius, dc=com".into(),
            controls: vec![],
            change: ChangeKind::ModDn {
                new_rdn: "cn=Paula Jensen".into(),
                delete_old_rdn: true,
                new_superior: None,
            },
        },
        Record::Change {
            dn: "ou=PD Accountants, ou=Product Development, dc=airius, dc=com".into(),
            controls: vec![],
            change: ChangeKind::ModDn {
                new_rdn: "ou=Product Development Accountants".into(),
                delete_old_rdn: false,
                new_superior: Some("ou=Accounting, dc=airius, dc=com".into()),
            },
        },
        Record::Change {
            dn: "cn=Paula Jensen, ou=Product Development, dc=airius, dc=com".into(),
            controls: vec![],
            change: ChangeKind::Modify {
                mods: vec![
                    Modification {
                        op: ModOp::Add,
                        attr: "postaladdress".into(),
                        values: vec![b"123 Anystreet $ Sunnyvale, CA $ 94086".to_vec()],
                    },
                    Modification {
                        op: ModOp::Delete,
                        attr: "description".into(),
                        values: vec![],
                    },
                    Modification {
                        op: ModOp::Replace,
                        attr: "telephonenumber".into(),
                        values: vec![b"+1 408 555 1234".to_vec(), b"+1 408 555 5678".to_vec()],
                    },
                    Modification {
                        op: ModOp::Delete,
                        attr: "facsimiletelephonenumber".into(),
                        values: vec![b"+1 408 555 9876".to_vec()],
                    },
                ],
            },
        },
        Record::Change {
            dn: "cn=Ingrid Jensen, ou=Product Support, dc=airius, dc=com".into(),
            controls: vec![],
            change: ChangeKind::Modify {
                mods: vec![
                    Modification {
                        op: ModOp::Replace,
                        attr: "postaladdress".into(),
                        values: vec![],
                    },
                    Modification {
                        op: ModOp::Delete,
                        attr: "description".into(),
                        values: vec![],
                    },
                ],
            },
        },
    ];
    assert_eq!(records(&got), expected);
    assert_round_trip(&expected);
}

#[test]
fn example7_control() {
    let got = parse(&fixture("rfc2849-example7.ldif"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].line, 8);
    assert_eq!(
        got[0].record,
        Record::Change {
            dn: "ou=Product Development, dc=airius, dc=com".into(),
            controls: vec![Control {
                oid: "1.2.840.113556.1.4.805".into(),
                criticality: true,
                value: None,
            }],
            change: ChangeKind::Delete,
        }
    );
    assert_round_trip(&records(&got));
}

#[test]
fn moddn_increment_and_control_values() {
    let input = b"version: 1\n\n\
        dn: cn=a,dc=x\n\
        control: 1.2.3 false: plain value\n\
        control: 1.2.4 true:: AAE=\n\
        control: 1.2.5:\n\
        changetype: moddn\n\
        newrdn:: Y249w6k=\n\
        deleteoldrdn: 0\n\
        newsuperior:: ZGM9ecOp\n\
        \n\
        dn: cn=b,dc=x\n\
        changetype: modify\n\
        increment: uidNumber\n\
        uidNumber: 5\n\
        -\n\
        add: cn;lang-fr\n\
        CN;LANG-FR: b\n";
    let got = parse(input);
    assert_eq!(
        records(&got),
        vec![
            Record::Change {
                dn: "cn=a,dc=x".into(),
                controls: vec![
                    Control {
                        oid: "1.2.3".into(),
                        criticality: false,
                        value: Some(b"plain value".to_vec()),
                    },
                    Control {
                        oid: "1.2.4".into(),
                        criticality: true,
                        value: Some(vec![0, 1]),
                    },
                    Control {
                        oid: "1.2.5".into(),
                        criticality: false,
                        value: Some(vec![]),
                    },
                ],
                change: ChangeKind::ModDn {
                    new_rdn: "cn=\u{e9}".into(),
                    delete_old_rdn: false,
                    new_superior: Some("dc=y\u{e9}".into()),
                },
            },
            Record::Change {
                dn: "cn=b,dc=x".into(),
                controls: vec![],
                change: ChangeKind::Modify {
                    mods: vec![
                        Modification {
                            op: ModOp::Increment,
                            attr: "uidNumber".into(),
                            values: vec![b"5".to_vec()],
                        },
                        // The last block's '-' is missing, which is accepted.
                        Modification {
                            op: ModOp::Add,
                            attr: "cn;lang-fr".into(),
                            values: vec![b"b".to_vec()],
                        },
                    ],
                },
            },
        ]
    );
    assert_round_trip(&records(&got));
}

#[test]
fn file_url_resolver_reads_relative_to_base_dir() {
    use idsync_ldif::FileUrlResolver;
    let dir = std::env::temp_dir().join(format!("idsync-ldif-rfc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("photo.jpg"), b"\xff\xd8photo").expect("write photo");
    let input = b"dn: cn=a\njpegPhoto:< file:photo.jpg\n";
    let got = parse_with(
        input,
        Box::new(FileUrlResolver {
            base_dir: Some(dir.clone()),
        }),
    );
    assert_eq!(
        got[0].record,
        Record::Content {
            dn: "cn=a".into(),
            attrs: vec![Attr::new("jpegPhoto", &b"\xff\xd8photo"[..])],
        }
    );
    std::fs::remove_dir_all(&dir).ok();
}

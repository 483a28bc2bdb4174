use idsync_ldif::*;
fn main() {
    let kind = std::env::args().nth(1).unwrap();
    let mut w = Writer::new(std::io::stdout());
    let long = "x".repeat(150);
    if kind == "content" {
        w.write(&Record::Content {
            dn: "cn=Caf\u{e9} Jensen,dc=example,dc=com".into(),
            attrs: vec![
                Attr::new("objectClass", "person"),
                Attr::new("cn", "Caf\u{e9} Jensen"),
                Attr::new("sn", " lead"),
                Attr::new("description", long.as_str()),
                Attr::new("seeAlso", ""),
                Attr::new("cn;lang-fr", "tab\there"),
                Attr::new("jpegPhoto", &b"\x00\xff\n\r"[..]),
                Attr::new("title", ":colon"),
                Attr::new("l", "<lt"),
                Attr::new("st", "trail "),
            ],
        })
        .unwrap();
        w.write(&Record::Content {
            dn: "".into(),
            attrs: vec![Attr::new("objectClass", "top")],
        })
        .unwrap();
    } else {
        w.write(&Record::Change {
            dn: "cn=a,dc=example,dc=com".into(),
            controls: vec![
                Control {
                    oid: "1.2.840.113556.1.4.805".into(),
                    criticality: true,
                    value: None,
                },
                Control {
                    oid: "1.3.6.1.1.13.1".into(),
                    criticality: false,
                    value: Some(b"(cn=x)".to_vec()),
                },
            ],
            change: ChangeKind::Delete,
        })
        .unwrap();
        w.write(&Record::Change {
            dn: "cn=b,dc=example,dc=com".into(),
            controls: vec![],
            change: ChangeKind::Add {
                attrs: vec![
                    Attr::new("objectClass", "person"),
                    Attr::new("cn", "b"),
                    Attr::new("sn", long.as_str()),
                ],
            },
        })
        .unwrap();
        w.write(&Record::Change {
            dn: "cn=c,dc=example,dc=com".into(),
            controls: vec![],
            change: ChangeKind::Modify {
                mods: vec![
                    Modification {
                        op: ModOp::Add,
                        attr: "mail".into(),
                        values: vec![b"a@x".to_vec(), b"b@x".to_vec()],
                    },
                    Modification {
                        op: ModOp::Delete,
                        attr: "description".into(),
                        values: vec![],
                    },
                    Modification {
                        op: ModOp::Replace,
                        attr: "sn".into(),
                        values: vec![" x".as_bytes().to_vec()],
                    },
                    Modification {
                        op: ModOp::Increment,
                        attr: "uidNumber".into(),
                        values: vec![b"1".to_vec()],
                    },
                ],
            },
        })
        .unwrap();
        w.write(&Record::Change {
            dn: "cn=d,dc=example,dc=com".into(),
            controls: vec![],
            change: ChangeKind::ModDn {
                new_rdn: "cn=\u{e9}".into(),
                delete_old_rdn: true,
                new_superior: Some("ou=x,dc=example,dc=com".into()),
            },
        })
        .unwrap();
    }
    w.finish().unwrap();
}

//! The LDIF writer. Its output is meant for OpenLDAP's `ldapadd`,
//! `ldapmodify` and `slapadd` and for python-ldap, and to read back through
//! [`crate::Reader`] into exactly the records that were written.

use std::io::{self, Write};

use base64::Engine as _;

use crate::syntax::{is_valid_attribute_description, is_valid_oid, show, writer_needs_base64};
use crate::{Attr, ChangeKind, Control, Record};

/// Physical lines are folded to at most this many columns (RFC 2849's
/// customary width, which OpenLDAP also uses).
const WIDTH: usize = 76;

/// Writes records as LDIF: `version: 1` before the first record, a blank
/// line after each record, LF line endings, lines folded at 76 columns, and
/// base64 for every value that is not a safe plain string.
///
/// A record that LDIF cannot express (an invalid attribute name, a content
/// record without attributes, a content record after change records, ...)
/// is refused with an [`io::ErrorKind::InvalidInput`] error before anything
/// of it is written.
///
/// A control is written `control: OID true|false[: value]`, criticality
/// always spelled out (see `put_control` for why). OpenLDAP's `ldapmodify`
/// reads only one `control:` line per record; a record with several is
/// valid RFC 2849 and reads back here, but not there.
pub struct Writer<W: Write> {
    out: W,
    /// Whether the file holds change records, once the first record said so.
    holds_changes: Option<bool>,
    buf: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// A writer into `out`.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            holds_changes: None,
            buf: Vec::new(),
        }
    }

    /// Writes one record.
    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        match self.holds_changes {
            Some(changes) if changes != record.is_change() => {
                return Err(invalid(format!(
                    "cannot write a {} record for dn '{}' into a file of {} records: RFC 2849 does not allow mixing them",
                    if record.is_change() { "change" } else { "content" },
                    show(record.dn().as_bytes()),
                    if changes { "change" } else { "content" },
                )));
            }
            _ => {}
        }
        self.buf.clear();
        if self.holds_changes.is_none() {
            // The RFC grammar wants a blank line after the version line;
            // OpenLDAP wants the version line to be line 1.
            self.buf.extend_from_slice(b"version: 1\n\n");
        }
        encode_record(record, &mut self.buf)?;
        // Every record ends with a blank line, the last one too: that is
        // what ldapsearch and python-ldap write, and python-ldap's reader
        // of change records fails at the end of a file without it.
        self.buf.push(b'\n');
        self.out.write_all(&self.buf)?;
        self.holds_changes = Some(record.is_change());
        Ok(())
    }

    /// Flushes and gives back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

fn invalid(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, reason)
}

fn check_name(name: &str) -> io::Result<()> {
    if is_valid_attribute_description(name) {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid attribute name '{}'",
            show(name.as_bytes())
        )))
    }
}

fn encode_record(record: &Record, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut line = Vec::new();
    match record {
        Record::Content { dn, attrs } => {
            let Some(first) = attrs.first() else {
                return Err(invalid(format!(
                    "content record for dn '{}' has no attributes, which LDIF cannot express",
                    show(dn.as_bytes())
                )));
            };
            // Right after the dn these names would turn the record into a
            // change record when read back.
            for keyword in ["changetype", "control"] {
                if first.name.eq_ignore_ascii_case(keyword) {
                    return Err(invalid(format!(
                        "content record for dn '{}' cannot start with attribute '{}'",
                        show(dn.as_bytes()),
                        first.name
                    )));
                }
            }
            put_value(buf, &mut line, "dn", dn.as_bytes());
            put_attrs(buf, &mut line, attrs)?;
        }
        Record::Change {
            dn,
            controls,
            change,
        } => {
            put_value(buf, &mut line, "dn", dn.as_bytes());
            for control in controls {
                put_control(buf, &mut line, control)?;
            }
            match change {
                ChangeKind::Add { attrs } => {
                    if attrs.is_empty() {
                        return Err(invalid(format!(
                            "add record for dn '{}' has no attributes, which LDIF cannot express",
                            show(dn.as_bytes())
                        )));
                    }
                    put_folded(buf, b"changetype: add");
                    put_attrs(buf, &mut line, attrs)?;
                }
                ChangeKind::Delete => put_folded(buf, b"changetype: delete"),
                ChangeKind::Modify { mods } => {
                    put_folded(buf, b"changetype: modify");
                    for m in mods {
                        check_name(&m.attr)?;
                        line.clear();
                        line.extend_from_slice(m.op.as_str().as_bytes());
                        line.extend_from_slice(b": ");
                        line.extend_from_slice(m.attr.as_bytes());
                        put_folded(buf, &line);
                        for value in &m.values {
                            put_value(buf, &mut line, &m.attr, value);
                        }
                        put_folded(buf, b"-");
                    }
                }
                ChangeKind::ModDn {
                    new_rdn,
                    delete_old_rdn,
                    new_superior,
                } => {
                    put_folded(buf, b"changetype: modrdn");
                    put_value(buf, &mut line, "newrdn", new_rdn.as_bytes());
                    put_folded(
                        buf,
                        if *delete_old_rdn {
                            b"deleteoldrdn: 1"
                        } else {
                            b"deleteoldrdn: 0"
                        },
                    );
                    if let Some(sup) = new_superior {
                        put_value(buf, &mut line, "newsuperior", sup.as_bytes());
                    }
                }
            }
        }
    }
    Ok(())
}

fn put_attrs(buf: &mut Vec<u8>, line: &mut Vec<u8>, attrs: &[Attr]) -> io::Result<()> {
    for attr in attrs {
        check_name(&attr.name)?;
        put_value(buf, line, &attr.name, &attr.value);
    }
    Ok(())
}

fn put_control(buf: &mut Vec<u8>, line: &mut Vec<u8>, control: &Control) -> io::Result<()> {
    if !is_valid_oid(&control.oid) {
        return Err(invalid(format!(
            "invalid control OID '{}'",
            show(control.oid.as_bytes())
        )));
    }
    line.clear();
    line.extend_from_slice(b"control: ");
    line.extend_from_slice(control.oid.as_bytes());
    // The criticality is always written, although RFC 2849 lets "false" be
    // left out: OpenLDAP's parser needs a space between the OID and a
    // value's ':' (which the RFC grammar does not allow), and python-ldap
    // needs a word after the OID; "OID false: value" satisfies all three.
    line.extend_from_slice(if control.criticality {
        b" true"
    } else {
        b" false"
    });
    if let Some(value) = &control.value {
        push_value_spec(line, value);
    }
    put_folded(buf, line);
    Ok(())
}

/// Writes `name: value`, `name:: base64` or `name:` (empty value).
fn put_value(buf: &mut Vec<u8>, line: &mut Vec<u8>, name: &str, value: &[u8]) {
    line.clear();
    line.extend_from_slice(name.as_bytes());
    push_value_spec(line, value);
    put_folded(buf, line);
}

/// Appends the value part that follows a name: `: value`, `:: base64`, or
/// a lone `:` for the empty value (RFC 2849 note 5).
fn push_value_spec(line: &mut Vec<u8>, value: &[u8]) {
    if value.is_empty() {
        line.push(b':');
    } else if writer_needs_base64(value) {
        line.extend_from_slice(b":: ");
        line.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(value)
                .as_bytes(),
        );
    } else {
        line.extend_from_slice(b": ");
        line.extend_from_slice(value);
    }
}

/// Writes one logical line folded to [`WIDTH`] columns, each continuation
/// line starting with the single space that readers remove. Every line the
/// writer makes is ASCII (anything else is base64-encoded), so folding at
/// any byte never splits a UTF-8 character.
fn put_folded(buf: &mut Vec<u8>, line: &[u8]) {
    let (head, mut rest) = line.split_at(line.len().min(WIDTH));
    buf.extend_from_slice(head);
    buf.push(b'\n');
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(WIDTH - 1));
        buf.push(b' ');
        buf.extend_from_slice(chunk);
        buf.push(b'\n');
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModOp, Modification};

    fn write_all(records: &[Record]) -> io::Result<String> {
        let mut w = Writer::new(Vec::new());
        for r in records {
            w.write(r)?;
        }
        let bytes = w.finish()?;
        Ok(String::from_utf8(bytes).expect("writer output is ASCII"))
    }

    #[test]
    fn content_records() {
        let out = write_all(&[
            Record::Content {
                dn: "cn=a,dc=x".into(),
                attrs: vec![
                    Attr::new("cn", "a"),
                    Attr::new("description", " leading"),
                    Attr::new("seeAlso", ""),
                    Attr::new("cn;lang-fr", "\u{e9}t\u{e9}"),
                ],
            },
            Record::Content {
                dn: "cn=\u{e9},dc=x".into(),
                attrs: vec![Attr::new("objectClass", "top")],
            },
        ])
        .expect("writes");
        assert_eq!(
            out,
            "version: 1\n\ndn: cn=a,dc=x\ncn: a\ndescription:: IGxlYWRpbmc=\nseeAlso:\n\
             cn;lang-fr:: w6l0w6k=\n\ndn:: Y249w6ksZGM9eA==\nobjectClass: top\n\n"
        );
    }

    #[test]
    fn empty_writer_writes_nothing() {
        assert_eq!(write_all(&[]).expect("writes"), "");
    }

    #[test]
    fn change_records() {
        let out = write_all(&[
            Record::Change {
                dn: "cn=a".into(),
                controls: vec![
                    Control {
                        oid: "1.2.3".into(),
                        criticality: true,
                        value: None,
                    },
                    Control {
                        oid: "1.2.4".into(),
                        criticality: false,
                        value: Some(b"v".to_vec()),
                    },
                    Control {
                        oid: "1.2.5".into(),
                        criticality: true,
                        value: Some(b"\x00".to_vec()),
                    },
                ],
                change: ChangeKind::Delete,
            },
            Record::Change {
                dn: "cn=b".into(),
                controls: vec![],
                change: ChangeKind::Modify {
                    mods: vec![
                        Modification {
                            op: ModOp::Replace,
                            attr: "sn".into(),
                            values: vec![b"x".to_vec(), b"y".to_vec()],
                        },
                        Modification {
                            op: ModOp::Delete,
                            attr: "description".into(),
                            values: vec![],
                        },
                        Modification {
                            op: ModOp::Increment,
                            attr: "uidNumber".into(),
                            values: vec![b"1".to_vec()],
                        },
                    ],
                },
            },
            Record::Change {
                dn: "cn=c".into(),
                controls: vec![],
                change: ChangeKind::ModDn {
                    new_rdn: "cn=d".into(),
                    delete_old_rdn: true,
                    new_superior: Some(String::new()),
                },
            },
        ])
        .expect("writes");
        assert_eq!(
            out,
            "version: 1\n\ndn: cn=a\ncontrol: 1.2.3 true\ncontrol: 1.2.4 false: v\n\
             control: 1.2.5 true:: AA==\nchangetype: delete\n\n\
             dn: cn=b\nchangetype: modify\nreplace: sn\nsn: x\nsn: y\n-\n\
             delete: description\n-\nincrement: uidNumber\nuidNumber: 1\n-\n\n\
             dn: cn=c\nchangetype: modrdn\nnewrdn: cn=d\ndeleteoldrdn: 1\nnewsuperior:\n\n"
        );
    }

    #[test]
    fn folds_at_76_columns() {
        let value = "x".repeat(200);
        let out = write_all(&[Record::Content {
            dn: "cn=a".into(),
            attrs: vec![Attr::new("description", value.as_str())],
        }])
        .expect("writes");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.iter().all(|l| l.len() <= WIDTH), "{lines:?}");
        assert_eq!(lines[3].len(), WIDTH);
        assert!(lines[4].starts_with(' '));
        assert_eq!(lines.last(), Some(&""));
        let unfolded: String = lines[3..lines.len() - 1]
            .iter()
            .enumerate()
            .map(|(i, l)| if i == 0 { *l } else { &l[1..] })
            .collect();
        assert_eq!(unfolded, format!("description: {value}"));
    }

    #[test]
    fn fold_exact_width_has_no_empty_continuation() {
        let mut buf = Vec::new();
        put_folded(&mut buf, &[b'a'; WIDTH]);
        assert_eq!(buf.len(), WIDTH + 1);
        buf.clear();
        put_folded(&mut buf, &[b'a'; WIDTH + WIDTH - 1]);
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 2);
    }

    #[test]
    fn refuses_what_ldif_cannot_express() {
        let cases = [
            Record::Content {
                dn: "cn=a".into(),
                attrs: vec![],
            },
            Record::Content {
                dn: "cn=a".into(),
                attrs: vec![Attr::new("ChangeType", "add")],
            },
            Record::Content {
                dn: "cn=a".into(),
                attrs: vec![Attr::new("control", "1.2")],
            },
            Record::Content {
                dn: "cn=a".into(),
                attrs: vec![Attr::new("bad name", "x")],
            },
            Record::Change {
                dn: "cn=a".into(),
                controls: vec![],
                change: ChangeKind::Add { attrs: vec![] },
            },
            Record::Change {
                dn: "cn=a".into(),
                controls: vec![Control {
                    oid: "not.an.oid".into(),
                    criticality: false,
                    value: None,
                }],
                change: ChangeKind::Delete,
            },
            Record::Change {
                dn: "cn=a".into(),
                controls: vec![],
                change: ChangeKind::Modify {
                    mods: vec![Modification {
                        op: ModOp::Add,
                        attr: "-".into(),
                        values: vec![],
                    }],
                },
            },
        ];
        for case in &cases {
            let mut w = Writer::new(Vec::new());
            let err = w.write(case).expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{case:?}");
            assert!(w.finish().expect("flushes").is_empty(), "{case:?}");
        }
    }

    #[test]
    fn refuses_mixing() {
        let mut w = Writer::new(Vec::new());
        w.write(&Record::Change {
            dn: "cn=a".into(),
            controls: vec![],
            change: ChangeKind::Delete,
        })
        .expect("writes");
        let err = w
            .write(&Record::Content {
                dn: "cn=b".into(),
                attrs: vec![Attr::new("cn", "b")],
            })
            .expect_err("mixing refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("does not allow mixing"), "{err}");
    }
}

//! Record generators and helpers shared by the property and interop tests.
#![allow(dead_code)] // Each test file uses a different subset.

use idsync_ldif::{Attr, ChangeKind, Control, ModOp, Modification, Record, Writer};
use proptest::collection::vec;
use proptest::prelude::*;

/// Attribute descriptions: a name or a numeric OID, with options.
pub fn attr_name() -> impl Strategy<Value = String> {
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
pub fn value() -> impl Strategy<Value = Vec<u8>> {
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

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ :<#]?[a-z]{1,5}=[ -~]{0,120}",
        "[a-z=, ]{150,300}",
        Just(String::new()),
    ]
}

pub fn oid() -> impl Strategy<Value = String> {
    "[0-9]{1,3}(\\.[0-9]{1,6}){0,8}"
}

pub fn attrs() -> impl Strategy<Value = Vec<Attr>> {
    vec(
        (attr_name(), value()).prop_map(|(name, value)| Attr { name, value }),
        1..6,
    )
}

pub fn content_record() -> impl Strategy<Value = Record> {
    (text(), attrs())
        .prop_filter(
            "a first attribute named changetype or control is a change record",
            |(_, attrs)| {
                let first = &attrs[0].name;
                !first.eq_ignore_ascii_case("changetype") && !first.eq_ignore_ascii_case("control")
            },
        )
        .prop_map(|(dn, attrs)| Record::Content { dn, attrs })
}

pub fn change_kind() -> impl Strategy<Value = ChangeKind> {
    let op = prop::sample::select(vec![
        ModOp::Add,
        ModOp::Delete,
        ModOp::Replace,
        ModOp::Increment,
    ]);
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

pub fn change_record() -> impl Strategy<Value = Record> {
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
pub fn records() -> impl Strategy<Value = Vec<Record>> {
    prop_oneof![vec(content_record(), 1..5), vec(change_record(), 1..5)]
}

/// Writes records with a fresh [`Writer`].
pub fn write(records: &[Record]) -> Vec<u8> {
    let mut writer = Writer::new(Vec::new());
    for r in records {
        writer.write(r).expect("generated records are writable");
    }
    writer.finish().expect("flush")
}

//! Content digests: one hash that is equal for two states exactly when comparing them finds no
//! change, so an import can tell an unchanged object without loading and diffing its hologram.

use crate::{Attributes, Dn, Reference, Value};

/// The digest of an object's state as an import compares it: its identifier, object type,
/// object classes, and each attribute's values as a set by content (the order of values and
/// duplicates are not changes, nor is an attribute with no values; DN references compare as
/// directories do, case-insensitively). Equal digests mean [`crate::diff_attributes`] finds no
/// change and the identifier, type and classes are the same.
pub fn content_digest(
    dn: &Dn,
    object_type: &str,
    object_classes: &[String],
    attributes: &Attributes,
) -> [u8; 32] {
    typed_digest(object_type, &entry_digest(dn, object_classes, attributes))
}

/// [`content_digest`] from the object type and the [`entry_digest`] of the rest: a connector
/// can compute the entry's part where it reads (it does not know the type the rules give).
pub fn typed_digest(object_type: &str, entry: &[u8; 32]) -> [u8; 32] {
    let mut buf = Vec::with_capacity(48 + object_type.len());
    field(&mut buf, b'y', object_type.as_bytes());
    field(&mut buf, b'e', entry);
    *blake3::hash(&buf).as_bytes()
}

/// The key a connector's [`wire_digest`]s are made under: everything besides the bytes the
/// system sent that decides what they convert to (the connector's settings, the schema it read,
/// the version of its conversion). A change of any of them changes every wire digest, so the
/// next import compares the converted objects instead.
pub fn wire_key(material: &[u8]) -> [u8; 32] {
    blake3::derive_key("idsync 2026 connector wire digest", material)
}

/// The digest of an object exactly as a connector read it (the bytes of one entry, row or
/// record), under its [`wire_key`]. Equal wire digests mean equal converted objects, so an
/// import recognises an unchanged object before converting it; unequal ones mean nothing (the
/// system may have sent the same content differently), and the content digest decides.
pub fn wire_digest(key: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(key, bytes).as_bytes()
}

/// A connector's wire digest as an import stores it: under the connector's import scope (its
/// settings and object types, which classify the converted object).
pub fn scoped_wire_digest(scope: &str, wire: &[u8; 32]) -> [u8; 32] {
    let mut buf = Vec::with_capacity(48 + scope.len());
    field(&mut buf, b's', scope.as_bytes());
    field(&mut buf, b'w', wire);
    *blake3::hash(&buf).as_bytes()
}

/// The digest of an entry as read, without its object type: its identifier, classes and
/// attribute values (see [`content_digest`]).
pub fn entry_digest(dn: &Dn, object_classes: &[String], attributes: &Attributes) -> [u8; 32] {
    // One canonical byte string, hashed once: cheaper than feeding a hasher field by field.
    let mut buf = Vec::with_capacity(512);
    field(&mut buf, b'n', dn.as_str().as_bytes());
    for c in object_classes {
        field(&mut buf, b'c', c.as_bytes());
    }
    let mut one = Vec::new();
    let mut set: Vec<[u8; 32]> = Vec::new();
    for (name, vs) in attributes.iter() {
        if vs.is_empty() {
            continue;
        }
        // Names compare case-insensitively, as directories do.
        buf.push(b'a');
        length(&mut buf, name.as_str().len());
        buf.extend(name.as_str().bytes().map(|b| b.to_ascii_lowercase()));
        if let [v] = vs.as_slice() {
            // One value (most attributes): no set to order.
            buf.push(b'1');
            value_into(&mut buf, v);
            continue;
        }
        set.clear();
        set.extend(vs.iter().map(|v| {
            one.clear();
            value_into(&mut one, v);
            *blake3::hash(&one).as_bytes()
        }));
        set.sort_unstable();
        set.dedup();
        if set.len() == 1 {
            // Duplicates of one value are that value.
            buf.push(b'1');
            value_into(&mut buf, &vs[0]);
            continue;
        }
        buf.push(b'*');
        length(&mut buf, set.len());
        for d in &set {
            buf.extend_from_slice(d);
        }
    }
    *blake3::hash(&buf).as_bytes()
}

/// A length as LEB128: one byte below 128, so short fields cost two bytes of framing, not nine
/// (the digest hashes fewer blocks); the encoding stays prefix-free.
fn length(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn field(buf: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    buf.push(tag);
    length(buf, bytes.len());
    buf.extend_from_slice(bytes);
}

/// Writes a value so that values with equal comparison keys ([`Value::compare_key`]) write the
/// same bytes.
fn value_into(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => field(buf, b's', s.as_bytes()),
        Value::Integer(i) => field(buf, b'i', &i.to_le_bytes()),
        Value::Boolean(b) => field(buf, b'b', &(*b as i64).to_le_bytes()),
        Value::Timestamp(t) => field(buf, b't', &t.to_le_bytes()),
        Value::Binary(b) => field(buf, b'h', &b.hash.0),
        Value::Reference(Reference::Dn(d)) => field(buf, b'd', d.normalized().as_bytes()),
        Value::Reference(Reference::Mv(m)) => field(buf, b'm', m.as_str().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff_attributes;
    use proptest::prelude::*;

    fn attrs(pairs: &[(&str, Vec<Value>)]) -> Attributes {
        let mut a = Attributes::new();
        for (n, v) in pairs {
            a.set(*n, v.clone());
        }
        a
    }

    #[test]
    fn order_duplicates_and_empty_attributes_are_not_changes() {
        let dn = Dn::new("uid=a,dc=x");
        let a = attrs(&[("mail", vec!["a@x".into(), "b@x".into()])]);
        let b = attrs(&[
            ("mail", vec!["b@x".into(), "a@x".into(), "a@x".into()]),
            ("title", vec![]),
        ]);
        assert!(diff_attributes(&a, &b).is_empty());
        assert_eq!(
            content_digest(&dn, "person", &[], &a),
            content_digest(&dn, "person", &[], &b)
        );
    }

    #[test]
    fn identifier_type_classes_and_values_are_changes() {
        let dn = Dn::new("uid=a,dc=x");
        let a = attrs(&[("mail", vec!["a@x".into()])]);
        let base = content_digest(&dn, "person", &["top".into()], &a);
        assert_ne!(
            base,
            content_digest(&Dn::new("uid=A,dc=x"), "person", &["top".into()], &a)
        );
        assert_ne!(base, content_digest(&dn, "group", &["top".into()], &a));
        assert_ne!(base, content_digest(&dn, "person", &[], &a));
        let b = attrs(&[("mail", vec!["A@x".into()])]);
        assert_ne!(base, content_digest(&dn, "person", &["top".into()], &b));
        // The same text under another attribute, or as another type, is a change.
        let c = attrs(&[("cn", vec!["a@x".into()])]);
        let upper = attrs(&[("MAIL", vec!["a@x".into()])]);
        assert_eq!(base, content_digest(&dn, "person", &["top".into()], &upper));
        assert_ne!(base, content_digest(&dn, "person", &["top".into()], &c));
        let d = attrs(&[(
            "mail",
            vec![Value::Reference(Reference::Dn(Dn::new("a@x")))],
        )]);
        assert_ne!(base, content_digest(&dn, "person", &["top".into()], &d));
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[a-cA-C]{0,3}".prop_map(Value::String),
            (0i64..4).prop_map(Value::Integer),
            any::<bool>().prop_map(Value::Boolean),
            "(cn=[a-bA-B]{1,2},dc=x)".prop_map(|s| Value::Reference(Reference::Dn(Dn::new(s)))),
        ]
    }

    fn attributes() -> impl Strategy<Value = Attributes> {
        proptest::collection::btree_map("[abAB]", proptest::collection::vec(value(), 0..4), 0..3)
            .prop_map(|m| {
                let mut a = Attributes::new();
                for (k, v) in m {
                    a.set(k.as_str(), v);
                }
                a
            })
    }

    proptest! {
        /// Equal digests exactly when the diff finds nothing.
        #[test]
        fn digest_equality_is_diff_emptiness(a in attributes(), b in attributes()) {
            let dn = Dn::new("uid=a,dc=x");
            let same = content_digest(&dn, "t", &[], &a) == content_digest(&dn, "t", &[], &b);
            prop_assert_eq!(same, diff_attributes(&a, &b).is_empty());
        }
    }
}

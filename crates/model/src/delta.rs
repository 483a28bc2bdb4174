//! Attribute-level deltas: what changed between two states of an object, value by value.
//!
//! A multi-valued attribute that gains or loses one value yields an `Update` naming only that
//! value, so a group of 100,000 members that gains one is one added value, not 100,001.

use crate::attrs::{AttributeName, Attributes};
use crate::value::{Value, ValueKey};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeChange {
    /// The attribute's values become exactly these; an empty list removes the attribute.
    Replace(Vec<Value>),
    /// Value-level change of a multi-valued attribute.
    Update { add: Vec<Value>, remove: Vec<Value> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeDelta {
    pub name: AttributeName,
    pub change: AttributeChange,
}

fn keys(values: &[Value]) -> HashSet<ValueKey> {
    values.iter().map(Value::compare_key).collect()
}

/// The deltas that turn `old` into `new`. Values are compared as sets by content; the order of a
/// multi-valued attribute's values is not a change.
pub fn diff_attributes(old: &Attributes, new: &Attributes) -> Vec<AttributeDelta> {
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&AttributeName> =
        old.names().chain(new.names()).collect();
    for name in names {
        let before = old.get_name(name).unwrap_or(&[]);
        let after = new.get_name(name).unwrap_or(&[]);
        let kb = keys(before);
        let ka = keys(after);
        if kb == ka {
            continue;
        }
        let change = if before.len() <= 1 && after.len() <= 1 {
            AttributeChange::Replace(dedup(after))
        } else {
            let add = dedup_filter(after, |k| !kb.contains(k));
            let remove = dedup_filter(before, |k| !ka.contains(k));
            AttributeChange::Update { add, remove }
        };
        out.push(AttributeDelta {
            name: name.clone(),
            change,
        });
    }
    out
}

fn dedup(values: &[Value]) -> Vec<Value> {
    dedup_filter(values, |_| true)
}

fn dedup_filter(values: &[Value], keep: impl Fn(&ValueKey) -> bool) -> Vec<Value> {
    let mut seen = HashSet::new();
    values
        .iter()
        .filter(|v| {
            let k = v.compare_key();
            keep(&k) && seen.insert(k)
        })
        .cloned()
        .collect()
}

/// Applies deltas to an attribute set. Adding a value already present and removing one that is
/// absent are no-ops, so applying the same delta twice gives the same result as applying it once.
pub fn apply_delta(attrs: &mut Attributes, deltas: &[AttributeDelta]) {
    for d in deltas {
        match &d.change {
            AttributeChange::Replace(values) => attrs.set(d.name.clone(), dedup(values)),
            AttributeChange::Update { add, remove } => {
                let removed = keys(remove);
                let mut current: Vec<Value> = attrs
                    .get_name(&d.name)
                    .unwrap_or(&[])
                    .iter()
                    .filter(|v| !removed.contains(&v.compare_key()))
                    .cloned()
                    .collect();
                let mut present = keys(&current);
                for v in add {
                    if present.insert(v.compare_key()) {
                        current.push(v.clone());
                    }
                }
                attrs.set(d.name.clone(), current);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Blob, Reference};
    use crate::Dn;
    use proptest::prelude::*;

    fn attrs(pairs: &[(&str, &[&str])]) -> Attributes {
        let mut a = Attributes::new();
        for (k, vs) in pairs {
            a.set(*k, vs.iter().map(|v| Value::from(*v)).collect());
        }
        a
    }

    #[test]
    fn one_member_added_is_one_value() {
        let old = attrs(&[("member", &["a", "b", "c"])]);
        let new = attrs(&[("member", &["a", "b", "c", "d"])]);
        let d = diff_attributes(&old, &new);
        assert_eq!(
            d,
            vec![AttributeDelta {
                name: "member".into(),
                change: AttributeChange::Update {
                    add: vec!["d".into()],
                    remove: vec![]
                }
            }]
        );
    }

    #[test]
    fn order_is_not_a_change_and_names_ignore_case() {
        let old = attrs(&[("Mail", &["x", "y"])]);
        let new = attrs(&[("mail", &["y", "x"])]);
        assert!(diff_attributes(&old, &new).is_empty());
    }

    #[test]
    fn single_valued_change_is_replace() {
        let old = attrs(&[("title", &["Engineer"])]);
        let new = attrs(&[]);
        assert_eq!(
            diff_attributes(&old, &new)[0].change,
            AttributeChange::Replace(vec![])
        );
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[a-c]{0,2}".prop_map(Value::String),
            (0i64..4).prop_map(Value::Integer),
            any::<bool>().prop_map(Value::Boolean),
            (0i64..3).prop_map(Value::Timestamp),
            proptest::collection::vec(0u8..3, 0..3)
                .prop_map(|b| Value::Binary(Blob::from_bytes(b))),
            "[AB]{1,2}".prop_map(|s| Value::Reference(Reference::Dn(Dn::new(format!("cn={s}"))))),
        ]
    }

    fn arb_attrs() -> impl Strategy<Value = Attributes> {
        proptest::collection::btree_map("[a-d]", proptest::collection::vec(arb_value(), 0..5), 0..4)
            .prop_map(|m| {
                m.into_iter()
                    .map(|(k, v)| (AttributeName::from(k), dedup(&v)))
                    .collect()
            })
    }

    fn canonical(a: &Attributes) -> Vec<(String, Vec<ValueKey>)> {
        a.iter()
            .map(|(k, v)| {
                let mut ks: Vec<ValueKey> = v.iter().map(Value::compare_key).collect();
                ks.sort();
                (k.key(), ks)
            })
            .collect()
    }

    proptest! {
        /// A computed delta applied to the old object gives the new one, and applying it twice
        /// changes nothing more.
        #[test]
        fn delta_applied_to_old_gives_new(old in arb_attrs(), new in arb_attrs()) {
            let d = diff_attributes(&old, &new);
            let mut got = old.clone();
            apply_delta(&mut got, &d);
            prop_assert_eq!(canonical(&got), canonical(&new));
            apply_delta(&mut got, &d);
            prop_assert_eq!(canonical(&got), canonical(&new));
            prop_assert!(diff_attributes(&got, &new).is_empty());
        }
    }
}

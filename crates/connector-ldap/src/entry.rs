//! From the server's search entries to connector-space entries, without I/O: the part of an
//! import that can run on the connection's thread, a page ahead of the thread that stores.
//!
//! [`RawEntry`] takes an entry's values out of the decoded message without copying them (and
//! without `ldap3`'s `expect`s on malformed input); [`Shape`] holds what the conversion needs
//! from the settings and the schema, and reports what it finds wrong as [`Note`]s, which the
//! storing thread hands to the engine's sink.

use crate::{base_name, Profile, ACCOUNT_DISABLED};
use idsync_connectors::{AttributeTypes, ImportSink, TypeHint};
use idsync_model::{Anchor, AttributeName, Attributes, CsEntry, Dn, Value};
use ldap3::asn1::{StructureTag, PL};
use ldap3::{ResultEntry, SearchEntry};
use std::cell::RefCell;

/// An entry as the server sent it: its DN and its attributes with their raw values, in order.
pub(crate) struct RawEntry {
    pub dn: String,
    pub attrs: Vec<(String, Vec<Vec<u8>>)>,
}

fn octets(t: StructureTag, what: &str) -> Result<Vec<u8>, String> {
    match t.payload {
        PL::P(v) => Ok(v),
        PL::C(_) => Err(format!("{what} is not an octet string")),
    }
}

fn children(t: StructureTag, what: &str) -> Result<Vec<StructureTag>, String> {
    match t.payload {
        PL::C(v) => Ok(v),
        PL::P(_) => Err(format!("{what} is not a sequence")),
    }
}

impl RawEntry {
    /// The SearchResultEntry's DN and attributes, moved out of the message. Malformed input
    /// is an error naming what was wrong, not a panic.
    pub fn from_result(re: ResultEntry) -> Result<RawEntry, String> {
        let bad = |m: String| format!("malformed search entry from the server: {m}");
        if re.0.id != 4 {
            return Err(bad(format!("application tag {} instead of 4", re.0.id)));
        }
        let mut parts = children(re.0, "the entry").map_err(bad)?.into_iter();
        let dn = parts
            .next()
            .ok_or_else(|| bad("no DN".to_owned()))
            .and_then(|t| octets(t, "the DN").map_err(bad))?;
        let dn = String::from_utf8(dn).map_err(|_| bad("the DN is not UTF-8".to_owned()))?;
        let list = match parts.next() {
            Some(t) => children(t, "the attribute list").map_err(|m| bad(format!("{dn}: {m}")))?,
            None => Vec::new(),
        };
        let mut attrs = Vec::with_capacity(list.len());
        for a in list {
            let mut pa = children(a, "an attribute")
                .map_err(|m| bad(format!("{dn}: {m}")))?
                .into_iter();
            let name = pa
                .next()
                .ok_or_else(|| "an attribute without a type".to_owned())
                .and_then(|t| octets(t, "an attribute type"))
                .and_then(|n| {
                    String::from_utf8(n).map_err(|_| "an attribute type is not UTF-8".to_owned())
                })
                .map_err(|m| bad(format!("{dn}: {m}")))?;
            let values = match pa.next() {
                Some(t) => children(t, "the values")
                    .and_then(|vs| {
                        vs.into_iter()
                            .map(|v| octets(v, "a value"))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(|m| bad(format!("{dn}, attribute {name}: {m}")))?,
                None => Vec::new(),
            };
            attrs.push((name, values));
        }
        Ok(RawEntry { dn, attrs })
    }

    /// An entry `ldap3` already decoded (the Active Directory paths, which complete ranged
    /// attributes on it first).
    pub fn from_search(e: SearchEntry) -> RawEntry {
        let text = e.attrs.into_iter().map(|(k, v)| {
            let v: Vec<Vec<u8>> = v.into_iter().map(String::into_bytes).collect();
            (k, v)
        });
        RawEntry {
            dn: e.dn,
            attrs: text.chain(e.bin_attrs).collect(),
        }
    }
}

/// Something the conversion found, for the engine's sink.
#[derive(Debug)]
pub(crate) enum Note {
    /// A value kept as text, a missing anchor: the place and the message.
    Error(String, String),
    /// An entry deliberately not delivered (its DN), counted under the reason.
    Filtered(String, &'static str),
}

/// Where the conversion's notes go: straight to the sink, or collected on the reader's thread.
pub(crate) trait Notes {
    fn note(&mut self, n: Note);
}

impl Notes for Vec<Note> {
    fn note(&mut self, n: Note) {
        self.push(n);
    }
}

/// The engine's sink as the notes' destination.
pub(crate) struct ToSink<'a>(pub &'a mut dyn ImportSink);

impl Notes for ToSink<'_> {
    fn note(&mut self, n: Note) {
        deliver(n, self.0);
    }
}

/// Hands one note to the sink.
pub(crate) fn deliver(n: Note, sink: &mut dyn ImportSink) {
    match n {
        Note::Error(place, message) => sink.object_error(place, message),
        Note::Filtered(dn, reason) => sink.filtered(&Dn::new(dn), reason),
    }
}

/// What an attribute name means to the conversion, worked out once per name.
#[derive(Debug, Clone, Copy)]
struct Role {
    object_class: bool,
    modify_timestamp: bool,
    anchor: bool,
    user_account_control: bool,
    /// A secret the AD profile never imports.
    secret: bool,
    wanted: bool,
    hint: TypeHint,
}

/// What turning an entry into a connector-space entry needs: the dialect, the anchor, the
/// attributes asked for and their types. Cloned into the paged search's reader.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub profile: Profile,
    pub anchor: String,
    /// The configured attributes (empty: all user attributes).
    pub attributes: Vec<String>,
    /// Whether modifyTimestamp was given a type (then it is an attribute like any other).
    pub modify_timestamp_typed: bool,
    pub types: AttributeTypes,
    /// Each attribute name seen (as the server spells it, options stripped) with its role: a
    /// server repeats the same few names in every entry.
    roles: RefCell<Vec<(String, Role)>>,
}

/// The most names [`Shape`] remembers (a directory with more is served, just not memoised).
const MAX_ROLES: usize = 256;

impl Shape {
    pub fn new(
        profile: Profile,
        anchor: String,
        attributes: Vec<String>,
        modify_timestamp_typed: bool,
        types: AttributeTypes,
    ) -> Shape {
        Shape {
            profile,
            anchor,
            attributes,
            modify_timestamp_typed,
            types,
            roles: RefCell::new(Vec::new()),
        }
    }

    /// The key of this conversion's wire digests ([`idsync_model::wire_key`]): the dialect,
    /// anchor, attributes and types, and this crate's version. `None` when a type reads files
    /// (their content can change behind the same bytes).
    pub fn wire_key(&self) -> Option<[u8; 32]> {
        if self.types.reads_files() {
            return None;
        }
        let material = format!(
            "idsync-connector-ldap {}\0{:?}\0{}\0{:?}\0{}\0{}",
            env!("CARGO_PKG_VERSION"),
            self.profile,
            self.anchor,
            self.attributes,
            self.modify_timestamp_typed,
            self.types.canonical()
        );
        Some(idsync_model::wire_key(material.as_bytes()))
    }

    /// Replaces the attribute types (the server's schema was read).
    pub fn set_types(&mut self, types: AttributeTypes) {
        self.types = types;
        self.roles.borrow_mut().clear();
    }

    /// Whether the user asked for this attribute (the connector also reads a few for itself).
    pub fn wanted(&self, name: &str) -> bool {
        if self.attributes.is_empty() {
            return !name.eq_ignore_ascii_case("modifyTimestamp") || self.modify_timestamp_typed;
        }
        self.attributes
            .iter()
            .any(|a| base_name(a).eq_ignore_ascii_case(name))
            || name.eq_ignore_ascii_case(&self.anchor)
    }

    fn role(&self, name: &str) -> Role {
        if let Some((_, r)) = self.roles.borrow().iter().find(|(n, _)| n == name) {
            return *r;
        }
        let ad = self.profile == Profile::ActiveDirectory;
        let r = Role {
            object_class: name.eq_ignore_ascii_case("objectClass"),
            modify_timestamp: name.eq_ignore_ascii_case("modifyTimestamp"),
            anchor: name.eq_ignore_ascii_case(&self.anchor),
            user_account_control: ad && name.eq_ignore_ascii_case("userAccountControl"),
            secret: ad && idsync_ad_proto::is_secret_attribute(name),
            wanted: self.wanted(name),
            hint: self.types.hint(name),
        };
        let mut roles = self.roles.borrow_mut();
        if roles.len() < MAX_ROLES {
            roles.push((name.to_owned(), r));
        }
        r
    }

    /// Values typed by the schema's (or the settings') type; a value the type does not fit is
    /// kept as text and noted on the object.
    pub fn typed_values(
        &self,
        dn: &str,
        name: &str,
        values: Vec<Vec<u8>>,
        notes: &mut dyn Notes,
    ) -> Vec<Value> {
        self.typed(dn, name, self.role(name).hint, values, notes)
    }

    fn typed(
        &self,
        dn: &str,
        name: &str,
        hint: TypeHint,
        values: Vec<Vec<u8>>,
        notes: &mut dyn Notes,
    ) -> Vec<Value> {
        let mut typed = Vec::with_capacity(values.len());
        for v in values {
            // Text, references and bytes are the common cases: no second pass over the bytes.
            let v = match hint {
                TypeHint::String | TypeHint::Reference => match String::from_utf8(v) {
                    Ok(t) if hint == TypeHint::String => {
                        typed.push(Value::String(t));
                        continue;
                    }
                    Ok(t) => {
                        typed.push(Value::Reference(idsync_model::Reference::Dn(Dn::new(t))));
                        continue;
                    }
                    Err(e) => e.into_bytes(),
                },
                TypeHint::Binary => {
                    typed.push(Value::Binary(idsync_model::Blob::from_bytes(v)));
                    continue;
                }
                _ => v,
            };
            let fallback = String::from_utf8_lossy(&v).into_owned();
            match self.types.from_bytes(name, v) {
                Ok(t) => typed.push(t),
                Err(m) => {
                    notes.note(Note::Error(
                        format!("{dn}, attribute {name}"),
                        format!("{m}; kept as text"),
                    ));
                    typed.push(Value::String(fallback));
                }
            }
        }
        typed
    }

    /// Turns an entry into a connector-space entry, with its modifyTimestamp. `None` when the
    /// entry is not delivered (filtered, or without its anchor), with a note saying why.
    pub fn to_entry(
        &self,
        e: RawEntry,
        notes: &mut dyn Notes,
    ) -> Option<(CsEntry, Option<String>)> {
        let mut object_classes = Vec::new();
        let mut attributes = Attributes::new();
        let mut anchor = None;
        let mut modified = None;
        let mut uac = None;
        let ad = self.profile == Profile::ActiveDirectory;
        for (mut name, values) in e.attrs {
            if let Some(cut) = name.find(';') {
                name.truncate(cut);
            }
            let role = self.role(&name);
            if role.object_class {
                object_classes.extend(values.into_iter().map(|v| match String::from_utf8(v) {
                    Ok(t) => t,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                }));
                continue;
            }
            if role.modify_timestamp {
                modified = values
                    .first()
                    .map(|v| String::from_utf8_lossy(v).into_owned());
            }
            if role.anchor {
                anchor = values.first().map(|v| self.profile.anchor_text(v));
            }
            if role.user_account_control {
                uac = values
                    .first()
                    .map(|v| String::from_utf8_lossy(v).into_owned());
            }
            if role.secret || !role.wanted {
                continue;
            }
            let typed = self.typed(&e.dn, &name, role.hint, values, notes);
            attributes.set(AttributeName::new(name), typed);
        }
        if ad {
            if object_classes
                .iter()
                .any(|c| c.eq_ignore_ascii_case("computer"))
            {
                notes.note(Note::Filtered(
                    e.dn.clone(),
                    "computer account (the active-directory profile reads users, contacts and groups)",
                ));
                return None;
            }
            if let Some(u) = &uac {
                match idsync_ad_proto::uac_disabled(u) {
                    Some(d) => attributes.set(
                        AttributeName::from(ACCOUNT_DISABLED),
                        vec![Value::Boolean(d)],
                    ),
                    None => notes.note(Note::Error(
                        format!("{}, attribute userAccountControl", e.dn),
                        format!("`{u}` is not a number: {ACCOUNT_DISABLED} not set"),
                    )),
                }
            }
        }
        let Some(anchor) = anchor else {
            notes.note(Note::Error(
                e.dn.clone(),
                format!(
                    "no `{}` (the anchor) was returned: not imported",
                    self.anchor
                ),
            ));
            return None;
        };
        Some((
            CsEntry {
                anchor: Anchor::new(anchor),
                dn: Dn::new(e.dn),
                object_classes,
                attributes,
            },
            modified,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::TagClass;

    fn prim(id: u64, v: &[u8]) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id,
            payload: PL::P(v.to_vec()),
        }
    }

    fn seq(id: u64, class: TagClass, v: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class,
            id,
            payload: PL::C(v),
        }
    }

    fn attr(name: &str, values: &[&[u8]]) -> StructureTag {
        seq(
            16,
            TagClass::Universal,
            vec![
                prim(4, name.as_bytes()),
                seq(
                    17,
                    TagClass::Universal,
                    values.iter().map(|v| prim(4, v)).collect(),
                ),
            ],
        )
    }

    fn shape() -> Shape {
        Shape::new(
            Profile::Openldap,
            "entryUUID".to_owned(),
            vec![],
            false,
            AttributeTypes::new(&Default::default()),
        )
    }

    #[test]
    fn an_entry_is_moved_out_of_the_message_and_typed() {
        let msg = seq(
            4,
            TagClass::Application,
            vec![
                prim(4, b"uid=a,dc=x"),
                seq(
                    16,
                    TagClass::Universal,
                    vec![
                        attr("objectClass", &[b"top", b"inetOrgPerson"]),
                        attr("entryUUID", &[b"u-1"]),
                        attr("cn", &[b"A", b"B"]),
                        attr("manager", &[b"uid=b,dc=x"]),
                        attr("jpegPhoto;binary", &[&[0xff, 0xd8, 0x00]]),
                        attr("modifyTimestamp", &[b"20260101000000Z"]),
                    ],
                ),
            ],
        );
        let raw = RawEntry::from_result(ResultEntry::new(msg)).unwrap();
        let mut notes = Vec::new();
        let (e, modified) = shape().to_entry(raw, &mut notes).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(modified.as_deref(), Some("20260101000000Z"));
        assert_eq!(e.anchor.as_str(), "u-1");
        assert_eq!(e.object_classes, ["top", "inetOrgPerson"]);
        let get = |n: &str| e.attributes.get(n).unwrap().to_vec();
        assert_eq!(
            get("cn"),
            [Value::String("A".into()), Value::String("B".into())]
        );
        assert!(matches!(get("manager")[0], Value::Reference(_)));
        assert!(matches!(get("jpegPhoto")[0], Value::Binary(_)));
        assert!(e.attributes.get("modifyTimestamp").is_none());
    }

    #[test]
    fn malformed_entries_are_errors_not_panics() {
        let not_an_entry = prim(4, b"x");
        assert!(RawEntry::from_result(ResultEntry::new(not_an_entry)).is_err());
        let primitive_list = seq(
            4,
            TagClass::Application,
            vec![prim(4, b"uid=a"), prim(4, b"oops")],
        );
        let err = RawEntry::from_result(ResultEntry::new(primitive_list))
            .err()
            .unwrap();
        assert!(err.contains("uid=a"), "{err}");
    }

    #[test]
    fn an_entry_without_its_anchor_is_noted() {
        let raw = RawEntry {
            dn: "uid=a".into(),
            attrs: vec![("cn".into(), vec![b"A".to_vec()])],
        };
        let mut notes = Vec::new();
        assert!(shape().to_entry(raw, &mut notes).is_none());
        assert!(matches!(&notes[..], [Note::Error(p, m)] if p == "uid=a" && m.contains("anchor")));
    }
}

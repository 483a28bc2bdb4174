//! The server's schema, read from its subschema subentry (RFC 4512): each attribute type's
//! syntax (binary, DN-valued, integer, boolean, time or text, following `SUP` chains), whether
//! it is single-valued, and the object classes the server knows.

use idsync_connectors::TypeHint;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, Default)]
struct AttrDef {
    names: Vec<String>,
    sup: Option<String>,
    syntax: Option<String>,
    single: bool,
}

/// What the connector knows of the server's schema.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Lower-cased attribute name → (type hint, single-valued).
    attrs: HashMap<String, (TypeHint, bool)>,
    /// Lower-cased object class names.
    classes: HashSet<String>,
}

/// The type an LDAP syntax OID (RFC 4517 and the usual extensions) is read as.
fn hint_of_syntax(oid: &str) -> TypeHint {
    // A syntax may carry a length bound: `1.3.6.1.4.1.1466.115.121.1.15{256}`.
    let oid = oid.split('{').next().unwrap_or(oid);
    match oid.strip_prefix("1.3.6.1.4.1.1466.115.121.1.") {
        // DN, Name and Optional UID (uniqueMember).
        Some("12") | Some("34") => TypeHint::Reference,
        // Binary, Certificate, Certificate List, Certificate Pair, JPEG, Octet String, Fax,
        // Audio.
        Some("5") | Some("8") | Some("9") | Some("10") | Some("28") | Some("40") | Some("23")
        | Some("4") => TypeHint::Binary,
        Some("27") => TypeHint::Integer,
        Some("7") => TypeHint::Boolean,
        Some("24") => TypeHint::Timestamp,
        _ => TypeHint::String,
    }
}

/// Splits a schema description into tokens: `(`, `)`, quoted strings (without quotes) and
/// bare words.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '(' | ')' => {
                out.push(c.to_string());
                chars.next();
            }
            '\'' => {
                chars.next();
                let mut t = String::new();
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    t.push(c);
                }
                out.push(t);
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            _ => {
                let mut t = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || c == '\'' {
                        break;
                    }
                    t.push(c);
                    chars.next();
                }
                out.push(t);
            }
        }
    }
    out
}

const FLAGS: &[&str] = &[
    "SINGLE-VALUE",
    "COLLECTIVE",
    "NO-USER-MODIFICATION",
    "OBSOLETE",
    "ABSTRACT",
    "STRUCTURAL",
    "AUXILIARY",
];

/// Parses one description into keyword → values (a flag maps to no values).
fn parse_description(s: &str) -> BTreeMap<String, Vec<String>> {
    let t = tokens(s);
    let mut out = BTreeMap::new();
    // Skip the opening parenthesis and the OID.
    let mut i = 2;
    while i < t.len() {
        let key = t[i].clone();
        i += 1;
        if key == ")" {
            break;
        }
        if FLAGS.contains(&key.as_str()) {
            out.insert(key, vec![]);
            continue;
        }
        let mut values = Vec::new();
        if t.get(i).map(String::as_str) == Some("(") {
            i += 1;
            while i < t.len() && t[i] != ")" {
                if t[i] != "$" {
                    values.push(t[i].clone());
                }
                i += 1;
            }
            i += 1;
        } else if let Some(v) = t.get(i) {
            values.push(v.clone());
            i += 1;
        }
        out.insert(key, values);
    }
    out
}

impl Schema {
    /// Builds the schema from the subschema subentry's `attributeTypes` and `objectClasses`.
    pub fn parse<'a>(
        attribute_types: impl IntoIterator<Item = &'a str>,
        object_classes: impl IntoIterator<Item = &'a str>,
    ) -> Schema {
        let mut defs: HashMap<String, AttrDef> = HashMap::new();
        for d in attribute_types {
            let p = parse_description(d);
            let def = AttrDef {
                names: p.get("NAME").cloned().unwrap_or_default(),
                sup: p.get("SUP").and_then(|v| v.first()).cloned(),
                syntax: p.get("SYNTAX").and_then(|v| v.first()).cloned(),
                single: p.contains_key("SINGLE-VALUE"),
            };
            for n in &def.names {
                defs.insert(n.to_ascii_lowercase(), def.clone());
            }
        }
        let mut attrs = HashMap::new();
        for (name, def) in &defs {
            // The syntax is inherited from the supertype when not given (bounded walk: a
            // broken schema with a cycle must not hang the connector).
            let mut syntax = def.syntax.clone();
            let mut sup = def.sup.clone();
            let mut hops = 0;
            while syntax.is_none() && hops < 16 {
                let Some(s) = sup.take() else { break };
                let parent = defs.get(&s.to_ascii_lowercase());
                syntax = parent.and_then(|p| p.syntax.clone());
                sup = parent.and_then(|p| p.sup.clone());
                hops += 1;
            }
            let hint = syntax.as_deref().map_or(TypeHint::String, hint_of_syntax);
            attrs.insert(name.clone(), (hint, def.single));
        }
        let mut classes = HashSet::new();
        for d in object_classes {
            for n in parse_description(d).remove("NAME").unwrap_or_default() {
                classes.insert(n.to_ascii_lowercase());
            }
        }
        Schema { attrs, classes }
    }

    /// The type hint of every attribute the schema defines, for `AttributeTypes`.
    pub fn hints(&self) -> BTreeMap<String, TypeHint> {
        self.attrs
            .iter()
            .map(|(k, (h, _))| (k.clone(), *h))
            .collect()
    }

    pub fn knows_attribute(&self, name: &str) -> bool {
        self.attrs.contains_key(&name.to_ascii_lowercase())
    }

    pub fn single_valued(&self, name: &str) -> bool {
        self.attrs
            .get(&name.to_ascii_lowercase())
            .is_some_and(|(_, s)| *s)
    }

    pub fn knows_class(&self, name: &str) -> bool {
        self.classes.contains(&name.to_ascii_lowercase())
    }

    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntaxes_follow_sup_chains() {
        let s = Schema::parse(
            [
                "( 2.5.4.41 NAME 'name' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32768} )",
                "( 2.5.4.3 NAME ( 'cn' 'commonName' ) DESC 'RFC4519: common name(s) for which the entity is known by' SUP name )",
                "( 0.9.2342.19200300.100.1.10 NAME 'manager' EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )",
                "( 0.9.2342.19200300.100.1.60 NAME 'jpegPhoto' DESC 'RFC2798: a JPEG image' SYNTAX 1.3.6.1.4.1.1466.115.121.1.28 )",
                "( 1.3.6.1.1.1.1.0 NAME 'uidNumber' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )",
            ],
            ["( 2.16.840.1.113730.3.2.2 NAME 'inetOrgPerson' SUP organizationalPerson STRUCTURAL MAY ( audio $ businessCategory ) )"],
        );
        let h = s.hints();
        assert_eq!(h["commonname"], TypeHint::String);
        assert_eq!(h["manager"], TypeHint::Reference);
        assert_eq!(h["jpegphoto"], TypeHint::Binary);
        assert_eq!(h["uidnumber"], TypeHint::Integer);
        assert!(s.single_valued("uidNumber"));
        assert!(!s.single_valued("cn"));
        assert!(s.knows_class("InetOrgPerson"));
    }
}

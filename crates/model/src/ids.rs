//! Identity newtypes. Each wraps a string so an anchor can never be passed where a DN is meant.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// The immutable identifier of an object in its connected system (entryUUID, objectGUID, a
    /// primary key). Compared exactly: anchors are opaque.
    Anchor
);
string_id!(
    /// The name of a connector as configured.
    ConnectorId
);
string_id!(
    /// The name of an object type (person, group), in a connector or in the metaverse.
    ObjectTypeName
);
string_id!(
    /// A metaverse object's identifier, assigned by idsync.
    MvId
);
string_id!(
    /// A connector-space object's identifier, assigned by idsync. Distinct from the anchor because
    /// an object provisioned by idsync has no anchor until its confirming import.
    CsId
);

/// A run's identifier: runs are numbered in the order they start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a connected system spells its identifiers, so an identifier template escapes values
/// only where the syntax needs it: an LDAP or AD distinguished name escapes by RFC 4514, a
/// SCIM `userName`, a table key or a file's key column takes the value exactly as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentifierSyntax {
    /// An RFC 4514 distinguished name.
    #[default]
    Dn,
    /// A plain string, used as it is.
    Plain,
}

/// The changeable identifier of an object in its connected system: an LDAP distinguished name,
/// or the key a file or table names its rows by.
///
/// Two DNs are equal when they differ only in letter case or in spaces around the separators,
/// which is how directories compare them for the attribute types idsync names objects by.
/// Parsing a DN into RDNs with RFC 4514 escaping belongs to the LDAP connector, not here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Dn(String);

impl Dn {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The comparison key: for a DN, its RFC 4514 form with one spelling per DN (attribute
    /// types and values in lower case, each value unescaped and escaped again the one way
    /// [`escape_rdn_value`] does, so `\,`, `\2C` and `"a,b"` are one key; the attribute-value
    /// pairs of a multi-valued RDN sorted; spaces around separators dropped). An identifier that
    /// is not a DN (a `userName`, a table key) is only lower-cased and trimmed.
    pub fn normalized(&self) -> String {
        dn_key(&self.0)
            .unwrap_or_else(|| self.0.trim().chars().flat_map(char::to_lowercase).collect())
    }
}

/// Escapes a value for use as an RDN value (RFC 4514 section 2.4): `"+,;<>\=` and NUL
/// anywhere, `#` or a space at the start, a space at the end. Non-ASCII stays as UTF-8.
pub fn escape_rdn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 4);
    let n = v.chars().count();
    for (i, c) in v.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i + 1 == n => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

/// The RFC 4514 key of a DN, `None` when `s` is not a DN (a part without `type=`, a bad
/// escape, a type that is not a descriptor or an OID).
fn dn_key(s: &str) -> Option<String> {
    let b = s.trim().as_bytes();
    if b.is_empty() {
        return None;
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut rdns: Vec<Vec<(String, String)>> = vec![Vec::new()];
    let mut i = 0;
    loop {
        // The attribute type.
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        if i == b.len() {
            return None;
        }
        let ty = std::str::from_utf8(&b[start..i]).ok()?.trim_end();
        let ty = ty
            .strip_prefix("oid.")
            .or_else(|| ty.strip_prefix("OID."))
            .unwrap_or(ty);
        if ty.is_empty()
            || !ty
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
        {
            return None;
        }
        i += 1;
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        // The value.
        let mut v: Vec<u8> = Vec::new();
        let mut hex_form = false;
        if i < b.len() && b[i] == b'#' {
            hex_form = true;
            while i < b.len() && !matches!(b[i], b',' | b';' | b'+') {
                v.push(b[i]);
                i += 1;
            }
            while v.last() == Some(&b' ') {
                v.pop();
            }
        } else if i < b.len() && b[i] == b'"' {
            i += 1;
            loop {
                match b.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        let c = *b.get(i + 1)?;
                        if let (Some(h), Some(l)) = (hex(c), b.get(i + 2).and_then(|&c| hex(c))) {
                            v.push(h * 16 + l);
                            i += 3;
                        } else {
                            v.push(c);
                            i += 2;
                        }
                    }
                    &c => {
                        v.push(c);
                        i += 1;
                    }
                }
            }
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
        } else {
            // Unescaped trailing spaces are not part of the value; escaped ones are.
            let mut significant = 0;
            while i < b.len() && !matches!(b[i], b',' | b';' | b'+') {
                if b[i] == b'\\' {
                    let c = *b.get(i + 1)?;
                    if let (Some(h), Some(l)) = (hex(c), b.get(i + 2).and_then(|&c| hex(c))) {
                        v.push(h * 16 + l);
                        i += 3;
                    } else {
                        v.push(c);
                        i += 2;
                    }
                    significant = v.len();
                } else {
                    v.push(b[i]);
                    if b[i] != b' ' {
                        significant = v.len();
                    }
                    i += 1;
                }
            }
            v.truncate(significant);
        }
        let v = String::from_utf8(v).ok()?.to_lowercase();
        let v = if hex_form { v } else { escape_rdn_value(&v) };
        rdns.last_mut()?.push((ty.to_ascii_lowercase(), v));
        match b.get(i) {
            None => break,
            Some(b'+') => {}
            Some(b',' | b';') => rdns.push(Vec::new()),
            Some(_) => return None,
        }
        i += 1;
    }
    let mut out = String::with_capacity(s.len());
    for (n, rdn) in rdns.iter_mut().enumerate() {
        rdn.sort();
        if n > 0 {
            out.push(',');
        }
        for (k, (ty, v)) in rdn.iter().enumerate() {
            if k > 0 {
                out.push('+');
            }
            out.push_str(ty);
            out.push('=');
            out.push_str(v);
        }
    }
    Some(out)
}

impl PartialEq for Dn {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || self.normalized() == other.normalized()
    }
}
impl Eq for Dn {}

impl std::hash::Hash for Dn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.normalized().hash(state)
    }
}

impl PartialOrd for Dn {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Dn {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.normalized().cmp(&other.normalized())
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Dn {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_compares_case_and_space_insensitively() {
        assert_eq!(
            Dn::from("uid=Ann, ou=People,dc=example"),
            Dn::from("UID=ann,ou=people,DC=example")
        );
        assert_ne!(
            Dn::from("uid=ann,ou=people"),
            Dn::from("uid=anne,ou=people")
        );
        // An escaped comma is part of the value, not a separator.
        assert_eq!(
            Dn::from(r"cn=Smith\, John,dc=x").normalized(),
            r"cn=smith\, john,dc=x"
        );
    }

    #[test]
    fn dn_equality_follows_rfc_4514() {
        let same = [
            (
                r"uid=comma\,plus\+x,ou=Staff",
                r"UID=comma\2Cplus\2bx, OU=staff",
            ),
            (r"uid=comma\,x,ou=Staff", r#"uid="comma,x",ou=Staff"#),
            (r"uid=\#hash,ou=s", r"uid=\23hash,ou=s"),
            (r"uid=\ lead\ ,ou=s", r"uid=\20lead\20 ,ou=s"),
            (
                "uid=multi+cn=Multi Valued,ou=s",
                "cn=multi valued + uid=multi,ou=s",
            ),
            (
                "uid=Ångström 李,ou=s",
                r"uid=\C3\85ngstr\C3\B6m \E6\9D\8E,ou=s",
            ),
        ];
        for (a, b) in same {
            assert_eq!(Dn::from(a), Dn::from(b), "{a} / {b}");
            assert_eq!(Dn::from(a).normalized(), Dn::from(b).normalized());
        }
        let distinct = [
            (r"uid=a\,b,ou=s", "uid=a,b=x,ou=s"),
            (r"uid=a\+cn=b,ou=s", "uid=a+cn=b,ou=s"),
            (r"uid=\ x,ou=s", "uid=x,ou=s"),
            ("uid=a,ou=s", "uid=a,ou=t"),
        ];
        for (a, b) in distinct {
            assert_ne!(
                Dn::from(a).normalized(),
                Dn::from(b).normalized(),
                "{a} / {b}"
            );
        }
        // A plain identifier is not taken apart as a DN.
        assert_ne!(Dn::from("a+b").normalized(), Dn::from("b+a").normalized());
        assert_eq!(Dn::from("#Hash").normalized(), "#hash");
    }

    use proptest::prelude::*;

    /// An RDN value spelt another legal way: each character as it is (when that is legal),
    /// backslash-escaped, or as hex pairs of its UTF-8 bytes; the type in another case.
    fn respell(v: &str, choices: &[u8]) -> String {
        let n = v.chars().count();
        let mut out = String::new();
        for (i, c) in v.chars().enumerate() {
            let must = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' | '\0')
                || (i == 0 && matches!(c, '#' | ' '))
                || (i + 1 == n && c == ' ');
            match choices.get(i).copied().unwrap_or(0) % 3 {
                0 if !must => out.push(c),
                1 if c != '\0' && !c.is_alphanumeric() => {
                    out.push('\\');
                    out.push(c);
                }
                _ => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\{byte:02X}"));
                    }
                }
            }
        }
        out
    }

    fn value() -> impl Strategy<Value = String> {
        proptest::string::string_regex(r#"[a-zA-Z0-9 #,+"\\<>;=*()ÅöЖ李]{1,12}"#).unwrap()
    }

    proptest! {
        #[test]
        fn every_spelling_of_a_dn_gives_one_key_and_distinct_dns_never_do(
            a in value(),
            b in value(),
            c in value(),
            choices in proptest::collection::vec(any::<u8>(), 12),
            swap in any::<bool>(),
        ) {
            let plain = format!("uid={}+cn={},ou={},dc=test", escape_rdn_value(&a), escape_rdn_value(&b), escape_rdn_value(&c));
            let (first, second) = (format!("UID = {}", respell(&a, &choices)), format!("CN={}", respell(&b, &choices[3..])));
            let rdn = if swap { format!("{second}+{first}") } else { format!("{first}+{second}") };
            let other = format!("{rdn} , OU={},dc=TEST", respell(&c, &choices[6..]));
            prop_assert_eq!(Dn::from(plain.as_str()).normalized(), Dn::from(other.as_str()).normalized(), "{} / {}", plain, other);
            // Distinct values (compared as a case-insensitive directory does) give distinct keys.
            let changed = format!("uid={}+cn={},ou={},dc=test", escape_rdn_value(&format!("{a}x")), escape_rdn_value(&b), escape_rdn_value(&c));
            prop_assert_ne!(Dn::from(plain.as_str()).normalized(), Dn::from(changed.as_str()).normalized());
            if a.to_lowercase() != c.to_lowercase() {
                let moved = format!("uid={}+cn={},ou={},dc=test", escape_rdn_value(&c), escape_rdn_value(&b), escape_rdn_value(&a));
                prop_assert_ne!(Dn::from(plain.as_str()).normalized(), Dn::from(moved.as_str()).normalized());
            }
        }
    }
}

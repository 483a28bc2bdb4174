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
    /// The comparison form: lower case, no spaces after unescaped separators.
    pub fn normalized(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        let mut escaped = false;
        let mut skip_space = false;
        for c in self.0.trim().chars() {
            if skip_space && c == ' ' {
                continue;
            }
            skip_space = false;
            if !escaped && (c == ',' || c == '+' || c == '=') {
                while out.ends_with(' ') {
                    out.pop();
                }
                skip_space = true;
            }
            escaped = !escaped && c == '\\';
            if c.is_ascii() {
                out.push(c.to_ascii_lowercase());
            } else {
                out.extend(c.to_lowercase());
            }
        }
        out
    }
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
}

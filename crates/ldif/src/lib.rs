//! The RFC 2849 LDIF codec of idsync: it owns turning LDIF bytes into
//! [`Record`]s ([`Reader`]) and records back into LDIF bytes ([`Writer`]),
//! including folding, comments, base64 values, `control:` lines and every
//! change type (`add`, `delete`, `modify` with `add`/`delete`/`replace`/
//! `increment` blocks, `modrdn`/`moddn`). It does no file I/O of its own
//! except through a [`UrlResolver`] for `attr:< URL` values, which the caller
//! chooses (and [`NoUrlResolver`] refuses them all, which is the safe choice
//! for untrusted input). It must not know anything about the rest of idsync:
//! it does not interpret DNs, schemas or attribute semantics, it must never
//! panic on any input, and it must never read a whole input into memory (the
//! reader streams one record at a time and caps a logical line at
//! [`DEFAULT_MAX_LINE_LEN`] bytes).
//!
//! # Choices where RFC 2849 is loose
//!
//! * `version: 1` is optional; when present it must be the first non-comment
//!   line, and it may be followed either by a blank line (as the grammar
//!   says) or directly by the first record (as the RFC's own examples do).
//!   Any other version number is an error that stops the reader.
//! * A `modify` block's closing `-` line may be left out after the last
//!   block of a record, because OpenLDAP's `ldapmodify` and python-ldap both
//!   accept that; a missing `-` between two blocks is still an error (the
//!   next block header then shows up as a value line of the wrong attribute).
//!   The [`Writer`] always writes every `-`.
//! * Keywords (`dn`, `changetype`, `control`, `add`, `newrdn`, ...) and
//!   change type names are matched without regard to ASCII case, as OpenLDAP
//!   does; a modify block's value lines must name the block's attribute, also
//!   compared without regard to case.
//! * A plain value keeps its bytes exactly, except the spaces between the
//!   colon and the value (RFC `FILL`). Bytes the RFC does not allow in a
//!   `SAFE-STRING` (say a non-ASCII byte) are accepted as they are, since
//!   values are bytes; but the DN, `newrdn`, `newsuperior` and attribute
//!   names must be UTF-8, and so must every value of an attribute the caller
//!   does not call binary once it asks for that ([`Reader::with_text_check`]).
//! * A content record needs at least one attribute and an `add` record needs
//!   at least one attribute, as the grammar says; a `modify` record may have
//!   no blocks at all.
//! * `changetype: modrdn` and `changetype: moddn` both become
//!   [`ChangeKind::ModDn`]; the writer writes `modrdn`, which every tool
//!   knows.
//! * The writer base64-encodes everything [`needs_base64`] asks for and, to
//!   survive tools that trim whitespace, also any value holding another ASCII
//!   control character. It always writes a control's criticality, because
//!   OpenLDAP cannot read `control: 1.2.3: value` (it wants a space before
//!   the colon, which the RFC grammar does not allow), while
//!   `control: 1.2.3 false: value` suits both. It ends every record with a
//!   blank line, the last one included, as `ldapsearch` and python-ldap do.
//! * Base64 input may leave out its `=` padding; anything else outside the
//!   base64 alphabet is an error (RFC 2849 note 10).
//!
//! After a syntax error inside a record the reader skips to the next record,
//! so a caller may go on iterating to collect every error; after an I/O
//! error, an over-long line or a bad `version:` line it stops.

mod error;
mod reader;
mod syntax;
mod url;
mod writer;

pub use error::{Error, Result};
pub use reader::{Reader, DEFAULT_MAX_LINE_LEN};
pub use syntax::{is_valid_attribute_description, is_valid_oid, needs_base64};
pub use url::{FileUrlResolver, NoUrlResolver, UrlResolver, MAX_URL_VALUE_LEN};
pub use writer::Writer;

/// The raw bytes of an attribute value; text values are their UTF-8 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Value(pub Vec<u8>);

impl Value {
    /// The bytes of the value.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, when it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Gives back the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Self {
        Value(bytes)
    }
}

impl From<&[u8]> for Value {
    fn from(bytes: &[u8]) -> Self {
        Value(bytes.to_vec())
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value(text.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value(text.into_bytes())
    }
}

/// One `name: value` line of a content record or an `add` change record.
///
/// The name is an RFC 4512 attribute description and may carry options,
/// as in `cn;lang-fr`; its case is kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attr {
    pub name: String,
    pub value: Vec<u8>,
}

impl Attr {
    /// Builds an attribute from a name and a value (text or bytes).
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Attr {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The value as text, when it is valid UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    /// The attribute type without its options (`cn` for `cn;lang-fr`).
    pub fn base_name(&self) -> &str {
        self.name.split(';').next().unwrap_or(&self.name)
    }
}

/// The operation of one block of a `changetype: modify` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModOp {
    Add,
    Delete,
    Replace,
    /// RFC 4525 Modify-Increment.
    Increment,
}

impl ModOp {
    /// The LDIF keyword of the operation (`add`, `delete`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ModOp::Add => "add",
            ModOp::Delete => "delete",
            ModOp::Replace => "replace",
            ModOp::Increment => "increment",
        }
    }
}

impl std::fmt::Display for ModOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One block of a `changetype: modify` record: an operation on one attribute
/// with zero or more values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Modification {
    pub op: ModOp,
    pub attr: String,
    pub values: Vec<Vec<u8>>,
}

/// What a change record does to its entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Add {
        attrs: Vec<Attr>,
    },
    Delete,
    Modify {
        mods: Vec<Modification>,
    },
    /// Both `changetype: modrdn` and `changetype: moddn`.
    ModDn {
        new_rdn: String,
        delete_old_rdn: bool,
        new_superior: Option<String>,
    },
}

/// An LDAP control attached to a change record by a `control:` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Control {
    pub oid: String,
    pub criticality: bool,
    pub value: Option<Vec<u8>>,
}

/// One LDIF record: an entry (content) or a change to an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Record {
    Content {
        dn: String,
        attrs: Vec<Attr>,
    },
    Change {
        dn: String,
        controls: Vec<Control>,
        change: ChangeKind,
    },
}

impl Record {
    /// The DN the record is about.
    pub fn dn(&self) -> &str {
        match self {
            Record::Content { dn, .. } | Record::Change { dn, .. } => dn,
        }
    }

    /// Whether this is a change record (as opposed to a content record).
    pub fn is_change(&self) -> bool {
        matches!(self, Record::Change { .. })
    }
}

/// A parsed item with the 1-based line number where it starts (for a
/// record, its `dn:` line).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Located<T> {
    pub line: usize,
    pub record: T,
}

//! The identity model: what a connected system's object, an attribute value, an anchor and a
//! value-level delta are.
//!
//! This crate owns the vocabulary every other crate speaks (DESIGN.md's glossary) and the pure
//! functions over it: comparing objects by content, computing attribute-level deltas and applying
//! them. It does no I/O: no files, no sockets, no SQL, no clock. Serialization derives are here
//! only so the store can persist these types in its own row format.

mod attrs;
mod delta;
mod digest;
pub mod fold;
mod ids;
mod space;
mod value;

pub use attrs::{AttributeName, Attributes};
pub use delta::{apply_delta, diff_attributes, AttributeChange, AttributeDelta};
pub use digest::{
    content_digest, entry_digest, scoped_wire_digest, typed_digest, wire_digest, wire_key,
};
pub use ids::{
    escape_rdn_value, Anchor, ConnectorId, CsId, Dn, IdentifierSyntax, MvId, ObjectTypeName, RunId,
};
pub use space::{Contribution, CsObject, MvObject, PendingExport, PendingImport};
pub use value::{Blob, ContentHash, Reference, Value, ValueKind};

/// One object as a connector reads it from its connected system, before scope and rules.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CsEntry {
    /// The immutable identifier in the connected system.
    pub anchor: Anchor,
    /// The changeable identifier (a DN, a key column's value, a userName).
    pub dn: Dn,
    /// The object classes the system gives this object (LDAP objectClass, a CSV's fixed type).
    pub object_classes: Vec<String>,
    pub attributes: Attributes,
}

/// A set of 64-bit hashes of identifiers (a full import's seen marks, the anchors it added):
/// eight bytes an object, and each identifier hashed once.
pub type IdHashSet = std::collections::HashSet<u64, foldhash::fast::FixedState>;

/// The 64-bit hash of an identifier, for an [`IdHashSet`].
pub fn id_hash(id: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x1d5c_0ba5).hash_one(id)
}

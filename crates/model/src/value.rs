//! Typed attribute values, and how two of them compare.
//!
//! Binary values compare by the BLAKE3 hash of their bytes, never by where they came from: a
//! picture URL that stays the same while the image behind it changes (seed 000) is resolved to
//! its bytes by the connector, and the bytes' hash is what import compares.

use crate::ids::{Dn, MvId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The BLAKE3 hash of a binary value's bytes; stable across versions, so it may be persisted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", &self.to_hex()[..12])
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ContentHash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("invalid content hash"))
    }
}

/// A binary value. The bytes travel with the value from the connector that read them to the
/// store, which keeps each distinct content once; a value loaded from the store carries only its
/// hash and length until the bytes are asked for.
#[derive(Clone, Serialize, Deserialize)]
pub struct Blob {
    pub hash: ContentHash,
    pub len: u64,
    #[serde(skip)]
    pub data: Option<Arc<[u8]>>,
}

impl Blob {
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Self {
        let data: Arc<[u8]> = bytes.into();
        Self {
            hash: ContentHash::of(&data),
            len: data.len() as u64,
            data: Some(data),
        }
    }
}

impl PartialEq for Blob {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
    }
}
impl Eq for Blob {}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes, {})", self.len, &self.hash.to_hex()[..12])
    }
}

/// A reference to another object. In a connector space it names the target by the connected
/// system's identifier; in the metaverse, by the metaverse object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reference {
    Dn(Dn),
    Mv(MvId),
}

/// One attribute value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    String(String),
    Integer(i64),
    Boolean(bool),
    /// Seconds since the Unix epoch, UTC.
    Timestamp(i64),
    Binary(Blob),
    Reference(Reference),
}

/// The type of a value, as a schema declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    String,
    Integer,
    Boolean,
    Timestamp,
    Binary,
    Reference,
}

impl Value {
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::String(_) => ValueKind::String,
            Value::Integer(_) => ValueKind::Integer,
            Value::Boolean(_) => ValueKind::Boolean,
            Value::Timestamp(_) => ValueKind::Timestamp,
            Value::Binary(_) => ValueKind::Binary,
            Value::Reference(_) => ValueKind::Reference,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Reference(Reference::Dn(d)) => Some(d.as_str()),
            _ => None,
        }
    }

    /// A text form for display, CSV cells and join keys. Binary values show their hash.
    pub fn to_text(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Boolean(b) => b.to_string(),
            Value::Timestamp(t) => t.to_string(),
            Value::Binary(b) => format!("blake3:{}", b.hash),
            Value::Reference(Reference::Dn(d)) => d.to_string(),
            Value::Reference(Reference::Mv(m)) => format!("mv:{m}"),
        }
    }

    /// The key this value is compared by when a set of values is diffed: equal keys are equal
    /// values. DN references compare case-insensitively, as directories do.
    pub fn compare_key(&self) -> ValueKey {
        match self {
            Value::String(s) => ValueKey::Text(0, s.clone()),
            Value::Integer(i) => ValueKey::Int(1, *i),
            Value::Boolean(b) => ValueKey::Int(2, *b as i64),
            Value::Timestamp(t) => ValueKey::Int(3, *t),
            Value::Binary(b) => ValueKey::Hash(b.hash),
            Value::Reference(Reference::Dn(d)) => ValueKey::Text(4, d.normalized()),
            Value::Reference(Reference::Mv(m)) => ValueKey::Text(5, m.as_str().to_owned()),
        }
    }
}

/// An ordered, hashable comparison key for a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueKey {
    Text(u8, String),
    Int(u8, i64),
    Hash(ContentHash),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_compares_by_content() {
        let a = Value::Binary(Blob::from_bytes(vec![1u8, 2, 3]));
        let mut b = Value::Binary(Blob::from_bytes(vec![1u8, 2, 3]));
        assert_eq!(a, b);
        if let Value::Binary(blob) = &mut b {
            blob.data = None; // loaded from the store without its bytes: still equal
        }
        assert_eq!(a, b);
        assert_ne!(a, Value::Binary(Blob::from_bytes(vec![1u8, 2, 4])));
    }

    #[test]
    fn hash_hex_round_trips() {
        let h = ContentHash::of(b"photo");
        assert_eq!(ContentHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(ContentHash::from_hex("zz"), None);
    }
}

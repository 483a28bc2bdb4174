//! Attribute names (compared case-insensitively, as directories do) and attribute sets.

use crate::value::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// An attribute's name. `givenName` and `givenname` are the same attribute; the spelling first
/// seen is kept for display.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttributeName(String);

impl AttributeName {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl PartialEq for AttributeName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for AttributeName {}

impl std::hash::Hash for AttributeName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl PartialOrd for AttributeName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for AttributeName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let a = self.0.bytes().map(|b| b.to_ascii_lowercase());
        let b = other.0.bytes().map(|b| b.to_ascii_lowercase());
        a.cmp(b)
    }
}

impl fmt::Display for AttributeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for AttributeName {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// An object's attributes: each name with its values. An attribute with no values is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attributes(BTreeMap<AttributeName, Vec<Value>>);

impl Attributes {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, name: &str) -> Option<&[Value]> {
        self.0.get(&AttributeName::from(name)).map(Vec::as_slice)
    }
    pub fn get_name(&self, name: &AttributeName) -> Option<&[Value]> {
        self.0.get(name).map(Vec::as_slice)
    }
    pub fn first(&self, name: &str) -> Option<&Value> {
        self.get(name).and_then(|v| v.first())
    }
    /// Sets an attribute's values; an empty list removes the attribute.
    pub fn set(&mut self, name: impl Into<AttributeName>, values: Vec<Value>) {
        let name = name.into();
        if values.is_empty() {
            self.0.remove(&name);
        } else {
            self.0.insert(name, values);
        }
    }
    /// Adds one value, keeping the existing ones.
    pub fn push(&mut self, name: impl Into<AttributeName>, value: Value) {
        self.0.entry(name.into()).or_default().push(value);
    }
    pub fn remove(&mut self, name: &str) -> Option<Vec<Value>> {
        self.0.remove(&AttributeName::from(name))
    }
    pub fn iter(&self) -> impl Iterator<Item = (&AttributeName, &Vec<Value>)> {
        self.0.iter()
    }
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&AttributeName, &mut Vec<Value>)> {
        self.0.iter_mut()
    }
    pub fn names(&self) -> impl Iterator<Item = &AttributeName> {
        self.0.keys()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for AttributeName {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl FromIterator<(AttributeName, Vec<Value>)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (AttributeName, Vec<Value>)>>(iter: I) -> Self {
        let mut a = Attributes::new();
        for (k, v) in iter {
            a.set(k, v);
        }
        a
    }
}

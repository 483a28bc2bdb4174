//! How a file connector types the text or bytes it reads: which attributes are binary, which are
//! references, integers, booleans or timestamps. Directories' usual photo and reference
//! attributes are typed by default; the configuration can add or override any.

use idsync_model::{Blob, Dn, Reference, Value};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TypeHint {
    String,
    Integer,
    Boolean,
    /// LDAP GeneralizedTime (`20240131120000Z`) or seconds since the epoch.
    Timestamp,
    /// Bytes (base64 in a CSV cell).
    Binary,
    /// The value names a file whose bytes are the value (a picture URL): the content is read and
    /// compared, never the name, so a new photo behind the same name is a change.
    BinaryFile,
    /// A DN naming another object.
    Reference,
}

#[derive(Debug, Clone)]
pub struct AttributeTypes {
    map: HashMap<String, TypeHint>,
}

const DEFAULT_BINARY: &[&str] = &[
    "jpegphoto",
    "thumbnailphoto",
    "photo",
    "usercertificate",
    "objectguid",
];
const DEFAULT_REFERENCE: &[&str] = &[
    "manager",
    "member",
    "uniquemember",
    "seealso",
    "owner",
    "secretary",
];

impl AttributeTypes {
    pub fn new(overrides: &BTreeMap<String, TypeHint>) -> Self {
        let mut map = HashMap::new();
        for a in DEFAULT_BINARY {
            map.insert((*a).to_owned(), TypeHint::Binary);
        }
        for a in DEFAULT_REFERENCE {
            map.insert((*a).to_owned(), TypeHint::Reference);
        }
        for (k, v) in overrides {
            map.insert(k.to_ascii_lowercase(), *v);
        }
        Self { map }
    }

    /// The types as one text that does not depend on the map's order, for keys that must
    /// change when a type does ([`idsync_model::wire_key`]).
    pub fn canonical(&self) -> String {
        let mut all: Vec<_> = self.map.iter().collect();
        all.sort();
        format!("{all:?}")
    }

    /// Whether a value's content can change while the bytes that name it do not (a
    /// `binary-file` type reads the file the value names).
    pub fn reads_files(&self) -> bool {
        self.map.values().any(|t| *t == TypeHint::BinaryFile)
    }

    pub fn hint(&self, name: &str) -> TypeHint {
        self.map
            .get(&name.to_ascii_lowercase())
            .copied()
            .unwrap_or(TypeHint::String)
    }

    /// Types a value given as text (a CSV cell). `read_file` resolves `binary-file` values.
    pub fn from_text(
        &self,
        name: &str,
        text: &str,
        read_file: &dyn Fn(&str) -> Result<Vec<u8>, String>,
    ) -> Result<Value, String> {
        Ok(match self.hint(name) {
            TypeHint::String => Value::String(text.to_owned()),
            TypeHint::Integer => Value::Integer(
                text.trim()
                    .parse()
                    .map_err(|_| format!("`{text}` is not an integer"))?,
            ),
            TypeHint::Boolean => Value::Boolean(parse_bool(text)?),
            TypeHint::Timestamp => Value::Timestamp(parse_timestamp(text)?),
            TypeHint::Binary => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| format!("invalid base64: {e}"))?;
                Value::Binary(Blob::from_bytes(bytes))
            }
            TypeHint::BinaryFile => Value::Binary(Blob::from_bytes(read_file(text.trim())?)),
            TypeHint::Reference => Value::Reference(Reference::Dn(Dn::new(text))),
        })
    }

    /// Types a value given as bytes (an LDIF value).
    pub fn from_bytes(&self, name: &str, bytes: Vec<u8>) -> Result<Value, String> {
        match self.hint(name) {
            TypeHint::Binary => Ok(Value::Binary(Blob::from_bytes(bytes))),
            hint => {
                let text = match String::from_utf8(bytes) {
                    Ok(t) => t,
                    // A value that is not text cannot be a string: keep it as bytes rather than
                    // lose it, and let the schema say so if that was wrong.
                    Err(e) if hint == TypeHint::String => {
                        return Ok(Value::Binary(Blob::from_bytes(e.into_bytes())))
                    }
                    Err(_) => return Err("value is not valid UTF-8".to_owned()),
                };
                self.from_text(name, &text, &|_| {
                    Err("file values are not read here".to_owned())
                })
            }
        }
    }
}

/// The text form a file connector writes (binary values are handled by the caller).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Boolean(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
        Value::Timestamp(t) => generalized_time(*t),
        other => other.to_text(),
    }
}

fn parse_bool(t: &str) -> Result<bool, String> {
    match t.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("`{t}` is not a boolean (TRUE or FALSE)")),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses LDAP GeneralizedTime in UTC (`YYYYMMDDHHMMSS[.f]Z`) or plain epoch seconds.
pub fn parse_timestamp(t: &str) -> Result<i64, String> {
    let t = t.trim();
    if let Ok(secs) = t.parse::<i64>() {
        if t.len() != 14 {
            return Ok(secs);
        }
    }
    let bad = || format!("`{t}` is not a timestamp (YYYYMMDDHHMMSSZ)");
    let digits = t.strip_suffix('Z').ok_or_else(bad)?;
    let digits = digits.split('.').next().unwrap_or(digits);
    if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| digits[r].parse::<i64>().map_err(|_| bad());
    let (y, mo, d, h, mi, s) = (
        n(0..4)?,
        n(4..6)?,
        n(6..8)?,
        n(8..10)?,
        n(10..12)?,
        n(12..14)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    Ok(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s)
}

pub fn generalized_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for secs in [0, 1_700_000_000, 951_782_400 /* 2000-02-29 */] {
            assert_eq!(parse_timestamp(&generalized_time(secs)).unwrap(), secs);
        }
        assert_eq!(parse_timestamp("19700101000000Z").unwrap(), 0);
        assert!(parse_timestamp("2024-01-01").is_err());
    }

    #[test]
    fn defaults_type_photos_and_references() {
        let t = AttributeTypes::new(&BTreeMap::new());
        assert_eq!(t.hint("jpegPhoto"), TypeHint::Binary);
        assert_eq!(t.hint("Manager"), TypeHint::Reference);
        assert_eq!(t.hint("cn"), TypeHint::String);
    }
}

//! The protocol's messages (version 1, `docs/connector-protocol.md`) and the conversion of their
//! values to and from idsync's typed values. Nothing here leaves the crate.

use base64::Engine as _;
use idsync_connectors::{generalized_time, parse_timestamp};
use idsync_model::{
    Anchor, AttributeChange, AttributeDelta, Attributes, Blob, CsEntry, Dn, Reference, Value,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

/// The protocol version this build speaks.
pub const PROTOCOL: u32 = 1;

/// A message from the program, one a line on its standard output.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Incoming {
    /// The answer to `hello`: what the program can do.
    Ready(Ready),
    /// One object of a full import.
    Object(WireObject),
    /// One change of a delta import.
    Change(WireChange),
    /// The end of an import, with the watermark the next delta import starts from.
    End {
        #[serde(default)]
        watermark: Option<String>,
    },
    /// The answer for one object of an export batch.
    Result(WireResult),
    /// The program cannot go on (its system is unreachable, its settings are wrong).
    Error { message: String },
}

impl Incoming {
    pub fn kind(&self) -> &'static str {
        match self {
            Incoming::Ready(_) => "ready",
            Incoming::Object(_) => "object",
            Incoming::Change(_) => "change",
            Incoming::End { .. } => "end",
            Incoming::Result(_) => "result",
            Incoming::Error { .. } => "error",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Ready {
    pub protocol: u32,
    pub capabilities: WireCapabilities,
    /// `plain` (a key used as it is; the default) or `dn` (an RFC 4514 distinguished name).
    #[serde(default)]
    pub identifier: Option<String>,
    /// The object types the program reads and writes.
    #[serde(default)]
    pub object_types: Vec<String>,
    /// Types of attributes other than strings; an attribute not named here takes the type of
    /// its JSON value (string, integer or boolean).
    #[serde(default)]
    pub attribute_types: BTreeMap<String, WireType>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct WireCapabilities {
    #[serde(default)]
    pub full_import: bool,
    #[serde(default)]
    pub delta_import: bool,
    #[serde(default)]
    pub export: bool,
    /// Whether a delta import shows what this program exported.
    #[serde(default)]
    pub delta_sees_own_exports: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireType {
    String,
    Integer,
    Boolean,
    /// RFC 3339 in UTC (`2024-01-31T12:00:00Z`), GeneralizedTime, or seconds since the epoch.
    Timestamp,
    /// Base64 (RFC 4648, with padding).
    Binary,
    /// The identifier of another object of the same program.
    Reference,
}

#[derive(Debug, Deserialize)]
pub struct WireObject {
    pub anchor: String,
    /// The changeable identifier; defaults to the anchor.
    #[serde(default)]
    pub id: Option<String>,
    pub object_type: String,
    #[serde(default)]
    pub attributes: Map<String, Json>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Add,
    Modify,
    Delete,
    Rename,
}

#[derive(Debug, Deserialize)]
pub struct WireChange {
    pub op: ChangeOp,
    #[serde(default)]
    pub anchor: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub object_type: Option<String>,
    #[serde(default)]
    pub attributes: Option<Map<String, Json>>,
    #[serde(default)]
    pub changes: Option<Vec<WireDelta>>,
    #[serde(default)]
    pub new_id: Option<String>,
}

/// A value-level change of one attribute: `replace` (the values become exactly these), or `add`
/// and `remove` (values gained and lost).
#[derive(Debug, Serialize, Deserialize)]
pub struct WireDelta {
    pub attribute: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<Vec<Json>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<Vec<Json>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Vec<Json>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    /// Applied now.
    Applied,
    /// Refused by the system; `message` says why.
    Refused,
    /// Already there exactly as asked (the re-send after a crash).
    Exists,
}

#[derive(Debug, Deserialize)]
pub struct WireResult {
    #[serde(rename = "ref")]
    pub reference: String,
    pub status: ResultStatus,
    #[serde(default)]
    pub anchor: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// A message to the program, one a line on its standard input.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outgoing<'a> {
    Hello {
        protocol: u32,
        connector: &'a str,
        settings: &'a Json,
        secrets: BTreeMap<&'a str, &'a str>,
    },
    FullImport {},
    DeltaImport {
        watermark: Option<&'a str>,
    },
    Export {
        batch: Vec<Json>,
    },
}

/// How the attributes of a program are typed.
#[derive(Debug, Clone, Default)]
pub struct Types(pub BTreeMap<String, WireType>);

impl Types {
    pub fn of(&self, attribute: &str) -> Option<WireType> {
        self.0
            .get(attribute)
            .or_else(|| {
                self.0
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(attribute))
                    .map(|(_, v)| v)
            })
            .copied()
    }

    /// One JSON value as an idsync value.
    pub fn value(&self, attribute: &str, v: &Json) -> Result<Value, String> {
        let declared = self.of(attribute);
        let kind = match declared {
            Some(t) => t,
            None => match v {
                Json::String(_) => WireType::String,
                Json::Bool(_) => WireType::Boolean,
                Json::Number(_) => WireType::Integer,
                other => {
                    return Err(format!(
                        "a value must be a string, an integer or a boolean, not {}",
                        json_kind(other)
                    ))
                }
            },
        };
        let wrong = |want: &str| {
            format!(
                "declared {} but the value is {} ({want} expected)",
                type_name(kind),
                json_kind(v)
            )
        };
        Ok(match kind {
            WireType::String => Value::String(v.as_str().ok_or_else(|| wrong("a string"))?.into()),
            WireType::Integer => Value::Integer(
                v.as_i64()
                    .ok_or_else(|| wrong("an integer between -2^63 and 2^63-1"))?,
            ),
            WireType::Boolean => Value::Boolean(v.as_bool().ok_or_else(|| wrong("true or false"))?),
            WireType::Timestamp => Value::Timestamp(match v {
                Json::Number(n) => n.as_i64().ok_or_else(|| wrong("whole seconds"))?,
                Json::String(s) => parse_rfc3339(s)?,
                _ => return Err(wrong("an RFC 3339 string")),
            }),
            WireType::Binary => {
                let text = v.as_str().ok_or_else(|| wrong("a base64 string"))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("invalid base64: {e}"))?;
                Value::Binary(Blob::from_bytes(bytes))
            }
            WireType::Reference => Value::Reference(Reference::Dn(Dn::new(
                v.as_str().ok_or_else(|| wrong("an identifier string"))?,
            ))),
        })
    }

    /// An attribute's values: one value, an array of them, or `null` (none).
    pub fn values(&self, attribute: &str, v: &Json) -> Result<Vec<Value>, String> {
        match v {
            Json::Null => Ok(Vec::new()),
            Json::Array(items) => items.iter().map(|i| self.value(attribute, i)).collect(),
            one => Ok(vec![self.value(attribute, one)?]),
        }
    }

    pub fn attributes(&self, map: &Map<String, Json>) -> Result<Attributes, String> {
        let mut out = Attributes::new();
        for (name, v) in map {
            let values = self
                .values(name, v)
                .map_err(|m| format!("attribute `{name}`: {m}"))?;
            if !values.is_empty() {
                out.set(name.as_str(), values);
            }
        }
        Ok(out)
    }

    pub fn entry(&self, o: WireObject) -> Result<CsEntry, String> {
        if o.anchor.is_empty() {
            return Err("`anchor` is empty".to_owned());
        }
        let attributes = self.attributes(&o.attributes)?;
        Ok(CsEntry {
            dn: Dn::new(o.id.unwrap_or_else(|| o.anchor.clone())),
            anchor: Anchor::new(o.anchor),
            object_classes: vec![o.object_type],
            attributes,
        })
    }

    pub fn deltas(&self, changes: &[WireDelta]) -> Result<Vec<AttributeDelta>, String> {
        let mut out = Vec::with_capacity(changes.len());
        for d in changes {
            let name = d.attribute.as_str();
            let conv = |vs: &Option<Vec<Json>>| -> Result<Vec<Value>, String> {
                vs.iter()
                    .flatten()
                    .map(|v| self.value(name, v))
                    .collect::<Result<_, _>>()
                    .map_err(|m| format!("attribute `{name}`: {m}"))
            };
            let change = match (&d.replace, &d.add, &d.remove) {
                (Some(_), None, None) => AttributeChange::Replace(conv(&d.replace)?),
                (None, a, r) if a.is_some() || r.is_some() => AttributeChange::Update {
                    add: conv(&d.add)?,
                    remove: conv(&d.remove)?,
                },
                _ => {
                    return Err(format!(
                        "attribute `{name}`: a change has either `replace` or `add`/`remove`"
                    ))
                }
            };
            out.push(AttributeDelta {
                name: name.into(),
                change,
            });
        }
        Ok(out)
    }
}

/// An idsync value as the protocol writes it.
pub fn value_json(v: &Value) -> Result<Json, String> {
    Ok(match v {
        Value::String(s) => Json::String(s.clone()),
        Value::Integer(i) => Json::from(*i),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Timestamp(t) => Json::String(rfc3339(*t)),
        Value::Binary(b) => match &b.data {
            Some(d) => Json::String(base64::engine::general_purpose::STANDARD.encode(d)),
            None => return Err("a binary value without its bytes".to_owned()),
        },
        Value::Reference(Reference::Dn(d)) => Json::String(d.as_str().to_owned()),
        Value::Reference(Reference::Mv(m)) => {
            return Err(format!(
                "a reference to `{m}` not resolved to an identifier"
            ))
        }
    })
}

pub fn values_json(vs: &[Value]) -> Result<Json, String> {
    vs.iter()
        .map(value_json)
        .collect::<Result<Vec<_>, _>>()
        .map(Json::Array)
}

pub fn attributes_json(a: &Attributes) -> Result<Json, String> {
    let mut m = Map::new();
    for (name, vs) in a.iter() {
        m.insert(
            name.to_string(),
            values_json(vs).map_err(|e| format!("attribute `{name}`: {e}"))?,
        );
    }
    Ok(Json::Object(m))
}

pub fn deltas_json(ds: &[AttributeDelta]) -> Result<Json, String> {
    let mut out = Vec::with_capacity(ds.len());
    for d in ds {
        let name = d.name.to_string();
        let conv = |vs: &[Value]| {
            vs.iter()
                .map(value_json)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("attribute `{name}`: {e}"))
        };
        let w = match &d.change {
            AttributeChange::Replace(vs) => WireDelta {
                attribute: name.clone(),
                replace: Some(conv(vs)?),
                add: None,
                remove: None,
            },
            AttributeChange::Update { add, remove } => WireDelta {
                attribute: name.clone(),
                replace: None,
                add: Some(conv(add)?),
                remove: Some(conv(remove)?),
            },
        };
        out.push(serde_json::to_value(w).map_err(|e| e.to_string())?);
    }
    Ok(Json::Array(out))
}

/// `2024-01-31T12:00:00Z`.
pub fn rfc3339(secs: i64) -> String {
    let g = generalized_time(secs); // YYYYMMDDHHMMSSZ
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &g[0..4],
        &g[4..6],
        &g[6..8],
        &g[8..10],
        &g[10..12],
        &g[12..14]
    )
}

/// RFC 3339 in UTC (`Z`), or GeneralizedTime.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let compact: String = t.chars().filter(|c| !matches!(c, '-' | ':')).collect();
    let compact = compact.replacen('T', "", 1).replace('z', "Z");
    if compact.len() < 15 || !compact.ends_with('Z') {
        return Err(format!(
            "`{s}` is not a timestamp in UTC (2024-01-31T12:00:00Z)"
        ));
    }
    parse_timestamp(&compact)
        .map_err(|_| format!("`{s}` is not a timestamp (2024-01-31T12:00:00Z)"))
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number with a fraction",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn type_name(t: WireType) -> &'static str {
    match t {
        WireType::String => "string",
        WireType::Integer => "integer",
        WireType::Boolean => "boolean",
        WireType::Timestamp => "timestamp",
        WireType::Binary => "binary",
        WireType::Reference => "reference",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        for secs in [0, 1_700_000_000, 951_782_400] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)).unwrap(), secs);
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("19700101000000Z").unwrap(), 0);
        assert!(parse_rfc3339("2024-01-31T12:00:00+02:00").is_err());
    }

    #[test]
    fn values_follow_declared_types_and_wrong_kinds_are_named() {
        let t = Types(
            [
                ("photo".to_owned(), WireType::Binary),
                ("since".to_owned(), WireType::Timestamp),
                ("manager".to_owned(), WireType::Reference),
            ]
            .into(),
        );
        assert_eq!(
            t.value("photo", &Json::from("aGk=")).unwrap(),
            Value::Binary(Blob::from_bytes(b"hi".to_vec()))
        );
        assert_eq!(
            t.value("since", &Json::from("1970-01-01T00:01:00Z"))
                .unwrap(),
            Value::Timestamp(60)
        );
        assert_eq!(t.value("n", &Json::from(3)).unwrap(), Value::Integer(3));
        let e = t.value("photo", &Json::from(3)).unwrap_err();
        assert!(
            e.contains("declared binary") && e.contains("an integer"),
            "{e}"
        );
        assert!(t.value("x", &Json::from(1.5)).is_err());
        assert_eq!(
            t.values("mail", &serde_json::json!(["a", "b"]))
                .unwrap()
                .len(),
            2
        );
    }
}

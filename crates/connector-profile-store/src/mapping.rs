//! Between idsync's flat attributes and SCIM resources (RFC 7643): which attribute is which
//! SCIM path, and how values are written in JSON. Pure functions; no I/O.

use idsync_model::{Attributes, Value};
use serde_json::{json, Map, Value as Json};
use std::collections::HashMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PROFILE: &str = "urn:idsync:params:scim:schemas:extension:profile:2.0:User";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// Where an idsync attribute lives in a SCIM User.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A top-level simple attribute (`userName`, `title`, `active`).
    Core(&'static str),
    /// A sub-attribute of `name`.
    Name(&'static str),
    /// The work address in `emails`.
    WorkEmail,
    /// Every `phoneNumbers` value (multi-valued).
    Phones,
    /// An attribute of the enterprise extension.
    Enterprise(&'static str),
    /// The enterprise extension's `manager` (a reference).
    Manager,
    /// The photo, sent and read as bytes beside the resource.
    Photo,
    /// A schema-defined property of idsync's profile extension.
    Profile(String),
}

impl Field {
    pub fn of(name: &str) -> Field {
        match name.to_ascii_lowercase().as_str() {
            "username" => Field::Core("userName"),
            "externalid" => Field::Core("externalId"),
            "displayname" => Field::Core("displayName"),
            "nickname" => Field::Core("nickName"),
            "title" => Field::Core("title"),
            "usertype" => Field::Core("userType"),
            "preferredlanguage" => Field::Core("preferredLanguage"),
            "locale" => Field::Core("locale"),
            "timezone" => Field::Core("timezone"),
            "profileurl" => Field::Core("profileUrl"),
            "active" => Field::Core("active"),
            "givenname" => Field::Name("givenName"),
            "familyname" | "sn" => Field::Name("familyName"),
            "formattedname" => Field::Name("formatted"),
            "mail" | "email" => Field::WorkEmail,
            "phones" | "telephonenumber" | "phonenumbers" => Field::Phones,
            "employeenumber" => Field::Enterprise("employeeNumber"),
            "department" => Field::Enterprise("department"),
            "costcenter" => Field::Enterprise("costCenter"),
            "organization" => Field::Enterprise("organization"),
            "division" => Field::Enterprise("division"),
            "manager" => Field::Manager,
            "photo" | "jpegphoto" | "thumbnailphoto" => Field::Photo,
            _ => Field::Profile(name.to_owned()),
        }
    }

    /// The SCIM attribute path, for PATCH.
    pub fn path(&self) -> String {
        match self {
            Field::Core(a) => (*a).to_owned(),
            Field::Name(a) => format!("name.{a}"),
            Field::WorkEmail => "emails".to_owned(),
            Field::Phones => "phoneNumbers".to_owned(),
            Field::Enterprise(a) => format!("{ENTERPRISE}:{a}"),
            Field::Manager => format!("{ENTERPRISE}:manager"),
            Field::Photo => "photos".to_owned(),
            Field::Profile(a) => format!("{PROFILE}:{a}"),
        }
    }
}

/// The type a SCIM schema gives a profile property, as far as idsync needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    String,
    Integer,
    Boolean,
    DateTime,
}

/// The profile extension's properties as the service's `/Schemas` describes them.
#[derive(Debug, Clone, Default)]
pub struct ProfileSchema {
    /// Lower-cased name → (type, multi-valued).
    pub props: HashMap<String, (ScimType, bool)>,
}

impl ProfileSchema {
    /// Reads the `/Schemas` list response (or a bare array of schemas).
    pub fn from_schemas(body: &Json) -> ProfileSchema {
        let list = body
            .get("Resources")
            .and_then(Json::as_array)
            .or_else(|| body.as_array());
        let mut props = HashMap::new();
        for schema in list.into_iter().flatten() {
            if schema.get("id").and_then(Json::as_str) != Some(PROFILE) {
                continue;
            }
            for a in schema
                .get("attributes")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = a.get("name").and_then(Json::as_str) else {
                    continue;
                };
                let t = match a.get("type").and_then(Json::as_str).unwrap_or("string") {
                    "integer" => ScimType::Integer,
                    "boolean" => ScimType::Boolean,
                    "dateTime" => ScimType::DateTime,
                    _ => ScimType::String,
                };
                let multi = a
                    .get("multiValued")
                    .and_then(Json::as_bool)
                    .unwrap_or(false);
                props.insert(name.to_ascii_lowercase(), (t, multi));
            }
        }
        ProfileSchema { props }
    }

    pub fn multi(&self, name: &str) -> bool {
        self.props
            .get(&name.to_ascii_lowercase())
            .is_some_and(|p| p.1)
    }

    fn kind(&self, name: &str) -> ScimType {
        self.props
            .get(&name.to_ascii_lowercase())
            .map_or(ScimType::String, |p| p.0)
    }
}

pub fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// A value as SCIM JSON. References are resolved by the caller; binaries never go in JSON.
pub fn json_value(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.clone()),
        Value::Integer(i) => json!(i),
        Value::Boolean(b) => json!(b),
        Value::Timestamp(t) => Json::String(rfc3339(*t)),
        Value::Binary(_) | Value::Reference(_) => Json::Null,
    }
}

/// A JSON value read back as the type the schema (or the JSON itself) says.
pub fn from_json(j: &Json, kind: ScimType) -> Option<Value> {
    Some(match (j, kind) {
        (Json::String(s), ScimType::DateTime) => {
            parse_rfc3339(s).map_or_else(|| Value::String(s.clone()), Value::Timestamp)
        }
        (Json::String(s), _) => Value::String(s.clone()),
        (Json::Bool(b), _) => Value::Boolean(*b),
        (Json::Number(n), _) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::String(n.to_string()),
        },
        _ => return None,
    })
}

/// The JSON of one field's values: `None` when the field has no values (left out of a create).
pub fn field_json(
    field: &Field,
    values: &[Value],
    schema: &ProfileSchema,
    manager_id: Option<&str>,
) -> Option<Json> {
    let plain: Vec<Json> = values
        .iter()
        .map(json_value)
        .filter(|j| !j.is_null())
        .collect();
    match field {
        Field::Photo => None,
        Field::Manager => manager_id.map(|id| json!({ "value": id })),
        Field::WorkEmail => plain
            .first()
            .map(|v| json!([{ "value": v, "type": "work", "primary": true }])),
        Field::Phones => (!plain.is_empty()).then(|| {
            Json::Array(
                plain
                    .into_iter()
                    .map(|v| json!({ "value": v, "type": "work" }))
                    .collect(),
            )
        }),
        Field::Profile(name) if schema.multi(name) => {
            (!plain.is_empty()).then_some(Json::Array(plain))
        }
        _ => plain.into_iter().next(),
    }
}

/// Puts a field's JSON into a resource being built.
pub fn put_field(resource: &mut Map<String, Json>, field: &Field, value: Json) {
    let (container, key): (Option<&str>, &str) = match field {
        Field::Core(a) => (None, a),
        Field::Name(a) => (Some("name"), a),
        Field::WorkEmail => (None, "emails"),
        Field::Phones => (None, "phoneNumbers"),
        Field::Enterprise(a) => (Some(ENTERPRISE), a),
        Field::Manager => (Some(ENTERPRISE), "manager"),
        Field::Photo => return,
        Field::Profile(a) => (Some(PROFILE), a.as_str()),
    };
    match container {
        None => {
            resource.insert(key.to_owned(), value);
        }
        Some(c) => {
            let inner = resource
                .entry(c.to_owned())
                .or_insert_with(|| Json::Object(Map::new()));
            if let Json::Object(m) = inner {
                m.insert(key.to_owned(), value);
            }
        }
    }
}

/// What a SCIM User holds, as idsync attributes; the manager's id and the photo are returned
/// apart because the connector resolves them with the service.
pub struct UserRead {
    pub id: String,
    pub user_name: String,
    pub attributes: Attributes,
    pub manager_id: Option<String>,
    pub photo_hash: Option<String>,
    pub photo_url: Option<String>,
}

pub fn read_user(u: &Json, schema: &ProfileSchema) -> Result<UserRead, String> {
    let id = u
        .get("id")
        .and_then(Json::as_str)
        .ok_or("a user without `id`")?
        .to_owned();
    let user_name = u
        .get("userName")
        .and_then(Json::as_str)
        .ok_or_else(|| format!("user {id} has no `userName`"))?
        .to_owned();
    let mut a = Attributes::new();
    for key in [
        "userName",
        "externalId",
        "displayName",
        "nickName",
        "title",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "profileUrl",
        "active",
    ] {
        if let Some(v) = u.get(key).and_then(|j| from_json(j, ScimType::String)) {
            a.set(key, vec![v]);
        }
    }
    if let Some(name) = u.get("name") {
        for (key, attr) in [
            ("givenName", "givenName"),
            ("familyName", "familyName"),
            ("formatted", "formattedName"),
        ] {
            if let Some(v) = name.get(key).and_then(|j| from_json(j, ScimType::String)) {
                a.set(attr, vec![v]);
            }
        }
    }
    let multi = |key: &str| -> Vec<&Json> {
        u.get(key)
            .and_then(Json::as_array)
            .map(|l| l.iter().collect())
            .unwrap_or_default()
    };
    let emails = multi("emails");
    let work = emails
        .iter()
        .find(|e| e.get("type").and_then(Json::as_str) == Some("work"))
        .or_else(|| {
            emails
                .iter()
                .find(|e| e.get("primary").and_then(Json::as_bool) == Some(true))
        })
        .or(emails.first());
    if let Some(v) = work
        .and_then(|e| e.get("value"))
        .and_then(|j| from_json(j, ScimType::String))
    {
        a.set("mail", vec![v]);
    }
    let phones: Vec<Value> = multi("phoneNumbers")
        .iter()
        .filter_map(|p| p.get("value").and_then(|j| from_json(j, ScimType::String)))
        .collect();
    if !phones.is_empty() {
        a.set("phones", phones);
    }
    let mut manager_id = None;
    if let Some(ent) = u.get(ENTERPRISE).and_then(Json::as_object) {
        for (key, attr) in [
            ("employeeNumber", "employeeNumber"),
            ("department", "department"),
            ("costCenter", "costCenter"),
            ("organization", "organization"),
            ("division", "division"),
        ] {
            if let Some(v) = ent.get(key).and_then(|j| from_json(j, ScimType::String)) {
                a.set(attr, vec![v]);
            }
        }
        manager_id = ent
            .get("manager")
            .and_then(|m| m.get("value"))
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
    }
    let mut photo_hash = None;
    if let Some(ext) = u.get(PROFILE).and_then(Json::as_object) {
        for (key, j) in ext {
            if key == "photoHash" {
                photo_hash = j.as_str().map(str::to_owned);
                continue;
            }
            let kind = schema.kind(key);
            let values: Vec<Value> = match j {
                Json::Array(l) => l.iter().filter_map(|x| from_json(x, kind)).collect(),
                other => from_json(other, kind).into_iter().collect(),
            };
            if !values.is_empty() {
                a.set(key.as_str(), values);
            }
        }
    }
    let photo_url = multi("photos")
        .iter()
        .find(|p| p.get("type").and_then(Json::as_str) != Some("thumbnail"))
        .and_then(|p| p.get("value"))
        .and_then(Json::as_str)
        .map(str::to_owned);
    Ok(UserRead {
        id,
        user_name,
        attributes: a,
        manager_id,
        photo_hash,
        photo_url,
    })
}

/// A value filter's string literal (RFC 7644 3.4.2.2: a JSON string).
pub fn filter_string(s: &str) -> String {
    Json::String(s.to_owned()).to_string()
}

/// A filter matching resources whose `attr` equals any of `values` (`attr eq "a" or attr eq "b"`).
pub fn any_eq(attr: &str, values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("{attr} eq {}", filter_string(v)))
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_map_both_ways() {
        let schema = ProfileSchema::default();
        let mut r = Map::new();
        for (name, v) in [
            ("userName", Value::String("ann".into())),
            ("givenName", Value::String("Ann".into())),
            ("mail", Value::String("ann@example.com".into())),
            ("department", Value::String("R&D".into())),
            ("active", Value::Boolean(true)),
        ] {
            let f = Field::of(name);
            let j = field_json(&f, &[v], &schema, None).unwrap();
            put_field(&mut r, &f, j);
        }
        r.insert("id".into(), json!("1"));
        let read = read_user(&Json::Object(r), &schema).unwrap();
        assert_eq!(read.user_name, "ann");
        assert_eq!(
            read.attributes.first("mail"),
            Some(&Value::String("ann@example.com".into()))
        );
        assert_eq!(
            read.attributes.first("department"),
            Some(&Value::String("R&D".into()))
        );
        assert_eq!(read.attributes.first("active"), Some(&Value::Boolean(true)));
    }

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        let j = json_value(&Value::Timestamp(1_700_000_000));
        assert_eq!(j, json!("2023-11-14T22:13:20Z"));
        assert_eq!(
            from_json(&j, ScimType::DateTime),
            Some(Value::Timestamp(1_700_000_000))
        );
    }

    #[test]
    fn filter_literals_are_escaped() {
        assert_eq!(filter_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}

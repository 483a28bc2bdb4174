//! The SCIM schemas the profile store serves (RFC 7643): the core User and Group, the enterprise
//! user extension, and the profile extension whose properties come from the configuration. One
//! description drives validation, filtering, PATCH paths, authorization (user-editable) and the
//! `/Schemas` document, so they cannot disagree.

use serde::Deserialize;
use serde_json::{json, Value};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PROFILE_SCHEMA: &str = "urn:idsync:params:scim:schemas:extension:profile:2.0:User";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// An attribute's SCIM type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttrType {
    String,
    Boolean,
    Integer,
    Decimal,
    DateTime,
    Reference,
    Complex,
}

impl AttrType {
    fn name(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Integer => "integer",
            AttrType::Decimal => "decimal",
            AttrType::DateTime => "dateTime",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
}

/// One attribute of a schema.
#[derive(Clone, Debug)]
pub struct Attribute {
    pub name: String,
    pub ty: AttrType,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub unique: bool,
    pub description: String,
    pub sub_attributes: Vec<Attribute>,
    pub canonical_values: Vec<String>,
    pub reference_types: Vec<String>,
    /// A person's own token may change it (profile extension properties only).
    pub user_editable: bool,
}

impl Attribute {
    fn new(name: &str, ty: AttrType) -> Attribute {
        Attribute {
            name: name.to_string(),
            ty,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            unique: false,
            description: String::new(),
            sub_attributes: Vec::new(),
            canonical_values: Vec::new(),
            reference_types: Vec::new(),
            user_editable: false,
        }
    }
    fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    fn read_only(mut self) -> Self {
        self.mutability = Mutability::ReadOnly;
        self
    }
    fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    fn describe(mut self, d: &str) -> Self {
        self.description = d.to_string();
        self
    }
    fn subs(mut self, subs: Vec<Attribute>) -> Self {
        self.sub_attributes = subs;
        self
    }
    fn refs(mut self, r: &[&str]) -> Self {
        self.reference_types = r.iter().map(|s| s.to_string()).collect();
        self
    }
    fn canonical(mut self, c: &[&str]) -> Self {
        self.canonical_values = c.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The sub-attribute named `name` (case-insensitive).
    pub fn sub(&self, name: &str) -> Option<&Attribute> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.ty.name(),
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
            },
            "returned": "default",
            "uniqueness": if self.unique { "server" } else { "none" },
        });
        if !self.sub_attributes.is_empty() {
            v["subAttributes"] =
                Value::Array(self.sub_attributes.iter().map(|a| a.to_json()).collect());
        }
        if !self.canonical_values.is_empty() {
            v["canonicalValues"] = json!(self.canonical_values);
        }
        if !self.reference_types.is_empty() {
            v["referenceTypes"] = json!(self.reference_types);
        }
        // RFC 7643 has no field for "a person may edit it" (and strict clients refuse unknown
        // fields), so the description says it, in words the API document fixes.
        if self.user_editable {
            v["description"] = Value::String(
                format!("{} (user-editable)", self.description)
                    .trim()
                    .to_string(),
            );
        }
        v
    }
}

/// A schema: its URN and attributes.
#[derive(Clone, Debug)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: Vec<Attribute>,
}

impl Schema {
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    pub fn to_json(&self, base: &str) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(|a| a.to_json()).collect::<Vec<_>>(),
            "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{}", self.id)},
        })
    }
}

/// A configured profile property (the `[[property]]` entries of the profile store's
/// configuration).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyConfig {
    pub name: String,
    #[serde(rename = "type", default = "default_type")]
    pub ty: PropertyType,
    #[serde(default)]
    pub multi_valued: bool,
    #[serde(default)]
    pub editable: bool,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PropertyType {
    String,
    Integer,
    Boolean,
    DateTime,
}

fn default_type() -> PropertyType {
    PropertyType::String
}

/// The default profile properties.
pub fn default_properties() -> Vec<PropertyConfig> {
    let p = |name: &str, multi: bool, editable: bool, d: &str| PropertyConfig {
        name: name.to_string(),
        ty: PropertyType::String,
        multi_valued: multi,
        editable,
        description: d.to_string(),
    };
    vec![
        p(
            "aboutMe",
            false,
            true,
            "A few words the person writes about themselves.",
        ),
        p("skills", true, true, "The person's skills."),
        p("interests", true, true, "The person's interests."),
        p(
            "office",
            false,
            false,
            "The office the person works in (set by the engine).",
        ),
    ]
}

/// The set of schemas a running profile store serves.
#[derive(Clone, Debug)]
pub struct Schemas {
    pub user: Schema,
    pub enterprise: Schema,
    pub profile: Schema,
    pub group: Schema,
}

/// Where an attribute lives: the core schema or an extension (by URN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Core,
    Extension(&'static str),
}

impl Schemas {
    pub fn new(properties: &[PropertyConfig]) -> Result<Schemas, String> {
        let mut profile_attrs = Vec::new();
        for p in properties {
            let valid = !p.name.is_empty()
                && p.name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(format!(
                    "property name `{}` is not a valid SCIM attribute name",
                    p.name
                ));
            }
            if p.name.eq_ignore_ascii_case("photoHash")
                || profile_attrs
                    .iter()
                    .any(|a: &Attribute| a.name.eq_ignore_ascii_case(&p.name))
            {
                return Err(format!(
                    "property `{}` is defined twice (or clashes with photoHash)",
                    p.name
                ));
            }
            let ty = match p.ty {
                PropertyType::String => AttrType::String,
                PropertyType::Integer => AttrType::Integer,
                PropertyType::Boolean => AttrType::Boolean,
                PropertyType::DateTime => AttrType::DateTime,
            };
            let mut a = Attribute::new(&p.name, ty).describe(&p.description);
            a.multi_valued = p.multi_valued;
            a.user_editable = p.editable;
            profile_attrs.push(a);
        }
        profile_attrs.push(
            Attribute::new("photoHash", AttrType::String)
                .read_only()
                .case_exact()
                .describe("Lowercase hex BLAKE3 of the current photo's original bytes; absent without a photo."),
        );
        let s = |n: &str| Attribute::new(n, AttrType::String);
        let user = Schema {
            id: USER_SCHEMA,
            name: "User",
            description: "User Account",
            attributes: vec![
                s("userName")
                    .required()
                    .unique()
                    .describe("Unique identifier for the User, case-insensitive."),
                s("name")
                    .describe("The components of the user's name.")
                    .subs(vec![s("formatted"), s("familyName"), s("givenName")])
                    .with_type(AttrType::Complex),
                s("displayName").describe("The name of the User, suitable for display."),
                s("title").describe("The user's title."),
                s("emails")
                    .multi()
                    .with_type(AttrType::Complex)
                    .describe("Email addresses.")
                    .subs(vec![
                        s("value"),
                        s("type").canonical(&["work", "home", "other"]),
                        Attribute::new("primary", AttrType::Boolean),
                    ]),
                s("phoneNumbers")
                    .multi()
                    .with_type(AttrType::Complex)
                    .describe("Phone numbers.")
                    .subs(vec![
                        s("value"),
                        s("type").canonical(&["work", "home", "mobile", "fax", "pager", "other"]),
                    ]),
                Attribute::new("active", AttrType::Boolean)
                    .describe("The user's administrative status."),
                s("photos")
                    .multi()
                    .with_type(AttrType::Complex)
                    .read_only()
                    .describe("The user's photo (read-only here; upload to /Users/{id}/photo).")
                    .subs(vec![
                        Attribute::new("value", AttrType::Reference)
                            .refs(&["external"])
                            .read_only()
                            .case_exact(),
                        s("type").canonical(&["photo", "thumbnail"]).read_only(),
                    ]),
                s("groups")
                    .multi()
                    .with_type(AttrType::Complex)
                    .read_only()
                    .describe("The groups the user belongs to.")
                    .subs(vec![
                        s("value").read_only(),
                        Attribute::new("$ref", AttrType::Reference)
                            .refs(&["Group"])
                            .read_only(),
                        s("display").read_only(),
                        s("type").canonical(&["direct"]).read_only(),
                    ]),
            ],
        };
        let enterprise = Schema {
            id: ENTERPRISE_SCHEMA,
            name: "EnterpriseUser",
            description: "Enterprise User",
            attributes: vec![
                s("employeeNumber"),
                s("costCenter"),
                s("organization"),
                s("division"),
                s("department"),
                s("manager").with_type(AttrType::Complex).subs(vec![
                    s("value"),
                    Attribute::new("$ref", AttrType::Reference).refs(&["User"]),
                    s("displayName").read_only(),
                ]),
            ],
        };
        let profile = Schema {
            id: PROFILE_SCHEMA,
            name: "Profile",
            description: "idsync profile properties",
            attributes: profile_attrs,
        };
        let group = Schema {
            id: GROUP_SCHEMA,
            name: "Group",
            description: "Group",
            attributes: vec![
                s("displayName")
                    .required()
                    .describe("A human-readable name for the Group."),
                s("members")
                    .multi()
                    .with_type(AttrType::Complex)
                    .describe("The members of the Group.")
                    .subs(vec![
                        s("value").case_exact(),
                        Attribute::new("$ref", AttrType::Reference).refs(&["User", "Group"]),
                        s("display").read_only(),
                        s("type").canonical(&["User", "Group"]),
                    ]),
            ],
        };
        Ok(Schemas {
            user,
            enterprise,
            profile,
            group,
        })
    }

    pub fn all(&self) -> [&Schema; 4] {
        [&self.user, &self.group, &self.enterprise, &self.profile]
    }

    pub fn by_urn(&self, urn: &str) -> Option<&Schema> {
        self.all()
            .into_iter()
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// The extensions of a resource type.
    pub fn extensions(&self, kind: Kind) -> Vec<&Schema> {
        match kind {
            Kind::User => vec![&self.enterprise, &self.profile],
            Kind::Group => vec![],
        }
    }

    pub fn core(&self, kind: Kind) -> &Schema {
        match kind {
            Kind::User => &self.user,
            Kind::Group => &self.group,
        }
    }

    /// The top-level attribute `name` of `kind`, in the core schema or (with `urn`) an extension.
    pub fn resolve(
        &self,
        kind: Kind,
        urn: Option<&str>,
        name: &str,
    ) -> Option<(Place, &Attribute)> {
        match urn {
            None => self.core(kind).attr(name).map(|a| (Place::Core, a)),
            Some(u) if u.eq_ignore_ascii_case(self.core(kind).id) => {
                self.core(kind).attr(name).map(|a| (Place::Core, a))
            }
            Some(u) => {
                let ext = self
                    .extensions(kind)
                    .into_iter()
                    .find(|s| s.id.eq_ignore_ascii_case(u))?;
                ext.attr(name).map(|a| (Place::Extension(ext.id), a))
            }
        }
    }
}

impl Attribute {
    fn with_type(mut self, ty: AttrType) -> Self {
        self.ty = ty;
        self
    }
}

/// A resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
}

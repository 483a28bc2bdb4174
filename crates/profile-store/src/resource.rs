//! Resources as JSON: checking and normalising what a client sends against the schemas (names
//! to their canonical spelling, values to their types, read-only attributes dropped), applying
//! PATCH operations, and projecting a response onto `attributes`/`excludedAttributes`. Pure
//! functions over `serde_json` values; storage and HTTP live elsewhere.

use crate::error::ScimError;
use crate::filter::{parse_attr_path, parse_patch_path, AttrPath, CompValue, Filter, Op};
use crate::schema::{AttrType, Attribute, Kind, Mutability, Place, Schema, Schemas};
use serde_json::{Map, Value};

pub type Doc = Map<String, Value>;

fn find_key<'a>(m: &'a Doc, name: &str) -> Option<&'a String> {
    m.keys().find(|k| k.eq_ignore_ascii_case(name))
}

/// Checks one value against its attribute; `None` means "absent" (null, empty list).
fn check_value(attr: &Attribute, value: &Value, place: &str) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attr.multi_valued {
        let items: Vec<Value> = match value {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(v) = check_single(attr, item, &format!("{place}[{i}]"))? {
                out.push(v);
            }
        }
        return Ok(if out.is_empty() {
            None
        } else {
            Some(Value::Array(out))
        });
    }
    check_single(attr, value, place)
}

fn check_single(attr: &Attribute, value: &Value, place: &str) -> Result<Option<Value>, ScimError> {
    let wrong = |what: &str| {
        Err(ScimError::bad(
            "invalidValue",
            format!("attribute `{place}` must be {what}, not {value}"),
        ))
    };
    match (attr.ty, value) {
        (_, Value::Null) => Ok(None),
        (AttrType::String | AttrType::Reference, Value::String(_)) => Ok(Some(value.clone())),
        (AttrType::String | AttrType::Reference, _) => wrong("a string"),
        (AttrType::DateTime, Value::String(s)) => {
            if time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .is_err()
            {
                return wrong("an RFC 3339 date-time");
            }
            Ok(Some(value.clone()))
        }
        (AttrType::DateTime, _) => wrong("an RFC 3339 date-time string"),
        (AttrType::Boolean, Value::Bool(_)) => Ok(Some(value.clone())),
        (AttrType::Boolean, Value::String(s))
            if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
        {
            Ok(Some(Value::Bool(s.eq_ignore_ascii_case("true"))))
        }
        (AttrType::Boolean, _) => wrong("a boolean"),
        (AttrType::Integer, Value::Number(n)) if n.is_i64() => Ok(Some(value.clone())),
        (AttrType::Integer, _) => wrong("an integer"),
        (AttrType::Decimal, Value::Number(_)) => Ok(Some(value.clone())),
        (AttrType::Decimal, _) => wrong("a number"),
        (AttrType::Complex, Value::Object(m)) => {
            let mut out = Map::new();
            for (k, v) in m {
                let Some(sub) = attr.sub(k) else {
                    return Err(ScimError::bad(
                        "invalidSyntax",
                        format!("unknown attribute `{place}.{k}`"),
                    ));
                };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(v) = check_single(sub, v, &format!("{place}.{}", sub.name))? {
                    out.insert(sub.name.clone(), v);
                }
            }
            Ok(if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            })
        }
        (AttrType::Complex, _) => wrong("an object"),
    }
}

fn check_schema_attrs(
    schema: &Schema,
    input: &Doc,
    prefix: &str,
    out: &mut Doc,
) -> Result<(), ScimError> {
    for (k, v) in input {
        if !prefix.is_empty() && k.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let Some(attr) = schema.attr(k) else {
            return Err(ScimError::bad(
                "invalidSyntax",
                format!("unknown attribute `{prefix}{k}`"),
            ));
        };
        if attr.mutability == Mutability::ReadOnly {
            continue;
        }
        if let Some(v) = check_value(attr, v, &format!("{prefix}{}", attr.name))? {
            out.insert(attr.name.clone(), v);
        }
    }
    Ok(())
}

/// Checks and normalises a resource body (POST, PUT, or the result of a PATCH).
pub fn normalize(schemas: &Schemas, kind: Kind, input: &Value) -> Result<Doc, ScimError> {
    let Value::Object(m) = input else {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the body must be a JSON object",
        ));
    };
    let core = schemas.core(kind);
    let mut out = Map::new();
    let mut core_in = Map::new();
    for (k, v) in m {
        if k.eq_ignore_ascii_case("schemas") {
            let ok = v.as_array().is_some_and(|a| {
                a.iter().all(|s| {
                    s.as_str().is_some_and(|s| {
                        s.eq_ignore_ascii_case(core.id)
                            || schemas
                                .extensions(kind)
                                .iter()
                                .any(|e| e.id.eq_ignore_ascii_case(s))
                    })
                })
            });
            if !ok {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!(
                        "`schemas` must list {} and its extensions only, not {v}",
                        core.id
                    ),
                ));
            }
            continue;
        }
        if k.eq_ignore_ascii_case("id") || k.eq_ignore_ascii_case("meta") {
            continue;
        }
        if k.eq_ignore_ascii_case("externalId") {
            match v {
                Value::String(_) => {
                    out.insert("externalId".into(), v.clone());
                }
                Value::Null => {}
                _ => {
                    return Err(ScimError::bad(
                        "invalidValue",
                        "attribute `externalId` must be a string",
                    ))
                }
            }
            continue;
        }
        if let Some(ext) = schemas
            .extensions(kind)
            .into_iter()
            .find(|e| e.id.eq_ignore_ascii_case(k))
        {
            match v {
                Value::Object(em) => {
                    let mut eo = Map::new();
                    check_schema_attrs(ext, em, &format!("{}:", ext.id), &mut eo)?;
                    if !eo.is_empty() {
                        out.insert(ext.id.to_string(), Value::Object(eo));
                    }
                }
                Value::Null => {}
                _ => {
                    return Err(ScimError::bad(
                        "invalidValue",
                        format!("`{}` must be an object", ext.id),
                    ))
                }
            }
            continue;
        }
        core_in.insert(k.clone(), v.clone());
    }
    check_schema_attrs(core, &core_in, "", &mut out)?;
    for a in &core.attributes {
        let present = out.get(&a.name).is_some_and(|v| v.as_str() != Some(""));
        if a.required && !present {
            return Err(ScimError::bad(
                "invalidValue",
                format!("attribute `{}` is required", a.name),
            ));
        }
    }
    Ok(out)
}

/// Where a PATCH operation points.
enum Target<'a> {
    /// A whole extension object.
    Extension(&'a Schema),
    Attr {
        place: Place,
        attr: &'a Attribute,
        filter: Option<Filter>,
        sub: Option<&'a Attribute>,
    },
}

fn resolve_target<'a>(
    schemas: &'a Schemas,
    kind: Kind,
    path: &str,
) -> Result<Target<'a>, ScimError> {
    if let Some(ext) = schemas
        .extensions(kind)
        .into_iter()
        .find(|e| e.id.eq_ignore_ascii_case(path.trim()))
    {
        return Ok(Target::Extension(ext));
    }
    let p = parse_patch_path(path)
        .map_err(|e| ScimError::bad("invalidPath", format!("path `{path}`: {e}")))?;
    let (place, attr) = schemas
        .resolve(kind, p.attr.urn.as_deref(), &p.attr.name)
        .ok_or_else(|| {
            ScimError::bad(
                "invalidPath",
                format!("path `{path}`: no attribute `{}`", p.attr),
            )
        })?;
    let sub_name = p.attr.sub.as_deref().or(p.sub.as_deref());
    let sub = match sub_name {
        None => None,
        Some(s) => Some(attr.sub(s).ok_or_else(|| {
            ScimError::bad(
                "invalidPath",
                format!("path `{path}`: `{}` has no sub-attribute `{s}`", attr.name),
            )
        })?),
    };
    if p.filter.is_some() && !(attr.multi_valued && attr.ty == AttrType::Complex) {
        return Err(ScimError::bad(
            "invalidPath",
            format!("path `{path}`: a value filter needs a multi-valued complex attribute"),
        ));
    }
    if attr.mutability == Mutability::ReadOnly
        || sub.is_some_and(|s| s.mutability == Mutability::ReadOnly)
    {
        return Err(ScimError::bad(
            "mutability",
            format!("path `{path}` is read-only"),
        ));
    }
    Ok(Target::Attr {
        place,
        attr,
        filter: p.filter,
        sub,
    })
}

fn container(doc: &mut Doc, place: Place) -> &mut Doc {
    match place {
        Place::Core => doc,
        Place::Extension(urn) => {
            let e = doc
                .entry(urn.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            match e {
                Value::Object(m) => m,
                _ => unreachable!("just made an object"),
            }
        }
    }
}

fn take_key(m: &mut Doc, name: &str) -> Option<Value> {
    let k = find_key(m, name)?.clone();
    m.remove(&k)
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => vec![],
        o => vec![o.clone()],
    }
}

/// Sets sub-attributes of `obj` from `value` (an object), keeping the others.
fn merge_object(obj: &mut Value, value: &Value, path: &str) -> Result<(), ScimError> {
    let Value::Object(vm) = value else {
        return Err(ScimError::bad(
            "invalidValue",
            format!("the value for `{path}` must be an object"),
        ));
    };
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    if let Value::Object(om) = obj {
        for (k, v) in vm {
            take_key(om, k);
            om.insert(k.clone(), v.clone());
        }
    }
    Ok(())
}

/// Evaluates a value filter against one value of a multi-valued complex attribute.
pub fn matches(f: &Filter, item: &Value) -> bool {
    match f {
        Filter::And(a, b) => matches(a, item) && matches(b, item),
        Filter::Or(a, b) => matches(a, item) || matches(b, item),
        Filter::Not(a) => !matches(a, item),
        Filter::ValuePath(_, _) => false,
        Filter::Present(p) => {
            field(item, p).is_some_and(|v| !v.is_null() && v != &Value::String(String::new()))
        }
        Filter::Compare(p, op, cv) => {
            let Some(v) = field(item, p) else {
                return *op == Op::Ne;
            };
            compare(v, *op, cv)
        }
    }
}

fn field<'v>(item: &'v Value, p: &AttrPath) -> Option<&'v Value> {
    let m = item.as_object()?;
    let v = m.get(find_key(m, &p.name)?)?;
    match &p.sub {
        None => Some(v),
        Some(s) => {
            let mm = v.as_object()?;
            mm.get(find_key(mm, s)?)
        }
    }
}

fn compare(v: &Value, op: Op, cv: &CompValue) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (v, cv) {
        (Value::String(a), CompValue::Str(b)) => {
            let (a, b) = (crate::fold::fold(a), crate::fold::fold(b));
            match op {
                Op::Co => return a.contains(&*b),
                Op::Sw => return a.starts_with(&*b),
                Op::Ew => return a.ends_with(&*b),
                _ => Some(a.cmp(&b)),
            }
        }
        (Value::Bool(a), CompValue::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), CompValue::Num(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (_, CompValue::Null) => return op == Op::Ne,
        _ => None,
    };
    match (op, ord) {
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Ne, Some(o)) => o != Ordering::Equal,
        (Op::Ne, None) => true,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        _ => false,
    }
}

fn apply_one(
    schemas: &Schemas,
    kind: Kind,
    doc: &mut Doc,
    op: &str,
    path: Option<&str>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let need_value = || {
        value
            .filter(|v| !v.is_null())
            .ok_or_else(|| ScimError::bad("invalidValue", format!("`{op}` needs a `value`")))
    };
    let Some(path) = path.filter(|p| !p.trim().is_empty()) else {
        if op == "remove" {
            return Err(ScimError::bad("noTarget", "`remove` needs a `path`"));
        }
        let Value::Object(m) = need_value()? else {
            return Err(ScimError::bad(
                "invalidValue",
                format!("`{op}` without a path needs an object value"),
            ));
        };
        for (k, v) in m {
            if k.eq_ignore_ascii_case("schemas")
                || k.eq_ignore_ascii_case("id")
                || k.eq_ignore_ascii_case("meta")
            {
                continue;
            }
            if k.eq_ignore_ascii_case("externalId") {
                doc.insert("externalId".into(), v.clone());
                continue;
            }
            apply_one(schemas, kind, doc, op, Some(k), Some(v))?;
        }
        return Ok(());
    };
    if path.eq_ignore_ascii_case("externalId") {
        match op {
            "remove" => {
                doc.remove("externalId");
            }
            _ => {
                doc.insert("externalId".into(), need_value()?.clone());
            }
        }
        return Ok(());
    }
    match resolve_target(schemas, kind, path)? {
        Target::Extension(ext) => {
            if op == "remove" {
                doc.remove(ext.id);
                return Ok(());
            }
            let Value::Object(m) = need_value()? else {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("the value for `{path}` must be an object"),
                ));
            };
            for (k, v) in m {
                if k.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                let full = format!("{}:{k}", ext.id);
                apply_one(schemas, kind, doc, op, Some(&full), Some(v))?;
            }
            Ok(())
        }
        Target::Attr {
            place,
            attr,
            filter,
            sub,
        } => {
            let c = container(doc, place);
            let name = attr.name.as_str();
            let current = take_key(c, name);
            let result: Option<Value> = match (filter, sub) {
                (None, None) => match op {
                    "remove" => None,
                    "add" if attr.multi_valued => {
                        let mut list = current.as_ref().map(as_list).unwrap_or_default();
                        for v in as_list(need_value()?) {
                            if !list.contains(&v) {
                                list.push(v);
                            }
                        }
                        Some(Value::Array(list))
                    }
                    "add" if attr.ty == AttrType::Complex => {
                        let mut obj = current.clone().unwrap_or(Value::Null);
                        merge_object(&mut obj, need_value()?, path)?;
                        Some(obj)
                    }
                    _ => Some(need_value()?.clone()),
                },
                (None, Some(sub)) => {
                    if attr.multi_valued {
                        let mut list = current.as_ref().map(as_list).unwrap_or_default();
                        for item in list.iter_mut() {
                            if let Value::Object(m) = item {
                                take_key(m, &sub.name);
                                if op != "remove" {
                                    m.insert(sub.name.clone(), need_value()?.clone());
                                }
                            }
                        }
                        Some(Value::Array(list))
                    } else {
                        let mut obj = match current.clone() {
                            Some(v @ Value::Object(_)) => v,
                            _ => Value::Object(Map::new()),
                        };
                        if let Value::Object(m) = &mut obj {
                            take_key(m, &sub.name);
                            if op != "remove" {
                                m.insert(sub.name.clone(), need_value()?.clone());
                            }
                        }
                        Some(obj)
                    }
                }
                (Some(f), sub) => {
                    let mut list = current.as_ref().map(as_list).unwrap_or_default();
                    let hits: Vec<usize> =
                        (0..list.len()).filter(|i| matches(&f, &list[*i])).collect();
                    if hits.is_empty() {
                        c.insert(name.to_string(), current.unwrap_or(Value::Null));
                        return Err(ScimError::bad(
                            "noTarget",
                            format!("path `{path}` matches no value"),
                        ));
                    }
                    match (op, sub) {
                        ("remove", None) => {
                            let mut i = 0;
                            list.retain(|_| {
                                let keep = !hits.contains(&i);
                                i += 1;
                                keep
                            });
                        }
                        (_, None) => {
                            for &i in &hits {
                                if op == "add" {
                                    merge_object(&mut list[i], need_value()?, path)?;
                                } else {
                                    list[i] = need_value()?.clone();
                                }
                            }
                        }
                        (_, Some(sub)) => {
                            for &i in &hits {
                                if let Value::Object(m) = &mut list[i] {
                                    take_key(m, &sub.name);
                                    if op != "remove" {
                                        m.insert(sub.name.clone(), need_value()?.clone());
                                    }
                                }
                            }
                        }
                    }
                    Some(Value::Array(list))
                }
            };
            if let Some(v) = result {
                c.insert(name.to_string(), v);
            }
            if let Place::Extension(urn) = place {
                if doc
                    .get(urn)
                    .and_then(Value::as_object)
                    .is_some_and(|m| m.is_empty())
                {
                    doc.remove(urn);
                }
            }
            Ok(())
        }
    }
}

/// Applies a PatchOp body to a stored document and returns the new, normalised document.
pub fn apply_patch(
    schemas: &Schemas,
    kind: Kind,
    doc: &Doc,
    body: &Value,
) -> Result<Doc, ScimError> {
    let ops = body
        .get("Operations")
        .or_else(|| body.get("operations"))
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::bad("invalidSyntax", "a PatchOp needs an `Operations` array"))?;
    if ops.is_empty() {
        return Err(ScimError::bad("invalidSyntax", "`Operations` is empty"));
    }
    let mut work = doc.clone();
    for (i, o) in ops.iter().enumerate() {
        let op = o
            .get("op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| {
                ScimError::bad("invalidSyntax", format!("Operations[{i}] has no `op`"))
            })?;
        if !matches!(op.as_str(), "add" | "replace" | "remove") {
            return Err(ScimError::bad(
                "invalidSyntax",
                format!("Operations[{i}]: unknown op `{op}` (add, replace or remove)"),
            ));
        }
        let path = match o.get("path") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("Operations[{i}]: `path` must be a string"),
                ))
            }
        };
        apply_one(schemas, kind, &mut work, &op, path, o.get("value")).map_err(|mut e| {
            e.detail = format!("Operations[{i}]: {}", e.detail);
            e
        })?;
    }
    let mut v = Value::Object(work);
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null());
    }
    normalize(schemas, kind, &v)
}

/// A parsed `attributes` or `excludedAttributes` entry.
#[derive(Clone, Debug)]
pub struct Projection {
    /// (extension URN or None, attribute, sub-attribute); attribute None = the whole extension.
    paths: Vec<(Option<String>, Option<String>, Option<String>)>,
}

impl Projection {
    /// Parses a comma-separated list. `lenient` skips names the resource type does not have
    /// (a search over several resource types).
    pub fn parse(
        schemas: &Schemas,
        kind: Kind,
        list: &str,
        lenient: bool,
    ) -> Result<Option<Projection>, ScimError> {
        let mut paths = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(ext) = schemas
                .extensions(kind)
                .into_iter()
                .find(|e| e.id.eq_ignore_ascii_case(item))
            {
                paths.push((Some(ext.id.to_string()), None, None));
                continue;
            }
            let p = parse_attr_path(item, 0)
                .map_err(|e| ScimError::bad("invalidPath", format!("attribute `{item}`: {e}")))?;
            let top = ["id", "externalId", "meta", "schemas"];
            if p.urn.is_none() && top.iter().any(|t| t.eq_ignore_ascii_case(&p.name)) {
                paths.push((None, Some(p.name.clone()), p.sub.clone()));
                continue;
            }
            let Some((place, attr)) = schemas.resolve(kind, p.urn.as_deref(), &p.name) else {
                if lenient {
                    continue;
                }
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("unknown attribute `{item}`"),
                ));
            };
            let urn = match place {
                Place::Core => None,
                Place::Extension(u) => Some(u.to_string()),
            };
            paths.push((urn, Some(attr.name.clone()), p.sub.clone()));
        }
        Ok(if paths.is_empty() {
            None
        } else {
            Some(Projection { paths })
        })
    }

    /// Keeps only the listed attributes (and `id`, `schemas`).
    pub fn include(&self, v: &mut Value) {
        let Value::Object(m) = v else { return };
        let old = std::mem::take(m);
        for (k, val) in old.iter() {
            if k == "id" || k == "schemas" {
                m.insert(k.clone(), val.clone());
            }
        }
        for (urn, attr, sub) in &self.paths {
            let (src, dst): (Option<&Doc>, &mut Doc) = match urn {
                None => (Some(&old), &mut *m),
                Some(u) => {
                    let src = old.get(u).and_then(Value::as_object);
                    if src.is_none() {
                        continue;
                    }
                    let e = m
                        .entry(u.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    match e {
                        Value::Object(d) => (src, d),
                        _ => continue,
                    }
                }
            };
            let Some(src) = src else { continue };
            match attr {
                None => {
                    for (k, val) in src {
                        dst.insert(k.clone(), val.clone());
                    }
                }
                Some(a) => {
                    let Some(key) = find_key(src, a) else {
                        continue;
                    };
                    let val = &src[key];
                    match sub {
                        None => {
                            dst.insert(key.clone(), val.clone());
                        }
                        Some(s) => {
                            let picked = pick_sub(val, s);
                            if let Some(p) = picked {
                                let entry = dst.entry(key.clone()).or_insert(Value::Null);
                                merge_projection(entry, p);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Removes the listed attributes (never `id` or `schemas`).
    pub fn exclude(&self, v: &mut Value) {
        let Value::Object(m) = v else { return };
        for (urn, attr, sub) in &self.paths {
            let target: &mut Doc = match urn {
                None => &mut *m,
                Some(u) => match m.get_mut(u) {
                    Some(Value::Object(e)) => e,
                    _ => continue,
                },
            };
            match (attr, sub) {
                (None, _) => {
                    if let Some(u) = urn {
                        m.remove(u);
                    }
                }
                (Some(a), None) => {
                    if a == "id" || a == "schemas" {
                        continue;
                    }
                    take_key(target, a);
                }
                (Some(a), Some(s)) => {
                    if let Some(k) = find_key(target, a).cloned() {
                        match target.get_mut(&k) {
                            Some(Value::Object(o)) => {
                                take_key(o, s);
                            }
                            Some(Value::Array(items)) => {
                                for it in items.iter_mut() {
                                    if let Value::Object(o) = it {
                                        take_key(o, s);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
}

fn pick_sub(val: &Value, s: &str) -> Option<Value> {
    match val {
        Value::Object(o) => {
            let k = find_key(o, s)?;
            let mut r = Map::new();
            r.insert(k.clone(), o[k].clone());
            Some(Value::Object(r))
        }
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|i| pick_sub(i, s).unwrap_or(Value::Object(Map::new())))
                .collect(),
        )),
        _ => None,
    }
}

fn merge_projection(entry: &mut Value, p: Value) {
    match (entry, p) {
        (Value::Object(e), Value::Object(p)) => e.extend(p),
        (Value::Array(e), Value::Array(p)) if e.len() == p.len() => {
            for (a, b) in e.iter_mut().zip(p) {
                merge_projection(a, b);
            }
        }
        (e, p) => *e = p,
    }
}

/// The attributes a person may change in their own profile: whether `old` and `new` differ
/// anywhere else. Returns the first attribute that differs and is not user-editable.
pub fn non_editable_change(schemas: &Schemas, old: &Doc, new: &Doc) -> Option<String> {
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for k in keys {
        let (a, b) = (old.get(k), new.get(k));
        if a == b {
            continue;
        }
        if k == schemas.profile.id {
            let empty = Map::new();
            let a = a.and_then(Value::as_object).unwrap_or(&empty);
            let b = b.and_then(Value::as_object).unwrap_or(&empty);
            let inner: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for ik in inner {
                if a.get(ik) != b.get(ik)
                    && !schemas.profile.attr(ik).is_some_and(|x| x.user_editable)
                {
                    return Some(ik.clone());
                }
            }
            continue;
        }
        // Any other extension (the enterprise one's `manager`, `employeeNumber`) is named by
        // the attribute that differs, not by the extension's whole URN.
        if k.starts_with("urn:") {
            let empty = Map::new();
            let a = a.and_then(Value::as_object).unwrap_or(&empty);
            let b = b.and_then(Value::as_object).unwrap_or(&empty);
            if let Some(ik) = a.keys().chain(b.keys()).find(|ik| a.get(*ik) != b.get(*ik)) {
                return Some(ik.clone());
            }
        }
        return Some(k.clone());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::default_properties;
    use serde_json::json;

    fn schemas() -> Schemas {
        Schemas::new(&default_properties()).unwrap()
    }

    #[test]
    fn normalizes_names_and_drops_read_only() {
        let s = schemas();
        let d = normalize(&s, Kind::User, &json!({"USERNAME": "a", "Name": {"GIVENNAME": "x"}, "groups": [{"value": "g"}], "id": "z"})).unwrap();
        assert_eq!(
            Value::Object(d),
            json!({"userName": "a", "name": {"givenName": "x"}})
        );
        let e = normalize(&s, Kind::User, &json!({"userName": "a", "shoeSize": 3})).unwrap_err();
        assert!(e.detail.contains("shoeSize"));
        assert!(normalize(&s, Kind::User, &json!({"displayName": "a"})).is_err());
        assert!(normalize(&s, Kind::User, &json!({"userName": "a", "active": 3})).is_err());
    }

    #[test]
    fn patch_ops() {
        let s = schemas();
        let d = normalize(&s, Kind::User, &json!({"userName": "a", "emails": [{"value": "a@w", "type": "work"}, {"value": "a@h", "type": "home"}]})).unwrap();
        let p = apply_patch(&s, Kind::User, &d, &json!({"Operations": [
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@w"},
            {"op": "remove", "path": "emails[type eq \"home\"]"},
            {"op": "add", "path": "urn:idsync:params:scim:schemas:extension:profile:2.0:User:skills", "value": ["rust"]},
            {"op": "add", "value": {"displayName": "A"}},
        ]})).unwrap();
        assert_eq!(p["emails"], json!([{"value": "b@w", "type": "work"}]));
        assert_eq!(p["displayName"], json!("A"));
        assert_eq!(
            p["urn:idsync:params:scim:schemas:extension:profile:2.0:User"]["skills"],
            json!(["rust"])
        );
        let e = apply_patch(
            &s,
            Kind::User,
            &d,
            &json!({"Operations": [{"op": "remove", "path": "emails[type eq \"x\"]"}]}),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some("noTarget"));
        let e = apply_patch(
            &s,
            Kind::User,
            &d,
            &json!({"Operations": [{"op": "remove", "path": "nope"}]}),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some("invalidPath"));
        let e = apply_patch(
            &s,
            Kind::User,
            &d,
            &json!({"Operations": [{"op": "replace", "path": "groups", "value": []}]}),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some("mutability"));
    }
}

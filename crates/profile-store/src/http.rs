//! The HTTP layer: routes, authentication, SCIM request and response shapes. Every answer that
//! is not a success is a SCIM error body (404s, 401/403, 405, 413, 415 included). Storage work
//! runs on the blocking pool, one transaction per request (per Bulk request too).

use crate::auth::{hash_token, Principal};
use crate::error::ScimError;
use crate::filter::parse_filter;
use crate::photo;
use crate::resource::{apply_patch, non_editable_change, normalize, Doc, Projection};
use crate::schema::*;
use crate::storage::{
    PhotoBytes, PhotoSize, ProfileStorage, Query as StoreQuery, ReadTx, Stored, TokenKind, WriteTx,
};
use crate::Config;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const SCIM_JSON: &str = "application/scim+json";
const MAX_COUNT: usize = 1000;
const MAX_BULK_OPS: usize = 1000;

#[derive(Clone)]
pub struct AppState {
    pub storage: Arc<dyn ProfileStorage>,
    pub schemas: Arc<Schemas>,
    pub config: Arc<Config>,
    /// The server-wide room for decoding photos.
    pub decode: Arc<photo::DecodeBudget>,
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, self.body().to_string()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        if self.status == 401 {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"idsync\""),
            );
        }
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

type Res = Result<Response, ScimError>;

fn scim_json(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    r
}

fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn router(state: AppState) -> Router {
    let photo_limit = state.config.photos.max_bytes;
    let json_limit = state.config.max_json_bytes;
    let timeout = Duration::from_secs(state.config.request_timeout_secs.max(1));
    let scim = Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type))
        .route("/Schemas", get(schemas_list))
        .route("/Schemas/{id}", get(schema_one))
        .route("/Users", get(list_users).post(create_user))
        .route("/Users/.search", post(search_users))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(put_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/Groups", get(list_groups).post(create_group))
        .route("/Groups/.search", post(search_groups))
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(put_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route("/.search", post(search_all))
        .route("/Bulk", post(bulk))
        .layer(DefaultBodyLimit::max(json_limit))
        .route(
            "/Users/{id}/photo",
            get(get_photo)
                .put(put_photo)
                .delete(delete_photo)
                .layer(DefaultBodyLimit::max(photo_limit)),
        );
    Router::new()
        .nest("/scim/v2", scim)
        .route("/changes", get(changes))
        .route("/changes/latest", get(changes_latest))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

async fn not_found() -> ScimError {
    ScimError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ScimError {
    ScimError::new(405, None, "method not allowed on this endpoint")
}

/// Runs storage work on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&AppState) -> Result<T, ScimError> + Send + 'static,
) -> Result<T, ScimError> {
    let s = state.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(ScimError::internal)?
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ScimError> {
    let token =
        bearer(headers).ok_or_else(|| ScimError::new(401, None, "a bearer token is required"))?;
    let tx = state.storage.read()?;
    let record = tx
        .token_by_hash(&hash_token(&token))?
        .ok_or_else(|| ScimError::new(401, None, "unknown or revoked token"))?;
    Ok(match record.kind {
        TokenKind::Engine => Principal::Engine,
        TokenKind::User(user_name) => {
            let user_id = tx.id_by_user_name(&user_name)?;
            Principal::Person { user_name, user_id }
        }
    })
}

fn engine_only(p: &Principal, what: &str) -> Result<(), ScimError> {
    match p {
        Principal::Engine => Ok(()),
        Principal::Person { .. } => Err(ScimError::forbidden(format!(
            "a person's token cannot {what}"
        ))),
    }
}

fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(b) = &state.config.base_url {
        return format!("{}/scim/v2", b.trim_end_matches('/'));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    format!("http://{host}/scim/v2")
}

fn check_json(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ScimError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ScimError::new(413, None, "the request body is too large")
        } else {
            ScimError::bad(
                "invalidSyntax",
                format!("cannot read the request body: {e}"),
            )
        }
    })?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if ct != SCIM_JSON && ct != "application/json" {
            return Err(ScimError::new(
                415,
                None,
                format!("unsupported media type `{ct}`: send application/scim+json"),
            ));
        }
    }
    serde_json::from_slice(&body).map_err(|e| {
        ScimError::bad(
            "invalidSyntax",
            format!(
                "malformed JSON at line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

// ---------- discovery ----------

async fn service_provider_config(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_url(&s, &headers);
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/idsync/idsync/blob/main/docs/profile-store-api.md",
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": MAX_BULK_OPS, "maxPayloadSize": s.config.max_json_bytes},
            "filter": {"supported": true, "maxResults": MAX_COUNT},
            "changePassword": {"supported": false},
            "sort": {"supported": true},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A token made with `idsync token create`, sent as `Authorization: Bearer <token>`.",
                "primary": true,
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
        }),
    )
}

fn resource_type_json(kind: Kind, s: &Schemas, base: &str) -> Value {
    let ext: Vec<Value> = s
        .extensions(kind)
        .iter()
        .map(|e| json!({"schema": e.id, "required": false}))
        .collect();
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": kind.name(),
        "name": kind.name(),
        "endpoint": format!("/{}", kind.endpoint()),
        "description": kind.name(),
        "schema": s.core(kind).id,
        "schemaExtensions": ext,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", kind.name())},
    })
}

fn list_response(total: usize, start: usize, items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}

async fn resource_types(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_url(&s, &headers);
    let items = vec![
        resource_type_json(Kind::User, &s.schemas, &base),
        resource_type_json(Kind::Group, &s.schemas, &base),
    ];
    scim_json(StatusCode::OK, &list_response(2, 1, items))
}

async fn resource_type(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Res {
    let base = base_url(&s, &headers);
    let kind = match id.as_str() {
        "User" => Kind::User,
        "Group" => Kind::Group,
        _ => return Err(ScimError::not_found(format!("no resource type `{id}`"))),
    };
    Ok(scim_json(
        StatusCode::OK,
        &resource_type_json(kind, &s.schemas, &base),
    ))
}

async fn schemas_list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_url(&s, &headers);
    let items: Vec<Value> = s.schemas.all().iter().map(|x| x.to_json(&base)).collect();
    scim_json(StatusCode::OK, &list_response(items.len(), 1, items))
}

async fn schema_one(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Res {
    let base = base_url(&s, &headers);
    let schema = s
        .schemas
        .by_urn(&id)
        .ok_or_else(|| ScimError::not_found(format!("no schema `{id}`")))?;
    Ok(scim_json(StatusCode::OK, &schema.to_json(&base)))
}

// ---------- rendering ----------

/// The full SCIM representation of a stored resource.
pub fn render(
    tx: &dyn ReadTx,
    schemas: &Schemas,
    base: &str,
    st: &Stored,
) -> Result<Value, ScimError> {
    let mut v = Map::new();
    let mut urns = vec![Value::String(schemas.core(st.kind).id.to_string())];
    v.insert("id".into(), Value::String(st.id.clone()));
    for (k, x) in &st.doc {
        v.insert(k.clone(), x.clone());
    }
    let loc = format!("{base}/{}/{}", st.kind.endpoint(), st.id);
    match st.kind {
        Kind::User => {
            if let Some(h) = &st.photo_hash {
                v.insert(
                    "photos".into(),
                    json!([{"value": format!("{loc}/photo"), "type": "photo"}]),
                );
                let p = v
                    .entry(PROFILE_SCHEMA.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = p {
                    m.insert("photoHash".into(), Value::String(h.clone()));
                }
            }
            let groups = tx.groups_of(&st.id)?;
            if !groups.is_empty() {
                let g: Vec<Value> = groups
                    .into_iter()
                    .map(|(id, name)| {
                        let mut o = json!({"value": id, "$ref": format!("{base}/Groups/{id}"), "type": "direct"});
                        if let Some(n) = name {
                            o["display"] = Value::String(n);
                        }
                        o
                    })
                    .collect();
                v.insert("groups".into(), Value::Array(g));
            }
            if let Some(Value::Object(m)) = v
                .get_mut(ENTERPRISE_SCHEMA)
                .and_then(|e| e.get_mut("manager"))
            {
                if let Some(id) = m.get("value").and_then(Value::as_str).map(str::to_string) {
                    m.entry("$ref")
                        .or_insert_with(|| Value::String(format!("{base}/Users/{id}")));
                    if let Some((_, Some(d))) = tx.display_name(&id)? {
                        m.insert("displayName".into(), Value::String(d));
                    }
                }
            }
        }
        Kind::Group => {
            if let Some(Value::Array(ms)) = v.get_mut("members") {
                for m in ms.iter_mut() {
                    let Some(id) = m.get("value").and_then(Value::as_str).map(str::to_string)
                    else {
                        continue;
                    };
                    let found = tx.display_name(&id)?;
                    if let Value::Object(o) = m {
                        let kind = found.as_ref().map(|f| f.0).unwrap_or(Kind::User);
                        o.entry("$ref").or_insert_with(|| {
                            Value::String(format!("{base}/{}/{id}", kind.endpoint()))
                        });
                        if let Some((_, Some(d))) = found {
                            o.insert("display".into(), Value::String(d));
                        }
                    }
                }
            }
        }
    }
    for e in schemas.extensions(st.kind) {
        if v.contains_key(e.id) {
            urns.push(Value::String(e.id.to_string()));
        }
    }
    v.insert("schemas".into(), Value::Array(urns));
    v.insert(
        "meta".into(),
        json!({
            "resourceType": st.kind.name(),
            "created": st.created,
            "lastModified": st.last_modified,
            "location": loc,
            "version": etag(st.version),
        }),
    );
    Ok(Value::Object(v))
}

fn resource_response(
    status: StatusCode,
    tx: &dyn ReadTx,
    s: &AppState,
    base: &str,
    st: &Stored,
    proj: &Projections,
) -> Res {
    let mut v = render(tx, &s.schemas, base, st)?;
    proj.apply(&mut v);
    let mut r = scim_json(status, &v);
    if let Ok(h) = HeaderValue::from_str(&etag(st.version)) {
        r.headers_mut().insert(header::ETAG, h);
    }
    if status == StatusCode::CREATED {
        if let Ok(h) = HeaderValue::from_str(&format!("{base}/{}/{}", st.kind.endpoint(), st.id)) {
            r.headers_mut().insert(header::LOCATION, h);
        }
    }
    Ok(r)
}

#[derive(Default)]
struct Projections {
    include: Option<Projection>,
    exclude: Option<Projection>,
}

impl Projections {
    fn parse(
        s: &Schemas,
        kind: Kind,
        attrs: Option<&str>,
        excl: Option<&str>,
    ) -> Result<Projections, ScimError> {
        Self::parse_with(s, kind, attrs, excl, false)
    }
    fn parse_with(
        s: &Schemas,
        kind: Kind,
        attrs: Option<&str>,
        excl: Option<&str>,
        lenient: bool,
    ) -> Result<Projections, ScimError> {
        Ok(Projections {
            include: attrs
                .map(|a| Projection::parse(s, kind, a, lenient))
                .transpose()?
                .flatten(),
            exclude: excl
                .map(|a| Projection::parse(s, kind, a, lenient))
                .transpose()?
                .flatten(),
        })
    }
    fn apply(&self, v: &mut Value) {
        if let Some(p) = &self.include {
            p.include(v);
        } else if let Some(p) = &self.exclude {
            p.exclude(v);
        }
    }
}

fn query_map(raw: Option<String>) -> Result<HashMap<String, String>, ScimError> {
    let raw = raw.unwrap_or_default();
    let mut out = HashMap::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| {
            let s = s.replace('+', " ");
            percent_decode(&s).ok_or_else(|| {
                ScimError::bad(
                    "invalidValue",
                    format!(
                        "query parameter `{}` is not valid percent-encoding",
                        crate::filter::clip(pair, 60)
                    ),
                )
            })
        };
        out.insert(dec(k)?, dec(v)?);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

// ---------- list and search ----------

struct SearchParams {
    filter: Option<String>,
    sort_by: Option<String>,
    descending: bool,
    start: usize,
    count: usize,
    attributes: Option<String>,
    excluded: Option<String>,
}

/// `sortOrder`: `ascending` (the default) or `descending` (RFC 7644 3.4.2.3), nothing else.
fn descending(order: Option<&str>) -> Result<bool, ScimError> {
    match order {
        None => Ok(false),
        Some(o) if o.eq_ignore_ascii_case("ascending") => Ok(false),
        Some(o) if o.eq_ignore_ascii_case("descending") => Ok(true),
        Some(o) => Err(ScimError::bad(
            "invalidValue",
            format!(
                "`sortOrder` is `ascending` or `descending`, not `{}`",
                crate::filter::clip(o, 40)
            ),
        )),
    }
}

fn search_params_from_query(q: &HashMap<String, String>) -> Result<SearchParams, ScimError> {
    let num = |name: &str, default: i64| -> Result<i64, ScimError> {
        match param(q, name) {
            None => Ok(default),
            Some(v) => v.trim().parse::<i64>().map_err(|_| {
                ScimError::bad(
                    "invalidValue",
                    format!("`{name}` must be an integer, not `{v}`"),
                )
            }),
        }
    };
    Ok(SearchParams {
        filter: param(q, "filter").map(str::to_string),
        sort_by: param(q, "sortBy").map(str::to_string),
        descending: descending(param(q, "sortOrder"))?,
        start: num("startIndex", 1)?.max(1) as usize,
        count: num("count", MAX_COUNT as i64)?.clamp(0, MAX_COUNT as i64) as usize,
        attributes: param(q, "attributes").map(str::to_string),
        excluded: param(q, "excludedAttributes").map(str::to_string),
    })
}

fn search_params_from_body(v: &Value) -> Result<SearchParams, ScimError> {
    let list = |name: &str| -> Option<String> {
        match v.get(name) {
            Some(Value::Array(a)) => Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    };
    let num = |name: &str, default: i64| -> Result<i64, ScimError> {
        match v.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x.as_i64().ok_or_else(|| {
                ScimError::bad("invalidValue", format!("`{name}` must be an integer"))
            }),
        }
    };
    Ok(SearchParams {
        filter: v.get("filter").and_then(Value::as_str).map(str::to_string),
        sort_by: v.get("sortBy").and_then(Value::as_str).map(str::to_string),
        descending: match v.get("sortOrder") {
            None | Some(Value::Null) => false,
            Some(Value::String(o)) => descending(Some(o))?,
            Some(other) => descending(Some(&other.to_string()))?,
        },
        start: num("startIndex", 1)?.max(1) as usize,
        count: num("count", MAX_COUNT as i64)?.clamp(0, MAX_COUNT as i64) as usize,
        attributes: list("attributes"),
        excluded: list("excludedAttributes"),
    })
}

fn store_query(p: &SearchParams, offset: usize, count: usize) -> Result<StoreQuery, ScimError> {
    let filter = match &p.filter {
        Some(f) if !f.trim().is_empty() => Some(parse_filter(f).map_err(|e| {
            ScimError::bad(
                "invalidFilter",
                format!(
                    "filter {e} (near `{}`)",
                    crate::filter::excerpt(f, e.position)
                ),
            )
        })?),
        _ => None,
    };
    Ok(StoreQuery {
        filter,
        sort_by: p.sort_by.clone().filter(|s| !s.trim().is_empty()),
        descending: p.descending,
        offset,
        count,
    })
}

async fn do_search(s: AppState, headers: HeaderMap, kinds: Vec<Kind>, p: SearchParams) -> Res {
    blocking(&s, move |s| {
        principal(s, &headers)?;
        let base = base_url(s, &headers);
        let tx = s.storage.read()?;
        let mut items = Vec::new();
        let mut total = 0;
        let mut offset = p.start - 1;
        let mut remaining = p.count;
        let lenient = kinds.len() > 1;
        for kind in kinds {
            let proj = Projections::parse_with(
                &s.schemas,
                kind,
                p.attributes.as_deref(),
                p.excluded.as_deref(),
                lenient,
            )?;
            let q = store_query(&p, offset, remaining)?;
            let (n, rows) = tx.search(kind, &q)?;
            total += n;
            offset = offset.saturating_sub(n);
            remaining -= rows.len();
            for st in &rows {
                let mut v = render(&*tx, &s.schemas, &base, st)?;
                proj.apply(&mut v);
                items.push(v);
            }
        }
        Ok(scim_json(
            StatusCode::OK,
            &list_response(total, p.start, items),
        ))
    })
    .await
}

async fn list(s: AppState, headers: HeaderMap, raw: Option<String>, kind: Kind) -> Res {
    let q = query_map(raw)?;
    let p = search_params_from_query(&q)?;
    do_search(s, headers, vec![kind], p).await
}

async fn list_users(State(s): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Res {
    list(s, headers, raw, Kind::User).await
}
async fn list_groups(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Res {
    list(s, headers, raw, Kind::Group).await
}

async fn search_post(
    s: AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    kinds: Vec<Kind>,
) -> Res {
    let v = check_json(&headers, body)?;
    let p = search_params_from_body(&v)?;
    do_search(s, headers, kinds, p).await
}

async fn search_users(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Res {
    search_post(s, headers, body, vec![Kind::User]).await
}
async fn search_groups(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Res {
    search_post(s, headers, body, vec![Kind::Group]).await
}
async fn search_all(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Res {
    search_post(s, headers, body, vec![Kind::User, Kind::Group]).await
}

// ---------- single resources ----------

async fn get_one(
    s: AppState,
    headers: HeaderMap,
    raw: Option<String>,
    kind: Kind,
    id: String,
) -> Res {
    let q = query_map(raw)?;
    let proj = Projections::parse(
        &s.schemas,
        kind,
        param(&q, "attributes"),
        param(&q, "excludedAttributes"),
    )?;
    blocking(&s, move |s| {
        principal(s, &headers)?;
        let base = base_url(s, &headers);
        let tx = s.storage.read()?;
        let st = tx
            .get(kind, &id)?
            .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", kind.name())))?;
        if let Some(inm) = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|h| h.to_str().ok())
        {
            if etag_matches(inm, &etag(st.version)) {
                let mut r = StatusCode::NOT_MODIFIED.into_response();
                if let Ok(h) = HeaderValue::from_str(&etag(st.version)) {
                    r.headers_mut().insert(header::ETAG, h);
                }
                return Ok(r);
            }
        }
        resource_response(StatusCode::OK, &*tx, s, &base, &st, &proj)
    })
    .await
}

async fn get_user(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Path(id): Path<String>,
) -> Res {
    get_one(s, headers, raw, Kind::User, id).await
}
async fn get_group(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Path(id): Path<String>,
) -> Res {
    get_one(s, headers, raw, Kind::Group, id).await
}

fn etag_matches(header_value: &str, current: &str) -> bool {
    let strip = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    header_value
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == strip(current))
}

/// Checks a group's members exist (a Bulk request may have created them just before).
fn check_members(tx: &dyn ReadTx, doc: &Doc) -> Result<(), ScimError> {
    if let Some(Value::Array(ms)) = doc.get("members") {
        for (i, m) in ms.iter().enumerate() {
            let id = m.get("value").and_then(Value::as_str).ok_or_else(|| {
                ScimError::bad(
                    "invalidValue",
                    format!("members[{i}] needs a `value` (a user id)"),
                )
            })?;
            if tx.display_name(id)?.is_none() {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("members[{i}]: no user or group with id `{id}`"),
                ));
            }
        }
    }
    Ok(())
}

/// The write operations, shared by the single-resource endpoints and Bulk.
fn op_create(
    tx: &mut dyn WriteTx,
    s: &AppState,
    who: &Principal,
    kind: Kind,
    body: &Value,
) -> Result<Stored, ScimError> {
    engine_only(who, &format!("create a {}", kind.name()))?;
    let doc = normalize(&s.schemas, kind, body)?;
    check_members(tx, &doc)?;
    // Time-ordered (version 7) ids: a new resource's id sorts after the others', so the id
    // indexes (the resource's, the change feed's, and the engine's anchor index) take it on their
    // last page instead of a random one, and a Bulk of 500 creates dirties a few pages rather
    // than hundreds. Its 74 random bits keep ids unguessable.
    let id = uuid::Uuid::now_v7().to_string();
    tx.insert(kind, &id, doc, &now())
}

fn authorize_update(
    s: &AppState,
    who: &Principal,
    kind: Kind,
    id: &str,
    old: &Doc,
    new: &Doc,
) -> Result<(), ScimError> {
    match who {
        Principal::Engine => Ok(()),
        Principal::Person { user_id, .. } => {
            if kind != Kind::User || user_id.as_deref() != Some(id) {
                return Err(ScimError::forbidden(
                    "a person's token may change only that person's own profile",
                ));
            }
            if let Some(attr) = non_editable_change(&s.schemas, old, new) {
                return Err(ScimError::forbidden(format!(
                    "`{attr}` is not user-editable"
                )));
            }
            Ok(())
        }
    }
}

fn current(
    tx: &dyn WriteTx,
    kind: Kind,
    id: &str,
    if_match: Option<&str>,
) -> Result<Stored, ScimError> {
    let st = tx
        .get(kind, id)?
        .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", kind.name())))?;
    if let Some(m) = if_match {
        if !etag_matches(m, &etag(st.version)) {
            return Err(ScimError::new(
                412,
                None,
                format!(
                    "If-Match {m} does not match the current version {}",
                    etag(st.version)
                ),
            ));
        }
    }
    Ok(st)
}

fn op_replace(
    tx: &mut dyn WriteTx,
    s: &AppState,
    who: &Principal,
    kind: Kind,
    id: &str,
    body: &Value,
    if_match: Option<&str>,
) -> Result<Stored, ScimError> {
    let old = current(tx, kind, id, if_match)?;
    let doc = normalize(&s.schemas, kind, body)?;
    authorize_update(s, who, kind, id, &old.doc, &doc)?;
    check_members(tx, &doc)?;
    if doc == old.doc {
        return Ok(old);
    }
    tx.update(kind, id, &doc, &now())
}

fn op_patch(
    tx: &mut dyn WriteTx,
    s: &AppState,
    who: &Principal,
    kind: Kind,
    id: &str,
    body: &Value,
    if_match: Option<&str>,
) -> Result<Stored, ScimError> {
    let old = current(tx, kind, id, if_match)?;
    let doc = apply_patch(&s.schemas, kind, &old.doc, body)?;
    authorize_update(s, who, kind, id, &old.doc, &doc)?;
    check_members(tx, &doc)?;
    if doc == old.doc {
        return Ok(old);
    }
    tx.update(kind, id, &doc, &now())
}

fn op_delete(
    tx: &mut dyn WriteTx,
    who: &Principal,
    kind: Kind,
    id: &str,
    if_match: Option<&str>,
) -> Result<(), ScimError> {
    engine_only(who, &format!("delete a {}", kind.name()))?;
    current(tx, kind, id, if_match)?;
    tx.delete(kind, id, &now())?;
    Ok(())
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
}

#[derive(Clone, Copy)]
enum Write {
    Create,
    Replace,
    Patch,
}

async fn write_one(
    s: AppState,
    headers: HeaderMap,
    raw: Option<String>,
    body: Result<Bytes, BytesRejection>,
    kind: Kind,
    id: Option<String>,
    w: Write,
) -> Res {
    let q = query_map(raw)?;
    let proj = Projections::parse(
        &s.schemas,
        kind,
        param(&q, "attributes"),
        param(&q, "excludedAttributes"),
    )?;
    blocking(&s, move |s| {
        let who = principal(s, &headers)?;
        let v = check_json(&headers, body)?;
        let base = base_url(s, &headers);
        let im = if_match(&headers);
        let mut tx = s.storage.write()?;
        let id = id.unwrap_or_default();
        let (status, st) = match w {
            Write::Create => (StatusCode::CREATED, op_create(&mut *tx, s, &who, kind, &v)?),
            Write::Replace => (
                StatusCode::OK,
                op_replace(&mut *tx, s, &who, kind, &id, &v, im.as_deref())?,
            ),
            Write::Patch => (
                StatusCode::OK,
                op_patch(&mut *tx, s, &who, kind, &id, &v, im.as_deref())?,
            ),
        };
        let r = resource_response(status, &*tx, s, &base, &st, &proj)?;
        tx.commit()?;
        Ok(r)
    })
    .await
}

async fn create_user(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Res {
    write_one(s, headers, raw, body, Kind::User, None, Write::Create).await
}
async fn create_group(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Res {
    write_one(s, headers, raw, body, Kind::Group, None, Write::Create).await
}
async fn put_user(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Res {
    write_one(s, headers, raw, body, Kind::User, Some(id), Write::Replace).await
}
async fn put_group(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Res {
    write_one(s, headers, raw, body, Kind::Group, Some(id), Write::Replace).await
}
async fn patch_user(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Res {
    write_one(s, headers, raw, body, Kind::User, Some(id), Write::Patch).await
}
async fn patch_group(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Res {
    write_one(s, headers, raw, body, Kind::Group, Some(id), Write::Patch).await
}

async fn delete_one(s: AppState, headers: HeaderMap, kind: Kind, id: String) -> Res {
    blocking(&s, move |s| {
        let who = principal(s, &headers)?;
        let im = if_match(&headers);
        let mut tx = s.storage.write()?;
        op_delete(&mut *tx, &who, kind, &id, im.as_deref())?;
        tx.commit()?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

async fn delete_user(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Res {
    delete_one(s, headers, Kind::User, id).await
}
async fn delete_group(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Res {
    delete_one(s, headers, Kind::Group, id).await
}

// ---------- photos ----------

fn photo_writer(who: &Principal, id: &str) -> Result<(), ScimError> {
    match who {
        Principal::Engine => Ok(()),
        Principal::Person { user_id, .. } if user_id.as_deref() == Some(id) => Ok(()),
        Principal::Person { .. } => Err(ScimError::forbidden(
            "a person's token may change only that person's own photo",
        )),
    }
}

/// An upload: checked (token, user, headers) first; then it waits for room in the decode budget
/// for what its headers declare; then it is decoded completely, its thumbnails made from the
/// decoded image, and stored.
async fn put_photo(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Res {
    let user = id.clone();
    let (body, declared) = blocking(&s, move |s| {
        let who = principal(s, &headers)?;
        photo_writer(&who, &user)?;
        let body = body.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ScimError::new(
                    413,
                    None,
                    format!(
                        "the photo is larger than {} bytes",
                        s.config.photos.max_bytes
                    ),
                )
            } else {
                ScimError::bad("invalidSyntax", format!("cannot read the photo: {e}"))
            }
        })?;
        {
            let tx = s.storage.read()?;
            if tx.get(Kind::User, &user)?.is_none() {
                return Err(ScimError::not_found(format!("User {user} not found")));
            }
        }
        let declared = photo::inspect(&body, &s.config.photos)?;
        Ok((body, declared))
    })
    .await?;
    let permit = s.decode.acquire(declared.cost).await?;
    blocking(&s, move |s| {
        // The permit is held until the decoded image is freed, even when the request has
        // timed out meanwhile (this closure runs on).
        let set = photo::process(Vec::from(body), &declared, &s.config.photos);
        drop(permit);
        let set = set?;
        let mut tx = s.storage.write()?;
        if tx.get(Kind::User, &id)?.is_none() {
            return Err(ScimError::not_found(format!("User {id} not found")));
        }
        // The same bytes again change nothing (put_photo then writes nothing).
        tx.put_photo(&id, &set, &now())?;
        tx.commit()?;
        let mut r = StatusCode::OK.into_response();
        if let Ok(h) = HeaderValue::from_str(&format!("\"{}\"", set.hash)) {
            r.headers_mut().insert(header::ETAG, h);
        }
        Ok(r)
    })
    .await
}

/// What the first part of a photo read found.
enum PhotoRead {
    Answer(Response),
    /// A thumbnail of a photo stored before thumbnails were made at upload: made now (once,
    /// under the decode budget) from the original.
    Thumbnails {
        original: PhotoBytes,
        tag: String,
    },
}

fn photo_answer(p: PhotoBytes, tag: &str, not_modified: bool) -> Response {
    let mut r = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (StatusCode::OK, p.bytes).into_response();
        if let Ok(h) = HeaderValue::from_str(&p.content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, h);
        }
        r
    };
    if let Ok(h) = HeaderValue::from_str(tag) {
        r.headers_mut().insert(header::ETAG, h);
    }
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    r
}

async fn get_photo(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Path(id): Path<String>,
) -> Res {
    let q = query_map(raw)?;
    let size = match param(&q, "size").unwrap_or("original") {
        "original" => PhotoSize::Original,
        "small" => PhotoSize::Small,
        "medium" => PhotoSize::Medium,
        "large" => PhotoSize::Large,
        other => {
            return Err(ScimError::bad(
                "invalidValue",
                format!("size `{other}`: original, small, medium or large"),
            ))
        }
    };
    let user = id.clone();
    let read = blocking(&s, move |s| {
        principal(s, &headers)?;
        let tx = s.storage.read()?;
        let p = tx
            .photo(&user, size)?
            .ok_or_else(|| ScimError::not_found(format!("User {user} has no photo")))?;
        // The thumbnails derive from the original: one ETag per size.
        let tag = match size {
            PhotoSize::Original => format!("\"{}\"", p.hash),
            other => format!(
                "\"{}-{}\"",
                p.hash,
                format!("{other:?}").to_ascii_lowercase()
            ),
        };
        let inm = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|h| h.to_str().ok());
        let not_modified = inm.is_some_and(|v| etag_matches(v, &tag));
        if !not_modified && size != PhotoSize::Original && p.bytes.is_empty() {
            let original = tx
                .photo(&user, PhotoSize::Original)?
                .ok_or_else(|| ScimError::not_found(format!("User {user} has no photo")))?;
            return Ok(PhotoRead::Thumbnails { original, tag });
        }
        Ok(PhotoRead::Answer(photo_answer(p, &tag, not_modified)))
    })
    .await?;
    let (original, tag) = match read {
        PhotoRead::Answer(r) => return Ok(r),
        PhotoRead::Thumbnails { original, tag } => (original, tag),
    };
    let cannot = |id: &str, e: ScimError| {
        ScimError::internal(format!(
            "User {id}: cannot make the photo's thumbnails: {}",
            e.detail
        ))
    };
    let declared = photo::inspect(&original.bytes, &s.config.photos).map_err(|e| cannot(&id, e))?;
    let permit = s.decode.acquire(declared.cost).await?;
    blocking(&s, move |s| {
        let thumbs = photo::thumbnails(&original.bytes, &declared, &s.config.photos);
        drop(permit);
        let thumbs = thumbs.map_err(|e| cannot(&id, e))?;
        let mut w = s.storage.write()?;
        w.put_thumbnails(&id, &original.hash, &thumbs)?;
        w.commit()?;
        let [small, medium, large] = thumbs;
        let bytes = match size {
            PhotoSize::Small => small,
            PhotoSize::Medium => medium,
            _ => large,
        };
        let p = PhotoBytes {
            hash: original.hash,
            content_type: photo::THUMBNAIL_TYPE.to_string(),
            bytes,
        };
        Ok(photo_answer(p, &tag, false))
    })
    .await
}

async fn delete_photo(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Res {
    blocking(&s, move |s| {
        let who = principal(s, &headers)?;
        photo_writer(&who, &id)?;
        let mut tx = s.storage.write()?;
        if !tx.delete_photo(&id, &now())? {
            return Err(ScimError::not_found(format!("User {id} has no photo")));
        }
        tx.commit()?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

// ---------- change feed ----------

fn json_ok(v: &Value) -> Response {
    let mut r = (StatusCode::OK, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn changes(State(s): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Res {
    let q = query_map(raw)?;
    let since = match param(&q, "since") {
        None | Some("") => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| ScimError::bad("invalidValue", format!("unknown cursor `{c}`")))?,
    };
    let limit = match param(&q, "limit") {
        None => 1000,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=10_000).contains(l))
            .ok_or_else(|| {
                ScimError::bad("invalidValue", format!("limit `{l}` must be 1 to 10000"))
            })?,
    };
    blocking(&s, move |s| {
        let who = principal(s, &headers)?;
        engine_only(&who, "read the change feed")?;
        let tx = s.storage.read()?;
        let latest = tx.latest_cursor()?;
        if since > latest {
            return Err(ScimError::bad(
                "invalidValue",
                format!("unknown cursor `{since}` (latest is {latest})"),
            ));
        }
        let mut rows = tx.changes(since, limit + 1)?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = rows.last().map(|c| c.cursor).unwrap_or(since);
        let list: Vec<Value> = rows
            .iter()
            .map(|c| {
                json!({
                    "cursor": c.cursor.to_string(),
                    "resourceType": c.kind.name(),
                    "id": c.id,
                    "operation": if c.deleted { "delete" } else { "upsert" },
                })
            })
            .collect();
        Ok(json_ok(
            &json!({"changes": list, "next": next.to_string(), "more": more}),
        ))
    })
    .await
}

async fn changes_latest(State(s): State<AppState>, headers: HeaderMap) -> Res {
    blocking(&s, move |s| {
        let who = principal(s, &headers)?;
        engine_only(&who, "read the change feed")?;
        let latest = s.storage.read()?.latest_cursor()?;
        Ok(json_ok(&json!({"cursor": latest.to_string()})))
    })
    .await
}

// ---------- Bulk ----------

fn replace_bulk_ids(v: &mut Value, ids: &HashMap<String, String>) -> Result<(), String> {
    match v {
        Value::String(s) => {
            if let Some(b) = s.strip_prefix("bulkId:") {
                *s = ids
                    .get(b)
                    .cloned()
                    .ok_or_else(|| format!("unknown bulkId `{b}`"))?;
            }
        }
        Value::Array(a) => {
            for x in a {
                replace_bulk_ids(x, ids)?;
            }
        }
        Value::Object(m) => {
            for x in m.values_mut() {
                replace_bulk_ids(x, ids)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn bulk_path(path: &str) -> Option<(Kind, Option<&str>)> {
    let p = path.trim_start_matches('/');
    let (ep, id) = match p.split_once('/') {
        Some((e, i)) => (e, Some(i)),
        None => (p, None),
    };
    let kind = match ep {
        "Users" => Kind::User,
        "Groups" => Kind::Group,
        _ => return None,
    };
    Some((kind, id.filter(|i| !i.is_empty() && !i.contains('/'))))
}

async fn bulk(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Res {
    blocking(&s, move |s| {
        let who = principal(s, &headers)?;
        engine_only(&who, "send Bulk requests")?;
        let mut v = check_json(&headers, body)?;
        // The operations are taken out of the request, not copied: each one's data is handed
        // on as it is.
        let Some(Value::Array(ops)) = v.get_mut("Operations").map(Value::take) else {
            return Err(ScimError::bad(
                "invalidSyntax",
                "a BulkRequest needs an `Operations` array",
            ));
        };
        if ops.len() > MAX_BULK_OPS {
            return Err(ScimError::new(
                413,
                None,
                format!(
                    "{} operations: at most {MAX_BULK_OPS} per Bulk request",
                    ops.len()
                ),
            ));
        }
        let fail_on = v.get("failOnErrors").and_then(Value::as_u64).unwrap_or(0) as usize;
        let base = base_url(s, &headers);
        let mut tx = s.storage.write()?;
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut results = Vec::with_capacity(ops.len());
        let mut errors = 0;
        for (i, mut op) in ops.into_iter().enumerate() {
            if fail_on > 0 && errors >= fail_on {
                break;
            }
            let method = op
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_uppercase();
            let bulk_id = op.get("bulkId").and_then(Value::as_str).map(str::to_string);
            let version = op
                .get("version")
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut out = json!({"method": method});
            if let Some(b) = &bulk_id {
                out["bulkId"] = json!(b);
            }
            tx.savepoint()?;
            let r: Result<(StatusCode, Option<Stored>), ScimError> = (|| {
                let raw_path = op
                    .get("path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ScimError::bad("invalidSyntax", "needs a `path`"))?;
                let mut path_v = Value::String(raw_path.to_string());
                replace_bulk_ids(&mut path_v, &ids)
                    .map_err(|e| ScimError::new(409, Some("invalidValue"), e))?;
                let path = path_v.as_str().unwrap_or_default().to_string();
                let (kind, id) = bulk_path(&path).ok_or_else(|| {
                    ScimError::bad(
                        "invalidPath",
                        format!("path `{path}` is not /Users[/id] or /Groups[/id]"),
                    )
                })?;
                let mut data = op.get_mut("data").map(Value::take).unwrap_or(Value::Null);
                replace_bulk_ids(&mut data, &ids)
                    .map_err(|e| ScimError::new(409, Some("invalidValue"), e))?;
                let im = version.as_deref();
                match (method.as_str(), id) {
                    ("POST", None) => {
                        if bulk_id.is_none() {
                            return Err(ScimError::bad("invalidSyntax", "POST needs a `bulkId`"));
                        }
                        Ok((
                            StatusCode::CREATED,
                            Some(op_create(&mut *tx, s, &who, kind, &data)?),
                        ))
                    }
                    ("PUT", Some(id)) => Ok((
                        StatusCode::OK,
                        Some(op_replace(&mut *tx, s, &who, kind, id, &data, im)?),
                    )),
                    ("PATCH", Some(id)) => Ok((
                        StatusCode::OK,
                        Some(op_patch(&mut *tx, s, &who, kind, id, &data, im)?),
                    )),
                    ("DELETE", Some(id)) => {
                        op_delete(&mut *tx, &who, kind, id, im)?;
                        Ok((StatusCode::NO_CONTENT, None))
                    }
                    _ => Err(ScimError::bad(
                        "invalidSyntax",
                        format!("method `{method}` with path `{path}`"),
                    )),
                }
            })();
            match r {
                Ok((status, st)) => {
                    tx.release()?;
                    out["status"] = json!(status.as_u16().to_string());
                    if let Some(st) = st {
                        if let Some(b) = &bulk_id {
                            ids.insert(b.clone(), st.id.clone());
                        }
                        out["location"] = json!(format!("{base}/{}/{}", st.kind.endpoint(), st.id));
                        out["version"] = json!(etag(st.version));
                    }
                }
                Err(mut e) => {
                    tx.rollback_to()?;
                    errors += 1;
                    e.detail = format!("Operations[{i}]: {}", e.detail);
                    out["status"] = json!(e.status.to_string());
                    out["response"] = e.body();
                }
            }
            results.push(out);
        }
        tx.commit()?;
        Ok(scim_json(
            StatusCode::OK,
            &json!({"schemas": [BULK_RESPONSE_SCHEMA], "Operations": results}),
        ))
    })
    .await
}

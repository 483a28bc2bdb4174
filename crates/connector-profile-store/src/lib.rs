//! The profile-store connector: idsync's own profile store (and, for everything but the change
//! feed and photo hashes, any SCIM 2.0 service).
//!
//! - Full import pages through `/Users` and `/Groups`. A photo is compared by content: the
//!   service reports each photo's content hash (`photoHash`), and idsync downloads the bytes only
//!   when it does not already hold that content, so a new photo behind an unchanged picture URL
//!   (the defect of seed 000) is always a change.
//! - Delta import reads the change feed (`/changes?since=CURSOR`); the cursor is the watermark.
//! - Export sends creates, updates (SCIM PATCH, value by value) and deletes through `/Bulk` when
//!   the service offers it (one request per batch), then managers and members that point at
//!   objects created in the same batch (one more `/Bulk` request), then photos (`PUT …/photo`,
//!   a few in flight at once).
//!
//! References (manager, group members) are names (`userName`, group `displayName`) in idsync
//! and ids in SCIM; the connector translates with a bounded cache and batched `filter` lookups,
//! never one request per person.

mod client;
pub mod mapping;

use client::{image_type, Client, HttpError, HttpResult};
use idsync_connectors::{
    resolve_secret, AttributeTypes, Capabilities, Connector, DeltaOutcome, Error, ExportItem,
    ExportOp, ExportResult, ImportChange, ImportSink, Result, TypeHint,
};
use idsync_model::{
    Anchor, AttributeChange, Attributes, Blob, ConnectorId, ContentHash, CsEntry, Dn, Reference,
    Value,
};
use mapping::{Field, ProfileSchema, BULK_REQUEST, GROUP, PATCH_OP, USER};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How many ids or names go into one `filter` lookup.
const LOOKUP_CHUNK: usize = 50;
/// Operations in one `/Bulk` request of deferred references (the service takes up to 1,000).
const BULK_CHUNK: usize = 500;
/// Photo uploads in flight at once during an export.
const PHOTO_UPLOADS: usize = 4;
/// Cache entries kept before the caches are cleared (bounds memory at any estate size).
const CACHE_LIMIT: usize = 200_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The service's root URL (`https://profiles.example.com`); SCIM is under `/scim/v2`.
    url: String,
    /// The bearer token, by reference (`env:NAME` or `file:PATH`).
    token: String,
    /// Where SCIM is served under `url` (`/scim/v2` for idsync's profile store).
    #[serde(default = "default_scim_path")]
    scim_path: String,
    /// A PEM file of CA certificates to trust instead of the built-in roots.
    ca_file: Option<String>,
    #[serde(default = "default_page")]
    page_size: usize,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
    /// Object types (config names) that are SCIM Groups; the others are Users.
    #[serde(default = "default_groups")]
    group_types: Vec<String>,
    /// `auto` (ask `/ServiceProviderConfig`), `true` or `false`.
    #[serde(default)]
    bulk: Option<bool>,
    #[serde(default)]
    attribute_types: BTreeMap<String, TypeHint>,
}

fn default_scim_path() -> String {
    "/scim/v2".to_owned()
}
fn default_page() -> usize {
    500
}
fn default_timeout() -> u64 {
    60
}
fn default_groups() -> Vec<String> {
    vec!["group".to_owned()]
}

pub struct ProfileStoreConnector {
    id: ConnectorId,
    client: Arc<Client>,
    /// The photo uploads of new profiles from the last batch, still running while the engine
    /// records that batch and reads the next one; waited for before anything else is sent or
    /// read (and by `finish_export`), except the next batch's `/Bulk` request that
    /// `export_start` sends meanwhile (`export_finish` waits for them).
    photo_uploads: Option<std::thread::JoinHandle<Vec<PhotoAnswer>>>,
    /// The batch `export_start` sent, its `/Bulk` request on its own thread, until
    /// `export_finish` takes its answers.
    started: Option<Started>,
    page_size: usize,
    group_types: HashSet<String>,
    bulk: Option<bool>,
    #[allow(dead_code)]
    types: AttributeTypes,
    schema: Option<ProfileSchema>,
    /// userName folded (`name_key`) → id, and id → userName (bounded).
    user_ids: HashMap<String, String>,
    user_names: HashMap<String, String>,
    /// The feed cursor read before the last full import began.
    cursor_before_full: Option<String>,
    /// The latest `meta.lastModified` read, for services without a change feed.
    last_modified: Option<(i64, String)>,
}

/// The watermark prefix of services without a change feed.
const LAST_MODIFIED: &str = "lastModified:";

impl ProfileStoreConnector {
    pub fn new(id: ConnectorId, settings: &toml::Table, base_dir: &Path) -> Result<Self> {
        let s: Settings = idsync_connectors::settings(&id, settings)?;
        let config = |message: String| Error::Config {
            connector: id.to_string(),
            message,
        };
        let token = resolve_secret(&s.token, base_dir).map_err(|m| Error::Setting {
            connector: id.to_string(),
            key: "token".to_owned(),
            message: format!("token: {m}"),
        })?;
        let ca = match &s.ca_file {
            Some(f) => Some(
                std::fs::read(base_dir.join(f))
                    .map_err(|e| config(format!("cannot read ca_file {f}: {e}")))?,
            ),
            None => None,
        };
        if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
            return Err(config(format!(
                "url `{}` must start with http:// or https://",
                s.url
            )));
        }
        let client = Client::new(
            &s.url,
            &s.scim_path,
            token.expose().to_owned(),
            ca,
            Duration::from_secs(s.timeout_seconds),
        )
        .map_err(config)?;
        Ok(Self {
            types: AttributeTypes::new(&s.attribute_types),
            client: Arc::new(client),
            photo_uploads: None,
            started: None,
            page_size: s.page_size.clamp(1, 1000),
            group_types: s
                .group_types
                .iter()
                .map(|g| g.to_ascii_lowercase())
                .collect(),
            bulk: s.bulk,
            schema: None,
            user_ids: HashMap::new(),
            user_names: HashMap::new(),
            cursor_before_full: None,
            last_modified: None,
            id,
        })
    }

    fn err(&self, e: HttpError) -> Error {
        Error::Remote {
            connector: self.id.to_string(),
            message: e.to_string(),
        }
    }

    fn schema(&mut self) -> Result<&ProfileSchema> {
        if self.schema.is_none() {
            let url = format!("{}/Schemas", self.client.scim);
            let s = match self.client.get_json(&url, &[]) {
                Ok(j) => ProfileSchema::from_schemas(&j),
                // A SCIM service without schema discovery: every property is a string.
                Err(HttpError::Status(404, _)) => ProfileSchema::default(),
                Err(e) => return Err(self.err(e)),
            };
            self.schema = Some(s);
        }
        Ok(self.schema.as_ref().expect("set above"))
    }

    fn bulk_supported(&mut self) -> Result<bool> {
        if let Some(b) = self.bulk {
            return Ok(b);
        }
        let url = format!("{}/ServiceProviderConfig", self.client.scim);
        let b = match self.client.get_json(&url, &[]) {
            Ok(j) => j
                .get("bulk")
                .and_then(|b| b.get("supported"))
                .and_then(Json::as_bool)
                .unwrap_or(false),
            Err(HttpError::Status(..)) => false,
            Err(e) => return Err(self.err(e)),
        };
        self.bulk = Some(b);
        Ok(b)
    }

    fn remember(&mut self, id: &str, user_name: &str) {
        if self.user_ids.len() >= CACHE_LIMIT {
            self.user_ids.clear();
            self.user_names.clear();
        }
        self.user_ids.insert(name_key(user_name), id.to_owned());
        self.user_names.insert(id.to_owned(), user_name.to_owned());
    }

    fn forget(&mut self, id: &str) {
        if let Some(n) = self.user_names.remove(id) {
            self.user_ids.remove(&name_key(&n));
        }
    }

    /// Resolves users by `attr` (`id` or `userName`) in batched filter queries, filling the
    /// caches. Values not found stay unresolved.
    fn lookup_users(&mut self, attr: &str, keys: &[String]) -> Result<()> {
        let url = format!("{}/Users", self.client.scim);
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let filter = mapping::any_eq(attr, chunk);
            let count = chunk.len().to_string();
            let page = self
                .client
                .get_json(
                    &url,
                    &[
                        ("filter", &filter),
                        ("attributes", "userName"),
                        ("count", &count),
                    ],
                )
                .map_err(|e| self.err(e))?;
            for r in resources(&page) {
                if let (Some(id), Some(n)) = (
                    r.get("id").and_then(Json::as_str),
                    r.get("userName").and_then(Json::as_str),
                ) {
                    self.remember(id, n);
                }
            }
        }
        Ok(())
    }

    fn user_name_of(&mut self, ids: &[String]) -> Result<()> {
        let missing: Vec<String> = ids
            .iter()
            .filter(|i| !self.user_names.contains_key(*i))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            self.lookup_users("id", &missing)?;
        }
        Ok(())
    }

    fn is_group(&self, object_type: &str) -> bool {
        self.group_types.contains(&object_type.to_ascii_lowercase())
    }

    /// Turns one page of SCIM Users into entries (resolving managers and photos).
    fn users_to_entries(
        &mut self,
        page: &[Json],
        sink: &mut dyn ImportSink,
    ) -> Result<Vec<CsEntry>> {
        let schema = self.schema()?.clone();
        let mut reads = Vec::with_capacity(page.len());
        for u in page {
            self.note_modified(u);
            match mapping::read_user(u, &schema) {
                Ok(r) => {
                    self.remember(&r.id, &r.user_name);
                    reads.push(r);
                }
                Err(m) => sink.object_error(format!("{}/Users", self.client.scim), m),
            }
        }
        let managers: Vec<String> = reads.iter().filter_map(|r| r.manager_id.clone()).collect();
        self.user_name_of(&managers)?;
        let mut out = Vec::with_capacity(reads.len());
        for mut r in reads {
            if let Some(m) = &r.manager_id {
                match self.user_names.get(m) {
                    Some(n) => r.attributes.set(
                        "manager",
                        vec![Value::Reference(Reference::Dn(Dn::new(n.clone())))],
                    ),
                    None => sink.object_error(
                        format!("user {} (manager)", r.user_name),
                        format!("manager {m} is not in the profile store"),
                    ),
                }
            }
            match self.photo_value(&r, sink) {
                Ok(Some(v)) => r.attributes.set("photo", vec![v]),
                Ok(None) => {}
                Err(e) => match e {
                    // The photo went away between the listing and the download.
                    HttpError::Status(404, _) => {}
                    e => return Err(self.err(e)),
                },
            }
            out.push(CsEntry {
                anchor: Anchor::new(r.id),
                dn: Dn::new(r.user_name),
                object_classes: vec!["User".to_owned()],
                attributes: r.attributes,
            });
        }
        Ok(out)
    }

    /// The photo as a value compared by content: known content by its hash alone, new content
    /// downloaded.
    fn photo_value(
        &mut self,
        r: &mapping::UserRead,
        sink: &mut dyn ImportSink,
    ) -> std::result::Result<Option<Value>, HttpError> {
        if let Some(h) = r.photo_hash.as_deref().and_then(ContentHash::from_hex) {
            if let Some(len) = sink.known_blob(&h) {
                return Ok(Some(Value::Binary(Blob {
                    hash: h,
                    len,
                    data: None,
                })));
            }
        } else if r.photo_url.is_none() {
            return Ok(None);
        }
        let url = r
            .photo_url
            .clone()
            .unwrap_or_else(|| format!("{}/Users/{}/photo", self.client.scim, r.id));
        let bytes = self.client.get_bytes(&url)?;
        Ok((!bytes.is_empty()).then(|| Value::Binary(Blob::from_bytes(bytes))))
    }

    fn groups_to_entries(
        &mut self,
        page: &[Json],
        sink: &mut dyn ImportSink,
    ) -> Result<Vec<CsEntry>> {
        let ids: Vec<String> = page
            .iter()
            .flat_map(|g| member_ids(g).into_iter())
            .collect();
        self.user_name_of(&ids)?;
        let mut out = Vec::new();
        for g in page {
            let (Some(id), Some(name)) = (
                g.get("id").and_then(Json::as_str),
                g.get("displayName").and_then(Json::as_str),
            ) else {
                sink.object_error(
                    format!("{}/Groups", self.client.scim),
                    "a group without `id` or `displayName`".to_owned(),
                );
                continue;
            };
            let mut a = Attributes::new();
            a.set("displayName", vec![Value::String(name.to_owned())]);
            if let Some(x) = g.get("externalId").and_then(Json::as_str) {
                a.set("externalId", vec![Value::String(x.to_owned())]);
            }
            let members: Vec<Value> = member_ids(g)
                .iter()
                .filter_map(|m| self.user_names.get(m))
                .map(|n| Value::Reference(Reference::Dn(Dn::new(n.clone()))))
                .collect();
            if !members.is_empty() {
                a.set("member", members);
            }
            out.push(CsEntry {
                anchor: Anchor::new(id),
                dn: Dn::new(name),
                object_classes: vec!["Group".to_owned()],
                attributes: a,
            });
        }
        Ok(out)
    }

    /// Keeps the latest `meta.lastModified` seen (the watermark of a service without a feed).
    fn note_modified(&mut self, r: &Json) {
        let Some(text) = r
            .get("meta")
            .and_then(|m| m.get("lastModified"))
            .and_then(Json::as_str)
        else {
            return;
        };
        if let Ok(t) =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        {
            let t = t.unix_timestamp();
            if self.last_modified.as_ref().is_none_or(|(m, _)| t > *m) {
                self.last_modified = Some((t, text.to_owned()));
            }
        }
    }

    /// A delta by `meta.lastModified ge WATERMARK`, for SCIM services without a change feed.
    /// Deletes are not visible this way: the next full import finds them.
    fn delta_by_last_modified(
        &mut self,
        since: &str,
        sink: &mut dyn ImportSink,
    ) -> Result<DeltaOutcome> {
        let mut count = 0usize;
        let filter = format!("meta.lastModified ge {}", mapping::filter_string(since));
        for (resource, users) in [("Users", true), ("Groups", false)] {
            let url = format!("{}/{resource}", self.client.scim);
            let mut start = 1usize;
            loop {
                let (s, c) = (start.to_string(), self.page_size.to_string());
                let page = match self.client.get_json(
                    &url,
                    &[("filter", &filter), ("startIndex", &s), ("count", &c)],
                ) {
                    Ok(p) => p,
                    Err(HttpError::Status(404, _)) if !users => break,
                    Err(e) => return Err(self.err(e)),
                };
                let list = resources(&page);
                let n = list.len();
                let total = page.get("totalResults").and_then(Json::as_u64).unwrap_or(0) as usize;
                let entries = if users {
                    self.users_to_entries(&list, sink)?
                } else {
                    list.iter().for_each(|g| self.note_modified(g));
                    self.groups_to_entries(&list, sink)?
                };
                count += entries.len();
                for e in entries {
                    sink.change(ImportChange::Upsert(e))
                        .map_err(Self::sink_err)?;
                }
                start += n;
                if n == 0 || start > total {
                    break;
                }
            }
        }
        let watermark = self
            .last_modified
            .take()
            .map(|(_, t)| t)
            .unwrap_or_else(|| since.to_owned());
        Ok(DeltaOutcome {
            watermark: Some(format!("{LAST_MODIFIED}{watermark}")),
            method: format!(
                "meta.lastModified filter ({count} changed; no change feed, so deletes are found by the next full import)"
            ),
            full: false,
        })
    }

    fn latest_cursor(&self) -> Result<Option<String>> {
        let url = format!("{}/changes/latest", self.client.root);
        match self.client.get_json(&url, &[]) {
            Ok(j) => Ok(j.get("cursor").and_then(json_text)),
            Err(HttpError::Status(404, _)) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Pages through a resource type, handing each page to `f`.
    fn page_through(
        &mut self,
        resource: &str,
        mut f: impl FnMut(&mut Self, Vec<Json>) -> Result<()>,
    ) -> Result<()> {
        let url = format!("{}/{resource}", self.client.scim);
        let mut start = 1usize;
        loop {
            let (s, c) = (start.to_string(), self.page_size.to_string());
            let page = match self
                .client
                .get_json(&url, &[("startIndex", &s), ("count", &c)])
            {
                Ok(p) => p,
                // A service without Groups has none to import.
                Err(HttpError::Status(404, _)) if resource == "Groups" => return Ok(()),
                Err(e) => return Err(self.err(e)),
            };
            let list = resources(&page);
            let n = list.len();
            let total = page.get("totalResults").and_then(Json::as_u64).unwrap_or(0) as usize;
            f(self, list)?;
            start += n;
            if n == 0 || start > total {
                return Ok(());
            }
        }
    }

    fn sink_err(e: String) -> Error {
        Error::Sink(e)
    }
}

fn resources(page: &Json) -> Vec<Json> {
    page.get("Resources")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default()
}

fn member_ids(g: &Json) -> Vec<String> {
    g.get("members")
        .and_then(Json::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|m| m.get("value").and_then(Json::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn json_text(j: &Json) -> Option<String> {
    match j {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The id at the end of a resource's location.
fn id_from_location(loc: &str) -> Option<String> {
    loc.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl Connector for ProfileStoreConnector {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            full_import: true,
            delta_import: true,
            export: true,
            delta_sees_own_exports: true,
            identifier: idsync_model::IdentifierSyntax::Plain,
        }
    }

    fn full_import(&mut self, sink: &mut dyn ImportSink) -> Result<()> {
        self.settle_started();
        self.wait_photo_uploads()?;
        // The cursor is read first: whatever changes during the read is read again by the next
        // delta import, never lost.
        self.cursor_before_full = self.latest_cursor()?;
        self.last_modified = None;
        self.schema = None;
        self.page_through("Users", |me, page| {
            for e in me.users_to_entries(&page, sink)? {
                sink.entry(e).map_err(Self::sink_err)?;
            }
            Ok(())
        })?;
        self.page_through("Groups", |me, page| {
            page.iter().for_each(|g| me.note_modified(g));
            for e in me.groups_to_entries(&page, sink)? {
                sink.entry(e).map_err(Self::sink_err)?;
            }
            Ok(())
        })
    }

    fn watermark_after_full_import(&mut self) -> Result<Option<String>> {
        if let Some(c) = self.cursor_before_full.take() {
            return Ok(Some(c));
        }
        Ok(self
            .last_modified
            .take()
            .map(|(_, t)| format!("{LAST_MODIFIED}{t}")))
    }

    fn delta_import(
        &mut self,
        watermark: Option<&str>,
        sink: &mut dyn ImportSink,
    ) -> Result<DeltaOutcome> {
        self.settle_started();
        self.wait_photo_uploads()?;
        let Some(mut cursor) = watermark.map(str::to_owned) else {
            self.full_import(sink)?;
            let watermark = self.watermark_after_full_import()?;
            return Ok(DeltaOutcome {
                watermark,
                method: "full read (no cursor yet)".to_owned(),
                full: true,
            });
        };
        if let Some(since) = cursor.strip_prefix(LAST_MODIFIED) {
            let since = since.to_owned();
            return self.delta_by_last_modified(&since, sink);
        }
        let url = format!("{}/changes", self.client.root);
        let mut count = 0usize;
        loop {
            let page = self
                .client
                .get_json(&url, &[("since", &cursor), ("limit", "1000")])
                .map_err(|e| self.err(e))?;
            let changes = page
                .get("changes")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            count += changes.len();
            self.apply_changes(&changes, sink)?;
            if let Some(next) = page.get("next").and_then(json_text) {
                cursor = next;
            }
            if !page.get("more").and_then(Json::as_bool).unwrap_or(false) || changes.is_empty() {
                break;
            }
        }
        Ok(DeltaOutcome {
            watermark: Some(cursor),
            method: format!("change feed ({count} changes)"),
            full: false,
        })
    }

    fn finish_export(&mut self) -> Result<()> {
        self.settle_started();
        self.wait_photo_uploads()
    }

    fn export(&mut self, batch: &[ExportItem]) -> Result<Vec<ExportResult>> {
        self.settle_started();
        self.wait_photo_uploads()?;
        let (mut plan, schema, bulk) = self.plan(batch)?;
        let answer = match self.bulk_text(&plan, bulk) {
            Some(text) => Some(
                self.client
                    .send_text("POST", &format!("{}/Bulk", self.client.scim), &text)
                    .map_err(|e| self.err(e))?,
            ),
            None => None,
        };
        self.take_answers(&mut plan, answer)?;
        self.answered(batch, plan, &schema, bulk)
    }

    /// Sends the batch's `/Bulk` request from its own thread: the service works on it while
    /// the engine records the batch before. The photos of that batch may still be uploading;
    /// `export_finish` waits for both.
    fn export_start(&mut self, batch: &[ExportItem]) -> Result<()> {
        self.settle_started();
        let (plan, schema, bulk) = self.plan(batch)?;
        let answer = self.bulk_text(&plan, bulk).map(|text| {
            let client = Arc::clone(&self.client);
            std::thread::spawn(move || {
                client.send_text("POST", &format!("{}/Bulk", client.scim), &text)
            })
        });
        self.started = Some(Started {
            plan,
            schema,
            bulk,
            answer,
        });
        Ok(())
    }

    fn export_finish(&mut self, batch: &[ExportItem]) -> Result<Vec<ExportResult>> {
        let Some(Started {
            mut plan,
            schema,
            bulk,
            answer,
        }) = self.started.take()
        else {
            return self.export(batch);
        };
        let answer = match answer {
            Some(h) => Some(
                h.join()
                    .map_err(|_| {
                        self.err(HttpError::Transport(
                            "the Bulk request thread stopped unexpectedly".to_owned(),
                        ))
                    })?
                    .map_err(|e| self.err(e))?,
            ),
            None => None,
        };
        self.wait_photo_uploads()?;
        self.take_answers(&mut plan, answer)?;
        self.answered(batch, plan, &schema, bulk)
    }
}

/// A batch sent by `export_start` whose answers `export_finish` has not taken yet.
struct Started {
    plan: ExportPlan,
    schema: ProfileSchema,
    bulk: bool,
    /// The `/Bulk` request's thread; `None` when the batch goes as single requests, sent by
    /// `export_finish`.
    answer: Option<std::thread::JoinHandle<HttpResult<Json>>>,
}

/// A `/Bulk` request, serialised from borrowed operations.
#[derive(Serialize)]
struct BulkRequest<'a> {
    schemas: [&'static str; 1],
    #[serde(rename = "Operations")]
    operations: Vec<BulkOp<'a>>,
}

#[derive(Serialize)]
struct BulkOp<'a> {
    method: &'static str,
    path: &'a str,
    #[serde(rename = "bulkId")]
    bulk_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Json>,
}

/// One SCIM operation for one export item.
struct Op {
    item: usize,
    method: &'static str,
    path: String,
    data: Option<Json>,
    /// Work for after the resource exists: the photo, and references to objects this batch
    /// creates.
    photo: Option<PhotoChange>,
    deferred: Vec<Json>,
}

enum PhotoChange {
    Put(Vec<u8>),
    Delete,
}

struct ExportPlan {
    ops: Vec<Op>,
    results: Vec<Option<ExportResult>>,
    /// The id each item's object has (known, or given by its create).
    ids: Vec<Option<String>>,
}

impl ExportPlan {
    fn new(n: usize) -> Self {
        Self {
            ops: Vec::new(),
            results: (0..n).map(|_| None).collect(),
            ids: vec![None; n],
        }
    }
}

impl ProfileStoreConnector {
    /// Looks up, in batches, every referenced name this batch does not create.
    fn resolve_names(&mut self, batch: &[ExportItem], created: &HashSet<String>) -> Result<()> {
        let mut names = HashSet::new();
        let mut add = |v: &Value| {
            if let Value::Reference(Reference::Dn(d)) = v {
                let k = name_key(d.as_str());
                if !created.contains(&k) {
                    names.insert(d.as_str().to_owned());
                }
            }
        };
        for item in batch {
            match &item.op {
                ExportOp::Add { attributes, .. } => {
                    attributes.iter().flat_map(|(_, v)| v).for_each(&mut add)
                }
                ExportOp::Update { changes, .. } => {
                    for c in changes {
                        match &c.change {
                            AttributeChange::Replace(v) => v.iter().for_each(&mut add),
                            AttributeChange::Update { add: a, remove: r } => {
                                a.iter().chain(r).for_each(&mut add)
                            }
                        }
                    }
                }
                ExportOp::Delete => {}
            }
        }
        let missing: Vec<String> = names
            .into_iter()
            .filter(|n| !self.user_ids.contains_key(&name_key(n)))
            .collect();
        if !missing.is_empty() {
            self.lookup_users("userName", &missing)?;
        }
        Ok(())
    }

    fn ref_id(&self, v: &Value) -> Option<String> {
        match v {
            Value::Reference(Reference::Dn(d)) => self.user_ids.get(&name_key(d.as_str())).cloned(),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn resource_path(&self, item: &ExportItem, group: bool) -> std::result::Result<String, String> {
        let kind = if group { "Groups" } else { "Users" };
        match &item.anchor {
            Some(a) => Ok(format!("/{kind}/{}", a.as_str())),
            None => Err(format!(
                "{} has no id in the profile store yet (its create was not confirmed)",
                item.dn
            )),
        }
    }

    fn operation(
        &self,
        n: usize,
        item: &ExportItem,
        group: bool,
        schema: &ProfileSchema,
        created: &HashSet<String>,
    ) -> std::result::Result<Op, String> {
        let mut op = Op {
            item: n,
            method: "DELETE",
            path: String::new(),
            data: None,
            photo: None,
            deferred: Vec::new(),
        };
        match &item.op {
            ExportOp::Delete => {
                op.path = self.resource_path(item, group)?;
            }
            ExportOp::Add { attributes, .. } => {
                op.method = "POST";
                op.path = if group { "/Groups" } else { "/Users" }.to_owned();
                let mut r = Map::new();
                if group {
                    r.insert("schemas".into(), json!([GROUP]));
                    r.insert("displayName".into(), json!(item.dn.as_str()));
                    let mut members = Vec::new();
                    for v in attributes.get("member").unwrap_or(&[]) {
                        match self.ref_id(v) {
                            Some(id) => members.push(json!({ "value": id })),
                            None => op.deferred.push(member_add(v, created, &item.dn)?),
                        }
                    }
                    r.insert("members".into(), Json::Array(members));
                    for (k, v) in attributes.iter() {
                        if k.as_str().eq_ignore_ascii_case("externalId") {
                            if let Some(j) = v.first().map(mapping::json_value) {
                                r.insert("externalId".into(), j);
                            }
                        }
                    }
                } else {
                    r.insert("userName".into(), json!(item.dn.as_str()));
                    for (k, v) in attributes.iter() {
                        let f = Field::of(k.as_str());
                        match &f {
                            Field::Photo => op.photo = photo_change(v),
                            Field::Manager => match v.first() {
                                None => {}
                                Some(m) => match self.ref_id(m) {
                                    Some(id) => {
                                        mapping::put_field(&mut r, &f, json!({ "value": id }))
                                    }
                                    None => op.deferred.push(manager_op(m, created, &item.dn)?),
                                },
                            },
                            Field::Core("userName") => {}
                            _ => {
                                if let Some(j) = mapping::field_json(&f, v, schema, None) {
                                    mapping::put_field(&mut r, &f, j);
                                }
                            }
                        }
                    }
                }
                if !group && !r.contains_key("externalId") {
                    // The connector-space id, stable across retries: a create repeated after a
                    // crash (the service has the profile, idsync did not record it) is
                    // recognised as ours and adopted instead of failing as a duplicate.
                    r.insert("externalId".into(), json!(item.cs_id.as_str()));
                }
                if !group {
                    let mut schemas = vec![json!(USER)];
                    for ext in [mapping::ENTERPRISE, mapping::PROFILE] {
                        if r.contains_key(ext) {
                            schemas.push(json!(ext));
                        }
                    }
                    r.insert("schemas".into(), Json::Array(schemas));
                }
                op.data = Some(Json::Object(r));
            }
            ExportOp::Update { new_dn, changes } => {
                op.method = "PATCH";
                op.path = self.resource_path(item, group)?;
                let mut ops = Vec::new();
                if let Some(d) = new_dn {
                    let attr = if group { "displayName" } else { "userName" };
                    ops.push(json!({"op": "replace", "path": attr, "value": d.as_str()}));
                }
                for c in changes {
                    let name = c.name.as_str();
                    if group {
                        if name.eq_ignore_ascii_case("member") {
                            self.member_ops(
                                &c.change,
                                &mut ops,
                                &mut op.deferred,
                                created,
                                &item.dn,
                            )?;
                        }
                        continue;
                    }
                    let f = Field::of(name);
                    match (&f, &c.change) {
                        (Field::Photo, AttributeChange::Replace(v)) => {
                            op.photo = photo_change(v).or(Some(PhotoChange::Delete))
                        }
                        (Field::Photo, AttributeChange::Update { add, .. }) => {
                            op.photo = photo_change(add).or(Some(PhotoChange::Delete))
                        }
                        (Field::Manager, ch) => {
                            let v = match ch {
                                AttributeChange::Replace(v) => v.first(),
                                AttributeChange::Update { add, .. } => add.first(),
                            };
                            match v {
                                None => ops.push(json!({"op": "remove", "path": f.path()})),
                                Some(m) => match self.ref_id(m) {
                                    Some(id) => ops.push(json!({"op": "replace", "path": f.path(), "value": {"value": id}})),
                                    None => op.deferred.push(manager_op(m, created, &item.dn)?),
                                },
                            }
                        }
                        (_, AttributeChange::Replace(v)) => {
                            match mapping::field_json(&f, v, schema, None) {
                                Some(j) => {
                                    ops.push(json!({"op": "replace", "path": f.path(), "value": j}))
                                }
                                None => ops.push(json!({"op": "remove", "path": f.path()})),
                            }
                        }
                        (_, AttributeChange::Update { add, remove }) => {
                            for r in remove {
                                let lit = mapping::filter_string(&r.to_text());
                                ops.push(json!({"op": "remove", "path": format!("{}[value eq {lit}]", f.path())}));
                            }
                            if let Some(j) = mapping::field_json(&f, add, schema, None) {
                                let j = if j.is_array() { j } else { json!([j]) };
                                ops.push(json!({"op": "add", "path": f.path(), "value": j}));
                            }
                        }
                    }
                }
                if ops.is_empty() {
                    op.method = "NONE";
                } else {
                    op.data = Some(json!({"schemas": [PATCH_OP], "Operations": ops}));
                }
            }
        }
        Ok(op)
    }

    fn member_ops(
        &self,
        change: &AttributeChange,
        ops: &mut Vec<Json>,
        deferred: &mut Vec<Json>,
        created: &HashSet<String>,
        dn: &Dn,
    ) -> std::result::Result<(), String> {
        match change {
            AttributeChange::Replace(v) => {
                let mut members = Vec::new();
                for m in v {
                    match self.ref_id(m) {
                        Some(id) => members.push(json!({ "value": id })),
                        None => deferred.push(member_add(m, created, dn)?),
                    }
                }
                ops.push(json!({"op": "replace", "path": "members", "value": members}));
            }
            AttributeChange::Update { add, remove } => {
                for m in remove {
                    if let Some(id) = self.ref_id(m) {
                        let lit = mapping::filter_string(&id);
                        ops.push(
                            json!({"op": "remove", "path": format!("members[value eq {lit}]")}),
                        );
                    }
                }
                let mut members = Vec::new();
                for m in add {
                    match self.ref_id(m) {
                        Some(id) => members.push(json!({ "value": id })),
                        None => deferred.push(member_add(m, created, dn)?),
                    }
                }
                if !members.is_empty() {
                    ops.push(json!({"op": "add", "path": "members", "value": members}));
                }
            }
        }
        Ok(())
    }

    /// Sends the planned operations: one `/Bulk` request per batch, or one request each.
    /// What `export` and `export_start` do before sending: the schema, the names the batch
    /// refers to, one operation per item.
    fn plan(&mut self, batch: &[ExportItem]) -> Result<(ExportPlan, ProfileSchema, bool)> {
        let schema = self.schema()?.clone();
        let bulk = self.bulk_supported()?;
        let mut plan = ExportPlan::new(batch.len());
        // Names this batch creates: a manager or member among them is set after the creates.
        let created: HashSet<String> = batch
            .iter()
            .filter(|i| matches!(i.op, ExportOp::Add { .. }))
            .map(|i| name_key(i.dn.as_str()))
            .collect();
        self.resolve_names(batch, &created)?;
        // A user this batch deletes leaves its groups with it (the service removes a deleted
        // user's memberships): a member removal naming it is not sent, as it would find nothing.
        for item in batch {
            if matches!(item.op, ExportOp::Delete) && !self.is_group(item.object_type.as_str()) {
                self.user_ids.remove(&name_key(item.dn.as_str()));
            }
        }
        for (n, item) in batch.iter().enumerate() {
            let group = self.is_group(item.object_type.as_str());
            match self.operation(n, item, group, &schema, &created) {
                Ok(op) => plan.ops.push(op),
                Err(m) => plan.results[n] = Some(ExportResult::Failed(m)),
            }
        }
        Ok((plan, schema, bulk))
    }

    /// The batch's `/Bulk` request, when it goes as one (the service offers Bulk and there is
    /// more than one operation to send). Serialised from borrowed parts: the documents are not
    /// copied into the request.
    fn bulk_text(&self, plan: &ExportPlan, bulk: bool) -> Option<String> {
        let live: Vec<&Op> = plan.ops.iter().filter(|o| o.method != "NONE").collect();
        if !bulk || live.len() <= 1 {
            return None;
        }
        let operations: Vec<BulkOp<'_>> = live
            .iter()
            .map(|o| BulkOp {
                method: o.method,
                path: &o.path,
                bulk_id: format!("b{}", o.item),
                data: o.data.as_ref(),
            })
            .collect();
        // Serialising these borrowed strings and JSON values cannot fail.
        serde_json::to_string(&BulkRequest {
            schemas: [BULK_REQUEST],
            operations,
        })
        .ok()
    }

    /// The rest of an export once the batch's operations were sent: the photos and the
    /// references to objects the batch created.
    fn answered(
        &mut self,
        batch: &[ExportItem],
        mut plan: ExportPlan,
        schema: &ProfileSchema,
        bulk: bool,
    ) -> Result<Vec<ExportResult>> {
        // The batch's creates and changes reached the service, its photos did not.
        idsync_connectors::crash_point!("profile-export:{}:sent", self.id);
        self.after_creates(batch, &mut plan, schema, bulk)?;
        Ok(plan
            .results
            .into_iter()
            .map(|r| r.unwrap_or(ExportResult::Failed("not sent".to_owned())))
            .collect())
    }

    /// A batch started and never finished (its export step failed before taking the answers):
    /// its request is waited for and its answers dropped, so nothing else overlaps it.
    fn settle_started(&mut self) {
        if let Some(Started {
            answer: Some(h), ..
        }) = self.started.take()
        {
            let _ = h.join();
        }
    }

    /// Records the answers to the batch's operations: `answer` is the `/Bulk` request's
    /// ([`Self::bulk_text`]), or `None` to send them one request at a time now.
    fn take_answers(&mut self, plan: &mut ExportPlan, answer: Option<Json>) -> Result<()> {
        let ops = std::mem::take(&mut plan.ops);
        let live: Vec<&Op> = ops.iter().filter(|o| o.method != "NONE").collect();
        let mut conflicts: Vec<usize> = Vec::new();
        for o in ops.iter().filter(|o| o.method == "NONE") {
            plan.results[o.item] = Some(ExportResult::Applied { anchor: None });
        }
        if let Some(answer) = answer {
            let by_bulk = by_bulk_id(&answer);
            for o in &live {
                let result = match by_bulk.get(format!("b{}", o.item).as_str()) {
                    None => Err("the service did not answer this operation".to_owned()),
                    Some(a) => {
                        let status = a
                            .get("status")
                            .and_then(|s| {
                                json_text(s).and_then(|t| t.trim().get(..3)?.parse::<u16>().ok())
                            })
                            .unwrap_or(0);
                        if (200..300).contains(&status) {
                            Ok(a.get("location")
                                .and_then(Json::as_str)
                                .and_then(id_from_location))
                        } else if status == 404 && o.method == "DELETE" {
                            // Deleting what is already gone is done.
                            Ok(None)
                        } else {
                            if status == 409 && o.method == "POST" {
                                conflicts.push(o.item);
                            }
                            let detail = a
                                .get("response")
                                .and_then(|r| r.get("detail"))
                                .and_then(Json::as_str)
                                .unwrap_or("refused");
                            Err(format!("HTTP {status}: {detail}"))
                        }
                    }
                };
                self.record(plan, o, result);
            }
        } else {
            for o in &live {
                let url = format!("{}{}", self.client.scim, o.path);
                let r = match o.method {
                    "DELETE" => self.client.delete(&url).map(|()| Json::Null),
                    m => self
                        .client
                        .send_json(m, &url, o.data.as_ref().unwrap_or(&Json::Null)),
                };
                let result = match r {
                    Ok(j) => Ok(j.get("id").and_then(Json::as_str).map(str::to_owned)),
                    // Deleting what is already gone is done.
                    Err(HttpError::Status(404, _)) if o.method == "DELETE" => Ok(None),
                    Err(HttpError::Status(s, m)) => {
                        if s == 409 && o.method == "POST" {
                            conflicts.push(o.item);
                        }
                        Err(format!("HTTP {s}: {m}"))
                    }
                    Err(e) => return Err(self.err(e)),
                };
                self.record(plan, o, result);
            }
        }
        for o in live.iter().filter(|o| conflicts.contains(&o.item)) {
            if let Some(id) = self.adopt(o)? {
                self.record(plan, o, Ok(Some(id)));
            }
        }
        plan.ops = ops;
        Ok(())
    }

    /// A create refused as a duplicate: when the profile that holds the name carries this
    /// object's `externalId` (the connector-space id), it is this very create, applied by a
    /// run that was stopped before idsync recorded it. It is adopted and brought to the wanted
    /// values; any other holder of the name is a real conflict and stays one.
    fn adopt(&mut self, o: &Op) -> Result<Option<String>> {
        let Some(data) = o.data.as_ref().filter(|_| o.path == "/Users") else {
            return Ok(None);
        };
        let (Some(name), Some(ours)) = (
            data.get("userName").and_then(Json::as_str),
            data.get("externalId").and_then(Json::as_str),
        ) else {
            return Ok(None);
        };
        let url = format!("{}/Users", self.client.scim);
        let filter = format!("userName eq {}", mapping::filter_string(name));
        let page = self
            .client
            .get_json(
                &url,
                &[("filter", &filter), ("attributes", "userName,externalId")],
            )
            .map_err(|e| self.err(e))?;
        let Some(existing) = resources(&page)
            .into_iter()
            .find(|r| r.get("externalId").and_then(Json::as_str) == Some(ours))
        else {
            return Ok(None);
        };
        let Some(id) = existing.get("id").and_then(Json::as_str).map(str::to_owned) else {
            return Ok(None);
        };
        let mut value = data.clone();
        if let Some(m) = value.as_object_mut() {
            m.remove("schemas");
        }
        let body =
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": value}]});
        match self
            .client
            .send_json("PATCH", &format!("{url}/{id}"), &body)
        {
            Ok(_) => Ok(Some(id)),
            Err(HttpError::Status(..)) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    fn record(
        &mut self,
        plan: &mut ExportPlan,
        o: &Op,
        result: std::result::Result<Option<String>, String>,
    ) {
        plan.results[o.item] = Some(match result {
            Ok(id) => {
                plan.ids[o.item] = id.clone();
                ExportResult::Applied {
                    anchor: id.map(Anchor::new),
                }
            }
            Err(m) => ExportResult::Failed(m),
        });
    }

    /// Photos, and references to objects created in this batch, once every object has its id.
    fn after_creates(
        &mut self,
        batch: &[ExportItem],
        plan: &mut ExportPlan,
        _schema: &ProfileSchema,
        bulk: bool,
    ) -> Result<()> {
        let mut ops = std::mem::take(&mut plan.ops);
        for o in &ops {
            let item = &batch[o.item];
            if !matches!(plan.results[o.item], Some(ExportResult::Applied { .. })) {
                continue;
            }
            let id = plan.ids[o.item]
                .clone()
                .or_else(|| item.anchor.as_ref().map(|a| a.as_str().to_owned()));
            let group = self.is_group(item.object_type.as_str());
            match &item.op {
                ExportOp::Add { .. } if !group => {
                    if let Some(id) = &id {
                        self.remember(id, item.dn.as_str());
                    }
                }
                ExportOp::Update {
                    new_dn: Some(d), ..
                } if !group => {
                    if let Some(id) = &id {
                        self.forget(id);
                        self.remember(id, d.as_str());
                    }
                }
                ExportOp::Delete if !group => {
                    if let Some(id) = &id {
                        self.forget(id);
                    }
                }
                _ => {}
            }
        }
        // The references first, all in one `/Bulk` request when the service offers it (one
        // transaction instead of one request and commit per reference), then the photos.
        let mut failures: HashMap<usize, String> = HashMap::new();
        let mut patches: Vec<(usize, String, Json)> = Vec::new();
        let mut photos: Vec<(usize, String)> = Vec::new();
        for o in &ops {
            if !matches!(plan.results[o.item], Some(ExportResult::Applied { .. })) {
                continue;
            }
            let item = &batch[o.item];
            let group = self.is_group(item.object_type.as_str());
            let Some(id) = plan.ids[o.item]
                .clone()
                .or_else(|| item.anchor.as_ref().map(|a| a.as_str().to_owned()))
            else {
                continue;
            };
            let kind = if group { "Groups" } else { "Users" };
            if !o.deferred.is_empty() {
                let mut patch = Vec::new();
                for d in &o.deferred {
                    if let Some(p) = self.deferred_op(d) {
                        patch.push(p);
                    } else {
                        failures.insert(
                            o.item,
                            format!(
                                "{} refers to {d} which is not in the profile store",
                                item.dn
                            ),
                        );
                    }
                }
                if !patch.is_empty() {
                    let body = json!({"schemas": [PATCH_OP], "Operations": patch});
                    patches.push((o.item, format!("/{kind}/{id}"), body));
                }
            }
            if o.photo.is_some() {
                photos.push((o.item, format!("{}/{kind}/{id}/photo", self.client.scim)));
            }
        }
        if bulk && patches.len() > 1 {
            for chunk in patches.chunks(BULK_CHUNK) {
                let operations: Vec<Json> = chunk
                    .iter()
                    .map(|(item, path, body)| {
                        json!({"method": "PATCH", "path": path, "bulkId": format!("d{item}"), "data": body})
                    })
                    .collect();
                let url = format!("{}/Bulk", self.client.scim);
                let answer = self
                    .client
                    .send_json(
                        "POST",
                        &url,
                        &json!({"schemas": [BULK_REQUEST], "Operations": operations}),
                    )
                    .map_err(|e| self.err(e))?;
                let by_bulk = by_bulk_id(&answer);
                for (item, _, _) in chunk {
                    let failure = match by_bulk.get(format!("d{item}").as_str()) {
                        None => Some("the service did not answer this operation".to_owned()),
                        Some(a) => {
                            let status = a
                                .get("status")
                                .and_then(|s| {
                                    json_text(s)
                                        .and_then(|t| t.trim().get(..3)?.parse::<u16>().ok())
                                })
                                .unwrap_or(0);
                            (!(200..300).contains(&status)).then(|| {
                                let detail = a
                                    .get("response")
                                    .and_then(|r| r.get("detail"))
                                    .and_then(Json::as_str)
                                    .unwrap_or("refused");
                                format!("HTTP {status}: {detail}")
                            })
                        }
                    };
                    if let Some(m) = failure {
                        failures.insert(*item, m);
                    }
                }
            }
        } else {
            for (item, path, body) in &patches {
                let url = format!("{}{path}", self.client.scim);
                match self.client.send_json("PATCH", &url, body) {
                    Ok(_) => {}
                    Err(HttpError::Status(s, m)) => {
                        failures.insert(*item, format!("HTTP {s}: {m}"));
                    }
                    Err(e) => return Err(self.err(e)),
                }
            }
        }
        // A new profile's photo goes in the background: its outcome does not change the create's
        // result (the profile exists either way), so the engine records this batch and reads the
        // next one meanwhile. An update's photo is part of its result and is sent now.
        let mut by_item: HashMap<usize, &mut Op> = ops.iter_mut().map(|o| (o.item, o)).collect();
        let mut now: Vec<PhotoUpload> = Vec::new();
        let mut later: Vec<PhotoUpload> = Vec::new();
        for (item, url) in photos {
            let Some(change) = by_item.get_mut(&item).and_then(|o| o.photo.take()) else {
                continue;
            };
            let upload = PhotoUpload {
                item,
                dn: batch[item].dn.to_string(),
                url,
                change,
            };
            if matches!(batch[item].op, ExportOp::Add { .. }) {
                later.push(upload);
            } else {
                now.push(upload);
            }
        }
        if !later.is_empty() {
            let client = Arc::clone(&self.client);
            let id = self.id.to_string();
            self.photo_uploads = Some(std::thread::spawn(move || send_photos(&client, later, &id)));
        }
        for PhotoAnswer { item, result, .. } in send_photos(&self.client, now, self.id.as_str()) {
            match result {
                Ok(()) => {}
                Err(HttpError::Status(s, m)) => {
                    failures.insert(item, format!("photo: HTTP {s}: {m}"));
                }
                Err(e) => return Err(self.err(e)),
            }
        }
        for (item, m) in failures {
            // The resource exists: keep its id so the retry updates it instead of creating it
            // again.
            plan.results[item] = Some(match batch[item].op {
                ExportOp::Add { .. } => ExportResult::Applied {
                    anchor: plan.ids[item]
                        .clone()
                        .or_else(|| batch[item].anchor.as_ref().map(|a| a.as_str().to_owned()))
                        .map(Anchor::new),
                },
                _ => ExportResult::Failed(m),
            });
        }
        plan.ops = ops;
        Ok(())
    }

    /// Waits for the background photo uploads of the last batch. A photo the service refused
    /// is logged (its profile exists and the confirming import shows the photo missing, so the
    /// next sync sends it again); a service that cannot be reached fails the step.
    fn wait_photo_uploads(&mut self) -> Result<()> {
        let Some(h) = self.photo_uploads.take() else {
            return Ok(());
        };
        let answers = h.join().map_err(|_| {
            self.err(HttpError::Transport(
                "the photo upload thread stopped unexpectedly".to_owned(),
            ))
        })?;
        for PhotoAnswer { dn, result, .. } in answers {
            match result {
                Ok(()) => {}
                Err(HttpError::Status(s, m)) => {
                    tracing::warn!("{}: photo of {dn} refused: HTTP {s}: {m}", self.id)
                }
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(())
    }

    /// A deferred reference, now that this batch's creates have ids.
    fn deferred_op(&self, d: &Json) -> Option<Json> {
        let name = d.get("name").and_then(Json::as_str)?;
        let id = self.user_ids.get(&name_key(name))?;
        match d.get("kind").and_then(Json::as_str)? {
            "manager" => Some(
                json!({"op": "replace", "path": Field::Manager.path(), "value": {"value": id}}),
            ),
            _ => Some(json!({"op": "add", "path": "members", "value": [{"value": id}]})),
        }
    }
}

/// A photo to send for one export item.
struct PhotoUpload {
    item: usize,
    dn: String,
    url: String,
    change: PhotoChange,
}

struct PhotoAnswer {
    item: usize,
    dn: String,
    result: HttpResult<()>,
}

/// Sends photo uploads and deletes, a few at a time on the agent's connections: each is one
/// small request, so waiting for one answer before sending the next would leave both sides idle
/// most of the time. Answers come back in the order of `uploads`.
fn send_photos(client: &Client, uploads: Vec<PhotoUpload>, id: &str) -> Vec<PhotoAnswer> {
    let send = |u: &PhotoUpload| match &u.change {
        PhotoChange::Put(bytes) => {
            let sent = client.put_bytes(&u.url, image_type(bytes), bytes);
            if sent.is_ok() {
                idsync_connectors::crash_point!("profile-export:{}:photo-sent", id);
            }
            sent
        }
        PhotoChange::Delete => match client.delete(&u.url) {
            Ok(()) | Err(HttpError::Status(404, _)) => Ok(()),
            Err(e) => Err(e),
        },
    };
    let next = AtomicUsize::new(0);
    let workers = PHOTO_UPLOADS.min(uploads.len());
    let mut results: Vec<(usize, HttpResult<()>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(u) = uploads.get(n) else { break };
                        out.push((n, send(u)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![(
                        usize::MAX,
                        Err(HttpError::Transport(
                            "a photo upload thread stopped unexpectedly".to_owned(),
                        )),
                    )]
                })
            })
            .collect()
    });
    results.sort_by_key(|(n, _)| *n);
    results
        .into_iter()
        .map(|(n, result)| match uploads.get(n) {
            Some(u) => PhotoAnswer {
                item: u.item,
                dn: u.dn.clone(),
                result,
            },
            None => PhotoAnswer {
                item: usize::MAX,
                dn: String::new(),
                result,
            },
        })
        .collect()
}

fn photo_change(v: &[Value]) -> Option<PhotoChange> {
    match v.first() {
        Some(Value::Binary(b)) => b.data.as_ref().map(|d| PhotoChange::Put(d.to_vec())),
        _ => None,
    }
}

/// The key a `userName` is cached and compared by: the profile store's own folding
/// (`idsync_model::fold`, full Unicode case folding of the NFC form), so a reference spelled
/// `ärger` finds the user the service holds as `Ärger`, as the service itself would.
fn name_key(user_name: &str) -> String {
    idsync_model::fold::fold(user_name).into_owned()
}

fn deferred(
    kind: &str,
    v: &Value,
    created: &HashSet<String>,
    dn: &Dn,
) -> std::result::Result<Json, String> {
    match v {
        Value::Reference(Reference::Dn(d)) if created.contains(&name_key(d.as_str())) => {
            Ok(json!({"kind": kind, "name": d.as_str()}))
        }
        Value::Reference(Reference::Dn(d)) => {
            Err(format!("{dn}: {kind} {d} is not in the profile store"))
        }
        other => Err(format!(
            "{dn}: {kind} must be a reference, not {}",
            other.to_text()
        )),
    }
}

fn manager_op(v: &Value, created: &HashSet<String>, dn: &Dn) -> std::result::Result<Json, String> {
    deferred("manager", v, created, dn)
}

fn member_add(v: &Value, created: &HashSet<String>, dn: &Dn) -> std::result::Result<Json, String> {
    deferred("member", v, created, dn)
}

impl ProfileStoreConnector {
    /// Stages one page of the change feed: upserted resources are read back in batches (one
    /// filter query per 50 ids); a resource that no longer exists is a delete.
    fn apply_changes(&mut self, changes: &[Json], sink: &mut dyn ImportSink) -> Result<()> {
        let mut seen = HashSet::new();
        let mut order: Vec<(String, String, bool)> = Vec::new();
        for c in changes.iter().rev() {
            let (Some(kind), Some(id)) = (
                c.get("resourceType").and_then(Json::as_str),
                c.get("id").and_then(Json::as_str),
            ) else {
                continue;
            };
            if !seen.insert((kind.to_owned(), id.to_owned())) {
                continue;
            }
            let delete = c.get("operation").and_then(Json::as_str) == Some("delete");
            order.push((kind.to_owned(), id.to_owned(), delete));
        }
        order.reverse();
        let mut fetched: HashMap<String, CsEntry> = HashMap::new();
        for (kind, resource) in [("User", "Users"), ("Group", "Groups")] {
            let ids: Vec<String> = order
                .iter()
                .filter(|(k, _, d)| k == kind && !d)
                .map(|(_, i, _)| i.clone())
                .collect();
            let url = format!("{}/{resource}", self.client.scim);
            for chunk in ids.chunks(LOOKUP_CHUNK) {
                let filter = mapping::any_eq("id", chunk);
                let count = chunk.len().to_string();
                let page = self
                    .client
                    .get_json(&url, &[("filter", &filter), ("count", &count)])
                    .map_err(|e| self.err(e))?;
                let list = resources(&page);
                let entries = if kind == "User" {
                    self.users_to_entries(&list, sink)?
                } else {
                    self.groups_to_entries(&list, sink)?
                };
                for e in entries {
                    fetched.insert(e.anchor.as_str().to_owned(), e);
                }
            }
        }
        for (_, id, _) in order {
            let change = match fetched.remove(&id) {
                Some(e) => ImportChange::Upsert(e),
                None => {
                    self.forget(&id);
                    ImportChange::Delete {
                        anchor: Some(Anchor::new(id.clone())),
                        dn: Dn::new(id),
                    }
                }
            };
            sink.change(change).map_err(Self::sink_err)?;
        }
        Ok(())
    }
}

/// A `/Bulk` answer's operations by the `bulkId` each answers.
fn by_bulk_id(answer: &Json) -> HashMap<&str, &Json> {
    answer
        .get("Operations")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| Some((a.get("bulkId").and_then(Json::as_str)?, a)))
        .collect()
}

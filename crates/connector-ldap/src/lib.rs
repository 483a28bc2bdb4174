//! The LDAP connector (type `ldap`): a directory server such as OpenLDAP, read and written over
//! LDAP v3 with `ldap3`.
//!
//! - Full import: a paged search (RFC 2696) per base DN for the configured attributes, streamed
//!   entry by entry into the engine's sink; DN-valued attributes become references (the types
//!   come from the server's subschema subentry). The search runs on a connection of its own in a
//!   reader thread that decodes the BER in place (`wire.rs`) and converts entries (`entry.rs`) a
//!   page ahead of the thread that stores them; the other operations go through `ldap3`.
//! - Delta import: RFC 4533 syncrepl in refreshOnly mode with the cookie as watermark (changed
//!   entries arrive whole and are upserts; deletes arrive by entryUUID). When the server answers
//!   with a present list instead of deletes, the connector reads everything (a full read) and says
//!   so. A server without the syncprov overlay is detected by its refusal of the critical sync
//!   control: the connector falls back to `modifyTimestamp` (adds, changes, renames; deletes are
//!   found by the next full import) and reports which method it used.
//! - Export: add, value-level modify (`add:`/`delete:` of the changed values only), delete,
//!   rename and move (modrdn with newSuperior). A per-entry LDAP error is that entry's result; the
//!   rest of the batch goes on.
//!
//! Directory dialects differ in their anchor, delta method and a few attributes: [`Profile`]
//! holds those differences. The Active Directory profile (`profile = "active-directory"`, see
//! `ad.rs`) anchors on objectGUID's text form, reads users, contacts and groups (computer
//! accounts counted as filtered), derives the boolean `accountDisabled` from
//! `userAccountControl`, reads ranged attributes whole, imports deltas by DirSync (changed
//! attributes merged as modifies, member changes at value level, tombstones as deletes) and fits
//! `thumbnailPhoto` under `photo_max_bytes` on export. AD's protocol pieces without I/O (the
//! DirSync control, GUID forms, ranges, account flags, photo fitting) are in `idsync-ad-proto`.
//!
//! With `delta = "usn-changed"` the AD profile polls `uSNChanged` against the root DSE's
//! `highestCommittedUSN` instead (changed objects read whole; deletes found by the next full
//! import).
//!
//! Not done yet for AD: removing references to a deleted object from the groups that held it
//! (Samba's DirSync does not report that link removal).

mod ad;
mod conn;
mod entry;
pub mod escape;
mod schema;
mod wire;

pub use conn::rc_name;
pub use schema::Schema;
/// The full import's BER decoding of server messages, for the fuzz target.
#[doc(hidden)]
pub use wire::decode_stream as fuzz_decode_stream;

use conn::{guarded, Bind, Conn, ConnSettings};
use idsync_connectors::{
    resolve_secret, settings, value_text, AttributeTypes, Capabilities, Connector, DeltaOutcome,
    Error, ExportItem, ExportOp, ExportResult, ImportChange, ImportSink, Result, TypeHint,
};
use idsync_model::{Anchor, AttributeChange, ConnectorId, CsEntry, Dn, Reference, Value};
use ldap3::adapters::{EntriesOnly, PagedResults};
use ldap3::controls::{
    parse_syncinfo, ControlParser, MakeCritical, RawControl, RefreshMode, SyncDone, SyncInfo,
    SyncRequest, SyncState,
};
use ldap3::{Mod, ResultEntry, Scope, SearchEntry};

/// One entry as the paged search's reader hands it over.
enum Read {
    /// Converted on the reader's thread (`None`: not delivered), with its modifyTimestamp and
    /// (when it has no wire digest) its [`idsync_model::entry_digest`]; its wire digest (see
    /// [`Conversion`]); and what the conversion noted.
    Converted(
        Option<(CsEntry, Option<String>, Option<[u8; 32]>)>,
        Option<[u8; 32]>,
        Vec<entry::Note>,
    ),
    /// Not converted: most entries of a full import into a known space are unchanged, which
    /// their wire digest tells. Where its BER is in the batch's bytes, its anchor, its
    /// modifyTimestamp and its wire digest.
    Waiting {
        bytes: std::ops::Range<usize>,
        anchor: Anchor,
        modified: Option<String>,
        wire: [u8; 32],
    },
}

/// One entry decoded and converted.
struct Conversion {
    /// `None`: not delivered (filtered, or without its anchor); else with its modifyTimestamp.
    entry: Option<(CsEntry, Option<String>)>,
    /// Its wire digest, kept only when the conversion noted nothing: an entry with a note is
    /// converted, and noted, again by the next import.
    wire: Option<[u8; 32]>,
    notes: Vec<entry::Note>,
}

/// Decodes a SearchResultEntry's BER and converts it.
fn convert(
    shape: &entry::Shape,
    ber: &[u8],
    wire: Option<[u8; 32]>,
) -> std::result::Result<Conversion, String> {
    let raw = wire::decode_entry(ber)?;
    let mut notes = Vec::new();
    let entry = shape.to_entry(raw, &mut notes);
    Ok(Conversion {
        entry,
        wire: wire.filter(|_| notes.is_empty()),
        notes,
    })
}

/// Entries the reader hands over at once, and the bytes of those it did not convert.
struct ReadBatch {
    entries: Vec<Read>,
    bytes: Vec<u8>,
}

/// What the paged search's reader thread hands to the thread that stores entries.
enum ReadItem {
    /// Entries decoded (and most of them converted) on the reader's thread.
    Ready(ReadBatch),
    /// The search of one base ended with success.
    Done,
    /// Reading failed (of base `i`, or the connection): nothing after it is trustworthy.
    Failed(Option<usize>, String),
}

/// Hands one entry a full read found to the sink with its digests (as an upsert when the read
/// stands in for a delta import), keeping the latest modifyTimestamp seen.
fn hand_over(
    entry: CsEntry,
    modified: Option<String>,
    digest: Option<[u8; 32]>,
    wire: Option<[u8; 32]>,
    as_changes: bool,
    latest: &mut Option<String>,
    sink: &mut dyn ImportSink,
) -> std::result::Result<(), String> {
    keep_latest(modified, latest);
    if as_changes {
        sink.change(ImportChange::Upsert(entry))
    } else {
        sink.entry_read(entry, digest, wire)
    }
}

fn keep_latest(modified: Option<String>, latest: &mut Option<String>) {
    if let Some(m) = modified {
        if latest.as_ref().is_none_or(|l| m > *l) {
            *latest = Some(m);
        }
    }
}

/// The storing side of a full read: hands what the reader sent to the sink, converting the
/// entries that waited and turned out changed, and counts how many wire digests matched.
struct Storing<'a> {
    shape: &'a entry::Shape,
    as_changes: bool,
    /// The latest modifyTimestamp seen.
    latest: Option<String>,
    /// Entries whose wire digest was compared since the last count: unchanged, and not.
    same: u32,
    changed: u32,
}

/// Why an entry could not be stored.
enum Stored {
    /// The engine refused it.
    Refused(String),
    /// Its BER did not decode after all.
    Malformed(String),
}

impl Storing<'_> {
    /// Whether the engine knows the entry unchanged by its wire digest (then it is done with).
    fn unchanged(
        &mut self,
        sink: &mut dyn ImportSink,
        anchor: &Anchor,
        wire: [u8; 32],
        modified: &Option<String>,
    ) -> std::result::Result<bool, Stored> {
        let same = sink.unchanged_wire(anchor, wire).map_err(Stored::Refused)?;
        if same {
            self.same += 1;
            keep_latest(modified.clone(), &mut self.latest);
        } else {
            self.changed += 1;
        }
        Ok(same)
    }

    fn store(
        &mut self,
        read: Read,
        bytes: &[u8],
        sink: &mut dyn ImportSink,
    ) -> std::result::Result<(), Stored> {
        let (entry, modified, digest, wire) = match read {
            Read::Converted(converted, wire, notes) => {
                for n in notes {
                    entry::deliver(n, sink);
                }
                let Some((entry, modified, digest)) = converted else {
                    return Ok(());
                };
                if let Some(w) = wire {
                    if self.unchanged(sink, &entry.anchor, w, &modified)? {
                        return Ok(());
                    }
                }
                (entry, modified, digest, wire)
            }
            Read::Waiting {
                bytes: at,
                anchor,
                modified,
                wire,
            } => {
                if self.unchanged(sink, &anchor, wire, &modified)? {
                    return Ok(());
                }
                // Changed, new or filtered: converted here after all.
                let c = convert(self.shape, &bytes[at], Some(wire)).map_err(Stored::Malformed)?;
                for n in c.notes {
                    entry::deliver(n, sink);
                }
                let Some((entry, modified)) = c.entry else {
                    return Ok(());
                };
                // The engine computes the content digest if it needs it.
                (entry, modified, None, c.wire)
            }
        };
        let as_changes = self.as_changes;
        hand_over(
            entry,
            modified,
            digest,
            wire,
            as_changes,
            &mut self.latest,
            sink,
        )
        .map_err(Stored::Refused)
    }
}

/// What the Active Directory reader task hands on: entries as `ldap3` decoded them (their
/// ranged attributes need the connection), then the result.
enum AdReadItem {
    Entry(SearchEntry),
    Failed(String),
    Done(u32, String),
}
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

/// The directory dialect: what differs between servers beyond the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// OpenLDAP (and other RFC 4533 servers): entryUUID anchors, syncrepl deltas.
    #[default]
    Openldap,
    /// Active Directory (and Samba AD): objectGUID anchors in their usual text form, DirSync
    /// deltas, user/contact/group objects with computer accounts filtered, and the
    /// `userAccountControl` disabled bit as the boolean attribute `accountDisabled`.
    ActiveDirectory,
}

/// The boolean attribute the Active Directory profile derives from `userAccountControl`.
pub const ACCOUNT_DISABLED: &str = "accountDisabled";

/// What the Active Directory profile reads when no filter is configured.
const AD_OBJECTS: &str = "(|(objectClass=user)(objectClass=contact)(objectClass=group))";

impl Profile {
    fn default_anchor(self) -> &'static str {
        match self {
            Profile::Openldap => "entryUUID",
            Profile::ActiveDirectory => "objectGUID",
        }
    }

    /// The anchor's text form from the attribute's raw value.
    fn anchor_text(self, raw: &[u8]) -> String {
        match self {
            Profile::Openldap => String::from_utf8_lossy(raw).into_owned(),
            Profile::ActiveDirectory => idsync_ad_proto::guid_text(raw)
                .unwrap_or_else(|| raw.iter().map(|x| format!("{x:02x}")).collect()),
        }
    }

    /// The anchor as a syncrepl state control names it (16 raw bytes of the entryUUID).
    fn anchor_of_sync_uuid(self, raw: &[u8]) -> String {
        match self {
            Profile::Openldap | Profile::ActiveDirectory => uuid_text(raw),
        }
    }

    /// Attributes the server maintains itself and refuses on add.
    fn operational(self, name: &str) -> bool {
        const OPS: &[&str] = &[
            "entryuuid",
            "entrycsn",
            "createtimestamp",
            "modifytimestamp",
            "creatorsname",
            "modifiersname",
            "entrydn",
            "subschemasubentry",
            "hassubordinates",
            "structuralobjectclass",
            "contextcsn",
        ];
        // What AD maintains itself (system-only or constructed) and refuses on add.
        const AD_OPS: &[&str] = &[
            "objectguid",
            "objectsid",
            "whencreated",
            "whenchanged",
            "usncreated",
            "usnchanged",
            "distinguishedname",
            "instancetype",
            "objectcategory",
            "dscorepropagationdata",
            "name",
            "samaccounttype",
            "pwdlastset",
            "badpwdcount",
            "badpasswordtime",
            "lastlogon",
            "lastlogoff",
            "lastlogontimestamp",
            "logoncount",
            "memberof",
            "isdeleted",
            "modifytimestamp",
            "createtimestamp",
            "accountdisabled",
        ];
        let lower = name.to_ascii_lowercase();
        match self {
            Profile::Openldap => OPS.contains(&lower.as_str()),
            Profile::ActiveDirectory => {
                AD_OPS.contains(&lower.as_str()) || idsync_ad_proto::is_secret_attribute(&lower)
            }
        }
    }
}

fn uuid_text(b: &[u8]) -> String {
    if b.len() != 16 {
        return b.iter().map(|x| format!("{x:02x}")).collect();
    }
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// How delta imports find changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeltaMethod {
    /// syncrepl when the server offers it, else modifyTimestamp.
    #[default]
    Auto,
    Syncrepl,
    ModifyTimestamp,
    /// Active Directory: `uSNChanged` polling against the root DSE's `highestCommittedUSN`
    /// instead of DirSync (changed objects read whole; deletes are found by the next full
    /// import).
    UsnChanged,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    starttls: bool,
    /// A PEM file of CA certificates to verify the server with (instead of the system's).
    ca_file: Option<String>,
    /// Certificate verification; turning it off is explicit and logged.
    #[serde(default = "yes")]
    tls_verify: bool,
    bind_dn: Option<String>,
    /// `env:NAME` or `file:PATH`.
    bind_password: Option<String>,
    /// Send the bind password over plain `ldap://` without StartTLS to a host that is not
    /// loopback. Refused unless set; logged as a warning when set.
    #[serde(default)]
    allow_cleartext_bind: bool,
    /// SASL EXTERNAL (a client certificate or ldapi peer credentials) instead of a simple bind.
    #[serde(default)]
    sasl_external: bool,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
    /// Where the objects are; each is searched with its subtree.
    base_dns: Vec<String>,
    /// An optional LDAP filter (RFC 4515) every search is narrowed by.
    filter: Option<String>,
    /// The attributes to read (empty: every user attribute).
    #[serde(default)]
    attributes: Vec<String>,
    anchor: Option<String>,
    #[serde(default = "default_page")]
    page_size: i32,
    #[serde(default)]
    delta: DeltaMethod,
    #[serde(default)]
    profile: Profile,
    /// The most bytes of a `thumbnailPhoto` written to AD (its `rangeUpper`); a larger photo is
    /// scaled down (never up) and recompressed to fit. 96x96 and at most 10 KB is Microsoft's
    /// recommendation.
    #[serde(default = "default_photo_max")]
    photo_max_bytes: usize,
    /// Attribute types overriding the server's schema.
    #[serde(default)]
    attribute_types: BTreeMap<String, TypeHint>,
}

fn yes() -> bool {
    true
}
fn default_timeout() -> u64 {
    60
}
fn default_photo_max() -> usize {
    102_400
}
fn default_page() -> i32 {
    1000
}

const PERMISSIVE_MODIFY_OID: &str = "1.2.840.113556.1.4.1413";
const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
/// How many converted entries the paged search's reader hands over at once.
const READ_BATCH: usize = 128;

const SYNC_DONE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.3";

pub struct LdapConnector {
    id: ConnectorId,
    s: LdapSettings,
    conn_settings: ConnSettings,
    anchor: String,
    conn: Option<Conn>,
    schema: Option<Schema>,
    /// How entries become connector-space entries (the types follow the server's schema).
    shape: entry::Shape,
    /// Whether the server serves syncrepl for our bases (probed once).
    syncrepl: Option<bool>,
    /// The watermark taken before the last full import started.
    after_full: Option<String>,
    /// Values the last export wrote in place of the ones given (fitted photos).
    written: Vec<idsync_connectors::WrittenValue>,
}

/// The base attribute name without options (`jpegPhoto;binary` → `jpegPhoto`).
fn base_name(name: &str) -> &str {
    name.split(';').next().unwrap_or(name)
}

impl LdapConnector {
    /// Checks the settings; connects only when a step needs the server.
    pub fn new(id: ConnectorId, raw: &toml::Table, base_dir: &Path) -> Result<Self> {
        let s: LdapSettings = settings(&id, raw)?;
        let cfg = |message: String| Error::Config {
            connector: id.to_string(),
            message,
        };
        if !(s.url.starts_with("ldap://") || s.url.starts_with("ldaps://")) {
            return Err(cfg(format!(
                "url `{}` must start with ldap:// or ldaps://",
                s.url
            )));
        }
        if s.url.contains('@') {
            return Err(cfg(
                "url must not carry credentials: use bind_dn and bind_password = \"env:NAME\""
                    .to_owned(),
            ));
        }
        if s.delta == DeltaMethod::UsnChanged && s.profile != Profile::ActiveDirectory {
            return Err(cfg(
                "delta = \"usn-changed\" needs profile = \"active-directory\"".to_owned(),
            ));
        }
        if s.base_dns.is_empty() {
            return Err(cfg("base_dns must name at least one base DN".to_owned()));
        }
        if let Some(f) = &s.filter {
            ldap3::parse_filter(f).map_err(|_| {
                cfg(format!(
                    "filter `{f}` is not a valid LDAP filter (RFC 4515)"
                ))
            })?;
        }
        if !(1..=1_000_000).contains(&s.page_size) {
            return Err(cfg("page_size must be between 1 and 1000000".to_owned()));
        }
        let bind = match (&s.bind_dn, &s.bind_password, s.sasl_external) {
            (_, _, true) => Bind::SaslExternal,
            (Some(dn), Some(pw), false) => Bind::Simple {
                dn: dn.clone(),
                // At the key's line: an unset variable, an unreadable file.
                password: resolve_secret(pw, base_dir).map_err(|m| Error::Setting {
                    connector: id.to_string(),
                    key: "bind_password".to_owned(),
                    message: format!("bind_password: {m}"),
                })?,
            },
            (Some(_), None, false) => {
                return Err(cfg(
                    "bind_dn needs bind_password (env:NAME or file:PATH)".to_owned()
                ))
            }
            (None, _, false) => Bind::Anonymous,
        };
        let conn_settings = ConnSettings {
            connector: id.to_string(),
            url: s.url.clone(),
            starttls: s.starttls,
            ca_file: s.ca_file.as_ref().map(|f| base_dir.join(f)),
            tls_verify: s.tls_verify,
            bind,
            timeout: Duration::from_secs(s.timeout_seconds.max(1)),
            allow_cleartext_bind: s.allow_cleartext_bind,
            cleartext_warned: std::sync::Arc::new(std::sync::Once::new()),
        };
        // Refused here, when the configuration is checked, long before anything is sent.
        if conn_settings.cleartext_bind() && !conn_settings.allow_cleartext_bind {
            return Err(Error::Setting {
                connector: id.to_string(),
                key: "url".to_owned(),
                message: conn::cleartext_refused(&conn_settings.url),
            });
        }
        if let Some(ca) = &conn_settings.ca_file {
            if !ca.exists() {
                return Err(cfg(format!("ca_file {} does not exist", ca.display())));
            }
        }
        Ok(Self {
            anchor: s
                .anchor
                .clone()
                .unwrap_or_else(|| s.profile.default_anchor().to_owned()),
            shape: entry::Shape::new(
                s.profile,
                s.anchor
                    .clone()
                    .unwrap_or_else(|| s.profile.default_anchor().to_owned()),
                s.attributes.clone(),
                s.attribute_types.contains_key("modifyTimestamp"),
                AttributeTypes::new(&s.attribute_types),
            ),
            syncrepl: match s.delta {
                // AD has no syncrepl: its deltas are DirSync's.
                _ if s.profile == Profile::ActiveDirectory => Some(false),
                DeltaMethod::Auto => None,
                DeltaMethod::Syncrepl => Some(true),
                DeltaMethod::ModifyTimestamp | DeltaMethod::UsnChanged => Some(false),
            },
            id,
            s,
            conn_settings,
            conn: None,
            schema: None,
            after_full: None,
            written: Vec::new(),
        })
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Sink(format!("connector `{}`: {}", self.id, message.into()))
    }

    /// The open connection, connecting (and reading the schema) when there is none or the
    /// last one was closed.
    fn conn(&mut self) -> Result<&mut Conn> {
        let closed = match &mut self.conn {
            Some(c) => {
                // Let the connection's driver run once, so a connection the server closed
                // while it sat idle is seen as closed now, not at the next request.
                let _ = guarded("connection check", || {
                    c.rt.block_on(async {
                        ldap3::tokio::task::yield_now().await;
                        ldap3::tokio::task::yield_now().await;
                    });
                    Ok(())
                });
                c.ldap.is_closed()
            }
            None => true,
        };
        if closed {
            self.conn = None;
            let c = Conn::open(&self.conn_settings).map_err(|m| {
                self.err(format!(
                    "{m} (nothing is deleted; the next run tries again)"
                ))
            })?;
            self.conn = Some(c);
            if self.schema.is_none() {
                self.load_schema()?;
            }
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Sink("no connection".into()))
    }

    /// Reads the subschema subentry named by the root DSE.
    fn load_schema(&mut self) -> Result<()> {
        let root = self.search_all("", Scope::Base, "(objectClass=*)", &["subschemaSubentry"])?;
        let sub = root
            .first()
            .and_then(|e| e.attrs.get("subschemaSubentry"))
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_else(|| "cn=Subschema".to_owned());
        let entries = self.search_all(
            &sub,
            Scope::Base,
            "(objectClass=subschema)",
            &["attributeTypes", "objectClasses"],
        )?;
        let schema = match entries.first() {
            Some(e) => Schema::parse(
                e.attrs
                    .get("attributeTypes")
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
                e.attrs
                    .get("objectClasses")
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            ),
            None => {
                tracing::warn!(connector = %self.id, "the server's schema is not readable: attribute types are guessed");
                Schema::default()
            }
        };
        let mut hints = schema.hints();
        for (k, v) in &self.s.attribute_types {
            hints.insert(k.to_ascii_lowercase(), *v);
        }
        self.shape.set_types(AttributeTypes::new(&hints));
        self.schema = Some(schema);
        Ok(())
    }

    /// The schema as read from the server (after the first connection).
    pub fn schema(&mut self) -> Result<&Schema> {
        self.conn()?;
        Ok(self.schema.get_or_insert_with(Schema::default))
    }

    /// A small search, collected (root DSE, schema, one entry).
    fn search_all(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>> {
        let id = self.id.clone();
        let c = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::Sink("no connection".into()))?;
        let timeout = c.timeout;
        let ldap = &mut c.ldap;
        let r = guarded("search", || {
            c.rt.block_on(async {
                let (entries, _) = ldap
                    .with_timeout(timeout)
                    .search(base, scope, filter, attrs.to_vec())
                    .await
                    .map_err(|e| e.to_string())?
                    .success()
                    .map_err(|e| e.to_string())?;
                Ok(entries.into_iter().map(SearchEntry::construct).collect())
            })
        });
        r.map_err(|m| Error::Sink(format!("connector `{id}`: search of `{base}`: {m}")))
    }

    /// Searches an entry by one attribute's value (the value escaped per RFC 4515).
    pub fn find_by(&mut self, attr: &str, value: &str) -> Result<Vec<CsEntry>> {
        self.conn()?;
        let filter = self.narrow(&escape::eq_filter(attr, value));
        let attrs = self.requested();
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for base in self.s.base_dns.clone() {
            for e in self.search_all(&base, Scope::Subtree, &filter, &attrs)? {
                let mut ignore = IgnoreErrors;
                if let Some((entry, _)) = self.to_entry(e, &mut ignore) {
                    out.push(entry);
                }
            }
        }
        Ok(out)
    }

    /// The configured filter and-ed with another.
    fn narrow(&self, extra: &str) -> String {
        match &self.s.filter {
            Some(f) => {
                let f = if f.starts_with('(') {
                    f.clone()
                } else {
                    format!("({f})")
                };
                format!("(&{f}{extra})")
            }
            None => extra.to_owned(),
        }
    }

    fn base_filter(&self) -> String {
        match &self.s.filter {
            // AD reads users, contacts and groups only, narrowed by the configured filter.
            Some(f) if self.s.profile == Profile::ActiveDirectory => {
                if f.starts_with('(') {
                    format!("(&{AD_OBJECTS}{f})")
                } else {
                    format!("(&{AD_OBJECTS}({f}))")
                }
            }
            Some(f) if f.starts_with('(') => f.clone(),
            Some(f) => format!("({f})"),
            None => match self.s.profile {
                Profile::Openldap => "(objectClass=*)".to_owned(),
                Profile::ActiveDirectory => AD_OBJECTS.to_owned(),
            },
        }
    }

    /// The attributes every search asks for: the configured ones (or all user attributes), the
    /// object classes, the anchor and modifyTimestamp (the fallback's watermark).
    fn requested(&self) -> Vec<String> {
        let mut a: Vec<String> = if self.s.attributes.is_empty() {
            vec!["*".to_owned()]
        } else {
            self.s.attributes.clone()
        };
        let ad = self.s.profile == Profile::ActiveDirectory;
        let extras: &[&str] = if ad {
            &[
                "objectClass",
                self.anchor.as_str(),
                "modifyTimestamp",
                "userAccountControl",
            ]
        } else {
            &["objectClass", self.anchor.as_str(), "modifyTimestamp"]
        };
        for &extra in extras {
            if !a.iter().any(|x| x.eq_ignore_ascii_case(extra)) {
                a.push(extra.to_owned());
            }
        }
        a
    }

    /// Whether the user asked for this attribute (the connector also reads a few for itself).
    fn wanted(&self, name: &str) -> bool {
        self.shape.wanted(name)
    }

    /// Values typed by the schema's (or the settings') type; a value the type does not fit is
    /// kept as text and reported on the object.
    fn typed_values(
        &self,
        dn: &str,
        name: &str,
        values: Vec<Vec<u8>>,
        sink: &mut dyn ImportSink,
    ) -> Vec<Value> {
        self.shape
            .typed_values(dn, name, values, &mut entry::ToSink(sink))
    }

    /// Turns a search entry into a connector-space entry, with its modifyTimestamp. A value
    /// the schema's type does not fit is kept as text and reported on the object.
    fn to_entry(
        &self,
        e: SearchEntry,
        sink: &mut dyn ImportSink,
    ) -> Option<(CsEntry, Option<String>)> {
        self.shape
            .to_entry(entry::RawEntry::from_search(e), &mut entry::ToSink(sink))
    }

    /// Asks the server for a syncrepl cookie for one base (a base-scope refresh that returns at
    /// most the base entry). `Ok(None)` when the server has no syncrepl for it.
    fn sync_cookie(&mut self, base: &str) -> Result<Option<Vec<u8>>> {
        self.conn()?;
        let id = self.id.clone();
        let c = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::Sink("no connection".into()))?;
        let timeout = c.timeout;
        let ldap = &mut c.ldap;
        let r = guarded("syncrepl probe", || {
            c.rt.block_on(async {
                let ctrl = SyncRequest {
                    mode: RefreshMode::RefreshOnly,
                    cookie: None,
                    reload_hint: false,
                }
                .critical();
                let ldap3::SearchResult(_, res) = ldap
                    .with_controls(ctrl)
                    .with_timeout(timeout)
                    .search(base, Scope::Base, "(objectClass=*)", vec!["1.1"])
                    .await
                    .map_err(|e| e.to_string())?;
                if res.rc != 0 {
                    return Ok(Err(res.rc));
                }
                let done = res
                    .ctrls
                    .iter()
                    .find(|c| c.1.ctype == SYNC_DONE_OID)
                    .and_then(|c| c.1.val.as_deref().map(SyncDone::parse));
                Ok(Ok(done.and_then(|d| d.cookie)))
            })
        })
        .map_err(|m| Error::Sink(format!("connector `{id}`: {m}")))?;
        match r {
            Ok(cookie) => Ok(Some(cookie.unwrap_or_default())),
            // unavailableCriticalExtension, unwillingToPerform, ...: no syncprov here.
            Err(rc) => {
                tracing::info!(connector = %self.id, rc, "the server refused syncrepl");
                Ok(None)
            }
        }
    }

    /// Whether to use syncrepl, probing the server once in `auto` mode.
    fn use_syncrepl(&mut self) -> Result<bool> {
        if let Some(b) = self.syncrepl {
            return Ok(b);
        }
        let base = self.s.base_dns[0].clone();
        let ok = self.sync_cookie(&base)?.is_some();
        self.syncrepl = Some(ok);
        Ok(ok)
    }

    /// Reads every entry under the bases with paged results into the sink. Returns the latest
    /// modifyTimestamp seen.
    ///
    /// The search runs on its own connection in a reader thread ([`wire::Wire`]), a page
    /// ahead: the server sends and the reader decodes and converts the next entries while this
    /// thread stores the last ones.
    fn read_all(
        &mut self,
        filter: &str,
        sink: &mut dyn ImportSink,
        as_changes: bool,
    ) -> Result<Option<String>> {
        // The connection the other steps use: it reads the schema the conversion types by.
        self.conn()?;
        if self.s.profile == Profile::ActiveDirectory {
            return self.read_all_ad(filter, sink, as_changes);
        }
        let settings = self.conn_settings.clone();
        let shape = self.shape.clone();
        let bases = self.s.base_dns.clone();
        let attrs = self.requested();
        let page = self.s.page_size;
        let filter_owned = filter.to_owned();
        // Wire digests are kept by full imports only (a read that stands in for a delta import
        // delivers upserts).
        let wire_key = if as_changes { None } else { shape.wire_key() };
        // Whether the reader lets entries wait unconverted: from the start when the space held
        // objects; the storing thread turns it off while most entries turn out changed, and on
        // again when most turn out unchanged.
        let waiting = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
            wire_key.is_some() && sink.knows_objects(),
        ));
        let (tx, rx) = std::sync::mpsc::sync_channel::<ReadItem>(
            (2 * page.max(1) as usize).div_ceil(READ_BATCH).max(2),
        );
        // The bytes of waiting entries go back to the reader to be filled again (fresh memory
        // for every batch would be zeroed by the system first).
        let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let reader_waiting = waiting.clone();
        let reader_shape = shape.clone();
        let reader = std::thread::Builder::new()
            .name("ldap-reader".to_owned())
            .spawn(move || {
                let shape = reader_shape;
                let mut wire = match wire::Wire::open(&settings) {
                    Ok(w) => w,
                    Err(m) => {
                        let _ = tx.send(ReadItem::Failed(None, m));
                        return;
                    }
                };
                let next_batch = || ReadBatch {
                    entries: Vec::with_capacity(READ_BATCH),
                    bytes: spare_rx.try_recv().unwrap_or_default(),
                };
                for (i, base) in bases.iter().enumerate() {
                    let mut batch = next_batch();
                    let mut stopped = false;
                    let r = wire.paged_search(base, &filter_owned, &attrs, page, &mut |ber| {
                        let digest = wire_key.as_ref().map(|k| idsync_model::wire_digest(k, ber));
                        let lazy = reader_waiting.load(std::sync::atomic::Ordering::Relaxed);
                        let marks = match digest {
                            Some(d) if lazy => wire::entry_marks(ber, &shape.anchor)
                                .ok()
                                .and_then(|m| Some((m.anchor?, m.modified, d))),
                            _ => None,
                        };
                        if let Some((anchor, modified, d)) = marks {
                            let from = batch.bytes.len();
                            batch.bytes.extend_from_slice(ber);
                            batch.entries.push(Read::Waiting {
                                bytes: from..batch.bytes.len(),
                                anchor: Anchor::new(shape.profile.anchor_text(anchor)),
                                modified: modified.map(|m| String::from_utf8_lossy(m).into_owned()),
                                wire: d,
                            });
                        } else {
                            let c = convert(&shape, ber, digest)?;
                            // Without a wire digest the content digest is computed here, off
                            // the thread that stores (with one, the engine needs none).
                            let converted = c.entry.map(|(e, modified)| {
                                let d = c.wire.is_none().then(|| {
                                    idsync_model::entry_digest(
                                        &e.dn,
                                        &e.object_classes,
                                        &e.attributes,
                                    )
                                });
                                (e, modified, d)
                            });
                            batch
                                .entries
                                .push(Read::Converted(converted, c.wire, c.notes));
                        }
                        if batch.entries.len() >= READ_BATCH
                            && tx
                                .send(ReadItem::Ready(std::mem::replace(&mut batch, next_batch())))
                                .is_err()
                        {
                            // The storing thread stopped (the engine refused an entry).
                            stopped = true;
                        }
                        Ok(!stopped)
                    });
                    if stopped {
                        return;
                    }
                    if !batch.entries.is_empty() && tx.send(ReadItem::Ready(batch)).is_err() {
                        return;
                    }
                    let item = match r {
                        Ok(()) => ReadItem::Done,
                        Err(m) => ReadItem::Failed(Some(i), m),
                    };
                    let failed = matches!(item, ReadItem::Failed(..));
                    if tx.send(item).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| self.err(format!("cannot start the LDAP reader thread: {e}")))?;
        let mut storing = Storing {
            shape: &shape,
            as_changes,
            latest: None,
            same: 0,
            changed: 0,
        };
        let mut done = 0;
        let mut outcome: Result<()> = Ok(());
        'read: for item in rx.iter() {
            match item {
                ReadItem::Ready(batch) => {
                    for read in batch.entries {
                        match storing.store(read, &batch.bytes, sink) {
                            Ok(()) => {}
                            Err(Stored::Refused(m)) => {
                                outcome = Err(Error::Sink(m));
                                break 'read;
                            }
                            Err(Stored::Malformed(m)) => {
                                outcome = Err(self.err(format!(
                                    "{m} (nothing is deleted; the next run reads again)"
                                )));
                                break 'read;
                            }
                        }
                    }
                    let mut spare = batch.bytes;
                    spare.clear();
                    let _ = spare_tx.send(spare);
                    if storing.same + storing.changed >= READ_BATCH as u32 {
                        waiting.store(
                            storing.same > storing.changed,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        (storing.same, storing.changed) = (0, 0);
                    }
                }
                ReadItem::Done => done += 1,
                ReadItem::Failed(base, m) => {
                    let place = match base {
                        Some(i) => format!("reading `{}` failed", self.s.base_dns[i]),
                        None => "the reading connection failed".to_owned(),
                    };
                    outcome = Err(self.err(format!(
                        "{place}: {m} (nothing is deleted; the next run reads again)"
                    )));
                    break 'read;
                }
            }
        }
        drop(rx);
        let joined = reader.join();
        outcome?;
        if joined.is_err() || done < self.s.base_dns.len() {
            return Err(self.err(
                "the search ended without a result from the server (nothing is deleted; the next run reads again)",
            ));
        }
        Ok(storing.latest)
    }

    /// [`Self::read_all`] for Active Directory, through `ldap3`: each entry's ranged
    /// attributes are read whole (more searches on the same connection) before it is converted.
    fn read_all_ad(
        &mut self,
        filter: &str,
        sink: &mut dyn ImportSink,
        as_changes: bool,
    ) -> Result<Option<String>> {
        self.conn()?;
        let attrs = self.requested();
        let page = self.s.page_size;
        let mut latest: Option<String> = None;
        for base in self.s.base_dns.clone() {
            let id = self.id.clone();
            let this = &*self;
            let c = self
                .conn
                .as_ref()
                .ok_or_else(|| Error::Sink("no connection".into()))?;
            let mut ldap = c.ldap.clone();
            let mut ranges = c.ldap.clone();
            let ad = this.s.profile == Profile::ActiveDirectory;
            let timeout = c.timeout;
            let mut failure: Option<Error> = None;
            let r = guarded("paged search", || {
                c.rt.block_on(async {
                    // The paged search runs on the connection's worker, a page ahead: the
                    // server sends the next page while this thread stores the last one.
                    let (tx, mut rx) =
                        ldap3::tokio::sync::mpsc::channel::<AdReadItem>(2 * page.max(1) as usize);
                    let base_owned = base.clone();
                    let filter_owned = filter.to_owned();
                    let attrs_owned = attrs.clone();
                    let reader = ldap3::tokio::spawn(async move {
                        let adapters: Vec<Box<dyn ldap3::adapters::Adapter<_, _>>> = vec![
                            Box::new(EntriesOnly::new()),
                            Box::new(PagedResults::new(page)),
                        ];
                        let started = ldap
                            .with_timeout(timeout)
                            .streaming_search_with(
                                adapters,
                                &base_owned,
                                Scope::Subtree,
                                &filter_owned,
                                attrs_owned,
                            )
                            .await;
                        let mut stream = match started {
                            Ok(s) => s,
                            Err(e) => {
                                let _ = tx.send(AdReadItem::Failed(e.to_string())).await;
                                return;
                            }
                        };
                        loop {
                            match stream.next().await {
                                Ok(Some(re)) => {
                                    let e = SearchEntry::construct(re);
                                    if tx.send(AdReadItem::Entry(e)).await.is_err() {
                                        // The reader stopped (the engine refused an entry).
                                        let _ = stream.finish().await;
                                        return;
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    let _ = tx.send(AdReadItem::Failed(e.to_string())).await;
                                    return;
                                }
                            }
                        }
                        let res = stream.finish().await;
                        let _ = tx.send(AdReadItem::Done(res.rc, res.text)).await;
                    });
                    let mut done = false;
                    while let Some(item) = rx.recv().await {
                        let mut e = match item {
                            AdReadItem::Entry(e) => e,
                            AdReadItem::Failed(e) => return Err(e),
                            AdReadItem::Done(rc, text) => {
                                if rc != 0 {
                                    return Err(conn::result_text(rc, &text));
                                }
                                done = true;
                                break;
                            }
                        };
                        if ad {
                            ad::complete_ranges(&mut ranges, timeout, &mut e).await?;
                        }
                        let Some((entry, modified)) = this.to_entry(e, sink) else {
                            continue;
                        };
                        let sent =
                            hand_over(entry, modified, None, None, as_changes, &mut latest, sink);
                        if let Err(m) = sent {
                            failure = Some(Error::Sink(m));
                            drop(rx);
                            let _ = reader.await;
                            return Ok(());
                        }
                    }
                    if !done {
                        // The reader ended without a result: it panicked (ldap3 on bad input).
                        return Err("the search ended without a result from the server".to_owned());
                    }
                    Ok(())
                })
            });
            if let Some(f) = failure {
                return Err(f);
            }
            r.map_err(|m| {
                Error::Sink(format!(
                    "connector `{id}`: reading `{base}` failed: {m} (nothing is deleted; the next run reads again)"
                ))
            })?;
        }
        Ok(latest)
    }

    /// One syncrepl refresh of one base. Returns the new cookie, or `None` when the server
    /// answered with a present list (or asked for a reload): the caller then reads everything.
    fn sync_refresh(
        &mut self,
        base: &str,
        cookie: Vec<u8>,
        sink: &mut dyn ImportSink,
    ) -> Result<Option<Vec<u8>>> {
        self.conn()?;
        let attrs = self.requested();
        let filter = self.base_filter();
        let id = self.id.clone();
        let profile = self.s.profile;
        let this = &*self;
        let c = self
            .conn
            .as_ref()
            .ok_or_else(|| Error::Sink("no connection".into()))?;
        let mut ldap = c.ldap.clone();
        let timeout = c.timeout;
        let mut failure: Option<Error> = None;
        let r = guarded("syncrepl refresh", || {
            c.rt.block_on(async {
                let ctrl = SyncRequest {
                    mode: RefreshMode::RefreshOnly,
                    cookie: Some(cookie.clone()),
                    reload_hint: false,
                }
                .critical();
                let mut stream = ldap
                    .with_controls(ctrl)
                    .with_timeout(timeout)
                    .streaming_search(base, Scope::Subtree, &filter, attrs.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                let mut latest = cookie.clone();
                let mut present = false;
                loop {
                    let re: ResultEntry = match stream.next().await.map_err(|e| e.to_string())? {
                        Some(re) => re,
                        None => break,
                    };
                    if re.is_ref() {
                        continue;
                    }
                    let sent = if re.is_intermediate() {
                        match parse_syncinfo(re) {
                            SyncInfo::NewCookie(c) => {
                                latest = c;
                                Ok(())
                            }
                            SyncInfo::RefreshDelete { cookie, .. } => {
                                if let Some(c) = cookie {
                                    latest = c;
                                }
                                Ok(())
                            }
                            SyncInfo::RefreshPresent { cookie, .. } => {
                                present = true;
                                if let Some(c) = cookie {
                                    latest = c;
                                }
                                Ok(())
                            }
                            SyncInfo::SyncIdSet {
                                cookie,
                                refresh_deletes,
                                sync_uuids,
                            } => {
                                if let Some(c) = cookie {
                                    latest = c;
                                }
                                if !refresh_deletes {
                                    present = true;
                                    Ok(())
                                } else {
                                    let mut r = Ok(());
                                    for u in sync_uuids {
                                        r = sink.change(ImportChange::Delete {
                                            anchor: Some(Anchor::new(
                                                profile.anchor_of_sync_uuid(&u),
                                            )),
                                            dn: Dn::new(""),
                                        });
                                        if r.is_err() {
                                            break;
                                        }
                                    }
                                    r
                                }
                            }
                        }
                    } else {
                        let state =
                            re.1.iter()
                                .find(|c| c.1.ctype == SYNC_STATE_OID)
                                .and_then(|c| c.1.val.as_deref().map(SyncState::parse));
                        let Some(state) = state else { continue };
                        if let Some(c) = state.cookie {
                            latest = c;
                        }
                        use ldap3::controls::EntryState;
                        match state.state {
                            EntryState::Present => {
                                present = true;
                                Ok(())
                            }
                            EntryState::Delete => sink.change(ImportChange::Delete {
                                anchor: Some(Anchor::new(
                                    profile.anchor_of_sync_uuid(&state.entry_uuid),
                                )),
                                dn: Dn::new(entry::RawEntry::from_result(re)?.dn),
                            }),
                            EntryState::Add | EntryState::Modify => {
                                // A refresh delivers a changed entry whole, as "add": an upsert.
                                let raw = entry::RawEntry::from_result(re)?;
                                match this.shape.to_entry(raw, &mut entry::ToSink(sink)) {
                                    Some((entry, _)) => sink.change(ImportChange::Upsert(entry)),
                                    None => Ok(()),
                                }
                            }
                        }
                    };
                    if let Err(m) = sent {
                        failure = Some(Error::Sink(m));
                        let _ = stream.finish().await;
                        return Ok(None);
                    }
                }
                let res = stream.finish().await;
                if res.rc == 4096 {
                    // e-syncRefreshRequired: the cookie is too old; a full reload is needed.
                    return Ok(None);
                }
                if res.rc != 0 {
                    return Err(conn::result_text(res.rc, &res.text));
                }
                let done = res
                    .ctrls
                    .iter()
                    .find(|c| c.1.ctype == SYNC_DONE_OID)
                    .and_then(|c| c.1.val.as_deref().map(SyncDone::parse));
                if let Some(d) = done {
                    if let Some(c) = d.cookie {
                        latest = c;
                    }
                    // refreshDeletes FALSE: the refresh used the present phase, so what was not
                    // listed is gone, which only a full read can tell.
                    present = present || !d.refresh_deletes;
                }
                Ok(if present { None } else { Some(latest) })
            })
        });
        if let Some(f) = failure {
            return Err(f);
        }
        r.map_err(|m| {
            Error::Sink(format!(
                "connector `{id}`: syncrepl refresh of `{base}` failed: {m} (the watermark stays where it was)"
            ))
        })
    }

    fn encode_cookies(cookies: &[Vec<u8>]) -> String {
        use base64::Engine;
        let parts: Vec<String> = cookies
            .iter()
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
            .collect();
        format!("syncrepl:{}", parts.join(" "))
    }

    fn decode_cookies(&self, w: &str) -> Option<Vec<Vec<u8>>> {
        use base64::Engine;
        let rest = w.strip_prefix("syncrepl:")?;
        let cookies: Option<Vec<Vec<u8>>> = rest
            .split(' ')
            .map(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
            .collect();
        cookies.filter(|c| c.len() == self.s.base_dns.len())
    }

    /// Reads everything as a delta import that turned full, with the reason.
    fn delta_as_full(&mut self, sink: &mut dyn ImportSink, why: &str) -> Result<DeltaOutcome> {
        if self.s.profile == Profile::ActiveDirectory {
            let w = self.ad_watermark_now()?;
            self.read_all(&self.base_filter(), sink, false)?;
            return Ok(DeltaOutcome {
                watermark: Some(w),
                method: format!("a full read ({why})"),
                full: true,
            });
        }
        let syncrepl = self.use_syncrepl()?;
        let cookies = if syncrepl {
            Some(self.fresh_cookies()?)
        } else {
            None
        };
        let latest = self.read_all(&self.base_filter(), sink, false)?;
        Ok(DeltaOutcome {
            watermark: match cookies {
                Some(c) => Some(Self::encode_cookies(&c)),
                None => latest.map(|t| format!("modifyTimestamp:{t}")),
            },
            method: format!("a full read ({why})"),
            full: true,
        })
    }

    fn fresh_cookies(&mut self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for base in self.s.base_dns.clone() {
            match self.sync_cookie(&base)? {
                Some(c) => out.push(c),
                None => return Err(self.err(format!("the server refused syncrepl on `{base}`"))),
            }
        }
        Ok(out)
    }

    /// The bytes of a value as the server takes them.
    fn value_bytes(v: &Value) -> std::result::Result<Vec<u8>, String> {
        Ok(match v {
            Value::Binary(b) => match &b.data {
                Some(d) => d.to_vec(),
                None => return Err(format!("binary value {} has no bytes", b.hash)),
            },
            Value::Reference(Reference::Mv(m)) => {
                return Err(format!("unresolved metaverse reference {m}"))
            }
            other => value_text(other).into_bytes(),
        })
    }

    fn value_set(values: &[Value]) -> std::result::Result<HashSet<Vec<u8>>, String> {
        values.iter().map(Self::value_bytes).collect()
    }

    /// The LDAP modifications of value-level deltas: `add:`/`delete:` of the changed values
    /// only; a single-valued attribute (per the schema) gets `replace:`.
    fn modifications(
        changes: &[idsync_model::AttributeDelta],
        single: &HashSet<String>,
    ) -> std::result::Result<Vec<Mod<Vec<u8>>>, String> {
        let mut mods: Vec<Mod<Vec<u8>>> = Vec::new();
        for d in changes {
            let name = d.name.as_str().as_bytes().to_vec();
            let err = |m: String| format!("attribute {}: {m}", d.name);
            match &d.change {
                AttributeChange::Replace(v) => {
                    mods.push(Mod::Replace(name, Self::value_set(v).map_err(err)?))
                }
                AttributeChange::Update { add, .. }
                    if single.contains(&d.name.key()) && add.len() == 1 =>
                {
                    mods.push(Mod::Replace(name, Self::value_set(add).map_err(err)?))
                }
                AttributeChange::Update { add, remove } => {
                    if !remove.is_empty() {
                        mods.push(Mod::Delete(
                            name.clone(),
                            Self::value_set(remove).map_err(err)?,
                        ));
                    }
                    if !add.is_empty() {
                        mods.push(Mod::Add(name, Self::value_set(add).map_err(err)?));
                    }
                }
            }
        }
        Ok(mods)
    }

    fn single_valued_in(&self, changes: &[idsync_model::AttributeDelta]) -> HashSet<String> {
        match &self.schema {
            Some(s) => changes
                .iter()
                .filter(|d| s.single_valued(d.name.as_str()))
                .map(|d| d.name.key())
                .collect(),
            None => HashSet::new(),
        }
    }

    /// Sends plain modifies (no rename) with up to `PIPELINE` requests in flight on the one
    /// connection, so the client's work overlaps the server's disk syncs. Each item's result
    /// lands at its index; a connection failure is that item's error.
    fn export_pipelined(
        &mut self,
        items: &[(usize, &ExportItem)],
        out: &mut [Option<ExportResult>],
    ) -> std::result::Result<bool, String> {
        let mut work = Vec::with_capacity(items.len());
        for (idx, item) in items {
            let ExportOp::Update { changes, .. } = &item.op else {
                continue;
            };
            let single = self.single_valued_in(changes);
            match Self::modifications(changes, &single) {
                Ok(m) if m.is_empty() => out[*idx] = Some(ExportResult::Applied { anchor: None }),
                Ok(m) => work.push((*idx, item.dn.to_string(), m)),
                Err(m) => out[*idx] = Some(ExportResult::Failed(m)),
            }
        }
        let c = self.conn.as_mut().ok_or("no connection")?;
        let timeout = c.timeout;
        let base = c.ldap.clone();
        let results = guarded("export", || {
            c.rt.block_on(async {
                let mut set = ldap3::tokio::task::JoinSet::new();
                let mut pending = work.into_iter();
                let mut results = Vec::new();
                let spawn =
                    |set: &mut ldap3::tokio::task::JoinSet<_>,
                     (idx, dn, mods): (usize, String, Vec<Mod<Vec<u8>>>)| {
                        let mut ldap = base.clone();
                        set.spawn(async move {
                            let r = ldap
                                .with_controls(permissive_modify())
                                .with_timeout(timeout)
                                .modify(&dn, mods)
                                .await;
                            (idx, r.map_err(|e| e.to_string()))
                        });
                    };
                for w in pending.by_ref().take(PIPELINE) {
                    spawn(&mut set, w);
                }
                while let Some(joined) = set.join_next().await {
                    let (idx, r) = joined.map_err(|e| format!("export task failed: {e}"))?;
                    results.push((idx, r));
                    if let Some(w) = pending.next() {
                        spawn(&mut set, w);
                    }
                }
                Ok(results)
            })
        })?;
        let mut lost = false;
        for (idx, r) in results {
            out[idx] = Some(match r {
                Ok(res) if res.rc == 0 => ExportResult::Applied { anchor: None },
                Ok(res) => refused(res),
                Err(m) => {
                    lost = true;
                    ExportResult::Failed(format!("connection lost: {m}"))
                }
            });
        }
        Ok(lost)
    }

    /// Sends one export item. `Err` only when the connection itself failed.
    fn export_one(&mut self, item: &ExportItem) -> std::result::Result<ExportResult, String> {
        let profile = self.s.profile;
        let single = match &item.op {
            ExportOp::Update { changes, .. } => self.single_valued_in(changes),
            _ => HashSet::new(),
        };
        let c = self.conn.as_mut().ok_or("no connection")?;
        let timeout = c.timeout;
        let ldap = &mut c.ldap;
        let dn = item.dn.to_string();
        guarded("export", || {
            c.rt.block_on(async {
                match &item.op {
                    ExportOp::Add {
                        object_classes,
                        attributes,
                    } => {
                        let mut attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = Vec::new();
                        let mut classes: HashSet<Vec<u8>> = object_classes
                            .iter()
                            .map(|c| c.as_bytes().to_vec())
                            .collect();
                        for (name, values) in attributes.iter() {
                            if name.as_str().eq_ignore_ascii_case("objectClass") {
                                for v in values {
                                    classes.insert(value_text(v).into_bytes());
                                }
                                continue;
                            }
                            if profile.operational(name.as_str()) || values.is_empty() {
                                continue;
                            }
                            match Self::value_set(values) {
                                Ok(set) => attrs.push((name.as_str().as_bytes().to_vec(), set)),
                                Err(m) => {
                                    return Ok(ExportResult::Failed(format!(
                                        "attribute {name}: {m}"
                                    )))
                                }
                            }
                        }
                        let wanted = attrs.clone();
                        if !classes.is_empty() {
                            attrs.push((b"objectClass".to_vec(), classes.clone()));
                        }
                        let r = ldap
                            .with_timeout(timeout)
                            .add(&dn, attrs)
                            .await
                            .map_err(|e| e.to_string())?;
                        if r.rc == 68 {
                            // entryAlreadyExists: when the entry holds exactly what this add
                            // sends, it is this very add, applied by a run that was stopped
                            // before idsync recorded it (an export repeated after a crash).
                            // Anything else at that DN is a real conflict and stays one.
                            let ldap3::SearchResult(found, res) = ldap
                                .with_timeout(timeout)
                                .search(&dn, Scope::Base, "(objectClass=*)", vec!["*"])
                                .await
                                .map_err(|e| e.to_string())?;
                            if res.rc == 0
                                && found.into_iter().next().is_some_and(|e| {
                                    holds_exactly(&SearchEntry::construct(e), &wanted, &classes)
                                })
                            {
                                return Ok(ExportResult::Applied { anchor: None });
                            }
                        }
                        Ok(if r.rc == 0 {
                            ExportResult::Applied { anchor: None }
                        } else {
                            refused(r)
                        })
                    }
                    ExportOp::Delete => {
                        let r = ldap
                            .with_timeout(timeout)
                            .delete(&dn)
                            .await
                            .map_err(|e| e.to_string())?;
                        // Already gone is what a delete wants.
                        Ok(if r.rc == 0 || r.rc == 32 {
                            ExportResult::Applied { anchor: None }
                        } else {
                            refused(r)
                        })
                    }
                    ExportOp::Update { new_dn, changes } => {
                        let mut current = dn.clone();
                        if let Some(new) = new_dn {
                            let new = new.to_string();
                            let (Some((rdn, parent)), Some((_, old_parent))) =
                                (escape::split_first_rdn(&new), escape::split_first_rdn(&dn))
                            else {
                                return Ok(ExportResult::Failed(format!(
                                    "cannot rename `{dn}` to `{new}`: not a DN"
                                )));
                            };
                            let moved = !Dn::new(parent).eq(&Dn::new(old_parent));
                            let r = ldap
                                .with_timeout(timeout)
                                .modifydn(&dn, rdn, true, moved.then_some(parent))
                                .await
                                .map_err(|e| e.to_string())?;
                            if r.rc != 0 {
                                return Ok(refused(r));
                            }
                            current = new;
                        }
                        let mods = match Self::modifications(changes, &single) {
                            Ok(m) => m,
                            Err(m) => return Ok(ExportResult::Failed(m)),
                        };
                        if mods.is_empty() {
                            return Ok(ExportResult::Applied { anchor: None });
                        }
                        // Permissive modify: adding a value already there or deleting one that
                        // is gone is not an error, so a change sent twice (after a crash) is
                        // applied once.
                        let r = ldap
                            .with_controls(permissive_modify())
                            .with_timeout(timeout)
                            .modify(&current, mods)
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(if r.rc == 0 {
                            ExportResult::Applied { anchor: None }
                        } else {
                            refused(r)
                        })
                    }
                }
            })
        })
    }
}

/// How many modifies one connection keeps in flight during an export.
const PIPELINE: usize = 16;

/// Permissive modify: adding a value already there or deleting one that is gone is not an
/// error, so a change sent twice (after a crash) is applied once.
fn permissive_modify() -> RawControl {
    RawControl {
        ctype: PERMISSIVE_MODIFY_OID.to_owned(),
        crit: false,
        val: None,
    }
}

/// Whether an entry's user attributes are exactly `attrs` (names compared without case, values
/// as bytes) and its object classes include `classes` (compared without case).
fn holds_exactly(
    e: &SearchEntry,
    attrs: &[(Vec<u8>, HashSet<Vec<u8>>)],
    classes: &HashSet<Vec<u8>>,
) -> bool {
    let mut have: BTreeMap<String, HashSet<Vec<u8>>> = BTreeMap::new();
    for (name, values) in &e.attrs {
        let set = have.entry(name.to_ascii_lowercase()).or_default();
        set.extend(values.iter().map(|v| v.as_bytes().to_vec()));
    }
    for (name, values) in &e.bin_attrs {
        let set = have.entry(name.to_ascii_lowercase()).or_default();
        set.extend(values.iter().cloned());
    }
    let have_classes: HashSet<Vec<u8>> = have
        .remove("objectclass")
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.to_ascii_lowercase())
        .collect();
    if !classes
        .iter()
        .all(|c| have_classes.contains(&c.to_ascii_lowercase()))
    {
        return false;
    }
    let want: BTreeMap<String, &HashSet<Vec<u8>>> = attrs
        .iter()
        .map(|(n, v)| (String::from_utf8_lossy(n).to_ascii_lowercase(), v))
        .collect();
    have.len() == want.len()
        && have
            .iter()
            .all(|(n, v)| want.get(n).is_some_and(|w| *w == v))
}

/// A refused operation's result, with the server's message.
fn refused(r: ldap3::LdapResult) -> ExportResult {
    ExportResult::Failed(conn::result_text(r.rc, &r.text))
}

/// A sink that drops per-object errors (lookups outside an import).
struct IgnoreErrors;
impl ImportSink for IgnoreErrors {
    fn entry(&mut self, _: CsEntry) -> std::result::Result<(), String> {
        Ok(())
    }
    fn change(&mut self, _: ImportChange) -> std::result::Result<(), String> {
        Ok(())
    }
    fn object_error(&mut self, _: String, _: String) {}
}

impl Connector for LdapConnector {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            full_import: true,
            delta_import: true,
            export: true,
            delta_sees_own_exports: true,
            identifier: idsync_model::IdentifierSyntax::Dn,
        }
    }

    fn full_import(&mut self, sink: &mut dyn ImportSink) -> Result<()> {
        // A fresh connection per import step: one kept from an earlier step may point at a
        // server that restarted since, which the idle connection cannot know yet.
        self.conn = None;
        self.conn()?;
        // The watermark is taken before the read: a change made while the read runs comes
        // again in the next delta (an upsert), rather than being lost.
        self.after_full = None;
        if self.s.profile == Profile::ActiveDirectory {
            self.after_full = Some(self.ad_watermark_now()?);
            self.read_all(&self.base_filter(), sink, false)?;
            return Ok(());
        }
        let cookies = if self.use_syncrepl()? {
            Some(self.fresh_cookies()?)
        } else {
            None
        };
        let latest = self.read_all(&self.base_filter(), sink, false)?;
        self.after_full = match cookies {
            Some(c) => Some(Self::encode_cookies(&c)),
            None => latest.map(|t| format!("modifyTimestamp:{t}")),
        };
        Ok(())
    }

    fn watermark_after_full_import(&mut self) -> Result<Option<String>> {
        Ok(self.after_full.take())
    }

    fn take_written_values(&mut self) -> Vec<idsync_connectors::WrittenValue> {
        std::mem::take(&mut self.written)
    }

    fn reports_reference_removals(&self) -> bool {
        // Samba's DirSync (and its uSNChanged) never shows a group losing a member that was
        // deleted: the engine removes references to deleted objects itself.
        self.s.profile != Profile::ActiveDirectory
    }

    fn delta_import(
        &mut self,
        watermark: Option<&str>,
        sink: &mut dyn ImportSink,
    ) -> Result<DeltaOutcome> {
        self.conn = None;
        self.conn()?;
        let syncrepl = self.use_syncrepl()?;
        let Some(w) = watermark else {
            return self.delta_as_full(sink, "no watermark yet");
        };
        if self.s.profile == Profile::ActiveDirectory && self.s.delta == DeltaMethod::UsnChanged {
            let Some(since) = w
                .strip_prefix(ad::USN_PREFIX)
                .and_then(|n| n.parse::<u64>().ok())
            else {
                return self.delta_as_full(sink, "the watermark is not a uSNChanged");
            };
            let next = self.ad_watermark_now()?;
            let filter = format!("(&{}(uSNChanged>={}))", self.base_filter(), since + 1);
            self.read_all(&filter, sink, true)?;
            return Ok(DeltaOutcome {
                watermark: Some(next),
                method: "uSNChanged polling (adds, changes and renames read whole; deletes are found by the next full import)".to_owned(),
                full: false,
            });
        }
        if self.s.profile == Profile::ActiveDirectory {
            let Some(cookies) = ad::decode(w, self.s.base_dns.len()) else {
                return self.delta_as_full(
                    sink,
                    "the watermark is not a DirSync cookie for these base DNs",
                );
            };
            let next = self.dirsync_delta(cookies, sink)?;
            return Ok(DeltaOutcome {
                watermark: Some(ad::encode(&next)),
                method: "DirSync (1.2.840.113556.1.4.841, incremental values)".to_owned(),
                full: false,
            });
        }
        if syncrepl {
            let Some(cookies) = self.decode_cookies(w) else {
                return self.delta_as_full(
                    sink,
                    "the watermark is not a syncrepl cookie for these base DNs",
                );
            };
            let mut next = Vec::new();
            for (base, cookie) in self.s.base_dns.clone().into_iter().zip(cookies) {
                match self.sync_refresh(&base, cookie, sink)? {
                    Some(c) => next.push(c),
                    None => {
                        return self.delta_as_full(
                            sink,
                            "the server answered the syncrepl refresh with a present list, so deletes are found by reading everything",
                        )
                    }
                }
            }
            return Ok(DeltaOutcome {
                watermark: Some(Self::encode_cookies(&next)),
                method: "syncrepl (RFC 4533 refreshOnly)".to_owned(),
                full: false,
            });
        }
        let Some(since) = w.strip_prefix("modifyTimestamp:") else {
            return self.delta_as_full(sink, "the watermark is not a modifyTimestamp");
        };
        if !since
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.')
        {
            return self.delta_as_full(sink, "the watermark is not a modifyTimestamp");
        }
        let filter = self.narrow(&format!(
            "(modifyTimestamp>={})",
            escape::escape_filter_value(since)
        ));
        let latest = self.read_all(&filter, sink, true)?;
        Ok(DeltaOutcome {
            watermark: Some(format!(
                "modifyTimestamp:{}",
                latest.as_deref().unwrap_or(since)
            )),
            method: "modifyTimestamp (the server offers no syncrepl: adds, changes and renames only; deletes are found by the next full import)".to_owned(),
            full: false,
        })
    }

    fn export(&mut self, batch: &[ExportItem]) -> Result<Vec<ExportResult>> {
        self.conn()?;
        if self.s.profile != Profile::ActiveDirectory {
            return self.export_items(batch);
        }
        // AD: accountDisabled becomes the userAccountControl bit, photos are fitted; an item
        // that cannot be prepared fails alone.
        self.written.clear();
        let mut out: Vec<Option<ExportResult>> = vec![None; batch.len()];
        let mut ready = Vec::with_capacity(batch.len());
        let mut at = Vec::with_capacity(batch.len());
        for (i, item) in batch.iter().enumerate() {
            match self.ad_prepare(item)? {
                Ok(p) => {
                    ready.push(p);
                    at.push(i);
                }
                Err(m) => out[i] = Some(ExportResult::Failed(m)),
            }
        }
        for (i, r) in at.into_iter().zip(self.export_items(&ready)?) {
            out[i] = Some(r);
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| ExportResult::Failed("not sent".to_owned())))
            .collect())
    }
}

impl LdapConnector {
    fn export_items(&mut self, batch: &[ExportItem]) -> Result<Vec<ExportResult>> {
        let mut out: Vec<Option<ExportResult>> = vec![None; batch.len()];
        let plain = |item: &ExportItem| matches!(item.op, ExportOp::Update { new_dn: None, .. });
        let mut i = 0;
        while i < batch.len() {
            // A run of plain modifies goes out pipelined; adds, deletes and renames one at a
            // time, in order (a later item may depend on an earlier one's DN).
            let run = batch[i..].iter().take_while(|it| plain(it)).count();
            if run >= 2 {
                let items: Vec<(usize, &ExportItem)> =
                    (i..i + run).map(|k| (k, &batch[k])).collect();
                match self.export_pipelined(&items, &mut out) {
                    Ok(false) => {}
                    Ok(true) => self.conn = None,
                    Err(m) => {
                        self.conn = None;
                        if i == 0 {
                            return Err(self.err(format!("export failed: {m}")));
                        }
                        for slot in out.iter_mut().skip(i) {
                            *slot = Some(ExportResult::Failed(format!("connection lost: {m}")));
                        }
                        break;
                    }
                }
                if self.conn.is_none() {
                    // The connection broke mid-run: the rest waits for the next export.
                    for slot in out.iter_mut().skip(i + run) {
                        *slot = Some(ExportResult::Failed("connection lost: not sent".to_owned()));
                    }
                    break;
                }
                // The modifies reached the server, idsync has not recorded them.
                idsync_connectors::crash_point!("ldap-export:{}:modifies-sent", self.id);
                i += run;
                continue;
            }
            let item = &batch[i];
            let mut result = self.export_one(item);
            if result.is_err() && i == 0 {
                // A connection kept from an earlier step may be stale (the server restarted):
                // connect again once before giving up. Modifies are permissive, so a change
                // that did arrive before the connection broke is not applied twice.
                self.conn = None;
                self.conn()?;
                result = self.export_one(item);
            }
            match result {
                Ok(r) => {
                    out[i] = Some(r);
                    // Mid-batch: this item reached the server, the next ones did not.
                    idsync_connectors::crash_point!("ldap-export:{}:sent", self.id);
                }
                Err(m) if i == 0 => {
                    self.conn = None;
                    return Err(self.err(format!("export failed: {m}")));
                }
                Err(m) => {
                    // What was sent before stays applied; the rest is retried next time.
                    self.conn = None;
                    for slot in out.iter_mut().skip(i) {
                        *slot = Some(ExportResult::Failed(format!("connection lost: {m}")));
                    }
                    break;
                }
            }
            i += 1;
        }
        Ok(out
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| ExportResult::Failed("connection lost: not sent".to_owned()))
            })
            .collect())
    }
}

//! The declarative configuration file (TOML) and its errors.
//!
//! Parsing takes the file's text and name: reading the file is the caller's job, so this crate
//! stays free of I/O. Every error names the file, the line and the column.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use toml::Spanned;

/// A configuration error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub store: Option<Spanned<StoreConfig>>,
    #[serde(default, rename = "connector")]
    pub connectors: Vec<Spanned<ConnectorConfig>>,
    #[serde(default, rename = "join")]
    pub joins: Vec<Spanned<JoinRule>>,
    #[serde(default, rename = "import_flow")]
    pub import_flows: Vec<Spanned<ImportFlowRule>>,
    #[serde(default, rename = "export_flow")]
    pub export_flows: Vec<Spanned<ExportFlowRule>>,
    /// Per metaverse attribute, the connectors that may set it, strongest first. An attribute not
    /// listed takes the order the connectors are declared in.
    pub precedence: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    #[serde(default, rename = "provision")]
    pub provisioning: Vec<Spanned<ProvisionRule>>,
    #[serde(default, rename = "unique")]
    pub unique: Vec<Spanned<UniqueRule>>,
    #[serde(default)]
    pub cycle: CycleConfig,
    #[serde(default)]
    pub safety: SafetyConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    /// When the service (`idsync service`) runs what, by itself.
    #[serde(default, rename = "schedule")]
    pub schedules: Vec<Spanned<ScheduleConfig>>,
    /// Named, ordered lists of steps with optional hooks.
    #[serde(default, rename = "run_profile")]
    pub run_profiles: Vec<Spanned<RunProfileConfig>>,
}

/// One `[[schedule]]`: what to run (`full-cycle`, `delta-cycle` or a run profile's name) and
/// when (`every = "30m"`, or `cron = "*/30 * * * *"` in `time_zone`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Names the schedule in logs and history; defaults to what it runs.
    pub name: Option<Spanned<String>>,
    pub run: Spanned<String>,
    pub every: Option<Spanned<String>>,
    pub cron: Option<Spanned<String>>,
    /// An IANA time zone name for `cron` (`Europe/Paris`); UTC by default.
    pub time_zone: Option<Spanned<String>>,
    /// Import and sync only, export nothing.
    #[serde(default)]
    pub staging: bool,
    /// What a due time that passes while a run is still going does: `skip` it, or `wait` and
    /// run once the run ends.
    #[serde(default)]
    pub overlap: Overlap,
    /// The delay before a failed run is tried again (doubling with each failure up to
    /// `retry_max`); 30s and 1h by default.
    pub retry: Option<Spanned<String>>,
    pub retry_max: Option<Spanned<String>>,
    /// Whether a run missed while the service was down is made up by one run at start.
    #[serde(default = "yes")]
    pub catch_up: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    #[default]
    Skip,
    Wait,
}

/// One `[[run_profile]]`: a name and its steps in order.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunProfileConfig {
    pub name: Spanned<String>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<ProfileStepConfig>>,
}

/// One step of a run profile, with optional hooks (shell commands run before and after it).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileStepConfig {
    pub connector: Spanned<String>,
    pub step: Spanned<String>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Export retries: an object whose export failed is tried again by a later export, after a
/// delay that doubles with each failure (from `backoff_seconds` up to `max_backoff_seconds`),
/// so a system that refuses one object is not hammered and the other objects go on.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_backoff")]
    pub backoff_seconds: u64,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_seconds: u64,
    /// From this many failed attempts on, the object is reported as failing repeatedly.
    #[serde(default = "default_report_after")]
    pub report_after: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            backoff_seconds: default_backoff(),
            max_backoff_seconds: default_max_backoff(),
            report_after: default_report_after(),
        }
    }
}

impl RetryConfig {
    /// The delay before the next attempt after `failures` failed attempts.
    pub fn delay(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(32);
        self.backoff_seconds
            .saturating_mul(1u64 << doublings)
            .min(self.max_backoff_seconds)
    }
}

fn default_backoff() -> u64 {
    30
}
fn default_max_backoff() -> u64 {
    3600
}
fn default_report_after() -> u32 {
    5
}

/// Accidental-delete protection: an export that would delete or disable more objects than this,
/// or a full import that finds them gone, stops before anything is sent or stored, until an
/// operator releases it (`--allow-deletes N`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyConfig {
    /// At most this many deletes (and disables) per step; 500 as in Entra Connect.
    #[serde(default = "default_max_deletes")]
    pub max_deletes: u64,
    /// At most this share of the connector space, in percent (checked when more than
    /// `min_deletes_for_share` objects would go, so a small space can still lose one object).
    #[serde(default = "default_max_delete_percent")]
    pub max_delete_percent: u64,
    #[serde(default = "default_min_deletes_for_share")]
    pub min_deletes_for_share: u64,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        Self {
            max_deletes: default_max_deletes(),
            max_delete_percent: default_max_delete_percent(),
            min_deletes_for_share: default_min_deletes_for_share(),
        }
    }
}

fn default_max_deletes() -> u64 {
    500
}
fn default_max_delete_percent() -> u64 {
    80
}
fn default_min_deletes_for_share() -> u64 {
    10
}

/// Where the engine's store is: `[store] path = "idsync.db"` (a SQLite file, the default), or a
/// PostgreSQL database, `[store] url = "postgres://user@host/db"` with `password = "env:NAME"`
/// (a reference, never the password), or the short form `store = "postgres://..."`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreConfig {
    /// The SQLite file, relative to the configuration file.
    pub path: String,
    /// A PostgreSQL URL (without a password).
    pub url: Option<String>,
    /// Where the PostgreSQL password is: `env:NAME` or `file:PATH`.
    pub password: Option<String>,
    /// Whether `path` was written (it may not be given together with `url`).
    #[serde(skip)]
    pub path_given: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreTable {
    path: Option<String>,
    url: Option<String>,
    password: Option<String>,
}

impl<'de> Deserialize<'de> for StoreConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StoreConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a PostgreSQL URL or a table with `path` or `url`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StoreConfig, E> {
                Ok(StoreConfig {
                    url: Some(v.to_owned()),
                    ..StoreConfig::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<StoreConfig, A::Error> {
                let t = StoreTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(StoreConfig {
                    path_given: t.path.is_some(),
                    path: t.path.unwrap_or_else(default_store_path),
                    url: t.url,
                    password: t.password,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: default_store_path(),
            url: None,
            password: None,
            path_given: false,
        }
    }
}

fn default_store_path() -> String {
    "idsync.db".to_owned()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CycleConfig {
    /// How many sync/export passes a cycle makes at most before it reports that exports are
    /// still pending.
    #[serde(default = "default_max_passes")]
    pub max_passes: usize,
}

impl Default for CycleConfig {
    fn default() -> Self {
        Self {
            max_passes: default_max_passes(),
        }
    }
}

fn default_max_passes() -> usize {
    4
}

/// What a connected system is to idsync. Directories create people (they may project); business
/// systems only add attributes to people who exist; targets receive provisioned objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Directory,
    Business,
    Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeprovisionAction {
    /// Delete the target object when its metaverse object goes away.
    #[default]
    Delete,
    /// Set an attribute (e.g. `accountDisabled = TRUE`) and keep the object.
    Disable,
    /// Leave the object in the target and only break its link.
    Disconnect,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ConnectorConfig {
    pub name: String,
    /// The connector type: `ldif` or `csv`.
    #[serde(rename = "type")]
    pub kind: String,
    pub role: Role,
    #[serde(default, rename = "object_type")]
    pub object_types: Vec<ObjectTypeConfig>,
    #[serde(default)]
    pub deprovision: DeprovisionAction,
    pub disable_attribute: Option<String>,
    pub disable_value: Option<String>,
    #[serde(default = "default_batch")]
    pub export_batch_size: usize,
    /// Connector-specific settings (paths, anchor attribute, separators); the connector checks
    /// them itself.
    #[serde(flatten)]
    pub settings: toml::Table,
}

fn default_batch() -> usize {
    500
}

/// An object type in a connector and its scope.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectTypeConfig {
    pub name: String,
    /// The object classes this type takes (any of them). Empty takes every object.
    #[serde(default)]
    pub object_classes: Vec<String>,
    /// An optional CEL condition over `cs`; an object for which it is not true is filtered.
    pub filter: Option<Spanned<String>>,
    /// The metaverse object type it joins and projects to; defaults to `name`.
    pub mv_type: Option<String>,
    /// Whether this type may create metaverse objects; defaults to true for directories.
    pub project: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Lower-case letters.
    Lowercase,
    /// Remove leading and trailing white space.
    Trim,
    /// Remove a `DOMAIN\` prefix (`EXAMPLE\ann` becomes `ann`).
    StripDomain,
    /// Remove an `@realm` suffix (`ann@example.test` becomes `ann`).
    StripRealm,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRule {
    pub connector: String,
    pub object_type: Option<String>,
    /// The connector-space attribute whose value is the join key...
    pub cs: Option<String>,
    /// ...or a CEL expression over `cs` computing it.
    pub cs_expr: Option<Spanned<String>>,
    /// The metaverse attribute it must equal...
    pub mv: Option<String>,
    /// ...or a CEL expression over `mv`.
    pub mv_expr: Option<Spanned<String>>,
    /// Normalisations applied to both sides before comparing.
    #[serde(default)]
    pub normalize: Vec<Normalize>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImportFlowRule {
    pub connector: String,
    pub object_type: Option<String>,
    /// The metaverse attribute that receives the value.
    pub mv: String,
    /// The connector-space attribute copied as is...
    pub cs: Option<String>,
    /// ...or a CEL expression over `cs`.
    pub expr: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFlowRule {
    pub connector: String,
    pub object_type: Option<String>,
    /// The connector-space attribute that receives the value.
    pub cs: String,
    /// The metaverse attribute copied as is...
    pub mv: Option<String>,
    /// ...or a CEL expression over `mv`.
    pub expr: Option<Spanned<String>>,
    /// Set only when the object is created (e.g. an initial password or a home directory).
    #[serde(default)]
    pub initial_only: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRule {
    pub connector: String,
    /// The metaverse object type that gets an object in the target.
    #[serde(default = "default_person")]
    pub mv_type: String,
    /// The target's object type for the created object.
    #[serde(default = "default_person")]
    pub object_type: String,
    /// The identifier template, e.g. `uid={uid},ou=people,dc=example,dc=test`: each `{attr}` is
    /// the metaverse attribute's value, escaped as an RDN value (RFC 4514).
    pub dn: String,
    /// Object classes given to created objects.
    #[serde(default)]
    pub object_classes: Vec<String>,
    /// An optional CEL condition over `mv`; only objects for which it is true are provisioned.
    pub condition: Option<Spanned<String>>,
}

fn default_person() -> String {
    "person".to_owned()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UniqueRule {
    pub connector: String,
    pub attribute: String,
}

/// The 1-based line and column of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |n| offset - n - 1) + 1;
    (line, column)
}

impl Config {
    /// Parses a configuration file's text. `file` names it in errors.
    pub fn parse(source: &str, file: &str) -> Result<Config, ConfigError> {
        toml::from_str::<Config>(source).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(source, s.start));
            ConfigError {
                file: file.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })
    }
}

/// Where each key of a TOML table is, read alongside [`Config`]: connector settings are kept as
/// a plain table (each connector checks its own), which holds no positions.
struct SpanTree(BTreeMap<String, Spanned<SpanTree>>);

impl<'de> Deserialize<'de> for SpanTree {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SpanTree;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<SpanTree, A::Error> {
                let mut keys = BTreeMap::new();
                while let Some((k, v)) = m.next_entry::<String, Spanned<SpanTree>>()? {
                    keys.insert(k, v);
                }
                Ok(SpanTree(keys))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<SpanTree, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(SpanTree(BTreeMap::new()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<SpanTree, E> {
                Ok(SpanTree(BTreeMap::new()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<SpanTree, E> {
                Ok(SpanTree(BTreeMap::new()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<SpanTree, E> {
                Ok(SpanTree(BTreeMap::new()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<SpanTree, E> {
                Ok(SpanTree(BTreeMap::new()))
            }
            fn visit_str<E>(self, _: &str) -> Result<SpanTree, E> {
                Ok(SpanTree(BTreeMap::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// For each `[[connector]]` in order, the line of each of its keys by dotted path
/// (`path`, `attribute_types.jpegPhoto`), so an error in a connector's own settings points at
/// the key or value at fault.
pub fn connector_key_lines(source: &str) -> Vec<BTreeMap<String, usize>> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        connector: Vec<SpanTree>,
    }
    fn walk(source: &str, prefix: &str, tree: &SpanTree, out: &mut BTreeMap<String, usize>) {
        for (k, v) in &tree.0 {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.insert(path.clone(), line_col(source, v.span().start).0);
            walk(source, &path, v.get_ref(), out);
        }
    }
    let Ok(doc) = toml::from_str::<Doc>(source) else {
        return Vec::new();
    };
    doc.connector
        .iter()
        .map(|c| {
            let mut out = BTreeMap::new();
            walk(source, "", c, &mut out);
            out
        })
        .collect()
}

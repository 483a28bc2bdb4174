//! Rules: which objects a connector takes (scope), how they join and project into the metaverse,
//! how attributes flow in and out with precedence, and what gets provisioned where.
//!
//! This crate turns the configuration into compiled rules and answers questions about one object
//! at a time with data (keys, values, decisions). It does no I/O and keeps no state: the engine
//! asks, the store remembers. Each rule carries a version (a hash of its text) so the engine can
//! tell when a rule changed and re-evaluate what it touches, without clearing anything.

pub mod config;
pub mod expr;
pub mod schedule;
mod template;

pub use config::{Config, ConfigError, DeprovisionAction, Normalize, Overlap, Role};
pub use expr::{Expr, Vars};
pub use schedule::{Cycle, ProfileStep, RunProfile, RunTarget, Schedule, When};
pub use template::{escape_rdn_value, render_template};

use idsync_model::{Attributes, ConnectorId, CsEntry, ObjectTypeName, Value};
use std::collections::{BTreeMap, HashMap};
use toml::Spanned;

/// Why an object read from a connected system was not taken. Every one is counted per reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FilterReason {
    /// None of its object classes is in any object type's scope.
    ObjectClass(String),
    /// An object type's filter expression was not true for it.
    Filter(String),
    /// It has no anchor value.
    MissingAnchor,
}

impl std::fmt::Display for FilterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterReason::ObjectClass(c) => write!(f, "object class {c} not in scope"),
            FilterReason::Filter(t) => write!(f, "filter of object type {t} not met"),
            FilterReason::MissingAnchor => f.write_str("missing anchor"),
        }
    }
}

/// A compiled object type of one connector.
#[derive(Debug)]
pub struct ObjectType {
    pub name: ObjectTypeName,
    classes: Vec<String>,
    filter: Option<Expr>,
    pub mv_type: ObjectTypeName,
    pub project: bool,
}

/// Where a join key or flow value comes from.
#[derive(Debug)]
pub enum Source {
    Attribute(String),
    Expr(Expr),
}

impl Source {
    fn eval(&self, attrs: &Attributes, vars: &Vars<'_>) -> Result<Vec<Value>, String> {
        match self {
            Source::Attribute(a) => Ok(attrs.get(a).map(<[Value]>::to_vec).unwrap_or_default()),
            Source::Expr(e) => e.eval(vars),
        }
    }

    fn text(&self) -> &str {
        match self {
            Source::Attribute(a) => a,
            Source::Expr(e) => &e.source,
        }
    }
}

#[derive(Debug)]
pub struct JoinRule {
    pub id: String,
    pub connector: ConnectorId,
    pub object_type: Option<ObjectTypeName>,
    cs: Source,
    mv: Source,
    normalize: Vec<Normalize>,
}

impl JoinRule {
    pub fn describe(&self) -> String {
        format!("{} = mv.{}", self.cs.text(), self.mv.text())
    }
}

#[derive(Debug)]
pub struct ImportFlow {
    pub id: String,
    pub object_type: Option<ObjectTypeName>,
    pub mv: String,
    source: Source,
}

#[derive(Debug)]
pub struct ExportFlow {
    pub id: String,
    pub object_type: Option<ObjectTypeName>,
    pub cs: String,
    source: Source,
    pub initial_only: bool,
}

#[derive(Debug)]
pub struct Provision {
    pub connector: ConnectorId,
    pub mv_type: ObjectTypeName,
    pub object_type: ObjectTypeName,
    pub dn: String,
    pub object_classes: Vec<String>,
    condition: Option<Expr>,
}

/// The rules of one connector.
#[derive(Debug)]
pub struct ConnectorRules {
    pub name: ConnectorId,
    pub kind: String,
    pub role: Role,
    pub object_types: Vec<ObjectType>,
    pub deprovision: DeprovisionAction,
    pub disable: Option<(String, String)>,
    pub export_batch_size: usize,
    pub settings: toml::Table,
    /// The line the connector is declared on, for messages about its settings.
    pub line: usize,
    /// The line of each of its keys, by dotted path (see [`ConnectorRules::setting_line`]).
    pub key_lines: BTreeMap<String, usize>,
    pub import_flows: Vec<ImportFlow>,
    pub export_flows: Vec<ExportFlow>,
    pub unique: Vec<String>,
    scope_version: String,
}

/// One value-producing result: which rule, what values (or why none).
pub struct FlowResult<'a> {
    pub rule_id: &'a str,
    pub attribute: &'a str,
    pub values: Result<Vec<Value>, String>,
}

/// Where the engine's store is, as the configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSetting {
    /// A SQLite file, relative to the configuration file.
    File(String),
    /// A PostgreSQL database: its URL (no password in it) and where the password is (`env:` or
    /// `file:`), resolved by the caller.
    Postgres {
        url: String,
        password: Option<String>,
    },
}

/// Whether a URL carries a password (`scheme://user:password@host`, or `password=` in its query).
pub fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        || url.to_ascii_lowercase().contains("password=")
}

/// All rules, compiled.
#[derive(Debug)]
pub struct Rules {
    pub connectors: Vec<ConnectorRules>,
    pub joins: Vec<JoinRule>,
    pub provisioning: Vec<Provision>,
    precedence: HashMap<String, Vec<ConnectorId>>,
    pub max_passes: usize,
    /// The SQLite file of the store (relative to the configuration file), when the store is one.
    pub store_path: String,
    /// Where the store is.
    pub store: StoreSetting,
    pub safety: config::SafetyConfig,
    pub retry: config::RetryConfig,
    pub schedules: Vec<Schedule>,
    pub run_profiles: Vec<RunProfile>,
    sync_version: String,
}

fn hash_of(parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex()[..16].to_owned()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

struct Ctx<'a> {
    source: &'a str,
    file: &'a str,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        let (line, column) = config::line_col(self.source, span.start);
        Err(ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        })
    }

    fn source(
        &self,
        span: std::ops::Range<usize>,
        attr: &Option<String>,
        expr: &Option<Spanned<String>>,
        keys: (&str, &str),
    ) -> Result<Source, ConfigError> {
        match (attr, expr) {
            (Some(a), None) => Ok(Source::Attribute(a.clone())),
            (None, Some(e)) => self.expr(e, keys.1).map(Source::Expr),
            _ => self.err(
                span,
                format!("give exactly one of `{}` and `{}`", keys.0, keys.1),
            ),
        }
    }

    /// The connector a rule names (its index) and the object type it names, if any, or an error
    /// at the rule's line.
    fn locate(
        &self,
        connectors: &[ConnectorRules],
        span: std::ops::Range<usize>,
        connector: &str,
        object_type: &Option<String>,
    ) -> Result<(usize, Option<ObjectTypeName>), ConfigError> {
        let Some(ci) = connectors.iter().position(|c| c.name.as_str() == connector) else {
            return self.err(span, format!("unknown connector `{connector}`"));
        };
        let Some(t) = object_type else {
            return Ok((ci, None));
        };
        if connectors[ci]
            .object_types
            .iter()
            .any(|o| o.name.as_str() == t)
        {
            return Ok((ci, Some(ObjectTypeName::new(t))));
        }
        self.err(
            span,
            format!("connector `{connector}` has no object type `{t}`"),
        )
    }

    /// Compiles an expression, reporting an error at the expression's own line.
    fn expr(&self, e: &Spanned<String>, what: &str) -> Result<Expr, ConfigError> {
        Expr::compile(e.get_ref()).or_else(|m| {
            self.err(
                e.span(),
                format!("{what}: expression `{}`: {m}", e.get_ref()),
            )
        })
    }
}

impl Rules {
    /// Parses and compiles a configuration file's text.
    pub fn load(source: &str, file: &str) -> Result<Rules, ConfigError> {
        let config = Config::parse(source, file)?;
        Rules::compile(&config, source, file)
    }

    pub fn compile(config: &Config, source: &str, file: &str) -> Result<Rules, ConfigError> {
        let cx = Ctx { source, file };
        let default_store = config::StoreConfig::default();
        let (store_config, store_span) = match &config.store {
            Some(s) => (s.get_ref(), s.span()),
            None => (&default_store, 0..0),
        };
        let store = match &store_config.url {
            None => {
                if store_config.password.is_some() {
                    return cx.err(
                        store_span,
                        "store: `password` is for a PostgreSQL store (`url`); a SQLite file has none",
                    );
                }
                StoreSetting::File(store_config.path.clone())
            }
            Some(url) => {
                let lower = url.to_ascii_lowercase();
                if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
                    return cx.err(
                        store_span,
                        format!("store: `{url}` is not a PostgreSQL URL (postgres://user@host/database); a SQLite store is `path = \"FILE\"`"),
                    );
                }
                if store_config.path_given {
                    return cx.err(
                        store_span,
                        "store: give either `path` (a SQLite file) or `url` (PostgreSQL), not both",
                    );
                }
                if url_has_password(url) {
                    return cx.err(
                        store_span,
                        "store: the URL must not hold the password; name where it is with `password = \"env:NAME\"` or `\"file:PATH\"`",
                    );
                }
                if let Some(p) = &store_config.password {
                    if !(p.starts_with("env:") || p.starts_with("file:")) {
                        return cx.err(
                            store_span,
                            "store: `password` must name where the secret is (env:NAME or file:PATH), never the secret itself",
                        );
                    }
                }
                StoreSetting::Postgres {
                    url: url.clone(),
                    password: store_config.password.clone(),
                }
            }
        };
        let mut connectors: Vec<ConnectorRules> = Vec::new();
        let mut key_lines = config::connector_key_lines(source).into_iter();
        for c in &config.connectors {
            let span = c.span();
            let c = c.get_ref();
            let lines = key_lines.next().unwrap_or_default();
            if connectors.iter().any(|o| o.name.as_str() == c.name) {
                return cx.err(span, format!("connector `{}` is declared twice", c.name));
            }
            // The connector type is checked where connectors are opened (the engine's opener
            // knows every type this build has), with this connector's line.
            let mut object_types = Vec::new();
            for t in &c.object_types {
                let filter = match &t.filter {
                    Some(f) => Some(cx.expr(f, &format!("object type `{}` filter", t.name))?),
                    None => None,
                };
                object_types.push(ObjectType {
                    name: ObjectTypeName::new(&t.name),
                    classes: t
                        .object_classes
                        .iter()
                        .map(|c| c.to_ascii_lowercase())
                        .collect(),
                    filter,
                    mv_type: ObjectTypeName::new(
                        t.mv_type.clone().unwrap_or_else(|| t.name.clone()),
                    ),
                    project: t.project.unwrap_or(c.role == Role::Directory),
                });
            }
            if object_types.is_empty() {
                return cx.err(
                    span,
                    format!(
                        "connector `{}` has no [[connector.object_type]]: say which objects it takes",
                        c.name
                    ),
                );
            }
            let disable = match (c.deprovision, &c.disable_attribute, &c.disable_value) {
                (DeprovisionAction::Disable, Some(a), Some(v)) => Some((a.clone(), v.clone())),
                (DeprovisionAction::Disable, _, _) => {
                    return cx.err(
                        span,
                        format!(
                            "connector `{}`: deprovision = \"disable\" needs disable_attribute and disable_value",
                            c.name
                        ),
                    )
                }
                _ => None,
            };
            // Secrets are references (`env:NAME`, `file:PATH`), never written into the file.
            for (key, value) in &c.settings {
                let secret = is_secret_setting(key);
                let is_ref = value
                    .as_str()
                    .is_some_and(|v| v.starts_with("env:") || v.starts_with("file:"));
                if secret && !is_ref {
                    // At the key's own line (the value is never quoted).
                    let (line, column) = match lines.get(key.as_str()) {
                        Some(line) => (*line, 1),
                        None => config::line_col(source, span.start),
                    };
                    return Err(ConfigError {
                        file: file.to_owned(),
                        line,
                        column,
                        message: format!(
                            "connector `{}`: `{key}` must name where the secret is (env:NAME or file:PATH), never the secret itself",
                            c.name
                        ),
                    });
                }
            }
            let line = config::line_col(source, span.start).0;
            connectors.push(ConnectorRules {
                name: ConnectorId::new(&c.name),
                kind: c.kind.clone(),
                role: c.role,
                object_types,
                deprovision: c.deprovision,
                disable,
                export_batch_size: c.export_batch_size.max(1),
                settings: c.settings.clone(),
                line,
                key_lines: lines,
                import_flows: Vec::new(),
                export_flows: Vec::new(),
                unique: Vec::new(),
                scope_version: hash_of(&[&c.kind, &json(&c.settings), &json(&c.object_types)]),
            });
        }

        let mut joins = Vec::new();
        for j in &config.joins {
            let span = j.span();
            let r = j.get_ref();
            let (ci, object_type) =
                cx.locate(&connectors, span.clone(), &r.connector, &r.object_type)?;
            let cs = cx.source(span.clone(), &r.cs, &r.cs_expr, ("cs", "cs_expr"))?;
            let mv = cx.source(span.clone(), &r.mv, &r.mv_expr, ("mv", "mv_expr"))?;
            joins.push(JoinRule {
                id: hash_of(&["join", &json(r)]),
                connector: connectors[ci].name.clone(),
                object_type,
                cs,
                mv,
                normalize: r.normalize.clone(),
            });
        }

        let mut flows: Vec<(usize, ImportFlow)> = Vec::new();
        for f in &config.import_flows {
            let span = f.span();
            let r = f.get_ref();
            let (ci, object_type) =
                cx.locate(&connectors, span.clone(), &r.connector, &r.object_type)?;
            let source = cx.source(span.clone(), &r.cs, &r.expr, ("cs", "expr"))?;
            flows.push((
                ci,
                ImportFlow {
                    id: hash_of(&["import", &json(r)]),
                    object_type,
                    mv: r.mv.clone(),
                    source,
                },
            ));
        }
        for (ci, f) in flows {
            connectors[ci].import_flows.push(f);
        }

        let mut flows: Vec<(usize, ExportFlow)> = Vec::new();
        for f in &config.export_flows {
            let span = f.span();
            let r = f.get_ref();
            let (ci, object_type) =
                cx.locate(&connectors, span.clone(), &r.connector, &r.object_type)?;
            let source = cx.source(span.clone(), &r.mv, &r.expr, ("mv", "expr"))?;
            flows.push((
                ci,
                ExportFlow {
                    id: hash_of(&["export", &json(r)]),
                    object_type,
                    cs: r.cs.clone(),
                    source,
                    initial_only: r.initial_only,
                },
            ));
        }
        for (ci, f) in flows {
            connectors[ci].export_flows.push(f);
        }

        let mut provisioning = Vec::new();
        for p in &config.provisioning {
            let span = p.span();
            let r = p.get_ref();
            let (ci, _) = cx.locate(
                &connectors,
                span.clone(),
                &r.connector,
                &Some(r.object_type.clone()),
            )?;
            if let Err(m) = template::check_template(&r.dn) {
                return cx.err(span, format!("dn template `{}`: {m}", r.dn));
            }
            let condition = match &r.condition {
                Some(c) => Some(cx.expr(c, "condition")?),
                None => None,
            };
            provisioning.push(Provision {
                connector: connectors[ci].name.clone(),
                mv_type: ObjectTypeName::new(&r.mv_type),
                object_type: ObjectTypeName::new(&r.object_type),
                dn: r.dn.clone(),
                object_classes: r.object_classes.clone(),
                condition,
            });
        }

        for u in &config.unique {
            let span = u.span();
            let r = u.get_ref();
            let (ci, _) = cx.locate(&connectors, span, &r.connector, &None)?;
            connectors[ci].unique.push(r.attribute.clone());
        }

        let mut precedence = HashMap::new();
        let empty = BTreeMap::new();
        let (precedence_span, precedence_table) = match &config.precedence {
            Some(p) => (p.span(), p.get_ref()),
            None => (0..0, &empty),
        };
        for (attr, order) in precedence_table {
            let mut ids = Vec::new();
            for name in order {
                if !connectors.iter().any(|c| c.name.as_str() == name) {
                    return cx.err(
                        precedence_span.clone(),
                        format!("precedence of `{attr}` names unknown connector `{name}`"),
                    );
                }
                ids.push(ConnectorId::new(name));
            }
            precedence.insert(attr.to_ascii_lowercase(), ids);
        }

        let (schedules, run_profiles) = schedule::compile(&cx, config, &connectors)?;

        let sync_version = hash_of(&[
            &json(
                &config
                    .joins
                    .iter()
                    .map(Spanned::get_ref)
                    .collect::<Vec<_>>(),
            ),
            &json(
                &config
                    .import_flows
                    .iter()
                    .map(Spanned::get_ref)
                    .collect::<Vec<_>>(),
            ),
            &json(
                &config
                    .export_flows
                    .iter()
                    .map(Spanned::get_ref)
                    .collect::<Vec<_>>(),
            ),
            &json(precedence_table),
            &json(
                &config
                    .provisioning
                    .iter()
                    .map(Spanned::get_ref)
                    .collect::<Vec<_>>(),
            ),
            &json(
                &config
                    .unique
                    .iter()
                    .map(Spanned::get_ref)
                    .collect::<Vec<_>>(),
            ),
            &json(
                &config
                    .connectors
                    .iter()
                    .map(|c| {
                        (
                            &c.get_ref().name,
                            &c.get_ref().object_types,
                            c.get_ref().deprovision,
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
        ]);

        Ok(Rules {
            connectors,
            joins,
            provisioning,
            precedence,
            max_passes: config.cycle.max_passes.max(1),
            store_path: store_config.path.clone(),
            store,
            safety: config.safety,
            retry: config.retry,
            schedules,
            run_profiles,
            sync_version,
        })
    }

    pub fn run_profile(&self, name: &str) -> Option<&RunProfile> {
        self.run_profiles.iter().find(|p| p.name == name)
    }

    pub fn connector(&self, name: &str) -> Option<&ConnectorRules> {
        self.connectors.iter().find(|c| c.name.as_str() == name)
    }

    /// The version of every sync rule together. A connector last synced under another version
    /// gets a full sync next, so a changed rule re-evaluates every object it may touch.
    /// Whether any target has export flows or provisioning: without, a sync computes no exports.
    pub fn exports_any(&self) -> bool {
        !self.provisioning.is_empty() || self.connectors.iter().any(|c| !c.export_flows.is_empty())
    }

    pub fn sync_version(&self) -> &str {
        &self.sync_version
    }

    /// Rank of a connector for a metaverse attribute: lower wins.
    pub fn precedence_rank(&self, mv_attribute: &str, connector: &ConnectorId) -> usize {
        if let Some(order) = self.precedence.get(&mv_attribute.to_ascii_lowercase()) {
            if let Some(i) = order.iter().position(|c| c == connector) {
                return i;
            }
            return order.len() + self.connector_index(connector);
        }
        self.connector_index(connector)
    }

    fn connector_index(&self, c: &ConnectorId) -> usize {
        self.connectors
            .iter()
            .position(|x| &x.name == c)
            .unwrap_or(usize::MAX / 2)
    }

    /// The join keys of a connector-space object, per join rule that applies to it, in rule order.
    pub fn cs_join_keys(
        &self,
        connector: &ConnectorId,
        object_type: &ObjectTypeName,
        cs: &Attributes,
    ) -> Vec<(&JoinRule, Result<Vec<String>, String>)> {
        let vars = Vars::new(Some(cs), None);
        self.joins
            .iter()
            .filter(|j| {
                &j.connector == connector && j.object_type.as_ref().is_none_or(|t| t == object_type)
            })
            .map(|j| (j, j.cs.eval(cs, &vars).map(|v| keys(&v, &j.normalize))))
            .collect()
    }

    /// The join keys a metaverse object offers, per join rule. Errors (an expression that fails on
    /// this object) give no key: such an object cannot be joined by that rule.
    pub fn mv_join_keys(&self, mv: &Attributes) -> Vec<(String, String)> {
        let vars = Vars::new(None, Some(mv));
        let mut out = Vec::new();
        for j in &self.joins {
            if let Ok(v) = j.mv.eval(mv, &vars) {
                for k in keys(&v, &j.normalize) {
                    out.push((j.id.clone(), k));
                }
            }
        }
        out
    }
}

/// Whether a connector setting's name says it holds a secret (which must then be a reference).
pub fn is_secret_setting(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "token", "credential", "passphrase"]
        .iter()
        .any(|w| n.contains(w))
}

fn keys(values: &[Value], normalize: &[Normalize]) -> Vec<String> {
    let mut out: Vec<String> = values
        .iter()
        .map(|v| {
            let mut s = v.to_text();
            for n in normalize {
                s = match n {
                    Normalize::Lowercase => s.to_lowercase(),
                    Normalize::Trim => s.trim().to_owned(),
                    Normalize::StripDomain => match s.rfind('\\') {
                        Some(i) => s[i + 1..].to_owned(),
                        None => s,
                    },
                    Normalize::StripRealm => match s.find('@') {
                        Some(i) => s[..i].to_owned(),
                        None => s,
                    },
                };
            }
            s
        })
        .filter(|s| !s.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

impl ConnectorRules {
    /// The line of a setting by its dotted path (`attribute_types.jpegPhoto`): of the key
    /// itself, else of the nearest table holding it, else of the connector.
    pub fn setting_line(&self, key: &str) -> usize {
        let mut path = key;
        loop {
            if let Some(line) = self.key_lines.get(path) {
                return *line;
            }
            match path.rsplit_once('.') {
                Some((parent, _)) => path = parent,
                None => return self.line,
            }
        }
    }

    /// Which object type an entry belongs to, or why it is filtered.
    /// An entry out of scope says why (its object class, a type's filter) before a missing
    /// anchor does: a device without the anchor attribute is counted as a device.
    pub fn classify(&self, entry: &CsEntry) -> Result<&ObjectType, FilterReason> {
        // Compared in place (the type's classes are kept lower-case): this runs for every
        // entry of every import.
        let holds = |class: &String| {
            entry
                .object_classes
                .iter()
                .any(|c| c.eq_ignore_ascii_case(class))
        };
        let mut filtered_by = None;
        for t in &self.object_types {
            if !t.classes.is_empty() && !t.classes.iter().any(holds) {
                continue;
            }
            if let Some(f) = &t.filter {
                let vars = Vars::new(Some(&entry.attributes), None);
                if !f.eval_bool(&vars).unwrap_or(false) {
                    filtered_by = Some(FilterReason::Filter(t.name.to_string()));
                    continue;
                }
            }
            if entry.anchor.as_str().is_empty() {
                return Err(FilterReason::MissingAnchor);
            }
            return Ok(t);
        }
        Err(filtered_by.unwrap_or_else(|| {
            // The most specific class names the object best: LDAP lists `top` first.
            let shown = entry
                .object_classes
                .iter()
                .rev()
                .find(|c| !c.eq_ignore_ascii_case("top"))
                .cloned()
                .unwrap_or_else(|| "(none)".to_owned());
            FilterReason::ObjectClass(shown)
        }))
    }

    pub fn object_type(&self, name: &ObjectTypeName) -> Option<&ObjectType> {
        self.object_types.iter().find(|t| &t.name == name)
    }

    /// The version of this connector's import scope; a change makes the next import full.
    pub fn scope_version(&self) -> &str {
        &self.scope_version
    }

    /// Evaluates this connector's import flows for one object.
    pub fn import_values<'a>(
        &'a self,
        object_type: &ObjectTypeName,
        cs: &Attributes,
    ) -> Vec<FlowResult<'a>> {
        let vars = Vars::new(Some(cs), None);
        self.import_flows
            .iter()
            .filter(|f| f.object_type.as_ref().is_none_or(|t| t == object_type))
            .map(|f| FlowResult {
                rule_id: &f.id,
                attribute: &f.mv,
                values: f.source.eval(cs, &vars),
            })
            .collect()
    }

    /// Whether any import flow of this connector sets the metaverse attribute.
    pub fn flows_into(&self, mv_attribute: &str) -> bool {
        self.import_flows
            .iter()
            .any(|f| f.mv.eq_ignore_ascii_case(mv_attribute))
    }

    /// Evaluates this connector's export flows for one metaverse object. `creating` includes the
    /// initial-only flows.
    pub fn export_values<'a>(
        &'a self,
        object_type: &ObjectTypeName,
        mv: &Attributes,
        creating: bool,
    ) -> Vec<FlowResult<'a>> {
        let vars = Vars::new(None, Some(mv));
        self.export_flows
            .iter()
            .filter(|f| f.object_type.as_ref().is_none_or(|t| t == object_type))
            .filter(|f| creating || !f.initial_only)
            .map(|f| FlowResult {
                rule_id: &f.id,
                attribute: &f.cs,
                values: f.source.eval(mv, &vars),
            })
            .collect()
    }
}

impl Provision {
    /// Whether a metaverse object should have an object in this target.
    pub fn applies(&self, mv_type: &ObjectTypeName, mv: &Attributes) -> Result<bool, String> {
        if &self.mv_type != mv_type {
            return Ok(false);
        }
        match &self.condition {
            None => Ok(true),
            Some(c) => c.eval_bool(&Vars::new(None, Some(mv))),
        }
    }

    /// The identifier a provisioned object gets, escaped by the target's identifier syntax.
    pub fn render_dn(
        &self,
        mv: &Attributes,
        syntax: idsync_model::IdentifierSyntax,
    ) -> Result<String, String> {
        render_template(&self.dn, mv, syntax)
    }
}

#[cfg(test)]
mod tests;

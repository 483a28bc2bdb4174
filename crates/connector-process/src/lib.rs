//! The process connector (`type = "process"`): a connector is any program that speaks idsync's
//! connector protocol, JSON lines on its standard input and output
//! (`docs/connector-protocol.md`). idsync starts the configured `command`, says `hello` with the
//! connector's `settings` and its secrets (resolved here from their references; never on the
//! command line or in the environment), and the program answers `ready` with what it can do.
//! idsync then asks for full imports, delta imports and export batches, and uses only what the
//! program said it can do.
//!
//! The program is not trusted to behave: every answer is awaited at most `timeout` seconds, a
//! line that is not the protocol fails the step naming its line number and what is wrong, an
//! export answer for an object not in the batch fails it, and the last lines of the program's
//! standard error are in every such message. On any failure the program's process group is
//! killed and reaped; the step's error rolls the store back, so nothing is stored half-way.

mod check;
mod session;
mod singer;
mod wire;

pub use check::{check, Check, CheckReport};
pub use singer::SingerConnector;

pub use wire::PROTOCOL;

use idsync_connectors::{
    resolve_secret, settings, Capabilities, Connector, DeltaOutcome, Error, ExportItem, ExportOp,
    ExportResult, ImportChange, ImportSink, Result, Secret,
};
use idsync_model::{Anchor, ConnectorId, Dn, IdentifierSyntax};
use serde::Deserialize;
use serde_json::Value as Json;
use session::{Limits, ReadFailure, Session};
use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wire::{ChangeOp, Incoming, Outgoing, Ready, ResultStatus, Types, WireCapabilities};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessSettings {
    /// The program and its arguments (no shell).
    command: Vec<String>,
    /// Where it runs, relative to the configuration file; the configuration's folder by default.
    working_directory: Option<String>,
    /// Variables added to the program's environment (which keeps only PATH, HOME, LANG, LC_*,
    /// TZ and TMPDIR from idsync's).
    #[serde(default)]
    environment: BTreeMap<String, String>,
    /// Sent to the program in `hello`, as JSON.
    #[serde(default)]
    settings: toml::Table,
    /// The longest idsync waits for the program's next line (and for it to exit), in seconds.
    #[serde(default = "default_timeout")]
    timeout: f64,
    /// How many of the program's last standard-error lines an error message shows.
    #[serde(default = "default_stderr_lines")]
    stderr_lines: usize,
    /// The most the program may write to standard error in one session (bytes).
    #[serde(default = "default_max_stderr")]
    max_stderr_bytes: u64,
    /// The longest line the program may write on standard output (bytes).
    #[serde(default = "default_max_line")]
    max_line_bytes: usize,
}

fn default_timeout() -> f64 {
    60.0
}
fn default_stderr_lines() -> usize {
    20
}
fn default_max_stderr() -> u64 {
    16 << 20
}
fn default_max_line() -> usize {
    64 << 20
}

/// Whether a setting's name says it holds a secret (the configuration loader's rule: it must be
/// an `env:`/`file:` reference).
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "token", "credential", "passphrase"]
        .iter()
        .any(|w| n.contains(w))
}

pub struct ProcessConnector {
    id: ConnectorId,
    s: ProcessSettings,
    /// The settings as JSON, for `hello`.
    settings_json: Json,
    /// Secret settings: name and reference.
    secret_refs: Vec<(String, String)>,
    base_dir: PathBuf,
    working_directory: PathBuf,
    link: Link,
    /// What the program said it can do, from its first `ready` (a probe session asks when the
    /// engine wants the capabilities before any step ran).
    ready: OnceCell<(Ready, Types)>,
    /// The watermark the last full import ended with.
    full_watermark: Option<String>,
}

/// The running program, if one runs, and how its failures are told.
struct Link {
    id: ConnectorId,
    session: Option<Session>,
    timeout: f64,
    max_line_bytes: usize,
    max_stderr_bytes: u64,
}

impl Link {
    fn remote(&self, message: String) -> Error {
        Error::Remote {
            connector: self.id.to_string(),
            message,
        }
    }

    /// Ends the session after a failure and makes the error: `what` with the program's exit
    /// status and its last standard-error lines.
    fn fail(&mut self, what: String) -> Error {
        let Some(mut s) = self.session.take() else {
            return self.remote(what);
        };
        let exited = s.kill();
        let tail = s.stderr_tail();
        let mut m = format!("program `{}`: {what}", s.command);
        if let Some(st) = exited {
            m.push_str(&format!(" (it exited: {st})"));
        }
        if tail.is_empty() {
            m.push_str("; it wrote nothing on standard error");
        } else {
            m.push_str("; its last lines on standard error:");
            for l in tail {
                m.push_str("\n  ");
                m.push_str(&excerpt_plain(&l, 300));
            }
        }
        self.remote(m)
    }

    fn failure(&mut self, f: ReadFailure, waiting_for: &str) -> Error {
        let after = self.session.as_ref().map_or(0, |s| s.line);
        let timeout = self.timeout;
        let what = match f {
            ReadFailure::Timeout => format!(
                "sent nothing for {timeout} s while idsync waited for {waiting_for} (after line {after}; timeout = {timeout}): it was stopped"
            ),
            ReadFailure::Eof => {
                if let Some(s) = self.session.as_mut() {
                    s.wait_exit(Duration::from_secs_f64(timeout.min(5.0)));
                }
                format!(
                "ended its output while idsync waited for {waiting_for} (after line {after})"
            )
            }
            ReadFailure::TooLong(n) => format!(
                "standard output line {n} is longer than {} bytes (max_line_bytes)",
                self.max_line_bytes
            ),
            ReadFailure::Read(e) => format!("cannot read its output: {e}"),
            ReadFailure::StderrFlood => format!(
                "wrote more than {} bytes on standard error (max_stderr_bytes): it was stopped",
                self.max_stderr_bytes
            ),
        };
        self.fail(what)
    }

    /// The next message, parsed; anything that is not the protocol fails the step.
    fn next(&mut self, waiting_for: &str) -> Result<(usize, Incoming)> {
        let got = match self.session.as_mut() {
            Some(s) => s.next_line(),
            None => return Err(self.remote("the program is not running".into())),
        };
        let (n, line) = match got {
            Ok(l) => l,
            Err(f) => return Err(self.failure(f, waiting_for)),
        };
        let text = match std::str::from_utf8(&line) {
            Ok(t) => t,
            Err(e) => {
                return Err(self.fail(format!(
                    "standard output line {n} is not UTF-8 (byte {})",
                    e.valid_up_to() + 1
                )))
            }
        };
        match serde_json::from_str::<Incoming>(text) {
            Ok(Incoming::Error { message }) => {
                Err(self.fail(format!("reported an error on line {n}: {message}")))
            }
            Ok(m) => Ok((n, m)),
            Err(e) => {
                let why = if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
                    format!("is not valid JSON ({e})")
                } else {
                    format!("is not a protocol message ({e})")
                };
                Err(self.fail(format!(
                    "standard output line {n} {why}, while idsync waited for {waiting_for}: {}",
                    excerpt(text)
                )))
            }
        }
    }

    /// The next line as it is; `None` when the output ended.
    fn next_raw(&mut self, waiting_for: &str) -> Result<Option<(usize, Vec<u8>)>> {
        let got = match self.session.as_mut() {
            Some(s) => s.next_line(),
            None => return Err(self.remote("the program is not running".into())),
        };
        match got {
            Ok(l) => Ok(Some(l)),
            Err(ReadFailure::Eof) => Ok(None),
            Err(f) => Err(self.failure(f, waiting_for)),
        }
    }

    fn send(&mut self, m: &Outgoing<'_>, waiting_for: &str) -> Result<()> {
        let bytes = serde_json::to_vec(m).map_err(|e| self.remote(e.to_string()))?;
        let r = match self.session.as_mut() {
            Some(s) => s.send(bytes),
            None => return Err(self.remote("the program is not running".into())),
        };
        r.map_err(|f| self.failure(f, waiting_for))
    }

    /// Kills the session (a step ended mid-protocol).
    fn abort(&mut self) {
        if let Some(mut s) = self.session.take() {
            s.kill();
        }
    }

    /// Ends the session politely (standard input closed; killed after the timeout).
    fn close(&mut self) {
        if let Some(mut s) = self.session.take() {
            s.close();
        }
    }
}

impl ProcessConnector {
    pub fn new(id: ConnectorId, raw: &toml::Table, base_dir: &Path) -> Result<Self> {
        // Secret settings (`api_token = "env:HR_TOKEN"`) are the program's, sent in `hello`.
        let mut own = toml::Table::new();
        let mut secret_refs = Vec::new();
        for (k, v) in raw {
            if is_secret_name(k) {
                let r = v.as_str().ok_or_else(|| Error::Setting {
                    connector: id.to_string(),
                    key: k.clone(),
                    message: "a secret setting is a reference, `env:NAME` or `file:PATH`".into(),
                })?;
                secret_refs.push((k.clone(), r.to_owned()));
            } else {
                own.insert(k.clone(), v.clone());
            }
        }
        let s: ProcessSettings = settings(&id, &own)?;
        let setting_err = |key: &str, message: String| Error::Setting {
            connector: id.to_string(),
            key: key.to_owned(),
            message,
        };
        if s.command.is_empty() || s.command[0].is_empty() {
            return Err(setting_err(
                "command",
                "`command` names the program to run: command = [\"python3\", \"hr.py\"]".into(),
            ));
        }
        for k in s.environment.keys() {
            if is_secret_name(k) {
                return Err(setting_err(
                    &format!("environment.{k}"),
                    format!("`{k}` looks like a secret: put it at the connector's level as a reference (`{} = \"env:NAME\"`); it reaches the program in its first message, never in its environment", k.to_ascii_lowercase()),
                ));
            }
        }
        for k in s.settings.keys() {
            if is_secret_name(k) {
                return Err(setting_err(
                    &format!("settings.{k}"),
                    format!("`{k}` looks like a secret: put it at the connector's level as a reference (`{k} = \"env:NAME\"`); idsync resolves it and sends it in `hello`"),
                ));
            }
        }
        if !(s.timeout > 0.0 && s.timeout.is_finite()) {
            return Err(setting_err(
                "timeout",
                "`timeout` is a number of seconds above 0".into(),
            ));
        }
        let settings_json = serde_json::to_value(&s.settings).map_err(|e| Error::Config {
            connector: id.to_string(),
            message: format!("settings: {e}"),
        })?;
        let working_directory = match &s.working_directory {
            Some(w) => base_dir.join(w),
            None => base_dir.to_path_buf(),
        };
        let link = Link {
            id: id.clone(),
            session: None,
            timeout: s.timeout,
            max_line_bytes: s.max_line_bytes,
            max_stderr_bytes: s.max_stderr_bytes,
        };
        Ok(Self {
            id,
            s,
            settings_json,
            secret_refs,
            base_dir: base_dir.to_path_buf(),
            working_directory,
            link,
            ready: OnceCell::new(),
            full_watermark: None,
        })
    }

    /// Starts the program on a new link, says `hello` and reads its `ready`.
    fn open_link(&self) -> Result<(Link, Ready)> {
        let mut link = Link {
            id: self.id.clone(),
            session: None,
            timeout: self.s.timeout,
            max_line_bytes: self.s.max_line_bytes,
            max_stderr_bytes: self.s.max_stderr_bytes,
        };
        let mut secrets: Vec<(String, Secret)> = Vec::new();
        for (k, r) in &self.secret_refs {
            let v = resolve_secret(r, &self.base_dir).map_err(|m| Error::Setting {
                connector: self.id.to_string(),
                key: k.clone(),
                message: m,
            })?;
            secrets.push((k.clone(), v));
        }
        let env: Vec<(String, String)> = self
            .s
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let session = Session::spawn(
            self.id.as_str(),
            &self.s.command,
            &self.working_directory,
            &env,
            Limits {
                timeout: Duration::from_secs_f64(self.s.timeout),
                stderr_lines: self.s.stderr_lines,
                max_stderr_bytes: self.s.max_stderr_bytes,
                max_line_bytes: self.s.max_line_bytes,
            },
        )
        .map_err(|m| link.remote(m))?;
        link.session = Some(session);
        let hello = Outgoing::Hello {
            protocol: PROTOCOL,
            connector: self.id.as_str(),
            settings: &self.settings_json,
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose()))
                .collect(),
        };
        link.send(&hello, "`ready` (the answer to `hello`)")?;
        drop(secrets);
        let (n, m) = link.next("`ready` (the answer to `hello`)")?;
        let ready = match m {
            Incoming::Ready(r) => r,
            other => {
                return Err(link.fail(format!(
                    "line {n}: a `{}` message where the first message must be `ready`",
                    other.kind()
                )))
            }
        };
        if ready.protocol != PROTOCOL {
            return Err(link.fail(format!(
                "line {n}: speaks protocol version {}; this idsync speaks version {PROTOCOL}",
                ready.protocol
            )));
        }
        if let Some(i) = &ready.identifier {
            if i != "plain" && i != "dn" {
                return Err(link.fail(format!(
                    "line {n}: `identifier` is `{i}`; it is `plain` or `dn`"
                )));
            }
        }
        Ok((link, ready))
    }

    /// The running session, started and greeted on first use; what the program can do.
    fn start(&mut self) -> Result<WireCapabilities> {
        if self.link.session.is_none() {
            let (link, ready) = self.open_link()?;
            self.link = link;
            if self.ready.get().is_none() {
                let types = Types(ready.attribute_types.clone());
                let _ = self.ready.set((ready, types));
            }
        }
        Ok(self
            .ready
            .get()
            .expect("set at the first start")
            .0
            .capabilities)
    }

    fn types(&self) -> &Types {
        &self.ready.get().expect("started").1
    }

    fn check_object_type(&self, t: &str) -> std::result::Result<(), String> {
        let known = &self.ready.get().expect("started").0.object_types;
        if !known.is_empty() && !known.iter().any(|k| k == t) {
            return Err(format!(
                "object type `{t}` is not one the program declared in `ready` ({})",
                known.join(", ")
            ));
        }
        Ok(())
    }

    fn do_full_import(&mut self, sink: &mut dyn ImportSink) -> Result<()> {
        if !self.start()?.full_import {
            return Err(Error::Unsupported {
                connector: self.id.to_string(),
                operation: "full import (the program does not offer it)",
            });
        }
        self.link
            .send(&Outgoing::FullImport {}, "the full import")?;
        loop {
            let (n, m) = self
                .link
                .next("the next object or `end` of the full import")?;
            match m {
                Incoming::Object(o) => {
                    let anchor = o.anchor.clone();
                    let entry = self
                        .check_object_type(&o.object_type)
                        .and_then(|_| self.types().entry(o));
                    let entry = match entry {
                        Ok(e) => e,
                        Err(m) => {
                            return Err(self
                                .link
                                .fail(format!("line {n}: object `{anchor}`: {m}")))
                        }
                    };
                    if let Err(e) = sink.entry(entry) {
                        self.link.abort();
                        return Err(Error::Sink(e));
                    }
                }
                Incoming::End { watermark } => {
                    self.full_watermark = watermark;
                    return Ok(());
                }
                other => {
                    return Err(self.link.fail(format!(
                        "line {n}: a `{}` message in a full import, which sends `object`s and one `end`",
                        other.kind()
                    )))
                }
            }
        }
    }

    fn do_delta_import(
        &mut self,
        watermark: Option<&str>,
        sink: &mut dyn ImportSink,
    ) -> Result<DeltaOutcome> {
        if !self.start()?.delta_import {
            return Err(Error::Unsupported {
                connector: self.id.to_string(),
                operation: "delta import (the program does not offer it)",
            });
        }
        self.link
            .send(&Outgoing::DeltaImport { watermark }, "the delta import")?;
        loop {
            let (n, m) = self
                .link
                .next("the next change or `end` of the delta import")?;
            match m {
                Incoming::Change(c) => {
                    let change = match self.change(c) {
                        Ok(c) => c,
                        Err(m) => return Err(self.link.fail(format!("line {n}: {m}"))),
                    };
                    if let Err(e) = sink.change(change) {
                        self.link.abort();
                        return Err(Error::Sink(e));
                    }
                }
                Incoming::End { watermark } => {
                    return Ok(DeltaOutcome {
                        watermark,
                        method: "process".to_owned(),
                        full: false,
                    })
                }
                other => {
                    return Err(self.link.fail(format!(
                        "line {n}: a `{}` message in a delta import, which sends `change`s and one `end`",
                        other.kind()
                    )))
                }
            }
        }
    }

    fn change(&self, c: wire::WireChange) -> std::result::Result<ImportChange, String> {
        let anchor = c.anchor.clone().filter(|a| !a.is_empty());
        let named = |c: &wire::WireChange| -> std::result::Result<Dn, String> {
            c.id.clone()
                .or_else(|| c.anchor.clone())
                .map(Dn::new)
                .ok_or_else(|| "a change names its object by `anchor` or `id`".to_owned())
        };
        Ok(match c.op {
            ChangeOp::Add => {
                let object_type = c
                    .object_type
                    .clone()
                    .ok_or("an `add` has an `object_type`")?;
                self.check_object_type(&object_type)?;
                let a = anchor.ok_or("an `add` has an `anchor`")?;
                let entry = self.types().entry(wire::WireObject {
                    anchor: a,
                    id: c.id,
                    object_type,
                    attributes: c.attributes.unwrap_or_default(),
                })?;
                ImportChange::Upsert(entry)
            }
            ChangeOp::Modify => ImportChange::Modify {
                dn: named(&c)?,
                changes: self
                    .types()
                    .deltas(c.changes.as_deref().ok_or("a `modify` has `changes`")?)?,
                anchor: anchor.map(Anchor::new),
            },
            ChangeOp::Delete => ImportChange::Delete {
                dn: named(&c)?,
                anchor: anchor.map(Anchor::new),
            },
            ChangeOp::Rename => ImportChange::Rename {
                dn: named(&c)?,
                new_dn: Dn::new(c.new_id.clone().ok_or("a `rename` has a `new_id`")?),
                anchor: anchor.map(Anchor::new),
            },
        })
    }

    fn do_export(&mut self, batch: &[ExportItem]) -> Result<Vec<ExportResult>> {
        if !self.start()?.export {
            return Err(Error::Unsupported {
                connector: self.id.to_string(),
                operation: "export (the program does not offer it)",
            });
        }
        let mut results: Vec<Option<ExportResult>> = vec![None; batch.len()];
        let mut index: HashMap<String, usize> = HashMap::with_capacity(batch.len());
        let mut items = Vec::with_capacity(batch.len());
        for (i, item) in batch.iter().enumerate() {
            match export_item(item) {
                Ok(j) => {
                    index.insert(item.cs_id.to_string(), i);
                    items.push(j);
                }
                Err(m) => results[i] = Some(ExportResult::Failed(m)),
            }
        }
        let mut waiting = items.len();
        if waiting > 0 {
            self.link
                .send(&Outgoing::Export { batch: items }, "the export's results")?;
        }
        while waiting > 0 {
            let (n, m) = self.link.next("the results of the export batch")?;
            let r = match m {
                Incoming::Result(r) => r,
                other => {
                    return Err(self.link.fail(format!(
                        "line {n}: a `{}` message where idsync waited for a `result` for each object of the export batch ({waiting} left)",
                        other.kind()
                    )))
                }
            };
            let Some(&i) = index.get(&r.reference) else {
                return Err(self.link.fail(format!(
                    "line {n}: a result for `{}`, which is not an object of the export batch it was sent",
                    r.reference
                )));
            };
            if results[i].is_some() {
                return Err(self
                    .link
                    .fail(format!("line {n}: a second result for `{}`", r.reference)));
            }
            results[i] = Some(match r.status {
                ResultStatus::Applied | ResultStatus::Exists => ExportResult::Applied {
                    anchor: r.anchor.filter(|a| !a.is_empty()).map(Anchor::new),
                },
                ResultStatus::Refused => ExportResult::Failed(
                    r.message
                        .unwrap_or_else(|| "refused (the program gave no message)".into()),
                ),
            });
            waiting -= 1;
        }
        Ok(results.into_iter().map(|r| r.expect("answered")).collect())
    }

    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let r = f(self);
        if r.is_err() {
            self.link.abort();
        }
        r
    }

    /// Starts the program and reads its `ready` (for tools: `idsync connector check`).
    pub fn handshake(&mut self) -> Result<()> {
        self.guarded(|c| c.start().map(|_| ()))
    }

    /// Ends the running program politely (standard input closed), if one runs.
    pub fn close(&mut self) {
        self.link.close();
    }
}

/// One export item as the protocol writes it.
fn export_item(item: &ExportItem) -> std::result::Result<Json, String> {
    let mut m = serde_json::Map::new();
    m.insert("ref".into(), Json::from(item.cs_id.to_string()));
    m.insert(
        "object_type".into(),
        Json::from(item.object_type.to_string()),
    );
    m.insert("id".into(), Json::from(item.dn.as_str()));
    if let Some(a) = &item.anchor {
        m.insert("anchor".into(), Json::from(a.as_str()));
    }
    match &item.op {
        ExportOp::Add { attributes, .. } => {
            m.insert("op".into(), "add".into());
            m.insert("attributes".into(), wire::attributes_json(attributes)?);
        }
        ExportOp::Update { new_dn, changes } => {
            m.insert("op".into(), "modify".into());
            if let Some(d) = new_dn {
                m.insert("new_id".into(), Json::from(d.as_str()));
            }
            m.insert("changes".into(), wire::deltas_json(changes)?);
        }
        ExportOp::Delete => {
            m.insert("op".into(), "delete".into());
        }
    }
    Ok(Json::Object(m))
}

fn excerpt(text: &str) -> String {
    format!("`{}`", excerpt_plain(text, 120))
}

fn excerpt_plain(text: &str, chars: usize) -> String {
    let mut s: String = text.chars().take(chars).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

impl Connector for ProcessConnector {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        // The program says. Asked before any step, a probe session asks it; a program that
        // cannot start lets every step through, so that the step reports why.
        if self.ready.get().is_none() {
            if let Ok((mut link, ready)) = self.open_link() {
                link.close();
                let types = Types(ready.attribute_types.clone());
                let _ = self.ready.set((ready, types));
            }
        }
        let r = self.ready.get().map(|(r, _)| r);
        let c = r.map(|r| r.capabilities);
        Capabilities {
            full_import: c.is_none_or(|c| c.full_import),
            delta_import: c.is_none_or(|c| c.delta_import),
            export: c.is_none_or(|c| c.export),
            delta_sees_own_exports: c.is_some_and(|c| c.delta_sees_own_exports),
            identifier: match r.and_then(|r| r.identifier.as_deref()) {
                Some("dn") => IdentifierSyntax::Dn,
                _ => IdentifierSyntax::Plain,
            },
        }
    }

    fn full_import(&mut self, sink: &mut dyn ImportSink) -> Result<()> {
        self.full_watermark = None;
        self.guarded(|c| c.do_full_import(sink))
    }

    fn delta_import(
        &mut self,
        watermark: Option<&str>,
        sink: &mut dyn ImportSink,
    ) -> Result<DeltaOutcome> {
        self.guarded(|c| c.do_delta_import(watermark, sink))
    }

    fn export(&mut self, batch: &[ExportItem]) -> Result<Vec<ExportResult>> {
        self.guarded(|c| c.do_export(batch))
    }

    fn watermark_after_full_import(&mut self) -> Result<Option<String>> {
        Ok(self.full_watermark.clone())
    }
}

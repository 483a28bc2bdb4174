//! The LDIF connector: a directory held as RFC 2849 files.
//!
//! Full import streams a content file. Delta import applies change files (`*.ldif` in a folder,
//! in name order) newer than the watermark, which is the name of the last file applied. Export
//! rewrites the content file (so a confirming import reads back what was exported) and, when
//! configured, also writes the same changes as change records that `ldapmodify` applies to a
//! real directory.

use crate::attr_types::{value_text, AttributeTypes, TypeHint};
use crate::file_table::{RecordFormat, RecordWriter, StagedExport};
use crate::{
    io_err, settings, Capabilities, Connector, DeltaOutcome, Error, ExportItem, ExportOp,
    ExportResult, ImportChange, ImportSink, Result,
};
use idsync_ldif as codec;
use idsync_model::{
    Anchor, AttributeChange, AttributeDelta, AttributeName, Attributes, ConnectorId, CsEntry, Dn,
    Value,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LdifSettings {
    /// The content file, relative to the configuration file. Without it the connector is an
    /// export-only change log (`export_changes`), like a pipe into `ldapmodify`.
    path: Option<String>,
    /// The attribute holding each entry's immutable identifier.
    #[serde(default = "default_anchor")]
    anchor: String,
    /// A folder of change files for delta import.
    delta_path: Option<String>,
    /// Where export also writes its changes as LDIF change records.
    export_changes: Option<String>,
    /// The content file may not exist yet (a target idsync creates): a missing file reads as
    /// empty. Off by default, so a directory file that went missing is an error.
    #[serde(default)]
    optional: bool,
    /// Attribute types other than text (photos and DN-valued attributes are typed by default).
    #[serde(default)]
    attribute_types: BTreeMap<String, TypeHint>,
}

fn default_anchor() -> String {
    "entryUUID".to_owned()
}

pub struct LdifConnector {
    id: ConnectorId,
    path: PathBuf,
    s: LdifSettings,
    base: PathBuf,
    types: AttributeTypes,
    staged: Option<StagedExport>,
    changes_out: Option<codec::Writer<BufWriter<std::fs::File>>>,
}

impl LdifConnector {
    pub fn new(id: ConnectorId, raw: &toml::Table, base_dir: &Path) -> Result<Self> {
        let s: LdifSettings = settings(&id, raw)?;
        if s.path.is_none() && s.export_changes.is_none() {
            return Err(Error::Config {
                connector: id.to_string(),
                message: "set `path` (a content file) or `export_changes` (an export-only change log), or both"
                    .to_owned(),
            });
        }
        Ok(Self {
            path: base_dir.join(s.path.as_deref().unwrap_or("")),
            base: base_dir.to_owned(),
            types: AttributeTypes::new(&s.attribute_types),
            id,
            s,
            staged: None,
            changes_out: None,
        })
    }
}

fn parse_error(e: codec::Error, fallback: &Path) -> Error {
    Error::Parse {
        file: e
            .source_name()
            .map(str::to_owned)
            .unwrap_or_else(|| fallback.display().to_string()),
        line: e.line(),
        message: e.reason().into_owned(),
    }
}

/// A reader of `path` that refuses a value that is not UTF-8 unless `types` makes its attribute
/// binary (or it carries `;binary`).
fn open_reader(
    path: &Path,
    types: &AttributeTypes,
) -> Result<codec::Reader<BufReader<std::fs::File>>> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let resolver = codec::FileUrlResolver {
        base_dir: path.parent().map(Path::to_path_buf),
    };
    Ok(codec::Reader::new(
        BufReader::with_capacity(1 << 16, file),
        path.display().to_string(),
        Box::new(resolver),
    )
    .with_text_check({
        let types = types.clone();
        move |name| types.hint(name) == TypeHint::Binary
    }))
}

/// The attribute name without transfer options: `jpegPhoto;binary` is `jpegPhoto`.
fn base_name(name: &str) -> &str {
    match name.split_once(';') {
        Some((b, opt)) if opt.eq_ignore_ascii_case("binary") => b,
        _ => name,
    }
}

struct LdifFormat<'a> {
    c: &'a LdifConnector,
}

impl LdifFormat<'_> {
    fn entry(
        &self,
        file: &Path,
        line: usize,
        dn: String,
        attrs: Vec<codec::Attr>,
    ) -> Result<CsEntry> {
        let mut object_classes = Vec::new();
        let mut attributes = Attributes::new();
        for a in attrs {
            let name = base_name(&a.name);
            if name.eq_ignore_ascii_case("objectClass") {
                object_classes.push(String::from_utf8_lossy(&a.value).into_owned());
                continue;
            }
            let v = self
                .c
                .types
                .from_bytes(name, a.value)
                .map_err(|m| Error::Parse {
                    file: file.display().to_string(),
                    line,
                    message: format!("entry `{dn}`, attribute `{name}`: {m}"),
                })?;
            attributes.push(AttributeName::from(name), v);
        }
        let anchor = attributes
            .first(&self.c.s.anchor)
            .map(Value::to_text)
            .unwrap_or_default();
        Ok(CsEntry {
            anchor: Anchor::new(anchor),
            dn: Dn::new(dn),
            object_classes,
            attributes,
        })
    }

    fn values(
        &self,
        name: &str,
        raw: Vec<Vec<u8>>,
        file: &Path,
        line: usize,
        dn: &str,
    ) -> Result<Vec<Value>> {
        raw.into_iter()
            .map(|b| {
                self.c.types.from_bytes(name, b).map_err(|m| Error::Parse {
                    file: file.display().to_string(),
                    line,
                    message: format!("entry `{dn}`, attribute `{name}`: {m}"),
                })
            })
            .collect()
    }
}

impl RecordFormat for LdifFormat<'_> {
    fn read_file(&self, path: &Path, f: &mut dyn FnMut(CsEntry) -> Result<()>) -> Result<()> {
        for item in open_reader(path, &self.c.types)? {
            let located = item.map_err(|e| parse_error(e, path))?;
            match located.record {
                codec::Record::Content { dn, attrs } => {
                    f(self.entry(path, located.line, dn, attrs)?)?
                }
                codec::Record::Change { .. } => {
                    return Err(Error::Parse {
                        file: path.display().to_string(),
                        line: located.line,
                        message:
                            "a change record in a content file (delta changes belong in delta_path)"
                                .to_owned(),
                    })
                }
            }
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> Result<Box<dyn RecordWriter>> {
        let file = std::fs::File::create(path).map_err(io_err(path))?;
        Ok(Box::new(LdifWriter {
            w: Some(codec::Writer::new(BufWriter::with_capacity(1 << 16, file))),
            path: path.to_owned(),
        }))
    }
}

/// The LDIF bytes of a value.
fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Binary(b) => b.data.as_deref().unwrap_or(&[]).to_vec(),
        other => value_text(other).into_bytes(),
    }
}

fn entry_record(e: &CsEntry) -> codec::Record {
    let mut attrs = Vec::with_capacity(e.attributes.len() + e.object_classes.len());
    for oc in &e.object_classes {
        attrs.push(codec::Attr::new("objectClass", oc.as_bytes().to_vec()));
    }
    for (name, values) in e.attributes.iter() {
        for v in values {
            attrs.push(codec::Attr::new(name.as_str(), value_bytes(v)));
        }
    }
    codec::Record::Content {
        dn: e.dn.to_string(),
        attrs,
    }
}

struct LdifWriter {
    w: Option<codec::Writer<BufWriter<std::fs::File>>>,
    path: PathBuf,
}

impl RecordWriter for LdifWriter {
    fn write(&mut self, e: &CsEntry) -> Result<()> {
        match self.w.as_mut() {
            Some(w) => w.write(&entry_record(e)).map_err(io_err(&self.path)),
            None => Ok(()),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        if let Some(w) = self.w.take() {
            let mut buf = w.finish().map_err(io_err(&self.path))?;
            buf.flush().map_err(io_err(&self.path))?;
            let file = buf
                .into_inner()
                .map_err(|e| io_err(&self.path)(e.into_error()))?;
            file.sync_all().map_err(io_err(&self.path))?;
        }
        Ok(())
    }
}

/// The parent of a DN: everything after its first unescaped comma.
fn parent_dn(dn: &str) -> &str {
    let mut escaped = false;
    for (i, c) in dn.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' => return dn[i + 1..].trim_start(),
            _ => {}
        }
    }
    ""
}

/// The first RDN of a DN as (attribute, value), for simple single-valued RDNs.
fn first_rdn(dn: &str) -> Option<(String, String)> {
    let end = dn.len() - parent_dn(dn).len();
    let rdn = dn[..end].trim_end_matches([',', ' ']);
    if rdn.contains('+') || rdn.contains('\\') {
        return None;
    }
    let (a, v) = rdn.split_once('=')?;
    Some((a.trim().to_owned(), v.trim().to_owned()))
}

/// The attribute change a modrdn makes to the RDN attribute.
fn rdn_delta(
    f: &LdifFormat<'_>,
    old_dn: &str,
    new_rdn: &str,
    delete_old: bool,
    file: &Path,
    line: usize,
) -> Result<Option<Vec<AttributeDelta>>> {
    let (Some((old_attr, old_value)), Some((new_attr, new_value))) =
        (first_rdn(old_dn), first_rdn(new_rdn))
    else {
        return Ok(None);
    };
    if old_attr.eq_ignore_ascii_case(&new_attr) && old_value == new_value {
        return Ok(None);
    }
    let mut out = Vec::new();
    let add = f.values(&new_attr, vec![new_value.into_bytes()], file, line, old_dn)?;
    if delete_old && old_attr.eq_ignore_ascii_case(&new_attr) {
        let remove = f.values(&old_attr, vec![old_value.into_bytes()], file, line, old_dn)?;
        out.push(AttributeDelta {
            name: AttributeName::from(new_attr.as_str()),
            change: AttributeChange::Update { add, remove },
        });
    } else {
        out.push(AttributeDelta {
            name: AttributeName::from(new_attr.as_str()),
            change: AttributeChange::Update {
                add,
                remove: vec![],
            },
        });
        if delete_old {
            let remove = f.values(&old_attr, vec![old_value.into_bytes()], file, line, old_dn)?;
            out.push(AttributeDelta {
                name: AttributeName::from(old_attr.as_str()),
                change: AttributeChange::Update {
                    add: vec![],
                    remove,
                },
            });
        }
    }
    Ok(Some(out))
}

/// The deltas of an LDIF modify record.
fn modifications(
    f: &LdifFormat<'_>,
    mods: Vec<codec::Modification>,
    file: &Path,
    line: usize,
    dn: &str,
) -> Result<Vec<AttributeDelta>> {
    let mut out = Vec::new();
    for m in mods {
        let name = base_name(&m.attr).to_owned();
        let empty = m.values.is_empty();
        let values = f.values(&name, m.values, file, line, dn)?;
        let change = match m.op {
            codec::ModOp::Add => AttributeChange::Update {
                add: values,
                remove: vec![],
            },
            codec::ModOp::Delete if empty => AttributeChange::Replace(vec![]),
            codec::ModOp::Delete => AttributeChange::Update {
                add: vec![],
                remove: values,
            },
            codec::ModOp::Replace => AttributeChange::Replace(values),
            codec::ModOp::Increment => {
                return Err(Error::Parse {
                    file: file.display().to_string(),
                    line,
                    message: format!("entry `{dn}`: increment of `{name}` cannot be staged without the current value"),
                })
            }
        };
        out.push(AttributeDelta {
            name: AttributeName::from(name),
            change,
        });
    }
    Ok(out)
}

impl Connector for LdifConnector {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            full_import: self.s.path.is_some(),
            delta_import: self.s.path.is_some() && self.s.delta_path.is_some(),
            export: true,
            delta_sees_own_exports: false,
            identifier: idsync_model::IdentifierSyntax::Dn,
        }
    }

    fn full_import(&mut self, sink: &mut dyn ImportSink) -> Result<()> {
        if self.s.path.is_none() {
            return Err(Error::Unsupported {
                connector: self.id.to_string(),
                operation: "import: it is an export-only change log",
            });
        }
        if self.s.optional && !self.path.exists() {
            return Ok(());
        }
        let f = LdifFormat { c: self };
        f.read_file(&self.path, &mut |e| sink.entry(e).map_err(Error::Sink))
    }

    fn delta_import(
        &mut self,
        watermark: Option<&str>,
        sink: &mut dyn ImportSink,
    ) -> Result<DeltaOutcome> {
        let Some(dir) = &self.s.delta_path else {
            return Err(Error::Unsupported {
                connector: self.id.to_string(),
                operation: "delta import without delta_path",
            });
        };
        let dir = self.base.join(dir);
        let files = change_files(&dir)?;
        let mut last = watermark.map(str::to_owned);
        let f = LdifFormat { c: self };
        let mut applied = 0;
        for name in files {
            if watermark.is_some_and(|w| name.as_str() <= w) {
                continue;
            }
            let path = dir.join(&name);
            for item in open_reader(&path, &self.types)? {
                let located = item.map_err(|e| parse_error(e, &path))?;
                let line = located.line;
                let change = match located.record {
                    codec::Record::Content { dn, attrs } => {
                        ImportChange::Upsert(f.entry(&path, line, dn, attrs)?)
                    }
                    codec::Record::Change { dn, change, .. } => match change {
                        codec::ChangeKind::Add { attrs } => {
                            ImportChange::Upsert(f.entry(&path, line, dn, attrs)?)
                        }
                        codec::ChangeKind::Delete => ImportChange::Delete {
                            anchor: None,
                            dn: Dn::new(dn),
                        },
                        codec::ChangeKind::Modify { mods } => ImportChange::Modify {
                            anchor: None,
                            changes: modifications(&f, mods, &path, line, &dn)?,
                            dn: Dn::new(dn),
                        },
                        codec::ChangeKind::ModDn {
                            new_rdn,
                            new_superior,
                            delete_old_rdn,
                        } => {
                            let parent = new_superior.unwrap_or_else(|| parent_dn(&dn).to_owned());
                            let new_dn = if parent.is_empty() {
                                new_rdn.clone()
                            } else {
                                format!("{new_rdn},{parent}")
                            };
                            // The RDN's attribute value changes with the name, as the directory
                            // changes it: the new value is added, the old one removed with
                            // deleteoldrdn.
                            let rdn_change =
                                rdn_delta(&f, &dn, &new_rdn, delete_old_rdn, &path, line)?;
                            sink.change(ImportChange::Rename {
                                anchor: None,
                                dn: Dn::new(dn),
                                new_dn: Dn::new(new_dn.clone()),
                            })
                            .map_err(Error::Sink)?;
                            match rdn_change {
                                Some(changes) => ImportChange::Modify {
                                    anchor: None,
                                    dn: Dn::new(new_dn),
                                    changes,
                                },
                                None => continue,
                            }
                        }
                    },
                };
                sink.change(change).map_err(Error::Sink)?;
            }
            applied += 1;
            last = Some(name);
        }
        Ok(DeltaOutcome {
            watermark: last,
            method: format!("{applied} change file(s) from {}", dir.display()),
            full: false,
        })
    }

    fn watermark_after_full_import(&mut self) -> Result<Option<String>> {
        // The content file is taken to include every change file present when it was read.
        match &self.s.delta_path {
            Some(d) => Ok(change_files(&self.base.join(d))?.pop()),
            None => Ok(None),
        }
    }

    fn export(&mut self, batch: &[ExportItem]) -> Result<Vec<ExportResult>> {
        if let Some(changes) = &self.s.export_changes {
            if self.changes_out.is_none() {
                let p = self.base.join(changes);
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p)
                    .map_err(io_err(&p))?;
                self.changes_out = Some(codec::Writer::new(BufWriter::new(file)));
            }
            let anchor_attr = self.s.anchor.clone();
            if let Some(w) = self.changes_out.as_mut() {
                for item in batch {
                    for r in change_records(item, &anchor_attr) {
                        w.write(&r).map_err(io_err(&self.path))?;
                    }
                }
            }
        }
        let anchor = self.s.anchor.clone();
        if self.s.path.is_none() {
            // A change log only: what was written is applied as far as idsync can know.
            return Ok(batch
                .iter()
                .map(|item| ExportResult::Applied {
                    anchor: match &item.op {
                        ExportOp::Add { .. } => {
                            crate::csv::make_entry(item, &anchor).ok().map(|e| e.anchor)
                        }
                        _ => None,
                    },
                })
                .collect());
        }
        let mut staged = self
            .staged
            .take()
            .unwrap_or_else(|| StagedExport::new(self.path.clone()));
        let f = LdifFormat { c: self };
        let res = staged.stage(&f, batch, &|item| crate::csv::make_entry(item, &anchor));
        self.staged = Some(staged);
        res
    }

    fn finish_export(&mut self) -> Result<()> {
        if let Some(w) = self.changes_out.take() {
            let p = self.path.clone();
            let mut buf = w.finish().map_err(io_err(&p))?;
            buf.flush().map_err(io_err(&p))?;
        }
        if let Some(mut staged) = self.staged.take() {
            let f = LdifFormat { c: self };
            staged.finish(&f)?;
        }
        Ok(())
    }
}

/// The change files of a delta folder, in the order they apply.
fn change_files(dir: &Path) -> Result<Vec<String>> {
    let mut files: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".ldif"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(dir)(e)),
    };
    files.sort();
    Ok(files)
}

/// LDIF change records for one export, as `ldapmodify` takes them.
fn change_records(item: &ExportItem, anchor_attr: &str) -> Vec<codec::Record> {
    let dn = item.dn.to_string();
    match &item.op {
        ExportOp::Add { .. } => {
            let mut out = Vec::new();
            if let Ok(entry) = crate::csv::make_entry(item, anchor_attr) {
                if let codec::Record::Content { dn, attrs } = entry_record(&entry) {
                    // A directory assigns its own operational entryUUID; sending it would be refused.
                    let attrs = attrs
                        .into_iter()
                        .filter(|a| !a.name.eq_ignore_ascii_case("entryUUID"))
                        .collect();
                    out.push(codec::Record::Change {
                        dn,
                        controls: vec![],
                        change: codec::ChangeKind::Add { attrs },
                    });
                }
            }
            out
        }
        ExportOp::Delete => vec![codec::Record::Change {
            dn,
            controls: vec![],
            change: codec::ChangeKind::Delete,
        }],
        ExportOp::Update { new_dn, changes } => {
            let mut out = Vec::new();
            let mut current = dn;
            if let Some(n) = new_dn {
                let new = n.to_string();
                let (rdn, parent) = match new.split_once(',') {
                    Some((r, p)) => (r.to_owned(), Some(p.to_owned())),
                    None => (new.clone(), None),
                };
                out.push(codec::Record::Change {
                    dn: current.clone(),
                    controls: vec![],
                    change: codec::ChangeKind::ModDn {
                        new_rdn: rdn,
                        delete_old_rdn: true,
                        new_superior: parent,
                    },
                });
                current = new;
            }
            let mut mods = Vec::new();
            for d in changes {
                let attr = d.name.to_string();
                match &d.change {
                    AttributeChange::Replace(v) => mods.push(codec::Modification {
                        op: codec::ModOp::Replace,
                        attr,
                        values: v.iter().map(value_bytes).collect(),
                    }),
                    AttributeChange::Update { add, remove } => {
                        if !remove.is_empty() {
                            mods.push(codec::Modification {
                                op: codec::ModOp::Delete,
                                attr: attr.clone(),
                                values: remove.iter().map(value_bytes).collect(),
                            });
                        }
                        if !add.is_empty() {
                            mods.push(codec::Modification {
                                op: codec::ModOp::Add,
                                attr,
                                values: add.iter().map(value_bytes).collect(),
                            });
                        }
                    }
                }
            }
            if !mods.is_empty() {
                out.push(codec::Record::Change {
                    dn: current,
                    controls: vec![],
                    change: codec::ChangeKind::Modify { mods },
                });
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parent_dn;

    #[test]
    fn parent_skips_escaped_commas() {
        assert_eq!(parent_dn(r"cn=Smith\, J,ou=people,dc=x"), "ou=people,dc=x");
        assert_eq!(parent_dn("dc=x"), "");
    }
}

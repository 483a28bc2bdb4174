//! The CSV connector: a table of people (an HR export) read by header-mapped columns.
//!
//! Full import streams the rows; delta import compares the file with the last import (a file has
//! no change feed), and answers "nothing changed" at once when the file's content hash is the
//! watermark. Export rewrites the file through [`crate::file_table`]. Malformed input (an
//! unterminated quote, invalid UTF-8, a bad value) stops the import with the file, line and
//! column, so nothing is staged from half a file.

use crate::attr_types::{value_text, AttributeTypes, TypeHint};
use crate::file_table::{RecordFormat, RecordWriter, StagedExport};
use crate::{
    io_err, settings, Capabilities, Connector, DeltaOutcome, Error, ExportItem, ExportOp,
    ExportResult, ImportSink, Result,
};
use idsync_model::{Anchor, Attributes, ConnectorId, CsEntry, Dn, Value};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvSettings {
    /// The CSV file, relative to the configuration file.
    path: String,
    /// The column holding each row's immutable key.
    anchor: String,
    /// The column naming the row (its identifier); defaults to the anchor column.
    dn: Option<String>,
    /// The object class every row has.
    #[serde(default = "default_class")]
    object_class: String,
    /// Columns holding several values, split by `multi_value_separator`.
    #[serde(default)]
    multi_valued: Vec<String>,
    #[serde(default = "default_separator")]
    multi_value_separator: String,
    /// Column types other than text.
    #[serde(default)]
    attribute_types: BTreeMap<String, TypeHint>,
    /// The columns written on export; defaults to the existing file's header.
    #[serde(default)]
    columns: Vec<String>,
    /// The file may not exist yet (a target idsync creates): a missing file reads as empty.
    /// Off by default, so a source file that went missing is an error, not a mass delete.
    #[serde(default)]
    optional: bool,
    /// The field delimiter; a comma by default.
    #[serde(default = "default_delimiter")]
    delimiter: char,
}

fn default_class() -> String {
    "person".to_owned()
}
fn default_separator() -> String {
    ";".to_owned()
}
fn default_delimiter() -> char {
    ','
}

pub struct CsvConnector {
    id: ConnectorId,
    path: PathBuf,
    base: PathBuf,
    s: CsvSettings,
    types: AttributeTypes,
    staged: Option<StagedExport>,
}

impl CsvConnector {
    /// Maps CSV content held in memory to objects exactly as a full import maps the file (for
    /// fuzzing and tools); `name` names the content in errors.
    pub fn map_rows(
        &self,
        content: &[u8],
        name: &str,
        f: &mut dyn FnMut(CsEntry) -> Result<()>,
    ) -> Result<()> {
        CsvFormat { c: self }
            .read_from(content, name, f)
            .map(|_| ())
    }

    pub fn new(id: ConnectorId, raw: &toml::Table, base_dir: &Path) -> Result<Self> {
        let s: CsvSettings = settings(&id, raw)?;
        if !s.delimiter.is_ascii() {
            return Err(Error::Config {
                connector: id.to_string(),
                message: "delimiter must be one ASCII character".to_owned(),
            });
        }
        let path = base_dir.join(&s.path);
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self {
            types: AttributeTypes::new(&s.attribute_types),
            id,
            path,
            base,
            s,
            staged: None,
        })
    }

    fn content_hash(&self) -> Result<String> {
        if self.s.optional && !self.path.exists() {
            return Ok(String::new());
        }
        let mut h = blake3::Hasher::new();
        let mut f = std::fs::File::open(&self.path).map_err(io_err(&self.path))?;
        std::io::copy(&mut f, &mut h).map_err(io_err(&self.path))?;
        Ok(h.finalize().to_hex().to_string())
    }

    fn file_name(&self) -> String {
        self.path.display().to_string()
    }
}

/// Tracks quoting while the csv crate reads, so a quote that is never closed (which the csv
/// crate silently runs to the end of the file) is reported with the line it was opened on.
struct QuoteTracker<R> {
    inner: R,
    line: usize,
    in_quotes: bool,
    opened_on: usize,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for QuoteTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        for &b in &buf[..n] {
            match b {
                b'"' => {
                    if !self.in_quotes {
                        self.opened_on = self.line;
                    }
                    self.in_quotes = !self.in_quotes;
                }
                b'\n' => self.line += 1,
                _ => {}
            }
        }
        Ok(n)
    }
}

struct CsvFormat<'a> {
    c: &'a CsvConnector,
}

impl CsvFormat<'_> {
    /// Reads the file, returning its content hash.
    fn read(&self, path: &Path, f: &mut dyn FnMut(CsEntry) -> Result<()>) -> Result<String> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        self.read_from(
            std::io::BufReader::with_capacity(1 << 16, file),
            &path.display().to_string(),
            f,
        )
    }

    /// Reads CSV content from any reader; `file_name` names it in errors.
    fn read_from(
        &self,
        input: impl Read,
        file_name: &str,
        f: &mut dyn FnMut(CsEntry) -> Result<()>,
    ) -> Result<String> {
        let c = self.c;
        let mut tracker = QuoteTracker {
            inner: input,
            line: 1,
            in_quotes: false,
            opened_on: 0,
            hasher: blake3::Hasher::new(),
        };
        let parse_err = |line: usize, message: String| Error::Parse {
            file: file_name.to_owned(),
            line,
            message,
        };
        {
            let mut rdr = csv::ReaderBuilder::new()
                .delimiter(c.s.delimiter as u8)
                .from_reader(&mut tracker);
            let headers = rdr
                .headers()
                .map_err(|e| parse_err(1, csv_message(&e)))?
                .clone();
            let anchor_col = headers
                .iter()
                .position(|h| h.eq_ignore_ascii_case(&c.s.anchor))
                .ok_or_else(|| {
                    parse_err(
                        1,
                        format!("no column `{}` (the anchor) in the header", c.s.anchor),
                    )
                })?;
            let dn_col = match &c.s.dn {
                Some(d) => headers
                    .iter()
                    .position(|h| h.eq_ignore_ascii_case(d))
                    .ok_or_else(|| {
                        parse_err(1, format!("no column `{d}` (the dn) in the header"))
                    })?,
                None => anchor_col,
            };
            let multi: Vec<bool> = headers
                .iter()
                .map(|h| c.s.multi_valued.iter().any(|m| m.eq_ignore_ascii_case(h)))
                .collect();
            let read_file = |name: &str| -> std::result::Result<Vec<u8>, String> {
                // A cell names a file beside the CSV; outside input must not make idsync read
                // (and then export) any other file of the machine.
                let rel = Path::new(name);
                if rel.is_absolute()
                    || rel
                        .components()
                        .any(|p| !matches!(p, std::path::Component::Normal(_)))
                {
                    return Err(format!(
                        "`{name}` is not a file name inside the CSV file's folder"
                    ));
                }
                let p = c.base.join(rel);
                std::fs::read(&p).map_err(|e| format!("cannot read `{}`: {e}", p.display()))
            };
            let mut record = csv::StringRecord::new();
            loop {
                match rdr.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line() as usize);
                        return Err(parse_err(line, csv_message(&e)));
                    }
                }
                let line = record.position().map_or(0, |p| p.line() as usize);
                let mut attributes = Attributes::new();
                for (i, cell) in record.iter().enumerate() {
                    if cell.is_empty() {
                        continue;
                    }
                    let name = &headers[i];
                    let parts: Vec<&str> = if multi[i] {
                        cell.split(c.s.multi_value_separator.as_str())
                            .filter(|p| !p.is_empty())
                            .collect()
                    } else {
                        vec![cell]
                    };
                    let mut values = Vec::with_capacity(parts.len());
                    for p in parts {
                        let v = c.types.from_text(name, p, &read_file).map_err(|m| {
                            parse_err(line, format!("column `{name}` (column {}): {m}", i + 1))
                        })?;
                        values.push(v);
                    }
                    attributes.set(name, values);
                }
                let anchor = record.get(anchor_col).unwrap_or("").trim().to_owned();
                let dn = record.get(dn_col).unwrap_or("").trim().to_owned();
                f(CsEntry {
                    anchor: Anchor::new(anchor),
                    dn: Dn::new(dn),
                    object_classes: vec![c.s.object_class.clone()],
                    attributes,
                })?;
            }
        }
        if tracker.in_quotes {
            return Err(parse_err(
                tracker.opened_on,
                "unterminated quote: a quoted field is never closed".to_owned(),
            ));
        }
        Ok(tracker.hasher.finalize().to_hex().to_string())
    }

    fn header(&self) -> Result<Vec<String>> {
        if !self.c.s.columns.is_empty() {
            return Ok(self.c.s.columns.clone());
        }
        if self.c.path.exists() {
            let mut rdr = csv::ReaderBuilder::new()
                .delimiter(self.c.s.delimiter as u8)
                .from_path(&self.c.path)
                .map_err(|e| Error::Parse {
                    file: self.c.file_name(),
                    line: 1,
                    message: csv_message(&e),
                })?;
            if let Ok(h) = rdr.headers() {
                if !h.is_empty() {
                    return Ok(h.iter().map(str::to_owned).collect());
                }
            }
        }
        Err(Error::Config {
            connector: self.c.id.to_string(),
            message: "set `columns`: the file to export to has no header to take them from"
                .to_owned(),
        })
    }
}

fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8 in field {}", err.field() + 1),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("row has {len} fields, the header has {expected_len}")
        }
        _ => e.to_string(),
    }
}

impl RecordFormat for CsvFormat<'_> {
    fn read_file(&self, path: &Path, f: &mut dyn FnMut(CsEntry) -> Result<()>) -> Result<()> {
        self.read(path, f).map(|_| ())
    }

    fn create(&self, path: &Path) -> Result<Box<dyn RecordWriter>> {
        let columns = self.header()?;
        let mut w = csv::WriterBuilder::new()
            .delimiter(self.c.s.delimiter as u8)
            .from_path(path)
            .map_err(|e| Error::Io {
                path: path.to_owned(),
                source: std::io::Error::other(e.to_string()),
            })?;
        w.write_record(&columns).map_err(|e| Error::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Box::new(CsvWriter {
            w,
            columns,
            path: path.to_owned(),
            anchor: self.c.s.anchor.clone(),
            dn: self.c.s.dn.clone(),
            sep: self.c.s.multi_value_separator.clone(),
            types: self.c.types.clone(),
            base: self.c.base.clone(),
        }))
    }
}

struct CsvWriter {
    w: csv::Writer<std::fs::File>,
    columns: Vec<String>,
    path: PathBuf,
    anchor: String,
    dn: Option<String>,
    sep: String,
    types: AttributeTypes,
    base: PathBuf,
}

impl RecordWriter for CsvWriter {
    fn write(&mut self, e: &CsEntry) -> Result<()> {
        let mut row = Vec::with_capacity(self.columns.len());
        for col in &self.columns {
            let values = e.attributes.get(col).unwrap_or(&[]);
            let cell = if values.is_empty() && col.eq_ignore_ascii_case(&self.anchor) {
                e.anchor.to_string()
            } else if values.is_empty()
                && self
                    .dn
                    .as_deref()
                    .is_some_and(|d| col.eq_ignore_ascii_case(d))
            {
                e.dn.to_string()
            } else {
                let mut texts = Vec::with_capacity(values.len());
                for v in values {
                    texts.push(match v {
                        Value::Binary(b) => {
                            let bytes = b.data.as_deref().unwrap_or(&[]);
                            if self.types.hint(col) == TypeHint::BinaryFile {
                                // A file-valued column gets the bytes written beside the table,
                                // named by content so an unchanged photo is not rewritten.
                                let rel = format!("files/{}", b.hash.to_hex());
                                let p = self.base.join(&rel);
                                if !p.exists() {
                                    std::fs::create_dir_all(self.base.join("files"))
                                        .map_err(io_err(&p))?;
                                    std::fs::write(&p, bytes).map_err(io_err(&p))?;
                                }
                                rel
                            } else {
                                use base64::Engine;
                                base64::engine::general_purpose::STANDARD.encode(bytes)
                            }
                        }
                        other => value_text(other),
                    });
                }
                texts.join(&self.sep)
            };
            row.push(cell);
        }
        self.w.write_record(&row).map_err(|e| Error::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.w.flush().map_err(io_err(&self.path))?;
        let file = self.w.into_inner().map_err(|e| Error::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        file.sync_all().map_err(io_err(&self.path))
    }
}

impl Connector for CsvConnector {
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
        if self.s.optional && !self.path.exists() {
            return Ok(());
        }
        let format = CsvFormat { c: self };
        format.read(&self.path, &mut |e| sink.entry(e).map_err(Error::Sink))?;
        Ok(())
    }

    fn delta_import(
        &mut self,
        watermark: Option<&str>,
        sink: &mut dyn ImportSink,
    ) -> Result<DeltaOutcome> {
        // A file has no change feed: if its bytes are those of the last import nothing changed;
        // otherwise every row is compared with the connector space (the engine treats the rows
        // as a full import, including rows that disappeared).
        let current = self.content_hash()?;
        // Cells that name files (picture URLs) point at content the file's own bytes do not
        // cover: with such columns every row is compared, so a new photo behind an unchanged
        // name is seen by delta import as by full import (seed 000).
        let names_files = self
            .s
            .attribute_types
            .values()
            .any(|t| *t == TypeHint::BinaryFile);
        if !names_files
            && (watermark == Some(current.as_str()) || (current.is_empty() && self.s.optional))
        {
            return Ok(DeltaOutcome {
                watermark: Some(current),
                method: "file unchanged since last import".to_owned(),
                full: false,
            });
        }
        let format = CsvFormat { c: self };
        let hash = format.read(&self.path, &mut |e| sink.entry(e).map_err(Error::Sink))?;
        Ok(DeltaOutcome {
            watermark: Some(hash),
            method: "file compared with the last import".to_owned(),
            full: true,
        })
    }

    fn watermark_after_full_import(&mut self) -> Result<Option<String>> {
        self.content_hash().map(Some)
    }

    fn export(&mut self, batch: &[ExportItem]) -> Result<Vec<ExportResult>> {
        let mut staged = self
            .staged
            .take()
            .unwrap_or_else(|| StagedExport::new(self.path.clone()));
        let anchor_col = self.s.anchor.clone();
        let format = CsvFormat { c: self };
        let res = staged.stage(&format, batch, &|item| make_entry(item, &anchor_col));
        self.staged = Some(staged);
        res
    }

    fn finish_export(&mut self) -> Result<()> {
        if let Some(mut staged) = self.staged.take() {
            let format = CsvFormat { c: self };
            staged.finish(&format)?;
        }
        Ok(())
    }
}

/// The record for an add: the anchor column's value if the export set it; otherwise the
/// connector-space id, so an add sent again after a crash gets the same anchor (as a directory
/// would find the entry it created already there).
pub(crate) fn make_entry(
    item: &ExportItem,
    anchor_attr: &str,
) -> std::result::Result<CsEntry, String> {
    let ExportOp::Add {
        object_classes,
        attributes,
    } = &item.op
    else {
        return Err("not an add".to_owned());
    };
    let mut attributes = attributes.clone();
    let anchor = match attributes.first(anchor_attr).map(Value::to_text) {
        Some(a) if !a.is_empty() => a,
        _ => {
            let a = item
                .anchor
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_else(|| item.cs_id.to_string());
            attributes.set(anchor_attr, vec![Value::String(a.clone())]);
            a
        }
    };
    Ok(CsEntry {
        anchor: Anchor::new(anchor),
        dn: item.dn.clone(),
        object_classes: object_classes.clone(),
        attributes,
    })
}

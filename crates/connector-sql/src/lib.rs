//! The SQL connector: a table, a view or a query of PostgreSQL, MariaDB/MySQL or SQLite read as
//! connector-space objects, through `sqlx` on a current-thread tokio runtime the connector owns.
//!
//! A full import is one streaming query (rows are turned into objects and handed to the sink as
//! they arrive; nothing holds the table). Multi-valued attributes come from a column holding
//! several values with a separator, a PostgreSQL array, or a child table aggregated by the server
//! in the same query, so there is never a query per person. A delta import reads the rows whose
//! watermark column (a change timestamp or an increasing version) is at or after the last one
//! seen; deletes come from a tombstone column or from the next full import, as configured, and
//! the method is reported. A value of a type the connector does not map, or a NULL anchor, stops
//! the import with the row and column, so nothing is staged from half a table.
//!
//! The connection string is a secret (`url = "env:NAME"` or `"file:PATH"`). TLS is verified
//! (`verify-full`) unless the URL says otherwise or the server is on this machine. Export is off
//! unless `export = true`: then parameterized statements, one transaction per batch.
//! This crate knows nothing of the store or the engine; SQL rows never leave it.

mod dialect;
mod export;
mod rows;

use dialect::{Conn, Dialect};
use idsync_connectors::{
    resolve_secret, AttributeTypes, Capabilities, Connector, DeltaOutcome, Error, ExportItem,
    ExportResult, ImportChange, ImportSink, Result, Secret, TypeHint,
};
use idsync_model::{Anchor, Attributes, ConnectorId, CsEntry, Dn, Value};
use rows::{Cell, SqlRow, Watermark};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One or several column names.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Columns {
    One(String),
    Many(Vec<String>),
}

impl Columns {
    fn list(&self) -> Vec<String> {
        match self {
            Columns::One(c) => vec![c.clone()],
            Columns::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum DeleteMode {
    /// A row whose tombstone column is set (true, non-zero or any timestamp) is deleted.
    Tombstone,
    /// Delta imports see inserts and updates only; the next full import finds deletes.
    FullImport,
}

/// A multi-valued attribute: a column holding values joined by a separator, or a child table
/// with one row per value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MultiValued {
    attribute: String,
    /// The column (of the source, or of the child table).
    column: String,
    /// For a column of the source: the separator between values (`;` by default).
    separator: Option<String>,
    /// A child table with one row per value...
    table: Option<String>,
    /// ...and its column holding the anchor of the row it belongs to.
    key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlSettings {
    /// The connection string, by reference: `env:NAME` or `file:PATH`.
    url: String,
    /// A table or view (`schema.table` allowed)...
    table: Option<String>,
    /// ...or a SELECT whose rows are the objects.
    query: Option<String>,
    /// The key column or columns (immutable per row).
    anchor: Columns,
    /// The column naming the row (its identifier); defaults to the anchor.
    dn: Option<String>,
    #[serde(default = "default_class")]
    object_class: String,
    /// attribute = column. Empty: every column is an attribute of the same name.
    #[serde(default)]
    columns: BTreeMap<String, String>,
    #[serde(default)]
    multi_valued: Vec<MultiValued>,
    /// Types for text columns that hold something else (a DN naming a manager).
    #[serde(default)]
    attribute_types: BTreeMap<String, TypeHint>,
    /// The change timestamp or version column delta imports ask by.
    watermark_column: Option<String>,
    delete_mode: Option<DeleteMode>,
    tombstone_column: Option<String>,
    /// Export is off unless set.
    #[serde(default)]
    export: bool,
}

fn default_class() -> String {
    "person".to_owned()
}

/// The separator the server puts between a child table's values: a control character no name
/// contains.
const CHILD_SEP: &str = "\u{1f}";

pub struct SqlConnector {
    id: ConnectorId,
    s: SqlSettings,
    url: Secret,
    dialect: Dialect,
    types: AttributeTypes,
    rt: Option<tokio::runtime::Runtime>,
    conn: Option<Conn>,
    /// The watermark read before the last full import (its rows are at or after it).
    full_watermark: Option<String>,
}

fn config_err(id: &ConnectorId, message: impl Into<String>) -> Error {
    Error::Config {
        connector: id.to_string(),
        message: message.into(),
    }
}

impl SqlConnector {
    /// Checks the settings and resolves the connection string; connects on first use.
    pub fn new(id: ConnectorId, raw: &toml::Table, base_dir: &Path) -> Result<Self> {
        let s: SqlSettings = idsync_connectors::settings(&id, raw)?;
        let url = resolve_secret(&s.url, base_dir).map_err(|m| Error::Setting {
            connector: id.to_string(),
            key: "url".to_owned(),
            message: format!("url: {m}"),
        })?;
        let dialect = Dialect::from_url(url.expose()).ok_or_else(|| {
            config_err(
                &id,
                "url: the connection string must start with postgres://, postgresql://, mysql://, mariadb:// or sqlite:",
            )
        })?;
        match (&s.table, &s.query) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(config_err(&id, "set exactly one of `table` and `query`"))
            }
            (Some(t), None) => dialect::check_identifier(t).map_err(|m| config_err(&id, m))?,
            (None, Some(_)) if s.export => {
                return Err(config_err(&id, "export needs a `table`, not a `query`"))
            }
            _ => {}
        }
        for c in s
            .anchor
            .list()
            .iter()
            .chain(s.columns.values())
            .chain(s.dn.iter())
            .chain(s.watermark_column.iter())
            .chain(s.tombstone_column.iter())
        {
            dialect::check_identifier(c).map_err(|m| config_err(&id, m))?;
        }
        if s.anchor.list().is_empty() {
            return Err(config_err(&id, "`anchor` names no column"));
        }
        for m in &s.multi_valued {
            dialect::check_identifier(&m.column).map_err(|e| config_err(&id, e))?;
            match (&m.table, &m.key) {
                (Some(t), Some(k)) => {
                    dialect::check_identifier(t).map_err(|e| config_err(&id, e))?;
                    dialect::check_identifier(k).map_err(|e| config_err(&id, e))?;
                    if s.anchor.list().len() != 1 {
                        return Err(config_err(
                            &id,
                            format!(
                                "multi_valued `{}`: a child table needs a one-column anchor",
                                m.attribute
                            ),
                        ));
                    }
                }
                (None, None) => {}
                _ => {
                    return Err(config_err(
                        &id,
                        format!(
                            "multi_valued `{}`: a child table needs both `table` and `key`",
                            m.attribute
                        ),
                    ))
                }
            }
        }
        match (s.delete_mode, &s.tombstone_column, &s.watermark_column) {
            (Some(DeleteMode::Tombstone), None, _) => {
                return Err(config_err(
                    &id,
                    "delete_mode = \"tombstone\" needs `tombstone_column`",
                ))
            }
            (Some(_), _, None) => return Err(config_err(
                &id,
                "`delete_mode` needs `watermark_column` (it says how delta imports find deletes)",
            )),
            _ => {}
        }
        Ok(Self {
            types: AttributeTypes::new(&s.attribute_types),
            id,
            s,
            url,
            dialect,
            rt: None,
            conn: None,
            full_watermark: None,
        })
    }

    fn delete_mode(&self) -> DeleteMode {
        self.s
            .delete_mode
            .unwrap_or(if self.s.tombstone_column.is_some() {
                DeleteMode::Tombstone
            } else {
                DeleteMode::FullImport
            })
    }

    fn remote(&self, message: impl std::fmt::Display) -> Error {
        Error::Remote {
            connector: self.id.to_string(),
            message: message.to_string(),
        }
    }

    /// Connects if not connected yet.
    fn connect(&mut self) -> Result<()> {
        if self.rt.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| self.remote(format!("cannot start the async runtime: {e}")))?;
            self.rt = Some(rt);
        }
        if self.conn.is_none() {
            let rt = self.rt.as_ref().ok_or_else(|| self.remote("no runtime"))?;
            let conn = rt
                .block_on(Conn::open(self.dialect, self.url.expose()))
                .map_err(|e| self.remote(format!("cannot connect: {e}")))?;
            self.conn = Some(conn);
        }
        Ok(())
    }

    /// The source as a FROM item named `src`.
    fn source(&self) -> String {
        match (&self.s.table, &self.s.query) {
            (Some(t), _) => format!("{} src", self.dialect.quote(t)),
            (None, Some(q)) => format!("({}) src", q.trim().trim_end_matches(';')),
            (None, None) => String::new(),
        }
    }

    /// `SELECT` every column of the source plus one aggregated column per child table.
    fn select(&self, where_clause: &str) -> String {
        let d = self.dialect;
        let mut sql = String::from("SELECT src.*");
        for (i, m) in self.s.multi_valued.iter().enumerate() {
            if let (Some(t), Some(k)) = (&m.table, &m.key) {
                let anchor = &self.s.anchor.list()[0];
                sql.push_str(&format!(
                    ", (SELECT {} FROM {} c WHERE c.{} = src.{}) AS {}",
                    d.aggregate(&format!("c.{}", d.quote(&m.column)), CHILD_SEP),
                    d.quote(t),
                    d.quote(k),
                    d.quote(anchor),
                    d.quote(&format!("idsync_child_{i}"))
                ));
            }
        }
        sql.push_str(" FROM ");
        sql.push_str(&self.source());
        sql.push_str(where_clause);
        sql
    }

    /// Streams a query's rows into `f` (one row at a time; `f` stops the read with an error).
    fn stream(
        &mut self,
        sql: &str,
        bind: Option<&Watermark>,
        f: &mut dyn FnMut(&dyn SqlRow) -> Result<()>,
    ) -> Result<()> {
        self.connect()?;
        let (Some(rt), Some(conn)) = (self.rt.as_ref(), self.conn.as_mut()) else {
            return Err(self.remote("not connected"));
        };
        let res = rt.block_on(conn.stream(sql, bind, f));
        if let Err(dialect::StreamError::Sql(e)) = &res {
            // A connection that failed is not reused: the next step connects again.
            let message = format!("query failed: {e}");
            self.conn = None;
            return Err(self.remote(message));
        }
        res.map_err(|e| match e {
            dialect::StreamError::Stop(e) => e,
            dialect::StreamError::Sql(e) => self.remote(e),
        })
    }

    /// The largest watermark now in the source (read before a full import, so rows changed
    /// while it reads are read again by the next delta import).
    fn current_watermark(&mut self) -> Result<Option<String>> {
        let Some(col) = self.s.watermark_column.clone() else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT MAX(src.{}) FROM {}",
            self.dialect.quote(&col),
            self.source()
        );
        let mut out = None;
        let id = self.id.clone();
        self.stream(&sql, None, &mut |row| {
            out = row
                .watermark(0)
                .map_err(|m| data_err(&id, format!("watermark column `{col}`"), m))?
                .map(|w| w.encode());
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads `sql` and hands each row to `f` as an entry, or as a tombstone (its anchor).
    fn read(
        &mut self,
        sql: &str,
        bind: Option<&Watermark>,
        f: &mut dyn FnMut(RowOut) -> Result<()>,
    ) -> Result<Option<Watermark>> {
        let mut plan: Option<Plan> = None;
        let mut row_no: u64 = 0;
        let mut max_wm: Option<Watermark> = None;
        let id = self.id.clone();
        let s = self.s.clone();
        let types = self.types.clone();
        let tombstones = self.delete_mode() == DeleteMode::Tombstone;
        self.stream(sql, bind, &mut |row| {
            row_no += 1;
            let plan = match &plan {
                Some(p) => p,
                None => plan.insert(Plan::new(&id, &s, row)?),
            };
            let out = plan.row(&id, &s, &types, row, row_no, tombstones)?;
            if let Some(w) = &out.watermark {
                if max_wm.as_ref().is_none_or(|m| w > m) {
                    max_wm = Some(w.clone());
                }
            }
            f(out)
        })?;
        Ok(max_wm)
    }
}

fn data_err(id: &ConnectorId, place: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Data {
        connector: id.to_string(),
        place: place.into(),
        message: message.into(),
    }
}

/// What one row became.
struct RowOut {
    entry: CsEntry,
    deleted: bool,
    watermark: Option<Watermark>,
}

/// How the columns of a result map to an object, worked out from the first row.
struct Plan {
    /// For each result column: the attribute it fills (if any) and its separator.
    columns: Vec<Option<(String, Option<String>)>>,
    anchor: Vec<usize>,
    dn: Option<usize>,
    watermark: Option<usize>,
    tombstone: Option<usize>,
}

impl Plan {
    fn new(id: &ConnectorId, s: &SqlSettings, row: &dyn SqlRow) -> Result<Self> {
        let names: Vec<String> = (0..row.len()).map(|i| row.name(i)).collect();
        let find = |c: &str, what: &str| -> Result<usize> {
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(c))
                .ok_or_else(|| {
                    config_err(
                        id,
                        format!(
                            "no column `{c}` ({what}) in the source (its columns: {})",
                            names.join(", ")
                        ),
                    )
                })
        };
        let anchor = s
            .anchor
            .list()
            .iter()
            .map(|c| find(c, "the anchor"))
            .collect::<Result<Vec<_>>>()?;
        let dn = s.dn.as_deref().map(|c| find(c, "the dn")).transpose()?;
        let watermark = s
            .watermark_column
            .as_deref()
            .map(|c| find(c, "the watermark column"))
            .transpose()?;
        let tombstone = s
            .tombstone_column
            .as_deref()
            .map(|c| find(c, "the tombstone column"))
            .transpose()?;
        let mut columns: Vec<Option<(String, Option<String>)>> = vec![None; names.len()];
        if s.columns.is_empty() {
            for (i, n) in names.iter().enumerate() {
                if Some(i) != tombstone && !n.starts_with("idsync_child_") {
                    columns[i] = Some((n.clone(), None));
                }
            }
        } else {
            for &i in &anchor {
                columns[i] = Some((names[i].clone(), None));
            }
            for (attr, col) in &s.columns {
                let i = find(col, &format!("mapped to `{attr}`"))?;
                columns[i] = Some((attr.clone(), None));
            }
        }
        for (k, m) in s.multi_valued.iter().enumerate() {
            if m.table.is_some() {
                let i = find(&format!("idsync_child_{k}"), "child table values")?;
                columns[i] = Some((m.attribute.clone(), Some(CHILD_SEP.to_owned())));
            } else {
                let i = find(&m.column, &format!("multi-valued `{}`", m.attribute))?;
                let sep = m.separator.clone().unwrap_or_else(|| ";".to_owned());
                if sep.is_empty() {
                    return Err(config_err(
                        id,
                        format!("multi_valued `{}`: the separator is empty", m.attribute),
                    ));
                }
                columns[i] = Some((m.attribute.clone(), Some(sep)));
            }
        }
        Ok(Self {
            columns,
            anchor,
            dn,
            watermark,
            tombstone,
        })
    }

    fn row(
        &self,
        id: &ConnectorId,
        s: &SqlSettings,
        types: &AttributeTypes,
        row: &dyn SqlRow,
        row_no: u64,
        tombstones: bool,
    ) -> Result<RowOut> {
        // The anchor first, so every later error can name the row by it.
        let mut parts = Vec::with_capacity(self.anchor.len());
        for &i in &self.anchor {
            let place = format!("row {row_no}, column `{}`", row.name(i));
            let cell = row.cell(i).map_err(|m| data_err(id, &place, m))?;
            match cell.anchor_text() {
                Some(t) => parts.push(t),
                None if matches!(cell, Cell::Null) => {
                    return Err(data_err(id, place, "the anchor is NULL"))
                }
                None => {
                    return Err(data_err(
                        id,
                        place,
                        format!("an anchor must be text or an integer, not {}", cell.kind()),
                    ))
                }
            }
        }
        let anchor = parts.join("/");
        let place =
            |i: usize| format!("row {row_no} (anchor `{anchor}`), column `{}`", row.name(i));
        let mut attributes = Attributes::new();
        for (i, target) in self.columns.iter().enumerate() {
            let Some((attr, sep)) = target else { continue };
            let cell = row.cell(i).map_err(|m| data_err(id, place(i), m))?;
            let values = cell
                .into_values(attr, sep.as_deref(), types)
                .map_err(|m| data_err(id, place(i), m))?;
            if !values.is_empty() {
                attributes.set(attr.as_str(), values);
            }
        }
        let dn = match self.dn {
            Some(i) => match row
                .cell(i)
                .map_err(|m| data_err(id, place(i), m))?
                .anchor_text()
            {
                Some(t) => t,
                None => return Err(data_err(id, place(i), "the dn column is empty")),
            },
            None => anchor.clone(),
        };
        let deleted = match self.tombstone {
            Some(i) if tombstones => row.cell(i).map_err(|m| data_err(id, place(i), m))?.is_set(),
            _ => false,
        };
        let watermark = match self.watermark {
            Some(i) => row.watermark(i).map_err(|m| data_err(id, place(i), m))?,
            None => None,
        };
        Ok(RowOut {
            entry: CsEntry {
                anchor: Anchor::new(anchor),
                dn: Dn::new(dn),
                object_classes: vec![s.object_class.clone()],
                attributes,
            },
            deleted,
            watermark,
        })
    }
}

impl Connector for SqlConnector {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            full_import: true,
            delta_import: true,
            export: self.s.export,
            delta_sees_own_exports: self.s.watermark_column.is_some(),
            identifier: idsync_model::IdentifierSyntax::Plain,
        }
    }

    fn full_import(&mut self, sink: &mut dyn ImportSink) -> Result<()> {
        self.full_watermark = self.current_watermark()?;
        let sql = self.select("");
        self.read(&sql, None, &mut |out| {
            if out.deleted {
                // A tombstoned row is a deleted object: not delivered, so obsoletion deletes it.
                return Ok(());
            }
            sink.entry(out.entry).map_err(Error::Sink)
        })?;
        Ok(())
    }

    fn watermark_after_full_import(&mut self) -> Result<Option<String>> {
        Ok(self.full_watermark.take())
    }

    fn delta_import(
        &mut self,
        watermark: Option<&str>,
        sink: &mut dyn ImportSink,
    ) -> Result<DeltaOutcome> {
        let (Some(col), Some(wm)) = (self.s.watermark_column.clone(), watermark) else {
            // No watermark column, or none stored yet: read everything, compared as a full
            // import (rows that disappeared are deletes).
            let method = if self.s.watermark_column.is_none() {
                "no watermark column: every row compared with the connector space"
            } else {
                "no watermark yet: every row compared with the connector space"
            };
            let before = self.current_watermark()?;
            let sql = self.select("");
            self.read(&sql, None, &mut |out| {
                if out.deleted {
                    return Ok(());
                }
                sink.entry(out.entry).map_err(Error::Sink)
            })?;
            return Ok(DeltaOutcome {
                watermark: before,
                method: method.to_owned(),
                full: true,
            });
        };
        let wm = Watermark::decode(wm).ok_or_else(|| {
            config_err(&self.id, format!("the stored watermark `{wm}` is not one this connector wrote: run a full import"))
        })?;
        // `>=`, not `>`: rows committed late with the same change time are read again rather
        // than missed (reading a row twice changes nothing).
        let sql = self.select(&format!(
            " WHERE src.{} >= {}",
            self.dialect.quote(&col),
            self.dialect.placeholder(1)
        ));
        let mode = self.delete_mode();
        let max = self.read(&sql, Some(&wm), &mut |out| {
            let change = if out.deleted {
                ImportChange::Delete {
                    anchor: Some(out.entry.anchor),
                    dn: out.entry.dn,
                }
            } else {
                ImportChange::Upsert(out.entry)
            };
            sink.change(change).map_err(Error::Sink)
        })?;
        let deletes = match mode {
            DeleteMode::Tombstone => format!(
                "deletes by tombstone column `{}`",
                self.s.tombstone_column.as_deref().unwrap_or("")
            ),
            DeleteMode::FullImport => "deletes found by the next full import".to_owned(),
        };
        Ok(DeltaOutcome {
            watermark: Some(max.unwrap_or(wm).encode()),
            method: format!("watermark column `{col}`; {deletes}"),
            full: false,
        })
    }

    fn export(&mut self, batch: &[ExportItem]) -> Result<Vec<ExportResult>> {
        if !self.s.export {
            return Err(Error::Unsupported {
                connector: self.id.to_string(),
                operation: "export (read-only: set `export = true` to allow it)",
            });
        }
        self.connect()?;
        let plan = export::ExportPlan::new(&self.s, self.dialect)?;
        let (Some(rt), Some(conn)) = (self.rt.as_ref(), self.conn.as_mut()) else {
            return Err(self.remote("not connected"));
        };
        let res = rt.block_on(plan.apply(conn, batch, self.id.as_str()));
        res.map_err(|e| {
            self.conn = None;
            self.remote(format!("export failed: {e}"))
        })
    }
}

impl Cell {
    fn anchor_text(&self) -> Option<String> {
        match self {
            Cell::Text(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
            Cell::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    /// Whether a tombstone column says "deleted".
    fn is_set(&self) -> bool {
        match self {
            Cell::Null => false,
            Cell::Bool(b) => *b,
            Cell::Int(i) => *i != 0,
            Cell::Text(t) => !t.is_empty() && t != "0" && !t.eq_ignore_ascii_case("false"),
            _ => true,
        }
    }

    fn into_values(
        self,
        attr: &str,
        sep: Option<&str>,
        types: &AttributeTypes,
    ) -> std::result::Result<Vec<Value>, String> {
        let text =
            |t: &str| -> std::result::Result<Value, String> {
                match types.hint(attr) {
                    TypeHint::String | TypeHint::BinaryFile => Ok(Value::String(t.to_owned())),
                    _ => types.from_text(attr, t, &|_| {
                        Err("file values are not read here".to_owned())
                    }),
                }
            };
        Ok(match self {
            Cell::Null => vec![],
            Cell::Text(t) => match sep {
                Some(sep) => t
                    .split(sep)
                    .filter(|p| !p.is_empty())
                    .map(text)
                    .collect::<std::result::Result<_, _>>()?,
                None if t.is_empty() => vec![],
                None => vec![text(&t)?],
            },
            Cell::Int(i) => vec![Value::Integer(i)],
            Cell::Bool(b) => vec![Value::Boolean(b)],
            Cell::Timestamp(t) => vec![Value::Timestamp(t)],
            Cell::Bytes(b) => vec![Value::Binary(idsync_model::Blob::from_bytes(b))],
            Cell::Texts(v) => v
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| text(p))
                .collect::<std::result::Result<_, _>>()?,
            Cell::Ints(v) => v.into_iter().map(Value::Integer).collect(),
        })
    }
}

//! Connectors: idsync's adapters to connected systems, each behind the same small traits.
//!
//! A connector reads objects from its system and hands them to an [`ImportSink`] one at a time
//! (it never collects a whole estate), and applies batches of exports. It knows its protocol or
//! file format and nothing else: connectors never depend on the store, the engine or each other,
//! and protocol types (LDIF records, CSV rows) never leave their module.

mod attr_types;
pub mod crash;
pub mod csv;
mod file_table;
pub mod ldif;
mod secret;

pub use attr_types::{generalized_time, parse_timestamp, value_text, AttributeTypes, TypeHint};
pub use secret::{resolve_secret, Secret};

use idsync_model::{
    Anchor, AttributeDelta, AttributeName, Attributes, Blob, ConnectorId, ContentHash, CsEntry,
    CsId, Dn, IdentifierSyntax, ObjectTypeName,
};
use std::path::{Path, PathBuf};

/// Errors that stop a step. A bad object is not one of them unless the format makes the rest of
/// the input unreadable (a malformed file stops the import, so nothing is staged half-way).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Parse {
        file: String,
        line: usize,
        message: String,
    },
    #[error("connector `{connector}`: {message}")]
    Config { connector: String, message: String },
    /// A setting of the connector's own is unknown or has a value of the wrong kind; `key` is
    /// its dotted path in the connector's table (`delta_pth`, `attribute_types.jpegPhoto`), so
    /// the loader can point at its line.
    #[error("connector `{connector}`: {message}")]
    Setting {
        connector: String,
        key: String,
        message: String,
    },
    /// The engine's sink refused an object (e.g. the store failed); the import stops.
    #[error("{0}")]
    Sink(String),
    /// The connected system failed or went away (a connection refused or dropped mid-read).
    #[error("connector `{connector}`: {message}")]
    Remote { connector: String, message: String },
    /// A value read could not be taken (a NULL key, a column of an unexpected type), named by
    /// its place (row and column); the import stops so nothing is staged half-way.
    #[error("connector `{connector}`: {place}: {message}")]
    Data {
        connector: String,
        place: String,
        message: String,
    },
    #[error("connector `{connector}` cannot {operation}")]
    Unsupported {
        connector: String,
        operation: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// One change read by a delta import.
#[derive(Debug, Clone)]
pub enum ImportChange {
    /// The whole object, new or changed (syncrepl and LDIF `add` deliver it whole).
    Upsert(CsEntry),
    /// Some attributes of an object, named by anchor or by identifier.
    Modify {
        anchor: Option<Anchor>,
        dn: Dn,
        changes: Vec<AttributeDelta>,
    },
    /// The object is gone.
    Delete { anchor: Option<Anchor>, dn: Dn },
    /// The object has a new identifier (same anchor).
    Rename {
        anchor: Option<Anchor>,
        dn: Dn,
        new_dn: Dn,
    },
}

/// Where imported objects go. The engine implements it; connectors only call it.
pub trait ImportSink {
    /// One object read by a full import.
    fn entry(&mut self, entry: CsEntry) -> std::result::Result<(), String>;
    /// Whether the connector space held objects when this import began. When it did not,
    /// every object read is new: a connector that could wait to convert until it knows an
    /// object changed ([`Self::unchanged_wire`]) converts everything at once.
    fn knows_objects(&self) -> bool {
        true
    }
    /// Whether the object with this anchor is in the connector space exactly as the connector
    /// read it this time, by its [`idsync_model::wire_digest`]: then it is counted unchanged
    /// and seen, and the connector does not convert or deliver it. `false`: deliver it with
    /// [`Self::entry_read`].
    fn unchanged_wire(
        &mut self,
        _anchor: &idsync_model::Anchor,
        _wire: [u8; 32],
    ) -> std::result::Result<bool, String> {
        Ok(false)
    }
    /// [`Self::entry`] with what a connector that reads on a thread of its own computed there:
    /// the entry's [`idsync_model::entry_digest`] (with a wire digest it need not: the engine
    /// computes it when it needs it), and its wire digest (`None` when the next import must
    /// convert it again, because its conversion reported something), which the next import's
    /// [`Self::unchanged_wire`] compares.
    fn entry_read(
        &mut self,
        entry: CsEntry,
        _digest: Option<[u8; 32]>,
        _wire: Option<[u8; 32]>,
    ) -> std::result::Result<(), String> {
        self.entry(entry)
    }
    /// One change read by a delta import.
    fn change(&mut self, change: ImportChange) -> std::result::Result<(), String>;
    /// An object that could not be read (bad value), named by its place; the import goes on.
    fn object_error(&mut self, place: String, message: String);
    /// An object read and deliberately not delivered (a computer account under the Active
    /// Directory profile), counted under the reason so nothing is skipped silently, and kept by
    /// its identifier so `idsync show` can say why it was not taken.
    fn filtered(&mut self, _dn: &Dn, _reason: &str) {}
    /// The length of content idsync already holds under this hash, if it does. A connector whose
    /// system reports content hashes (the profile store's photo hash) asks before downloading:
    /// a known photo becomes a [`idsync_model::Blob`] without its bytes.
    fn known_blob(&mut self, _hash: &idsync_model::ContentHash) -> Option<u64> {
        None
    }
}

/// What a delta import found.
#[derive(Debug, Clone)]
pub struct DeltaOutcome {
    /// The watermark to store once the changes are staged.
    pub watermark: Option<String>,
    /// How the connector found the changes, for the run's statistics.
    pub method: String,
    /// The connector delivered its whole content (with `entry`), not changes: the engine treats
    /// it as a full import, so objects not delivered are deletes.
    pub full: bool,
}

/// One object to export.
#[derive(Debug, Clone)]
pub struct ExportItem {
    pub cs_id: CsId,
    pub anchor: Option<Anchor>,
    pub dn: Dn,
    pub object_type: ObjectTypeName,
    pub op: ExportOp,
}

#[derive(Debug, Clone)]
pub enum ExportOp {
    /// Create the object with these attributes (binary values carry their bytes).
    Add {
        object_classes: Vec<String>,
        attributes: Attributes,
    },
    /// Change attributes, value by value; optionally rename first.
    Update {
        new_dn: Option<Dn>,
        changes: Vec<AttributeDelta>,
    },
    Delete,
}

/// What happened to one exported object.
#[derive(Debug, Clone)]
pub enum ExportResult {
    /// Applied; the anchor the system gave a created object, when it gives one at once.
    Applied { anchor: Option<Anchor> },
    /// Refused; the system's message.
    Failed(String),
}

/// A value a connector wrote in place of the one an export gave it (a photo fitted under the
/// system's size limit). The engine remembers which value stands for which, so the confirming
/// import finds the export applied and later syncs do not export the same desired value again.
#[derive(Debug, Clone)]
pub struct WrittenValue {
    pub cs_id: CsId,
    pub attribute: AttributeName,
    /// The content hash of the value the export asked for.
    pub desired: ContentHash,
    /// What was written instead (its hash and length; the bytes come back with the next import).
    pub written: Blob,
}

/// Which steps a connector can run.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    pub full_import: bool,
    pub delta_import: bool,
    pub export: bool,
    /// Whether a delta import shows what this connector exported (so it can confirm exports).
    pub delta_sees_own_exports: bool,
    /// How the system spells identifiers, which decides how an identifier template escapes
    /// the values put into it.
    pub identifier: IdentifierSyntax,
}

/// A connector. Import and export are separate calls so the engine controls batching.
pub trait Connector {
    fn id(&self) -> &ConnectorId;
    fn capabilities(&self) -> Capabilities;
    /// Reads every object in the connected system.
    fn full_import(&mut self, sink: &mut dyn ImportSink) -> Result<()>;
    /// Reads changes since the watermark.
    fn delta_import(
        &mut self,
        watermark: Option<&str>,
        sink: &mut dyn ImportSink,
    ) -> Result<DeltaOutcome>;
    /// Applies one batch; one result per item, in order. An item's failure does not stop the
    /// others; an `Err` means the system could not be reached at all.
    fn export(&mut self, batch: &[ExportItem]) -> Result<Vec<ExportResult>>;
    /// Starts sending a batch whose results [`Connector::export_finish`] takes, so the system
    /// works on it while the engine records the batch before. The engine starts a batch only
    /// after taking the results of the one started before it, and finishes each with the same
    /// items. By default nothing is sent here and `export_finish` is `export`.
    fn export_start(&mut self, batch: &[ExportItem]) -> Result<()> {
        let _ = batch;
        Ok(())
    }
    /// The results of the batch `export_start` started (with the same items).
    fn export_finish(&mut self, batch: &[ExportItem]) -> Result<Vec<ExportResult>> {
        self.export(batch)
    }
    /// The watermark that makes the next delta import start after what a full import just read.
    fn watermark_after_full_import(&mut self) -> Result<Option<String>> {
        Ok(None)
    }
    /// Makes the exported batches durable in the connected system (file connectors write their
    /// file here). Called once after the last batch of an export step.
    fn finish_export(&mut self) -> Result<()> {
        Ok(())
    }
    /// Whether the connected system reports that a reference to an object it deleted is gone
    /// (a group's member value, a manager). Samba's DirSync does not: when a member user is
    /// deleted, the group's link removal never shows. Such a connector answers `false`, and
    /// after a delta import that deleted objects the engine removes the references to them from
    /// the rest of the connector space itself, as imported changes.
    fn reports_reference_removals(&self) -> bool {
        true
    }
    /// The values the last `export` call wrote in place of the ones it was given, taken (the
    /// connector forgets them). Called by the engine after each batch.
    fn take_written_values(&mut self) -> Vec<WrittenValue> {
        Vec::new()
    }
}

/// Opens a connector of a configured type. `base_dir` resolves relative paths (the
/// configuration file's directory).
pub fn open(
    name: &ConnectorId,
    kind: &str,
    settings: &toml::Table,
    base_dir: &Path,
) -> Result<Box<dyn Connector>> {
    match kind {
        "ldif" => Ok(Box::new(ldif::LdifConnector::new(
            name.clone(),
            settings,
            base_dir,
        )?)),
        "csv" => Ok(Box::new(csv::CsvConnector::new(
            name.clone(),
            settings,
            base_dir,
        )?)),
        other => Err(Error::Config {
            connector: name.to_string(),
            message: format!("unknown connector type `{other}`"),
        }),
    }
}

/// Reads a connector's settings into its settings struct; an unknown or mistyped setting is a
/// configuration error naming the connector and the setting's key.
pub fn settings<T: serde::de::DeserializeOwned>(
    connector: &ConnectorId,
    settings: &toml::Table,
) -> Result<T> {
    // Through TOML text rather than the table itself: the text's parser reports where in it the
    // error is, which names the key at fault.
    let text = toml::to_string(settings).map_err(|e| Error::Config {
        connector: connector.to_string(),
        message: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e: toml::de::Error| {
        let message = e.message().to_owned();
        match e.span().and_then(|s| key_at(&text, s.start)) {
            Some(key) => Error::Setting {
                connector: connector.to_string(),
                key,
                message,
            },
            None => Error::Config {
                connector: connector.to_string(),
                message,
            },
        }
    })
}

/// The dotted path of the key on the line of `offset` in TOML text written by `toml::to_string`
/// (one `key = value` a line, tables as `[a.b]` headers).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |n| n + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let header = |l: &str| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(|c| c == '[' || c == ']').to_owned())
    };
    if let Some(h) = header(line) {
        return Some(unquote(&h));
    }
    let key = unquote(line.split_once('=')?.0.trim());
    let section = text[..start].lines().rev().find_map(header);
    Some(match section {
        Some(s) => format!("{}.{key}", unquote(&s)),
        None => key,
    })
}

fn unquote(key: &str) -> String {
    key.split('.')
        .map(|p| p.trim().trim_matches('"'))
        .collect::<Vec<_>>()
        .join(".")
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

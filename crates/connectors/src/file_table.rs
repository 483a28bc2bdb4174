//! Export to a file that holds the connected system's current content (an LDIF content file, a
//! CSV table), shared by the file connectors.
//!
//! Exported objects are staged and the file is rewritten once, at the end of the export step, to
//! a temporary file that then replaces the original: a crash leaves either the old file or the
//! new one, never half of each. Adds are streamed to the new file as they come; only updates and
//! deletes are held in memory until the old file is copied across. Re-adding an object that is
//! already there (the same anchor, or the same identifier) replaces it, so an export repeated after
//! a crash (applied to the file, not yet committed in the store) does not duplicate it; updates and
//! deletes are value-level and idempotent too, so repeating them changes nothing.

use crate::{io_err, ExportItem, ExportOp, ExportResult, Result};
use idsync_model::{apply_delta, Anchor, AttributeDelta, CsEntry, Dn};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A file format's record reader and writer.
pub(crate) trait RecordFormat {
    /// Streams every record of an existing file.
    fn read_file(&self, path: &Path, f: &mut dyn FnMut(CsEntry) -> Result<()>) -> Result<()>;
    /// Opens a writer over a new file.
    fn create(&self, path: &Path) -> Result<Box<dyn RecordWriter>>;
}

pub(crate) trait RecordWriter {
    fn write(&mut self, entry: &CsEntry) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<()>;
}

enum Pending {
    Update {
        new_dn: Option<Dn>,
        changes: Vec<AttributeDelta>,
    },
    Delete,
}

pub(crate) struct StagedExport {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<Box<dyn RecordWriter>>,
    added: HashSet<String>,
    pending: HashMap<String, Vec<Pending>>,
}

fn key_of(anchor: Option<&Anchor>, dn: &Dn) -> String {
    match anchor {
        Some(a) => format!("a:{a}"),
        None => format!("d:{}", dn.normalized()),
    }
}

impl StagedExport {
    pub fn new(path: PathBuf) -> Self {
        let mut tmp = path.clone().into_os_string();
        tmp.push(".idsync-tmp");
        Self {
            path,
            tmp: PathBuf::from(tmp),
            writer: None,
            added: HashSet::new(),
            pending: HashMap::new(),
        }
    }

    /// Stages one batch. `make_entry` turns an add into the record to write, giving it an anchor
    /// when the export did not set one (as a directory assigns entryUUID).
    pub fn stage(
        &mut self,
        format: &dyn RecordFormat,
        batch: &[ExportItem],
        make_entry: &dyn Fn(&ExportItem) -> std::result::Result<CsEntry, String>,
    ) -> Result<Vec<ExportResult>> {
        if self.writer.is_none() {
            self.writer = Some(format.create(&self.tmp)?);
        }
        let mut out = Vec::with_capacity(batch.len());
        for item in batch {
            match &item.op {
                ExportOp::Add { .. } => match make_entry(item) {
                    Ok(entry) => {
                        if let Some(w) = self.writer.as_mut() {
                            w.write(&entry)?;
                        }
                        self.added.insert(key_of(Some(&entry.anchor), &entry.dn));
                        self.added.insert(key_of(None, &entry.dn));
                        out.push(ExportResult::Applied {
                            anchor: Some(entry.anchor),
                        });
                    }
                    Err(m) => out.push(ExportResult::Failed(m)),
                },
                ExportOp::Update { new_dn, changes } => {
                    self.pending
                        .entry(key_of(item.anchor.as_ref(), &item.dn))
                        .or_default()
                        .push(Pending::Update {
                            new_dn: new_dn.clone(),
                            changes: changes.clone(),
                        });
                    out.push(ExportResult::Applied { anchor: None });
                }
                ExportOp::Delete => {
                    self.pending
                        .entry(key_of(item.anchor.as_ref(), &item.dn))
                        .or_default()
                        .push(Pending::Delete);
                    out.push(ExportResult::Applied { anchor: None });
                }
            }
        }
        Ok(out)
    }

    /// Copies the old file across with the staged changes applied, then replaces it.
    pub fn finish(&mut self, format: &dyn RecordFormat) -> Result<()> {
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        let added = std::mem::take(&mut self.added);
        let mut pending = std::mem::take(&mut self.pending);
        if self.path.exists() {
            format.read_file(&self.path, &mut |mut entry| {
                if added.contains(&key_of(Some(&entry.anchor), &entry.dn))
                    || added.contains(&key_of(None, &entry.dn))
                {
                    return Ok(());
                }
                let ops = pending
                    .remove(&key_of(Some(&entry.anchor), &entry.dn))
                    .or_else(|| pending.remove(&key_of(None, &entry.dn)));
                for op in ops.unwrap_or_default() {
                    match op {
                        Pending::Delete => return Ok(()),
                        Pending::Update { new_dn, changes } => {
                            if let Some(d) = new_dn {
                                entry.dn = d;
                            }
                            apply_delta(&mut entry.attributes, &changes);
                        }
                    }
                }
                writer.write(&entry)
            })?;
        }
        writer.finish()?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::crash_point!("file-export:{name}:before-replace");
        std::fs::rename(&self.tmp, &self.path).map_err(io_err(&self.path))?;
        crate::crash_point!("file-export:{name}:after-replace");
        Ok(())
    }
}

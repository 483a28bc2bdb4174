//! "A store" as the configuration names it: a SQLite file or a PostgreSQL database. The binary
//! opens an [`AnyStore`] and hands it to the engine, which stays generic over [`crate::Store`];
//! each call is one `match` on the backend (no boxing, no dynamic dispatch in the steps' loops).

use crate::postgres::{PgLocation, PostgresStore};
use crate::sqlite::SqliteStore;
use crate::{
    Blobs, ConnectorSpaces, ConnectorState, CsCounts, CsFilter, CsLink, CsState, ExportRecord,
    ExportRetries, FilteredObject, Metaverse, ObjectError, Result, RunRecord, Runs, ServiceState,
    Transactions,
};
use idsync_model::{
    Anchor, ConnectorId, ContentHash, CsId, CsObject, Dn, MvId, MvObject, PendingImport, RunId,
};
use std::path::{Path, PathBuf};

/// Where a store is.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL database.
    Postgres(PgLocation),
}

impl StoreLocation {
    /// How messages name the store: the file's path, or the URL (which holds no password).
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::File(p) => p.display().to_string(),
            StoreLocation::Postgres(l) => l.url.clone(),
        }
    }

    /// The file of a SQLite store.
    pub fn file(&self) -> Option<&Path> {
        match self {
            StoreLocation::File(p) => Some(p),
            StoreLocation::Postgres(_) => None,
        }
    }
}

/// A store of either backend.
#[derive(Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl AnyStore {
    pub fn open(location: &StoreLocation) -> Result<AnyStore> {
        Ok(match location {
            StoreLocation::File(p) => AnyStore::Sqlite(SqliteStore::open(p)?),
            StoreLocation::Postgres(l) => AnyStore::Postgres(PostgresStore::open(l)?),
        })
    }
}

impl From<SqliteStore> for AnyStore {
    fn from(s: SqliteStore) -> Self {
        AnyStore::Sqlite(s)
    }
}

impl From<PostgresStore> for AnyStore {
    fn from(s: PostgresStore) -> Self {
        AnyStore::Postgres(s)
    }
}

/// Forwards a call to the backend (every method, the defaulted ones too: a backend's own
/// cheaper version must not be lost behind the enum).
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl Transactions for AnyStore {
    fn begin(&mut self) -> Result<()> {
        each!(self, s => s.begin())
    }
    fn commit(&mut self) -> Result<()> {
        each!(self, s => s.commit())
    }
    fn rollback(&mut self) -> Result<()> {
        each!(self, s => s.rollback())
    }
    fn settle(&mut self) -> Result<()> {
        each!(self, s => s.settle())
    }
}

impl ConnectorSpaces for AnyStore {
    fn cs_get(&mut self, id: &CsId) -> Result<Option<CsObject>> {
        each!(self, s => s.cs_get(id))
    }
    fn cs_by_anchor(&mut self, c: &ConnectorId, a: &Anchor) -> Result<Option<CsObject>> {
        each!(self, s => s.cs_by_anchor(c, a))
    }
    fn cs_by_dn(&mut self, c: &ConnectorId, dn: &Dn) -> Result<Option<CsObject>> {
        each!(self, s => s.cs_by_dn(c, dn))
    }
    fn cs_by_mv(&mut self, mv: &MvId) -> Result<Vec<CsObject>> {
        each!(self, s => s.cs_by_mv(mv))
    }
    fn cs_links(&mut self, mv: &MvId) -> Result<Vec<CsLink>> {
        each!(self, s => s.cs_links(mv))
    }
    fn cs_put(&mut self, o: &CsObject) -> Result<()> {
        each!(self, s => s.cs_put(o))
    }
    fn cs_put_digested(
        &mut self,
        o: &CsObject,
        digest: Option<[u8; 32]>,
        wire: Option<[u8; 32]>,
    ) -> Result<()> {
        each!(self, s => s.cs_put_digested(o, digest, wire))
    }
    fn cs_set_digest(
        &mut self,
        id: &CsId,
        digest: Option<[u8; 32]>,
        wire: Option<[u8; 32]>,
    ) -> Result<()> {
        each!(self, s => s.cs_set_digest(id, digest, wire))
    }
    fn cs_set_link(
        &mut self,
        id: &CsId,
        mv_id: Option<&MvId>,
        pending_import: Option<&PendingImport>,
    ) -> Result<()> {
        each!(self, s => s.cs_set_link(id, mv_id, pending_import))
    }
    fn cs_set_exported(&mut self, o: &CsObject) -> Result<()> {
        each!(self, s => s.cs_set_exported(o))
    }
    fn cs_mark_seen(&mut self, id: &CsId, run: RunId) -> Result<()> {
        each!(self, s => s.cs_mark_seen(id, run))
    }
    fn cs_state_by_anchor(&mut self, c: &ConnectorId, a: &Anchor) -> Result<Option<CsState>> {
        each!(self, s => s.cs_state_by_anchor(c, a))
    }
    fn cs_delete(&mut self, id: &CsId) -> Result<()> {
        each!(self, s => s.cs_delete(id))
    }
    fn cs_scan(
        &mut self,
        c: &ConnectorId,
        filter: CsFilter,
        after: Option<&CsId>,
        limit: usize,
    ) -> Result<Vec<CsObject>> {
        each!(self, s => s.cs_scan(c, filter, after, limit))
    }
    fn cs_scan_may_hold(
        &mut self,
        c: &ConnectorId,
        texts: &[String],
        after: Option<&CsId>,
        limit: usize,
    ) -> Result<(Option<CsId>, Vec<CsObject>)> {
        each!(self, s => s.cs_scan_may_hold(c, texts, after, limit))
    }
    fn cs_counts(&mut self, c: &ConnectorId) -> Result<CsCounts> {
        each!(self, s => s.cs_counts(c))
    }
    fn cs_object_count(&mut self, c: &ConnectorId) -> Result<u64> {
        each!(self, s => s.cs_object_count(c))
    }
    fn cs_pending_import_count(&mut self, c: &ConnectorId) -> Result<u64> {
        each!(self, s => s.cs_pending_import_count(c))
    }
    fn cs_pending_export_count(&mut self, c: &ConnectorId) -> Result<u64> {
        each!(self, s => s.cs_pending_export_count(c))
    }
    fn pending_ref_add(&mut self, c: &ConnectorId, target: &Dn, cs: &CsId) -> Result<()> {
        each!(self, s => s.pending_ref_add(c, target, cs))
    }
    fn pending_ref_take(&mut self, c: &ConnectorId, target: &Dn) -> Result<Vec<CsId>> {
        each!(self, s => s.pending_ref_take(c, target))
    }
    fn filtered_put(&mut self, f: &FilteredObject) -> Result<()> {
        each!(self, s => s.filtered_put(f))
    }
    fn filtered_remove(&mut self, c: &ConnectorId, anchor: Option<&Anchor>, dn: &Dn) -> Result<()> {
        each!(self, s => s.filtered_remove(c, anchor, dn))
    }
    fn filtered_find(&mut self, c: &ConnectorId, id: &str) -> Result<Option<FilteredObject>> {
        each!(self, s => s.filtered_find(c, id))
    }
    fn filtered_sweep(&mut self, c: &ConnectorId, run: RunId) -> Result<u64> {
        each!(self, s => s.filtered_sweep(c, run))
    }
}

impl Metaverse for AnyStore {
    fn mv_get(&mut self, id: &MvId) -> Result<Option<MvObject>> {
        each!(self, s => s.mv_get(id))
    }
    fn mv_put(&mut self, o: &MvObject, join_keys: &[(String, String)]) -> Result<()> {
        each!(self, s => s.mv_put(o, join_keys))
    }
    fn mv_delete(&mut self, id: &MvId) -> Result<()> {
        each!(self, s => s.mv_delete(id))
    }
    fn mv_find(&mut self, rule: &str, key: &str) -> Result<Vec<MvId>> {
        each!(self, s => s.mv_find(rule, key))
    }
    fn mv_scan(&mut self, after: Option<&MvId>, limit: usize) -> Result<Vec<MvObject>> {
        each!(self, s => s.mv_scan(after, limit))
    }
    fn mv_count(&mut self) -> Result<u64> {
        each!(self, s => s.mv_count())
    }
}

impl Blobs for AnyStore {
    fn blob_get(&mut self, hash: &ContentHash) -> Result<Option<Vec<u8>>> {
        each!(self, s => s.blob_get(hash))
    }
    fn blob_len(&mut self, hash: &ContentHash) -> Result<Option<u64>> {
        each!(self, s => s.blob_len(hash))
    }
}

impl ConnectorState for AnyStore {
    fn state_get(&mut self, c: &ConnectorId, key: &str) -> Result<Option<String>> {
        each!(self, s => s.state_get(c, key))
    }
    fn state_set(&mut self, c: &ConnectorId, key: &str, value: Option<&str>) -> Result<()> {
        each!(self, s => s.state_set(c, key, value))
    }
}

impl Runs for AnyStore {
    fn run_start(&mut self, step: &str, c: Option<&ConnectorId>) -> Result<RunId> {
        each!(self, s => s.run_start(step, c))
    }
    fn run_finish(
        &mut self,
        id: RunId,
        status: &str,
        stats: &serde_json::Value,
        message: Option<&str>,
        errors: &[ObjectError],
    ) -> Result<()> {
        each!(self, s => s.run_finish(id, status, stats, message, errors))
    }
    fn runs(&mut self, limit: usize) -> Result<Vec<RunRecord>> {
        each!(self, s => s.runs(limit))
    }
    fn run_errors(&mut self, id: RunId) -> Result<Vec<ObjectError>> {
        each!(self, s => s.run_errors(id))
    }
    fn audit_export(&mut self, r: &ExportRecord) -> Result<()> {
        each!(self, s => s.audit_export(r))
    }
    fn run_progress(&mut self, id: RunId, stats: &serde_json::Value) -> Result<()> {
        each!(self, s => s.run_progress(id, stats))
    }
    fn mark_interrupted(&mut self) -> Result<u64> {
        each!(self, s => s.mark_interrupted())
    }
    fn run_exports(
        &mut self,
        run: RunId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, ExportRecord)>> {
        each!(self, s => s.run_exports(run, after, limit))
    }
}

impl ServiceState for AnyStore {
    fn service_get(&mut self, key: &str) -> Result<Option<String>> {
        each!(self, s => s.service_get(key))
    }
    fn service_set(&mut self, key: &str, value: Option<&str>) -> Result<()> {
        each!(self, s => s.service_set(key, value))
    }
}

impl ExportRetries for AnyStore {
    fn retry_at(&mut self, cs: &CsId) -> Result<Option<i64>> {
        each!(self, s => s.retry_at(cs))
    }
    fn retry_set(&mut self, cs: &CsId, next: Option<i64>) -> Result<()> {
        each!(self, s => s.retry_set(cs, next))
    }
}

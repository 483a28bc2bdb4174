//! The store: connector spaces, the metaverse, binary values, connector state (watermarks, rule
//! versions) and run history.
//!
//! The engine sees only the traits here, split by aggregate and bundled in [`Store`]; SQLite is
//! the embedded backend ([`SqliteStore`]) and PostgreSQL the server one ([`PostgresStore`]),
//! with the same tables and row format; [`AnyStore`] is either, as the configuration names it,
//! so the engine never changes with the backend. The store has its own row format (JSON documents for holograms
//! and contributions, binary values kept once per content hash in their own table) and its own
//! schema version. A step runs inside one transaction: it commits whole or not at all.

mod any;
mod lock;
mod postgres;
mod progress;
mod sqlite;

pub use any::{AnyStore, StoreLocation};
pub use lock::RunnerLock;
pub use postgres::{url_has_password, PgLocation, PostgresStore};
pub use sqlite::SqliteStore;

use idsync_model::{Anchor, ConnectorId, ContentHash, CsId, CsObject, Dn, MvId, MvObject, RunId};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store {path}: {message}")]
    Open { path: String, message: String },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store (PostgreSQL): {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("store {store} is in use by another idsync run ({holder}); waited {waited} s. Run again when it finishes, or pass --wait SECONDS")]
    Busy {
        store: String,
        holder: String,
        waited: u64,
    },
    #[error("store: corrupt row for {what}: {message}")]
    Corrupt { what: String, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Which connector-space objects a scan returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsFilter {
    All,
    PendingImport,
    PendingExport,
    /// Objects with a pending export that is not an add (an update or a delete): what the
    /// accidental-delete protection counts, without reading every new object.
    PendingChange,
    /// Objects whose last export failed or was not confirmed (they keep the error), pending or
    /// not: what `idsync plan` lists besides the pending exports, and what an export checks
    /// when a change in the target may have resolved a failure.
    Failed,
    /// Objects a full import did not see: neither written by it (`seen_run`) nor marked seen.
    NotSeenIn(RunId),
}

/// Object counts of one connector space.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CsCounts {
    pub objects: u64,
    pub joined: u64,
    pub pending_import: u64,
    pub pending_export: u64,
    pub export_errors: u64,
}

/// What an import needs to know of an object to tell it unchanged without loading it.
#[derive(Debug, Clone, PartialEq)]
pub struct CsState {
    pub id: CsId,
    /// [`idsync_model::content_digest`] of its identifier, type, classes and hologram, as last
    /// written (`None` for a row written before digests).
    pub digest: Option<[u8; 32]>,
    /// The digest of the object as its connector last read it (see
    /// [`ConnectorSpaces::cs_put_digested`]); `None` when it was written otherwise.
    pub wire_digest: Option<[u8; 32]>,
    /// No exported change awaits confirmation.
    pub settled: bool,
    pub pending_import: Option<idsync_model::PendingImport>,
}

/// An object joined to a metaverse object, as little of it as a join or a reference needs.
#[derive(Debug, Clone, PartialEq)]
pub struct CsLink {
    pub id: CsId,
    pub connector: ConnectorId,
    pub dn: Dn,
    pub provisioned: bool,
}

/// An object an import read and did not take (Microsoft Identity Manager's *filtered
/// disconnector*): kept so `idsync show` can say why, with no attribute values. One per object
/// (keyed by connector and [`Dn::normalized`]); a full import replaces a connector's records,
/// a delta import updates them, both in the import's transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilteredObject {
    pub connector: ConnectorId,
    pub dn: Dn,
    /// Its anchor, when it had one.
    pub anchor: Option<Anchor>,
    /// Why it was not taken (`object class groupOfNames not in scope`, `missing anchor`).
    pub reason: String,
    /// The import that read it last.
    pub run: RunId,
    /// Seconds since the epoch.
    pub at: i64,
}

/// Transactions: a step begins one and commits or rolls it back.
pub trait Transactions {
    fn begin(&mut self) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self) -> Result<()>;
    /// Waits until the background work on what was committed is done (the SQLite store's
    /// checkpointer has copied the write-ahead log into the database file), so a measurement
    /// of the next step does not include the last one's. Steps never need it.
    fn settle(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The connector spaces.
pub trait ConnectorSpaces {
    fn cs_get(&mut self, id: &CsId) -> Result<Option<CsObject>>;
    fn cs_by_anchor(
        &mut self,
        connector: &ConnectorId,
        anchor: &Anchor,
    ) -> Result<Option<CsObject>>;
    fn cs_by_dn(&mut self, connector: &ConnectorId, dn: &Dn) -> Result<Option<CsObject>>;
    /// Every connector's objects joined to one metaverse object.
    fn cs_by_mv(&mut self, mv: &MvId) -> Result<Vec<CsObject>>;
    /// The same objects' links only, without loading them.
    fn cs_links(&mut self, mv: &MvId) -> Result<Vec<CsLink>>;
    /// Inserts or replaces an object; binary values' bytes go to the blob table once per hash.
    fn cs_put(&mut self, o: &CsObject) -> Result<()>;
    /// [`Self::cs_put`] of an object whose content digest (`idsync_model::content_digest` of its
    /// DN, type, classes and hologram) the caller already has, so it is not computed again;
    /// with the digest of the object as its connector read it (`wire`: the bytes the system sent
    /// and what turned them into the hologram), which tells the next import the object is
    /// unchanged before it is converted. With a wire digest the content digest may be left out
    /// (`None`: not kept); without either it is computed. Every other write forgets the wire
    /// digest.
    fn cs_put_digested(
        &mut self,
        o: &CsObject,
        _digest: Option<[u8; 32]>,
        _wire: Option<[u8; 32]>,
    ) -> Result<()> {
        self.cs_put(o)
    }
    /// Replaces only an object's stored content and wire digests (one an import found unchanged
    /// the slow way: written before digests, by an older digest, or read differently).
    fn cs_set_digest(
        &mut self,
        _id: &CsId,
        _digest: Option<[u8; 32]>,
        _wire: Option<[u8; 32]>,
    ) -> Result<()> {
        Ok(())
    }
    /// Sets only an object's metaverse link and pending import (what a sync changes on most
    /// objects), without rewriting the rest of it.
    fn cs_set_link(
        &mut self,
        id: &CsId,
        mv_id: Option<&MvId>,
        pending_import: Option<&idsync_model::PendingImport>,
    ) -> Result<()>;
    /// Writes only what a sent export changes on an object that was neither renamed nor given a
    /// new hologram: its anchor, pending export, awaited changes (binary values' bytes go to the
    /// blob table once per hash), export error and retry count. Another object of the connector
    /// holding the same anchor is replaced, as by [`ConnectorSpaces::cs_put`]. A backend without
    /// a cheaper way writes the whole object.
    fn cs_set_exported(&mut self, o: &CsObject) -> Result<()> {
        self.cs_put(o)
    }
    /// Marks an unchanged object as seen by a full import, without rewriting it. The mark lasts
    /// for that import's step ([`CsFilter::NotSeenIn`]); it is not the object's `seen_run`.
    fn cs_mark_seen(&mut self, id: &CsId, run: RunId) -> Result<()>;
    /// The object with this anchor, as little of it as tells an import whether it changed.
    fn cs_state_by_anchor(
        &mut self,
        connector: &ConnectorId,
        anchor: &Anchor,
    ) -> Result<Option<CsState>>;
    fn cs_delete(&mut self, id: &CsId) -> Result<()>;
    /// A page of objects in id order after `after`: scans stream, they never load a space.
    fn cs_scan(
        &mut self,
        connector: &ConnectorId,
        filter: CsFilter,
        after: Option<&CsId>,
        limit: usize,
    ) -> Result<Vec<CsObject>>;
    /// A page of the objects that may hold one of `texts` as a string value (compared
    /// case-insensitively) in their hologram, pending export or awaited changes, in id order
    /// after `after`, with the last id examined (`None` at the end). It may return objects that
    /// hold none of them (the caller checks), never leaves out one that holds one, and does not
    /// load the others: a uniqueness check of a few values does not read the whole space.
    fn cs_scan_may_hold(
        &mut self,
        connector: &ConnectorId,
        texts: &[String],
        after: Option<&CsId>,
        limit: usize,
    ) -> Result<(Option<CsId>, Vec<CsObject>)>;
    fn cs_counts(&mut self, connector: &ConnectorId) -> Result<CsCounts>;
    /// How many objects the connector's space holds (what [`Self::cs_counts`] counts first,
    /// without reading the objects where the store can).
    fn cs_object_count(&mut self, connector: &ConnectorId) -> Result<u64> {
        Ok(self.cs_counts(connector)?.objects)
    }
    /// How many objects of the connector's space have a pending import (as [`Self::cs_counts`]).
    fn cs_pending_import_count(&mut self, connector: &ConnectorId) -> Result<u64> {
        Ok(self.cs_counts(connector)?.pending_import)
    }
    /// How many objects of the connector's space have a pending export (as [`Self::cs_counts`]).
    fn cs_pending_export_count(&mut self, connector: &ConnectorId) -> Result<u64> {
        Ok(self.cs_counts(connector)?.pending_export)
    }
    /// Remembers that `cs` holds a reference to `target_dn` in `connector` that cannot be resolved
    /// yet.
    fn pending_ref_add(&mut self, connector: &ConnectorId, target_dn: &Dn, cs: &CsId)
        -> Result<()>;
    /// Takes the objects waiting for `target_dn` to arrive.
    fn pending_ref_take(&mut self, connector: &ConnectorId, target_dn: &Dn) -> Result<Vec<CsId>>;
    /// Records an object not taken, replacing the record of the same DN (by its normalised key).
    fn filtered_put(&mut self, f: &FilteredObject) -> Result<()>;
    /// Forgets the record of an object not taken, found by its DN or, when given, its anchor
    /// (the object was taken, or deleted in its system).
    fn filtered_remove(
        &mut self,
        connector: &ConnectorId,
        anchor: Option<&Anchor>,
        dn: &Dn,
    ) -> Result<()>;
    /// The record of an object not taken, by its DN (any RFC 4514 spelling) or its anchor.
    fn filtered_find(
        &mut self,
        connector: &ConnectorId,
        id: &str,
    ) -> Result<Option<FilteredObject>>;
    /// Forgets the connector's records not written by `run`: an import that read the whole
    /// content did not find those objects again (or took them).
    fn filtered_sweep(&mut self, connector: &ConnectorId, run: RunId) -> Result<u64>;
}

/// The metaverse.
pub trait Metaverse {
    fn mv_get(&mut self, id: &MvId) -> Result<Option<MvObject>>;
    /// Inserts or replaces an object and its join keys (rule id, normalised key).
    fn mv_put(&mut self, o: &MvObject, join_keys: &[(String, String)]) -> Result<()>;
    fn mv_delete(&mut self, id: &MvId) -> Result<()>;
    fn mv_find(&mut self, rule: &str, key: &str) -> Result<Vec<MvId>>;
    fn mv_scan(&mut self, after: Option<&MvId>, limit: usize) -> Result<Vec<MvObject>>;
    fn mv_count(&mut self) -> Result<u64>;
}

/// Binary values by content hash.
pub trait Blobs {
    fn blob_get(&mut self, hash: &ContentHash) -> Result<Option<Vec<u8>>>;
    /// The length of a stored blob, without reading it; `None` when the store does not hold it.
    fn blob_len(&mut self, hash: &ContentHash) -> Result<Option<u64>> {
        Ok(self.blob_get(hash)?.map(|d| d.len() as u64))
    }
}

/// Per-connector state: watermarks, the rule and scope versions last used.
pub trait ConnectorState {
    fn state_get(&mut self, connector: &ConnectorId, key: &str) -> Result<Option<String>>;
    fn state_set(&mut self, connector: &ConnectorId, key: &str, value: Option<&str>) -> Result<()>;
}

/// The service's own state (the schedule paused or not, each schedule's last due time and
/// failures in a row), kept in the store so a command (`idsync schedule pause`) and the service
/// see the same. Written outside step transactions; not part of [`Store`]: the engine never
/// reads it.
pub trait ServiceState {
    fn service_get(&mut self, key: &str) -> Result<Option<String>>;
    fn service_set(&mut self, key: &str, value: Option<&str>) -> Result<()>;
}

/// One run of a step, as history keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub step: String,
    pub connector: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub status: String,
    pub stats: serde_json::Value,
    pub message: Option<String>,
}

/// An error about one object, kept with its run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectError {
    pub object: String,
    pub message: String,
}

/// One export sent to a connected system, as the audit keeps it: what, to which system, when, by
/// which run and rule, and what the system answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRecord {
    pub run: RunId,
    pub connector: String,
    /// The object's identifier in the target (its DN, or its new DN after a rename).
    pub object: String,
    pub cs_id: String,
    /// `add`, `update`, `rename` or `delete`.
    pub op: String,
    /// The attributes sent (binary values as their content hash).
    pub changes: serde_json::Value,
    /// The rules that produced the change (provisioning, export flows, deprovisioning).
    pub rules: Vec<String>,
    /// Seconds since the epoch.
    pub at: i64,
    /// `applied`, or `failed: <the system's message>`.
    pub result: String,
}

/// Run history. Written outside step transactions so a failed step is still recorded.
pub trait Runs {
    fn run_start(&mut self, step: &str, connector: Option<&ConnectorId>) -> Result<RunId>;
    fn run_finish(
        &mut self,
        id: RunId,
        status: &str,
        stats: &serde_json::Value,
        message: Option<&str>,
        errors: &[ObjectError],
    ) -> Result<()>;
    fn runs(&mut self, limit: usize) -> Result<Vec<RunRecord>>;
    fn run_errors(&mut self, id: RunId) -> Result<Vec<ObjectError>>;
    /// Records one export sent. Written in the step's transaction: an export step that is
    /// rolled back (its changes not made durable in the target) leaves no audit row, and the run
    /// that sends the changes again records them.
    fn audit_export(&mut self, record: &ExportRecord) -> Result<()>;
    /// Records what the running step `id` has done so far (its statistics and notes, as
    /// `run_finish` would store them), outside the step's transaction: when the process dies
    /// mid-step, the step is recorded as interrupted with how long it ran and these counts,
    /// as of its last report, and a running step is shown with them. Called often (every
    /// thousand objects or so); a store keeps only the last.
    fn run_progress(&mut self, _id: RunId, _stats: &serde_json::Value) -> Result<()> {
        Ok(())
    }
    /// Marks runs still recorded as running as interrupted (their process died; their step was
    /// rolled back). Called by a process that holds the runner lock, so none is really running.
    fn mark_interrupted(&mut self) -> Result<u64>;
    /// The exports a run sent, in the order sent, a page after `after` (a position the previous
    /// page returned) at a time.
    fn run_exports(
        &mut self,
        run: RunId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, ExportRecord)>>;
}

/// When an object whose export failed may be tried again (its attempt count and last error are
/// on the object itself).
pub trait ExportRetries {
    /// Seconds since the epoch before which the object's export is not retried.
    fn retry_at(&mut self, cs: &CsId) -> Result<Option<i64>>;
    fn retry_set(&mut self, cs: &CsId, next_attempt: Option<i64>) -> Result<()>;
}

/// Everything the engine needs from storage.
pub trait Store:
    Transactions + ConnectorSpaces + Metaverse + Blobs + ConnectorState + Runs + ExportRetries
{
}
impl<
        T: Transactions + ConnectorSpaces + Metaverse + Blobs + ConnectorState + Runs + ExportRetries,
    > Store for T
{
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests;

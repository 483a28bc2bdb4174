//! The SQLite backend: one file, no server, the embedded default.

use crate::{
    now, Blobs, ConnectorSpaces, ConnectorState, CsCounts, CsFilter, CsLink, CsState, Error,
    ExportRecord, ExportRetries, FilteredObject, Metaverse, ObjectError, Result, RunRecord, Runs,
    ServiceState, Transactions,
};
use idsync_model::{
    content_digest, Anchor, AttributeChange, AttributeDelta, AttributeName, Attributes,
    ConnectorId, ContentHash, Contribution, CsId, CsObject, Dn, MvId, MvObject, ObjectTypeName,
    PendingExport, PendingImport, RunId, Value,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;

pub(crate) const SCHEMA_VERSION: &str = "1";
/// The page size of a new store file.
const PAGE_SIZE: i64 = 16384;
const INTEGRITY: &str = "the store file's integrity check";
/// Which [`Dn::normalized`] the `dn_norm` and `pending_ref.target` keys were made with. A store
/// whose keys were made another way has them made again when it is opened.
pub(crate) const DN_KEY: &str = "rfc4514-1";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cs_object(
    id TEXT PRIMARY KEY,
    connector TEXT NOT NULL,
    anchor TEXT,
    dn TEXT NOT NULL,
    dn_norm TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_classes TEXT NOT NULL,
    hologram TEXT NOT NULL,
    pending_import TEXT,
    pending_export TEXT,
    awaiting TEXT,
    awaiting_add INTEGER NOT NULL DEFAULT 0,
    export_error TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    mv_id TEXT,
    seen_run INTEGER,
    provisioned INTEGER NOT NULL DEFAULT 0,
    digest BLOB,
    wire_digest BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS cs_anchor ON cs_object(connector, anchor) WHERE anchor IS NOT NULL;
CREATE INDEX IF NOT EXISTS cs_dn ON cs_object(connector, dn_norm);
CREATE INDEX IF NOT EXISTS cs_mv ON cs_object(mv_id) WHERE mv_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS cs_scan ON cs_object(connector, id);
CREATE INDEX IF NOT EXISTS cs_pending_import ON cs_object(connector, id) WHERE pending_import IS NOT NULL;
CREATE INDEX IF NOT EXISTS cs_pending_export ON cs_object(connector, id) WHERE pending_export IS NOT NULL;
CREATE INDEX IF NOT EXISTS cs_export_error ON cs_object(connector, id) WHERE export_error IS NOT NULL;
CREATE TABLE IF NOT EXISTS mv_object(id TEXT PRIMARY KEY, object_type TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mv_join_key(rule TEXT NOT NULL, key TEXT NOT NULL, mv_id TEXT NOT NULL,
    PRIMARY KEY(rule, key, mv_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mv_join_key_mv ON mv_join_key(mv_id);
CREATE TABLE IF NOT EXISTS blob(hash TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS connector_state(connector TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY(connector, key));
CREATE TABLE IF NOT EXISTS pending_ref(connector TEXT NOT NULL, target TEXT NOT NULL, cs_id TEXT NOT NULL,
    PRIMARY KEY(connector, target, cs_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run(id INTEGER PRIMARY KEY AUTOINCREMENT, step TEXT NOT NULL, connector TEXT,
    started_at INTEGER NOT NULL, finished_at INTEGER, status TEXT NOT NULL, stats TEXT, message TEXT);
CREATE TABLE IF NOT EXISTS run_error(run_id INTEGER NOT NULL, object TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS run_error_run ON run_error(run_id);
CREATE TABLE IF NOT EXISTS export_audit(id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL,
    connector TEXT NOT NULL, object TEXT NOT NULL, cs_id TEXT NOT NULL, op TEXT NOT NULL, changes TEXT NOT NULL,
    rules TEXT NOT NULL, at INTEGER NOT NULL, result TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS export_audit_run ON export_audit(run_id, id);
CREATE TABLE IF NOT EXISTS export_retry(cs_id TEXT PRIMARY KEY, next_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cs_filtered(connector TEXT NOT NULL, dn_norm TEXT NOT NULL, dn TEXT NOT NULL,
    anchor TEXT, reason TEXT NOT NULL, run_id INTEGER NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY(connector, dn_norm)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cs_filtered_anchor ON cs_filtered(connector, anchor) WHERE anchor IS NOT NULL;
CREATE TABLE IF NOT EXISTS service_state(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"#;

pub struct SqliteStore {
    conn: Connection,
    /// The import whose unchanged objects `seen` holds.
    seen_run: Option<RunId>,
    /// The objects that import saw unchanged (a 64-bit hash of each id: 8 bytes an object, for
    /// the length of the connection). Marking them here rather than on their rows keeps an
    /// unchanged import from rewriting the space. Two ids with one hash would only keep an
    /// object that is gone until the next full import, never delete one that is there.
    seen: idsync_model::IdHashSet,
    /// Copies the write-ahead log into the database file after commits (file stores only).
    checkpointer: Option<Checkpointer>,
    /// Starts writing the log to disk while a long step is still filling it (file stores only).
    writeback: Option<Writeback>,
    /// Keeps the running step's progress beside the store, outside its transaction (file
    /// stores only).
    heartbeat: Option<crate::progress::Heartbeat>,
}

/// Starts the kernel writing the write-ahead log to disk while a long step (a first import, a
/// full sync) is still writing it, so the step's commit, which must wait until the log is on
/// disk (`synchronous = FULL`), finds most of it there already. The kernel would otherwise
/// hold every page of the log in memory until that wait: at the end of a first import of
/// 100,000 LDAP entries, about 150 MB written in one go.
///
/// SQLite writes the log when its page cache spills and at the commit; the store counts the
/// bytes it hands SQLite (rows and blobs), and each [`Writeback::EVERY`] asks the kernel to
/// start writing whatever of the log is not on disk yet (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`, which does not wait, and changes nothing SQLite relies on: the
/// commit's `fsync` still decides durability).
struct Writeback {
    log: std::path::PathBuf,
    pending: usize,
    /// How many times it asked (for the tests).
    started: u32,
}

/// Counts bytes handed to SQLite, for a file store's [`Writeback`].
fn wrote(writeback: &mut Option<Writeback>, bytes: usize) {
    if let Some(w) = writeback {
        w.wrote(bytes);
    }
}

impl Writeback {
    const EVERY: usize = 8 << 20;

    fn wrote(&mut self, bytes: usize) {
        self.pending += bytes;
        if self.pending >= Self::EVERY {
            self.pending = 0;
            self.start();
        }
    }

    fn start(&mut self) {
        self.started += 1;
        // The log is opened each time (a few microseconds): it comes and goes with the
        // connections, and a handle kept open could name a log that no longer exists.
        #[cfg(target_os = "linux")]
        if let Ok(f) = std::fs::File::open(&self.log) {
            use std::os::fd::AsRawFd;
            // SAFETY: the call only reads the descriptor, which `f` keeps open; its result is
            // a hint's, ignored.
            unsafe {
                libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
    }
}

/// A thread with a connection of its own that checkpoints the write-ahead log after each
/// commit, so a step does not wait for its pages to be copied into the database file (they are
/// durable in the log once the commit returns). It runs as an idle task (`SCHED_IDLE`): on a
/// busy machine the steps go first, and a commit checkpoints itself past 256 MB of log.
/// When the store is dropped the thread ends, and closing the last connection checkpoints what
/// is left.
struct Checkpointer {
    wake: std::sync::mpsc::SyncSender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Option<Checkpointer> {
        let conn = Connection::open(path).ok()?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).ok()?;
        let (wake, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".to_owned())
            .spawn(move || {
                // Linux schedules threads one by one: this makes only the checkpointer an idle
                // task (it runs when a core has nothing else to run), nice 19 where that is
                // refused.
                // SAFETY: both calls only change this thread's scheduling; a failure leaves it.
                #[cfg(target_os = "linux")]
                unsafe {
                    let idle = libc::sched_param { sched_priority: 0 };
                    if libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) != 0 {
                        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
                    }
                }
                while rx.recv().is_ok() {
                    // PASSIVE never blocks the steps: what it cannot copy now it copies next time.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .ok()?;
        Some(Checkpointer {
            wake,
            thread: Some(thread),
        })
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some(mut c) = self.checkpointer.take() {
            drop(c.wake);
            if let Some(t) = c.thread.take() {
                let _ = t.join();
            }
        }
    }
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serializing these plain data types cannot fail: they have string keys and no custom
    // serializers that error.
    serde_json::to_string(v).unwrap_or_default()
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

/// A metaverse row's document. Contributions are grouped by source (consecutive contributions
/// of one connector-space object at one time), so a source's connector, object and time are
/// written once rather than once per attribute: rows about half the size of the plain form,
/// which is still read (`v` absent) from stores written before.
#[derive(serde::Serialize)]
struct MvDocOut<'a> {
    v: u8,
    s: Vec<MvSourceOut<'a>>,
}

#[derive(serde::Serialize)]
struct MvSourceOut<'a> {
    c: &'a ConnectorId,
    i: &'a CsId,
    t: i64,
    a: Vec<(&'a AttributeName, &'a str, &'a [Value])>,
}

#[derive(serde::Deserialize)]
struct MvDocIn {
    v: u8,
    s: Vec<MvSourceIn>,
}

#[derive(serde::Deserialize)]
struct MvSourceIn {
    c: ConnectorId,
    i: CsId,
    t: i64,
    a: Vec<(AttributeName, String, Vec<Value>)>,
}

const MV_DOC_VERSION: u8 = 2;

pub(crate) fn mv_to_doc(o: &MvObject) -> String {
    let mut sources: Vec<MvSourceOut<'_>> = Vec::new();
    for c in &o.contributions {
        match sources.last_mut() {
            Some(s) if s.c == &c.connector && s.i == &c.cs_id && s.t == c.time => {
                s.a.push((&c.attribute, &c.rule, &c.values));
            }
            _ => sources.push(MvSourceOut {
                c: &c.connector,
                i: &c.cs_id,
                t: c.time,
                a: vec![(&c.attribute, &c.rule, &c.values)],
            }),
        }
    }
    to_json(&MvDocOut {
        v: MV_DOC_VERSION,
        s: sources,
    })
}

pub(crate) fn mv_from_doc(id: &str, object_type: &str, doc: &str) -> Result<MvObject> {
    let what = format!("metaverse object {id}");
    if !doc.starts_with("{\"v\":") {
        return from_json(&what, doc);
    }
    let d: MvDocIn = from_json(&what, doc)?;
    if d.v != MV_DOC_VERSION {
        return Err(corrupt(
            &what,
            format!(
                "document version {}, this idsync knows {MV_DOC_VERSION}",
                d.v
            ),
        ));
    }
    let mut contributions = Vec::new();
    for s in d.s {
        for (attribute, rule, values) in s.a {
            contributions.push(Contribution {
                attribute,
                connector: s.c.clone(),
                cs_id: s.i.clone(),
                rule,
                values,
                time: s.t,
            });
        }
    }
    Ok(MvObject {
        id: MvId::new(id),
        object_type: ObjectTypeName::new(object_type),
        contributions,
    })
}

/// Creates a new store file readable by its owner only (0600), whatever the umask: SQLite
/// gives its `-wal` and `-shm` files the mode of the database file. An existing file keeps
/// the mode its owner gave it.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) a store file. A file that is not an idsync store, or is
    /// damaged, is an error that says so; nothing is repaired silently.
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |message: String| Error::Open {
            path: path.display().to_string(),
            message,
        };
        create_private(path).map_err(|e| open_err(e.to_string()))?;
        let conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        let mut store = Self::init(conn).map_err(|e| match e {
            Error::Sqlite(s) => {
                open_err(format!("{s} (is this an idsync store, and is it intact?)"))
            }
            Error::Corrupt { what, message } if what == INTEGRITY => open_err(format!(
                "the store file is damaged, SQLite's integrity check says: {} (idsync does not repair it: restore the file from a backup, or start a new store)",
                message.split_whitespace().collect::<Vec<_>>().join(" ")
            )),
            other => other,
        })?;
        // Commits leave checkpoints to the checkpointer when it runs, unless the log has grown
        // past 256 MB (a machine too busy to give the checkpointer a turn): then the commit
        // checkpoints, as SQLite does by default at 4 MB.
        store.checkpointer = Checkpointer::start(path);
        let mut log = path.as_os_str().to_owned();
        log.push("-wal");
        store.writeback = Some(Writeback {
            log: log.into(),
            pending: 0,
            started: 0,
        });
        if store.checkpointer.is_some() {
            store
                .conn
                .pragma_update(None, "wal_autocheckpoint", 65536)?;
        }
        let mut progress = path.as_os_str().to_owned();
        progress.push(".progress");
        store.heartbeat = Some(crate::progress::Heartbeat::new(progress.into()));
        Ok(store)
    }

    /// A store in memory, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        // 16 KB pages for a new store (an existing one keeps its own: SQLite fixes the size when
        // the file is made). Rows of a connector space are about 700 bytes: a 4 KB page holds
        // five and splits every five inserts, leaving a sixth of it unused. With 16 KB the
        // first import of 100,000 LDAP entries spends 13% less CPU storing them, and full
        // syncs, SQL augmentation and LDIF imports are 7-10% faster (BENCHMARKS.md).
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // A 64 MB page cache: syncs look objects up by index one at a
        // time, and SQLite's 2 MB default sends most of them to the OS.
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let check: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(corrupt(INTEGRITY, check));
        }
        conn.execute_batch(SCHEMA)?;
        // Stores made before content digests, or before wire digests: add the column (a row
        // without either is compared the slow way once, and gets them when it is written).
        for column in ["digest", "wire_digest"] {
            let has: bool = conn.query_row(
                "SELECT count(*) FROM pragma_table_info('cs_object') WHERE name = ?1",
                [column],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE cs_object ADD COLUMN {column} BLOB"))?;
            }
        }
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match version.as_deref() {
            None => {
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION],
                )?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(corrupt(
                    "the store file",
                    format!("schema version {other}, this idsync knows {SCHEMA_VERSION}"),
                ))
            }
        }
        rekey_dns(&conn)?;
        Ok(Self {
            conn,
            seen_run: None,
            seen: Default::default(),
            checkpointer: None,
            writeback: None,
            heartbeat: None,
        })
    }

    fn put_blobs(&mut self, values: &[Value]) -> Result<()> {
        for v in values {
            if let Value::Binary(b) = v {
                if let Some(data) = &b.data {
                    let mut st = self
                        .conn
                        .prepare_cached("INSERT OR IGNORE INTO blob(hash, data) VALUES (?1, ?2)")?;
                    st.execute(params![b.hash.to_hex(), &data[..]])?;
                    wrote(&mut self.writeback, data.len());
                }
            }
        }
        Ok(())
    }

    fn put_attr_blobs(&mut self, attrs: &Attributes) -> Result<()> {
        for (_, values) in attrs.iter() {
            self.put_blobs(values)?;
        }
        Ok(())
    }

    fn put_delta_blobs(&mut self, deltas: &[AttributeDelta]) -> Result<()> {
        for d in deltas {
            match &d.change {
                AttributeChange::Replace(v) => self.put_blobs(v)?,
                AttributeChange::Update { add, remove } => {
                    self.put_blobs(add)?;
                    self.put_blobs(remove)?;
                }
            }
        }
        Ok(())
    }
}

/// Makes the DN keys again when they were made by an older normaliser (before DNs compared by
/// RFC 4514, `\2C` and `\,` gave two keys), all in one transaction.
fn rekey_dns(conn: &Connection) -> Result<()> {
    let made: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'dn_key'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if made.as_deref() == Some(DN_KEY) {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    {
        let mut read = tx.prepare("SELECT id, dn, dn_norm FROM cs_object")?;
        let mut write = tx.prepare("UPDATE cs_object SET dn_norm = ?2 WHERE id = ?1")?;
        let rows = read.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (id, dn, old) = row?;
            let new = Dn::new(dn).normalized();
            if new != old {
                write.execute(params![id, new])?;
            }
        }
        // A pending reference keeps only its key; the key of the old key is the new key.
        let mut read = tx.prepare("SELECT connector, target, cs_id FROM pending_ref")?;
        let rows = read.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let refs = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        for (connector, target, cs) in refs {
            let new = Dn::new(target.clone()).normalized();
            if new != target {
                tx.execute(
                    "DELETE FROM pending_ref WHERE connector = ?1 AND target = ?2 AND cs_id = ?3",
                    params![connector, target, cs],
                )?;
                tx.execute(
                    "INSERT OR IGNORE INTO pending_ref(connector, target, cs_id) VALUES (?1, ?2, ?3)",
                    params![connector, new, cs],
                )?;
            }
        }
        // Records of objects not taken keep their DN: the key is made again from it.
        let mut read = tx.prepare("SELECT connector, dn_norm, dn FROM cs_filtered")?;
        let rows = read.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let filtered = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        for (connector, old, dn) in filtered {
            let new = Dn::new(dn).normalized();
            if new != old {
                tx.execute(
                    "DELETE FROM cs_filtered WHERE connector = ?1 AND dn_norm = ?2",
                    params![connector, new],
                )?;
                tx.execute(
                    "UPDATE cs_filtered SET dn_norm = ?3 WHERE connector = ?1 AND dn_norm = ?2",
                    params![connector, old, new],
                )?;
            }
        }
    }
    tx.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('dn_key', ?1)",
        [DN_KEY],
    )?;
    tx.commit()?;
    Ok(())
}

/// The key of an id in [`SqliteStore`]'s seen marks.
pub(crate) fn seen_key(id: &str) -> u64 {
    idsync_model::id_hash(id)
}

impl SqliteStore {
    /// The answer of a `SELECT count(*)` over one connector's objects.
    fn count_of(&mut self, sql: &str, connector: &ConnectorId) -> Result<u64> {
        let mut st = self.conn.prepare_cached(sql)?;
        Ok(st.query_row([connector.as_str()], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Marks `id` as seen by import `run`. Runs only grow: a later run's first mark spends the
    /// earlier run's marks, an earlier run's marks (rows a sync rewrites as they were) are not
    /// kept.
    fn note_seen(&mut self, id: &CsId, run: RunId) {
        match self.seen_run {
            Some(r) if r == run => {}
            Some(r) if r.0 > run.0 => return,
            _ => {
                self.seen.clear();
                self.seen_run = Some(run);
            }
        }
        self.seen.insert(seen_key(id.as_str()));
    }

    /// The objects of a full import's connector with an anchor that the import neither wrote
    /// (`seen_run`) nor marked seen, in id order. The ids come from the (connector, id) index;
    /// only the rows of objects not marked are read.
    fn cs_scan_not_seen(
        &mut self,
        connector: &ConnectorId,
        run: RunId,
        after: Option<&CsId>,
        limit: usize,
    ) -> Result<Vec<CsObject>> {
        const IDS: i64 = 4096;
        let marked = self.seen_run == Some(run);
        // The row says for certain (the marks are hashes).
        let unseen = format!(
            "SELECT {CS_COLUMNS} FROM cs_object WHERE id = ?1 \
             AND (seen_run IS NULL OR seen_run <> ?2) AND anchor IS NOT NULL"
        );
        let mut out = Vec::new();
        let mut cursor = after.map_or(String::new(), |a| a.as_str().to_owned());
        loop {
            let ids: Vec<String> = {
                let mut st = self.conn.prepare_cached(
                    "SELECT id FROM cs_object INDEXED BY cs_scan WHERE connector = ?1 AND id > ?2 \
                     ORDER BY id LIMIT ?3",
                )?;
                let rows = st.query_map(params![connector.as_str(), cursor, IDS], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let Some(last) = ids.last() else {
                return Ok(out);
            };
            cursor = last.clone();
            for id in &ids {
                if marked && self.seen.contains(&seen_key(id)) {
                    continue;
                }
                out.extend(self.cs_query(&unseen, params![id, run.0])?);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            if (ids.len() as i64) < IDS {
                return Ok(out);
            }
        }
    }
}

pub(crate) const CS_COLUMNS: &str = "id, connector, anchor, dn, object_type, object_classes, hologram, pending_import, \
     pending_export, awaiting, awaiting_add, export_error, retry_count, mv_id, seen_run, provisioned";

fn cs_from_row(r: &Row<'_>) -> rusqlite::Result<Result<CsObject>> {
    let id: String = r.get(0)?;
    let what = format!("connector-space object {id}");
    let classes: String = r.get(5)?;
    let hologram: String = r.get(6)?;
    let pending_import: Option<String> = r.get(7)?;
    let pending_export: Option<String> = r.get(8)?;
    let awaiting: Option<String> = r.get(9)?;
    let build = || -> Result<CsObject> {
        Ok(CsObject {
            connector: ConnectorId::new(r.get::<_, String>(1)?),
            anchor: r.get::<_, Option<String>>(2)?.map(Anchor::new),
            dn: Dn::new(r.get::<_, String>(3)?),
            object_type: ObjectTypeName::new(r.get::<_, String>(4)?),
            object_classes: from_json(&what, &classes)?,
            hologram: from_json(&what, &hologram)?,
            pending_import: pending_import
                .as_deref()
                .map(|s| from_json(&what, s))
                .transpose()?,
            pending_export: pending_export
                .as_deref()
                .map(|s| from_json(&what, s))
                .transpose()?,
            awaiting: awaiting
                .as_deref()
                .map(|s| from_json(&what, s))
                .transpose()?
                .unwrap_or_default(),
            awaiting_add: r.get::<_, i64>(10)? != 0,
            export_error: r.get(11)?,
            retry_count: r.get::<_, i64>(12)? as u32,
            mv_id: r.get::<_, Option<String>>(13)?.map(MvId::new),
            seen_run: r.get::<_, Option<i64>>(14)?.map(RunId),
            provisioned: r.get::<_, i64>(15)? != 0,
            id: CsId::new(id.clone()),
        })
    };
    Ok(build())
}

impl Transactions for SqliteStore {
    fn begin(&mut self) -> Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }
    fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        if let Some(c) = &self.checkpointer {
            // One wake-up waiting is enough: it checkpoints everything committed by then.
            let _ = c.wake.try_send(());
        }
        Ok(())
    }
    fn rollback(&mut self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }
    fn settle(&mut self) -> Result<()> {
        // Checkpoints here what the checkpointer has not copied yet; busy (1) while it is
        // copying itself, so again until the whole log is in the file (or a minute passed:
        // a reader elsewhere may hold frames back).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let (busy, log, copied): (i64, i64, i64) =
                self.conn
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
            if busy == 0 && copied >= log {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(())
    }
}

impl SqliteStore {
    fn cs_query(&mut self, sql: &str, p: impl rusqlite::Params) -> Result<Vec<CsObject>> {
        let mut st = self.conn.prepare_cached(sql)?;
        let rows = st.query_map(p, cs_from_row)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }
}

impl ConnectorSpaces for SqliteStore {
    fn cs_get(&mut self, id: &CsId) -> Result<Option<CsObject>> {
        Ok(self
            .cs_query(
                &format!("SELECT {CS_COLUMNS} FROM cs_object WHERE id = ?1"),
                [id.as_str()],
            )?
            .pop())
    }

    fn cs_by_anchor(
        &mut self,
        connector: &ConnectorId,
        anchor: &Anchor,
    ) -> Result<Option<CsObject>> {
        Ok(self
            .cs_query(
                &format!("SELECT {CS_COLUMNS} FROM cs_object WHERE connector = ?1 AND anchor = ?2"),
                [connector.as_str(), anchor.as_str()],
            )?
            .pop())
    }

    fn cs_by_dn(&mut self, connector: &ConnectorId, dn: &Dn) -> Result<Option<CsObject>> {
        Ok(self
            .cs_query(
                &format!("SELECT {CS_COLUMNS} FROM cs_object WHERE connector = ?1 AND dn_norm = ?2 LIMIT 1"),
                [connector.as_str(), &dn.normalized()],
            )?
            .pop())
    }

    fn cs_by_mv(&mut self, mv: &MvId) -> Result<Vec<CsObject>> {
        self.cs_query(
            &format!("SELECT {CS_COLUMNS} FROM cs_object WHERE mv_id = ?1 ORDER BY connector, id"),
            [mv.as_str()],
        )
    }

    fn cs_links(&mut self, mv: &MvId) -> Result<Vec<CsLink>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, connector, dn, provisioned FROM cs_object WHERE mv_id = ?1 ORDER BY connector, id",
        )?;
        let rows = st.query_map([mv.as_str()], |r| {
            Ok(CsLink {
                id: CsId::new(r.get::<_, String>(0)?),
                connector: ConnectorId::new(r.get::<_, String>(1)?),
                dn: Dn::new(r.get::<_, String>(2)?),
                provisioned: r.get::<_, i64>(3)? != 0,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn cs_put(&mut self, o: &CsObject) -> Result<()> {
        let digest = content_digest(
            &o.dn,
            o.object_type.as_str(),
            &o.object_classes,
            &o.hologram,
        );
        self.cs_put_digested(o, Some(digest), None)
    }

    fn cs_put_digested(
        &mut self,
        o: &CsObject,
        digest: Option<[u8; 32]>,
        wire: Option<[u8; 32]>,
    ) -> Result<()> {
        let computed = || {
            content_digest(
                &o.dn,
                o.object_type.as_str(),
                &o.object_classes,
                &o.hologram,
            )
        };
        debug_assert!(digest.is_none_or(|d| d == computed()));
        let digest = match digest {
            None if wire.is_none() => Some(computed()),
            d => d,
        };
        if let Some(run) = o.seen_run {
            // Written by an import: seen by it, like the unchanged objects it marks.
            self.note_seen(&o.id, run);
        }
        self.put_attr_blobs(&o.hologram)?;
        self.put_delta_blobs(&o.awaiting)?;
        match &o.pending_export {
            Some(PendingExport::Add { attributes, .. }) => self.put_attr_blobs(attributes)?,
            Some(PendingExport::Update { changes, .. }) => self.put_delta_blobs(changes)?,
            _ => {}
        }
        if let Some(idsync_model::PendingImport::Update { changes, .. }) = &o.pending_import {
            self.put_delta_blobs(changes)?;
        }
        let hologram = to_json(&o.hologram);
        let bytes = hologram.len() + 4 * o.dn.as_str().len();
        let mut st = self.conn.prepare_cached(&format!(
            "INSERT OR REPLACE INTO cs_object({CS_COLUMNS}, dn_norm, digest, wire_digest) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        ))?;
        st.execute(params![
            o.id.as_str(),
            o.connector.as_str(),
            o.anchor.as_ref().map(Anchor::as_str),
            o.dn.as_str(),
            o.object_type.as_str(),
            to_json(&o.object_classes),
            hologram,
            o.pending_import.as_ref().map(to_json),
            o.pending_export.as_ref().map(to_json),
            (!o.awaiting.is_empty()).then(|| to_json(&o.awaiting)),
            o.awaiting_add as i64,
            o.export_error,
            o.retry_count as i64,
            o.mv_id.as_ref().map(MvId::as_str),
            o.seen_run.map(|r| r.0),
            o.provisioned as i64,
            o.dn.normalized(),
            digest.as_ref().map(|d| &d[..]),
            wire.as_ref().map(|w| &w[..]),
        ])?;
        // The row, and about as much again in the indexes (the id, anchor and DN, twice).
        wrote(&mut self.writeback, bytes);
        Ok(())
    }

    fn cs_set_digest(
        &mut self,
        id: &CsId,
        digest: Option<[u8; 32]>,
        wire: Option<[u8; 32]>,
    ) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE cs_object SET digest = ?2, wire_digest = ?3 WHERE id = ?1")?
            .execute(params![
                id.as_str(),
                digest.as_ref().map(|d| &d[..]),
                wire.as_ref().map(|w| &w[..])
            ])?;
        Ok(())
    }

    fn cs_set_link(
        &mut self,
        id: &CsId,
        mv_id: Option<&MvId>,
        pending_import: Option<&PendingImport>,
    ) -> Result<()> {
        let mut st = self
            .conn
            .prepare_cached("UPDATE cs_object SET mv_id = ?2, pending_import = ?3 WHERE id = ?1")?;
        st.execute(params![
            id.as_str(),
            mv_id.map(MvId::as_str),
            pending_import.map(to_json)
        ])?;
        Ok(())
    }

    fn cs_set_exported(&mut self, o: &CsObject) -> Result<()> {
        self.put_delta_blobs(&o.awaiting)?;
        if let Some(PendingExport::Add { attributes, .. }) = &o.pending_export {
            self.put_attr_blobs(attributes)?;
        } else if let Some(PendingExport::Update { changes, .. }) = &o.pending_export {
            self.put_delta_blobs(changes)?;
        }
        // An UPDATE maintains only the indexes on the columns it sets (anchor, pending export),
        // where INSERT OR REPLACE deleted and inserted the row's entry in all seven. OR REPLACE
        // keeps cs_put's answer to an anchor another object holds: that object goes.
        let mut st = self.conn.prepare_cached(
            "UPDATE OR REPLACE cs_object SET anchor = ?2, pending_export = ?3, awaiting = ?4, \
             awaiting_add = ?5, export_error = ?6, retry_count = ?7 WHERE id = ?1",
        )?;
        st.execute(params![
            o.id.as_str(),
            o.anchor.as_ref().map(Anchor::as_str),
            o.pending_export.as_ref().map(to_json),
            (!o.awaiting.is_empty()).then(|| to_json(&o.awaiting)),
            o.awaiting_add as i64,
            o.export_error,
            o.retry_count as i64,
        ])?;
        Ok(())
    }

    fn cs_mark_seen(&mut self, id: &CsId, run: RunId) -> Result<()> {
        self.note_seen(id, run);
        Ok(())
    }

    fn cs_state_by_anchor(
        &mut self,
        connector: &ConnectorId,
        anchor: &Anchor,
    ) -> Result<Option<CsState>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, digest, awaiting IS NULL AND awaiting_add = 0, pending_import, wire_digest \
             FROM cs_object WHERE connector = ?1 AND anchor = ?2",
        )?;
        let row = st
            .query_row([connector.as_str(), anchor.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<Vec<u8>>>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                ))
            })
            .optional()?;
        let Some((id, digest, settled, pending_import, wire)) = row else {
            return Ok(None);
        };
        let pending_import: Option<PendingImport> = pending_import
            .as_deref()
            .map(|s| from_json(&format!("connector-space object {id}"), s))
            .transpose()?;
        Ok(Some(CsState {
            id: CsId::new(id),
            digest: digest.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok()),
            wire_digest: wire.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok()),
            settled,
            pending_import,
        }))
    }

    fn cs_delete(&mut self, id: &CsId) -> Result<()> {
        let mut st = self
            .conn
            .prepare_cached("DELETE FROM cs_object WHERE id = ?1")?;
        st.execute([id.as_str()])?;
        self.conn
            .prepare_cached("DELETE FROM export_retry WHERE cs_id = ?1")?
            .execute([id.as_str()])?;
        Ok(())
    }

    fn cs_scan(
        &mut self,
        connector: &ConnectorId,
        filter: CsFilter,
        after: Option<&CsId>,
        limit: usize,
    ) -> Result<Vec<CsObject>> {
        let cond = match filter {
            CsFilter::All => "1",
            CsFilter::PendingImport => "pending_import IS NOT NULL",
            CsFilter::PendingExport => "pending_export IS NOT NULL",
            CsFilter::Failed => "export_error IS NOT NULL",
            // The stored form of a pending export starts with its kind (serde writes the tag
            // first), so an add is told by its first bytes without parsing it.
            CsFilter::PendingChange => {
                "pending_export IS NOT NULL AND substr(pending_export, 1, 13) <> '{\"kind\":\"add\"'"
            }
            CsFilter::NotSeenIn(run) => return self.cs_scan_not_seen(connector, run, after, limit),
        };
        let sql = format!(
            "SELECT {CS_COLUMNS} FROM cs_object WHERE connector = ?1 AND id > ?2 AND {cond} \
             ORDER BY id LIMIT ?3"
        );
        self.cs_query(
            &sql,
            params![
                connector.as_str(),
                after.map_or("", CsId::as_str),
                limit as i64
            ],
        )
    }

    fn cs_scan_may_hold(
        &mut self,
        connector: &ConnectorId,
        texts: &[String],
        after: Option<&CsId>,
        limit: usize,
    ) -> Result<(Option<CsId>, Vec<CsObject>)> {
        // A string value is stored JSON-escaped; lower-cased ASCII text holds the lower-cased
        // escaped value wherever the value is held in any case. Rows with other than ASCII text
        // are always loaded (Unicode case mapping can change lengths and bytes).
        let needles: Vec<String> = texts
            .iter()
            .map(|t| {
                let quoted = to_json(&t.to_lowercase());
                quoted[1..quoted.len() - 1].to_owned()
            })
            .collect();
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {CS_COLUMNS} FROM cs_object WHERE connector = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ))?;
        let mut rows = st.query(params![
            connector.as_str(),
            after.map_or("", CsId::as_str),
            limit as i64
        ])?;
        let mut last = None;
        let mut out = Vec::new();
        let mut lower = String::new();
        while let Some(r) = rows.next()? {
            last = Some(CsId::new(r.get::<_, String>(0)?));
            let mut candidate = false;
            for col in [6, 8, 9] {
                let Some(text) = r
                    .get_ref(col)?
                    .as_str_or_null()
                    .map_err(rusqlite::Error::from)?
                else {
                    continue;
                };
                if !text.is_ascii() {
                    candidate = true;
                    break;
                }
                lower.clear();
                lower.extend(text.bytes().map(|b| b.to_ascii_lowercase() as char));
                if needles.iter().any(|n| lower.contains(n.as_str())) {
                    candidate = true;
                    break;
                }
            }
            if candidate {
                out.push(cs_from_row(r)??);
            }
        }
        Ok((last, out))
    }

    fn cs_counts(&mut self, connector: &ConnectorId) -> Result<CsCounts> {
        let mut st = self.conn.prepare_cached(
            "SELECT count(*), count(mv_id), count(pending_import), count(pending_export), count(export_error) \
             FROM cs_object WHERE connector = ?1",
        )?;
        Ok(st.query_row([connector.as_str()], |r| {
            Ok(CsCounts {
                objects: r.get::<_, i64>(0)? as u64,
                joined: r.get::<_, i64>(1)? as u64,
                pending_import: r.get::<_, i64>(2)? as u64,
                pending_export: r.get::<_, i64>(3)? as u64,
                export_errors: r.get::<_, i64>(4)? as u64,
            })
        })?)
    }

    // The counts below come from indexes that hold exactly the objects counted: the rows are
    // not read.
    fn cs_object_count(&mut self, connector: &ConnectorId) -> Result<u64> {
        self.count_of(
            "SELECT count(*) FROM cs_object INDEXED BY cs_scan WHERE connector = ?1",
            connector,
        )
    }

    fn cs_pending_import_count(&mut self, connector: &ConnectorId) -> Result<u64> {
        self.count_of(
            "SELECT count(*) FROM cs_object INDEXED BY cs_pending_import \
             WHERE connector = ?1 AND pending_import IS NOT NULL",
            connector,
        )
    }

    fn cs_pending_export_count(&mut self, connector: &ConnectorId) -> Result<u64> {
        self.count_of(
            "SELECT count(*) FROM cs_object INDEXED BY cs_pending_export \
             WHERE connector = ?1 AND pending_export IS NOT NULL",
            connector,
        )
    }

    fn pending_ref_add(
        &mut self,
        connector: &ConnectorId,
        target_dn: &Dn,
        cs: &CsId,
    ) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO pending_ref(connector, target, cs_id) VALUES (?1, ?2, ?3)",
        )?;
        st.execute(params![
            connector.as_str(),
            target_dn.normalized(),
            cs.as_str()
        ])?;
        Ok(())
    }

    fn pending_ref_take(&mut self, connector: &ConnectorId, target_dn: &Dn) -> Result<Vec<CsId>> {
        let norm = target_dn.normalized();
        let ids = {
            let mut st = self.conn.prepare_cached(
                "SELECT cs_id FROM pending_ref WHERE connector = ?1 AND target = ?2",
            )?;
            let rows =
                st.query_map(params![connector.as_str(), norm], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()?
        };
        if !ids.is_empty() {
            let mut st = self
                .conn
                .prepare_cached("DELETE FROM pending_ref WHERE connector = ?1 AND target = ?2")?;
            st.execute(params![connector.as_str(), norm])?;
        }
        Ok(ids.into_iter().map(CsId::new).collect())
    }

    fn filtered_put(&mut self, f: &FilteredObject) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO cs_filtered(connector, dn_norm, dn, anchor, reason, run_id, at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        st.execute(params![
            f.connector.as_str(),
            f.dn.normalized(),
            f.dn.as_str(),
            f.anchor.as_ref().map(Anchor::as_str),
            f.reason,
            f.run.0,
            f.at
        ])?;
        Ok(())
    }

    fn filtered_remove(
        &mut self,
        connector: &ConnectorId,
        anchor: Option<&Anchor>,
        dn: &Dn,
    ) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM cs_filtered WHERE connector = ?1 AND dn_norm = ?2")?
            .execute(params![connector.as_str(), dn.normalized()])?;
        if let Some(a) = anchor.filter(|a| !a.as_str().is_empty()) {
            self.conn
                .prepare_cached("DELETE FROM cs_filtered WHERE connector = ?1 AND anchor = ?2")?
                .execute(params![connector.as_str(), a.as_str()])?;
        }
        Ok(())
    }

    fn filtered_find(
        &mut self,
        connector: &ConnectorId,
        id: &str,
    ) -> Result<Option<FilteredObject>> {
        const COLUMNS: &str = "connector, dn, anchor, reason, run_id, at";
        let by_dn = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM cs_filtered WHERE connector = ?1 AND dn_norm = ?2"
            ))?
            .query_row(
                params![connector.as_str(), Dn::new(id).normalized()],
                filtered_from_row,
            )
            .optional()?;
        if by_dn.is_some() {
            return Ok(by_dn);
        }
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM cs_filtered WHERE connector = ?1 AND anchor = ?2 LIMIT 1"
            ))?
            .query_row(params![connector.as_str(), id], filtered_from_row)
            .optional()?)
    }

    fn filtered_sweep(&mut self, connector: &ConnectorId, run: RunId) -> Result<u64> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM cs_filtered WHERE connector = ?1 AND run_id <> ?2")?
            .execute(params![connector.as_str(), run.0])?;
        Ok(n as u64)
    }
}

impl SqliteStore {
    /// The progress file's content, when there is one.
    fn progress(&self) -> Option<crate::progress::Progress> {
        crate::progress::Progress::read(self.heartbeat.as_ref()?.path())
    }
}

fn filtered_from_row(r: &Row<'_>) -> rusqlite::Result<FilteredObject> {
    Ok(FilteredObject {
        connector: ConnectorId::new(r.get::<_, String>(0)?),
        dn: Dn::new(r.get::<_, String>(1)?),
        anchor: r.get::<_, Option<String>>(2)?.map(Anchor::new),
        reason: r.get(3)?,
        run: RunId(r.get(4)?),
        at: r.get(5)?,
    })
}

impl Metaverse for SqliteStore {
    fn mv_get(&mut self, id: &MvId) -> Result<Option<MvObject>> {
        let row: Option<(String, String)> = {
            let mut st = self
                .conn
                .prepare_cached("SELECT object_type, doc FROM mv_object WHERE id = ?1")?;
            st.query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
        };
        row.map(|(t, d)| mv_from_doc(id.as_str(), &t, &d))
            .transpose()
    }

    fn mv_put(&mut self, o: &MvObject, join_keys: &[(String, String)]) -> Result<()> {
        for c in &o.contributions {
            self.put_blobs(&c.values)?;
        }
        {
            let mut st = self.conn.prepare_cached(
                "INSERT INTO mv_object(id, object_type, doc) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(id) DO UPDATE SET object_type = excluded.object_type, doc = excluded.doc",
            )?;
            let doc = mv_to_doc(o);
            st.execute(params![o.id.as_str(), o.object_type.as_str(), &doc])?;
            wrote(&mut self.writeback, doc.len());
        }
        // Join keys change rarely: compare before rewriting so a sync that changes a title does
        // not touch the key index.
        let existing: Vec<(String, String)> = {
            let mut st = self.conn.prepare_cached(
                "SELECT rule, key FROM mv_join_key WHERE mv_id = ?1 ORDER BY rule, key",
            )?;
            let rows = st.query_map([o.id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut wanted = join_keys.to_vec();
        wanted.sort();
        wanted.dedup();
        if existing != wanted {
            self.conn
                .prepare_cached("DELETE FROM mv_join_key WHERE mv_id = ?1")?
                .execute([o.id.as_str()])?;
            let mut st = self.conn.prepare_cached(
                "INSERT OR IGNORE INTO mv_join_key(rule, key, mv_id) VALUES (?1, ?2, ?3)",
            )?;
            for (rule, key) in &wanted {
                st.execute(params![rule, key, o.id.as_str()])?;
            }
        }
        Ok(())
    }

    fn mv_delete(&mut self, id: &MvId) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM mv_join_key WHERE mv_id = ?1")?
            .execute([id.as_str()])?;
        self.conn
            .prepare_cached("DELETE FROM mv_object WHERE id = ?1")?
            .execute([id.as_str()])?;
        Ok(())
    }

    fn mv_find(&mut self, rule: &str, key: &str) -> Result<Vec<MvId>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT mv_id FROM mv_join_key WHERE rule = ?1 AND key = ?2")?;
        let rows = st.query_map(params![rule, key], |r| r.get::<_, String>(0))?;
        Ok(rows
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .map(MvId::new)
            .collect())
    }

    fn mv_scan(&mut self, after: Option<&MvId>, limit: usize) -> Result<Vec<MvObject>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, object_type, doc FROM mv_object WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = st.query_map(params![after.map_or("", MvId::as_str), limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (id, object_type, doc) = r?;
            out.push(mv_from_doc(&id, &object_type, &doc)?);
        }
        Ok(out)
    }

    fn mv_count(&mut self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM mv_object", [], |r| r.get::<_, i64>(0))?
            as u64)
    }
}

impl ExportRetries for SqliteStore {
    fn retry_at(&mut self, cs: &CsId) -> Result<Option<i64>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT next_at FROM export_retry WHERE cs_id = ?1")?;
        Ok(st.query_row([cs.as_str()], |r| r.get(0)).optional()?)
    }

    fn retry_set(&mut self, cs: &CsId, next_attempt: Option<i64>) -> Result<()> {
        match next_attempt {
            Some(t) => self
                .conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO export_retry(cs_id, next_at) VALUES (?1, ?2)",
                )?
                .execute(params![cs.as_str(), t])?,
            None => self
                .conn
                .prepare_cached("DELETE FROM export_retry WHERE cs_id = ?1")?
                .execute([cs.as_str()])?,
        };
        Ok(())
    }
}

impl Blobs for SqliteStore {
    fn blob_get(&mut self, hash: &ContentHash) -> Result<Option<Vec<u8>>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT data FROM blob WHERE hash = ?1")?;
        Ok(st.query_row([hash.to_hex()], |r| r.get(0)).optional()?)
    }

    fn blob_len(&mut self, hash: &ContentHash) -> Result<Option<u64>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT length(data) FROM blob WHERE hash = ?1")?;
        Ok(st
            .query_row([hash.to_hex()], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|n| n as u64))
    }
}

impl ConnectorState for SqliteStore {
    fn state_get(&mut self, connector: &ConnectorId, key: &str) -> Result<Option<String>> {
        let mut st = self.conn.prepare_cached(
            "SELECT value FROM connector_state WHERE connector = ?1 AND key = ?2",
        )?;
        Ok(st
            .query_row(params![connector.as_str(), key], |r| r.get(0))
            .optional()?)
    }

    fn state_set(&mut self, connector: &ConnectorId, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => self
                .conn
                .prepare_cached("INSERT OR REPLACE INTO connector_state(connector, key, value) VALUES (?1, ?2, ?3)")?
                .execute(params![connector.as_str(), key, v])?,
            None => self
                .conn
                .prepare_cached("DELETE FROM connector_state WHERE connector = ?1 AND key = ?2")?
                .execute(params![connector.as_str(), key])?,
        };
        Ok(())
    }
}

impl ServiceState for SqliteStore {
    fn service_get(&mut self, key: &str) -> Result<Option<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT value FROM service_state WHERE key = ?1")?;
        Ok(st.query_row([key], |r| r.get(0)).optional()?)
    }

    fn service_set(&mut self, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => self
                .conn
                .prepare_cached("INSERT OR REPLACE INTO service_state(key, value) VALUES (?1, ?2)")?
                .execute(params![key, v])?,
            None => self
                .conn
                .prepare_cached("DELETE FROM service_state WHERE key = ?1")?
                .execute([key])?,
        };
        Ok(())
    }
}

impl Runs for SqliteStore {
    fn run_start(&mut self, step: &str, connector: Option<&ConnectorId>) -> Result<RunId> {
        self.conn.execute(
            "INSERT INTO run(step, connector, started_at, status) VALUES (?1, ?2, ?3, 'running')",
            params![step, connector.map(ConnectorId::as_str), now()],
        )?;
        let id = RunId(self.conn.last_insert_rowid());
        if let Some(h) = &mut self.heartbeat {
            h.start(id);
        }
        Ok(id)
    }

    fn run_progress(&mut self, id: RunId, stats: &serde_json::Value) -> Result<()> {
        if let Some(h) = &self.heartbeat {
            h.report(id, stats);
        }
        Ok(())
    }

    fn run_finish(
        &mut self,
        id: RunId,
        status: &str,
        stats: &serde_json::Value,
        message: Option<&str>,
        errors: &[ObjectError],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE run SET finished_at = ?2, status = ?3, stats = ?4, message = ?5 WHERE id = ?1",
            params![id.0, now(), status, stats.to_string(), message],
        )?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO run_error(run_id, object, message) VALUES (?1, ?2, ?3)",
            )?;
            for e in errors {
                st.execute(params![id.0, e.object, e.message])?;
            }
        }
        tx.commit()?;
        if let Some(h) = &self.heartbeat {
            h.finish(id);
        }
        Ok(())
    }

    fn runs(&mut self, limit: usize) -> Result<Vec<RunRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, step, connector, started_at, finished_at, status, stats, message \
             FROM run ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |r| {
            let stats: Option<String> = r.get(6)?;
            Ok(RunRecord {
                id: RunId(r.get(0)?),
                step: r.get(1)?,
                connector: r.get(2)?,
                started_at: r.get(3)?,
                finished_at: r.get(4)?,
                status: r.get(5)?,
                stats: stats
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or(serde_json::Value::Null),
                message: r.get(7)?,
            })
        })?;
        let mut runs = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        // A running step is shown with its last progress (as of when it was written).
        if runs.iter().any(|r| r.status == "running") {
            if let Some(p) = self.progress() {
                for r in runs.iter_mut().filter(|r| r.status == "running") {
                    if r.id.0 == p.run {
                        r.stats = p.as_stats();
                    }
                }
            }
        }
        Ok(runs)
    }

    fn mark_interrupted(&mut self) -> Result<u64> {
        let mut n = 0;
        // The step whose process wrote the last progress: how long it ran and what it had done
        // by then, kept as its statistics (marked as not committed).
        if let Some(p) = self.progress() {
            let since = chrono::DateTime::from_timestamp(p.at, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            let message = format!(
                "the process ended before the step finished (killed or crashed), after it had run {:.1} s; \
                 the step was rolled back, nothing it did was kept: its statistics are as of its last progress report, at {since}",
                p.seconds
            );
            n += self.conn.execute(
                "UPDATE run SET status = 'interrupted', finished_at = ?2, stats = ?3, message = ?4 \
                 WHERE id = ?1 AND status = 'running'",
                params![p.run, p.at, p.as_stats().to_string(), message],
            )?;
        }
        n += self.conn.execute(
            "UPDATE run SET status = 'interrupted', finished_at = ?1, \
             message = 'the process ended before the step finished (killed or crashed); the step was rolled back' \
             WHERE status = 'running'",
            [now()],
        )?;
        if let Some(h) = &self.heartbeat {
            let _ = std::fs::remove_file(h.path());
        }
        Ok(n as u64)
    }

    fn audit_export(&mut self, r: &ExportRecord) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO export_audit(run_id, connector, object, cs_id, op, changes, rules, at, result) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        st.execute(params![
            r.run.0,
            r.connector,
            r.object,
            r.cs_id,
            r.op,
            r.changes.to_string(),
            to_json(&r.rules),
            r.at,
            r.result
        ])?;
        Ok(())
    }

    fn run_exports(
        &mut self,
        run: RunId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, ExportRecord)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, connector, object, cs_id, op, changes, rules, at, result FROM export_audit \
             WHERE run_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = st.query_map(params![run.0, after, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, String>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, connector, object, cs_id, op, changes, rules, at, result) = row?;
            let what = format!("export audit row {id}");
            out.push((
                id,
                ExportRecord {
                    run,
                    connector,
                    object,
                    cs_id,
                    op,
                    changes: from_json(&what, &changes)?,
                    rules: from_json(&what, &rules)?,
                    at,
                    result,
                },
            ));
        }
        Ok(out)
    }

    fn run_errors(&mut self, id: RunId) -> Result<Vec<ObjectError>> {
        let mut st = self.conn.prepare_cached(
            "SELECT object, message FROM run_error WHERE run_id = ?1 ORDER BY rowid",
        )?;
        let rows = st.query_map([id.0], |r| {
            Ok(ObjectError {
                object: r.get(0)?,
                message: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

#[cfg(test)]
impl SqliteStore {
    pub(crate) fn raw(&mut self, sql: &str) {
        self.conn.execute_batch(sql).unwrap();
    }

    pub(crate) fn raw_count(&mut self, sql: &str) -> i64 {
        self.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idsync_model::Blob;

    fn cs(id: &str, anchor: &str, photo: &[u8]) -> CsObject {
        let mut hologram = Attributes::new();
        hologram.set("cn", vec!["Ann".into()]);
        hologram.set(
            "jpegPhoto",
            vec![Value::Binary(Blob::from_bytes(photo.to_vec()))],
        );
        CsObject {
            id: CsId::new(id),
            connector: ConnectorId::new("dir"),
            anchor: Some(Anchor::new(anchor)),
            dn: Dn::new("uid=Ann,ou=People"),
            object_type: ObjectTypeName::new("person"),
            object_classes: vec!["inetOrgPerson".into()],
            hologram,
            pending_import: Some(idsync_model::PendingImport::Add),
            pending_export: None,
            awaiting: vec![],
            awaiting_add: false,
            export_error: None,
            retry_count: 0,
            mv_id: None,
            seen_run: Some(RunId(1)),
            provisioned: false,
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_new_store_and_its_side_files_are_owner_only_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: umask only sets the process's file creation mask; 022 is the common default.
        unsafe { libc::umask(0o022) };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idsync.db");
        let _lock = crate::RunnerLock::acquire(&path, "test", std::time::Duration::ZERO).unwrap();
        let mut store = SqliteStore::open(&path).unwrap();
        store.begin().unwrap();
        store.cs_put(&cs("c1", "a1", b"photo")).unwrap();
        store.commit().unwrap();
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "idsync.db{suffix} is {mode:o}");
        }
    }

    #[test]
    fn pending_exports_read_back_whatever_the_field_order() {
        let mut attributes = Attributes::new();
        attributes.set("mail", vec![Value::from("a@example.test")]);
        let all = [
            PendingExport::Add {
                object_classes: vec!["User".to_owned()],
                attributes,
            },
            PendingExport::Update {
                new_dn: Some(Dn::new("uid=b")),
                changes: vec![AttributeDelta {
                    name: "title".into(),
                    change: AttributeChange::Replace(vec![Value::from("x")]),
                }],
            },
            PendingExport::Update {
                new_dn: None,
                changes: vec![],
            },
            PendingExport::Delete,
        ];
        for p in all {
            let text = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<PendingExport>(&text).unwrap(), p);
        }
        let tag_last: PendingExport =
            serde_json::from_str(r#"{"changes":[],"kind":"update"}"#).unwrap();
        assert_eq!(
            tag_last,
            PendingExport::Update {
                new_dn: None,
                changes: vec![]
            }
        );
        for bad in [
            r#"{"kind":"add","attributes":{}}"#,
            r#"{"kind":"update"}"#,
            r#"{"kind":"rename"}"#,
            r#"{"changes":[]}"#,
        ] {
            assert!(serde_json::from_str::<PendingExport>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_store_made_before_wire_digests_gets_the_column_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("idsync.db");
        let o = cs("c1", "a1", b"x");
        let mut s = SqliteStore::open(&p).unwrap();
        s.cs_put(&o).unwrap();
        drop(s);
        Connection::open(&p)
            .unwrap()
            .execute_batch("ALTER TABLE cs_object DROP COLUMN wire_digest")
            .unwrap();
        let mut s = SqliteStore::open(&p).unwrap();
        let state = s
            .cs_state_by_anchor(&o.connector, &Anchor::new("a1"))
            .unwrap()
            .unwrap();
        assert_eq!((state.wire_digest, state.digest.is_some()), (None, true));
        // The added column keeps what is written to it.
        s.cs_set_digest(&o.id, state.digest, Some([3; 32])).unwrap();
        let state = s
            .cs_state_by_anchor(&o.connector, &Anchor::new("a1"))
            .unwrap()
            .unwrap();
        assert_eq!(state.wire_digest, Some([3; 32]));
    }

    /// Issue 22 item 16: a running step's progress is kept beside the store, outside its
    /// transaction; a step that never finished is recorded as interrupted with it, and a step
    /// that finished leaves none.
    #[test]
    fn a_step_that_never_finished_is_marked_interrupted_with_its_last_progress() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("idsync.db");
        let progress = dir.path().join("idsync.db.progress");
        let mut s = SqliteStore::open(&p).unwrap();
        let done = s.run_start("full-import", None).unwrap();
        assert!(progress.exists());
        s.run_finish(done, "success", &serde_json::json!({}), None, &[])
            .unwrap();
        assert!(!progress.exists());
        let run = s.run_start("full-sync", None).unwrap();
        s.begin().unwrap();
        s.run_progress(run, &serde_json::json!({"stats": {"read": 7}}))
            .unwrap();
        // The process ends mid-step: its transaction is gone, its progress file is not.
        drop(s);
        assert!(progress.exists());
        let mut s = SqliteStore::open(&p).unwrap();
        let live = s.runs(1).unwrap().remove(0);
        assert_eq!(live.status, "running");
        assert_eq!(live.stats["committed"], false, "{:?}", live.stats);
        assert_eq!(s.mark_interrupted().unwrap(), 1);
        let r = s.runs(1).unwrap().remove(0);
        assert_eq!((r.id, r.status.as_str()), (run, "interrupted"));
        assert_eq!(r.finished_at, r.stats["as_of"].as_i64(), "{:?}", r.stats);
        assert!(r.stats["seconds"].as_f64().is_some(), "{:?}", r.stats);
        assert!(
            r.message
                .as_deref()
                .is_some_and(|m| m.contains("as of its last progress report")),
            "{r:?}"
        );
        assert!(!progress.exists());
    }

    #[test]
    fn a_long_step_starts_writing_the_log_before_it_commits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("idsync.db");
        let mut s = SqliteStore::open(&p).unwrap();
        s.begin().unwrap();
        // 40 objects with a 1 MB photo each: 40 MB, five times the writeback step.
        let objects: Vec<CsObject> = (0..40)
            .map(|i| cs(&format!("c{i}"), &format!("a{i}"), &vec![i as u8; 1 << 20]))
            .collect();
        for o in &objects {
            s.cs_put(o).unwrap();
        }
        assert_eq!(s.writeback.as_ref().unwrap().started, 5);
        s.commit().unwrap();
        drop(s);
        let mut s = SqliteStore::open(&p).unwrap();
        for o in &objects {
            assert_eq!(s.cs_get(&o.id).unwrap().as_ref(), Some(o));
        }
        // A store in memory has no log to write.
        assert!(SqliteStore::in_memory().unwrap().writeback.is_none());
    }

    #[test]
    fn a_new_store_has_large_pages_and_an_older_store_keeps_its_own() {
        let page_size = |p: &Path| -> i64 {
            Connection::open(p)
                .unwrap()
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.db");
        drop(SqliteStore::open(&new).unwrap());
        assert_eq!(page_size(&new), PAGE_SIZE);
        // A store made with SQLite's default pages, as before: it opens, reads and writes as
        // it is.
        let old = dir.path().join("old.db");
        Connection::open(&old)
            .unwrap()
            .execute_batch("PRAGMA page_size = 4096; CREATE TABLE t(x); DROP TABLE t;")
            .unwrap();
        let o = cs("c1", "a1", b"jpeg-bytes");
        let mut s = SqliteStore::open(&old).unwrap();
        s.cs_put(&o).unwrap();
        drop(s);
        assert_eq!(page_size(&old), 4096);
        let mut s = SqliteStore::open(&old).unwrap();
        assert_eq!(s.cs_get(&o.id).unwrap(), Some(o));
    }

    fn filled_store(p: &Path) {
        let mut s = SqliteStore::open(p).unwrap();
        s.begin().unwrap();
        for i in 0..400 {
            s.cs_put(&cs(
                &format!("c{i}"),
                &format!("a{i}"),
                format!("photo {i}").as_bytes(),
            ))
            .unwrap();
        }
        s.commit().unwrap();
    }

    fn refused(p: &Path) -> String {
        match SqliteStore::open(p) {
            Ok(_) => panic!("a damaged store was opened"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn commits_are_checkpointed_into_the_file_by_the_background_thread() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("idsync.db");
        let mut s = SqliteStore::open(&p).unwrap();
        let before = std::fs::metadata(&p).unwrap().len();
        s.begin().unwrap();
        for i in 0..400 {
            s.cs_put(&cs(&format!("c{i}"), &format!("a{i}"), &[i as u8; 3000]))
                .unwrap();
        }
        s.commit().unwrap();
        // The commit does not copy the log into the file itself (autocheckpoint is off); the
        // checkpointer does, while the store stays open.
        let mut grown = false;
        // It is an idle task: give it time on a busy machine.
        for _ in 0..1200 {
            if std::fs::metadata(&p).unwrap().len() > before + 1_000_000 {
                grown = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(grown, "the database file was not written within 60 s");
        // Another connection sees every object; dropping the store ends the thread.
        drop(s);
        let mut again = SqliteStore::open(&p).unwrap();
        assert_eq!(
            again.cs_object_count(&ConnectorId::new("dir")).unwrap(),
            400
        );
    }

    #[test]
    fn a_truncated_store_file_is_detected_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("idsync.db");
        filled_store(&p);
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len > 64 * 1024, "{len}");
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len / 2).unwrap();
        drop(f);
        let m = refused(&p);
        assert!(m.contains("idsync.db"), "{m}");
    }

    #[test]
    fn a_corrupted_store_file_is_detected_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("idsync.db");
        filled_store(&p);
        let mut bytes = std::fs::read(&p).unwrap();
        // Overwrite two whole pages in the middle of the file (rows, indexes) with garbage.
        let page = PAGE_SIZE as usize;
        let mid = bytes.len() / 2 / page * page;
        for (i, b) in bytes[mid..mid + 2 * page].iter_mut().enumerate() {
            *b = (i * 31 % 251) as u8;
        }
        std::fs::write(&p, &bytes).unwrap();
        let m = refused(&p);
        assert!(m.contains("idsync.db"), "{m}");
        // Nothing was repaired: the file is as damaged as it was.
        assert_eq!(std::fs::read(&p).unwrap(), bytes);
    }

    #[test]
    fn a_file_that_is_not_a_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.db");
        std::fs::write(
            &p,
            b"this is not a database file at all, just some text that is long enough",
        )
        .unwrap();
        let e = SqliteStore::open(&p).expect_err("must fail");
        assert!(e.to_string().contains("x.db"), "{e}");
    }
}

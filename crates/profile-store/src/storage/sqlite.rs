//! The SQLite backend: one database file (separate from the engine's store), WAL mode, one
//! writer connection and a few readers. Users and groups are rows holding their normalised JSON
//! document plus indexed columns (userName, externalId); SCIM filters become SQL over those
//! columns and `json_extract`/`json_each`, so a filtered search neither scans nor deserialises
//! every profile in Rust. Case-insensitive comparisons fold with [`crate::fold::fold`], the
//! SQL function `scim_fold` on every connection; `userName` is indexed by its folded key.

use super::*;
use crate::filter::{AttrPath, CompValue, Op};
use crate::fold::{fold, FOLD_VERSION};
use crate::schema::{AttrType, Attribute, Place, Schemas};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// 2: `name_key`, the folded userName, holds the uniqueness (version 1 had `name COLLATE
/// NOCASE`, which folds ASCII only). A version 1 database is upgraded when opened.
const SCHEMA_VERSION: &str = "2";

const DDL: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resource (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    name TEXT,
    name_key TEXT,
    external_id TEXT,
    doc TEXT NOT NULL,
    created TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    version INTEGER NOT NULL,
    photo_hash TEXT
);
CREATE INDEX IF NOT EXISTS resource_kind ON resource(kind, seq);
CREATE INDEX IF NOT EXISTS resource_external_id ON resource(kind, external_id);
CREATE TABLE IF NOT EXISTS member (
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS member_by_member ON member(member_id);
CREATE TABLE IF NOT EXISTS photo (
    user_id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    content_type TEXT NOT NULL,
    thumbnail_type TEXT NOT NULL,
    original BLOB NOT NULL,
    small BLOB NOT NULL,
    medium BLOB NOT NULL,
    large BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS change (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    deleted INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS token (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    user_name TEXT,
    hash TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
";

const READERS: usize = 4;

/// The SQLite profile storage.
pub struct SqliteStorage {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    schemas: Arc<Schemas>,
}

/// Creates a new database file readable by its owner only (0600), whatever the umask: SQLite
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

fn open_conn(path: &Path) -> Result<Connection> {
    let db = |source| Error::Database {
        path: path.display().to_string(),
        source,
    };
    let c = Connection::open(path).map_err(db)?;
    c.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db)?;
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
        .map_err(db)?;
    c.create_scalar_function(
        "scim_fold",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Text(t) => match std::str::from_utf8(t) {
                    Ok(t) => SqlValue::Text(fold(t).into_owned()),
                    Err(_) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                },
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(i) => SqlValue::Integer(i),
                ValueRef::Real(r) => SqlValue::Real(r),
                ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            })
        },
    )
    .map_err(db)?;
    Ok(c)
}

/// Brings a version 1 database to version 2 (the `name_key` column), and makes every folded
/// userName key again when they were made by another [`FOLD_VERSION`] (or never), in one
/// transaction. Two users whose names fold to one key cannot both keep it: the error names
/// both, since which one to rename is the owner's choice.
fn upgrade_and_key_names(c: &Connection, version: Option<&str>, path: &Path) -> Result<()> {
    let made: Option<String> = c
        .query_row("SELECT value FROM meta WHERE key = 'name_key'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let index = "CREATE UNIQUE INDEX IF NOT EXISTS resource_user_key ON resource(name_key) WHERE kind = 'User'";
    if version == Some(SCHEMA_VERSION) && made.as_deref() == Some(FOLD_VERSION) {
        c.execute_batch(index)?;
        return Ok(());
    }
    let tx = c.unchecked_transaction()?;
    let has_key: bool = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('resource') WHERE name = 'name_key'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_key {
        tx.execute_batch("ALTER TABLE resource ADD COLUMN name_key TEXT")?;
    }
    tx.execute_batch(
        "DROP INDEX IF EXISTS resource_user_name; DROP INDEX IF EXISTS resource_user_key;",
    )?;
    {
        let mut read =
            tx.prepare("SELECT seq, name, name_key FROM resource WHERE kind = 'User'")?;
        let mut write = tx.prepare("UPDATE resource SET name_key = ?2 WHERE seq = ?1")?;
        let rows = read.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        for row in rows {
            let (seq, name, old) = row?;
            let new = name.as_deref().map(|n| fold(n).into_owned());
            if new != old {
                write.execute(params![seq, new])?;
            }
        }
    }
    let same: Option<String> = tx
        .query_row(
            "SELECT name_key FROM resource WHERE kind = 'User' AND name_key IS NOT NULL \
             GROUP BY name_key HAVING count(*) > 1 LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(key) = same {
        let mut st = tx.prepare(
            "SELECT id, name FROM resource WHERE kind = 'User' AND name_key = ?1 ORDER BY seq LIMIT 2",
        )?;
        let two = st
            .query_map([&key], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let [(a, an), (b, bn)] = <[_; 2]>::try_from(two)
            .map_err(|_| Error::Corrupt(format!("{}: userName key `{key}`", path.display())))?;
        return Err(Error::Upgrade(format!(
            "{}: users {a} (`{an}`) and {b} (`{bn}`) have the same userName when compared \
             case-insensitively (Unicode case folding); rename one with the build that wrote \
             the file, then open it again",
            path.display()
        )));
    }
    tx.execute_batch(index)?;
    tx.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('name_key', ?1)",
        [FOLD_VERSION],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?1)",
        [SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(())
}

use crate::error::Error;

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, schemas: Arc<Schemas>) -> Result<SqliteStorage> {
        create_private(path).map_err(|e| Error::Database {
            path: path.display().to_string(),
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(e.to_string()),
            ),
        })?;
        let writer = open_conn(path)?;
        // A Bulk request takes a savepoint per operation: its statement journal stays in memory
        // instead of a temporary file written page by page.
        writer
            .execute_batch("PRAGMA temp_store=MEMORY;")
            .map_err(|source| Error::Database {
                path: path.display().to_string(),
                source,
            })?;
        writer
            .execute_batch(DDL)
            .map_err(|source| Error::Database {
                path: path.display().to_string(),
                source,
            })?;
        let v: Option<String> = writer
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match v.as_deref() {
            None | Some("1") | Some(SCHEMA_VERSION) => {
                upgrade_and_key_names(&writer, v.as_deref(), path)?;
            }
            Some(other) => {
                return Err(Error::Corrupt(format!(
                "{} has profile store schema version {other}, this build knows {SCHEMA_VERSION}",
                path.display()
            )))
            }
        }
        let readers = (0..READERS)
            .map(|_| open_conn(path).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(SqliteStorage {
            writer: Mutex::new(writer),
            readers,
            next: AtomicUsize::new(0),
            schemas,
        })
    }
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock leaves the connection usable: SQLite rolls back an
    // unfinished transaction when the next BEGIN fails, and Tx's Drop issues ROLLBACK.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProfileStorage for SqliteStorage {
    fn read(&self) -> Result<Box<dyn ReadTx + '_>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = lock(&self.readers[i]);
        conn.execute_batch("BEGIN")?;
        Ok(Box::new(Tx {
            conn,
            schemas: &self.schemas,
            open: true,
        }))
    }
    fn write(&self) -> Result<Box<dyn WriteTx + '_>> {
        let conn = lock(&self.writer);
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Box::new(Tx {
            conn,
            schemas: &self.schemas,
            open: true,
        }))
    }
}

struct Tx<'a> {
    conn: MutexGuard<'a, Connection>,
    schemas: &'a Schemas,
    open: bool,
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

fn kind_of(s: &str) -> Kind {
    if s == "Group" {
        Kind::Group
    } else {
        Kind::User
    }
}

const COLS: &str = "kind, id, doc, created, last_modified, version, photo_hash";

/// kind, id, doc, created, last_modified, version, photo_hash.
type Row7 = (String, String, String, String, String, i64, Option<String>);

fn row_to_stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row7> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn to_stored(t: Row7) -> Result<Stored> {
    let doc: serde_json::Value =
        serde_json::from_str(&t.2).map_err(|e| Error::Corrupt(format!("resource {}: {e}", t.1)))?;
    let serde_json::Value::Object(doc) = doc else {
        return Err(Error::Corrupt(format!(
            "resource {}: document is not an object",
            t.1
        )));
    };
    Ok(Stored {
        kind: kind_of(&t.0),
        id: t.1,
        doc,
        created: t.3,
        last_modified: t.4,
        version: t.5,
        photo_hash: t.6,
    })
}

impl Tx<'_> {
    fn record_change(&self, kind: Kind, id: &str, deleted: bool) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO change(kind, id, deleted) VALUES (?1, ?2, ?3)")?
            .execute(params![kind.name(), id, deleted])?;
        Ok(())
    }

    fn index_name(kind: Kind, doc: &Doc) -> Option<String> {
        let key = match kind {
            Kind::User => "userName",
            Kind::Group => "displayName",
        };
        doc.get(key).and_then(|v| v.as_str()).map(str::to_string)
    }

    /// The folded userName that holds its uniqueness (groups have none).
    fn name_key(kind: Kind, name: Option<&str>) -> Option<String> {
        match kind {
            Kind::User => name.map(|n| fold(n).into_owned()),
            Kind::Group => None,
        }
    }

    fn set_members(&self, kind: Kind, id: &str, doc: &Doc) -> Result<()> {
        if kind != Kind::Group {
            return Ok(());
        }
        self.conn
            .prepare_cached("DELETE FROM member WHERE group_id = ?1")?
            .execute([id])?;
        if let Some(serde_json::Value::Array(ms)) = doc.get("members") {
            let mut st = self.conn.prepare_cached(
                "INSERT OR IGNORE INTO member(group_id, member_id) VALUES (?1, ?2)",
            )?;
            for m in ms {
                if let Some(v) = m.get("value").and_then(|v| v.as_str()) {
                    st.execute(params![id, v])?;
                }
            }
        }
        Ok(())
    }

    fn unique_violation(e: &rusqlite::Error) -> bool {
        matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
    }
}

impl ReadTx for Tx<'_> {
    fn get(&self, kind: Kind, id: &str) -> Result<Option<Stored>> {
        let t = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLS} FROM resource WHERE id = ?1 AND kind = ?2"
            ))?
            .query_row(params![id, kind.name()], row_to_stored)
            .optional()?;
        t.map(to_stored).transpose()
    }

    fn id_by_user_name(&self, user_name: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id FROM resource WHERE kind = 'User' AND name_key = ?1")?
            .query_row([fold(user_name)], |r| r.get(0))
            .optional()?)
    }

    fn search(&self, kind: Kind, q: &Query) -> Result<(usize, Vec<Stored>), ScimError> {
        let (count_sql, page_sql, params) = search_sql(self.schemas, kind, q)?;
        let total: i64 = self
            .conn
            .prepare_cached(&count_sql)?
            .query_row(params_from_iter(params.iter()), |r| r.get(0))?;
        if q.count == 0 {
            return Ok((total as usize, vec![]));
        }
        let mut st = self.conn.prepare_cached(&page_sql)?;
        let rows = st
            .query_map(params_from_iter(params.iter()), row_to_stored)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let out = rows
            .into_iter()
            .map(to_stored)
            .collect::<Result<Vec<_>>>()?;
        Ok((total as usize, out))
    }

    fn groups_of(&self, member_id: &str) -> Result<Vec<(String, Option<String>)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT r.id, r.name FROM member m JOIN resource r ON r.id = m.group_id WHERE m.member_id = ?1 ORDER BY r.seq",
        )?;
        let rows = st.query_map([member_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn display_name(&self, id: &str) -> Result<Option<(Kind, Option<String>)>> {
        let r: Option<(String, Option<String>)> = self
            .conn
            .prepare_cached(
                "SELECT kind, json_extract(doc, '$.displayName') FROM resource WHERE id = ?1",
            )?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(r.map(|(k, d)| (kind_of(&k), d)))
    }

    fn photo(&self, user_id: &str, size: PhotoSize) -> Result<Option<PhotoBytes>> {
        let (col, ty) = match size {
            PhotoSize::Original => ("original", "content_type"),
            PhotoSize::Small => ("small", "thumbnail_type"),
            PhotoSize::Medium => ("medium", "thumbnail_type"),
            PhotoSize::Large => ("large", "thumbnail_type"),
        };
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT hash, {ty}, {col} FROM photo WHERE user_id = ?1"
            ))?
            .query_row([user_id], |r| {
                Ok(PhotoBytes {
                    hash: r.get(0)?,
                    content_type: r.get(1)?,
                    bytes: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn changes(&self, since: i64, limit: usize) -> Result<Vec<Change>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT cursor, kind, id, deleted FROM change WHERE cursor > ?1 ORDER BY cursor LIMIT ?2")?;
        let rows = st.query_map(params![since, limit as i64], |r| {
            Ok(Change {
                cursor: r.get(0)?,
                kind: kind_of(&r.get::<_, String>(1)?),
                id: r.get(2)?,
                deleted: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn latest_cursor(&self) -> Result<i64> {
        // The sequence survives collapsed rows, so the latest cursor never goes back.
        let seq: Option<i64> = self
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'change'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq.unwrap_or(0))
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, name, kind, user_name, created, revoked FROM token WHERE hash = ?1 AND revoked = 0")?
            .query_row([hash], token_row)
            .optional()?)
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, name, kind, user_name, created, revoked FROM token ORDER BY created, id",
        )?;
        let rows = st.query_map([], token_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    let kind: String = r.get(2)?;
    let user: Option<String> = r.get(3)?;
    Ok(TokenRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: if kind == "engine" {
            TokenKind::Engine
        } else {
            TokenKind::User(user.unwrap_or_default())
        },
        created: r.get(4)?,
        revoked: r.get(5)?,
    })
}

impl WriteTx for Tx<'_> {
    fn insert(&mut self, kind: Kind, id: &str, doc: Doc, now: &str) -> Result<Stored, ScimError> {
        let text = serde_json::to_string(&doc).map_err(ScimError::internal)?;
        let name = Self::index_name(kind, &doc);
        let ext = doc.get("externalId").and_then(|v| v.as_str());
        let r = self
            .conn
            .prepare_cached(
                "INSERT INTO resource(kind, id, name, name_key, external_id, doc, created, last_modified, version) VALUES (?1, ?2, ?3, ?7, ?4, ?5, ?6, ?6, 1)",
            )?
            .execute(params![kind.name(), id, name, ext, text, now, Self::name_key(kind, name.as_deref())]);
        match r {
            Err(e) if Self::unique_violation(&e) => {
                return Err(ScimError::new(
                    409,
                    Some("uniqueness"),
                    format!("userName `{}` is already taken", name.unwrap_or_default()),
                ))
            }
            r => {
                r?;
            }
        }
        self.set_members(kind, id, &doc)?;
        self.record_change(kind, id, false)?;
        Ok(Stored {
            kind,
            id: id.to_string(),
            doc,
            created: now.to_string(),
            last_modified: now.to_string(),
            version: 1,
            photo_hash: None,
        })
    }

    fn update(&mut self, kind: Kind, id: &str, doc: &Doc, now: &str) -> Result<Stored, ScimError> {
        let text = serde_json::to_string(doc).map_err(ScimError::internal)?;
        let name = Self::index_name(kind, doc);
        let ext = doc.get("externalId").and_then(|v| v.as_str());
        let r = self
            .conn
            .prepare_cached(
                "UPDATE resource SET name = ?3, name_key = ?7, external_id = ?4, doc = ?5, last_modified = ?6, version = version + 1 WHERE id = ?1 AND kind = ?2",
            )?
            .execute(params![id, kind.name(), name, ext, text, now, Self::name_key(kind, name.as_deref())]);
        match r {
            Err(e) if Self::unique_violation(&e) => {
                return Err(ScimError::new(
                    409,
                    Some("uniqueness"),
                    format!("userName `{}` is already taken", name.unwrap_or_default()),
                ))
            }
            Ok(0) => {
                return Err(ScimError::not_found(format!(
                    "{} {id} not found",
                    kind.name()
                )))
            }
            r => {
                r?;
            }
        }
        self.set_members(kind, id, doc)?;
        self.record_change(kind, id, false)?;
        self.get(kind, id)?
            .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", kind.name())))
    }

    fn delete(&mut self, kind: Kind, id: &str, now: &str) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM resource WHERE id = ?1 AND kind = ?2")?
            .execute(params![id, kind.name()])?;
        if n == 0 {
            return Ok(false);
        }
        self.conn
            .prepare_cached("DELETE FROM photo WHERE user_id = ?1")?
            .execute([id])?;
        self.conn
            .prepare_cached("DELETE FROM member WHERE group_id = ?1")?
            .execute([id])?;
        // Groups that held the deleted resource lose it as a member: a change to each.
        let groups: Vec<String> = {
            let mut st = self
                .conn
                .prepare_cached("SELECT group_id FROM member WHERE member_id = ?1")?;
            let rows = st.query_map([id], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        for g in groups {
            if let Some(mut s) = self.get(Kind::Group, &g)? {
                if let Some(serde_json::Value::Array(ms)) = s.doc.get_mut("members") {
                    ms.retain(|m| m.get("value").and_then(|v| v.as_str()) != Some(id));
                    if ms.is_empty() {
                        s.doc.remove("members");
                    }
                }
                self.update(Kind::Group, &g, &s.doc, now)
                    .map_err(|e| Error::Corrupt(e.detail))?;
            }
        }
        self.conn
            .prepare_cached("DELETE FROM member WHERE member_id = ?1")?
            .execute([id])?;
        self.record_change(kind, id, true)?;
        Ok(true)
    }

    fn put_photo(&mut self, user_id: &str, p: &PhotoSet, now: &str) -> Result<bool> {
        let same: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT photo.hash FROM photo JOIN resource ON resource.id = photo.user_id \
                 WHERE photo.user_id = ?1 AND resource.photo_hash = photo.hash",
            )?
            .query_row([user_id], |r| r.get(0))
            .optional()?;
        if same.as_deref() == Some(p.hash.as_str()) {
            return Ok(false);
        }
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO photo(user_id, hash, content_type, thumbnail_type, original, small, medium, large) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![user_id, p.hash, p.content_type, p.thumbnail_type, p.original, p.small, p.medium, p.large])?;
        self.conn
            .prepare_cached("UPDATE resource SET photo_hash = ?2, last_modified = ?3, version = version + 1 WHERE id = ?1")?
            .execute(params![user_id, p.hash, now])?;
        self.record_change(Kind::User, user_id, false)?;
        Ok(true)
    }

    fn delete_photo(&mut self, user_id: &str, now: &str) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM photo WHERE user_id = ?1")?
            .execute([user_id])?;
        if n == 0 {
            return Ok(false);
        }
        self.conn
            .prepare_cached("UPDATE resource SET photo_hash = NULL, last_modified = ?2, version = version + 1 WHERE id = ?1")?
            .execute(params![user_id, now])?;
        self.record_change(Kind::User, user_id, false)?;
        Ok(true)
    }

    fn insert_token(&mut self, t: &TokenRecord, hash: &str) -> Result<()> {
        let (kind, user) = match &t.kind {
            TokenKind::Engine => ("engine", None),
            TokenKind::User(u) => ("user", Some(u.as_str())),
        };
        self.conn.execute(
            "INSERT INTO token(id, name, kind, user_name, hash, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![t.id, t.name, kind, user, hash, t.created],
        )?;
        Ok(())
    }

    fn revoke_token(&mut self, id_or_name: &str) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE token SET revoked = 1 WHERE (id = ?1 OR name = ?1) AND revoked = 0",
            [id_or_name],
        )?;
        Ok(n > 0)
    }

    fn savepoint(&mut self) -> Result<()> {
        self.conn.prepare_cached("SAVEPOINT op")?.execute([])?;
        Ok(())
    }
    fn release(&mut self) -> Result<()> {
        self.conn.prepare_cached("RELEASE op")?.execute([])?;
        Ok(())
    }
    fn rollback_to(&mut self) -> Result<()> {
        self.conn.execute_batch("ROLLBACK TO op; RELEASE op")?;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }

    fn put_thumbnails(&mut self, user_id: &str, hash: &str, thumbs: &[Vec<u8>; 3]) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE photo SET small = ?3, medium = ?4, large = ?5 WHERE user_id = ?1 AND hash = ?2",
            )?
            .execute(params![user_id, hash, thumbs[0], thumbs[1], thumbs[2]])?;
        Ok(n > 0)
    }
}

/// A search's SQL: the count query, the page query and their parameters.
fn search_sql(
    schemas: &Schemas,
    kind: Kind,
    q: &Query,
) -> Result<(String, String, Vec<SqlValue>), ScimError> {
    let mut b = SqlBuilder {
        schemas,
        kind,
        params: vec![],
        alias: 0,
    };
    // The kind is a literal (one of two constants), so SQLite can use the partial unique
    // index on userName, which applies to `kind = 'User'` only.
    let mut where_ = format!("kind = '{}'", kind.name());
    if let Some(f) = &q.filter {
        let cond = b.filter(f, None)?;
        where_.push_str(" AND (");
        where_.push_str(&cond);
        where_.push(')');
    }
    let order = match &q.sort_by {
        // A filter that an index narrows to a few rows (`userName eq … or …`): sort those
        // few. Ordering by the bare `seq` would let SQLite walk every profile in `seq` order
        // (the kind index) to skip the sort, a full scan per lookup.
        None if q.filter.as_ref().is_some_and(|f| b.narrowed(f)) => String::from("+seq"),
        None => String::from("seq"),
        Some(s) => {
            let e = b.sort_expr(s)?;
            let dir = if q.descending { "DESC" } else { "ASC" };
            format!("{e} {dir} NULLS LAST, seq")
        }
    };
    let count_sql = format!("SELECT count(*) FROM resource WHERE {where_}");
    let page_sql = format!(
        "SELECT {COLS} FROM resource WHERE {where_} ORDER BY {order} LIMIT {} OFFSET {}",
        q.count, q.offset
    );
    Ok((count_sql, page_sql, b.params))
}

/// A filter's dateTime value (xsd:dateTime: RFC 3339, or without an offset, taken as UTC) as
/// the UTC instant SQLite's `julianday` reads; `None` when it is no date.
fn instant(s: &str) -> Option<String> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    let t = time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::PrimitiveDateTime::parse(s, &Iso8601::DEFAULT).map(|t| t.assume_utc()))
        .ok()?;
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()
}

/// Turns a filter into a SQL condition with positional parameters.
struct SqlBuilder<'s> {
    schemas: &'s Schemas,
    kind: Kind,
    params: Vec<SqlValue>,
    alias: usize,
}

/// What an attribute path reads, in SQL.
enum Source {
    /// A scalar expression.
    Scalar {
        expr: String,
        ty: AttrType,
        case_exact: bool,
        folded_column: bool,
    },
    /// Some value of a JSON array (`elem` reads it from `je.value`).
    Many {
        array: String,
        elem: Option<String>,
        ty: AttrType,
        case_exact: bool,
    },
}

fn quote_key(k: &str) -> String {
    format!("\"{}\"", k.replace('"', ""))
}

fn invalid(msg: String) -> ScimError {
    ScimError::bad("invalidFilter", msg)
}

impl SqlBuilder<'_> {
    fn push(&mut self, v: SqlValue) -> String {
        self.params.push(v);
        format!("?{}", self.params.len())
    }

    fn source(
        &self,
        p: &AttrPath,
        within: Option<(&str, &Attribute)>,
    ) -> Result<Source, ScimError> {
        if let Some((base, parent)) = within {
            // Inside a value filter: names are sub-attributes of `parent`.
            let sub = parent
                .sub(&p.name)
                .filter(|_| p.sub.is_none() && p.urn.is_none())
                .ok_or_else(|| invalid(format!("`{}` has no sub-attribute `{p}`", parent.name)))?;
            return Ok(Source::Scalar {
                expr: format!("json_extract({base}, '$.{}')", quote_key(&sub.name)),
                ty: sub.ty,
                case_exact: sub.case_exact,
                folded_column: false,
            });
        }
        let n = p.name.to_ascii_lowercase();
        let core_urn = p.urn.is_none()
            || p.urn
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(self.schemas.core(self.kind).id));
        let scalar = |expr: &str, ty, case_exact, folded_column| Source::Scalar {
            expr: expr.to_string(),
            ty,
            case_exact,
            folded_column,
        };
        if core_urn && p.sub.is_none() {
            match n.as_str() {
                "id" => return Ok(scalar("id", AttrType::String, true, false)),
                "externalid" => return Ok(scalar("external_id", AttrType::String, true, false)),
                "username" if self.kind == Kind::User => {
                    return Ok(scalar("name_key", AttrType::String, false, true))
                }
                _ => {}
            }
        }
        if core_urn && n == "meta" {
            match p.sub.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("created") => return Ok(scalar("created", AttrType::DateTime, false, false)),
                Some("lastmodified") => {
                    return Ok(scalar("last_modified", AttrType::DateTime, false, false))
                }
                Some("resourcetype") => {
                    return Ok(scalar(
                        &format!("'{}'", self.kind.name()),
                        AttrType::String,
                        false,
                        false,
                    ))
                }
                _ => return Err(invalid(format!("cannot filter on `{p}`"))),
            }
        }
        if core_urn && n == "groups" && self.kind == Kind::User {
            if p.sub
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case("value"))
            {
                return Ok(Source::Many {
                    array: "(SELECT json_group_array(group_id) FROM member WHERE member_id = resource.id)".into(),
                    elem: None,
                    ty: AttrType::String,
                    case_exact: true,
                });
            }
            return Err(invalid(format!(
                "cannot filter on `{p}` (only groups.value)"
            )));
        }
        let (place, attr) = self
            .schemas
            .resolve(self.kind, p.urn.as_deref(), &p.name)
            .ok_or_else(|| invalid(format!("unknown attribute `{p}`")))?;
        if attr.name == "photoHash" {
            return Ok(scalar("photo_hash", AttrType::String, true, false));
        }
        if attr.name == "photos" {
            return Err(invalid("cannot filter on `photos`".into()));
        }
        let mut path = String::from("$");
        if let Place::Extension(u) = place {
            path.push('.');
            path.push_str(&quote_key(u));
        }
        path.push('.');
        path.push_str(&quote_key(&attr.name));
        let sub = match (&p.sub, attr.ty) {
            (Some(s), AttrType::Complex) => Some(
                attr.sub(s)
                    .ok_or_else(|| invalid(format!("unknown attribute `{p}`")))?,
            ),
            (Some(_), _) => return Err(invalid(format!("`{}` has no sub-attributes", attr.name))),
            // `emails co "x"` means the values' `value`.
            (None, AttrType::Complex) => Some(
                attr.sub("value")
                    .ok_or_else(|| invalid(format!("`{p}` is complex: name a sub-attribute")))?,
            ),
            (None, _) => None,
        };
        let (ty, case_exact) = sub
            .map(|s| (s.ty, s.case_exact))
            .unwrap_or((attr.ty, attr.case_exact));
        if attr.multi_valued {
            Ok(Source::Many {
                array: format!("json_extract(resource.doc, '{path}')"),
                elem: sub.map(|s| quote_key(&s.name)),
                ty,
                case_exact,
            })
        } else {
            if let Some(s) = sub {
                path.push('.');
                path.push_str(&quote_key(&s.name));
            }
            Ok(scalar(
                &format!("json_extract(resource.doc, '{path}')"),
                ty,
                case_exact,
                false,
            ))
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn compare(
        &mut self,
        expr: &str,
        ty: AttrType,
        case_exact: bool,
        folded_column: bool,
        op: Op,
        v: &CompValue,
        p: &AttrPath,
    ) -> Result<String, ScimError> {
        if *v == CompValue::Null {
            return match op {
                Op::Eq => Ok(format!("({expr} IS NULL)")),
                Op::Ne => Ok(format!("({expr} IS NOT NULL)")),
                _ => Err(invalid(format!("`{p}`: only eq and ne compare with null"))),
            };
        }
        let ordering = |o: Op| match o {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "=",
            _ => "!=",
        };
        let cond = match (ty, v) {
            (AttrType::String | AttrType::Reference | AttrType::DateTime, CompValue::Str(s)) => {
                // Both sides folded the one way (a folded column already is), so an exact
                // value always matches itself.
                let (e, val) = if case_exact {
                    (expr.to_string(), s.clone())
                } else if folded_column {
                    (expr.to_string(), fold(s).into_owned())
                } else {
                    (format!("scim_fold({expr})"), fold(s).into_owned())
                };
                match op {
                    Op::Co | Op::Sw | Op::Ew if val.is_empty() => format!("({e} IS NOT NULL)"),
                    Op::Co => {
                        let q = self.push(SqlValue::Text(val));
                        format!("(instr({e}, {q}) > 0)")
                    }
                    Op::Sw => {
                        let q = self.push(SqlValue::Text(val));
                        format!("(substr({e}, 1, length({q})) = {q})")
                    }
                    Op::Ew => {
                        let q = self.push(SqlValue::Text(val));
                        format!("(substr({e}, -length({q})) = {q})")
                    }
                    _ if ty == AttrType::DateTime => {
                        let q = self.push(SqlValue::Text(instant(s).ok_or_else(|| {
                            ScimError::bad(
                                "invalidValue",
                                format!(
                                    "`{p}` is a dateTime: `{}` is not one (e.g. `2026-01-31T12:00:00Z`)",
                                    crate::filter::clip(s, 40)
                                ),
                            )
                        })?));
                        format!("(julianday({expr}) {} julianday({q}))", ordering(op))
                    }
                    _ => {
                        let q = self.push(SqlValue::Text(val));
                        format!("({e} {} {q})", ordering(op))
                    }
                }
            }
            (AttrType::Boolean, CompValue::Bool(b)) if matches!(op, Op::Eq | Op::Ne) => {
                let q = self.push(SqlValue::Integer(*b as i64));
                format!("({expr} {} {q})", ordering(op))
            }
            (AttrType::Integer | AttrType::Decimal, CompValue::Num(n))
                if !matches!(op, Op::Co | Op::Sw | Op::Ew) =>
            {
                let val = match n.as_i64() {
                    Some(i) => SqlValue::Integer(i),
                    None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
                };
                let q = self.push(val);
                format!("({expr} {} {q})", ordering(op))
            }
            _ => {
                return Err(invalid(format!(
                    "`{p}` cannot be compared with {op:?} {v:?}"
                )))
            }
        };
        // Absent values: `ne` matches, everything else does not. Only `ne` (and `not`, below)
        // wrap the condition: a bare comparison keeps SQLite's index on userName usable.
        Ok(if op == Op::Ne {
            format!("coalesce({cond}, 1)")
        } else {
            cond
        })
    }

    fn filter(
        &mut self,
        f: &Filter,
        within: Option<(&str, &Attribute)>,
    ) -> Result<String, ScimError> {
        Ok(match f {
            Filter::And(a, b) => format!(
                "({} AND {})",
                self.filter(a, within)?,
                self.filter(b, within)?
            ),
            Filter::Or(a, b) => format!(
                "({} OR {})",
                self.filter(a, within)?,
                self.filter(b, within)?
            ),
            Filter::Not(a) => format!("(NOT coalesce({}, 0))", self.filter(a, within)?),
            Filter::Present(p) => match self.source(p, within)? {
                Source::Scalar { expr, .. } => {
                    format!("coalesce(({expr} IS NOT NULL AND {expr} != ''), 0)")
                }
                Source::Many {
                    array, elem: None, ..
                } => format!("coalesce(json_array_length({array}) > 0, 0)"),
                Source::Many {
                    array,
                    elem: Some(e),
                    ..
                } => {
                    self.alias += 1;
                    let a = format!("je{}", self.alias);
                    format!("EXISTS (SELECT 1 FROM json_each({array}) {a} WHERE json_extract({a}.value, '$.{e}') IS NOT NULL)")
                }
            },
            Filter::Compare(p, op, v) => match self.source(p, within)? {
                Source::Scalar {
                    expr,
                    ty,
                    case_exact,
                    folded_column,
                } => self.compare(&expr, ty, case_exact, folded_column, *op, v, p)?,
                Source::Many {
                    array,
                    elem,
                    ty,
                    case_exact,
                } => {
                    self.alias += 1;
                    let a = format!("je{}", self.alias);
                    let e = match elem {
                        None => format!("{a}.value"),
                        Some(k) => format!("json_extract({a}.value, '$.{k}')"),
                    };
                    if *op == Op::Ne {
                        let c = self.compare(&e, ty, case_exact, false, Op::Eq, v, p)?;
                        format!("NOT EXISTS (SELECT 1 FROM json_each({array}) {a} WHERE {c})")
                    } else {
                        let c = self.compare(&e, ty, case_exact, false, *op, v, p)?;
                        format!("EXISTS (SELECT 1 FROM json_each({array}) {a} WHERE {c})")
                    }
                }
            },
            Filter::ValuePath(p, inner) => {
                if within.is_some() {
                    return Err(invalid(format!("value filters cannot nest (`{p}[...]`)")));
                }
                if p.sub.is_some() {
                    return Err(invalid(format!(
                        "`{p}[...]`: put the sub-attribute inside the brackets"
                    )));
                }
                let (place, attr) = self
                    .schemas
                    .resolve(self.kind, p.urn.as_deref(), &p.name)
                    .ok_or_else(|| invalid(format!("unknown attribute `{p}`")))?;
                if !(attr.multi_valued && attr.ty == AttrType::Complex) || attr.name == "groups" {
                    return Err(invalid(format!(
                        "`{p}[...]` needs a multi-valued complex attribute"
                    )));
                }
                let mut path = String::from("$");
                if let Place::Extension(u) = place {
                    path.push('.');
                    path.push_str(&quote_key(u));
                }
                path.push('.');
                path.push_str(&quote_key(&attr.name));
                self.alias += 1;
                let a = format!("je{}", self.alias);
                let base = format!("{a}.value");
                let c = self.filter(inner, Some((&base, attr)))?;
                format!("EXISTS (SELECT 1 FROM json_each(json_extract(resource.doc, '{path}')) {a} WHERE {c})")
            }
        })
    }

    /// Whether an index narrows the filter's matches: an equality on `id`, `userName` or
    /// `externalId` (indexed columns), an `or` of such, or an `and` with one.
    fn narrowed(&self, f: &Filter) -> bool {
        match f {
            Filter::Compare(p, Op::Eq, CompValue::Str(_)) => matches!(
                self.source(p, None),
                Ok(Source::Scalar { expr, .. }) if matches!(expr.as_str(), "id" | "name_key" | "external_id")
            ),
            Filter::Or(a, b) => self.narrowed(a) && self.narrowed(b),
            Filter::And(a, b) => self.narrowed(a) || self.narrowed(b),
            _ => false,
        }
    }

    fn sort_expr(&mut self, s: &str) -> Result<String, ScimError> {
        let p = crate::filter::parse_attr_path(s, 0).map_err(|e| {
            ScimError::bad(
                "invalidValue",
                format!("sortBy `{}`: {e}", crate::filter::clip(s, 40)),
            )
        })?;
        match self.source(&p, None) {
            Ok(Source::Scalar {
                expr,
                ty,
                case_exact,
                folded_column,
            }) => Ok(match ty {
                AttrType::String | AttrType::Reference if !case_exact && !folded_column => {
                    format!("scim_fold({expr})")
                }
                AttrType::DateTime => format!("julianday({expr})"),
                _ => expr,
            }),
            Ok(Source::Many { array, elem, .. }) => Ok(match elem {
                None => format!("json_extract({array}, '$[0]')"),
                Some(e) => format!("scim_fold(json_extract({array}, '$[0].{e}'))"),
            }),
            Err(e) => Err(ScimError::bad(
                "invalidValue",
                format!("sortBy: {}", e.detail),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse_filter;
    use crate::schema::default_properties;

    /// SQLite's plan for a search over `n` users (the planner's choice depends on the data).
    fn plan(filter: &str) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let schemas = Arc::new(Schemas::new(&default_properties()).expect("schemas"));
        let st = SqliteStorage::open(&dir.path().join("p.db"), schemas.clone()).expect("open");
        let mut tx = st.write().expect("write");
        for i in 0..2000 {
            let mut doc = Doc::new();
            doc.insert("userName".into(), format!("user{i}").into());
            doc.insert("externalId".into(), format!("x{i}").into());
            tx.insert(Kind::User, &format!("id{i}"), doc, "2026-01-01T00:00:00Z")
                .expect("insert");
        }
        tx.commit().expect("commit");
        let q = Query {
            filter: Some(parse_filter(filter).expect("filter")),
            count: 50,
            ..Query::default()
        };
        let (_, sql, params) = search_sql(&schemas, Kind::User, &q).expect("sql");
        let conn = lock(&st.writer);
        let mut s = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let rows = s
            .query_map(params_from_iter(params.iter()), |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("rows");
        rows.join("\n")
    }

    #[cfg(unix)]
    #[test]
    fn a_new_database_and_its_side_files_are_owner_only_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: umask only sets the process's file creation mask; 022 is the common default.
        unsafe { libc::umask(0o022) };
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("profile-store.db");
        let schemas = Arc::new(Schemas::new(&default_properties()).expect("schemas"));
        let st = SqliteStorage::open(&path, schemas).expect("open");
        let mut tx = st.write().expect("write");
        let mut doc = Doc::new();
        doc.insert("userName".into(), "ann".into());
        tx.insert(Kind::User, "id1", doc, "2026-01-01T00:00:00Z")
            .expect("insert");
        tx.commit().expect("commit");
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let mode = std::fs::metadata(&p)
                .expect("side file")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "profile-store.db{suffix} is {mode:o}");
        }
    }

    #[test]
    fn keys_made_by_another_folding_are_made_again_when_opened() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("p.db");
        let schemas = Arc::new(Schemas::new(&default_properties()).expect("schemas"));
        let st = SqliteStorage::open(&path, schemas.clone()).expect("open");
        let mut tx = st.write().expect("write");
        let mut doc = Doc::new();
        doc.insert("userName".into(), "Ärger".into());
        tx.insert(Kind::User, "id1", doc, "2026-01-01T00:00:00Z")
            .expect("insert");
        tx.commit().expect("commit");
        drop(st);
        // What an older folding (ASCII only) made, under another marker.
        let c = Connection::open(&path).expect("raw");
        c.execute_batch(
            "UPDATE resource SET name_key = 'Ärger'; UPDATE meta SET value = 'ascii' WHERE key = 'name_key';",
        )
        .expect("stale keys");
        drop(c);
        let st = SqliteStorage::open(&path, schemas).expect("open again");
        let tx = st.read().expect("read");
        assert_eq!(
            tx.id_by_user_name("ÄRGER").expect("lookup").as_deref(),
            Some("id1")
        );
        let marker: String = lock(&st.writer)
            .query_row("SELECT value FROM meta WHERE key = 'name_key'", [], |r| {
                r.get(0)
            })
            .expect("marker");
        assert_eq!(marker, FOLD_VERSION);
    }

    #[test]
    fn lookups_by_indexed_columns_do_not_walk_every_profile() {
        for f in [
            r#"userName eq "user7" or userName eq "user1999" or userName eq "nobody""#,
            r#"id eq "id7" or id eq "id1999""#,
            r#"externalId eq "x7" or externalId eq "x8""#,
            r#"userName eq "user7" and title pr"#,
        ] {
            let p = plan(f);
            assert!(
                !p.contains("resource_kind") && !p.contains("SCAN resource"),
                "{f}: {p}"
            );
        }
        // An unindexed filter still walks the kind index in order, without a sort.
        let p = plan(r#"title eq "x""#);
        assert!(
            p.contains("resource_kind") && !p.contains("TEMP B-TREE"),
            "{p}"
        );
    }
}

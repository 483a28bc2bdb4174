//! The profile store's storage interface. The HTTP layer sees only these traits, so another
//! backend (PostgreSQL) is a new implementation with no service change. Invariants every backend
//! keeps: each write method records its change in the change feed in the same transaction; a
//! photo change bumps its user's version and lastModified; `userName` is unique
//! case-insensitively; a deleted user leaves every group it was a member of.

pub mod sqlite;

use crate::error::{Result, ScimError};
use crate::filter::Filter;
use crate::resource::Doc;
use crate::schema::Kind;

/// A stored User or Group: its normalised document and server-kept fields.
#[derive(Clone, Debug)]
pub struct Stored {
    pub kind: Kind,
    pub id: String,
    pub doc: Doc,
    pub created: String,
    pub last_modified: String,
    pub version: i64,
    pub photo_hash: Option<String>,
}

/// A search: filter, order and page.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub filter: Option<Filter>,
    pub sort_by: Option<String>,
    pub descending: bool,
    /// 0-based offset.
    pub offset: usize,
    pub count: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhotoSize {
    Original,
    Small,
    Medium,
    Large,
}

/// A photo with its thumbnails, ready to store (empty thumbnails are made on first read).
#[derive(Clone, Debug)]
pub struct PhotoSet {
    pub hash: String,
    pub content_type: String,
    pub original: Vec<u8>,
    pub small: Vec<u8>,
    pub medium: Vec<u8>,
    pub large: Vec<u8>,
    pub thumbnail_type: String,
}

/// One photo as served.
#[derive(Clone, Debug)]
pub struct PhotoBytes {
    pub hash: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// One entry of the change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub cursor: i64,
    pub kind: Kind,
    pub id: String,
    pub deleted: bool,
}

/// Who a token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Engine,
    /// A person, by userName.
    User(String),
}

#[derive(Clone, Debug)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub kind: TokenKind,
    pub created: String,
    pub revoked: bool,
}

/// Reads, in one consistent snapshot.
pub trait ReadTx {
    fn get(&self, kind: Kind, id: &str) -> Result<Option<Stored>>;
    fn id_by_user_name(&self, user_name: &str) -> Result<Option<String>>;
    /// The total number of matches and the requested page. Filter errors are client errors.
    fn search(&self, kind: Kind, q: &Query) -> Result<(usize, Vec<Stored>), ScimError>;
    /// The groups a user (or group) is a direct member of: (id, displayName).
    fn groups_of(&self, member_id: &str) -> Result<Vec<(String, Option<String>)>>;
    /// The displayName of a resource, if it exists and has one.
    fn display_name(&self, id: &str) -> Result<Option<(Kind, Option<String>)>>;
    fn photo(&self, user_id: &str, size: PhotoSize) -> Result<Option<PhotoBytes>>;
    /// Changes with a cursor above `since`, oldest first.
    fn changes(&self, since: i64, limit: usize) -> Result<Vec<Change>>;
    fn latest_cursor(&self) -> Result<i64>;
    /// A live (not revoked) token by the hash of its secret.
    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    fn tokens(&self) -> Result<Vec<TokenRecord>>;
}

/// Writes, in one transaction (committed by `commit`, rolled back when dropped).
pub trait WriteTx: ReadTx {
    /// Inserts a new resource (the document moves into the answer, uncopied). A taken userName
    /// is a 409 `uniqueness` error.
    fn insert(&mut self, kind: Kind, id: &str, doc: Doc, now: &str) -> Result<Stored, ScimError>;
    fn update(&mut self, kind: Kind, id: &str, doc: &Doc, now: &str) -> Result<Stored, ScimError>;
    /// Deletes a resource (and its photo and memberships); false if it did not exist.
    fn delete(&mut self, kind: Kind, id: &str, now: &str) -> Result<bool>;
    /// Stores a user's photo; false, and nothing changed (no version, lastModified or feed
    /// entry), when the user's photo already has these bytes.
    fn put_photo(&mut self, user_id: &str, photo: &PhotoSet, now: &str) -> Result<bool>;
    fn delete_photo(&mut self, user_id: &str, now: &str) -> Result<bool>;
    fn insert_token(&mut self, record: &TokenRecord, hash: &str) -> Result<()>;
    /// Revokes a token by id or name; false if none matched.
    fn revoke_token(&mut self, id_or_name: &str) -> Result<bool>;
    /// Nested savepoints let one Bulk operation fail without undoing the others.
    fn savepoint(&mut self) -> Result<()>;
    fn release(&mut self) -> Result<()>;
    fn rollback_to(&mut self) -> Result<()>;
    fn commit(self: Box<Self>) -> Result<()>;
    /// Keeps the small, medium and large thumbnails made for the photo whose original has
    /// `hash` (made on first read); false when the user has no photo with that hash any more.
    /// Not a change: no version, lastModified or feed entry.
    fn put_thumbnails(&mut self, user_id: &str, hash: &str, thumbs: &[Vec<u8>; 3]) -> Result<bool>;
}

/// A storage backend.
pub trait ProfileStorage: Send + Sync + 'static {
    fn read(&self) -> Result<Box<dyn ReadTx + '_>>;
    fn write(&self) -> Result<Box<dyn WriteTx + '_>>;
}

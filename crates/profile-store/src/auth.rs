//! Bearer tokens: 32 random bytes shown once at creation, stored only as their BLAKE3 hash, and
//! the principal a request speaks for (the engine, or one person).

use crate::error::{Error, Result};
use crate::storage::{ProfileStorage, TokenKind, TokenRecord};

/// Who a request speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Engine,
    /// A person's token: their userName, and their user id if that user exists.
    Person {
        user_name: String,
        user_id: Option<String>,
    },
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Creates a token and returns its secret (the only time it is seen) and its record.
pub fn create_token(
    storage: &dyn ProfileStorage,
    kind: TokenKind,
    name: &str,
) -> Result<(String, TokenRecord)> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Config(format!("no random source: {e}")))?;
    let secret = format!("ids_{}", hex::encode(bytes));
    let record = TokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_string(),
        kind,
        created: now(),
        revoked: false,
    };
    let mut tx = storage.write()?;
    tx.insert_token(&record, &hash_token(&secret))?;
    tx.commit()?;
    Ok((secret, record))
}

pub fn list_tokens(storage: &dyn ProfileStorage) -> Result<Vec<TokenRecord>> {
    storage.read()?.tokens()
}

/// Revokes a token by id or name; false if none matched.
pub fn revoke_token(storage: &dyn ProfileStorage, id_or_name: &str) -> Result<bool> {
    let mut tx = storage.write()?;
    let r = tx.revoke_token(id_or_name)?;
    tx.commit()?;
    Ok(r)
}

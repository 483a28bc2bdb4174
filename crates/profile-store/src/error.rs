//! Errors: `Error` for the library (storage, configuration, start-up) and `ScimError`, what a
//! request answers with (RFC 7644 3.12), so every failure reaches the client as a SCIM error body.

use crate::schema::ERROR_SCHEMA;
use serde_json::json;

/// The library's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("profile store database {path}: {source}")]
    Database {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("profile store storage: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("profile store configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// An older database this build cannot bring up to date without its owner's choice.
    #[error("cannot upgrade the profile store database {0}")]
    Upgrade(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A SCIM error response: HTTP status, `scimType` and a detail naming the place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
    /// Seconds for a `Retry-After` header (a 503 when the service is busy).
    pub retry_after: Option<u64>,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
            retry_after: None,
        }
    }
    /// 503: the service cannot take this request now; the client may retry after `secs`.
    pub fn busy(detail: impl Into<String>, secs: u64) -> Self {
        ScimError {
            retry_after: Some(secs),
            ..Self::new(503, None, detail)
        }
    }
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, None, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(403, None, detail)
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {e}");
        Self::new(500, None, "internal error (see the service log)")
    }
    pub fn body(&self) -> serde_json::Value {
        let mut v = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            v["scimType"] = json!(t);
        }
        v
    }
}

impl From<Error> for ScimError {
    fn from(e: Error) -> Self {
        ScimError::internal(e)
    }
}

impl From<rusqlite::Error> for ScimError {
    fn from(e: rusqlite::Error) -> Self {
        ScimError::internal(e)
    }
}

impl std::fmt::Display for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.detail)
    }
}

//! idsync's profile store: one profile per person (typed, schema-defined properties, a manager
//! reference, group memberships and a photo) served over SCIM 2.0 (RFC 7643/7644), with photo
//! upload and thumbnails, a change feed for the engine's delta import, and bearer tokens stored
//! hashed. The HTTP contract is `docs/profile-store-api.md`.
//!
//! It owns its own database (never the engine's store) behind the `ProfileStorage` trait, and
//! knows nothing of the engine, its rules or its connectors.

pub mod auth;
pub mod error;
pub mod filter;
/// The one case folding, shared with the connector that talks to this service.
pub use idsync_model::fold;
mod http;
pub mod photo;
pub mod resource;
pub mod schema;
pub mod storage;
mod wire;

pub use auth::{create_token, list_tokens, revoke_token};
pub use error::{Error, Result, ScimError};
pub use photo::PhotoConfig;
pub use schema::PropertyConfig;
pub use storage::sqlite::SqliteStorage;
pub use storage::{ProfileStorage, TokenKind, TokenRecord};

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The profile store's settings (a TOML file, all optional).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The public base URL (e.g. `https://profiles.example.com`); default: from the Host header.
    pub base_url: Option<String>,
    /// Largest JSON request body in bytes (Bulk requests included).
    pub max_json_bytes: usize,
    /// Seconds before a request is answered 408.
    pub request_timeout_secs: u64,
    pub photos: PhotoConfig,
    /// The profile extension's properties.
    pub property: Vec<PropertyConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_url: None,
            max_json_bytes: 32 * 1024 * 1024,
            request_timeout_secs: 60,
            photos: PhotoConfig::default(),
            property: schema::default_properties(),
        }
    }
}

impl Config {
    /// Reads a configuration file; errors name the file, line and column.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        toml::from_str(text)
            .map_err(|e| {
                let place = e
                    .span()
                    .map(|s| {
                        let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                        let col = s.start
                            - text[..s.start.min(text.len())]
                                .rfind('\n')
                                .map(|i| i + 1)
                                .unwrap_or(0)
                            + 1;
                        format!("{origin}:{line}:{col}")
                    })
                    .unwrap_or_else(|| origin.to_string());
                Error::Config(format!("{place}: {}", e.message()))
            })
            .and_then(|c: Config| {
                c.photos.fault(c.request_timeout_secs).map_err(|f| {
                    // The key at fault, or the other key of the pair when it was left to its
                    // default.
                    let line =
                        key_line(text, f.key).or_else(|| key_line(text, "request_timeout_secs"));
                    let place =
                        line.map_or_else(|| origin.to_string(), |l| format!("{origin}:{l}"));
                    Error::Config(format!("{place}: {}", f.message))
                })?;
                Ok(c)
            })
    }

    /// Settings that cannot work together, named by their keys.
    pub fn check(&self) -> std::result::Result<(), String> {
        self.photos.check(self.request_timeout_secs)
    }
}

/// A setting that cannot work: its dotted key and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFault {
    pub key: &'static str,
    pub message: String,
}

/// The line (1-based) of a dotted key (`photos.decode_wait_secs`) in a TOML text, however it is
/// written (a table header, a dotted key, an inline table).
fn key_line(text: &str, dotted: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        let (key, value) = table.iter().find(|(k, _)| k.get_ref() == part)?;
        if parts.peek().is_none() {
            let start = key.span().start.min(text.len());
            return Some(text[..start].matches('\n').count() + 1);
        }
        match value.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => return None,
        }
    }
    None
}

/// Where to listen and which database to use.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub db: PathBuf,
    pub config: Config,
}

/// A running profile store: its bound address; stops when dropped (or on `stop`).
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// The SCIM base URL, e.g. `http://127.0.0.1:8080/scim/v2`.
    pub fn scim_url(&self) -> String {
        format!("http://{}/scim/v2", self.addr)
    }

    /// Blocks until the server stops (it stops only when asked, so: forever).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Opens the database and starts the service on its own runtime thread. Port 0 picks a free
/// port (see `Server::addr`).
pub fn serve(opts: ServeOptions) -> Result<Server> {
    opts.config.check().map_err(Error::Config)?;
    let schemas = Arc::new(schema::Schemas::new(&opts.config.property).map_err(Error::Config)?);
    let storage: Arc<dyn ProfileStorage> =
        Arc::new(SqliteStorage::open(&opts.db, schemas.clone())?);
    let listener = std::net::TcpListener::bind(opts.listen).map_err(|source| Error::Bind {
        addr: opts.listen.to_string(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| Error::Bind {
            addr: opts.listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: opts.listen.to_string(),
        source,
    })?;
    let decode = Arc::new(photo::DecodeBudget::new(&opts.config.photos));
    let app = http::router(http::AppState {
        storage,
        schemas,
        config: Arc::new(opts.config),
        decode,
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("profile-store")
        .build()
        .map_err(|e| Error::Config(format!("cannot start the runtime: {e}")))?;
    let thread = std::thread::spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => wire::Listener(l),
                Err(e) => {
                    tracing::error!("profile store listener: {e}");
                    return;
                }
            };
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!("profile store stopped: {e}");
            }
        });
    });
    Ok(Server {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_that_cannot_work_is_named_at_its_line() {
        let text = "request_timeout_secs = 5\n\n[photos]\nsmall = 48\ndecode_wait_secs = 10\n";
        let e = Config::parse(text, "store.toml").unwrap_err().to_string();
        assert!(
            e.contains("store.toml:5: photos.decode_wait_secs = 10"),
            "{e}"
        );
        // Left to its default, the fault is shown at the other key of the pair.
        let e = Config::parse("request_timeout_secs = 5\n", "store.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.toml:1: photos.decode_wait_secs"), "{e}");
        let e = Config::parse("photos.small = 48\nphotos.large = 0\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.toml:2: "), "{e}");
        let e = Config::parse("photos = { decode_budget = 1000 }\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.toml:1: photos.decode_budget"), "{e}");
    }
}

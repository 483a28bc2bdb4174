//! `idsync serve` (the profile store service) and `idsync token` (its bearer tokens).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use idsync_profile_store::{Config, ProfileStorage, ServeOptions, SqliteStorage, TokenKind};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the profile store keeps its data.
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// The profile store's database (SQLite; separate from the engine's store).
    #[arg(long, default_value = "profile-store.db", env = "IDSYNC_PROFILE_DB")]
    pub db: PathBuf,
    /// The profile store's settings (TOML: photo limits and sizes, profile properties).
    #[arg(long = "store-config", env = "IDSYNC_PROFILE_CONFIG")]
    pub store_config: Option<PathBuf>,
}

/// `idsync serve`'s photo decoding settings; each overrides the store configuration's.
#[derive(Args, Clone, Default)]
pub struct DecodeArgs {
    /// Memory (MiB) all the photos being decoded at one time may take together; an upload waits
    /// for room, then is answered 503 (`photos.decode_budget`; default 256 MiB).
    #[arg(long, value_name = "MIB")]
    pub photo_decode_budget_mib: Option<u64>,
    /// Seconds an upload waits for room in the decode budget before 503 with Retry-After
    /// (`photos.decode_wait_secs`; default 10).
    #[arg(long, value_name = "SECS")]
    pub photo_decode_wait_secs: Option<u64>,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once: only its hash is stored).
    Create {
        /// A token for the engine (reads and writes everything).
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        engine: bool,
        /// A token for one person (by userName): reads profiles, edits only their own.
        #[arg(long)]
        user: Option<String>,
        /// A label to recognise it by.
        #[arg(long)]
        name: Option<String>,
        /// Create the `--user` token even though the profile store has no such user yet.
        #[arg(long, requires = "user")]
        force: bool,
        /// Write the token to this file (readable by its owner only, 0600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token by id or name.
    Revoke {
        id_or_name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Writes `text` to `path`, readable by its owner only (0600) whatever the umask, an existing
/// file included (its mode is set before anything is written to it).
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    })
}

fn open(store: &StoreArgs) -> Result<SqliteStorage> {
    open_storage(&store.db, store.store_config.as_deref())
}

/// Opens the profile store's database with the schema its settings describe.
pub(crate) fn open_storage(db: &Path, store_config: Option<&Path>) -> Result<SqliteStorage> {
    let config = load_config(store_config)?;
    let schemas =
        idsync_profile_store::schema::Schemas::new(&config.property).map_err(anyhow::Error::msg)?;
    SqliteStorage::open(db, Arc::new(schemas))
        .with_context(|| format!("cannot open the profile store {}", db.display()))
}

/// Runs the profile store until the process is stopped.
pub fn serve(listen: SocketAddr, store: &StoreArgs, decode: &DecodeArgs) -> Result<()> {
    let mut config = load_config(store.store_config.as_deref())?;
    if let Some(mib) = decode.photo_decode_budget_mib {
        config.photos.decode_budget = mib.saturating_mul(1024 * 1024);
    }
    if let Some(secs) = decode.photo_decode_wait_secs {
        config.photos.decode_wait_secs = secs;
    }
    let server = idsync_profile_store::serve(ServeOptions {
        listen,
        db: store.db.clone(),
        config,
    })?;
    eprintln!(
        "profile store: {} (database {}); create a token with `idsync token create --engine`",
        server.scim_url(),
        store.db.display()
    );
    server.wait();
    Ok(())
}

pub fn token(cmd: TokenCommand, json: bool) -> Result<()> {
    match cmd {
        TokenCommand::Create {
            engine,
            user,
            name,
            force,
            out,
            store,
        } => {
            let storage = open(&store)?;
            let kind = match (engine, user) {
                (true, _) => TokenKind::Engine,
                (false, Some(u)) if !u.trim().is_empty() => TokenKind::User(u),
                _ => bail!("say --engine or --user USERNAME"),
            };
            if let TokenKind::User(u) = &kind {
                let known = storage
                    .read()
                    .and_then(|tx| tx.id_by_user_name(u))
                    .with_context(|| {
                        format!("cannot read the profile store {}", store.db.display())
                    })?;
                if known.is_none() && !force {
                    bail!(
                        "the profile store {} has no user `{u}` (userName): no token created; \
                         check the name, or add --force for a user not provisioned yet",
                        store.db.display()
                    );
                }
            }
            let label = name.unwrap_or_else(|| match &kind {
                TokenKind::Engine => "engine".to_string(),
                TokenKind::User(u) => format!("user:{u}"),
            });
            let (secret, rec) =
                idsync_profile_store::create_token(&storage as &dyn ProfileStorage, kind, &label)?;
            if let Some(file) = &out {
                write_private(file, &format!("{secret}\n")).with_context(|| {
                    format!(
                        "token {} ({}) created, but it cannot be written to {} (revoke it)",
                        rec.id,
                        rec.name,
                        file.display()
                    )
                })?;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"id": rec.id, "name": rec.name, "file": file})
                    );
                } else {
                    eprintln!(
                        "token {} ({}) created and written to {}",
                        rec.id,
                        rec.name,
                        file.display()
                    );
                }
            } else if json {
                println!(
                    "{}",
                    serde_json::json!({"id": rec.id, "name": rec.name, "token": secret})
                );
            } else {
                eprintln!(
                    "token {} ({}) created; it is shown only now:",
                    rec.id, rec.name
                );
                println!("{secret}");
            }
        }
        TokenCommand::List { store } => {
            let storage = open(&store)?;
            let tokens = idsync_profile_store::list_tokens(&storage)?;
            if json {
                let v: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({"id": t.id, "name": t.name, "kind": kind_name(&t.kind), "created": t.created, "revoked": t.revoked})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let mut table = comfy_table::Table::new();
                table.set_header(["id", "name", "for", "created", "revoked"]);
                for t in &tokens {
                    table.add_row([
                        t.id.clone(),
                        t.name.clone(),
                        kind_name(&t.kind),
                        t.created.clone(),
                        t.revoked.to_string(),
                    ]);
                }
                println!("{table}");
            }
        }
        TokenCommand::Revoke { id_or_name, store } => {
            let storage = open(&store)?;
            if !idsync_profile_store::revoke_token(&storage, &id_or_name)? {
                bail!("no live token with id or name `{id_or_name}`");
            }
            eprintln!("revoked {id_or_name}");
        }
    }
    Ok(())
}

fn kind_name(k: &TokenKind) -> String {
    match k {
        TokenKind::Engine => "engine".into(),
        TokenKind::User(u) => format!("user {u}"),
    }
}

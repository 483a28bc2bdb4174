//! `idsync`: the command line. Parses arguments, loads the configuration and the store, runs
//! what was asked through the engine, and prints a summary (a table, or JSON with `--json`).
//!
//! Exit codes: 0 done (object-level errors are listed in the summary and in `idsync history`),
//! 1 failed (the message says what to change), 2 bad usage.

mod audit;
mod bench;
mod bench_ad;
mod bench_api;
mod bench_ldap;
mod bench_profile;
mod bench_sql;
mod demo;
mod dump;
mod log;
mod output;
mod serve;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use idsync_engine::{CycleKind, Engine, Step};
use idsync_rules::Rules;
use idsync_store::{AnyStore, PgLocation, RunnerLock, Runs, StoreLocation};
use std::path::{Path, PathBuf};

/// mimalloc rather than glibc's malloc: an import allocates each entry on the connection's
/// thread and frees it on the thread that stores it, a pattern glibc serves slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "idsync",
    version,
    about = "Identity and user-profile synchronization engine"
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "IDSYNC_CONFIG",
        default_value = "idsync.toml"
    )]
    config: PathBuf,
    /// Print machine-readable JSON instead of tables; a failure is then a JSON object too
    /// (`{"error": {...}}` on stdout).
    #[arg(long, global = true)]
    json: bool,
    /// Log more on stderr: -v info, -vv debug, -vvv trace (idsync's own crates; warnings are
    /// always shown). `RUST_LOG`, when set, replaces this.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a sample directory, HR table and configuration, run one full cycle, summarise.
    Demo {
        /// Where to write the sample estate (replaced if it exists).
        #[arg(long, default_value = "idsync-demo")]
        dir: PathBuf,
        /// How many people.
        #[arg(long, default_value_t = 300)]
        people: usize,
        /// Where the profile store listens during the demo (default 127.0.0.1:8080, where
        /// `idsync serve` listens, when it is free; another free port when it is not).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Read the directory from a throwaway slapd (Debian's `slapd` package) seeded with the
        /// sample directory, instead of the LDIF file.
        #[arg(long)]
        ldap: bool,
    },
    /// Run a step on one connector, or a cycle over all.
    Run {
        /// full-import, delta-import, full-sync, delta-sync, export, full-cycle, delta-cycle, or
        /// the name of a `[[run_profile]]`.
        what: String,
        /// The connector (steps only).
        #[arg(long)]
        connector: Option<String>,
        /// Import and sync, export nothing (staging mode).
        #[arg(long)]
        staging: bool,
        /// Release the accidental-delete protection for steps that delete (or disable) at most
        /// N objects: exports, and full imports that find objects gone.
        #[arg(long, value_name = "N")]
        allow_deletes: Option<u64>,
        /// Wait up to this many seconds for another run on the same store to finish (by
        /// default a second run stops at once and says which process holds the store).
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        wait: u64,
        /// Retry failed exports now instead of waiting for their backoff.
        #[arg(long)]
        retry_now: bool,
    },
    /// Run the configuration's `[[schedule]]`s unattended, one run at a time, until SIGTERM or
    /// SIGINT (the step in progress completes; a second signal ends at once, rolling it back).
    /// Holds the store's runner lock while it runs. Logs on stderr, at info by default.
    Service {
        /// Log lines as text, or as JSON objects one a line.
        #[arg(long, value_enum, default_value = "text")]
        log_format: log::Format,
    },
    /// Pause or resume the service's schedule (kept in the store: a running service sees it),
    /// or show each schedule's state.
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
    },
    /// Show every pending export, attribute by attribute, without sending anything.
    Plan {
        #[arg(long)]
        connector: Option<String>,
    },
    /// Past runs with their statistics; with --run, one run with its per-object errors.
    History {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        run: Option<i64>,
        /// With --run: every export the run sent (what, to which system, when, by which rule).
        #[arg(long, requires = "run")]
        exports: bool,
        /// Print times in the local time zone rather than UTC (both RFC 3339; `--json` keeps
        /// seconds since the epoch).
        #[arg(long)]
        local_time: bool,
    },
    /// A metaverse object (by id) or a connector-space object (by anchor or DN), with where each
    /// value came from; with --not-joined, every object of a connector joined to no person.
    Show {
        #[arg(required_unless_present = "not_joined")]
        id: Option<String>,
        #[arg(long)]
        connector: Option<String>,
        /// List the connector's objects that are joined to no person (augmenting rows whose
        /// person does not exist).
        #[arg(long, requires = "connector", conflicts_with = "id")]
        not_joined: bool,
    },
    /// Run the profile store service (SCIM 2.0 API, photos, change feed).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        store: serve::StoreArgs,
        #[command(flatten)]
        decode: serve::DecodeArgs,
    },
    /// Profile store bearer tokens: create, list, revoke.
    Token {
        #[command(subcommand)]
        action: serve::TokenCommand,
    },
    /// Connector tools: `connector check --connector NAME` drives a process connector's program
    /// through the protocol and lists every violation.
    Connector {
        #[command(subcommand)]
        action: ConnectorCommand,
    },
    /// The metaverse and every connector space as JSON lines (one object a line), for comparing
    /// two stores.
    Dump {
        /// Binary values (photos) in full, as base64, rather than as size and hash.
        #[arg(long)]
        binary: bool,
    },
    /// Benchmarks on generated data: ldif-import, full-sync, delta-cycle, process-import, profile-export,
    /// profile-api, augment-sql, ldap-import, ldap-export, ad-import.
    Bench {
        suite: String,
        #[arg(long, default_value_t = 100_000)]
        people: usize,
        /// Changes for delta-cycle.
        #[arg(long, default_value_t = 100)]
        changes: usize,
    },
}

#[derive(Subcommand)]
enum ScheduleAction {
    /// No scheduled run starts until `resume` (a run in progress goes on).
    Pause,
    /// Scheduled runs start again; those due while paused are not made up.
    Resume,
    /// Paused or not, and each schedule: what it runs, when, its last run and its next.
    Status,
}

fn main() {
    // Known before parsing, so bad usage under `--json` is answered in JSON too.
    let json = std::env::args_os().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if json && e.use_stderr() => {
            let text = e.render().to_string();
            let message = text.trim().strip_prefix("error: ").unwrap_or(text.trim());
            output::json_error(message, &[], None, 2);
        }
        Err(e) => e.exit(),
    };
    match &cli.command {
        Command::Service { log_format } => {
            log::init(cli.verbose.saturating_add(1), *log_format, true)
        }
        _ => log::init(cli.verbose, log::Format::Text, false),
    }
    if !matches!(cli.command, Command::Serve { .. }) {
        quiet_on_closed_stdout();
    }
    let json = cli.json;
    if let Err(e) = run(cli) {
        if json {
            let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
            let at = e
                .chain()
                .find_map(|c| c.downcast_ref::<idsync_rules::ConfigError>());
            output::json_error(&e.to_string(), &causes, at, 1);
        }
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}

/// A reader that closes our stdout (`idsync history | head`) ends the command quietly, as it
/// ends any Unix tool: the default action of SIGPIPE, which Rust's runtime sets to "ignore" (so
/// that every later print would panic with "Broken pipe"). Sockets are unaffected: the standard
/// library sends on them with `MSG_NOSIGNAL`. `serve` keeps the runtime's choice, being a
/// server that must outlive any one peer.
fn quiet_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Loads the configuration and opens the store it names.
pub(crate) fn open_engine(config: &Path) -> Result<Engine<AnyStore>> {
    let (rules, base) = load_rules(config)?;
    open_with(config, rules, base)
}

/// Like [`open_engine`], holding the store's runner lock first (one runner per store): a
/// second run waits up to `wait` or says who holds the store.
pub(crate) fn open_engine_locked(
    config: &Path,
    what: &str,
    wait: std::time::Duration,
) -> Result<(Engine<AnyStore>, RunnerLock)> {
    let (rules, base) = load_rules(config)?;
    let lock = RunnerLock::acquire_for(&store_location(config, &rules, &base)?, what, wait)?;
    let mut engine = open_with(config, rules, base)?;
    let interrupted = engine.store.mark_interrupted()?;
    if interrupted > 0 {
        eprintln!("note: {interrupted} step(s) of an earlier run were interrupted (the process ended mid-step); they were rolled back and are marked so in `idsync history`");
    }
    Ok((engine, lock))
}

/// Steps recorded as running while no process holds the store's runner lock were interrupted
/// (their process died): marked so now, with how long they ran and their last counts, as the
/// next run would mark them. The lock is taken only when such a step is recorded, and only if
/// it is free, for as long as the marking takes: a running run is never touched.
fn settle_dead_runs(config: &Path, engine: &mut Engine<AnyStore>) -> Result<()> {
    if !engine.store.runs(20)?.iter().any(|r| r.status == "running") {
        return Ok(());
    }
    let (rules, base) = load_rules(config)?;
    let Ok(_lock) = RunnerLock::acquire_for(
        &store_location(config, &rules, &base)?,
        "history",
        std::time::Duration::ZERO,
    ) else {
        return Ok(());
    };
    let interrupted = engine.store.mark_interrupted()?;
    if interrupted > 0 {
        eprintln!("note: {interrupted} step(s) were interrupted (their process ended mid-step); they were rolled back and are marked so below");
    }
    Ok(())
}

fn load_rules(config: &Path) -> Result<(Rules, PathBuf)> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read the configuration file {}", config.display()))?;
    let rules = Rules::load(&text, &config.display().to_string())?;
    Ok((rules, config_dir(config)))
}

/// The configuration's directory: relative paths in it (and hooks) start there.
fn config_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `idsync run PROFILE`: the run profile's steps and hooks, as one run in history.
fn run_profile(
    engine: &mut Engine<AnyStore>,
    config: &Path,
    profile: &idsync_rules::RunProfile,
    as_json: bool,
) -> Result<()> {
    let stop = idsync_service::install_signal_handlers()?;
    engine.options.stop = Some(std::sync::Arc::clone(&stop));
    let run = engine
        .store
        .run_start(&format!("run-profile:{}", profile.name), None)?;
    let out = idsync_service::run_profile(engine, profile, run.0, &config_dir(config), Some(&stop));
    let status = out.status();
    engine
        .store
        .run_finish(run, status, &out.stats(), out.error.as_deref(), &[])?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "run": run, "profile": profile.name, "status": status,
                "steps": out.steps, "hooks": out.hooks, "message": out.error,
            }))?
        );
    } else {
        output::steps(&out.steps);
        output::errors(&out.steps);
    }
    if let Some(m) = out.error {
        bail!("run profile `{}` (run {run}) {status}: {m}", profile.name);
    }
    Ok(())
}

/// Where the configuration's store is: its SQLite file, or its PostgreSQL database with the
/// password read from where the configuration says it is.
pub(crate) fn store_location(config: &Path, rules: &Rules, base: &Path) -> Result<StoreLocation> {
    Ok(match &rules.store {
        idsync_rules::StoreSetting::File(path) => StoreLocation::File(base.join(path)),
        idsync_rules::StoreSetting::Postgres { url, password } => {
            let password = match password {
                Some(reference) => Some(
                    idsync_connectors::resolve_secret(reference, base)
                        .map_err(|e| anyhow::anyhow!("{}: store password: {e}", config.display()))?
                        .expose()
                        .to_owned(),
                ),
                None => None,
            };
            StoreLocation::Postgres(PgLocation {
                url: url.clone(),
                password,
            })
        }
    })
}

fn open_with(config: &Path, rules: Rules, base: PathBuf) -> Result<Engine<AnyStore>> {
    let store = AnyStore::open(&store_location(config, &rules, &base)?)?;
    let mut engine = Engine::new(rules, store, base).with_opener(idsync_connectors_all::open);
    if let Some((line, message)) = engine.check_connectors().into_iter().next() {
        return Err(idsync_rules::ConfigError {
            file: config.display().to_string(),
            line,
            column: 1,
            message,
        }
        .into());
    }
    Ok(engine)
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// Conformance check of a `type = "process"` connector: handshake, two full imports that
    /// agree, a delta from the last watermark, an export of values the object already has and
    /// its confirming import (where the program offers them). Nothing is stored.
    Check {
        #[arg(long)]
        connector: String,
    },
}

fn connector_check(config: &Path, name: &str, json: bool) -> Result<()> {
    let (rules, base) = load_rules(config)?;
    let Some(c) = rules.connector(name) else {
        bail!("{}: no connector `{name}`", config.display());
    };
    if c.kind != "process" {
        bail!(
            "{}:{}: connector `{name}` is of type `{}`; `idsync connector check` drives process connectors",
            config.display(),
            c.line,
            c.kind
        );
    }
    let report = idsync_connectors_all::check_process(&c.name, &c.settings, &base)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for check in &report.checks {
            match &check.violation {
                None => println!(
                    "ok    {}: {}",
                    check.name,
                    check.note.as_deref().unwrap_or("")
                ),
                Some(v) => println!("FAIL  {}: {v}", check.name),
            }
        }
    }
    let n = report.violations();
    if n > 0 {
        bail!("connector `{name}`: {n} violation(s) of the connector protocol");
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo {
            dir,
            people,
            listen,
            ldap,
        } => demo::run(&dir, people, listen, ldap, cli.json)?,
        Command::Run {
            what,
            connector,
            staging,
            allow_deletes,
            wait,
            retry_now,
        } => {
            let running = match &connector {
                Some(c) => format!("run {what} --connector {c}"),
                None => format!("run {what}"),
            };
            let (mut engine, _lock) =
                open_engine_locked(&cli.config, &running, std::time::Duration::from_secs(wait))?;
            engine.options.staging = staging;
            engine.options.allow_deletes = allow_deletes;
            engine.options.retry_now = retry_now;
            if !cli.json {
                engine = engine.with_progress(output::progress());
            }
            if let Some(profile) = engine.rules.run_profile(&what).cloned() {
                if connector.is_some() {
                    bail!("run profile `{what}` names its own connectors: drop --connector");
                }
                return run_profile(&mut engine, &cli.config, &profile, cli.json);
            }
            let cycle = match what.as_str() {
                "full-cycle" => Some(CycleKind::Full),
                "delta-cycle" => Some(CycleKind::Delta),
                _ => None,
            };
            if let Some(kind) = cycle {
                let report = engine.run_cycle(kind)?;
                if cli.json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    output::cycle(&report, &mut engine)?;
                }
                return Ok(());
            }
            let Some(step) = Step::parse(&what) else {
                bail!("unknown step `{what}`: say full-import, delta-import, full-sync, delta-sync, export, full-cycle or delta-cycle");
            };
            let Some(connector) = connector else {
                bail!("a step runs on one connector: add --connector NAME");
            };
            let report = engine.run_step(step, &connector)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                output::steps(std::slice::from_ref(&report));
                output::errors(std::slice::from_ref(&report));
            }
        }
        Command::Service { .. } => {
            let stop = idsync_service::install_signal_handlers()?;
            let what = format!("service -c {}", cli.config.display());
            let (mut engine, _lock) =
                open_engine_locked(&cli.config, &what, std::time::Duration::ZERO)?;
            tracing::info!(config = %cli.config.display(), pid = std::process::id(), schedules = engine.rules.schedules.len(), "service started");
            idsync_service::Service {
                engine: &mut engine,
                dir: config_dir(&cli.config),
                stop,
            }
            .run()?;
        }
        Command::Schedule { action } => {
            let (rules, base) = load_rules(&cli.config)?;
            let mut store = AnyStore::open(&store_location(&cli.config, &rules, &base)?)?;
            match action {
                ScheduleAction::Pause => {
                    if idsync_service::pause(&mut store)? {
                        println!("the schedule is paused: no scheduled run starts until `idsync schedule resume`");
                    } else {
                        println!("the schedule was paused already");
                    }
                }
                ScheduleAction::Resume => {
                    if idsync_service::resume(&mut store)? {
                        println!("the schedule is resumed");
                    } else {
                        println!("the schedule was not paused");
                    }
                }
                ScheduleAction::Status => {
                    let paused = idsync_service::paused(&mut store)?;
                    let schedules = idsync_service::status(&mut store, &rules.schedules)?;
                    output::schedule_status(paused.as_deref(), &schedules, cli.json)?;
                }
            }
        }
        Command::Plan { connector } => {
            let mut engine = open_engine(&cli.config)?;
            output::plan(&mut engine, connector.as_deref(), cli.json)?;
        }
        Command::History {
            limit,
            run,
            exports,
            local_time,
        } => {
            let mut engine = open_engine(&cli.config)?;
            settle_dead_runs(&cli.config, &mut engine)?;
            let zone = output::Zone::new(local_time);
            match run {
                Some(id) if exports => audit::exports(&mut engine, id, cli.json, zone)?,
                _ => output::history(&mut engine, limit, run, cli.json, zone)?,
            }
        }
        Command::Show {
            id,
            connector,
            not_joined,
        } => {
            let mut engine = open_engine(&cli.config)?;
            match (id, connector) {
                (_, Some(c)) if not_joined => output::not_joined(&mut engine, &c, cli.json)?,
                (Some(id), connector) => {
                    output::show(&mut engine, &id, connector.as_deref(), cli.json)?
                }
                (None, _) => bail!("say which object to show, or --connector NAME --not-joined"),
            }
        }
        Command::Serve {
            listen,
            store,
            decode,
        } => serve::serve(listen, &store, &decode)?,
        Command::Token { action } => serve::token(action, cli.json)?,
        Command::Connector {
            action: ConnectorCommand::Check { connector },
        } => connector_check(&cli.config, &connector, cli.json)?,
        Command::Dump { binary } => {
            let mut engine = open_engine(&cli.config)?;
            dump::dump(&mut engine, binary)?;
        }
        Command::Bench {
            suite,
            people,
            changes,
        } => {
            let result = bench::run(&suite, people, changes)?;
            if cli.json {
                println!("{}", serde_json::to_string(&result)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&result)?);
            }
        }
    }
    Ok(())
}

//! `idsync`: the command line. Parses arguments, loads the configuration and the store, runs
//! what was asked through the engine, and prints a summary (a table, or JSON with `--json`).
//!
//! Exit codes: 0 done (object-level errors are listed in the summary and in `idsync history`),
//! 1 failed (the message says what to change), 2 bad usage.

mod bench;
mod bench_api;
mod output;
mod serve;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use idsync_engine::{CycleKind, Engine, Step};
use idsync_rules::Rules;
use idsync_store::SqliteStore;
use std::path::{Path, PathBuf};

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
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
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
    },
    /// Run a step on one connector, or a cycle over all.
    Run {
        /// full-import, delta-import, full-sync, delta-sync, export, full-cycle or delta-cycle.
        what: String,
        /// The connector (steps only).
        #[arg(long)]
        connector: Option<String>,
        /// Import and sync, export nothing (staging mode).
        #[arg(long)]
        staging: bool,
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
    },
    /// A metaverse object (by id) or a connector-space object (by anchor or DN), with where each
    /// value came from.
    Show {
        id: String,
        #[arg(long)]
        connector: Option<String>,
    },
    /// Run the profile store service (SCIM 2.0 API, photos, change feed).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        store: serve::StoreArgs,
    },
    /// Profile store bearer tokens: create, list, revoke.
    Token {
        #[command(subcommand)]
        action: serve::TokenCommand,
    },
    /// Benchmarks on generated data: ldif-import, full-sync, delta-cycle, profile-api.
    Bench {
        suite: String,
        #[arg(long, default_value_t = 100_000)]
        people: usize,
        /// Changes for delta-cycle.
        #[arg(long, default_value_t = 100)]
        changes: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}

/// Loads the configuration and opens the store it names.
pub(crate) fn open_engine(config: &Path) -> Result<Engine<SqliteStore>> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read the configuration file {}", config.display()))?;
    let rules = Rules::load(&text, &config.display().to_string())?;
    let base = config
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let store = SqliteStore::open(&base.join(&rules.store_path))?;
    let mut engine = Engine::new(rules, store, base).with_opener(idsync_connectors_all::open);
    if let Some((line, message)) = engine.check_connectors().into_iter().next() {
        bail!("{}:{line}: {message}", config.display());
    }
    Ok(engine)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo { dir, people } => {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot replace {}", dir.display()))?;
            }
            let mut opts = idsync_sample::Options::demo();
            opts.people = people;
            let g = idsync_sample::generate(&dir, &opts)
                .with_context(|| format!("cannot write the sample estate to {}", dir.display()))?;
            let mut engine = open_engine(&g.config)?;
            if !cli.json {
                engine = engine.with_progress(output::progress());
                println!(
                    "Sample estate in {}: {} people ({} inetOrgPerson, {} plain person), {} devices, {} groups, {} photos, {} HR rows.\n",
                    dir.display(),
                    g.people,
                    g.inet_org_people,
                    g.plain_people,
                    g.devices,
                    g.groups,
                    g.photos,
                    g.hr_rows
                );
            }
            let report = engine.run_cycle(CycleKind::Full)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                output::cycle(&report, &mut engine)?;
                let c = g.config.display();
                println!(
                    "\nThe profiles are in {}. Try:\n  idsync -c {c} show {} --connector directory   (a person and where each value came from)\n  idsync -c {c} history\n  idsync -c {c} plan\n  idsync -c {c} run delta-cycle",
                    dir.join("profiles.csv").display(),
                    idsync_sample::person_dn(1),
                );
            }
        }
        Command::Run {
            what,
            connector,
            staging,
        } => {
            let mut engine = open_engine(&cli.config)?;
            engine.options.staging = staging;
            if !cli.json {
                engine = engine.with_progress(output::progress());
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
        Command::Plan { connector } => {
            let mut engine = open_engine(&cli.config)?;
            output::plan(&mut engine, connector.as_deref(), cli.json)?;
        }
        Command::History { limit, run } => {
            let mut engine = open_engine(&cli.config)?;
            output::history(&mut engine, limit, run, cli.json)?;
        }
        Command::Show { id, connector } => {
            let mut engine = open_engine(&cli.config)?;
            output::show(&mut engine, &id, connector.as_deref(), cli.json)?;
        }
        Command::Serve { listen, store } => serve::serve(listen, &store)?,
        Command::Token { action } => serve::token(action, cli.json)?,
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

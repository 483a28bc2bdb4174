//! Where the engine's and the connectors' `tracing` events go: one line each on stderr, so a
//! warning (a secret file others can read, a password sent unencrypted, certificate checks
//! turned off) reaches the person running the command. Stdout stays the command's own output
//! (tables, `--json`).
//!
//! The level is `warn` unless raised (connector programs' standard-error lines, target
//! `idsync::connector`, are shown at `info`): each `-v` raises idsync's own crates one step (info,
//! debug, trace) and leaves other libraries at `warn`; `RUST_LOG`, when set, is taken as it is
//! (`tracing-subscriber`'s directive syntax) and replaces both. idsync's own events never carry
//! a secret (a `Secret` prints `***`); what other libraries log at debug or trace under a
//! `RUST_LOG` of the user's choice is theirs.

use tracing_subscriber::EnvFilter;

/// The filter for `verbose` times `-v`, or `RUST_LOG` when it is set and not empty.
fn filter(verbose: u8) -> (EnvFilter, Option<String>) {
    if let Ok(directives) = std::env::var("RUST_LOG") {
        if !directives.trim().is_empty() {
            match EnvFilter::try_new(&directives) {
                Ok(f) => return (f, None),
                Err(e) => {
                    return (
                        EnvFilter::new("warn"),
                        Some(format!(
                            "RUST_LOG `{directives}` is not a filter ({e}); logging warnings only"
                        )),
                    )
                }
            }
        }
    }
    let ours = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // What connector programs write on their standard error (`idsync::connector`, at info) is
    // shown by default: it is the program's own log, and often the only word on why it failed.
    (
        EnvFilter::new(format!("warn,idsync={ours},idsync::connector=info")),
        None,
    )
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line of text per event.
    Text,
    /// One JSON object per line (timestamp, level, target, message and fields), for a log
    /// collector.
    Json,
}

/// Installs the subscriber for this process (once, first thing in `main`). A service
/// (`timestamps`) logs with times and at info by default.
pub fn init(verbose: u8, format: Format, timestamps: bool) {
    use std::io::IsTerminal;
    let (filter, note) = filter(verbose);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose > 0 || format == Format::Json);
    let installed = match (format, timestamps) {
        (Format::Json, _) => builder.json().try_init(),
        (Format::Text, true) => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        (Format::Text, false) => builder
            .with_ansi(std::io::stderr().is_terminal())
            .without_time()
            .try_init(),
    };
    if let Some(note) = note {
        tracing::warn!("{note}");
    }
    // Installing fails only when something installed a subscriber first; it then keeps its own.
    drop(installed);
}

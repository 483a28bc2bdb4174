//! The engine: run profile steps (full and delta import, full and delta sync, export) and the
//! built-in cycles that chain them, over the rules, the store and the connectors.
//!
//! The engine owns the semantics of DESIGN.md ("Semantics that matter"): obsoletion only after a
//! complete read, watermarks that advance only with the changes they cover, joins before
//! projection, precedence, references kept pending until their target arrives, provisioning and
//! deprovisioning, batched export with per-object errors, and confirming imports. Each step runs
//! in one store transaction: it commits whole or leaves the store as it was. The engine knows
//! connectors and the store only through their traits.

mod cycle;
mod dropper;
mod export;
mod import;
mod safety;
mod stats;
mod sync;
mod written;

pub use cycle::{CycleKind, CycleReport};
pub use stats::Stats;
pub use sync::not_joined_reason;

use idsync_connectors::{crash_point, Connector};
use idsync_model::{ConnectorId, RunId};
use idsync_rules::Rules;
use idsync_store::{ObjectError, Store};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] idsync_store::Error),
    #[error(transparent)]
    Connector(#[from] idsync_connectors::Error),
    #[error("no connector named `{0}` in the configuration")]
    UnknownConnector(String),
    #[error("{what} of `{connector}` would delete or disable {deletes} of {space} objects, {why}: {sample}. Nothing was sent or stored{}. If this is intended, run again with --allow-deletes {deletes}", safety::plan_hint(.what))]
    DeleteThreshold {
        what: &'static str,
        connector: String,
        deletes: u64,
        space: u64,
        why: String,
        sample: String,
    },
    /// [`Options::stop`] was set: a cycle stops between two steps (each step before it
    /// committed whole), so a process asked to end finishes nothing half-way.
    #[error("stopped between steps: the process was asked to end (the steps done are kept; the next run goes on)")]
    StopRequested,
    #[error("{step} of `{connector}` stopped: {message}")]
    Stopped {
        step: String,
        connector: String,
        message: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A run profile step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    FullImport,
    DeltaImport,
    FullSync,
    DeltaSync,
    Export,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::FullImport => "full-import",
            Step::DeltaImport => "delta-import",
            Step::FullSync => "full-sync",
            Step::DeltaSync => "delta-sync",
            Step::Export => "export",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        Some(match s {
            "full-import" => Step::FullImport,
            "delta-import" => Step::DeltaImport,
            "full-sync" => Step::FullSync,
            "delta-sync" => Step::DeltaSync,
            "export" => Step::Export,
            _ => return None,
        })
    }
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub run: RunId,
    pub step: Step,
    pub connector: String,
    /// Set when the step ran as another (a delta import that had to be full, and why).
    pub notes: Vec<String>,
    pub stats: Stats,
    pub errors: Vec<ObjectError>,
    pub seconds: f64,
}

/// Reports what the running step has done so far to the store, outside the step's transaction
/// ([`idsync_store::Runs::run_progress`]), so a step whose process dies is kept in history with
/// how long it ran and these counts. Called every thousand objects or so. A report that cannot
/// be recorded stops nothing: the step's own data does not depend on it.
pub(crate) fn heartbeat<S: Store>(store: &mut S, report: &StepReport) {
    let mut stats = serde_json::to_value(&report.stats).unwrap_or_default();
    stats["object_errors"] = (report.errors.len() as u64).into();
    let _ = store.run_progress(
        report.run,
        &serde_json::json!({ "stats": stats, "notes": &report.notes }),
    );
}

/// Progress reporting for long steps; the CLI draws bars, tests ignore it.
pub trait Progress {
    fn start(&self, _label: &str, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}

/// No progress reporting.
pub struct Quiet;
impl Progress for Quiet {}

/// Options that change what a step does.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Import and sync only; export nothing (Entra Connect's staging mode).
    pub staging: bool,
    /// Releases the accidental-delete protection for a step that deletes at most this many.
    pub allow_deletes: Option<u64>,
    /// Retry failed exports now, not waiting for their backoff.
    pub retry_now: bool,
    /// When set (a service got SIGTERM), a cycle starts no further step: the step in progress
    /// completes or rolls back as always, and the cycle returns [`Error::StopRequested`].
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Options {
    /// Whether a stop was asked for (see [`Options::stop`]).
    pub fn stop_requested(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Opens a connector of a configured type: (name, type, settings, base directory). The binary
/// passes one that knows every connector crate; the default knows the file connectors.
pub type Opener = fn(
    &ConnectorId,
    &str,
    &toml::Table,
    &std::path::Path,
) -> idsync_connectors::Result<Box<dyn Connector>>;

pub struct Engine<S: Store> {
    pub rules: Rules,
    opener: Opener,
    pub store: S,
    base_dir: PathBuf,
    connectors: HashMap<ConnectorId, Box<dyn Connector>>,
    progress: Box<dyn Progress>,
    pub options: Options,
    /// Set while a cycle runs its confirming imports (crash points and reports name them).
    confirming: bool,
}

/// Keys of the per-connector state the engine keeps.
pub(crate) mod state {
    pub const WATERMARK: &str = "watermark";
    pub const SCOPE_VERSION: &str = "scope_version";
    pub const SYNC_VERSION: &str = "sync_version";
}

impl<S: Store> Engine<S> {
    /// `base_dir` resolves the connectors' relative paths (the configuration file's directory).
    pub fn new(rules: Rules, store: S, base_dir: PathBuf) -> Self {
        Self {
            rules,
            store,
            base_dir,
            opener: idsync_connectors::open,
            connectors: HashMap::new(),
            progress: Box::new(Quiet),
            options: Options::default(),
            confirming: false,
        }
    }

    pub fn with_progress(mut self, p: Box<dyn Progress>) -> Self {
        self.progress = p;
        self
    }

    /// Sets how connectors are opened (see [`Opener`]).
    pub fn with_opener(mut self, opener: Opener) -> Self {
        self.opener = opener;
        self
    }

    /// Replaces a connector instance (tests use this to inject a failing connector).
    pub fn set_connector(&mut self, c: Box<dyn Connector>) {
        self.connectors.insert(c.id().clone(), c);
    }

    pub(crate) fn connector_id(&self, name: &str) -> Result<ConnectorId> {
        self.rules
            .connector(name)
            .map(|c| c.name.clone())
            .ok_or_else(|| Error::UnknownConnector(name.to_owned()))
    }

    /// Takes the connector out of the map while a step uses it (so the step can borrow the
    /// engine mutably), opening it on first use.
    pub(crate) fn take_connector(&mut self, id: &ConnectorId) -> Result<Box<dyn Connector>> {
        if let Some(c) = self.connectors.remove(id) {
            return Ok(c);
        }
        let r = self
            .rules
            .connector(id.as_str())
            .ok_or_else(|| Error::UnknownConnector(id.to_string()))?;
        Ok((self.opener)(id, &r.kind, &r.settings, &self.base_dir)?)
    }

    /// Opens every configured connector, so a bad connector setting is reported when the
    /// configuration is loaded rather than at the first step. Returns each failure with the line
    /// of the setting at fault (of its connector's declaration when no one setting is).
    pub fn check_connectors(&mut self) -> Vec<(usize, String)> {
        let mut failures = Vec::new();
        let ids: Vec<ConnectorId> = self
            .rules
            .connectors
            .iter()
            .map(|c| c.name.clone())
            .collect();
        for id in ids {
            match self.take_connector(&id) {
                Ok(c) => self.put_connector(c),
                Err(e) => {
                    let r = self.rules.connector(id.as_str());
                    let line = match (&e, r) {
                        (
                            Error::Connector(idsync_connectors::Error::Setting { key, .. }),
                            Some(r),
                        ) => r.setting_line(key),
                        (_, Some(r)) => r.line,
                        (_, None) => 1,
                    };
                    failures.push((line, e.to_string()))
                }
            }
        }
        failures
    }

    pub(crate) fn put_connector(&mut self, c: Box<dyn Connector>) {
        self.connectors.insert(c.id().clone(), c);
    }

    /// The step's name in crash points: an import that confirms exports in a cycle is a
    /// `confirming-import`.
    pub(crate) fn step_label(&self, step: Step) -> &'static str {
        match step {
            Step::FullImport | Step::DeltaImport if self.confirming => "confirming-import",
            s => s.name(),
        }
    }

    /// Runs one step on one connector.
    pub fn run_step(&mut self, step: Step, connector: &str) -> Result<StepReport> {
        let id = self.connector_id(connector)?;
        let started = std::time::Instant::now();
        let run = self.store.run_start(step.name(), Some(&id))?;
        let mut report = StepReport {
            run,
            step,
            connector: id.to_string(),
            notes: Vec::new(),
            stats: Stats::default(),
            errors: Vec::new(),
            seconds: 0.0,
        };
        self.store.begin()?;
        let label = self.step_label(step);
        crash_point!("{label}:{id}:begin");
        let outcome = match step {
            Step::FullImport | Step::DeltaImport => {
                self.import(&id, step == Step::FullImport, &mut report)
            }
            Step::FullSync | Step::DeltaSync => self.sync(&id, step == Step::FullSync, &mut report),
            Step::Export => self.export(&id, &mut report),
        };
        self.progress.finish();
        report.seconds = started.elapsed().as_secs_f64();
        report.stats.object_errors = report.errors.len() as u64;
        let stats = serde_json::json!({ "stats": &report.stats, "notes": &report.notes, "seconds": report.seconds });
        match outcome {
            Ok(()) => {
                crash_point!("{label}:{id}:before-commit");
                self.store.commit()?;
                crash_point!("{label}:{id}:committed");
                let status = if report.errors.is_empty() {
                    "success"
                } else {
                    "completed-with-errors"
                };
                self.store
                    .run_finish(run, status, &stats, None, &report.errors)?;
                Ok(report)
            }
            Err(e) => {
                // The step's changes are rolled back whole: a failed import deletes nothing and
                // a failed read leaves the watermark where it was.
                self.store.rollback()?;
                let message = e.to_string();
                self.store
                    .run_finish(run, "failed", &stats, Some(&message), &report.errors)?;
                Err(Error::Stopped {
                    step: step.name().to_owned(),
                    connector: id.to_string(),
                    message,
                })
            }
        }
    }
}

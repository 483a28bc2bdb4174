//! idsync as a service: the `[[schedule]]`s and `[[run_profile]]`s of a configuration, run by
//! one long-running process (`idsync service`) over one store.
//!
//! - [`plan`]: when each schedule is due (intervals, cron in a time zone), what a missed or
//!   overlapped due time becomes, the backoff after a failure. Pure: the clock is a parameter.
//! - [`profile`]: a run profile's steps in order, with their hooks (commands run before and
//!   after a step, whose failure stops the run with its output kept).
//! - [`service`]: the loop that sleeps until a schedule is due, runs it through the engine, and
//!   records it in the run history; the stop flag SIGTERM/SIGINT set.
//!
//! This crate changes nothing of what a step does: it calls the engine's steps and cycles as
//! `idsync run` does. The caller holds the store's runner lock for as long as the service runs.

pub mod plan;
pub mod profile;
pub mod service;

pub use profile::{run_profile, ProfileOutcome};
pub use service::{
    install_signal_handlers, pause, paused, resume, run_target, status, Ended, Service,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] idsync_store::Error),
    #[error(transparent)]
    Engine(#[from] idsync_engine::Error),
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

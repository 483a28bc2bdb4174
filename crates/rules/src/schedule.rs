//! Schedules and run profiles, compiled from `[[schedule]]` and `[[run_profile]]`: what the
//! service runs and when, as data. Computing due times needs the clock and belongs to the
//! service (`idsync-service`); this module only checks the text (durations, cron expressions,
//! time zones, names) and reports a bad one at the line of its key.

use crate::config::{Config, Overlap};
use crate::{ConnectorRules, Ctx};
use idsync_model::ConnectorId;
use std::time::Duration;
use toml::Spanned;

/// The steps a run profile may name, as `idsync run` takes them.
pub const STEPS: [&str; 5] = [
    "full-import",
    "delta-import",
    "full-sync",
    "delta-sync",
    "export",
];

/// A built-in cycle (`idsync run full-cycle|delta-cycle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cycle {
    Full,
    Delta,
}

impl Cycle {
    pub fn parse(s: &str) -> Option<Cycle> {
        match s {
            "full-cycle" => Some(Cycle::Full),
            "delta-cycle" => Some(Cycle::Delta),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cycle::Full => "full-cycle",
            Cycle::Delta => "delta-cycle",
        }
    }
}

/// What a schedule runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunTarget {
    Cycle(Cycle),
    /// A run profile, by name (checked to exist).
    Profile(String),
}

impl RunTarget {
    pub fn name(&self) -> &str {
        match self {
            RunTarget::Cycle(c) => c.name(),
            RunTarget::Profile(p) => p,
        }
    }
}

/// When a schedule is due.
#[derive(Debug, Clone)]
pub enum When {
    Every(Duration),
    Cron {
        expression: String,
        cron: Box<croner::Cron>,
        zone: chrono_tz::Tz,
    },
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub run: RunTarget,
    pub when: When,
    pub staging: bool,
    pub overlap: Overlap,
    pub retry: Duration,
    pub retry_max: Duration,
    pub catch_up: bool,
    pub line: usize,
}

impl Schedule {
    /// The delay before the next attempt after `failures` failed runs in a row: `retry`,
    /// doubling, at most `retry_max`.
    pub fn retry_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.retry
            .saturating_mul(1u32 << doublings)
            .min(self.retry_max)
    }
}

#[derive(Debug, Clone)]
pub struct ProfileStep {
    pub connector: ConnectorId,
    /// One of [`STEPS`].
    pub step: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunProfile {
    pub name: String,
    pub steps: Vec<ProfileStep>,
    pub line: usize,
}

fn duration(cx: &Ctx, s: &Spanned<String>, key: &str) -> Result<Duration, crate::ConfigError> {
    match humantime::parse_duration(s.get_ref().trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => cx.err(s.span(), format!("`{key}` must be longer than zero")),
        Err(e) => cx.err(
            s.span(),
            format!(
                "`{key} = \"{}\"` is not a duration ({e}): say e.g. \"30s\", \"15m\", \"1h 30m\"",
                s.get_ref()
            ),
        ),
    }
}

pub(crate) fn compile(
    cx: &Ctx,
    config: &Config,
    connectors: &[ConnectorRules],
) -> Result<(Vec<Schedule>, Vec<RunProfile>), crate::ConfigError> {
    let mut profiles: Vec<RunProfile> = Vec::new();
    for p in &config.run_profiles {
        let r = p.get_ref();
        let name = r.name.get_ref().trim();
        if name.is_empty() {
            return cx.err(r.name.span(), "a run profile needs a name");
        }
        if Cycle::parse(name).is_some() || STEPS.contains(&name) {
            return cx.err(
                r.name.span(),
                format!("run profile `{name}` has the name of a built-in step or cycle: name it otherwise"),
            );
        }
        if profiles.iter().any(|o| o.name == name) {
            return cx.err(
                r.name.span(),
                format!("run profile `{name}` is declared twice"),
            );
        }
        if r.steps.is_empty() {
            return cx.err(
                p.span(),
                format!(
                    "run profile `{name}` has no [[run_profile.step]]: say which steps it runs"
                ),
            );
        }
        let mut steps = Vec::new();
        for s in &r.steps {
            let s = s.get_ref();
            let c = s.connector.get_ref();
            let Some(conn) = connectors.iter().find(|x| x.name.as_str() == c) else {
                return cx.err(
                    s.connector.span(),
                    format!("run profile `{name}`: unknown connector `{c}`"),
                );
            };
            let step = s.step.get_ref().as_str();
            if !STEPS.contains(&step) {
                return cx.err(
                    s.step.span(),
                    format!(
                        "run profile `{name}`: unknown step `{step}`: say one of {}",
                        STEPS.join(", ")
                    ),
                );
            }
            steps.push(ProfileStep {
                connector: conn.name.clone(),
                step: step.to_owned(),
                before: s.before.clone().filter(|c| !c.trim().is_empty()),
                after: s.after.clone().filter(|c| !c.trim().is_empty()),
            });
        }
        profiles.push(RunProfile {
            name: name.to_owned(),
            steps,
            line: crate::config::line_col(cx.source, p.span().start).0,
        });
    }

    let mut schedules: Vec<Schedule> = Vec::new();
    for s in &config.schedules {
        let r = s.get_ref();
        let what = r.run.get_ref().trim();
        let run = match Cycle::parse(what) {
            Some(c) => RunTarget::Cycle(c),
            None if profiles.iter().any(|p| p.name == what) => RunTarget::Profile(what.to_owned()),
            None => {
                return cx.err(
                    r.run.span(),
                    format!("schedule: `run = \"{what}\"` is neither full-cycle, delta-cycle nor a [[run_profile]]'s name"),
                )
            }
        };
        let name = match &r.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                return cx.err(n.span(), "a schedule's name cannot be empty")
            }
            Some(n) => n.get_ref().trim().to_owned(),
            None => what.to_owned(),
        };
        if schedules.iter().any(|o| o.name == name) {
            let span = r.name.as_ref().map_or(s.span(), Spanned::span);
            return cx.err(
                span,
                format!("schedule `{name}` is declared twice (give each a distinct `name`)"),
            );
        }
        let when = match (&r.every, &r.cron) {
            (Some(e), None) => {
                if let Some(z) = &r.time_zone {
                    return cx.err(z.span(), "`time_zone` is for `cron`; `every` needs none");
                }
                When::Every(duration(cx, e, "every")?)
            }
            (None, Some(c)) => {
                let expression = c.get_ref().trim().to_owned();
                let cron = match expression.parse::<croner::Cron>() {
                    Ok(cron) => cron,
                    Err(e) => {
                        return cx.err(
                            c.span(),
                            format!("`cron = \"{expression}\"` is not a cron expression: {e}"),
                        )
                    }
                };
                let zone = match &r.time_zone {
                    None => chrono_tz::UTC,
                    Some(z) => match z.get_ref().trim().parse::<chrono_tz::Tz>() {
                        Ok(zone) => zone,
                        Err(_) => {
                            return cx.err(
                                z.span(),
                                format!(
                                    "`time_zone = \"{}\"` is not an IANA time zone name (say e.g. \"Europe/Paris\" or \"UTC\")",
                                    z.get_ref()
                                ),
                            )
                        }
                    },
                };
                When::Cron {
                    expression,
                    cron: Box::new(cron),
                    zone,
                }
            }
            (Some(_), Some(c)) => {
                return cx.err(c.span(), format!("schedule `{name}` has both `every` and `cron`: keep one"))
            }
            (None, None) => {
                return cx.err(
                    s.span(),
                    format!("schedule `{name}` says neither `every` (\"30m\") nor `cron` (\"*/30 * * * *\")"),
                )
            }
        };
        let retry = match &r.retry {
            Some(d) => duration(cx, d, "retry")?,
            None => Duration::from_secs(30),
        };
        let retry_max = match &r.retry_max {
            Some(d) => duration(cx, d, "retry_max")?,
            None => Duration::from_secs(3600),
        };
        schedules.push(Schedule {
            name,
            run,
            when,
            staging: r.staging,
            overlap: r.overlap,
            retry,
            retry_max: retry_max.max(retry),
            catch_up: r.catch_up,
            line: crate::config::line_col(cx.source, s.span().start).0,
        });
    }
    Ok((schedules, profiles))
}

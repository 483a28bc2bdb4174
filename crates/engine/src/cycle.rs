//! The built-in cycles (seed 003's full and incremental synchronization): import everything,
//! sync everything, then export and confirm, syncing what the confirming imports bring back
//! (write-back), until nothing is pending or the configured bound is reached.

use crate::{Engine, Result, Step, StepReport};
use idsync_model::ConnectorId;
use idsync_rules::Role;
use idsync_store::Store;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CycleKind {
    Full,
    Delta,
}

#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub kind: CycleKind,
    pub steps: Vec<StepReport>,
    /// Export/confirm/sync passes made.
    pub passes: usize,
    /// Set when the bound was reached with exports still pending.
    pub bound_reached: bool,
    pub pending_exports_left: u64,
    pub seconds: f64,
}

impl<S: Store> Engine<S> {
    /// Connectors in cycle order: directories, then business systems, then targets.
    fn cycle_order(&self) -> Vec<ConnectorId> {
        let mut out = Vec::new();
        for role in [Role::Directory, Role::Business, Role::Target] {
            for c in &self.rules.connectors {
                if c.role == role {
                    out.push(c.name.clone());
                }
            }
        }
        out
    }

    pub fn run_cycle(&mut self, kind: CycleKind) -> Result<CycleReport> {
        let started = std::time::Instant::now();
        let order = self.cycle_order();
        let (import, sync) = match kind {
            CycleKind::Full => (Step::FullImport, Step::FullSync),
            CycleKind::Delta => (Step::DeltaImport, Step::DeltaSync),
        };
        let mut steps = Vec::new();
        for c in &order {
            if self.can_import(c)? {
                steps.push(self.cycle_step(import, c.as_str())?);
            }
        }
        for c in &order {
            steps.push(self.cycle_step(sync, c.as_str())?);
        }
        let mut passes = 0;
        let mut bound_reached = false;
        if !self.options.staging {
            loop {
                let mut exported = Vec::new();
                for c in &order {
                    if self.store.cs_pending_export_count(c)? > 0 {
                        let r = self.cycle_step(Step::Export, c.as_str())?;
                        let any = r.stats.exported > 0;
                        steps.push(r);
                        if any {
                            exported.push(c.clone());
                        }
                    }
                }
                if exported.is_empty() {
                    break;
                }
                passes += 1;
                // Confirming imports: a delta import where the connector's change feed shows its
                // own exports, a full import otherwise.
                for c in &exported {
                    if !self.can_import(c)? {
                        continue;
                    }
                    let confirm = match kind {
                        CycleKind::Delta if self.sees_own_exports(c)? => Step::DeltaImport,
                        _ => Step::FullImport,
                    };
                    self.confirming = true;
                    let r = self.cycle_step(confirm, c.as_str());
                    self.confirming = false;
                    steps.push(r?);
                }
                for c in &order {
                    if self.store.cs_pending_import_count(c)? > 0 {
                        steps.push(self.cycle_step(Step::DeltaSync, c.as_str())?);
                    }
                }
                if passes >= self.rules.max_passes {
                    bound_reached = self.pending_exports()? > 0;
                    break;
                }
            }
        }
        Ok(CycleReport {
            kind,
            steps,
            passes,
            bound_reached,
            pending_exports_left: self.pending_exports()?,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// One step of a cycle, unless a stop was asked for (see `Options::stop`).
    fn cycle_step(&mut self, step: Step, connector: &str) -> Result<StepReport> {
        if self.options.stop_requested() {
            return Err(crate::Error::StopRequested);
        }
        self.run_step(step, connector)
    }

    fn can_import(&mut self, c: &ConnectorId) -> Result<bool> {
        let conn = self.take_connector(c)?;
        let yes = conn.capabilities().full_import;
        self.put_connector(conn);
        Ok(yes)
    }

    fn sees_own_exports(&mut self, c: &ConnectorId) -> Result<bool> {
        let conn = self.take_connector(c)?;
        let yes = conn.capabilities().delta_sees_own_exports;
        self.put_connector(conn);
        Ok(yes)
    }

    pub fn pending_exports(&mut self) -> Result<u64> {
        let mut n = 0;
        for c in self
            .rules
            .connectors
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
        {
            n += self.store.cs_pending_export_count(&c)?;
        }
        Ok(n)
    }
}

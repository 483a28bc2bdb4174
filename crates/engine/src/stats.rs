//! What a step did, counted. Nothing is skipped silently: every object read and not taken is
//! counted under the reason it was not taken.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub read: u64,
    pub added: u64,
    pub updated: u64,
    pub renamed: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Objects read and not taken, by reason.
    pub filtered: BTreeMap<String, u64>,
    pub joined: u64,
    pub projected: u64,
    /// Objects that stayed unjoined (an augmenting row with no person).
    pub disconnectors: u64,
    pub flowed: u64,
    pub provisioned: u64,
    pub deprovisioned: u64,
    pub mv_deleted: u64,
    pub exported: u64,
    pub export_errors: u64,
    /// Objects whose export failed before and waits for its next attempt (backoff).
    #[serde(default)]
    pub export_deferred: u64,
    /// Objects sent without a reference to an object that is held back from the same target
    /// (a uniqueness conflict, a failed add waiting for its next attempt), or kept pending when
    /// that reference was all they had to send: the reference waits, pending, for its object.
    #[serde(default)]
    pub export_waiting: u64,
    pub confirmed: u64,
    pub not_confirmed: u64,
    pub object_errors: u64,
}

impl Stats {
    pub fn filter(&mut self, reason: impl Into<String>) {
        *self.filtered.entry(reason.into()).or_default() += 1;
    }

    pub fn filtered_total(&self) -> u64 {
        self.filtered.values().sum()
    }

    /// The non-zero counters, in a fixed order, for summaries.
    pub fn nonzero(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let fields = [
            ("read", self.read),
            ("added", self.added),
            ("updated", self.updated),
            ("renamed", self.renamed),
            ("deleted", self.deleted),
            ("unchanged", self.unchanged),
            ("joined", self.joined),
            ("projected", self.projected),
            ("not joined", self.disconnectors),
            ("flowed", self.flowed),
            ("provisioned", self.provisioned),
            ("deprovisioned", self.deprovisioned),
            ("mv deleted", self.mv_deleted),
            ("exported", self.exported),
            ("export errors", self.export_errors),
            ("export deferred", self.export_deferred),
            ("export waiting", self.export_waiting),
            ("confirmed", self.confirmed),
            ("not confirmed", self.not_confirmed),
            ("object errors", self.object_errors),
        ];
        for (k, v) in fields {
            if v > 0 {
                out.push((k.to_owned(), v));
            }
        }
        for (reason, n) in &self.filtered {
            out.push((format!("filtered: {reason}"), *n));
        }
        out
    }
}

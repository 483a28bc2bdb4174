//! Accidental-delete protection, one guard for both places a mass delete can start: an export
//! that would delete (or disable) many objects, and a full import that finds much of a connector
//! space gone (an empty file, a wrong base DN, an emptied table). Over the threshold the step
//! stops before anything is sent or stored and says what it would delete; an operator releases it
//! with `--allow-deletes N` ([`crate::Options::allow_deletes`]).

use crate::Error;
use idsync_rules::config::SafetyConfig;

/// How many of the objects that would go are named in the message.
pub(crate) const SAMPLE: usize = 10;

/// Where an operator sees the whole list: pending export deletes are in the plan.
pub(crate) fn plan_hint(what: &str) -> &'static str {
    if what == "export" {
        " (`idsync plan` lists them)"
    } else {
        ""
    }
}

/// Counts what a step would delete, then decides.
pub(crate) struct DeleteGuard {
    limits: SafetyConfig,
    allowed: Option<u64>,
    pub deletes: u64,
    pub sample: Vec<String>,
}

impl DeleteGuard {
    pub fn new(limits: SafetyConfig, allowed: Option<u64>) -> Self {
        Self {
            limits,
            allowed,
            deletes: 0,
            sample: Vec::new(),
        }
    }

    /// One object that would be deleted or disabled.
    pub fn count(&mut self, object: &str) {
        self.deletes += 1;
        if self.sample.len() < SAMPLE {
            self.sample.push(object.to_owned());
        }
    }

    /// Whether the count is over a threshold; `None` when the step may go on.
    fn exceeded(&self, space: u64) -> Option<String> {
        let l = &self.limits;
        if self.deletes > l.max_deletes {
            return Some(format!(
                "more than {} ([safety] max_deletes)",
                l.max_deletes
            ));
        }
        if self.deletes > l.min_deletes_for_share
            && space > 0
            && self.deletes.saturating_mul(100) > l.max_delete_percent.saturating_mul(space)
        {
            return Some(format!(
                "more than {}% of the connector space ([safety] max_delete_percent)",
                l.max_delete_percent
            ));
        }
        None
    }

    /// Stops the step when the deletes are over a threshold and not released.
    pub fn check(&self, what: &'static str, connector: &str, space: u64) -> Result<(), Error> {
        let Some(why) = self.exceeded(space) else {
            return Ok(());
        };
        if self.allowed.is_some_and(|n| self.deletes <= n) {
            return Ok(());
        }
        let more = self.deletes.saturating_sub(self.sample.len() as u64);
        Err(Error::DeleteThreshold {
            what,
            connector: connector.to_owned(),
            deletes: self.deletes,
            space,
            why,
            sample: format!(
                "{}{}",
                self.sample.join("; "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(n: u64, allowed: Option<u64>) -> DeleteGuard {
        let mut g = DeleteGuard::new(SafetyConfig::default(), allowed);
        for i in 0..n {
            g.count(&format!("uid={i}"));
        }
        g
    }

    #[test]
    fn thresholds_by_count_and_share() {
        assert!(guard(500, None).check("export", "t", 100_000).is_ok());
        let e = guard(501, None).check("export", "t", 100_000).unwrap_err();
        assert!(e.to_string().contains("501 of 100000"), "{e}");
        assert!(e.to_string().contains("uid=0; uid=1"), "{e}");
        assert!(e.to_string().contains("and 491 more"), "{e}");
        assert!(e.to_string().contains("--allow-deletes 501"), "{e}");
        // A small space may lose a few objects, not most of them.
        assert!(guard(10, None).check("export", "t", 12).is_ok());
        assert!(guard(11, None).check("export", "t", 12).is_err());
        assert!(guard(11, None).check("export", "t", 100).is_ok());
        // The release covers that many and no more.
        assert!(guard(501, Some(501)).check("export", "t", 1000).is_ok());
        assert!(guard(502, Some(501)).check("export", "t", 1000).is_err());
    }
}

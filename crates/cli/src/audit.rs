//! `idsync history --run ID --exports`: the audit of what a run sent, one export a line (what,
//! to which system, when, by which rule, and the answer), paged from the store.

use crate::output::Zone;
use anyhow::Result;
use idsync_engine::Engine;
use idsync_model::RunId;
use idsync_store::{AnyStore, Runs};
use std::io::Write;

pub fn exports(engine: &mut Engine<AnyStore>, run: i64, as_json: bool, zone: Zone) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut after = 0;
    let mut n = 0u64;
    if as_json {
        write!(out, "[")?;
    }
    loop {
        let page = engine.store.run_exports(RunId(run), after, 1000)?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, r) in page {
            if as_json {
                write!(
                    out,
                    "{}{}",
                    if n == 0 { "\n" } else { ",\n" },
                    serde_json::to_string(&r)?
                )?;
            } else {
                writeln!(
                    out,
                    "{} {} {} {} {}: {} [{}]",
                    zone.format(r.at),
                    r.connector,
                    r.op,
                    r.object,
                    r.result,
                    r.changes,
                    r.rules.join("; ")
                )?;
            }
            n += 1;
        }
    }
    if as_json {
        writeln!(out, "\n]")?;
    } else {
        writeln!(out, "{n} export(s) sent by run {run}.")?;
    }
    out.flush()?;
    Ok(())
}

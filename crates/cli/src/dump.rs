//! `idsync dump`: the metaverse and every connector space as JSON lines, one object a line,
//! streamed page by page (the crash-safety harness compares two dumps; an operator can diff
//! them too). Values print as `show` prints them: photos as size and hash.

use crate::output::show_value;
use anyhow::Result;
use idsync_engine::Engine;
use idsync_model::{Attributes, ConnectorId, CsId, MvId};
use idsync_store::{ConnectorSpaces, CsFilter, Metaverse, SqliteStore};
use serde_json::json;
use std::io::Write;

fn attrs(a: &Attributes) -> serde_json::Value {
    serde_json::Value::Object(
        a.iter()
            .map(|(k, v)| {
                let mut vs: Vec<String> = v.iter().map(show_value).collect();
                vs.sort();
                (k.key(), json!(vs))
            })
            .collect(),
    )
}

pub fn dump(engine: &mut Engine<SqliteStore>) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut after: Option<MvId> = None;
    loop {
        let page = engine.store.mv_scan(after.as_ref(), 1000)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for mv in page {
            let rules = &engine.rules;
            let (a, _) = mv.effective(|a, c| rules.precedence_rank(a.as_str(), c));
            writeln!(
                out,
                "{}",
                json!({"kind": "mv", "id": mv.id.as_str(), "object_type": mv.object_type.as_str(), "attributes": attrs(&a)})
            )?;
        }
    }
    let names: Vec<ConnectorId> = engine
        .rules
        .connectors
        .iter()
        .map(|c| c.name.clone())
        .collect();
    for c in names {
        let mut after: Option<CsId> = None;
        loop {
            let page = engine
                .store
                .cs_scan(&c, CsFilter::All, after.as_ref(), 1000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for o in page {
                let pending_export = o
                    .pending_export
                    .as_ref()
                    .map(|p| serde_json::to_value(p).unwrap_or(serde_json::Value::Null));
                writeln!(
                    out,
                    "{}",
                    json!({
                        "kind": "cs", "connector": c.as_str(), "id": o.id.as_str(),
                        "anchor": o.anchor.as_ref().map(|a| a.as_str()), "dn": o.dn.as_str(),
                        "object_type": o.object_type.as_str(), "mv_id": o.mv_id.as_ref().map(|m| m.as_str()),
                        "hologram": attrs(&o.hologram),
                        "pending_import": o.pending_import.is_some(),
                        "pending_export": pending_export,
                        "awaiting": !o.awaiting.is_empty() || o.awaiting_add,
                        "export_error": o.export_error, "retry_count": o.retry_count,
                        "provisioned": o.provisioned,
                    })
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

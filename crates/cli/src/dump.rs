//! `idsync dump`: the metaverse and every connector space as JSON lines, one object a line,
//! streamed page by page (the crash-safety harness compares two dumps; an operator can diff
//! them too). Attribute names print as configured, values as `show` prints them (photos as
//! size and hash), or with `--binary` binary values in full as base64, so two stores can be
//! compared byte for byte.

use crate::output::show_value;
use anyhow::Result;
use base64::Engine as _;
use idsync_engine::Engine;
use idsync_model::{Attributes, ConnectorId, CsId, MvId, Value};
use idsync_store::{AnyStore, Blobs, ConnectorSpaces, CsFilter, Metaverse};
use serde_json::json;
use std::io::Write;

/// How values print: as `show` prints them, or (`binary`) binary values in full.
struct Values<'a> {
    binary: Option<&'a mut AnyStore>,
}

impl Values<'_> {
    fn value(&mut self, v: &Value) -> Result<String> {
        match (v, self.binary.as_deref_mut()) {
            (Value::Binary(b), Some(store)) => {
                let bytes = match &b.data {
                    Some(d) => d.to_vec(),
                    None => store.blob_get(&b.hash)?.ok_or_else(|| {
                        anyhow::anyhow!("the store holds no bytes for blake3 {}", b.hash)
                    })?,
                };
                Ok(format!(
                    "base64:{}",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                ))
            }
            _ => Ok(show_value(v)),
        }
    }

    fn attrs(&mut self, a: &Attributes) -> Result<serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (k, v) in a.iter() {
            let mut vs = v
                .iter()
                .map(|v| self.value(v))
                .collect::<Result<Vec<_>>>()?;
            vs.sort();
            out.insert(k.as_str().to_owned(), json!(vs));
        }
        Ok(serde_json::Value::Object(out))
    }
}

pub fn dump(engine: &mut Engine<AnyStore>, binary: bool) -> Result<()> {
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
            let mut values = Values {
                binary: binary.then_some(&mut engine.store),
            };
            writeln!(
                out,
                "{}",
                json!({"kind": "mv", "id": mv.id.as_str(), "object_type": mv.object_type.as_str(), "attributes": values.attrs(&a)?})
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
                let pending_import = o
                    .pending_import
                    .as_ref()
                    .map(|p| serde_json::to_value(p).unwrap_or(serde_json::Value::Null));
                let mut values = Values {
                    binary: binary.then_some(&mut engine.store),
                };
                writeln!(
                    out,
                    "{}",
                    json!({
                        "kind": "cs", "connector": c.as_str(), "id": o.id.as_str(),
                        "anchor": o.anchor.as_ref().map(|a| a.as_str()), "dn": o.dn.as_str(),
                        "object_type": o.object_type.as_str(), "object_classes": o.object_classes,
                        "mv_id": o.mv_id.as_ref().map(|m| m.as_str()),
                        "hologram": values.attrs(&o.hologram)?,
                        "pending_import": pending_import,
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

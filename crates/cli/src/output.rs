//! What the command line prints: progress bars, summary tables, plans, history, objects.

use anyhow::Result;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Table};
use idsync_engine::{CycleReport, Engine, Progress, StepReport};
use idsync_model::{
    AttributeChange, Attributes, ConnectorId, CsId, CsObject, MvId, PendingExport, Reference,
    RunId, Value,
};
use idsync_store::{AnyStore, ConnectorSpaces, CsFilter, Metaverse, Runs};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::io::IsTerminal;

struct Bars {
    bar: std::cell::RefCell<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn start(&self, label: &str, total: Option<u64>) {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{msg:28} {bar:30} {pos}/{len} {per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg:28} {pos} objects {per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(label.to_owned());
        *self.bar.borrow_mut() = Some(bar);
    }
    fn advance(&self, n: u64) {
        if let Some(b) = self.bar.borrow().as_ref() {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = self.bar.borrow_mut().take() {
            b.finish_and_clear();
        }
    }
}

/// Progress bars on a terminal, nothing otherwise.
pub fn progress() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars {
            bar: std::cell::RefCell::new(None),
        })
    } else {
        Box::new(idsync_engine::Quiet)
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().map(|h| Cell::new(*h)));
    t
}

fn n(v: u64) -> String {
    if v == 0 {
        String::new()
    } else {
        v.to_string()
    }
}

/// One row per step; counter columns that are empty in every row are left out.
pub fn steps(reports: &[StepReport]) {
    let header = [
        "step",
        "connector",
        "read",
        "added",
        "updated",
        "renamed",
        "deleted",
        "unchanged",
        "filtered",
        "joined",
        "projected",
        "not joined",
        "flowed",
        "provisioned",
        "exported",
        "confirmed",
        "errors",
        "seconds",
    ];
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let s = &r.stats;
            vec![
                r.step.name().to_owned(),
                r.connector.clone(),
                n(s.read),
                n(s.added),
                n(s.updated),
                n(s.renamed),
                n(s.deleted),
                n(s.unchanged),
                n(s.filtered_total()),
                n(s.joined),
                n(s.projected),
                n(s.disconnectors),
                n(s.flowed),
                n(s.provisioned),
                n(s.exported),
                n(s.confirmed),
                n(s.object_errors + s.not_confirmed + s.export_errors),
                format!("{:.2}", r.seconds),
            ]
        })
        .collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| i < 2 || i == header.len() - 1 || rows.iter().any(|r| !r[i].is_empty()))
        .collect();
    let mut t = table(&keep.iter().map(|&i| header[i]).collect::<Vec<_>>());
    for r in rows {
        t.add_row(keep.iter().map(|&i| r[i].clone()).collect::<Vec<_>>());
    }
    println!("{t}");
    // A cycle imports a target twice (before its exports, and again to confirm them), and the
    // confirming import reads the same objects out of scope as the first: each note is said
    // once. Every step's own counts stay in the table and in `--json`.
    let mut said = std::collections::HashSet::new();
    for r in reports {
        let notes = r
            .notes
            .iter()
            .map(|note| format!("  {} {}: {note}", r.step.name(), r.connector));
        let not_taken = r.stats.filtered.iter().map(|(reason, count)| {
            format!(
                "  {} {}: {count} not taken: {reason}",
                r.step.name(),
                r.connector
            )
        });
        for line in notes.chain(not_taken) {
            if !said.contains(&line) {
                println!("{line}");
                said.insert(line);
            }
        }
    }
}

/// Per-object errors, the first few per step.
pub fn errors(reports: &[StepReport]) {
    for r in reports {
        if r.errors.is_empty() {
            continue;
        }
        println!(
            "\n{} {} (run {}): {} object error(s){}",
            r.step.name(),
            r.connector,
            r.run,
            r.errors.len(),
            if r.errors.len() > 10 {
                ", first 10:"
            } else {
                ":"
            }
        );
        for e in r.errors.iter().take(10) {
            println!("  {}: {}", e.object, e.message);
        }
    }
}

pub fn cycle(report: &CycleReport, engine: &mut Engine<AnyStore>) -> Result<()> {
    println!(
        "{} cycle: {} steps, {} export pass(es), {:.2} s",
        match report.kind {
            idsync_engine::CycleKind::Full => "Full",
            idsync_engine::CycleKind::Delta => "Delta",
        },
        report.steps.len(),
        report.passes,
        report.seconds
    );
    steps(&report.steps);
    errors(&report.steps);
    let mv = engine.store.mv_count()?;
    println!("\nMetaverse: {mv} objects.");
    let mut t = table(&[
        "connector",
        "role",
        "objects",
        "joined",
        "pending import",
        "pending export",
        "export errors",
    ]);
    let names: Vec<(ConnectorId, String)> = engine
        .rules
        .connectors
        .iter()
        .map(|c| (c.name.clone(), format!("{:?}", c.role).to_lowercase()))
        .collect();
    for (c, role) in names {
        let k = engine.store.cs_counts(&c)?;
        t.add_row(vec![
            c.to_string(),
            role,
            k.objects.to_string(),
            k.joined.to_string(),
            k.pending_import.to_string(),
            k.pending_export.to_string(),
            k.export_errors.to_string(),
        ]);
    }
    println!("{t}");
    if report.bound_reached {
        println!(
            "The cycle stopped after {} export passes with {} exports still pending (raise [cycle] max_passes if this is expected).",
            report.passes, report.pending_exports_left
        );
    }
    Ok(())
}

/// A value for people to read: photos as their size and hash, not their bytes.
pub fn show_value(v: &Value) -> String {
    match v {
        Value::Binary(b) => format!("<{} bytes, blake3 {}>", b.len, &b.hash.to_hex()[..16]),
        Value::Reference(Reference::Mv(m)) => format!("→ mv:{m}"),
        Value::Reference(Reference::Dn(d)) => format!("→ {d}"),
        other => other.to_text(),
    }
}

fn show_values(vs: &[Value]) -> String {
    vs.iter().map(show_value).collect::<Vec<_>>().join("; ")
}

fn json_values(vs: &[Value]) -> serde_json::Value {
    json!(vs.iter().map(show_value).collect::<Vec<_>>())
}

pub fn plan(engine: &mut Engine<AnyStore>, only: Option<&str>, as_json: bool) -> Result<()> {
    let names: Vec<ConnectorId> = engine
        .rules
        .connectors
        .iter()
        .map(|c| c.name.clone())
        .filter(|c| only.is_none_or(|o| o == c.as_str()))
        .collect();
    let mut out = Vec::new();
    let (mut adds, mut updates, mut renames, mut deletes) = (0u64, 0u64, 0u64, 0u64);
    let mut failed = 0u64;
    let mut per_target = serde_json::Map::new();
    for c in names {
        let before = (adds, updates, renames, deletes);
        let mut after: Option<CsId> = None;
        loop {
            let page = engine
                .store
                .cs_scan(&c, CsFilter::PendingExport, after.as_ref(), 500)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for o in page {
                let expected = o.expected();
                let entry = match &o.pending_export {
                    Some(PendingExport::Add { attributes, .. }) => {
                        adds += 1;
                        json!({"connector": c.as_str(), "op": "add", "dn": o.dn.as_str(), "last_error": o.export_error,
                               "attributes": attributes.iter().map(|(k, v)| (k.to_string(), json_values(v))).collect::<serde_json::Map<_, _>>()})
                    }
                    Some(PendingExport::Update { new_dn, changes }) => {
                        updates += 1;
                        if new_dn.is_some() {
                            renames += 1;
                        }
                        let ch: Vec<_> = changes
                            .iter()
                            .map(|d| {
                                let old = expected.get_name(&d.name).unwrap_or(&[]);
                                match &d.change {
                                    AttributeChange::Replace(v) => json!({"attribute": d.name.as_str(), "old": json_values(old), "new": json_values(v)}),
                                    AttributeChange::Update { add, remove } => json!({"attribute": d.name.as_str(), "add": json_values(add), "remove": json_values(remove)}),
                                }
                            })
                            .collect();
                        json!({"connector": c.as_str(), "op": "update", "dn": o.dn.as_str(), "new_dn": new_dn.as_ref().map(|d| d.as_str()), "changes": ch, "last_error": o.export_error})
                    }
                    Some(PendingExport::Delete) => {
                        deletes += 1;
                        json!({"connector": c.as_str(), "op": "delete", "dn": o.dn.as_str()})
                    }
                    None => continue,
                };
                out.push(entry);
            }
        }
        // A failed export with nothing left pending (an exported change the target did not
        // keep, waiting for the next sync to stage it again) is still to do: it is listed too.
        let failed_before = failed;
        let mut after: Option<CsId> = None;
        loop {
            let page = engine
                .store
                .cs_scan(&c, CsFilter::Failed, after.as_ref(), 500)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for o in page.into_iter().filter(|o| o.pending_export.is_none()) {
                failed += 1;
                out.push(json!({"connector": c.as_str(), "op": "failed", "dn": o.dn.as_str(), "last_error": o.export_error}));
            }
        }
        if (adds, updates, renames, deletes) != before || failed != failed_before {
            per_target.insert(
                c.to_string(),
                json!({"add": adds - before.0, "update": updates - before.1, "rename": renames - before.2, "delete": deletes - before.3, "failed": failed - failed_before}),
            );
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"summary": {"add": adds, "update": updates, "rename": renames, "delete": deletes, "failed": failed}, "targets": per_target, "exports": out})
            )?
        );
        return Ok(());
    }
    for e in &out {
        let head = format!(
            "{} {} {}",
            e["connector"].as_str().unwrap_or(""),
            e["op"].as_str().unwrap_or(""),
            e["dn"].as_str().unwrap_or("")
        );
        println!("{head}");
        if let Some(m) = e["last_error"].as_str() {
            println!("    last error: {m}");
        }
        if let Some(nd) = e["new_dn"].as_str() {
            println!("    rename to {nd}");
        }
        if let Some(attrs) = e["attributes"].as_object() {
            for (k, v) in attrs {
                println!(
                    "    {k}: {}",
                    v.as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join("; "))
                        .unwrap_or_default()
                );
            }
        }
        if let Some(ch) = e["changes"].as_array() {
            for c in ch {
                let list = |k: &str| {
                    c[k].as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                        .unwrap_or_default()
                };
                if c.get("new").is_some() {
                    println!(
                        "    {}: {} → {}",
                        c["attribute"].as_str().unwrap_or(""),
                        list("old"),
                        list("new")
                    );
                } else {
                    println!(
                        "    {}: +[{}] -[{}]",
                        c["attribute"].as_str().unwrap_or(""),
                        list("add"),
                        list("remove")
                    );
                }
            }
        }
    }
    println!();
    for (target, k) in &per_target {
        println!(
            "{target}: {} to add, {} to update ({} renamed), {} to delete{}.",
            k["add"],
            k["update"],
            k["rename"],
            k["delete"],
            failed_text(k["failed"].as_u64().unwrap_or(0))
        );
    }
    println!(
        "Plan: {adds} to add, {updates} to update ({renames} renamed), {deletes} to delete{}. Nothing was sent.",
        failed_text(failed)
    );
    Ok(())
}

/// The plan's count of failed exports with nothing pending, when there are any.
fn failed_text(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(", {n} failed with nothing pending (see last error)")
    }
}

/// How `history` prints times: RFC 3339, in UTC or in the local time zone.
#[derive(Debug, Clone, Copy)]
pub struct Zone {
    local: bool,
}

impl Zone {
    pub fn new(local: bool) -> Zone {
        Zone { local }
    }

    /// Seconds since the epoch as RFC 3339 (`2026-12-04T00:58:37Z`).
    pub fn format(self, epoch: i64) -> String {
        use chrono::{DateTime, Local, SecondsFormat};
        let Some(t) = DateTime::from_timestamp(epoch, 0) else {
            return epoch.to_string();
        };
        if self.local {
            t.with_timezone(&Local)
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        } else {
            t.to_rfc3339_opts(SecondsFormat::Secs, true)
        }
    }
}

pub fn history(
    engine: &mut Engine<AnyStore>,
    limit: usize,
    run: Option<i64>,
    as_json: bool,
    zone: Zone,
) -> Result<()> {
    if let Some(id) = run {
        let runs = engine.store.runs(usize::MAX >> 1)?;
        let Some(r) = runs.into_iter().find(|r| r.id.0 == id) else {
            anyhow::bail!("no run {id}");
        };
        let errors = engine.store.run_errors(RunId(id))?;
        if as_json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"run": r, "errors": errors}))?
            );
        } else {
            println!(
                "run {} {} {} {} started {}{}",
                r.id,
                r.step,
                r.connector.unwrap_or_default(),
                r.status,
                zone.format(r.started_at),
                r.finished_at
                    .map(|f| format!(", finished {}", zone.format(f)))
                    .unwrap_or_default()
            );
            println!("{}", serde_json::to_string_pretty(&r.stats)?);
            if let Some(m) = r.message {
                println!("message: {m}");
            }
            for e in errors {
                println!("  {}: {}", e.object, e.message);
            }
        }
        return Ok(());
    }
    let runs = engine.store.runs(limit)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(());
    }
    let mut t = table(&[
        "run",
        "step",
        "connector",
        "status",
        "read",
        "changes",
        "exported",
        "errors",
        "seconds",
    ]);
    let mut as_of = false;
    for r in runs {
        let s = &r.stats["stats"];
        let g = |k: &str| s[k].as_u64().unwrap_or(0);
        // A step that is running, or was interrupted, shows its last progress report.
        let status = if r.stats.get("as_of").is_some() {
            as_of = true;
            format!("{}*", r.status)
        } else {
            r.status
        };
        t.add_row(vec![
            r.id.to_string(),
            r.step,
            r.connector.unwrap_or_default(),
            status,
            n(g("read")),
            n(g("added") + g("updated") + g("renamed") + g("deleted") + g("flowed")),
            n(g("exported")),
            n(g("object_errors")),
            format!("{:.2}", r.stats["seconds"].as_f64().unwrap_or(0.0)),
        ]);
    }
    println!("{t}");
    if as_of {
        println!("* counts and seconds as of the step's last progress report (written every second); an interrupted step was rolled back: nothing it did was kept");
    }
    Ok(())
}

fn cs_json(o: &CsObject) -> serde_json::Value {
    json!({
        "id": o.id.as_str(), "connector": o.connector.as_str(), "anchor": o.anchor.as_ref().map(|a| a.as_str()),
        "dn": o.dn.as_str(), "object_type": o.object_type.as_str(), "mv_id": o.mv_id.as_ref().map(|m| m.as_str()),
        "hologram": attrs_json(&o.hologram), "pending_import": o.pending_import.is_some(),
        "pending_export": o.pending_export.is_some(), "export_error": o.export_error, "retry_count": o.retry_count,
    })
}

fn attrs_json(a: &Attributes) -> serde_json::Value {
    serde_json::Value::Object(
        a.iter()
            .map(|(k, v)| (k.to_string(), json_values(v)))
            .collect(),
    )
}

pub fn show(
    engine: &mut Engine<AnyStore>,
    id: &str,
    connector: Option<&str>,
    as_json: bool,
) -> Result<()> {
    if let Some(mv) = engine.store.mv_get(&MvId::new(id))? {
        let rules = &engine.rules;
        let (attrs, winners) = mv.effective(|a, c| rules.precedence_rank(a.as_str(), c));
        let linked = engine.store.cs_by_mv(&mv.id)?;
        if as_json {
            let lineage: Vec<_> = winners
                .iter()
                .map(|c| json!({"attribute": c.attribute.as_str(), "values": json_values(&c.values), "connector": c.connector.as_str(), "cs_id": c.cs_id.as_str(), "rule": c.rule, "time": c.time}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"mv_id": mv.id.as_str(), "object_type": mv.object_type.as_str(), "attributes": attrs_json(&attrs), "lineage": lineage, "connectors": linked.iter().map(cs_json).collect::<Vec<_>>()})
                )?
            );
            return Ok(());
        }
        println!("metaverse {} {}", mv.object_type, mv.id);
        let mut t = table(&["attribute", "value", "from", "rule"]);
        for c in winners {
            let from = linked
                .iter()
                .find(|o| o.id == c.cs_id)
                .map(|o| format!("{} {}", c.connector, o.dn))
                .unwrap_or_else(|| c.connector.to_string());
            t.add_row(vec![
                c.attribute.to_string(),
                show_values(&c.values),
                from,
                c.rule.clone(),
            ]);
        }
        println!("{t}");
        for o in linked {
            println!(
                "  {} {} (anchor {}){}{}",
                o.connector,
                o.dn,
                o.anchor
                    .as_ref()
                    .map_or("unconfirmed".to_owned(), |a| a.to_string()),
                if o.pending_export.is_some() {
                    ", export pending"
                } else {
                    ""
                },
                o.export_error
                    .as_ref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            );
        }
        return Ok(());
    }
    let names: Vec<ConnectorId> = engine
        .rules
        .connectors
        .iter()
        .map(|c| c.name.clone())
        .filter(|c| connector.is_none_or(|o| o == c.as_str()))
        .collect();
    for c in names {
        let found = match engine
            .store
            .cs_by_anchor(&c, &idsync_model::Anchor::new(id))?
        {
            Some(o) => Some(o),
            None => engine.store.cs_by_dn(&c, &idsync_model::Dn::new(id))?,
        };
        if let Some(o) = found {
            if as_json {
                println!("{}", serde_json::to_string_pretty(&cs_json(&o))?);
            } else {
                println!(
                    "{} {} (anchor {})",
                    o.connector,
                    o.dn,
                    o.anchor
                        .as_ref()
                        .map_or("unconfirmed".to_owned(), |a| a.to_string())
                );
                println!(
                    "  metaverse: {}",
                    o.mv_id
                        .as_ref()
                        .map_or("not joined".to_owned(), |m| m.to_string())
                );
                for (k, v) in o.hologram.iter() {
                    println!("  {k}: {}", show_values(v));
                }
                if let Some(e) = &o.export_error {
                    println!("  last export error ({} attempts): {e}", o.retry_count);
                }
                if let Some(m) = &o.mv_id {
                    println!();
                    return show(engine, m.as_str(), None, false);
                }
            }
            return Ok(());
        }
    }
    // Not in any connector space: an import may have read it and not taken it.
    let mut not_taken = Vec::new();
    for c in engine
        .rules
        .connectors
        .iter()
        .map(|c| c.name.clone())
        .filter(|c| connector.is_none_or(|o| o == c.as_str()))
        .collect::<Vec<_>>()
    {
        if let Some(f) = engine.store.filtered_find(&c, id)? {
            not_taken.push(f);
        }
    }
    if not_taken.is_empty() {
        anyhow::bail!("no metaverse object, anchor or DN `{id}`")
    }
    if as_json {
        let list: Vec<_> = not_taken
            .iter()
            .map(|f| json!({"connector": f.connector.as_str(), "dn": f.dn.as_str(), "anchor": f.anchor.as_ref().map(|a| a.as_str()),
                            "not_taken": {"reason": f.reason, "run": f.run.0, "at": f.at}}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let zone = Zone::new(false);
    for f in not_taken {
        println!("{} {}", f.connector, f.dn);
        println!(
            "  not taken by connector {} in run {} ({}): {}",
            f.connector,
            f.run,
            zone.format(f.at),
            f.reason
        );
    }
    Ok(())
}

/// Every object of a connector joined to no person, paged through the store (an estate of any
/// size prints without being held). With `--json`, one JSON array.
pub fn not_joined(engine: &mut Engine<AnyStore>, connector: &str, as_json: bool) -> Result<()> {
    let Some(c) = engine
        .rules
        .connectors
        .iter()
        .map(|c| c.name.clone())
        .find(|c| c.as_str() == connector)
    else {
        anyhow::bail!("no connector `{connector}` in the configuration");
    };
    let mut after: Option<CsId> = None;
    let mut count = 0u64;
    if as_json {
        print!("[");
    }
    loop {
        let page = engine
            .store
            .cs_scan(&c, CsFilter::All, after.as_ref(), 1000)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for o in page.iter().filter(|o| o.mv_id.is_none() && !o.provisioned) {
            let why = idsync_engine::not_joined_reason(&engine.rules, &mut engine.store, o)?;
            if as_json {
                let mut j = cs_json(o);
                j["reason"] = json!(why);
                print!("{}{}", if count > 0 { "," } else { "" }, j);
            } else {
                println!(
                    "{}\t{}\t{why}",
                    o.anchor.as_ref().map_or("", |a| a.as_str()),
                    o.dn,
                );
            }
            count += 1;
        }
    }
    if as_json {
        println!("]");
    } else {
        println!("{count} objects of `{connector}` joined to no person");
    }
    Ok(())
}

/// Ends the process after a failure under `--json`: one JSON object on stdout, where the
/// command's result would have been, instead of the plain-text `error:` lines on stderr:
/// `{"error": {"message", "causes", "exit_code"}}`, with `file`, `line` and `column` when the
/// failure is in the configuration. `exit_code` is the process's (1 failed, 2 bad usage).
pub fn json_error(
    message: &str,
    causes: &[String],
    at: Option<&idsync_rules::ConfigError>,
    exit_code: i32,
) -> ! {
    let mut error = json!({
        "message": message,
        "causes": causes,
        "exit_code": exit_code,
    });
    if let Some(at) = at {
        error["file"] = json!(at.file);
        error["line"] = json!(at.line);
        error["column"] = json!(at.column);
    }
    let text = serde_json::to_string_pretty(&json!({ "error": error }))
        .unwrap_or_else(|_| r#"{"error":{"message":"(unprintable)"}}"#.to_owned());
    println!("{text}");
    std::process::exit(exit_code);
}

/// `idsync schedule status`: paused or not, and each schedule's state.
pub fn schedule_status(
    paused: Option<&str>,
    schedules: &[serde_json::Value],
    as_json: bool,
) -> Result<()> {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"paused": paused, "schedules": schedules}))?
        );
        return Ok(());
    }
    match paused {
        Some(since) => println!("the schedule is paused (since {since})"),
        None => println!("the schedule is running"),
    }
    let mut t = table(&[
        "schedule", "runs", "when", "staging", "last due", "failures", "next",
    ]);
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        v => v.to_string(),
    };
    for r in schedules {
        t.add_row(vec![
            s(&r["schedule"]),
            s(&r["run"]),
            s(&r["when"]),
            s(&r["staging"]),
            s(&r["last_due"]),
            s(&r["failures"]),
            s(&r["next"]),
        ]);
    }
    println!("{t}");
    Ok(())
}

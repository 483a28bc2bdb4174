//! The conformance checker behind `idsync connector check`: it drives a connector program
//! through the protocol as idsync would, and lists every violation with the message that
//! caused it. Nothing is stored; the only write is an export of values the object already
//! has (a `modify` replacing one attribute with its own values), made only when the program
//! offers export, and read back by a confirming import.

use crate::ProcessConnector;
use idsync_connectors::{Connector, ExportItem, ExportOp, ExportResult, ImportChange, ImportSink};
use idsync_model::{AttributeChange, AttributeDelta, CsEntry, CsId, ObjectTypeName, Value};
use serde::Serialize;
use std::collections::BTreeMap;

/// One check and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    /// `None`: it passed; otherwise the violation.
    pub violation: Option<String>,
    /// What it saw, when it passed.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub connector: String,
    pub checks: Vec<Check>,
}

impl CheckReport {
    pub fn violations(&self) -> usize {
        self.checks.iter().filter(|c| c.violation.is_some()).count()
    }
}

/// What a full import read: each anchor's object, in order.
#[derive(Default)]
struct Collect {
    objects: BTreeMap<String, CsEntry>,
    duplicates: Vec<String>,
    changes: Vec<ImportChange>,
}

impl ImportSink for Collect {
    fn entry(&mut self, e: CsEntry) -> Result<(), String> {
        let a = e.anchor.as_str().to_owned();
        if self.objects.insert(a.clone(), e).is_some() && self.duplicates.len() < 10 {
            self.duplicates.push(a);
        }
        Ok(())
    }
    fn change(&mut self, c: ImportChange) -> Result<(), String> {
        self.changes.push(c);
        Ok(())
    }
    fn object_error(&mut self, _: String, _: String) {}
}

struct Checks(Vec<Check>);

impl Checks {
    fn pass(&mut self, name: &str, note: impl Into<String>) {
        self.0.push(Check {
            name: name.to_owned(),
            violation: None,
            note: Some(note.into()),
        });
    }
    fn fail(&mut self, name: &str, violation: impl Into<String>) {
        self.0.push(Check {
            name: name.to_owned(),
            violation: Some(violation.into()),
            note: None,
        });
    }
}

/// Compares two full imports; the first difference found, if any.
fn disagreement(a: &Collect, b: &Collect) -> Option<String> {
    for k in a.objects.keys() {
        if !b.objects.contains_key(k) {
            return Some(format!("`{k}` is in the first and not in the second"));
        }
    }
    for k in b.objects.keys() {
        if !a.objects.contains_key(k) {
            return Some(format!("`{k}` is in the second and not in the first"));
        }
    }
    for (k, x) in &a.objects {
        let y = &b.objects[k];
        if x.dn != y.dn {
            return Some(format!("`{k}`: id `{}`, then `{}`", x.dn, y.dn));
        }
        let d = idsync_model::diff_attributes(&x.attributes, &y.attributes);
        if let Some(first) = d.first() {
            return Some(format!("`{k}`: attribute `{}` differs", first.name));
        }
    }
    None
}

/// Runs every check on the connector's program.
pub fn check(c: &mut ProcessConnector) -> CheckReport {
    let mut out = Checks(Vec::new());
    let connector = c.id().to_string();
    if let Err(e) = c.handshake() {
        out.fail("handshake", e.to_string());
        return CheckReport {
            connector,
            checks: out.0,
        };
    }
    let ready = c.ready.get().expect("handshake done").0.clone();
    let caps = ready.capabilities;
    out.pass(
        "handshake",
        format!(
            "protocol {}; full import {}, delta import {}, export {}; object types [{}]",
            ready.protocol,
            caps.full_import,
            caps.delta_import,
            caps.export,
            ready.object_types.join(", ")
        ),
    );
    if !caps.full_import {
        if caps.delta_import || caps.export {
            out.fail(
                "full import",
                "the program offers no full import: idsync cannot confirm exports or find deletes without one",
            );
        }
        c.close();
        return CheckReport {
            connector,
            checks: out.0,
        };
    }

    // Two full imports agree.
    let mut first = Collect::default();
    if let Err(e) = c.full_import(&mut first) {
        out.fail("full import", e.to_string());
        c.close();
        return CheckReport {
            connector,
            checks: out.0,
        };
    }
    let watermark = c.full_watermark.clone();
    if first.duplicates.is_empty() {
        out.pass(
            "full import",
            format!(
                "{} objects, watermark {}",
                first.objects.len(),
                watermark
                    .as_deref()
                    .map_or("none".into(), |w| format!("`{w}`"))
            ),
        );
    } else {
        out.fail(
            "full import",
            format!("an anchor is sent twice: {}", first.duplicates.join(", ")),
        );
    }
    if caps.delta_import && watermark.is_none() {
        out.fail(
            "watermark",
            "the full import's `end` has no watermark, though the program offers delta import: the next delta would start from nothing",
        );
    }
    let mut second = Collect::default();
    match c.full_import(&mut second) {
        Err(e) => out.fail("two full imports agree", e.to_string()),
        Ok(()) => match disagreement(&first, &second) {
            None => out.pass(
                "two full imports agree",
                format!("{} objects", second.objects.len()),
            ),
            Some(d) => out.fail(
                "two full imports agree",
                format!("nothing changed, yet {d}"),
            ),
        },
    }
    let watermark = c.full_watermark.clone().or(watermark);

    // A delta from the last watermark.
    let mut after = watermark.clone();
    if caps.delta_import {
        let mut delta = Collect::default();
        match c.delta_import(watermark.as_deref(), &mut delta) {
            Err(e) => out.fail("delta import", e.to_string()),
            Ok(o) => {
                let unknown = delta.changes.iter().find_map(|ch| match ch {
                    ImportChange::Modify { anchor, dn, .. }
                    | ImportChange::Delete { anchor, dn }
                    | ImportChange::Rename { anchor, dn, .. } => {
                        let known = match anchor {
                            Some(a) => second.objects.contains_key(a.as_str()),
                            None => second.objects.values().any(|e| e.dn == *dn),
                        };
                        (!known).then(|| dn.to_string())
                    }
                    ImportChange::Upsert(_) => None,
                });
                if o.watermark.is_none() {
                    out.fail("delta import", "the delta import's `end` has no watermark");
                } else if let Some(u) = unknown {
                    out.fail(
                        "delta import",
                        format!("a change names `{u}`, which the full import did not read"),
                    );
                } else {
                    out.pass(
                        "delta import",
                        format!(
                            "{} changes since the full import, watermark `{}`",
                            delta.changes.len(),
                            o.watermark.as_deref().unwrap_or_default()
                        ),
                    );
                }
                after = o.watermark;
            }
        }
    }

    // An export of what is already there, and its confirming import.
    if caps.export {
        let target = second.objects.values().find_map(|e| {
            e.attributes
                .iter()
                .find(|(_, vs)| {
                    !vs.is_empty() && vs.iter().all(|v| !matches!(v, Value::Reference(_)))
                })
                .map(|(n, vs)| (e.clone(), n.clone(), vs.clone()))
        });
        match target {
            None => out.fail(
                "export",
                "the program offers export, but the full import read no object with an attribute to export",
            ),
            Some((entry, name, values)) => {
                let item = ExportItem {
                    cs_id: CsId::new("idsync-connector-check"),
                    anchor: Some(entry.anchor.clone()),
                    dn: entry.dn.clone(),
                    object_type: ObjectTypeName::new(
                        entry.object_classes.first().cloned().unwrap_or_default(),
                    ),
                    op: ExportOp::Update {
                        new_dn: None,
                        changes: vec![AttributeDelta {
                            name: name.clone(),
                            change: AttributeChange::Replace(values.clone()),
                        }],
                    },
                };
                match c.export(std::slice::from_ref(&item)) {
                    Err(e) => out.fail("export", e.to_string()),
                    Ok(r) => match r.first() {
                        Some(ExportResult::Applied { .. }) => {
                            out.pass(
                                "export",
                                format!(
                                    "`{}`: `{name}` replaced by its own values, applied",
                                    entry.anchor
                                ),
                            );
                            let mut confirm = Collect::default();
                            let read = if caps.delta_import {
                                c.delta_import(after.as_deref(), &mut confirm).map(|_| ())
                            } else {
                                c.full_import(&mut confirm)
                            };
                            match read {
                                Err(e) => out.fail("confirming import", e.to_string()),
                                Ok(()) => {
                                    let now = if caps.delta_import {
                                        None
                                    } else {
                                        confirm.objects.get(entry.anchor.as_str())
                                    };
                                    match now {
                                        Some(e) if e.attributes.get_name(&name) != Some(&values[..]) => out.fail(
                                            "confirming import",
                                            format!("`{}`: `{name}` changed after an export of its own values", entry.anchor),
                                        ),
                                        None if !caps.delta_import => out.fail(
                                            "confirming import",
                                            format!("`{}` is gone after an export of its own values", entry.anchor),
                                        ),
                                        _ => out.pass("confirming import", "the object reads as it was"),
                                    }
                                }
                            }
                        }
                        Some(ExportResult::Failed(m)) => out.fail(
                            "export",
                            format!(
                                "`{}`: replacing `{name}` by its own values was refused: {m}",
                                entry.anchor
                            ),
                        ),
                        None => out.fail("export", "no result"),
                    },
                }
            }
        }
    }
    c.close();
    CheckReport {
        connector,
        checks: out.0,
    }
}

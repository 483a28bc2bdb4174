//! Export: send pending exports to a connected system in batches.
//!
//! Each object's result is kept on it: success makes its changes *awaiting confirmation* (the
//! next import checks they arrived); failure keeps the pending export with the system's message
//! and a retry count, and the other objects go on. Binary values are read back from the store
//! by content hash only here, where their bytes are needed.

use crate::safety::DeleteGuard;
use crate::{Engine, Error, Result, StepReport};
use idsync_connectors::{crash_point, ExportItem, ExportOp, ExportResult};
use idsync_model::{
    AttributeChange, AttributeDelta, Attributes, ConnectorId, CsId, CsObject, Dn, PendingExport,
    Reference, Value,
};
use idsync_store::{CsFilter, ExportRecord, ObjectError, Store};
use std::collections::{HashMap, HashSet};

/// Gives binary values their bytes back from the store.
fn load_blobs<S: Store>(store: &mut S, values: &mut [Value]) -> std::result::Result<(), String> {
    for v in values {
        if let Value::Binary(b) = v {
            if b.data.is_none() {
                let data = store
                    .blob_get(&b.hash)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("binary value {} is missing from the store", b.hash))?;
                b.data = Some(data.into());
            }
        }
    }
    Ok(())
}

fn load_attr_blobs<S: Store>(
    store: &mut S,
    attrs: &mut Attributes,
) -> std::result::Result<(), String> {
    for (_, values) in attrs.iter_mut() {
        load_blobs(store, values)?;
    }
    Ok(())
}

fn load_delta_blobs<S: Store>(
    store: &mut S,
    deltas: &mut [AttributeDelta],
) -> std::result::Result<(), String> {
    for d in deltas {
        match &mut d.change {
            AttributeChange::Replace(v) => load_blobs(store, v)?,
            AttributeChange::Update { add, remove } => {
                load_blobs(store, add)?;
                load_blobs(store, remove)?;
            }
        }
    }
    Ok(())
}

/// A target's unique attributes and, for each value (attribute lower-cased, value text), the
/// objects that will hold it once pending exports are applied.
#[derive(Default)]
struct Unique {
    attrs: Vec<String>,
    holders: HashMap<(String, String), Vec<(CsId, String)>>,
}

/// The state an object will have in its system once its pending export is applied.
/// Up to this many unique values pending export are looked up by text rather than by loading
/// the whole target space.
const UNIQUE_LOOKUPS: usize = 256;

fn future_state(o: &CsObject) -> Attributes {
    match &o.pending_export {
        Some(PendingExport::Add { attributes, .. }) => attributes.clone(),
        Some(PendingExport::Update { changes, .. }) => {
            let mut a = o.expected();
            idsync_model::apply_delta(&mut a, changes);
            a
        }
        Some(PendingExport::Delete) => Attributes::new(),
        None => o.expected(),
    }
}

fn conflict(unique: &Unique, o: &CsObject) -> Option<String> {
    let state = future_state(o);
    for attr in &unique.attrs {
        for v in state.get(attr).unwrap_or(&[]) {
            let key = (attr.to_ascii_lowercase(), v.to_text().to_lowercase());
            if let Some(others) = unique.holders.get(&key) {
                if let Some((_, dn)) = others.iter().find(|(id, _)| id != &o.id) {
                    return Some(format!(
                        "uniqueness conflict: {attr} = {} is also on {dn}; not exported",
                        v.to_text()
                    ));
                }
            }
        }
    }
    None
}

/// The objects of a target that will not be in it when this step ends (an add held back by a
/// uniqueness conflict, or failed and waiting for its next attempt), by normalized identifier,
/// with the reason; `None` for an object that is (or may be) there. Filled as references to
/// them are met, and by the adds that fail during the step.
#[derive(Default)]
struct Held(HashMap<String, Option<String>>);

/// What a step's applied exports changed in their target that may resolve another object's
/// failed export: identifiers now taken (an add, a rename's new identifier), whose references
/// the target can now resolve, and identifiers given up (a delete, a rename's old identifier),
/// which an add refused as a duplicate can now take. Normalized, like [`Held`].
#[derive(Default)]
struct Changed {
    arrived: HashSet<String>,
    released: HashSet<String>,
}

impl Changed {
    /// Whether a change this step made may resolve the failure of `o`'s export: it names an
    /// object that arrived, or takes an identifier another object gave up.
    fn may_resolve(&self, o: &CsObject) -> bool {
        let arrived = |v: &Value| matches!(v, Value::Reference(Reference::Dn(d)) if self.arrived.contains(&d.normalized()));
        match &o.pending_export {
            Some(PendingExport::Add { attributes, .. }) => {
                self.released.contains(&o.dn.normalized())
                    || attributes.iter().any(|(_, vs)| vs.iter().any(arrived))
            }
            Some(PendingExport::Update { new_dn, changes }) => {
                new_dn
                    .as_ref()
                    .is_some_and(|d| self.released.contains(&d.normalized()))
                    || changes.iter().any(|d| match &d.change {
                        AttributeChange::Replace(vs) => vs.iter().any(arrived),
                        AttributeChange::Update { add, .. } => add.iter().any(arrived),
                    })
            }
            Some(PendingExport::Delete) | None => false,
        }
    }
}

/// A batch to send: the objects, what is sent for each, and the changes held back from each
/// (the references to objects that are held back, with the reason), which stay pending.
type Batch = (Vec<CsObject>, Vec<ExportItem>, HashMap<CsId, Withheld>);
type Withheld = (Vec<AttributeDelta>, String);

/// Takes the references to held-back objects out of `values`; the values as they were when any
/// is taken.
fn take_held(
    values: &mut Vec<Value>,
    held: &mut dyn FnMut(&Dn) -> Result<Option<String>>,
    reasons: &mut Vec<String>,
) -> Result<Option<Vec<Value>>> {
    let mut taken = false;
    let mut kept = Vec::with_capacity(values.len());
    for v in values.iter() {
        if let Value::Reference(Reference::Dn(d)) = v {
            if let Some(why) = held(d)? {
                reasons.push(format!("{d} ({why})"));
                taken = true;
                continue;
            }
        }
        kept.push(v.clone());
    }
    Ok(taken.then(|| std::mem::replace(values, kept)))
}

/// Takes the references to held-back objects out of an export: the changes that set them once
/// those objects are in the target, and why.
fn withhold(
    op: &mut ExportOp,
    held: &mut dyn FnMut(&Dn) -> Result<Option<String>>,
) -> Result<Option<Withheld>> {
    let mut out = Vec::new();
    let mut reasons = Vec::new();
    match op {
        ExportOp::Add { attributes, .. } => {
            let mut emptied = Vec::new();
            for (name, values) in attributes.iter_mut() {
                if let Some(all) = take_held(values, held, &mut reasons)? {
                    if values.is_empty() {
                        emptied.push(name.to_string());
                    }
                    out.push(AttributeDelta {
                        name: name.clone(),
                        change: AttributeChange::Replace(all),
                    });
                }
            }
            // An add names no attribute without values (LDAP refuses one).
            for name in emptied {
                attributes.remove(&name);
            }
        }
        ExportOp::Update { changes, .. } => {
            for d in changes.iter_mut() {
                match &mut d.change {
                    AttributeChange::Replace(values) => {
                        if let Some(all) = take_held(values, held, &mut reasons)? {
                            out.push(AttributeDelta {
                                name: d.name.clone(),
                                change: AttributeChange::Replace(all),
                            });
                        }
                    }
                    AttributeChange::Update { add, .. } => {
                        if let Some(all) = take_held(add, held, &mut reasons)? {
                            let waiting = all.into_iter().filter(|v| !add.contains(v)).collect();
                            out.push(AttributeDelta {
                                name: d.name.clone(),
                                change: AttributeChange::Update {
                                    add: waiting,
                                    remove: vec![],
                                },
                            });
                        }
                    }
                }
            }
            changes.retain(|d| {
                !matches!(&d.change, AttributeChange::Update { add, remove } if add.is_empty() && remove.is_empty())
            });
        }
        ExportOp::Delete => {}
    }
    if out.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = out.iter().map(|d| d.name.as_str()).collect();
    let message = format!(
        "{} waiting for {}, held back from this target; set once it is exported",
        names.join(", "),
        reasons.join(", ")
    );
    Ok(Some((out, message)))
}

/// Whether a pending export deletes the object, or disables it (sets the connector's disable
/// attribute to its disable value).
fn deletes_or_disables(o: &CsObject, disable: Option<&(String, String)>) -> bool {
    match &o.pending_export {
        Some(PendingExport::Delete) => true,
        Some(PendingExport::Update { changes, .. }) => disable.is_some_and(|(attr, value)| {
            changes.iter().any(|d| {
                d.name.as_str().eq_ignore_ascii_case(attr)
                    && match &d.change {
                        AttributeChange::Replace(v) => v.iter().any(|x| x.to_text() == *value),
                        AttributeChange::Update { add, .. } => {
                            add.iter().any(|x| x.to_text() == *value)
                        }
                    }
            })
        }),
        _ => false,
    }
}

impl<S: Store> Engine<S> {
    /// What the audit keeps of one export sent: the change (binary values as hashes), the
    /// rules behind it, and the system's answer.
    fn audit_record(
        &self,
        id: &ConnectorId,
        run: idsync_model::RunId,
        item: &ExportItem,
        result: &ExportResult,
    ) -> ExportRecord {
        let flows = self.rules.connector(id.as_str()).map(|c| &c.export_flows);
        let flow_ids = |names: &mut dyn Iterator<Item = &str>| -> Vec<String> {
            let names: Vec<&str> = names.collect();
            flows
                .into_iter()
                .flatten()
                .filter(|f| names.iter().any(|n| n.eq_ignore_ascii_case(&f.cs)))
                .map(|f| format!("export flow {} ({})", f.cs, f.id))
                .collect()
        };
        let (op, object, changes, rules) = match &item.op {
            ExportOp::Add { attributes, .. } => {
                let mut rules: Vec<String> = self
                    .rules
                    .provisioning
                    .iter()
                    .filter(|p| &p.connector == id && p.object_type == item.object_type)
                    .map(|p| format!("provision {} {} as {}", p.mv_type, p.connector, p.dn))
                    .collect();
                rules.extend(flow_ids(&mut attributes.iter().map(|(k, _)| k.as_str())));
                (
                    "add",
                    item.dn.to_string(),
                    serde_json::to_value(attributes).unwrap_or_default(),
                    rules,
                )
            }
            ExportOp::Update { new_dn, changes } => {
                let mut rules = flow_ids(&mut changes.iter().map(|d| d.name.as_str()));
                if new_dn.is_some() {
                    rules.push("provisioning identifier template (rename)".to_owned());
                }
                (
                    if new_dn.is_some() { "rename" } else { "update" },
                    new_dn.as_ref().unwrap_or(&item.dn).to_string(),
                    serde_json::json!({"from": item.dn.as_str(), "changes": changes}),
                    rules,
                )
            }
            ExportOp::Delete => (
                "delete",
                item.dn.to_string(),
                serde_json::Value::Null,
                vec!["deprovisioning (delete)".to_owned()],
            ),
        };
        ExportRecord {
            run,
            connector: id.to_string(),
            object,
            cs_id: item.cs_id.to_string(),
            op: op.to_owned(),
            changes,
            rules,
            at: idsync_store::now(),
            result: match result {
                ExportResult::Applied { .. } => "applied".to_owned(),
                ExportResult::Failed(m) => format!("failed: {m}"),
            },
        }
    }

    /// Counts the pending deletes and disables of a target before anything is sent, and stops
    /// the export when they are over the threshold.
    fn check_deletes(&mut self, id: &ConnectorId, space: u64) -> Result<()> {
        let disable = self
            .rules
            .connector(id.as_str())
            .and_then(|c| c.disable.clone());
        let mut guard = DeleteGuard::new(self.rules.safety, self.options.allow_deletes);
        let mut after: Option<CsId> = None;
        loop {
            // Adds neither delete nor disable: they are not read.
            let page = self
                .store
                .cs_scan(id, CsFilter::PendingChange, after.as_ref(), 1000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for o in &page {
                if deletes_or_disables(o, disable.as_ref()) {
                    guard.count(o.dn.as_str());
                }
            }
        }
        guard.check("export", id.as_str(), space)
    }

    /// Builds the unique-value index of a target (empty when it has no uniqueness rule). It
    /// holds only the unique attributes' values, one entry per object holding one.
    fn unique_holders(&mut self, id: &ConnectorId) -> Result<Unique> {
        let attrs = self
            .rules
            .connector(id.as_str())
            .map(|c| c.unique.clone())
            .unwrap_or_default();
        let mut u = Unique {
            attrs,
            holders: HashMap::new(),
        };
        if u.attrs.is_empty() {
            return Ok(u);
        }
        // Only the values the pending exports would hold are ever looked up: when they are few
        // strings, only the objects that may hold one are loaded.
        let mut wanted: Option<Vec<String>> = Some(Vec::new());
        let mut after: Option<CsId> = None;
        'pending: loop {
            let page = self
                .store
                .cs_scan(id, CsFilter::PendingExport, after.as_ref(), 1000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for o in &page {
                let state = future_state(o);
                for a in &u.attrs {
                    for v in state.get(a).unwrap_or(&[]) {
                        match (v, wanted.as_mut()) {
                            (Value::String(s), Some(w)) if w.len() < UNIQUE_LOOKUPS => {
                                w.push(s.clone())
                            }
                            _ => {
                                wanted = None;
                                break 'pending;
                            }
                        }
                    }
                }
            }
        }
        if wanted.as_ref().is_some_and(Vec::is_empty) {
            return Ok(u);
        }
        let mut after: Option<CsId> = None;
        loop {
            let page = match &wanted {
                Some(w) => {
                    let (last, page) = self.store.cs_scan_may_hold(id, w, after.as_ref(), 1000)?;
                    let Some(last) = last else { break };
                    after = Some(last);
                    page
                }
                None => {
                    let page = self
                        .store
                        .cs_scan(id, CsFilter::All, after.as_ref(), 1000)?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.id.clone());
                    page
                }
            };
            for o in page {
                let state = future_state(&o);
                for a in &u.attrs {
                    for v in state.get(a).unwrap_or(&[]) {
                        u.holders
                            .entry((a.to_ascii_lowercase(), v.to_text().to_lowercase()))
                            .or_default()
                            .push((o.id.clone(), o.dn.to_string()));
                    }
                }
            }
        }
        Ok(u)
    }

    pub(crate) fn export(&mut self, id: &ConnectorId, report: &mut StepReport) -> Result<()> {
        if self.options.staging {
            report
                .notes
                .push("staging mode: pending exports kept, nothing sent".to_owned());
            return Ok(());
        }
        let batch_size = self
            .rules
            .connector(id.as_str())
            .ok_or_else(|| Error::UnknownConnector(id.to_string()))?
            .export_batch_size;
        let mut connector = self.take_connector(id)?;
        if !connector.capabilities().full_import {
            report.notes.push(
                "the connector cannot be read back: exports are taken as applied, without a confirming import".to_owned(),
            );
        }
        let result = self.export_with(&mut *connector, id, batch_size, report);
        if report.stats.export_deferred > 0 {
            report.notes.push(format!(
                "{} object(s) failed before and wait for their next attempt (backoff); --retry-now sends them now",
                report.stats.export_deferred
            ));
        }
        crash_point!("export:{id}:staged");
        // The connector makes its batches durable only when every batch was staged.
        let result = result.and_then(|()| connector.finish_export().map_err(Error::from));
        // The classic crash: the target has the changes, the store has not committed them. The
        // next export sends them again, and connectors apply a repeated export idempotently.
        crash_point!("export:{id}:applied");
        self.put_connector(connector);
        result
    }

    fn export_with(
        &mut self,
        connector: &mut dyn idsync_connectors::Connector,
        id: &ConnectorId,
        batch_size: usize,
        report: &mut StepReport,
    ) -> Result<()> {
        let counts = self.store.cs_counts(id)?;
        let confirms = connector.capabilities().full_import;
        self.check_deletes(id, counts.objects)?;
        self.progress
            .start(&format!("export {id}"), Some(counts.pending_export));
        let unique = self.unique_holders(id)?;
        let retry = self.rules.retry;
        let now = idsync_store::now();
        let mut after: Option<CsId> = None;
        let mut held = Held::default();
        let mut changed = Changed::default();
        // One batch is in the connector's hands while the engine records the one before it:
        // batch k+1 is started (`export_start`) once batch k's results are taken, and the store
        // records batch k while the system works on k+1.
        let mut started: Option<Batch> = None;
        loop {
            let next = loop {
                let batch =
                    self.export_batch(id, &unique, &mut held, now, batch_size, &mut after, report)?;
                match batch {
                    Some((_, items, _)) if items.is_empty() => continue,
                    next => break next,
                }
            };
            let answered = match started.take() {
                Some((objects, items, withheld)) => {
                    let results = connector.export_finish(&items)?;
                    let written = connector.take_written_values();
                    crash_point!("export:{id}:batch-sent");
                    Some(((objects, items, withheld), results, written))
                }
                None => None,
            };
            if let Some((_, items, _)) = &next {
                connector.export_start(items)?;
            }
            if let Some((batch, results, written)) = answered {
                self.progress.advance(batch.1.len() as u64);
                let outcome = Outcome {
                    confirms,
                    retry,
                    now,
                };
                let step = (&mut held, &mut changed);
                self.record_batch(id, report, outcome, step, batch, results, written)?;
                crate::heartbeat(&mut self.store, report);
            }
            match next {
                Some(batch) => started = Some(batch),
                None => return self.retry_resolved(id, &changed, now, report),
            }
        }
    }

    /// Ends the backoff of the failed exports that this step's applied exports may have
    /// resolved (see [`Changed`]): the next export (the cycle's next pass, or the next cycle)
    /// tries them at once, as it would an export whose own values changed. A failure that did
    /// not depend on another object keeps its backoff.
    fn retry_resolved(
        &mut self,
        id: &ConnectorId,
        changed: &Changed,
        now: i64,
        report: &mut StepReport,
    ) -> Result<()> {
        if changed.arrived.is_empty() && changed.released.is_empty() {
            return Ok(());
        }
        let mut retried = 0u64;
        let mut after: Option<CsId> = None;
        loop {
            let page = self
                .store
                .cs_scan(id, CsFilter::Failed, after.as_ref(), 1000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for o in page {
                if o.retry_count == 0 || !changed.may_resolve(&o) {
                    continue;
                }
                if self.store.retry_at(&o.id)?.is_some_and(|t| t > now) {
                    self.store.retry_set(&o.id, None)?;
                    retried += 1;
                }
            }
        }
        if retried > 0 {
            report.notes.push(format!(
                "{retried} failed export(s) name an object this export added, or take an identifier it freed: tried again by the next export, without waiting for their backoff"
            ));
        }
        Ok(())
    }

    /// Whether the object `dn` names in a target is held back from it (see [`Held`]), and why.
    fn held_back(
        &mut self,
        id: &ConnectorId,
        unique: &Unique,
        held: &mut Held,
        now: i64,
        dn: &Dn,
    ) -> Result<Option<String>> {
        let key = dn.normalized();
        if let Some(why) = held.0.get(&key) {
            return Ok(why.clone());
        }
        let why = match self.store.cs_by_dn(id, dn)? {
            Some(t)
                if t.anchor.is_none()
                    && matches!(t.pending_export, Some(PendingExport::Add { .. })) =>
            {
                match conflict(unique, &t) {
                    Some(c) => Some(c),
                    None if t.retry_count > 0 && !self.options.retry_now => {
                        match self.store.retry_at(&t.id)? {
                            Some(at) if at > now => Some(format!(
                                "its add failed and waits for its next attempt: {}",
                                t.export_error.as_deref().unwrap_or("no message")
                            )),
                            _ => None,
                        }
                    }
                    None => None,
                }
            }
            _ => None,
        };
        held.0.insert(key, why.clone());
        Ok(why)
    }

    /// Reads the next page of pending exports and makes the batch of them to send (objects
    /// waiting for a retry, and those whose unique values conflict, left out; references to
    /// held-back objects taken out and kept pending); `None` after the last page.
    #[allow(clippy::too_many_arguments)]
    fn export_batch(
        &mut self,
        id: &ConnectorId,
        unique: &Unique,
        held: &mut Held,
        now: i64,
        batch_size: usize,
        after: &mut Option<CsId>,
        report: &mut StepReport,
    ) -> Result<Option<Batch>> {
        let page = self
            .store
            .cs_scan(id, CsFilter::PendingExport, after.as_ref(), batch_size)?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        *after = Some(last.id.clone());
        let mut items: Vec<ExportItem> = Vec::with_capacity(page.len());
        let mut objects: Vec<CsObject> = Vec::with_capacity(page.len());
        for o in page {
            if o.retry_count > 0 && !self.options.retry_now {
                if let Some(t) = self.store.retry_at(&o.id)? {
                    if t > now {
                        report.stats.export_deferred += 1;
                        continue;
                    }
                }
            }
            let op = match o.pending_export.clone() {
                Some(PendingExport::Add {
                    object_classes,
                    mut attributes,
                }) => load_attr_blobs(&mut self.store, &mut attributes).map(|()| ExportOp::Add {
                    object_classes,
                    attributes,
                }),
                Some(PendingExport::Update {
                    new_dn,
                    mut changes,
                }) => load_delta_blobs(&mut self.store, &mut changes)
                    .map(|()| ExportOp::Update { new_dn, changes }),
                Some(PendingExport::Delete) => Ok(ExportOp::Delete),
                None => continue,
            };
            match op {
                Ok(op) => {
                    items.push(ExportItem {
                        cs_id: o.id.clone(),
                        anchor: o.anchor.clone(),
                        dn: o.dn.clone(),
                        object_type: o.object_type.clone(),
                        op,
                    });
                    objects.push(o);
                }
                Err(m) => report.errors.push(ObjectError {
                    object: o.dn.to_string(),
                    message: m,
                }),
            }
        }
        if !unique.attrs.is_empty() {
            // Values that must be unique in the target are checked before anything is sent:
            // a conflict is reported with both objects and neither value goes out blindly.
            let mut keep_items = Vec::with_capacity(items.len());
            let mut keep_objects = Vec::with_capacity(objects.len());
            for (mut o, item) in objects.into_iter().zip(items) {
                match conflict(unique, &o) {
                    None => {
                        keep_items.push(item);
                        keep_objects.push(o);
                    }
                    Some(message) => {
                        report.stats.export_errors += 1;
                        o.export_error = Some(message.clone());
                        report.errors.push(ObjectError {
                            object: o.dn.to_string(),
                            message,
                        });
                        self.store.cs_put(&o)?;
                    }
                }
            }
            items = keep_items;
            objects = keep_objects;
        }
        // A reference to an object that will not be in the target after this step is not sent
        // (the system would refuse the whole export): the rest goes, and the reference stays
        // pending until its object is exported.
        let mut withheld = HashMap::new();
        let mut keep_items = Vec::with_capacity(items.len());
        let mut keep_objects = Vec::with_capacity(objects.len());
        for (mut o, mut item) in objects.into_iter().zip(items) {
            let taken = {
                let mut is_held = |d: &Dn| self.held_back(id, unique, held, now, d);
                withhold(&mut item.op, &mut is_held)?
            };
            let Some((changes, message)) = taken else {
                keep_items.push(item);
                keep_objects.push(o);
                continue;
            };
            report.stats.export_waiting += 1;
            let nothing_else = matches!(&item.op, ExportOp::Update { new_dn: None, changes } if changes.is_empty());
            if nothing_else {
                // Nothing to send until the object it names is there: kept pending as it is.
                if o.export_error.as_deref() != Some(message.as_str()) {
                    o.export_error = Some(message);
                    self.store.cs_set_exported(&o)?;
                }
                continue;
            }
            withheld.insert(o.id.clone(), (changes, message));
            keep_items.push(item);
            keep_objects.push(o);
        }
        Ok(Some((keep_objects, keep_items, withheld)))
    }

    /// Records a batch's results: each export's audit row, then the object as sent (awaiting
    /// confirmation) or failed (kept pending with its error and next attempt).
    #[allow(clippy::too_many_arguments)]
    fn record_batch(
        &mut self,
        id: &ConnectorId,
        report: &mut StepReport,
        outcome: Outcome,
        (held, changed): (&mut Held, &mut Changed),
        (objects, items, mut withheld): Batch,
        results: Vec<ExportResult>,
        written: Vec<idsync_connectors::WrittenValue>,
    ) -> Result<()> {
        let Outcome {
            confirms,
            retry,
            now,
        } = outcome;
        for ((mut o, item), result) in objects.into_iter().zip(items).zip(results) {
            let record = self.audit_record(id, report.run, &item, &result);
            self.store.audit_export(&record)?;
            match result {
                ExportResult::Applied { anchor } => {
                    report.stats.exported += 1;
                    match &item.op {
                        ExportOp::Add { .. } => {
                            changed.arrived.insert(item.dn.normalized());
                        }
                        ExportOp::Update {
                            new_dn: Some(d), ..
                        } => {
                            changed.arrived.insert(d.normalized());
                            changed.released.insert(item.dn.normalized());
                        }
                        ExportOp::Update { .. } => {}
                        ExportOp::Delete => {
                            changed.released.insert(item.dn.normalized());
                        }
                    }
                    if o.retry_count > 0 {
                        self.store.retry_set(&o.id, None)?;
                    }
                    o.export_error = None;
                    o.retry_count = 0;
                    o.pending_export = None;
                    if let Some((changes, message)) = withheld.remove(&o.id) {
                        // What was held back stays pending, with the reason.
                        o.pending_export = Some(PendingExport::Update {
                            new_dn: None,
                            changes,
                        });
                        o.export_error = Some(message);
                    }
                    // A rename or a new hologram rewrites the whole object; otherwise only
                    // the export's own columns change.
                    let mut whole = !confirms;
                    match item.op {
                        ExportOp::Delete => {
                            self.store.cs_delete(&o.id)?;
                            continue;
                        }
                        ExportOp::Add { attributes, .. } => {
                            o.awaiting = attributes
                                .iter()
                                .map(|(k, v)| AttributeDelta {
                                    name: k.clone(),
                                    change: AttributeChange::Replace(v.clone()),
                                })
                                .collect();
                            o.awaiting_add = true;
                        }
                        ExportOp::Update { new_dn, changes } => {
                            if let Some(d) = new_dn {
                                o.dn = d;
                                whole = true;
                            }
                            o.awaiting.extend(changes);
                        }
                    }
                    if o.anchor.is_none() {
                        o.anchor = anchor;
                    }
                    let mine: Vec<_> = written.iter().filter(|w| w.cs_id == o.id).collect();
                    if !mine.is_empty() {
                        crate::written::record(&mut self.store, id, &mut o.awaiting, &mine)?;
                    }
                    if !confirms {
                        // Nothing will be read back: what was sent is what the system holds.
                        idsync_model::apply_delta(&mut o.hologram, &o.awaiting);
                        o.awaiting.clear();
                        o.awaiting_add = false;
                    } else if o.anchor.is_some()
                        && !o.awaiting.is_empty()
                        && o.awaiting
                            .iter()
                            .all(|d| crate::import::satisfied(&o.hologram, d))
                    {
                        // The last import already read these values: an export sent again
                        // after a crash, whose first sending an import saw before this one
                        // (its repeat changes nothing, so no confirming import would see it).
                        report.stats.confirmed += 1;
                        o.awaiting.clear();
                        o.awaiting_add = false;
                    }
                    if whole {
                        self.store.cs_put(&o)?;
                    } else {
                        self.store.cs_set_exported(&o)?;
                    }
                }
                ExportResult::Failed(message) => {
                    report.stats.export_errors += 1;
                    if matches!(item.op, ExportOp::Add { .. }) && o.anchor.is_none() {
                        // Not in the target: later references to it this step wait for it.
                        held.0.insert(
                            o.dn.normalized(),
                            Some(format!("its add failed: {message}")),
                        );
                    }
                    o.retry_count += 1;
                    o.export_error = Some(message.clone());
                    let delay = retry.delay(o.retry_count);
                    self.store
                        .retry_set(&o.id, Some(now.saturating_add(delay as i64)))?;
                    let how = if o.retry_count >= retry.report_after {
                        "export keeps failing"
                    } else {
                        "export failed"
                    };
                    report.errors.push(ObjectError {
                        object: o.dn.to_string(),
                        message: format!(
                            "{how} (attempt {}, next attempt in {delay} s or with --retry-now): {message}",
                            o.retry_count
                        ),
                    });
                    self.store.cs_put(&o)?;
                }
            }
        }
        Ok(())
    }
}

/// What recording a batch's results needs to know of its step.
#[derive(Clone, Copy)]
struct Outcome {
    /// Whether the connector reads its exports back (a confirming import follows).
    confirms: bool,
    retry: idsync_rules::config::RetryConfig,
    now: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use idsync_model::{ObjectTypeName, PendingExport};

    fn with(pending: Option<PendingExport>) -> CsObject {
        CsObject {
            id: CsId::new("c"),
            connector: ConnectorId::new("t"),
            anchor: None,
            dn: idsync_model::Dn::new("uid=a"),
            object_type: ObjectTypeName::new("person"),
            object_classes: vec![],
            hologram: Attributes::new(),
            pending_import: None,
            pending_export: pending,
            awaiting: vec![],
            awaiting_add: false,
            export_error: None,
            retry_count: 0,
            mv_id: None,
            seen_run: None,
            provisioned: true,
        }
    }

    fn update(attr: &str, value: &str) -> Option<PendingExport> {
        Some(PendingExport::Update {
            new_dn: None,
            changes: vec![AttributeDelta {
                name: attr.into(),
                change: AttributeChange::Replace(vec![Value::from(value)]),
            }],
        })
    }

    #[test]
    fn deletes_and_disables_count_for_the_threshold() {
        let disable = ("accountDisabled".to_owned(), "TRUE".to_owned());
        assert!(deletes_or_disables(
            &with(Some(PendingExport::Delete)),
            None
        ));
        assert!(deletes_or_disables(
            &with(update("AccountDisabled", "TRUE")),
            Some(&disable)
        ));
        assert!(!deletes_or_disables(
            &with(update("accountDisabled", "FALSE")),
            Some(&disable)
        ));
        assert!(!deletes_or_disables(
            &with(update("title", "TRUE")),
            Some(&disable)
        ));
        assert!(!deletes_or_disables(&with(None), Some(&disable)));
    }
}

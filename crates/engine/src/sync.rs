//! Full and delta sync: connector space → metaverse → pending exports.
//!
//! For each object: join (by the join rules' keys) or project (only where the object type may
//! create people) or stay a disconnector; flow attributes into the metaverse with precedence;
//! resolve references through the metaverse, keeping the unresolved ones pending until their
//! target arrives; then evaluate export flows and provisioning for every target, staging
//! value-level pending exports against what each target holds (or will hold once unconfirmed
//! exports land). Deletes disconnect, and remove the metaverse object when its last projecting
//! source goes, which deprovisions it from targets.

use crate::{state, Engine, Result, StepReport};
use idsync_model::{
    diff_attributes, AttributeName, Attributes, ConnectorId, Contribution, CsId, CsObject, MvId,
    MvObject, PendingExport, PendingImport, Reference, Value,
};
use idsync_rules::{ConnectorRules, DeprovisionAction, Role, Rules};
use idsync_store::{now, CsFilter, ObjectError, Store};
use std::collections::BTreeSet;

const PAGE: usize = 1000;

pub(crate) struct SyncCtx<'a> {
    pub report: &'a mut StepReport,
    pub full: bool,
    /// Objects to evaluate again before the step ends (their references can now resolve).
    pub requeue: BTreeSet<CsId>,
    /// Set while requeued objects are evaluated: their exports are evaluated even when their
    /// metaverse object did not change.
    pub force_exports: bool,
    pub time: i64,
    /// How each target that objects are provisioned to spells identifiers.
    pub id_syntax: std::collections::BTreeMap<ConnectorId, idsync_model::IdentifierSyntax>,
}

impl SyncCtx<'_> {
    fn syntax(&self, c: &ConnectorId) -> idsync_model::IdentifierSyntax {
        self.id_syntax.get(c).copied().unwrap_or_default()
    }
}

impl SyncCtx<'_> {
    fn error(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.report.errors.push(ObjectError {
            object: object.into(),
            message: message.into(),
        });
    }
}

/// The pending-reference key of a person that objects of a connector wait for, because
/// another object of that connector is joined to it.
fn join_wait_key(m: &MvId) -> idsync_model::Dn {
    idsync_model::Dn::new(format!("join:{m}"))
}

/// An object of `connector` left the person `m`: the objects of that connector that found
/// the person taken are evaluated again before the step ends.
fn released<S: Store>(
    store: &mut S,
    connector: &ConnectorId,
    m: &MvId,
    cx: &mut SyncCtx<'_>,
) -> Result<()> {
    for waiting in store.pending_ref_take(connector, &join_wait_key(m))? {
        cx.requeue.insert(waiting);
    }
    Ok(())
}

/// Why an object of a source is joined to no person, in words: its join keys and what each
/// found (nobody, or a person another object of its connector is joined to). What the
/// not-joined listing prints.
pub fn not_joined_reason<S: Store>(rules: &Rules, store: &mut S, o: &CsObject) -> Result<String> {
    if o.pending_import.is_some() {
        return Ok("not synced yet".to_owned());
    }
    let mut reasons = Vec::new();
    for (rule, keys) in rules.cs_join_keys(&o.connector, &o.object_type, &o.hologram) {
        let keys = match keys {
            Err(m) => {
                reasons.push(format!("join rule {}: {m}", rule.describe()));
                continue;
            }
            Ok(keys) if keys.is_empty() => {
                reasons.push(format!("no value for join rule {}", rule.describe()));
                continue;
            }
            Ok(keys) => keys,
        };
        for k in keys {
            let found = store.mv_find(&rule.id, &k)?;
            if found.is_empty() {
                reasons.push(format!("key `{k}` ({}) matches no person", rule.describe()));
            }
            for m in found {
                let others: Vec<String> = store
                    .cs_links(&m)?
                    .into_iter()
                    .filter(|c| c.connector == o.connector && c.id != o.id)
                    .map(|c| c.dn.to_string())
                    .collect();
                if others.is_empty() {
                    reasons.push(format!(
                        "key `{k}` ({}) matches mv:{m}, which no other object of this connector is joined to",
                        rule.describe()
                    ));
                } else {
                    reasons.push(format!(
                        "key `{k}` ({}) matches mv:{m}, already joined to {} of this connector",
                        rule.describe(),
                        others.join(", ")
                    ));
                }
            }
        }
    }
    if reasons.is_empty() {
        reasons.push("no join rule applies to its object type".to_owned());
    }
    Ok(reasons.join("; "))
}

/// The pending-reference key of a metaverse object awaited in a target.
fn mv_ref_key(m: &MvId) -> idsync_model::Dn {
    idsync_model::Dn::new(format!("mv:{m}"))
}

fn rank_fn(rules: &Rules) -> impl Fn(&AttributeName, &ConnectorId) -> usize + '_ {
    |a, c| rules.precedence_rank(a.as_str(), c)
}

use idsync_connectors::crash_point;

impl<S: Store> Engine<S> {
    pub(crate) fn sync(
        &mut self,
        id: &ConnectorId,
        mut full: bool,
        report: &mut StepReport,
    ) -> Result<()> {
        let version = self.rules.sync_version().to_owned();
        let stored = self.store.state_get(id, state::SYNC_VERSION)?;
        if !full && stored.as_deref() != Some(version.as_str()) {
            report.notes.push(match stored {
                None => "first sync of this connector: ran a full sync".to_owned(),
                Some(_) => "the sync rules changed since the last sync: ran a full sync so every object is evaluated under the new rules".to_owned(),
            });
            full = true;
        }
        self.progress.start(
            &format!("{} sync {id}", if full { "full" } else { "delta" }),
            None,
        );
        let mut id_syntax = std::collections::BTreeMap::new();
        let targets: BTreeSet<ConnectorId> = self
            .rules
            .provisioning
            .iter()
            .map(|p| p.connector.clone())
            .collect();
        for t in targets {
            let conn = self.take_connector(&t)?;
            id_syntax.insert(t, conn.capabilities().identifier);
            self.put_connector(conn);
        }
        let mut cx = SyncCtx {
            id_syntax,
            report,
            full,
            requeue: BTreeSet::new(),
            force_exports: false,
            time: now(),
        };
        let filter = if full {
            CsFilter::All
        } else {
            CsFilter::PendingImport
        };
        let mut after: Option<CsId> = None;
        loop {
            let page = self.store.cs_scan(id, filter, after.as_ref(), PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            self.progress.advance(page.len() as u64);
            for o in page {
                sync_object(&self.rules, &mut self.store, o, &mut cx)?;
                crash_point!("{}:{id}:object", cx.report.step.name());
            }
            crate::heartbeat(&mut self.store, cx.report);
        }
        // References that arrived after the objects holding them: evaluate those objects again,
        // until nothing more resolves.
        let mut rounds = 0;
        cx.force_exports = true;
        while !cx.requeue.is_empty() && rounds < 8 {
            rounds += 1;
            let ids = std::mem::take(&mut cx.requeue);
            for cs in ids {
                if let Some(o) = self.store.cs_get(&cs)? {
                    sync_object(&self.rules, &mut self.store, o, &mut cx)?;
                }
            }
        }
        self.store
            .state_set(id, state::SYNC_VERSION, Some(&version))?;
        Ok(())
    }
}

/// Evaluates one connector-space object.
pub(crate) fn sync_object<S: Store>(
    rules: &Rules,
    store: &mut S,
    mut o: CsObject,
    cx: &mut SyncCtx<'_>,
) -> Result<()> {
    let Some(crules) = rules.connector(o.connector.as_str()) else {
        return Ok(());
    };
    if o.pending_import == Some(PendingImport::Delete) {
        return sync_delete(rules, store, o, cx);
    }
    let Some(otype) = crules.object_type(&o.object_type) else {
        cx.error(
            o.dn.to_string(),
            format!("object type `{}` is no longer configured", o.object_type),
        );
        return Ok(());
    };
    let mv_type = otype.mv_type.clone();
    let may_project = otype.project;

    // Join or project.
    let mut mv = match &o.mv_id {
        Some(m) => store.mv_get(m)?,
        None => None,
    };
    // An augmenting object checks its join again when its values changed (or rules may have):
    // a corrected join key (an employee id fixed in HR) moves its attributes to the right
    // person, and one that now matches nobody takes them back.
    if let Some(current) = &mv {
        if !may_project && !o.provisioned && (o.pending_import.is_some() || cx.full) {
            if let Some(found) = join_candidates(rules, store, &o, cx, false)? {
                if !found.contains(&current.id) {
                    let mut old = current.clone();
                    o.mv_id = None;
                    store.cs_put(&o)?;
                    old.contributions.retain(|c| c.cs_id != o.id);
                    let (attrs, _) = old.effective(rank_fn(rules));
                    let keys = rules.mv_join_keys(&attrs);
                    store.mv_put(&old, &keys)?;
                    evaluate_exports(rules, store, &old, cx)?;
                    released(store, &o.connector, &old.id, cx)?;
                    mv = None;
                }
            }
        }
    }
    if mv.is_none() {
        if o.provisioned {
            // Its metaverse object is gone; deprovisioning handles it.
            return Ok(());
        }
        let candidates = join_candidates(rules, store, &o, cx, true)?.unwrap_or_default();
        let mut usable = Vec::new();
        for m in candidates {
            let Some(obj) = store.mv_get(&m)? else {
                continue;
            };
            if obj.object_type != mv_type {
                continue;
            }
            // One object per connector per metaverse object: a second one is a conflict. It
            // waits for the person: when the object joined to it leaves (its key changed, as
            // when two rows swap keys in one delta), this one is evaluated again.
            let taken = store
                .cs_links(&m)?
                .iter()
                .any(|c| c.connector == o.connector && c.id != o.id);
            if taken {
                store.pending_ref_add(&o.connector, &join_wait_key(&m), &o.id)?;
            } else {
                usable.push(obj);
            }
        }
        match usable.len() {
            1 => {
                mv = usable.pop();
                cx.report.stats.joined += 1;
            }
            0 if may_project => {
                mv = Some(MvObject {
                    id: MvId::new(uuid::Uuid::now_v7().to_string()),
                    object_type: mv_type.clone(),
                    contributions: vec![],
                });
                cx.report.stats.projected += 1;
            }
            0 => {
                // An augmenting row with no person: counted and kept, never projected.
                cx.report.stats.disconnectors += 1;
                o.pending_import = None;
                store.cs_set_link(&o.id, o.mv_id.as_ref(), None)?;
                return Ok(());
            }
            n => {
                cx.error(
                    o.dn.to_string(),
                    format!(
                        "ambiguous join: {n} metaverse objects match ({})",
                        usable
                            .iter()
                            .map(|m| m.id.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                return Ok(());
            }
        }
    }
    let Some(mut mv) = mv else { return Ok(()) };
    let newly_linked = o.mv_id.as_ref() != Some(&mv.id);
    o.mv_id = Some(mv.id.clone());

    // Import flows.
    let mut contributions = Vec::new();
    for flow in crules.import_values(&o.object_type, &o.hologram) {
        match flow.values {
            Err(m) => cx.error(
                o.dn.to_string(),
                format!("import flow to `{}`: {m}", flow.attribute),
            ),
            Ok(values) => {
                let mut resolved = Vec::with_capacity(values.len());
                for v in values {
                    match v {
                        Value::Reference(Reference::Dn(d)) => {
                            match store.cs_by_dn(&o.connector, &d)?.and_then(|t| t.mv_id) {
                                Some(m) => resolved.push(Value::Reference(Reference::Mv(m))),
                                None => store.pending_ref_add(&o.connector, &d, &o.id)?,
                            }
                        }
                        other => resolved.push(other),
                    }
                }
                contributions.push(Contribution {
                    attribute: AttributeName::new(flow.attribute),
                    connector: o.connector.clone(),
                    cs_id: o.id.clone(),
                    rule: flow.rule_id.to_owned(),
                    values: resolved,
                    time: cx.time,
                });
            }
        }
    }
    let old: Vec<&Contribution> = mv
        .contributions
        .iter()
        .filter(|c| c.cs_id == o.id)
        .collect();
    let same = old.len() == contributions.len()
        && old
            .iter()
            .zip(&contributions)
            .all(|(a, b)| a.attribute == b.attribute && a.rule == b.rule && a.values == b.values);
    let mv_changed = !same || newly_linked;
    // The system changed a value an export flow of this connector owns (a target edited by
    // hand), renamed the object, or did not keep an export: the metaverse's values are
    // evaluated against it again, so the correcting export is staged as a full sync would.
    let drifted = match &o.pending_import {
        Some(PendingImport::Reevaluate) => true,
        Some(PendingImport::Update {
            changes,
            renamed_from,
        }) => {
            renamed_from.is_some()
                || changes.iter().any(|d| {
                    crules
                        .export_flows
                        .iter()
                        .any(|f| f.cs.eq_ignore_ascii_case(d.name.as_str()))
                })
        }
        _ => false,
    };
    let keys_before = (!same).then(|| rules.mv_join_keys(&mv.effective(rank_fn(rules)).0));
    if !same {
        mv.contributions.retain(|c| c.cs_id != o.id);
        mv.contributions.extend(contributions);
        cx.report.stats.flowed += 1;
    }
    if mv_changed {
        let (attrs, _) = mv.effective(rank_fn(rules));
        let keys = rules.mv_join_keys(&attrs);
        store.mv_put(&mv, &keys)?;
        if keys_before.is_some_and(|k| k != keys) {
            recheck_joins(store, &mv, &o)?;
        }
    }
    // A full sync of an unchanged estate rewrites nothing: the row changes only when its
    // pending import is cleared or its link is new.
    if o.pending_import.is_some() || newly_linked {
        o.pending_import = None;
        store.cs_set_link(&o.id, o.mv_id.as_ref(), None)?;
    }

    // Objects whose references point here can resolve now.
    if newly_linked {
        for waiting in store.pending_ref_take(&o.connector, &o.dn)? {
            cx.requeue.insert(waiting);
        }
    }
    if mv_changed || drifted || cx.full || cx.force_exports {
        evaluate_exports(rules, store, &mv, cx)?;
    }
    Ok(())
}

/// The person's join keys changed (a renamed uid): the objects that augment it check their
/// join again at their connector's next sync, delta or full, as a full sync would (one whose
/// key no longer finds the person takes its values back).
fn recheck_joins<S: Store>(store: &mut S, mv: &MvObject, by: &CsObject) -> Result<()> {
    for mut c in store.cs_by_mv(&mv.id)? {
        if c.id != by.id && !c.provisioned && c.pending_import.is_none() {
            c.pending_import = Some(PendingImport::Reevaluate);
            store.cs_put(&c)?;
        }
    }
    Ok(())
}

/// The metaverse objects an object's join keys find, by the first join rule that finds any.
/// `None` when no join rule gave a key (nothing to judge a join by); key errors are reported
/// only when `report` is set, so a re-check does not report them twice.
fn join_candidates<S: Store>(
    rules: &Rules,
    store: &mut S,
    o: &CsObject,
    cx: &mut SyncCtx<'_>,
    report: bool,
) -> Result<Option<BTreeSet<MvId>>> {
    let mut candidates: BTreeSet<MvId> = BTreeSet::new();
    let mut any_key = false;
    for (rule, keys) in rules.cs_join_keys(&o.connector, &o.object_type, &o.hologram) {
        match keys {
            Err(m) => {
                if report {
                    cx.error(
                        o.dn.to_string(),
                        format!("join rule {}: {m}", rule.describe()),
                    );
                }
            }
            Ok(keys) => {
                for k in keys {
                    any_key = true;
                    for m in store.mv_find(&rule.id, &k)? {
                        candidates.insert(m);
                    }
                }
            }
        }
        if !candidates.is_empty() {
            break;
        }
    }
    Ok(any_key.then_some(candidates))
}

/// An object gone from its system: disconnect it, and delete the metaverse object when its
/// last projecting source went.
fn sync_delete<S: Store>(
    rules: &Rules,
    store: &mut S,
    o: CsObject,
    cx: &mut SyncCtx<'_>,
) -> Result<()> {
    store.cs_delete(&o.id)?;
    let Some(m) = &o.mv_id else { return Ok(()) };
    released(store, &o.connector, m, cx)?;
    let Some(mut mv) = store.mv_get(m)? else {
        return Ok(());
    };
    mv.contributions.retain(|c| c.cs_id != o.id);
    let linked = store.cs_by_mv(&mv.id)?;
    let projecting = |c: &CsObject| {
        rules
            .connector(c.connector.as_str())
            .and_then(|r| r.object_type(&c.object_type))
            .is_some_and(|t| t.project)
    };
    if !linked.iter().any(projecting) {
        deprovision(rules, store, mv, linked, cx)
    } else {
        let (attrs, _) = mv.effective(rank_fn(rules));
        let keys = rules.mv_join_keys(&attrs);
        store.mv_put(&mv, &keys)?;
        evaluate_exports(rules, store, &mv, cx)
    }
}

fn deprovision<S: Store>(
    rules: &Rules,
    store: &mut S,
    mv: MvObject,
    linked: Vec<CsObject>,
    cx: &mut SyncCtx<'_>,
) -> Result<()> {
    for mut t in linked {
        let Some(r) = rules.connector(t.connector.as_str()) else {
            continue;
        };
        t.mv_id = None;
        if r.role != Role::Target {
            // Sources are never written to because a person left: only the link goes.
            store.cs_put(&t)?;
            continue;
        }
        cx.report.stats.deprovisioned += 1;
        match r.deprovision {
            DeprovisionAction::Delete => {
                if matches!(t.pending_export, Some(PendingExport::Add { .. })) && t.anchor.is_none()
                {
                    // Never exported: nothing to delete in the system.
                    store.cs_delete(&t.id)?;
                    continue;
                }
                t.pending_export = Some(PendingExport::Delete);
            }
            DeprovisionAction::Disable => {
                if let Some((attr, value)) = &r.disable {
                    let mut desired = Attributes::new();
                    desired.set(attr.as_str(), vec![Value::String(value.clone())]);
                    let mut current = Attributes::new();
                    current.set(
                        attr.as_str(),
                        t.expected().get(attr).unwrap_or(&[]).to_vec(),
                    );
                    let changes = diff_attributes(&current, &desired);
                    if !changes.is_empty() {
                        t.pending_export = Some(PendingExport::Update {
                            new_dn: None,
                            changes,
                        });
                    }
                }
            }
            DeprovisionAction::Disconnect => {}
        }
        store.cs_put(&t)?;
    }
    store.mv_delete(&mv.id)?;
    cx.report.stats.mv_deleted += 1;
    Ok(())
}

/// Evaluates export flows and provisioning of one metaverse object for every target.
pub(crate) fn evaluate_exports<S: Store>(
    rules: &Rules,
    store: &mut S,
    mv: &MvObject,
    cx: &mut SyncCtx<'_>,
) -> Result<()> {
    if !rules.exports_any() {
        return Ok(());
    }
    let (attrs, _) = mv.effective(rank_fn(rules));
    let linked = store.cs_by_mv(&mv.id)?;
    for target in &rules.connectors {
        let provisions: Vec<_> = rules
            .provisioning
            .iter()
            .filter(|p| p.connector == target.name)
            .collect();
        if target.export_flows.is_empty() && provisions.is_empty() {
            continue;
        }
        let objs: Vec<&CsObject> = linked
            .iter()
            .filter(|c| c.connector == target.name)
            .collect();
        if objs.is_empty() {
            for p in provisions {
                match p.applies(&mv.object_type, &attrs) {
                    Err(m) => {
                        cx.error(
                            format!("mv:{}", mv.id),
                            format!("provisioning condition: {m}"),
                        );
                        continue;
                    }
                    Ok(false) => continue,
                    Ok(true) => {}
                }
                let dn = match p.render_dn(&attrs, cx.syntax(&target.name)) {
                    Ok(d) => idsync_model::Dn::new(d),
                    Err(m) => {
                        cx.error(
                            format!("mv:{}", mv.id),
                            format!("provisioning to `{}`: dn: {m}", target.name),
                        );
                        continue;
                    }
                };
                if let Some(existing) = store.cs_by_dn(&target.name, &dn)? {
                    if existing.mv_id.is_none() {
                        cx.error(
                            dn.to_string(),
                            format!(
                                "cannot provision to `{}`: an object with this identifier exists and is not joined (add a join rule for it)",
                                target.name
                            ),
                        );
                    }
                    continue;
                }
                let attributes =
                    export_values(store, target, &p.object_type, &attrs, true, &mv.id, cx)?;
                let o = CsObject {
                    id: CsId::new(uuid::Uuid::now_v7().to_string()),
                    connector: target.name.clone(),
                    anchor: None,
                    dn,
                    object_type: p.object_type.clone(),
                    object_classes: p.object_classes.clone(),
                    hologram: Attributes::new(),
                    pending_import: None,
                    pending_export: Some(PendingExport::Add {
                        object_classes: p.object_classes.clone(),
                        attributes,
                    }),
                    awaiting: vec![],
                    awaiting_add: false,
                    export_error: None,
                    retry_count: 0,
                    mv_id: Some(mv.id.clone()),
                    seen_run: None,
                    provisioned: true,
                };
                store.cs_put(&o)?;
                cx.report.stats.provisioned += 1;
                // Objects whose exports referred to this person can name it now.
                for waiting in store.pending_ref_take(&target.name, &mv_ref_key(&mv.id))? {
                    cx.requeue.insert(waiting);
                }
                break;
            }
            continue;
        }
        for o in objs {
            let mut o = o.clone();
            let creating = matches!(o.pending_export, Some(PendingExport::Add { .. }));
            let desired =
                export_values(store, target, &o.object_type, &attrs, creating, &mv.id, cx)?;
            let before = o.pending_export.clone();
            if let Some(PendingExport::Add { attributes, .. }) = &mut o.pending_export {
                *attributes = desired;
            } else {
                let expected = o.expected();
                let desired = crate::written::substitute(store, &target.name, &expected, desired)?;
                // Only attributes an export flow manages are compared: others belong to the
                // target and are left alone.
                let mut current = Attributes::new();
                for f in target.export_flows.iter() {
                    if f.object_type.as_ref().is_none_or(|t| t == &o.object_type)
                        && (creating || !f.initial_only)
                    {
                        current.set(f.cs.as_str(), expected.get(&f.cs).unwrap_or(&[]).to_vec());
                    }
                }
                let changes = diff_attributes(&current, &desired);
                let new_dn = rules
                    .provisioning
                    .iter()
                    .find(|p| p.connector == target.name && p.object_type == o.object_type)
                    .and_then(|p| p.render_dn(&attrs, cx.syntax(&target.name)).ok())
                    .map(idsync_model::Dn::new)
                    .filter(|d| d != &o.dn);
                o.pending_export = if changes.is_empty() && new_dn.is_none() {
                    match o.pending_export {
                        Some(PendingExport::Delete) => Some(PendingExport::Delete),
                        _ => None,
                    }
                } else {
                    Some(PendingExport::Update { new_dn, changes })
                };
            }
            if o.pending_export != before {
                // A different export is a new attempt: a backoff earned by the old one (e.g.
                // refused for a missing attribute that has arrived since) does not hold it back.
                if o.retry_count > 0 {
                    store.retry_set(&o.id, None)?;
                }
                store.cs_put(&o)?;
            }
        }
    }
    Ok(())
}

/// The values a target should hold, with metaverse references turned into the target's own
/// identifiers. A reference whose target object is not in that system yet is left out and the
/// object evaluated again once it is.
fn export_values<S: Store>(
    store: &mut S,
    target: &ConnectorRules,
    object_type: &idsync_model::ObjectTypeName,
    attrs: &Attributes,
    creating: bool,
    mv: &MvId,
    cx: &mut SyncCtx<'_>,
) -> Result<Attributes> {
    let mut out = Attributes::new();
    let mut unresolved = Vec::new();
    for flow in target.export_values(object_type, attrs, creating) {
        match flow.values {
            Err(m) => cx.error(
                format!("mv:{mv}"),
                format!("export flow to `{}`.{}: {m}", target.name, flow.attribute),
            ),
            Ok(values) => {
                let mut vs = Vec::with_capacity(values.len());
                for v in values {
                    match v {
                        Value::Reference(Reference::Mv(m)) => {
                            let found = store
                                .cs_links(&m)?
                                .into_iter()
                                .find(|c| c.connector == target.name);
                            match found {
                                Some(c) => vs.push(Value::Reference(Reference::Dn(c.dn))),
                                None => unresolved.push(m),
                            }
                        }
                        other => vs.push(other),
                    }
                }
                out.set(flow.attribute, vs);
            }
        }
    }
    if !unresolved.is_empty() {
        // Evaluate a source object of this person again when the referenced person gets an
        // object in this target.
        if let Some(src) = store.cs_links(mv)?.into_iter().find(|c| !c.provisioned) {
            for m in unresolved {
                store.pending_ref_add(&target.name, &mv_ref_key(&m), &src.id)?;
            }
        }
    }
    Ok(out)
}

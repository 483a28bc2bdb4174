//! Full and delta import: read a connected system into its connector space.
//!
//! Every object read is compared by content with its hologram: new objects become pending adds,
//! changed ones pending updates with attribute-level deltas, unchanged ones nothing. Objects a full
//! import did not see become pending deletes only after the read completed; a read that fails
//! rolls the whole step back. An import also confirms exports: what was exported must come back.

use crate::safety::DeleteGuard;
use crate::{state, Engine, Error, Result, StepReport};
use idsync_connectors::{crash_point, ImportChange, ImportSink};
use idsync_model::{
    apply_delta, content_digest, diff_attributes, scoped_wire_digest, typed_digest,
    AttributeChange, AttributeDelta, Attributes, ConnectorId, CsEntry, CsId, CsObject, Dn,
    PendingImport, RunId, Value,
};
use idsync_rules::ConnectorRules;
use idsync_store::{CsFilter, CsState, FilteredObject, ObjectError, Store};
use std::collections::HashSet;

const PAGE: usize = 1000;

struct Session<'a, S: Store> {
    store: &'a mut S,
    rules: &'a ConnectorRules,
    run: RunId,
    report: &'a mut StepReport,
    progress: &'a dyn crate::Progress,
    /// `<step>:<connector>`, for crash points.
    label: String,
    /// The identifiers of the objects a delta import deleted (for `remove_dangling_references`).
    deleted: HashSet<Dn>,
    /// A full import into an empty connector space: the anchors (hashed) it added. An object
    /// whose anchor is not among them cannot be in the space, so it is not looked up.
    fresh: Option<idsync_model::IdHashSet>,
    /// The state [`ImportSink::unchanged_wire`] looked up for an anchor it found changed: the
    /// entry that follows is staged without a second lookup.
    probed: Option<(idsync_model::Anchor, Option<CsState>)>,
    /// The objects written, freed on a helper thread (their values come from the connector's
    /// reading thread).
    written: crate::dropper::Dropper<CsObject>,
    /// The anchors of the objects this delta's changes staged (and counted). A connector that
    /// learns only mid-delta that it must read everything (a syncrepl refresh answered with a
    /// present list) reads them again in the same step: each object is counted once.
    changed: HashSet<idsync_model::Anchor>,
    /// Set while a change is staged (rather than an entry of a whole read).
    in_change: bool,
    /// A full import: the records of objects not taken are replaced whole at its end, so an
    /// object it takes needs no look-up of its record.
    full: bool,
    /// When the import began (the time its records of objects not taken carry).
    time: i64,
    /// A store error met where the sink cannot return one ([`ImportSink::filtered`]): the
    /// import stops with it.
    failed: Option<idsync_store::Error>,
}

/// Whether an object in this state, whose digest matched, is unchanged: not awaiting an
/// export's confirmation and not a pending delete (an object back before a sync took it away).
fn settled(state: &CsState) -> bool {
    state.settled && state.pending_import != Some(PendingImport::Delete)
}

/// Whether the system now holds what an export sent.
pub(crate) fn satisfied(hologram: &Attributes, d: &AttributeDelta) -> bool {
    let have = hologram.get_name(&d.name).unwrap_or(&[]);
    let keys: HashSet<_> = have.iter().map(Value::compare_key).collect();
    match &d.change {
        AttributeChange::Replace(v) => {
            let want: HashSet<_> = v.iter().map(Value::compare_key).collect();
            want == keys
        }
        AttributeChange::Update { add, remove } => {
            add.iter().all(|v| keys.contains(&v.compare_key()))
                && remove.iter().all(|v| !keys.contains(&v.compare_key()))
        }
    }
}

fn merge_pending(
    old: Option<PendingImport>,
    changes: Vec<AttributeDelta>,
    renamed_from: Option<Dn>,
) -> PendingImport {
    match old {
        Some(PendingImport::Add) => PendingImport::Add,
        Some(PendingImport::Update {
            changes: mut before,
            renamed_from: r,
        }) => {
            before.extend(changes);
            PendingImport::Update {
                changes: before,
                renamed_from: r.or(renamed_from),
            }
        }
        _ => PendingImport::Update {
            changes,
            renamed_from,
        },
    }
}

impl<S: Store> Session<'_, S> {
    /// Counts an object read and not taken under its reason, and records it (by its DN, with
    /// its anchor when it has one) so `idsync show` can say why.
    fn not_taken(
        &mut self,
        dn: &Dn,
        anchor: Option<&idsync_model::Anchor>,
        reason: String,
    ) -> idsync_store::Result<()> {
        let record = FilteredObject {
            connector: self.rules.name.clone(),
            dn: dn.clone(),
            anchor: anchor.filter(|a| !a.as_str().is_empty()).cloned(),
            reason,
            run: self.run,
            at: self.time,
        };
        self.store.filtered_put(&record)?;
        self.report.stats.filter(record.reason);
        Ok(())
    }

    /// A change (modify, rename) to an object not in the connector space that an import did
    /// not take before: counted under the reason it was not taken, its record moved to `dn`.
    /// The change alone cannot bring it in (its values are not kept): the next full import
    /// reads it whole.
    fn change_not_taken(
        &mut self,
        anchor: Option<&idsync_model::Anchor>,
        dn: &Dn,
        new_dn: &Dn,
    ) -> std::result::Result<bool, String> {
        let e = |e: idsync_store::Error| e.to_string();
        let mut found = self
            .store
            .filtered_find(&self.rules.name, dn.as_str())
            .map_err(e)?;
        if let (None, Some(a)) = (&found, anchor) {
            found = self
                .store
                .filtered_find(&self.rules.name, a.as_str())
                .map_err(e)?;
        }
        let Some(f) = found else {
            return Ok(false);
        };
        self.store
            .filtered_remove(&self.rules.name, None, &f.dn)
            .map_err(e)?;
        self.not_taken(new_dn, f.anchor.as_ref(), f.reason)
            .map_err(e)?;
        Ok(true)
    }

    fn object_error(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.report.errors.push(ObjectError {
            object: object.into(),
            message: message.into(),
        });
    }

    /// Confirms exported changes against the state just read, and clears them.
    fn confirm(&mut self, o: &mut CsObject) {
        if o.awaiting.is_empty() && !o.awaiting_add {
            return;
        }
        let missing: Vec<String> = o
            .awaiting
            .iter()
            .filter(|d| !satisfied(&o.hologram, d))
            .map(|d| d.name.to_string())
            .collect();
        if missing.is_empty() {
            self.report.stats.confirmed += 1;
            o.export_error = None;
        } else {
            self.report.stats.not_confirmed += 1;
            let msg = format!("exported change not confirmed: {}", missing.join(", "));
            self.object_error(o.dn.to_string(), msg.clone());
            o.export_error = Some(msg);
        }
        o.awaiting.clear();
        o.awaiting_add = false;
    }

    /// Counts one object read (and the progress every 1,024).
    fn count_read(&mut self) {
        self.report.stats.read += 1;
        if self.report.stats.read.is_multiple_of(1024) {
            self.progress.advance(1024);
            crate::heartbeat(self.store, self.report);
        }
    }

    /// Counts an object unchanged and marks it seen by this import, without rewriting it.
    fn seen_unchanged(&mut self, id: &CsId) -> std::result::Result<(), String> {
        self.report.stats.unchanged += 1;
        self.store
            .cs_mark_seen(id, self.run)
            .map_err(|e| e.to_string())
    }

    /// Stages one whole object as read (see [`Self::stage_read`]); an object this step's
    /// changes already staged and counted, read again by a whole read in the same step, is
    /// staged again and not counted twice.
    fn stage_entry(
        &mut self,
        entry: CsEntry,
        entry_digest: Option<[u8; 32]>,
        wire: Option<[u8; 32]>,
    ) -> std::result::Result<(), String> {
        if self.in_change {
            self.changed.insert(entry.anchor.clone());
        } else if self.changed.contains(&entry.anchor) {
            let before = self.report.stats.clone();
            let r = self.stage_read(entry, entry_digest, wire);
            let s = &mut self.report.stats;
            s.read = before.read;
            s.added = before.added;
            s.updated = before.updated;
            s.renamed = before.renamed;
            s.unchanged = before.unchanged;
            s.filtered = before.filtered;
            return r;
        }
        self.stage_read(entry, entry_digest, wire)
    }

    /// Stages one whole object as read, with its [`idsync_model::entry_digest`] when the
    /// connector computed it, and its wire digest when it has one.
    fn stage_read(
        &mut self,
        entry: CsEntry,
        entry_digest: Option<[u8; 32]>,
        wire: Option<[u8; 32]>,
    ) -> std::result::Result<(), String> {
        if let Some(e) = &self.failed {
            return Err(e.to_string());
        }
        self.count_read();
        let store_err = |e: idsync_store::Error| e.to_string();
        let otype = match self.rules.classify(&entry) {
            Ok(t) => t.name.clone(),
            Err(reason) => {
                return self
                    .not_taken(&entry.dn, Some(&entry.anchor), reason.to_string())
                    .map_err(store_err);
            }
        };
        if !self.full {
            // Taken now: it may have been left out before.
            self.store
                .filtered_remove(&self.rules.name, Some(&entry.anchor), &entry.dn)
                .map_err(store_err)?;
        }
        let first_sight = self
            .fresh
            .as_mut()
            .is_some_and(|added| added.insert(idsync_model::id_hash(entry.anchor.as_str())));
        let wire = wire.map(|w| scoped_wire_digest(self.rules.scope_version(), &w));
        let probed = self.probed.take().filter(|(a, _)| *a == entry.anchor);
        let state = match probed {
            _ if first_sight => None,
            Some((_, state)) => state,
            None => self
                .store
                .cs_state_by_anchor(&self.rules.name, &entry.anchor)
                .map_err(store_err)?,
        };
        // Most objects of a full import are unchanged: their digest tells so without loading
        // and diffing them. The content digest is the connector's, or computed here when it is
        // compared or kept: an object kept with a wire digest needs none (the wire digest tells
        // it unchanged, and one read differently is loaded and compared anyway).
        let digest = match entry_digest {
            Some(d) => {
                debug_assert_eq!(
                    d,
                    idsync_model::entry_digest(&entry.dn, &entry.object_classes, &entry.attributes)
                );
                Some(typed_digest(otype.as_str(), &d))
            }
            None if wire.is_none() || state.as_ref().is_some_and(|s| s.digest.is_some()) => {
                Some(content_digest(
                    &entry.dn,
                    otype.as_str(),
                    &entry.object_classes,
                    &entry.attributes,
                ))
            }
            None => None,
        };
        if let Some(state) = &state {
            if digest.is_some() && state.digest == digest && settled(state) {
                if wire.is_some() && state.wire_digest != wire {
                    // Read differently, same content: next time the wire digest tells.
                    self.store
                        .cs_set_digest(&state.id, digest, wire)
                        .map_err(store_err)?;
                }
                return self.seen_unchanged(&state.id);
            }
        }
        let stored_wire = state.as_ref().and_then(|s| s.wire_digest);
        let stored_digest = state.as_ref().and_then(|s| s.digest);
        let by_anchor = match state {
            Some(state) => self.store.cs_get(&state.id).map_err(store_err)?,
            None => None,
        };
        let existing = match by_anchor {
            Some(o) => Some(o),
            None if first_sight => None,
            // An object idsync created and exported has no anchor until its confirming import
            // finds it by identifier.
            None => self
                .store
                .cs_by_dn(&self.rules.name, &entry.dn)
                .map_err(store_err)?
                .filter(|o| o.anchor.is_none() || o.awaiting_add),
        };
        match existing {
            None => {
                let o = CsObject {
                    id: CsId::new(uuid::Uuid::now_v7().to_string()),
                    connector: self.rules.name.clone(),
                    anchor: Some(entry.anchor),
                    dn: entry.dn,
                    object_type: otype,
                    object_classes: entry.object_classes,
                    hologram: entry.attributes,
                    pending_import: Some(PendingImport::Add),
                    pending_export: None,
                    awaiting: vec![],
                    awaiting_add: false,
                    export_error: None,
                    retry_count: 0,
                    mv_id: None,
                    seen_run: Some(self.run),
                    provisioned: false,
                };
                self.report.stats.added += 1;
                self.store
                    .cs_put_digested(&o, digest, wire)
                    .map_err(store_err)?;
                self.written.drop_later(o);
            }
            Some(mut o) => {
                let changes = diff_attributes(&o.hologram, &entry.attributes);
                let renamed = o.dn.as_str() != entry.dn.as_str();
                let awaiting = !o.awaiting.is_empty() || o.awaiting_add;
                let retyped = o.object_type != otype || o.object_classes != entry.object_classes;
                // An object a full import found gone, and that is back before a sync took it
                // away, is not unchanged: its pending delete is cancelled below.
                let undeleted = o.pending_import == Some(PendingImport::Delete);
                if changes.is_empty()
                    && !renamed
                    && !awaiting
                    && !retyped
                    && !undeleted
                    && o.anchor.is_some()
                {
                    if stored_digest != digest || stored_wire != wire {
                        // Found unchanged the slow way: next time the digests tell.
                        self.store
                            .cs_set_digest(&o.id, digest, wire)
                            .map_err(store_err)?;
                    }
                    return self.seen_unchanged(&o.id);
                }
                let from = renamed.then(|| o.dn.clone());
                if renamed {
                    self.report.stats.renamed += 1;
                }
                if !changes.is_empty() || retyped {
                    self.report.stats.updated += 1;
                } else if !renamed {
                    self.report.stats.unchanged += 1;
                }
                o.anchor = Some(entry.anchor);
                o.dn = entry.dn;
                o.object_type = otype;
                o.object_classes = entry.object_classes;
                o.hologram = entry.attributes;
                o.seen_run = Some(self.run);
                self.confirm(&mut o);
                if !changes.is_empty()
                    || renamed
                    || retyped
                    || o.pending_import == Some(PendingImport::Delete)
                {
                    o.pending_import = Some(merge_pending(o.pending_import.take(), changes, from));
                } else if awaiting && o.mv_id.is_some() {
                    // A confirmed export changes nothing in the metaverse, but an object whose
                    // export was not confirmed is evaluated again so the export is retried.
                    if o.export_error.is_some() {
                        o.pending_import = Some(PendingImport::Reevaluate);
                    }
                }
                // The object now holds what was read: the digest computed above is its own.
                self.store
                    .cs_put_digested(&o, digest, wire)
                    .map_err(store_err)?;
                self.written.drop_later(o);
            }
        }
        Ok(())
    }

    fn find(
        &mut self,
        anchor: Option<&idsync_model::Anchor>,
        dn: &Dn,
    ) -> std::result::Result<Option<CsObject>, String> {
        let e = |e: idsync_store::Error| e.to_string();
        if let Some(a) = anchor {
            if let Some(o) = self.store.cs_by_anchor(&self.rules.name, a).map_err(e)? {
                return Ok(Some(o));
            }
        }
        self.store.cs_by_dn(&self.rules.name, dn).map_err(e)
    }

    /// Marks for deletion what a whole read of the space did not see (counted by the delete
    /// guard); an add idsync exported and did not find is not confirmed instead.
    fn obsolete_unseen(&mut self, id: &ConnectorId, guard: &mut DeleteGuard) -> Result<()> {
        let mut after: Option<CsId> = None;
        loop {
            let page =
                self.store
                    .cs_scan(id, CsFilter::NotSeenIn(self.run), after.as_ref(), PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            crate::heartbeat(self.store, self.report);
            for mut o in page {
                if o.provisioned && (o.awaiting_add || o.pending_export.is_some()) {
                    if o.awaiting_add {
                        self.report.stats.not_confirmed += 1;
                        let msg = "exported add not confirmed: the object was not found".to_owned();
                        self.object_error(o.dn.to_string(), msg.clone());
                        o.export_error = Some(msg);
                        o.awaiting_add = false;
                        o.awaiting.clear();
                        o.anchor = None;
                        o.pending_export = None;
                        o.pending_import = Some(PendingImport::Reevaluate);
                        self.store.cs_put(&o)?;
                    }
                    continue;
                }
                if o.pending_import == Some(PendingImport::Delete) {
                    continue;
                }
                self.report.stats.deleted += 1;
                guard.count(o.dn.as_str());
                o.pending_import = Some(PendingImport::Delete);
                self.store.cs_put(&o)?;
            }
        }
        Ok(())
    }

    fn stage_change(&mut self, change: ImportChange) -> std::result::Result<(), String> {
        let e = |e: idsync_store::Error| e.to_string();
        match change {
            ImportChange::Upsert(entry) => {
                self.in_change = true;
                let r = self.stage_entry(entry, None, None);
                self.in_change = false;
                r
            }
            ImportChange::Modify {
                anchor,
                dn,
                changes,
            } => {
                self.report.stats.read += 1;
                let Some(mut o) = self.find(anchor.as_ref(), &dn)? else {
                    if !self.change_not_taken(anchor.as_ref(), &dn, &dn)? {
                        self.object_error(
                            dn.to_string(),
                            "modify of an object not in the connector space",
                        );
                    }
                    return Ok(());
                };
                self.changed.extend(o.anchor.clone());
                let mut after = o.hologram.clone();
                apply_delta(&mut after, &changes);
                let actual = diff_attributes(&o.hologram, &after);
                if actual.is_empty() {
                    self.report.stats.unchanged += 1;
                    return Ok(());
                }
                self.report.stats.updated += 1;
                o.hologram = after;
                self.confirm(&mut o);
                o.pending_import = Some(merge_pending(o.pending_import.take(), actual, None));
                self.store.cs_put(&o).map_err(e)
            }
            ImportChange::Delete { anchor, dn } => {
                self.report.stats.read += 1;
                // Gone from its system: not taken no more.
                self.store
                    .filtered_remove(&self.rules.name, anchor.as_ref(), &dn)
                    .map_err(e)?;
                let Some(mut o) = self.find(anchor.as_ref(), &dn)? else {
                    // Deleting what was never imported (or was filtered) changes nothing.
                    self.report.stats.unchanged += 1;
                    return Ok(());
                };
                self.report.stats.deleted += 1;
                self.changed.extend(o.anchor.clone());
                o.pending_import = Some(PendingImport::Delete);
                self.deleted.insert(o.dn.clone());
                self.store.cs_put(&o).map_err(e)
            }
            ImportChange::Rename { anchor, dn, new_dn } => {
                self.report.stats.read += 1;
                let Some(mut o) = self.find(anchor.as_ref(), &dn)? else {
                    if !self.change_not_taken(anchor.as_ref(), &dn, &new_dn)? {
                        self.object_error(
                            dn.to_string(),
                            "rename of an object not in the connector space",
                        );
                    }
                    return Ok(());
                };
                self.changed.extend(o.anchor.clone());
                if o.dn == new_dn {
                    // A connector that cannot tell a rename from a change (AD's DirSync)
                    // names the DN it read: the same DN is no rename.
                    self.report.stats.read -= 1;
                    return Ok(());
                }
                self.report.stats.renamed += 1;
                let from = Some(o.dn.clone());
                o.dn = new_dn;
                o.pending_import = Some(merge_pending(o.pending_import.take(), vec![], from));
                self.store.cs_put(&o).map_err(e)
            }
        }
    }
}

impl<S: Store> ImportSink for Session<'_, S> {
    fn entry(&mut self, entry: CsEntry) -> std::result::Result<(), String> {
        self.stage_entry(entry, None, None)?;
        crash_point!("{}:object", self.label);
        Ok(())
    }
    fn knows_objects(&self) -> bool {
        self.fresh.is_none()
    }
    /// One light lookup by anchor; an object found changed (or not found) keeps its lookup for
    /// the entry the connector delivers next.
    fn unchanged_wire(
        &mut self,
        anchor: &idsync_model::Anchor,
        wire: [u8; 32],
    ) -> std::result::Result<bool, String> {
        if self.fresh.is_some() {
            // An empty space at the start: nothing read can be unchanged.
            return Ok(false);
        }
        let state = self
            .store
            .cs_state_by_anchor(&self.rules.name, anchor)
            .map_err(|e| e.to_string())?;
        let scoped = scoped_wire_digest(self.rules.scope_version(), &wire);
        if let Some(s) = state
            .as_ref()
            .filter(|s| s.wire_digest == Some(scoped) && settled(s))
        {
            self.count_read();
            self.seen_unchanged(&s.id)?;
            crash_point!("{}:object", self.label);
            return Ok(true);
        }
        self.probed = Some((anchor.clone(), state));
        Ok(false)
    }
    fn entry_read(
        &mut self,
        entry: CsEntry,
        digest: Option<[u8; 32]>,
        wire: Option<[u8; 32]>,
    ) -> std::result::Result<(), String> {
        self.stage_entry(entry, digest, wire)?;
        crash_point!("{}:object", self.label);
        Ok(())
    }
    fn change(&mut self, change: ImportChange) -> std::result::Result<(), String> {
        self.stage_change(change)?;
        crash_point!("{}:change", self.label);
        Ok(())
    }
    fn object_error(&mut self, place: String, message: String) {
        Session::object_error(self, place, message);
    }
    fn filtered(&mut self, dn: &Dn, reason: &str) {
        self.report.stats.read += 1;
        if let Err(e) = self.not_taken(dn, None, reason.to_owned()) {
            self.failed.get_or_insert(e);
        }
    }
    fn known_blob(&mut self, hash: &idsync_model::ContentHash) -> Option<u64> {
        self.store.blob_len(hash).ok().flatten()
    }
}

impl<S: Store> Engine<S> {
    pub(crate) fn import(
        &mut self,
        id: &ConnectorId,
        full: bool,
        report: &mut StepReport,
    ) -> Result<()> {
        let mut connector = self.take_connector(id)?;
        let result = self.import_with(&mut *connector, id, full, report);
        self.put_connector(connector);
        result
    }

    fn import_with(
        &mut self,
        connector: &mut dyn idsync_connectors::Connector,
        id: &ConnectorId,
        mut full: bool,
        report: &mut StepReport,
    ) -> Result<()> {
        let rules = self
            .rules
            .connector(id.as_str())
            .ok_or_else(|| Error::UnknownConnector(id.to_string()))?;
        let scope = rules.scope_version().to_owned();
        let stored_scope = self.store.state_get(id, state::SCOPE_VERSION)?;
        let watermark = self.store.state_get(id, state::WATERMARK)?;
        if !full {
            if !connector.capabilities().delta_import {
                report
                    .notes
                    .push("the connector has no delta import: ran a full import".to_owned());
                full = true;
            } else if stored_scope.as_deref() != Some(scope.as_str()) {
                report.notes.push(match stored_scope {
                    None => "first import of this connector: ran a full import".to_owned(),
                    Some(_) => "the import scope changed since the last import: ran a full import"
                        .to_owned(),
                });
                full = true;
            }
        }
        self.progress.start(
            &format!("{} import {id}", if full { "full" } else { "delta" }),
            None,
        );
        let run = report.run;
        let space = self.store.cs_object_count(id)?;
        let mut guard = DeleteGuard::new(self.rules.safety, self.options.allow_deletes);
        let label = format!("{}:{id}", self.step_label(report.step));
        let mut session = Session {
            store: &mut self.store,
            rules,
            run,
            label,
            report,
            progress: &*self.progress,
            deleted: HashSet::new(),
            // Room for 57,000 anchors before the set first grows (1 MB): a first import is
            // rarely smaller than that, and each growth rehashes everything added so far.
            fresh: (full && space == 0).then(|| {
                idsync_model::IdHashSet::with_capacity_and_hasher(1 << 16, Default::default())
            }),
            probed: None,
            written: crate::dropper::Dropper::new(),
            changed: HashSet::new(),
            in_change: false,
            full,
            time: idsync_store::now(),
            failed: None,
        };
        let delivered_all = if full {
            connector.full_import(&mut session)?;
            true
        } else {
            let outcome = connector.delta_import(watermark.as_deref(), &mut session)?;
            session
                .report
                .notes
                .push(format!("delta by {}", outcome.method));
            session
                .store
                .state_set(id, state::WATERMARK, outcome.watermark.as_deref())?;
            outcome.full
        };
        if let Some(e) = session.failed.take() {
            return Err(e.into());
        }
        // Every connector, also one whose system reports reference removals: a directory
        // without referential integrity (slapd without refint, an LDIF change file) leaves its
        // people's `manager` naming a deleted person. Removing a value already removed changes
        // nothing.
        if !delivered_all {
            remove_dangling_references(&mut session, id)?;
        }
        crash_point!("{}:read", session.label);
        if delivered_all {
            // Obsoletion happens only now that the whole read completed. Into a space that was
            // empty, everything there is was written by this read: nothing can be left unseen.
            if session.fresh.is_none() {
                session.obsolete_unseen(id, &mut guard)?;
            }
            // The records of objects not taken are this read's: the others were taken, or
            // are gone.
            session.store.filtered_sweep(id, run)?;
            // A read that finds most of the space gone (an empty file, a wrong base DN) is more
            // likely a fault than a mass departure: the step stops and stores nothing.
            guard.check(
                if full {
                    "full import"
                } else {
                    "delta import (the whole content)"
                },
                id.as_str(),
                space,
            )?;
            if full {
                // A full import read everything there is: the next delta starts from now.
                let w = connector.watermark_after_full_import()?;
                session
                    .store
                    .state_set(id, state::WATERMARK, w.as_deref())?;
            }
        }
        self.store
            .state_set(id, state::SCOPE_VERSION, Some(&scope))?;
        Ok(())
    }
}

/// The value of a DN's first RDN when it is plain text (no character a DN escapes or a
/// multi-valued RDN), as every spelling of the DN holds it.
fn first_rdn_value(dn: &Dn) -> Option<String> {
    let rdn = dn.as_str().split(',').next()?;
    let (_, value) = rdn.split_once('=')?;
    let value = value.trim();
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ' '));
    plain.then(|| value.to_owned())
}

/// Removes, from every object of the connector space, the reference values (a group's
/// `member`, a person's `manager`) naming an object this delta import deleted, for every
/// connector: Samba's DirSync never reports those removals, and a directory without referential
/// integrity (slapd without refint, an LDIF change file) never makes them. Each removal is
/// staged as an ordinary imported change, so the next sync flows it to the metaverse and on to
/// the targets in the same cycle. One streaming pass over the space, page by page, only when
/// something was deleted, loading only the objects whose stored text may name one.
fn remove_dangling_references<S: Store>(
    session: &mut Session<'_, S>,
    id: &ConnectorId,
) -> Result<()> {
    if session.deleted.is_empty() {
        return Ok(());
    }
    let mut removed = 0u64;
    let mut after: Option<CsId> = None;
    // A value naming a deleted object holds its first RDN value as it is, when that value has
    // nothing a DN escapes: then only the objects whose stored text may hold one are loaded.
    let needles: Option<Vec<String>> = (session.deleted.len() <= 256)
        .then(|| session.deleted.iter().map(first_rdn_value).collect())
        .flatten();
    loop {
        let page = match &needles {
            Some(n) => {
                let (last, page) = session
                    .store
                    .cs_scan_may_hold(id, n, after.as_ref(), PAGE)?;
                let Some(last) = last else { break };
                after = Some(last);
                page
            }
            None => {
                let page = session
                    .store
                    .cs_scan(id, CsFilter::All, after.as_ref(), PAGE)?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                page
            }
        };
        for mut o in page {
            if o.pending_import == Some(PendingImport::Delete) {
                continue;
            }
            let changes: Vec<AttributeDelta> = o
                .hologram
                .iter()
                .filter_map(|(name, values)| {
                    let remove: Vec<Value> = values
                        .iter()
                        .filter(|v| {
                            matches!(v, Value::Reference(idsync_model::Reference::Dn(d)) if session.deleted.contains(d))
                        })
                        .cloned()
                        .collect();
                    (!remove.is_empty()).then(|| AttributeDelta {
                        name: name.clone(),
                        change: AttributeChange::Update {
                            add: vec![],
                            remove,
                        },
                    })
                })
                .collect();
            if changes.is_empty() {
                continue;
            }
            removed += changes
                .iter()
                .map(|d| match &d.change {
                    AttributeChange::Update { remove, .. } => remove.len() as u64,
                    AttributeChange::Replace(_) => 0,
                })
                .sum::<u64>();
            apply_delta(&mut o.hologram, &changes);
            session.report.stats.updated += 1;
            o.pending_import = Some(merge_pending(o.pending_import.take(), changes, None));
            session.store.cs_put(&o)?;
        }
    }
    if removed > 0 {
        session.report.notes.push(format!(
            "removed {removed} reference(s) to the {} deleted object(s): the system did not remove them",
            session.deleted.len()
        ));
    }
    Ok(())
}

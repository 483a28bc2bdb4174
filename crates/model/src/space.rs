//! What idsync keeps about objects: connector-space objects (holograms with their pending
//! imports and exports) and metaverse objects (attributes with their contributors).

use crate::{
    apply_delta, Anchor, AttributeDelta, AttributeName, Attributes, ConnectorId, CsId, Dn, MvId,
    ObjectTypeName, RunId, Value,
};
use serde::{Deserialize, Serialize};

/// A change imported but not yet synchronized into the metaverse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PendingImport {
    Add,
    Update {
        changes: Vec<AttributeDelta>,
        renamed_from: Option<Dn>,
    },
    /// The object is gone from its system (or left the scope).
    Delete,
    /// Nothing changed in the system, but the object must be evaluated again (a reference it
    /// holds can now be resolved).
    Reevaluate,
}

/// A change staged for export to the connected system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "snake_case",
    tag = "kind",
    try_from = "PendingExportFields"
)]
pub enum PendingExport {
    Add {
        object_classes: Vec<String>,
        attributes: Attributes,
    },
    Update {
        new_dn: Option<Dn>,
        changes: Vec<AttributeDelta>,
    },
    Delete,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum PendingExportKind {
    Add,
    Update,
    Delete,
}

/// [`PendingExport`]'s stored form read as one flat object. Serde reads an internally tagged
/// enum by first buffering the whole document (the tag may come last), which made reading the
/// pending exports of a large export step cost twice what reading their attributes does; the
/// fields here are read straight from the text, in any order, with the same result.
#[derive(Deserialize)]
struct PendingExportFields {
    kind: PendingExportKind,
    object_classes: Option<Vec<String>>,
    attributes: Option<Attributes>,
    new_dn: Option<Dn>,
    changes: Option<Vec<AttributeDelta>>,
}

impl TryFrom<PendingExportFields> for PendingExport {
    type Error = &'static str;

    fn try_from(f: PendingExportFields) -> Result<Self, Self::Error> {
        Ok(match f.kind {
            PendingExportKind::Add => PendingExport::Add {
                object_classes: f.object_classes.ok_or("missing field `object_classes`")?,
                attributes: f.attributes.ok_or("missing field `attributes`")?,
            },
            PendingExportKind::Update => PendingExport::Update {
                new_dn: f.new_dn,
                changes: f.changes.ok_or("missing field `changes`")?,
            },
            PendingExportKind::Delete => PendingExport::Delete,
        })
    }
}

/// One object of a connector space.
#[derive(Debug, Clone, PartialEq)]
pub struct CsObject {
    pub id: CsId,
    pub connector: ConnectorId,
    /// None for an object idsync created that its system has not confirmed yet.
    pub anchor: Option<Anchor>,
    pub dn: Dn,
    pub object_type: ObjectTypeName,
    pub object_classes: Vec<String>,
    /// The last imported state.
    pub hologram: Attributes,
    pub pending_import: Option<PendingImport>,
    pub pending_export: Option<PendingExport>,
    /// Exported changes that the next import must confirm.
    pub awaiting: Vec<AttributeDelta>,
    /// Whether an exported add awaits confirmation.
    pub awaiting_add: bool,
    pub export_error: Option<String>,
    pub retry_count: u32,
    pub mv_id: Option<MvId>,
    /// The last full import that wrote it (one that finds it unchanged marks it seen for that
    /// step only, without rewriting it).
    pub seen_run: Option<RunId>,
    /// Created by idsync's provisioning rather than imported.
    pub provisioned: bool,
}

impl CsObject {
    /// The state the connected system has once every export sent so far is applied: the
    /// hologram with the unconfirmed exports on top. Export flows compare against this, so an
    /// export that is awaiting confirmation is not sent again.
    pub fn expected(&self) -> Attributes {
        let mut a = self.hologram.clone();
        apply_delta(&mut a, &self.awaiting);
        a
    }
}

/// One connector's values for one metaverse attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub attribute: AttributeName,
    pub connector: ConnectorId,
    pub cs_id: CsId,
    /// The rule (its version hash) that produced the values.
    pub rule: String,
    pub values: Vec<Value>,
    /// Seconds since the epoch.
    pub time: i64,
}

/// One metaverse object: a person or a group, with every contribution to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MvObject {
    pub id: MvId,
    pub object_type: ObjectTypeName,
    pub contributions: Vec<Contribution>,
}

impl MvObject {
    /// The attribute values that win, with their contributions: for each attribute the
    /// contribution with the lowest rank that has values.
    pub fn effective(
        &self,
        rank: impl Fn(&AttributeName, &ConnectorId) -> usize,
    ) -> (Attributes, Vec<&Contribution>) {
        let mut best: std::collections::BTreeMap<&AttributeName, &Contribution> =
            Default::default();
        for c in &self.contributions {
            if c.values.is_empty() {
                continue;
            }
            match best.get(&c.attribute) {
                Some(b) if rank(&b.attribute, &b.connector) <= rank(&c.attribute, &c.connector) => {
                }
                _ => {
                    best.insert(&c.attribute, c);
                }
            }
        }
        let attrs = best
            .iter()
            .map(|(k, c)| ((*k).clone(), c.values.clone()))
            .collect();
        (attrs, best.into_values().collect())
    }
}

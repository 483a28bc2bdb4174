//! Values a connector wrote in place of the ones an export gave it (Active Directory's
//! `thumbnailPhoto`, fitted under the directory's size limit).
//!
//! The metaverse keeps the desired value (the profile's photo); the target holds the value
//! written for it. Without a memory of which stands for which, the confirming import would find
//! the export not applied and every sync would export the photo again. The engine keeps, per
//! connector, attribute and desired content hash, the written value's hash and length (in the
//! connector state, one row per distinct photo): an export's awaiting changes name the written
//! value, so the confirming import finds it; and a sync that wants the desired value of an
//! object whose target already holds the value written for it stages nothing. A new photo has
//! another hash, so it is exported (and fitted) again; the same photo is fitted only once.

use crate::Result;
use idsync_connectors::WrittenValue;
use idsync_model::{AttributeChange, AttributeDelta, Attributes, Blob, ConnectorId, Value};
use idsync_store::Store;

fn key(attribute: &str, desired: &idsync_model::ContentHash) -> String {
    format!("written:{}:{desired}", attribute.to_ascii_lowercase())
}

/// Remembers what was written for each desired value, and makes the awaiting changes of the
/// object name the written values, which is what the confirming import will read.
pub(crate) fn record<S: Store>(
    store: &mut S,
    connector: &ConnectorId,
    awaiting: &mut [AttributeDelta],
    written: &[&WrittenValue],
) -> Result<()> {
    for w in written {
        store.state_set(
            connector,
            &key(w.attribute.as_str(), &w.desired),
            Some(&format!("{} {}", w.written.hash, w.written.len)),
        )?;
        for d in awaiting.iter_mut() {
            if !d.name.as_str().eq_ignore_ascii_case(w.attribute.as_str()) {
                continue;
            }
            let values = match &mut d.change {
                AttributeChange::Replace(v) => v,
                AttributeChange::Update { add, .. } => add,
            };
            for v in values.iter_mut() {
                if matches!(v, Value::Binary(b) if b.hash == w.desired) {
                    *v = Value::Binary(w.written.clone());
                }
            }
        }
    }
    Ok(())
}

/// The desired values with each binary value replaced by the value written for it earlier,
/// where the target (`expected`, its state once awaiting exports land) holds exactly that.
pub(crate) fn substitute<S: Store>(
    store: &mut S,
    connector: &ConnectorId,
    expected: &Attributes,
    mut desired: Attributes,
) -> Result<Attributes> {
    for (name, values) in desired.iter_mut() {
        let Some(held) = expected.get_name(name) else {
            continue;
        };
        for v in values.iter_mut() {
            if held.contains(v) {
                continue;
            }
            let Value::Binary(b) = v else { continue };
            let Some(stored) = store.state_get(connector, &key(name.as_str(), &b.hash))? else {
                continue;
            };
            let written = stored
                .split_once(' ')
                .and_then(|(h, _)| idsync_model::ContentHash::from_hex(h));
            if let Some(h) = written {
                if let Some(found) = held
                    .iter()
                    .find(|x| matches!(x, Value::Binary(Blob { hash, .. }) if *hash == h))
                {
                    *v = found.clone();
                }
            }
        }
    }
    Ok(desired)
}

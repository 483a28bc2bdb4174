//! The Active Directory profile's delta import: DirSync (1.2.840.113556.1.4.841) with the cookie
//! as watermark (`dirsync:` and one base64 cookie per base DN, which must each be a naming
//! context's root, as DirSync requires).
//!
//! A DirSync answer carries an object's changed attributes only, so a changed object becomes an
//! [`ImportChange::Modify`] merged into the hologram (never an upsert of a partial entry); an
//! object returned with its `objectClass` is new (or read whole) and becomes an upsert. With the
//! incremental-values flag, `member;range=1-1` values are adds and `member;range=0-0` removes.
//! A tombstone (`isDeleted`) becomes a delete by objectGUID. An object returned with a DN the
//! engine holds under another name is a rename or move (same objectGUID): a rename change is
//! sent with the DN read, which the engine ignores when the DN is the one it holds.

use crate::{guarded, LdapConnector};
use idsync_ad_proto::{
    dirsync_request, incremental, parse_dirsync_response, Incremental, DIRSYNC_INCREMENTAL_VALUES,
    DIRSYNC_OBJECT_SECURITY, DIRSYNC_OID,
};
use idsync_connectors::{
    value_text, Error, ExportItem, ExportOp, ImportChange, ImportSink, Result, WrittenValue,
};
use idsync_model::{Anchor, AttributeChange, AttributeDelta, AttributeName, Blob, CsId, Dn, Value};
use ldap3::{Scope, SearchEntry};
use std::collections::HashMap;

/// The most bytes the server puts in one DirSync answer (it then says there is more).
const DIRSYNC_MAX_BYTES: i64 = 1 << 20;

/// Reads the rest of every ranged attribute of an entry (AD returns at most `MaxValRange`
/// values, 1,500 by default, as `member;range=0-1499`; the next ranges are asked for by name
/// until the last one, `member;range=N-*`), so the entry carries all the values under the plain
/// attribute name.
pub(crate) async fn complete_ranges(
    ldap: &mut ldap3::Ldap,
    timeout: std::time::Duration,
    e: &mut SearchEntry,
) -> std::result::Result<(), String> {
    let ranged: Vec<String> = e
        .attrs
        .keys()
        .chain(e.bin_attrs.keys())
        .filter(|k| idsync_ad_proto::parse_range(k).is_some())
        .cloned()
        .collect();
    for key in ranged {
        let Some(first) = idsync_ad_proto::parse_range(&key) else {
            continue;
        };
        let text = e.attrs.contains_key(&key);
        let mut values: Vec<Vec<u8>> = match e.attrs.remove(&key) {
            Some(v) => v.into_iter().map(String::into_bytes).collect(),
            None => e.bin_attrs.remove(&key).unwrap_or_default(),
        };
        let mut end = first.end;
        while let Some(last) = end {
            let want = format!("{};range={}-*", first.attribute, last + 1);
            let ldap3::SearchResult(found, res) = ldap
                .with_timeout(timeout)
                .search(&e.dn, Scope::Base, "(objectClass=*)", vec![want.as_str()])
                .await
                .map_err(|err| format!("{}: reading {want}: {err}", e.dn))?;
            if res.rc != 0 {
                return Err(format!(
                    "{}: reading {want}: {} ({}) {}",
                    e.dn,
                    crate::rc_name(res.rc),
                    res.rc,
                    res.text
                ));
            }
            let Some(next) = found
                .into_iter()
                .filter(|r| !r.is_ref())
                .map(SearchEntry::construct)
                .next()
            else {
                break;
            };
            let mut got = None;
            for (k, v) in next.attrs {
                if let Some(r) = idsync_ad_proto::parse_range(&k) {
                    got = Some(r.end);
                    values.extend(v.into_iter().map(String::into_bytes));
                }
            }
            for (k, v) in next.bin_attrs {
                if let Some(r) = idsync_ad_proto::parse_range(&k) {
                    got = Some(r.end);
                    values.extend(v);
                }
            }
            match got {
                Some(Some(n)) if n <= last => {
                    return Err(format!(
                        "{}: the server answered {want} with no progress",
                        e.dn
                    ))
                }
                Some(n) => end = n,
                // No range in the answer: the values were all read.
                None => break,
            }
        }
        if text {
            let t: Vec<String> = values
                .into_iter()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .collect();
            e.attrs.insert(first.attribute, t);
        } else {
            e.bin_attrs.insert(first.attribute, values);
        }
    }
    Ok(())
}

pub(crate) const WATERMARK_PREFIX: &str = "dirsync:";
/// The watermark of the `uSNChanged` fallback: `usnChanged:N`, N the root DSE's
/// `highestCommittedUSN` before the read.
pub(crate) const USN_PREFIX: &str = "usnChanged:";

pub(crate) fn encode(cookies: &[Vec<u8>]) -> String {
    use base64::Engine;
    let parts: Vec<String> = cookies
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
        .collect();
    format!("{WATERMARK_PREFIX}{}", parts.join(" "))
}

pub(crate) fn decode(w: &str, bases: usize) -> Option<Vec<Vec<u8>>> {
    use base64::Engine;
    let rest = w.strip_prefix(WATERMARK_PREFIX)?;
    let cookies: Option<Vec<Vec<u8>>> = rest
        .split(' ')
        .map(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
        .collect();
    cookies.filter(|c| c.len() == bases)
}

/// The attribute AD keeps a person's photo in.
const THUMBNAIL_PHOTO: &str = "thumbnailPhoto";

/// A new user's `userAccountControl`: a normal account that needs no password (idsync never
/// sets passwords), disabled or not.
fn new_user_uac(disabled: bool) -> String {
    let v = idsync_ad_proto::UAC_NORMAL_ACCOUNT | 0x20;
    let v = if disabled {
        v | idsync_ad_proto::UAC_ACCOUNTDISABLE
    } else {
        v
    };
    v.to_string()
}

fn bool_of(values: &[Value]) -> Option<bool> {
    match values.first()? {
        Value::Boolean(b) => Some(*b),
        other => match value_text(other).to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
    }
}

impl LdapConnector {
    /// The watermark of now, taken before a read: DirSync cookies, or the highest committed USN
    /// with `delta = "usn-changed"`.
    pub(crate) fn ad_watermark_now(&mut self) -> Result<String> {
        if self.s.delta != crate::DeltaMethod::UsnChanged {
            return Ok(encode(&self.dirsync_fresh_cookies()?));
        }
        self.conn()?;
        let root = self.search_all("", Scope::Base, "(objectClass=*)", &["highestCommittedUSN"])?;
        let usn = root
            .first()
            .and_then(|e| e.attrs.get("highestCommittedUSN"))
            .and_then(|v| v.first())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| self.err("the root DSE has no readable highestCommittedUSN"))?;
        Ok(format!("{USN_PREFIX}{usn}"))
    }

    /// Fits photo values under the configured limit; each fitted value is remembered as written
    /// in place of the given one, for the engine (`take_written_values`).
    fn fit_photos(
        &mut self,
        cs_id: &CsId,
        attribute: &AttributeName,
        values: &[Value],
    ) -> std::result::Result<Vec<Value>, String> {
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            let Value::Binary(b) = v else {
                out.push(v.clone());
                continue;
            };
            let data = b
                .data
                .as_ref()
                .ok_or_else(|| format!("binary value {} has no bytes", b.hash))?;
            let fitted = idsync_ad_proto::photo::fit(data, self.s.photo_max_bytes)
                .map_err(|m| format!("attribute {THUMBNAIL_PHOTO}: {m}"))?;
            match fitted {
                std::borrow::Cow::Borrowed(_) => out.push(v.clone()),
                std::borrow::Cow::Owned(bytes) => {
                    let blob = Blob::from_bytes(bytes);
                    self.written.push(WrittenValue {
                        cs_id: cs_id.clone(),
                        attribute: attribute.clone(),
                        desired: b.hash,
                        written: Blob {
                            data: None,
                            ..blob.clone()
                        },
                    });
                    out.push(Value::Binary(blob));
                }
            }
        }
        Ok(out)
    }

    /// The export item as AD takes it: `accountDisabled` as the `userAccountControl` bit (read
    /// from the server for a modify), `thumbnailPhoto` fitted. `Ok(Err)` fails this item only.
    pub(crate) fn ad_prepare(
        &mut self,
        item: &ExportItem,
    ) -> Result<std::result::Result<ExportItem, String>> {
        let mut item = item.clone();
        let is = |n: &AttributeName, s: &str| n.as_str().eq_ignore_ascii_case(s);
        match &mut item.op {
            ExportOp::Add {
                object_classes,
                attributes,
            } => {
                let disabled = attributes
                    .iter()
                    .find(|(n, _)| is(n, crate::ACCOUNT_DISABLED))
                    .and_then(|(_, v)| bool_of(v));
                let user = object_classes
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case("user"));
                let has_uac = attributes.iter().any(|(n, _)| is(n, "userAccountControl"));
                if user && !has_uac {
                    attributes.set(
                        AttributeName::from("userAccountControl"),
                        vec![Value::String(new_user_uac(disabled.unwrap_or(false)))],
                    );
                }
                for (n, v) in attributes.iter_mut() {
                    if is(n, THUMBNAIL_PHOTO) {
                        match self.fit_photos(&item.cs_id, n, v) {
                            Ok(f) => *v = f,
                            Err(m) => return Ok(Err(m)),
                        }
                    }
                }
            }
            ExportOp::Update { changes, .. } => {
                let mut disabled = None;
                for d in changes.iter_mut() {
                    if is(&d.name, crate::ACCOUNT_DISABLED) {
                        disabled = match &d.change {
                            AttributeChange::Replace(v) => bool_of(v),
                            AttributeChange::Update { add, .. } => bool_of(add),
                        };
                    }
                    if is(&d.name, THUMBNAIL_PHOTO) {
                        let r = match &mut d.change {
                            AttributeChange::Replace(v) => {
                                self.fit_photos(&item.cs_id, &d.name, v).map(|f| *v = f)
                            }
                            AttributeChange::Update { add, .. } => {
                                self.fit_photos(&item.cs_id, &d.name, add).map(|f| *add = f)
                            }
                        };
                        if let Err(m) = r {
                            return Ok(Err(m));
                        }
                    }
                }
                changes.retain(|d| !is(&d.name, crate::ACCOUNT_DISABLED));
                if let Some(disabled) = disabled {
                    let dn = item.dn.to_string();
                    let found = self.search_all(
                        &dn,
                        Scope::Base,
                        "(objectClass=*)",
                        &["userAccountControl"],
                    )?;
                    let Some(uac) = found
                        .first()
                        .and_then(|e| e.attrs.get("userAccountControl"))
                        .and_then(|v| v.first())
                    else {
                        return Ok(Err(format!(
                            "{dn} has no userAccountControl to set {} in",
                            crate::ACCOUNT_DISABLED
                        )));
                    };
                    let Some(new) = idsync_ad_proto::uac_with_disabled(uac, disabled) else {
                        return Ok(Err(format!(
                            "{dn}: userAccountControl `{uac}` is not a number"
                        )));
                    };
                    changes.push(AttributeDelta {
                        name: AttributeName::from("userAccountControl"),
                        change: AttributeChange::Replace(vec![Value::String(new)]),
                    });
                }
            }
            ExportOp::Delete => {}
        }
        Ok(Ok(item))
    }

    /// One DirSync answer: its entries (continuation references dropped) and the response.
    fn dirsync_page(
        &mut self,
        base: &str,
        cookie: &[u8],
        attrs: &[String],
    ) -> Result<(Vec<SearchEntry>, idsync_ad_proto::DirSyncResponse)> {
        self.conn()?;
        let filter = self.base_filter();
        let id = self.id.clone();
        let c = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::Sink("no connection".into()))?;
        let timeout = c.timeout;
        let ldap = &mut c.ldap;
        let ctrl = dirsync_request(
            DIRSYNC_OBJECT_SECURITY | DIRSYNC_INCREMENTAL_VALUES,
            DIRSYNC_MAX_BYTES,
            cookie,
        );
        let r = guarded("dirsync", || {
            c.rt.block_on(async {
                let ldap3::SearchResult(entries, res) = ldap
                    .with_controls(vec![ctrl])
                    .with_timeout(timeout)
                    .search(base, Scope::Subtree, &filter, attrs.to_vec())
                    .await
                    .map_err(|e| e.to_string())?;
                if res.rc != 0 {
                    return Err(crate::conn::result_text(res.rc, &res.text));
                }
                let resp = res
                    .ctrls
                    .iter()
                    .find(|c| c.1.ctype == DIRSYNC_OID)
                    .and_then(|c| c.1.val.as_deref())
                    .and_then(parse_dirsync_response)
                    .ok_or("the server's answer has no readable DirSync response control")?;
                let entries = entries
                    .into_iter()
                    .filter(|e| !e.is_ref() && !e.is_intermediate())
                    .map(SearchEntry::construct)
                    .collect();
                Ok((entries, resp))
            })
        });
        r.map_err(|m| Error::Sink(format!("connector `{id}`: DirSync of `{base}`: {m}")))
    }

    /// The cookies of now, one per base (DirSync from the start, the entries dropped): taken
    /// before a full read, so a change made while it runs comes again in the next delta.
    pub(crate) fn dirsync_fresh_cookies(&mut self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for base in self.s.base_dns.clone() {
            let mut cookie = Vec::new();
            loop {
                let (_, r) = self.dirsync_page(&base, &cookie, &["objectGUID".to_owned()])?;
                cookie = r.cookie;
                if !r.more {
                    break;
                }
            }
            out.push(cookie);
        }
        Ok(out)
    }

    /// The changes since the cookies, into the sink; the new cookies.
    pub(crate) fn dirsync_delta(
        &mut self,
        cookies: Vec<Vec<u8>>,
        sink: &mut dyn ImportSink,
    ) -> Result<Vec<Vec<u8>>> {
        let mut attrs = self.requested();
        for extra in ["isDeleted", "objectGUID"] {
            if !attrs.iter().any(|a| a.eq_ignore_ascii_case(extra)) {
                attrs.push(extra.to_owned());
            }
        }
        let mut next = Vec::new();
        for (base, mut cookie) in self.s.base_dns.clone().into_iter().zip(cookies) {
            loop {
                let (entries, r) = self.dirsync_page(&base, &cookie, &attrs)?;
                for e in entries {
                    self.dirsync_entry(e, sink)?;
                }
                cookie = r.cookie;
                if !r.more {
                    break;
                }
            }
            next.push(cookie);
        }
        Ok(next)
    }

    /// One object DirSync returned, as the engine's change(s).
    fn dirsync_entry(&self, mut e: SearchEntry, sink: &mut dyn ImportSink) -> Result<()> {
        let send = |sink: &mut dyn ImportSink, c: ImportChange| sink.change(c).map_err(Error::Sink);
        let anchor = e
            .bin_attrs
            .get("objectGUID")
            .or_else(|| e.bin_attrs.get("objectguid"))
            .and_then(|v| v.first())
            .map(|raw| self.s.profile.anchor_text(raw))
            .or_else(|| {
                e.attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("objectGUID"))
                    .and_then(|(_, v)| v.first())
                    .map(|raw| self.s.profile.anchor_text(raw.as_bytes()))
            });
        let Some(anchor) = anchor.map(Anchor::new) else {
            sink.object_error(
                e.dn.clone(),
                "DirSync returned the object without its objectGUID: not imported".to_owned(),
            );
            return Ok(());
        };
        let deleted = e.attrs.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("isDeleted") && v.iter().any(|x| x.eq_ignore_ascii_case("TRUE"))
        });
        if deleted {
            return send(
                sink,
                ImportChange::Delete {
                    anchor: Some(anchor),
                    dn: Dn::new(e.dn),
                },
            );
        }
        // Incremental values (linked attributes) apart: the rest are whole attribute values.
        let mut added: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        let mut removed: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        let text: Vec<String> = e.attrs.keys().cloned().collect();
        let bin: Vec<String> = e.bin_attrs.keys().cloned().collect();
        for k in text {
            if let Some((name, how)) = incremental(&k) {
                let v = e.attrs.remove(&k).unwrap_or_default();
                let slot = match how {
                    Incremental::Added => added.entry(name).or_default(),
                    Incremental::Removed => removed.entry(name).or_default(),
                };
                slot.extend(v.into_iter().map(String::into_bytes));
            }
        }
        for k in bin {
            if let Some((name, how)) = incremental(&k) {
                let v = e.bin_attrs.remove(&k).unwrap_or_default();
                let slot = match how {
                    Incremental::Added => added.entry(name).or_default(),
                    Incremental::Removed => removed.entry(name).or_default(),
                };
                slot.extend(v);
            }
        }
        let whole = e
            .attrs
            .keys()
            .any(|k| k.eq_ignore_ascii_case("objectClass"));
        let dn = e.dn.clone();
        let Some((mut entry, _)) = self.to_entry(e, sink) else {
            return Ok(());
        };
        if whole {
            // A new object (or one read whole): its linked values are all adds.
            for (name, values) in added {
                let typed = self.typed_values(&dn, &name, values, sink);
                entry
                    .attributes
                    .set(AttributeName::from(name.as_str()), typed);
            }
            return send(sink, ImportChange::Upsert(entry));
        }
        send(
            sink,
            ImportChange::Rename {
                anchor: Some(anchor.clone()),
                dn: Dn::new(dn.clone()),
                new_dn: Dn::new(dn.clone()),
            },
        )?;
        let mut changes: Vec<AttributeDelta> = entry
            .attributes
            .iter()
            .filter(|(n, _)| !n.as_str().eq_ignore_ascii_case(&self.anchor))
            .map(|(n, v)| AttributeDelta {
                name: n.clone(),
                change: AttributeChange::Replace(v.clone()),
            })
            .collect();
        let mut names: Vec<String> = added.keys().chain(removed.keys()).cloned().collect();
        names.sort();
        names.dedup();
        for name in names {
            if !self.wanted(&name) {
                continue;
            }
            let add = self.typed_values(&dn, &name, added.remove(&name).unwrap_or_default(), sink);
            let remove =
                self.typed_values(&dn, &name, removed.remove(&name).unwrap_or_default(), sink);
            changes.push(AttributeDelta {
                name: AttributeName::from(name.as_str()),
                change: AttributeChange::Update { add, remove },
            });
        }
        if changes.is_empty() {
            return Ok(());
        }
        send(
            sink,
            ImportChange::Modify {
                anchor: Some(anchor),
                dn: Dn::new(dn),
                changes,
            },
        )
    }
}

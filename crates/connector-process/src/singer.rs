//! The Singer connector (`type = "singer"`): any Singer tap as a source. The tap runs as
//! `COMMAND --config FILE [--catalog FILE] [--state FILE]` and writes the Singer
//! specification's messages on its standard output: SCHEMA (a stream's JSON Schema and its
//! `key_properties`), RECORD (one row) and STATE (where the next run starts). Each configured
//! stream becomes an object type; `key_properties` is the anchor; JSON Schema types become
//! idsync's values (`integer`, `boolean`, `string` with `format: date-time` a timestamp, arrays
//! several values); the last STATE is the watermark, handed back with `--state` by the next
//! delta import, so a tap that keeps state reads only what changed. The same session machinery
//! as the process connector: bounded buffers, the timeout, the last standard-error lines in
//! every error, the process group killed and reaped.

use crate::session::{Limits, Session};
use crate::{excerpt, Link};
use idsync_connectors::{
    settings, Capabilities, Connector, DeltaOutcome, Error, ExportItem, ExportResult, ImportChange,
    ImportSink, Result,
};
use idsync_model::{Anchor, Attributes, ConnectorId, CsEntry, Dn, IdentifierSyntax, Value};
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SingerSettings {
    /// The tap and its arguments (no shell), without `--config`.
    command: Vec<String>,
    /// The tap's configuration file (its own format), relative to this file.
    config: String,
    /// A catalog for taps that need one (`--catalog`).
    catalog: Option<String>,
    /// Stream name → object type. Records of other streams are counted as filtered.
    streams: BTreeMap<String, String>,
    working_directory: Option<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default = "crate::default_timeout")]
    timeout: f64,
    #[serde(default = "crate::default_stderr_lines")]
    stderr_lines: usize,
    #[serde(default = "crate::default_max_stderr")]
    max_stderr_bytes: u64,
    #[serde(default = "crate::default_max_line")]
    max_line_bytes: usize,
}

pub struct SingerConnector {
    id: ConnectorId,
    s: SingerSettings,
    base_dir: PathBuf,
    working_directory: PathBuf,
    full_watermark: Option<String>,
}

/// A stream's SCHEMA: its properties' types and its key.
struct Stream {
    properties: serde_json::Map<String, Json>,
    key: Vec<String>,
}

impl SingerConnector {
    pub fn new(id: ConnectorId, raw: &toml::Table, base_dir: &Path) -> Result<Self> {
        let s: SingerSettings = settings(&id, raw)?;
        if s.command.is_empty() || s.command[0].is_empty() {
            return Err(Error::Setting {
                connector: id.to_string(),
                key: "command".into(),
                message: "`command` names the tap: command = [\"tap-jsonl\"]".into(),
            });
        }
        if s.streams.is_empty() {
            return Err(Error::Setting {
                connector: id.to_string(),
                key: "streams".into(),
                message: "say which streams become which object types: streams = { employees = \"person\" }".into(),
            });
        }
        let working_directory = match &s.working_directory {
            Some(w) => base_dir.join(w),
            None => base_dir.to_path_buf(),
        };
        Ok(Self {
            id,
            s,
            base_dir: base_dir.to_path_buf(),
            working_directory,
            full_watermark: None,
        })
    }

    /// Runs the tap once, handing each record to `f`; returns the last STATE.
    fn run(
        &mut self,
        state: Option<&str>,
        sink: &mut dyn ImportSink,
        f: &mut dyn FnMut(&mut dyn ImportSink, CsEntry) -> std::result::Result<(), String>,
    ) -> Result<Option<String>> {
        let state_file = match state {
            Some(st) => {
                let t = tempfile::NamedTempFile::new().map_err(|e| Error::Remote {
                    connector: self.id.to_string(),
                    message: format!("cannot write the state file: {e}"),
                })?;
                std::fs::write(t.path(), st).map_err(|e| Error::Remote {
                    connector: self.id.to_string(),
                    message: format!("cannot write the state file: {e}"),
                })?;
                Some(t)
            }
            None => None,
        };
        let mut command = self.s.command.clone();
        command.push("--config".into());
        command.push(self.base_dir.join(&self.s.config).display().to_string());
        if let Some(c) = &self.s.catalog {
            command.push("--catalog".into());
            command.push(self.base_dir.join(c).display().to_string());
        }
        if let Some(t) = &state_file {
            command.push("--state".into());
            command.push(t.path().display().to_string());
        }
        let env: Vec<(String, String)> = self
            .s
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut link = Link {
            id: self.id.clone(),
            session: None,
            timeout: self.s.timeout,
            max_line_bytes: self.s.max_line_bytes,
            max_stderr_bytes: self.s.max_stderr_bytes,
        };
        let session = Session::spawn(
            self.id.as_str(),
            &command,
            &self.working_directory,
            &env,
            Limits {
                timeout: Duration::from_secs_f64(self.s.timeout),
                stderr_lines: self.s.stderr_lines,
                max_stderr_bytes: self.s.max_stderr_bytes,
                max_line_bytes: self.s.max_line_bytes,
            },
        )
        .map_err(|m| link.remote(m))?;
        link.session = Some(session);
        let mut streams: HashMap<String, Stream> = HashMap::new();
        let mut last_state: Option<String> = None;
        while let Some((n, line)) = link.next_raw("the next message of the tap")? {
            let text = String::from_utf8_lossy(&line);
            if text.trim().is_empty() {
                continue;
            }
            let m: Json = match serde_json::from_str(&text) {
                Ok(m) => m,
                Err(e) => {
                    return Err(link.fail(format!(
                        "standard output line {n} is not valid JSON ({e}): {}",
                        excerpt(&text)
                    )))
                }
            };
            match m["type"].as_str() {
                Some("SCHEMA") => {
                    let name = m["stream"].as_str().unwrap_or_default().to_owned();
                    let properties = m["schema"]["properties"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default();
                    let key: Vec<String> = m["key_properties"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect();
                    if key.is_empty() && self.s.streams.contains_key(&name) {
                        return Err(link.fail(format!(
                            "line {n}: stream `{name}` has no key_properties: idsync needs a key to anchor its records"
                        )));
                    }
                    streams.insert(name, Stream { properties, key });
                }
                Some("RECORD") => {
                    let name = m["stream"].as_str().unwrap_or_default();
                    let Some(object_type) = self.s.streams.get(name) else {
                        // Named by its stream and key, for `idsync show`.
                        let key = streams
                            .get(name)
                            .map(|st| {
                                st.key
                                    .iter()
                                    .map(|k| match &m["record"][k] {
                                        Json::String(s) => s.clone(),
                                        other => other.to_string(),
                                    })
                                    .collect::<Vec<_>>()
                                    .join("/")
                            })
                            .unwrap_or_default();
                        sink.filtered(&Dn::new(format!("{name}/{key}")), "stream not configured");
                        continue;
                    };
                    let Some(stream) = streams.get(name) else {
                        return Err(link.fail(format!(
                            "line {n}: a RECORD of stream `{name}` before its SCHEMA"
                        )));
                    };
                    let entry = match record(stream, object_type, &m["record"]) {
                        Ok(e) => e,
                        Err(e) => return Err(link.fail(format!("line {n}: stream `{name}`: {e}"))),
                    };
                    if let Err(e) = f(sink, entry) {
                        link.abort();
                        return Err(Error::Sink(e));
                    }
                }
                Some("STATE") => last_state = Some(m["value"].to_string()),
                // ACTIVATE_VERSION and BATCH say nothing idsync uses.
                Some(_) => {}
                None => {
                    return Err(link.fail(format!(
                        "standard output line {n} is not a Singer message (no `type`): {}",
                        excerpt(&text)
                    )))
                }
            }
        }
        // The output ended: the tap must have succeeded.
        let status = link.session.as_mut().and_then(|s| {
            s.wait_exit(Duration::from_secs_f64(self.s.timeout));
            s.kill()
        });
        match status {
            Some(st) if st.success() => {}
            Some(st) => return Err(link.fail(format!("the tap failed ({st})"))),
            None => return Err(link.fail("the tap closed its output but did not exit".into())),
        }
        drop(state_file);
        Ok(last_state)
    }
}

/// A RECORD as an object, typed by its stream's SCHEMA.
fn record(stream: &Stream, object_type: &str, r: &Json) -> std::result::Result<CsEntry, String> {
    let row = r.as_object().ok_or("a record is not an object")?;
    let mut key = Vec::with_capacity(stream.key.len());
    for k in &stream.key {
        match row.get(k) {
            Some(Json::String(s)) if !s.is_empty() => key.push(s.clone()),
            Some(v @ Json::Number(_)) => key.push(v.to_string()),
            _ => return Err(format!("a record without its key `{k}`")),
        }
    }
    let anchor = key.join("/");
    let mut attributes = Attributes::new();
    for (name, v) in row {
        let schema = stream.properties.get(name).cloned().unwrap_or(Json::Null);
        let values = values(&schema, v).map_err(|e| format!("`{anchor}`: `{name}`: {e}"))?;
        if !values.is_empty() {
            attributes.set(name.as_str(), values);
        }
    }
    Ok(CsEntry {
        anchor: Anchor::new(anchor.clone()),
        dn: Dn::new(anchor),
        object_classes: vec![object_type.to_owned()],
        attributes,
    })
}

fn types(schema: &Json) -> Vec<&str> {
    match &schema["type"] {
        Json::String(t) => vec![t.as_str()],
        Json::Array(ts) => ts.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

fn values(schema: &Json, v: &Json) -> std::result::Result<Vec<Value>, String> {
    let ts = types(schema);
    Ok(match v {
        Json::Null => Vec::new(),
        Json::Array(items) => {
            let item = &schema["items"];
            let mut out = Vec::new();
            for i in items {
                out.extend(values(item, i)?);
            }
            out
        }
        Json::Bool(b) => vec![Value::Boolean(*b)],
        Json::Number(n) => match n.as_i64() {
            Some(i) if !ts.contains(&"number") || n.is_i64() => vec![Value::Integer(i)],
            _ => vec![Value::String(n.to_string())],
        },
        Json::String(s) => {
            if schema["format"] == "date-time" && !s.is_empty() {
                vec![Value::Timestamp(parse_date_time(s)?)]
            } else if ts.contains(&"integer") {
                vec![Value::Integer(
                    s.parse().map_err(|_| format!("`{s}` is not an integer"))?,
                )]
            } else {
                vec![Value::String(s.clone())]
            }
        }
        Json::Object(_) => vec![Value::String(v.to_string())],
    })
}

/// RFC 3339 with an offset or `Z`, or a date alone, as seconds since the epoch (UTC).
fn parse_date_time(s: &str) -> std::result::Result<i64, String> {
    let bad = || format!("`{s}` is not a date-time");
    let s = s.trim();
    if s.len() == 10 {
        return crate::wire::parse_rfc3339(&format!("{s}T00:00:00Z")).map_err(|_| bad());
    }
    // Split off an offset (+hh:mm / -hh:mm) after the time.
    let (main, offset) = match s.get(19..).and_then(|rest| rest.rfind(['+', '-'])) {
        Some(i) => (&s[..19 + i], &s[19 + i..]),
        None => (s.trim_end_matches(['Z', 'z']), "Z"),
    };
    let main = main.split('.').next().unwrap_or(main).replace(' ', "T");
    let t = crate::wire::parse_rfc3339(&format!("{main}Z")).map_err(|_| bad())?;
    if offset == "Z" {
        return Ok(t);
    }
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let hm: Vec<i64> = offset[1..]
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<std::result::Result<_, _>>()?;
    let secs = hm.first().copied().unwrap_or(0) * 3600 + hm.get(1).copied().unwrap_or(0) * 60;
    Ok(t - sign * secs)
}

impl Connector for SingerConnector {
    fn id(&self) -> &ConnectorId {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            full_import: true,
            delta_import: true,
            export: false,
            delta_sees_own_exports: false,
            identifier: IdentifierSyntax::Plain,
        }
    }

    fn full_import(&mut self, sink: &mut dyn ImportSink) -> Result<()> {
        self.full_watermark = None;
        let state = self.run(None, sink, &mut |sink, e| sink.entry(e))?;
        self.full_watermark = state;
        Ok(())
    }

    fn delta_import(
        &mut self,
        watermark: Option<&str>,
        sink: &mut dyn ImportSink,
    ) -> Result<DeltaOutcome> {
        let state = self.run(watermark, sink, &mut |sink, e| {
            sink.change(ImportChange::Upsert(e))
        })?;
        Ok(DeltaOutcome {
            watermark: state.or_else(|| watermark.map(str::to_owned)),
            method: "singer state".to_owned(),
            full: false,
        })
    }

    fn export(&mut self, _batch: &[ExportItem]) -> Result<Vec<ExportResult>> {
        Err(Error::Unsupported {
            connector: self.id.to_string(),
            operation: "export (a Singer tap is a source)",
        })
    }

    fn watermark_after_full_import(&mut self) -> Result<Option<String>> {
        Ok(self.full_watermark.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_schema_types_become_values() {
        let s: Json = serde_json::json!({"type": ["string", "null"], "format": "date-time"});
        assert_eq!(
            values(&s, &Json::from("2024-01-31T12:00:00+01:00")).unwrap(),
            vec![Value::Timestamp(1_706_698_800)]
        );
        assert_eq!(
            values(&s, &Json::from("2024-01-31T11:00:00.123Z")).unwrap(),
            vec![Value::Timestamp(1_706_698_800)]
        );
        let i: Json = serde_json::json!({"type": ["integer", "null"]});
        assert_eq!(values(&i, &Json::from(3)).unwrap(), vec![Value::Integer(3)]);
        assert!(values(&i, &Json::Null).unwrap().is_empty());
        let a: Json = serde_json::json!({"type": "array", "items": {"type": "string"}});
        assert_eq!(values(&a, &serde_json::json!(["x", "y"])).unwrap().len(), 2);
        let n: Json = serde_json::json!({"type": "number"});
        assert_eq!(
            values(&n, &Json::from(1.5)).unwrap(),
            vec![Value::String("1.5".into())]
        );
    }
}

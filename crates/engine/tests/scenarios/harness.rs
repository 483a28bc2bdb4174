//! The data-driven helper every scenario uses: a temporary directory holding the configuration,
//! the connected systems' files and the SQLite store, and an engine built over them as the CLI
//! builds it. A scenario writes compact fixtures (LDIF, CSV, configuration text), runs steps and
//! cycles, reloads the engine with a changed configuration over the same store, and reads back
//! connector spaces, the metaverse and the target files.

#![allow(dead_code)]

use idsync_engine::{CycleKind, CycleReport, Engine, Step, StepReport};
use idsync_model::{
    AttributeChange, AttributeDelta, Attributes, ConnectorId, CsObject, MvObject, Value,
};
use idsync_rules::Rules;
use idsync_store::SqliteStore;
use idsync_store::{ConnectorSpaces, ConnectorState, CsFilter, Metaverse, RunRecord, Runs};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The configuration file's name, as errors name it.
pub const CONFIG_FILE: &str = "idsync.toml";

/// The directory connector most scenarios start from: an LDIF content file with entryUUID
/// anchors, a folder of change files for delta import, and people of both object classes.
pub const DIRECTORY: &str = r#"
[[connector]]
name = "directory"
type = "ldif"
role = "directory"
path = "directory.ldif"
delta_path = "changes"
anchor = "entryUUID"

[[connector.object_type]]
name = "person"
object_classes = ["inetOrgPerson", "person"]
"#;

/// The profile table idsync provisions every person into: a CSV target named by account.
/// `columns` and `extra` (more settings, e.g. `multi_valued`) vary by scenario.
pub fn profiles(columns: &[&str], extra: &str) -> String {
    let cols = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[[connector]]
name = "profiles"
type = "csv"
role = "target"
path = "profiles.csv"
optional = true
anchor = "id"
dn = "account"
columns = [{cols}]
{extra}

[[connector.object_type]]
name = "person"
"#
    )
}

/// An import flow copying one attribute.
pub fn import_flow(connector: &str, mv: &str, cs: &str) -> String {
    format!("\n[[import_flow]]\nconnector = \"{connector}\"\nmv = \"{mv}\"\ncs = \"{cs}\"\n")
}

/// An export flow copying one attribute.
pub fn export_flow(connector: &str, cs: &str, mv: &str) -> String {
    format!("\n[[export_flow]]\nconnector = \"{connector}\"\ncs = \"{cs}\"\nmv = \"{mv}\"\n")
}

/// Provisioning of every person into the profile table, named by uid.
pub const PROVISION_PROFILES: &str = r#"
[[provision]]
connector = "profiles"
dn = "{uid}"
"#;

/// The DN of a person in the sample directory.
pub fn dn(uid: &str) -> String {
    format!("uid={uid},ou=People,dc=example,dc=test")
}

/// One inetOrgPerson content record; `extra` are more `name: value` lines.
pub fn person(uid: &str, uuid: &str, extra: &[&str]) -> String {
    let mut s = format!(
        "dn: {}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: inetOrgPerson\nentryUUID: {uuid}\nuid: {uid}\ncn: {uid}\nsn: {uid}\n",
        dn(uid)
    );
    for line in extra {
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    s
}

/// One plain `person` content record (no inetOrgPerson class).
pub fn plain_person(uid: &str, uuid: &str) -> String {
    format!(
        "dn: {}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nentryUUID: {uuid}\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\n",
        dn(uid)
    )
}

/// The 1-based number of the first line of `text` containing `needle`.
pub fn line_of(text: &[u8], needle: &str) -> usize {
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    lines
        .iter()
        .position(|l| l.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .unwrap_or_else(|| panic!("no line contains {needle:?}"))
        + 1
}

/// Texts of values, for compact assertions.
pub fn texts(values: Option<&[Value]>) -> Vec<String> {
    let mut v: Vec<String> = values.unwrap_or(&[]).iter().map(Value::to_text).collect();
    v.sort();
    v
}

/// The delta of one attribute in a list of deltas.
pub fn delta_of<'a>(deltas: &'a [AttributeDelta], name: &str) -> &'a AttributeChange {
    &deltas
        .iter()
        .find(|d| d.name.as_str().eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("no delta of `{name}` in {deltas:?}"))
        .change
}

/// Everything the store holds that a step may change: connector spaces, metaverse and each
/// connector's state. Run history is left out: a failed step is recorded there on purpose.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub cs: Vec<CsObject>,
    pub mv: Vec<MvObject>,
    pub state: Vec<(String, String, Option<String>)>,
}

/// One entry of an LDIF content file, read back with the project's own codec.
#[derive(Debug, Clone)]
pub struct LdifEntry {
    pub dn: String,
    pub attrs: Vec<(String, Vec<u8>)>,
}

impl LdifEntry {
    pub fn values(&self, name: &str) -> Vec<Vec<u8>> {
        self.attrs
            .iter()
            .filter(|(n, _)| n.split(';').next().unwrap_or(n).eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub engine: Engine<SqliteStore>,
    pub config: String,
}

fn build(dir: &Path, config: &str) -> Engine<SqliteStore> {
    std::fs::write(dir.join(CONFIG_FILE), config).expect("write the configuration");
    let rules = Rules::load(config, CONFIG_FILE).unwrap_or_else(|e| panic!("config: {e}"));
    let store = SqliteStore::open(&dir.join("idsync.db")).expect("open the store");
    // Every connector type the binary knows (LDAP scenarios open the real LDAP connector).
    Engine::new(rules, store, dir.to_path_buf()).with_opener(idsync_connectors_all::open)
}

impl Env {
    /// A fresh directory with these files, and an engine over `config`.
    pub fn new(config: &str, files: &[(&str, &[u8])]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, bytes) in files {
            write_file(dir.path(), name, bytes);
        }
        let engine = build(dir.path(), config);
        Env {
            dir,
            engine,
            config: config.to_owned(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating its folder), replacing what was there.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        write_file(self.dir.path(), rel, bytes.as_ref());
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path(rel)).expect("remove file");
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// A new engine over the same store file, with a changed configuration (as an administrator
    /// editing the file and running again).
    pub fn reload(&mut self, config: &str) {
        let fresh = build(self.dir.path(), config);
        self.engine = fresh;
        self.config = config.to_owned();
    }

    pub fn try_step(
        &mut self,
        step: Step,
        connector: &str,
    ) -> Result<StepReport, idsync_engine::Error> {
        self.engine.run_step(step, connector)
    }

    /// Runs a step that must succeed.
    pub fn step(&mut self, step: Step, connector: &str) -> StepReport {
        self.try_step(step, connector)
            .unwrap_or_else(|e| panic!("{} of {connector}: {e}", step.name()))
    }

    pub fn cycle(&mut self, kind: CycleKind) -> CycleReport {
        self.engine
            .run_cycle(kind)
            .unwrap_or_else(|e| panic!("{kind:?} cycle: {e}"))
    }

    /// Every object of a connector space, in id order.
    pub fn cs(&mut self, connector: &str) -> Vec<CsObject> {
        let id = ConnectorId::new(connector);
        let mut out: Vec<CsObject> = Vec::new();
        loop {
            let after = out.last().map(|o| o.id.clone());
            let page = self
                .engine
                .store
                .cs_scan(&id, CsFilter::All, after.as_ref(), 100)
                .expect("scan");
            if page.is_empty() {
                return out;
            }
            out.extend(page);
        }
    }

    pub fn cs_by_anchor(&mut self, connector: &str, anchor: &str) -> Option<CsObject> {
        self.engine
            .store
            .cs_by_anchor(&ConnectorId::new(connector), &anchor.into())
            .expect("cs_by_anchor")
    }

    /// The object of a connector space with this anchor, which must exist.
    pub fn cs_anchor(&mut self, connector: &str, anchor: &str) -> CsObject {
        self.cs_by_anchor(connector, anchor)
            .unwrap_or_else(|| panic!("no object anchored `{anchor}` in `{connector}`"))
    }

    pub fn cs_by_dn(&mut self, connector: &str, dn: &str) -> Option<CsObject> {
        self.engine
            .store
            .cs_by_dn(&ConnectorId::new(connector), &dn.into())
            .expect("cs_by_dn")
    }

    /// The object of a connector space with this identifier, which must exist.
    pub fn cs_dn(&mut self, connector: &str, dn: &str) -> CsObject {
        self.cs_by_dn(connector, dn)
            .unwrap_or_else(|| panic!("no object `{dn}` in `{connector}`"))
    }

    /// Every metaverse object, in id order.
    pub fn mv(&mut self) -> Vec<MvObject> {
        let mut out: Vec<MvObject> = Vec::new();
        loop {
            let after = out.last().map(|o| o.id.clone());
            let page = self
                .engine
                .store
                .mv_scan(after.as_ref(), 100)
                .expect("mv scan");
            if page.is_empty() {
                return out;
            }
            out.extend(page);
        }
    }

    pub fn mv_count(&mut self) -> u64 {
        self.engine.store.mv_count().expect("mv count")
    }

    /// A metaverse object's winning values, as precedence picks them.
    pub fn effective(&self, mv: &MvObject) -> Attributes {
        let rules = &self.engine.rules;
        mv.effective(|a, c| rules.precedence_rank(a.as_str(), c)).0
    }

    /// The metaverse object whose effective `attr` holds the text `value`, with its values.
    pub fn mv_where(&mut self, attr: &str, value: &str) -> (MvObject, Attributes) {
        let all = self.mv();
        for m in all {
            let a = self.effective(&m);
            if a.get(attr)
                .unwrap_or(&[])
                .iter()
                .any(|v| v.to_text() == value)
            {
                return (m, a);
            }
        }
        panic!("no metaverse object with {attr} = {value}")
    }

    /// The metaverse object a connector-space object is joined to, with its values.
    pub fn mv_of(&mut self, o: &CsObject) -> (MvObject, Attributes) {
        let id = o
            .mv_id
            .clone()
            .unwrap_or_else(|| panic!("`{}` is not joined", o.dn));
        let m = self
            .engine
            .store
            .mv_get(&id)
            .expect("mv_get")
            .unwrap_or_else(|| panic!("metaverse object {id} is gone"));
        let a = self.effective(&m);
        (m, a)
    }

    /// The store's state, for "nothing changed" assertions.
    pub fn snapshot(&mut self) -> Snapshot {
        let names: Vec<String> = self
            .engine
            .rules
            .connectors
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        let mut cs = Vec::new();
        let mut state = Vec::new();
        for n in &names {
            cs.extend(self.cs(n));
            for key in ["watermark", "scope_version", "sync_version"] {
                let v = self
                    .engine
                    .store
                    .state_get(&ConnectorId::new(n), key)
                    .expect("state");
                state.push((n.clone(), key.to_owned(), v));
            }
        }
        let mv = self.mv();
        Snapshot { cs, mv, state }
    }

    /// The most recent run in the history.
    pub fn last_run(&mut self) -> RunRecord {
        self.engine
            .store
            .runs(1)
            .expect("runs")
            .pop()
            .expect("a run")
    }

    /// A CSV file's rows, by column name.
    pub fn csv_rows(&self, rel: &str) -> Vec<BTreeMap<String, String>> {
        let mut rdr =
            csv::Reader::from_path(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"));
        let headers = rdr.headers().expect("header").clone();
        rdr.records()
            .map(|r| {
                let r = r.expect("row");
                headers
                    .iter()
                    .zip(r.iter())
                    .map(|(h, v)| (h.to_owned(), v.to_owned()))
                    .collect()
            })
            .collect()
    }

    /// The row of a CSV file whose `column` is `value`.
    pub fn csv_row(&self, rel: &str, column: &str, value: &str) -> BTreeMap<String, String> {
        self.csv_rows(rel)
            .into_iter()
            .find(|r| r.get(column).map(String::as_str) == Some(value))
            .unwrap_or_else(|| panic!("no row of {rel} with {column} = {value}"))
    }

    /// An LDIF content file's entries, read back with idsync's own codec.
    pub fn ldif_entries(&self, rel: &str) -> Vec<LdifEntry> {
        let path = self.path(rel);
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {rel}: {e}"));
        let reader = idsync_ldif::Reader::new(
            std::io::BufReader::new(file),
            rel,
            Box::new(idsync_ldif::FileUrlResolver {
                base_dir: path.parent().map(Path::to_path_buf),
            }),
        );
        reader
            .map(|r| match r.expect("valid LDIF").record {
                idsync_ldif::Record::Content { dn, attrs } => LdifEntry {
                    dn,
                    attrs: attrs.into_iter().map(|a| (a.name, a.value)).collect(),
                },
                other => panic!("a change record in a content file: {other:?}"),
            })
            .collect()
    }

    /// The entry of an LDIF content file with this entryUUID.
    pub fn ldif_entry(&self, rel: &str, uuid: &str) -> LdifEntry {
        self.ldif_entries(rel)
            .into_iter()
            .find(|e| e.values("entryUUID").iter().any(|v| v == uuid.as_bytes()))
            .unwrap_or_else(|| panic!("no entry with entryUUID {uuid} in {rel}"))
    }
}

fn write_file(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("create folder");
    }
    std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {rel}: {e}"));
}

/// Base64 of bytes, for inline LDIF values.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A binary value's content hash, for comparing a value with bytes.
pub fn hash_of(bytes: &[u8]) -> String {
    Value::Binary(idsync_model::Blob::from_bytes(bytes.to_vec())).to_text()
}

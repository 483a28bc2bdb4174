//! What the tests against real slapd servers share: cycles run by the real binary, the connector
//! spaces and metaverse as `idsync dump` shows them, the entries a slapd holds (values as bytes,
//! as the server sends them) and an RFC 4514 escaper of the test's own, independent of idsync's.

use super::{idsync, run_ok};
use base64::Engine as _;
use idsync_testbed::Slapd;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;

pub fn b64(s: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The sum of one statistic over a report's steps on `connector`.
pub fn step_total(report: &Json, connector: &str, field: &str) -> u64 {
    report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["connector"] == connector)
        .map(|s| s["stats"][field].as_u64().unwrap_or(0))
        .sum()
}

/// Every line of `idsync dump`.
pub fn dump(config: &Path) -> Vec<Json> {
    let out = run_ok(idsync().args(["dump", "-c"]).arg(config));
    out.lines()
        .map(|l| serde_json::from_str::<Json>(l).expect("a JSON line"))
        .collect()
}

/// The objects of one connector space as `idsync dump` shows them.
pub fn space(config: &Path, connector: &str) -> Vec<Json> {
    dump(config)
        .into_iter()
        .filter(|o| o["kind"] == "cs" && o["connector"] == connector)
        .collect()
}

/// Asserts that every object of a connector space is joined, confirmed (awaiting no import of
/// what was exported) and has nothing left to export, and that there are `count` of them.
pub fn assert_settled(space: &[Json], count: usize, what: &str) {
    assert_eq!(space.len(), count, "{what}: {space:#?}");
    for o in space {
        assert!(o["mv_id"].is_string(), "{what}: not joined: {o:#}");
        assert_eq!(o["awaiting"], false, "{what}: not confirmed: {o:#}");
        assert!(o["pending_export"].is_null(), "{what}: {o:#}");
        assert!(o["export_error"].is_null(), "{what}: {o:#}");
    }
}

/// One entry as a slapd sent it: its DN and each attribute's values, as bytes (names
/// lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    pub attrs: BTreeMap<String, Vec<Vec<u8>>>,
}

impl Entry {
    /// The one value of `name` as text (panics unless there is exactly one, valid UTF-8).
    pub fn one(&self, name: &str) -> String {
        let vs = self
            .attrs
            .get(&name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("{}: no {name}", self.dn));
        assert_eq!(vs.len(), 1, "{}: {name}: {vs:?}", self.dn);
        String::from_utf8(vs[0].clone()).expect("UTF-8")
    }
}

/// Parses `ldapsearch -LLL -o ldif-wrap=no` output (`name: value` and `name:: base64`).
pub fn parse_ldif(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut dn = None;
        let mut attrs: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for line in block
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (name, rest) = line.split_once(':').expect("name: value");
            let value = match rest.strip_prefix(':') {
                Some(b) => base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .expect("base64"),
                None => rest.strip_prefix(' ').unwrap_or(rest).as_bytes().to_vec(),
            };
            if name.eq_ignore_ascii_case("dn") {
                dn = Some(String::from_utf8(value).expect("a UTF-8 DN"));
            } else {
                attrs
                    .entry(name.to_ascii_lowercase())
                    .or_default()
                    .push(value);
            }
        }
        if let Some(dn) = dn {
            out.push(Entry { dn, attrs });
        }
    }
    out
}

/// The entries under `base` matching `filter`, with `attrs`.
pub fn entries(slapd: &Slapd, base: &str, filter: &str, attrs: &[&str]) -> Vec<Entry> {
    parse_ldif(&slapd.search(base, filter, attrs).expect("ldapsearch"))
}

/// Whether `dn` names an entry of `slapd` (the server compares, by its own DN matching).
pub fn exists(slapd: &Slapd, dn: &str) -> bool {
    slapd
        .tool("ldapsearch")
        .args(["-LLL", "-s", "base", "-b", dn, "(objectClass=*)", "1.1"])
        .output()
        .expect("ldapsearch runs")
        .status
        .success()
}

/// An attribute value as an RFC 4514 RDN value: `"+,;<>\` and NUL escaped everywhere, a space
/// or `#` at the start and a space at the end escaped. The test's own, so idsync's escaper is
/// checked against the standard, not against itself.
pub fn rdn_value(v: &str) -> String {
    let mut s = String::new();
    let n = v.chars().count();
    for (i, c) in v.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            '\0' => s.push_str("\\00"),
            ' ' if i == 0 || i + 1 == n => s.push_str("\\ "),
            '#' if i == 0 => s.push_str("\\#"),
            c => s.push(c),
        }
    }
    s
}

#[test]
fn rdn_values_escape_as_rfc_4514_says() {
    assert_eq!(rdn_value(r#"a,b+c"d\e<f>g;h"#), r#"a\,b\+c\"d\\e\<f\>g\;h"#);
    assert_eq!(rdn_value("#x#"), r"\#x#");
    assert_eq!(rdn_value(" a b "), r"\ a b\ ");
    assert_eq!(rdn_value("*()=Ångström 李"), "*()=Ångström 李");
}

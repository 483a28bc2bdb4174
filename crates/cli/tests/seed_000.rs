//! Seed 000, fixed for good: photos flow from the directory into the profile store; then the
//! picture flow is reversed (profile store → directory) and a photo a person uploads to the
//! profile store reaches the directory's `jpegPhoto`, after a full cycle and after a delta
//! cycle, for people who had an imported photo and for people who never had one. No connector
//! space is cleared at any point: the changed rules re-evaluate by themselves.
//!
//! Everything runs as an administrator would: the real `idsync` binary serves the profile store
//! (`idsync serve`), makes tokens (`idsync token create`) and runs the cycles.

use idsync_connectors::{ImportChange, ImportSink};
use idsync_model::{ConnectorId, CsEntry, Value};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

mod support;
use support::*;

#[derive(Default)]
struct Collect(Vec<CsEntry>);
impl ImportSink for Collect {
    fn entry(&mut self, e: CsEntry) -> Result<(), String> {
        self.0.push(e);
        Ok(())
    }
    fn change(&mut self, _: ImportChange) -> Result<(), String> {
        Ok(())
    }
    fn object_error(&mut self, place: String, message: String) {
        panic!("{place}: {message}");
    }
}

/// The directory's `jpegPhoto` of one person, read from the LDIF file the way idsync reads it.
fn directory_photo(dir: &Path, i: usize) -> Option<Vec<u8>> {
    let settings: toml::Table = toml::from_str("path = \"directory.ldif\"").unwrap();
    let mut c = idsync_connectors::open(&ConnectorId::new("directory"), "ldif", &settings, dir)
        .expect("the directory opens");
    let mut sink = Collect::default();
    c.full_import(&mut sink).expect("the directory reads");
    let dn = idsync_sample::person_dn(i);
    let e = sink
        .0
        .into_iter()
        .find(|e| e.dn.as_str().eq_ignore_ascii_case(&dn))
        .expect("the person is in the directory");
    match e.attributes.first("jpegPhoto") {
        Some(Value::Binary(b)) => Some(b.data.as_ref().expect("bytes").to_vec()),
        None => None,
        Some(other) => panic!("jpegPhoto is not binary: {other:?}"),
    }
}

fn hash(bytes: &[u8]) -> String {
    idsync_model::ContentHash::of(bytes).to_hex()
}

fn cycle(config: &Path, kind: &str) -> Json {
    let out = run_ok(idsync().args(["--json", "run", kind, "-c"]).arg(config));
    serde_json::from_str(&out).expect("a JSON report")
}

fn deleted(report: &Json) -> u64 {
    report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["stats"]["deleted"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn a_photo_uploaded_to_the_profile_store_reaches_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().to_path_buf();
    let mut o = idsync_sample::Options::demo();
    o.people = 40;
    let g = idsync_sample::generate(&dir, &o).unwrap();
    let db = dir.join("profiles.db");
    let engine_token = token(&db, &["--engine"]);
    std::fs::write(dir.join("engine.token"), format!("{engine_token}\n")).unwrap();
    let port = free_port();
    let _server = serve(&db, port);
    let api = Api::new(port);
    let config = idsync_sample::profile_store_config_text(
        &format!("http://127.0.0.1:{port}"),
        "file:engine.token",
    );
    std::fs::write(&g.config, &config).unwrap();

    // Who had a photo in the directory, and who never had one.
    let with: Vec<usize> = (0..o.people)
        .filter(|i| directory_photo(&dir, *i).is_some())
        .take(2)
        .collect();
    let without: Vec<usize> = (0..o.people)
        .filter(|i| directory_photo(&dir, *i).is_none())
        .take(2)
        .collect();
    assert_eq!((with.len(), without.len()), (2, 2), "the sample has both");

    // 1. Directory → profile store: every directory photo is in its profile, by content.
    let first = cycle(&g.config, "full-cycle");
    assert_eq!(first["pending_exports_left"], 0, "{first}");
    for &i in &with {
        let u = api.user(&engine_token, &idsync_sample::uid(i));
        let ext = &u["urn:idsync:params:scim:schemas:extension:profile:2.0:User"];
        assert_eq!(
            ext["photoHash"],
            hash(&directory_photo(&dir, i).unwrap()),
            "{u}"
        );
    }

    // 2. The flow is reversed; nothing else is touched. The re-evaluation sends nothing to the
    //    directory: its photos are already what the profiles hold.
    std::fs::write(&g.config, idsync_sample::photo_writeback(&config)).unwrap();
    let before: Vec<_> = with.iter().map(|&i| directory_photo(&dir, i)).collect();
    let reversed = cycle(&g.config, "full-cycle");
    assert_eq!(deleted(&reversed), 0, "{reversed}");
    let after: Vec<_> = with.iter().map(|&i| directory_photo(&dir, i)).collect();
    assert_eq!(before, after);

    // 3. A person who had an imported photo uploads a new one with their own token: a full
    //    cycle writes it back. Another does the same, seen by a delta cycle.
    // 4. Likewise for people who never had a photo.
    let cases = [
        (with[0], "full-cycle"),
        (with[1], "delta-cycle"),
        (without[0], "full-cycle"),
        (without[1], "delta-cycle"),
    ];
    for (n, (i, kind)) in cases.into_iter().enumerate() {
        let uid = idsync_sample::uid(i);
        let person = token(&db, &["--user", &uid]);
        let id = api.user(&engine_token, &uid)["id"]
            .as_str()
            .expect("the profile exists")
            .to_owned();
        let new_photo = idsync_sample::photo(&uid, 10 + n as u32);
        api.upload(&person, &id, &new_photo);
        let report = cycle(&g.config, kind);
        assert_eq!(deleted(&report), 0, "{report}");
        assert_eq!(
            directory_photo(&dir, i).map(|b| hash(&b)),
            Some(hash(&new_photo)),
            "{uid} after a {kind}: {report}"
        );
        // The profile's picture URL did not change; its content did.
        let u = api.user(&engine_token, &uid);
        assert!(
            u["photos"][0]["value"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/Users/{id}/photo")),
            "{u}"
        );
    }
}

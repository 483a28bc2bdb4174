//! `idsync bench profile-export`: N new profiles (10% with a photo) exported into an empty
//! profile store through its SCIM API (`/Bulk` plus one photo upload each), then read back by
//! the confirming import. The profile store runs in this process on loopback.

use crate::bench::{peak_rss_mb, round};
use anyhow::{bail, Result};
use idsync_engine::Step;
use idsync_profile_store::{ProfileStorage, ServeOptions, TokenKind};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

pub fn run(dir: &Path, g: &idsync_sample::Generated, people: usize) -> Result<Value> {
    let db = dir.join("profile-store.db");
    let storage = crate::serve::open_storage(&db, None)?;
    let (token, _) = idsync_profile_store::create_token(
        &storage as &dyn ProfileStorage,
        TokenKind::Engine,
        "bench",
    )?;
    drop(storage);
    crate::serve::write_private(&dir.join("engine.token"), &format!("{token}\n"))?;
    let server = idsync_profile_store::serve(ServeOptions {
        listen: ([127, 0, 0, 1], 0).into(),
        db,
        config: idsync_profile_store::Config::default(),
    })?;
    std::fs::write(
        &g.config,
        idsync_sample::profile_store_config_text(
            &format!("http://{}", server.addr),
            "file:engine.token",
        ),
    )?;
    let mut engine = crate::open_engine(&g.config)?;
    let t = Instant::now();
    for (step, c) in [
        (Step::FullImport, "directory"),
        (Step::FullImport, "hr"),
        (Step::FullImport, "profiles"),
        (Step::FullSync, "directory"),
        (Step::FullSync, "hr"),
        (Step::FullSync, "profiles"),
    ] {
        engine.run_step(step, c)?;
    }
    let setup_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let export = engine.run_step(Step::Export, "profiles")?;
    let export_seconds = t.elapsed().as_secs_f64();
    if export.stats.export_errors > 0 {
        bail!(
            "{} profiles were refused, e.g. {:?}",
            export.stats.export_errors,
            export.errors.first()
        );
    }
    let t = Instant::now();
    let confirm = engine.run_step(Step::FullImport, "profiles")?;
    let confirm_seconds = t.elapsed().as_secs_f64();
    server.stop();
    Ok(json!({
        "suite": "profile-export", "people": people, "photos": g.photos,
        "seconds": round(export_seconds),
        "objects_per_second": (export.stats.exported as f64 / export_seconds).round(),
        "exported": export.stats.exported,
        "confirm_seconds": round(confirm_seconds), "confirmed": confirm.stats.confirmed,
        "setup_seconds": round(setup_seconds),
        "peak_rss_mb": peak_rss_mb(),
    }))
}

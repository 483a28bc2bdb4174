//! `idsync bench profile-api`: the profile store's API under load. Loads N generated profiles
//! straight into a fresh profile store database, starts the service on a loopback port, and
//! drives it with `wrk` (Debian package `wrk`): `GET /Users/{id}`, a filtered search on an
//! indexed attribute (userName) and one on a JSON attribute (the enterprise department).

use anyhow::{bail, Context, Result};
use idsync_profile_store::resource::normalize;
use idsync_profile_store::schema::{Kind, Schemas};
use idsync_profile_store::{Config, ProfileStorage, ServeOptions, SqliteStorage, TokenKind};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const SECONDS: u32 = 10;
const CONNECTIONS: u32 = 16;

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Milliseconds from a wrk duration such as `812.00us`, `3.41ms`, `1.02s`.
fn millis(s: &str) -> Option<f64> {
    let (num, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * factor)
}

fn wrk(url: &str, token: &str) -> Result<Value> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{SECONDS}s"),
            "--latency",
            "-H",
            &format!("Authorization: Bearer {token}"),
            url,
        ])
        .output()
        .context("cannot run wrk: install the Debian package `wrk`")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0u64;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["Requests/sec:", v] => rps = v.parse::<f64>().ok(),
            ["50%", v] => p50 = millis(v),
            ["99%", v] => p99 = millis(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => errors = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    let (Some(rps), Some(p50), Some(p99)) = (rps, p50, p99) else {
        bail!("cannot read wrk's output:\n{text}");
    };
    if errors > 0 {
        bail!("{errors} requests failed during the run of {url}");
    }
    Ok(json!({"requests_per_second": round(rps), "p50_ms": round(p50), "p99_ms": round(p99)}))
}

pub fn run(people: usize) -> Result<Value> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let db = dir.path().join("profiles.db");
    let config = Config::default();
    let schemas = Arc::new(Schemas::new(&config.property).map_err(anyhow::Error::msg)?);
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let load = Instant::now();
    let mut probe = String::new();
    {
        let storage = SqliteStorage::open(&db, schemas.clone())?;
        let mut tx = storage.write()?;
        for i in 0..people {
            let v = json!({
                "userName": format!("u{i:07}"),
                "externalId": format!("e{i}"),
                "displayName": format!("Person {i}"),
                "name": {"givenName": "Person", "familyName": format!("{i}")},
                "emails": [{"value": format!("u{i:07}@example.test"), "type": "work", "primary": true}],
                "active": true,
                ent: {"department": format!("Dept {:03}", i % 200), "employeeNumber": format!("{i}")},
                "urn:idsync:params:scim:schemas:extension:profile:2.0:User": {"skills": ["rust", "sql"]},
            });
            let doc = normalize(&schemas, Kind::User, &v).map_err(|e| anyhow::anyhow!("{e}"))?;
            let id = uuid_like(i);
            if i == people / 2 {
                probe = id.clone();
            }
            tx.insert(Kind::User, &id, doc, "2026-11-23T00:00:00Z")
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        tx.commit()?;
    }
    let load_seconds = load.elapsed().as_secs_f64();
    let storage = SqliteStorage::open(&db, schemas)?;
    let (token, _) = idsync_profile_store::create_token(&storage, TokenKind::Engine, "bench")?;
    drop(storage);
    let server = idsync_profile_store::serve(ServeOptions {
        listen: "127.0.0.1:0".parse()?,
        db,
        config,
    })?;
    let base = server.scim_url();
    let get = wrk(&format!("{base}/Users/{probe}"), &token)?;
    let by_name = wrk(
        &format!(
            "{base}/Users?filter=userName%20eq%20%22u{:07}%22",
            people / 3
        ),
        &token,
    )?;
    let by_dept = wrk(
        &format!("{base}/Users?filter={ent}:department%20eq%20%22Dept%20007%22&count=10"),
        &token,
    )?;
    server.stop();
    Ok(json!({
        "suite": "profile-api", "people": people, "load_seconds": round(load_seconds),
        "wrk": {"threads": 2, "connections": CONNECTIONS, "seconds": SECONDS},
        "get_user": get,
        "filter_username_eq": by_name,
        "filter_department_eq_count_10": by_dept,
    }))
}

/// A deterministic UUID-shaped id (the service assigns v4 UUIDs; the benchmark needs one it knows).
fn uuid_like(i: usize) -> String {
    let h = mix_hex(i);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn mix_hex(i: usize) -> String {
    let mut s = String::new();
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    while s.len() < 32 {
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        s.push_str(&format!("{:016x}", x));
    }
    s
}

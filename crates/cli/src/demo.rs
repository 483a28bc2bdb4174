//! `idsync demo`: a sample estate synchronized into idsync's own profile store, start to end,
//! on embedded defaults (the store and the profile store are SQLite files in the demo folder).

use crate::{open_engine, output, serve};
use anyhow::{Context, Result};
use idsync_engine::CycleKind;
use idsync_profile_store::{ProfileStorage, ServeOptions, TokenKind};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

/// The profile store's database in the demo folder.
pub const PROFILE_DB: &str = "profile-store.db";
/// The engine's token for the profile store, referenced by the configuration (`file:`).
pub const TOKEN_FILE: &str = "engine.token";

/// The address `idsync serve` listens on by default when it is free, so the demo's
/// configuration keeps working with a plain `idsync serve`; another free port when it is not.
fn listen_address() -> SocketAddr {
    let preferred: SocketAddr = ([127, 0, 0, 1], 8080).into();
    match TcpListener::bind(preferred) {
        Ok(l) => {
            drop(l);
            preferred
        }
        Err(_) => ([127, 0, 0, 1], 0).into(),
    }
}

pub fn run(
    dir: &Path,
    people: usize,
    listen: Option<SocketAddr>,
    ldap: bool,
    json: bool,
) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    let mut opts = idsync_sample::Options::demo();
    opts.people = people;
    // slapadd takes photos inline, not as relative file URLs.
    opts.photo_files = !ldap;
    let g = idsync_sample::generate(dir, &opts)
        .with_context(|| format!("cannot write the sample estate to {}", dir.display()))?;
    // With --ldap the directory is a throwaway slapd seeded with the sample directory; it lives
    // until the demo ends (dropped, it is stopped).
    let slapd = if ldap {
        Some(crate::bench_ldap::demo_server(dir, &g.directory)?)
    } else {
        None
    };

    // The profile store: its database, the engine's token (kept in a file, referenced by the
    // configuration, never written into it), and the service on loopback for the cycle.
    let db = dir.join(PROFILE_DB);
    let storage = serve::open_storage(&db, None)?;
    let (secret, _) = idsync_profile_store::create_token(
        &storage as &dyn ProfileStorage,
        TokenKind::Engine,
        "engine (demo)",
    )?;
    drop(storage);
    let token_file = dir.join(TOKEN_FILE);
    crate::serve::write_private(&token_file, &format!("{secret}\n"))
        .with_context(|| format!("cannot write {}", token_file.display()))?;
    let server = idsync_profile_store::serve(ServeOptions {
        listen: listen.unwrap_or_else(listen_address),
        db: db.clone(),
        config: idsync_profile_store::Config::default(),
    })?;
    let url = format!("http://{}", server.addr);
    let mut config = idsync_sample::profile_store_config_text(&url, &format!("file:{TOKEN_FILE}"));
    if let Some(s) = &slapd {
        config = crate::bench_ldap::sample_config_over(&config, s);
    }
    std::fs::write(&g.config, config)
        .with_context(|| format!("cannot write {}", g.config.display()))?;

    let mut engine = open_engine(&g.config)?;
    if !json {
        engine = engine.with_progress(output::progress());
        if let Some(s) = &slapd {
            println!(
                "Directory: a throwaway slapd on {} (base {}), seeded with the sample directory; stopped when the demo ends.",
                s.url(),
                s.suffix()
            );
        }
        println!(
            "Sample estate in {}: {} people ({} inetOrgPerson, {} plain person), {} devices, {} groups, {} photos, {} HR rows.\nProfile store serving on {url} (database {}).\n",
            dir.display(),
            g.people,
            g.inet_org_people,
            g.plain_people,
            g.devices,
            g.groups,
            g.photos,
            g.hr_rows,
            db.display(),
        );
    }
    let report = engine.run_cycle(CycleKind::Full)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        output::cycle(&report, &mut engine)?;
        let c = g.config.display();
        let listen = server.addr;
        if slapd.is_some() {
            println!(
                "\nThe profiles are in idsync's profile store ({}). The slapd is stopped now; `idsync demo` without --ldap keeps a directory you can run again.",
                db.display()
            );
            server.stop();
            return Ok(());
        }
        println!(
            "\nThe profiles are in idsync's profile store ({}). See them over its SCIM API:\n  idsync serve --db {} --listen {listen}\n  curl -H \"Authorization: Bearer $(cat {})\" 'http://{listen}/scim/v2/Users?count=2'\nWith it running, try:\n  idsync -c {c} show {} --connector directory   (a person and where each value came from)\n  idsync -c {c} history\n  idsync -c {c} plan\n  idsync -c {c} run delta-cycle",
            db.display(),
            db.display(),
            dir.join(TOKEN_FILE).display(),
            idsync_sample::person_dn(1),
        );
    }
    server.stop();
    Ok(())
}

//! `ad-import`: the Active Directory profile against a real throwaway Samba AD DC
//! (`idsync-testbed`'s `SambaDc`), compared with OpenLDAP's `ldapsearch` in the same run.
//!
//! N users (10% with a 5 KB `thumbnailPhoto`, most with a manager) are added to the DC's
//! database offline before it starts (`setup_seconds`, reported apart). Then a full import into
//! an empty connector space (`seconds`) against `ldapsearch -LLL -E pr=1000/noprompt` of the same
//! objects and attributes to /dev/null (`baseline_seconds`, `ratio`), and a DirSync delta import
//! of 100 changed users (`delta_seconds`).

use crate::bench::round;
use crate::bench_ldap::{photo_5k, timed};
use anyhow::{bail, Context, Result};
use idsync_engine::Step;
use idsync_testbed::samba::{ADMIN_PASSWORD, BASE_DN};
use idsync_testbed::SambaDc;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// What the AD profile reads (users, contacts, groups) and the attributes it asks for.
const FILTER: &str = "(|(objectClass=user)(objectClass=contact)(objectClass=group))";
const ATTRIBUTES: [&str; 5] = [
    "*",
    "objectClass",
    "objectGUID",
    "modifyTimestamp",
    "userAccountControl",
];

fn user_dn(i: usize) -> String {
    format!("CN=Bench User {i},OU=Bench,{BASE_DN}")
}

fn write_seed(path: &Path, people: usize) -> Result<()> {
    use base64::Engine;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(
        f,
        "dn: OU=Bench,{BASE_DN}\nobjectClass: organizationalUnit\n"
    )?;
    for i in 0..people {
        write!(
            f,
            "dn: {}\nobjectClass: user\nsAMAccountName: bench{i}\ngivenName: Person\nsn: Number{i}\ndisplayName: Person {i}\nmail: bench{i}@example.test\ntitle: Engineer\ntelephoneNumber: +1 555 {:04}\nuserAccountControl: 544\n",
            user_dn(i),
            i % 10000
        )?;
        if i > 0 && i % 20 != 0 {
            writeln!(f, "manager: {}", user_dn(i / 10))?;
        }
        if i % 10 == 3 {
            writeln!(
                f,
                "thumbnailPhoto:: {}",
                base64::engine::general_purpose::STANDARD.encode(photo_5k(&format!("bench{i}")))
            )?;
        }
        writeln!(f)?;
    }
    f.flush()?;
    Ok(())
}

pub fn run(people: usize) -> Result<Value> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    crate::serve::write_private(&dir.path().join("ad.pw"), ADMIN_PASSWORD)?;
    let seed = dir.path().join("seed.ldif");
    let t = Instant::now();
    write_seed(&seed, people)?;
    let dc = SambaDc::start_with(&seed)
        .context("cannot start a seeded Samba AD DC (packages samba, python3-samba, ldap-utils)")?;
    let setup_seconds = t.elapsed().as_secs_f64();
    let baseline = timed(
        dc.tool("ldapsearch")
            .args(["-LLL", "-E", "pr=1000/noprompt", "-b", BASE_DN])
            .arg(FILTER)
            .args(ATTRIBUTES),
    )?;
    let config = dir.path().join("idsync.toml");
    std::fs::write(
        &config,
        format!(
            "[[connector]]\nname = \"ad\"\ntype = \"ldap\"\nrole = \"directory\"\nprofile = \"active-directory\"\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"file:ad.pw\"\nbase_dns = [\"{BASE_DN}\"]\n\n[[connector.object_type]]\nname = \"person\"\nobject_classes = [\"user\"]\n\n[[connector.object_type]]\nname = \"group\"\nobject_classes = [\"group\"]\n",
            dc.url(),
            dc.bind_dn()
        ),
    )?;
    let mut engine = crate::open_engine(&config)?;
    let t = Instant::now();
    let r = engine.run_step(Step::FullImport, "ad")?;
    let secs = t.elapsed().as_secs_f64();
    if (r.stats.added as usize) < people {
        bail!(
            "the full import added {} objects for {people} users: {:?}",
            r.stats.added,
            r.errors.first()
        );
    }
    // 100 changes (a new mail address) spread over the users, then a DirSync delta import.
    let (delta_changes, ldif) = crate::bench_ldap::mail_changes(people, user_dn);
    dc.modify(&ldif).context("cannot change the users")?;
    let t = Instant::now();
    let d = engine.run_step(Step::DeltaImport, "ad")?;
    let delta_seconds = t.elapsed().as_secs_f64();
    if d.stats.updated as usize != delta_changes {
        bail!(
            "the delta import updated {} objects for {delta_changes} changes: {:?} {:?}",
            d.stats.updated,
            d.notes,
            d.errors.first()
        );
    }
    Ok(json!({
        "suite": "ad-import", "people": people, "read": r.stats.read,
        "added": r.stats.added, "seconds": round(secs),
        "objects_per_second": (r.stats.read as f64 / secs).round(),
        "baseline": "ldapsearch -LLL -E pr=1000/noprompt (same filter and attributes) > /dev/null",
        "baseline_seconds": round(baseline), "ratio": round(secs / baseline),
        "delta_changes": delta_changes, "delta_seconds": round(delta_seconds),
        "delta_updated": d.stats.updated, "delta_method": d.notes.join("; "),
        "peak_rss_mb": crate::bench::peak_rss_mb(),
        "setup_seconds": round(setup_seconds),
    }))
}

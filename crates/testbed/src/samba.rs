//! A throwaway Samba Active Directory domain controller on loopback.
//!
//! Provisioning a domain takes 3 to 30 seconds here, so it is done once per machine into a
//! template directory (under the system temp dir, guarded by a lock file) and each start copies
//! the template and rewrites the paths in its `smb.conf` (about a second to answer LDAP). Samba
//! binds the standard ports (389, 636, 88, …) on 127.0.0.1, so only one instance can run at a
//! time: [`SambaDc::start`] holds an exclusive lock file for the instance's lifetime, and other
//! tests wait for it.
//!
//! Traps handled (RECIPES.md): `ldap server require strong auth = no` is added to `[global]`
//! (provision does not write it), `cache` must exist, log, winbindd and ncalrpc paths are moved
//! into the directory.

use super::{io, process_alive, run, signal, wait_for_port, Error, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the DC listens (`--option=interfaces = 127.0.0.1`).
const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The domain every throwaway DC serves.
pub const REALM: &str = "EXAMPLE.TEST";
pub const BASE_DN: &str = "DC=example,DC=test";
/// The Administrator's password (the DC listens on loopback only and lives as long as a test).
pub const ADMIN_PASSWORD: &str = "Idsync-test-Passw0rd";
/// Bumped when the provisioning changes, so a stale template is not reused.
const TEMPLATE_VERSION: &str = "v1";

/// A running throwaway Samba AD DC; dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct SambaDc {
    dir: tempfile::TempDir,
    pid: Option<u32>,
    _lock: File,
}

fn lock(path: &Path) -> Result<File> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io(format!("cannot open {}", path.display())))?;
    f.lock()
        .map_err(io(format!("cannot lock {}", path.display())))?;
    Ok(f)
}

fn template_dir() -> PathBuf {
    std::env::temp_dir().join(format!("idsync-samba-template-{TEMPLATE_VERSION}"))
}

/// Provisions the template once (under a lock, so concurrent first users wait).
fn ensure_template() -> Result<PathBuf> {
    let t = template_dir();
    let _guard = lock(&std::env::temp_dir().join("idsync-samba-template.lock"))?;
    if t.join("ready").exists() {
        return Ok(t);
    }
    let _ = std::fs::remove_dir_all(&t);
    for sub in ["run", "cache", "log"] {
        std::fs::create_dir_all(t.join(sub)).map_err(io("cannot create the samba template"))?;
    }
    let d = t.display().to_string();
    run(Command::new("samba-tool")
        .args(["domain", "provision"])
        .arg(format!("--targetdir={d}"))
        .arg(format!("--realm={REALM}"))
        .args([
            "--domain=EXAMPLE",
            "--host-name=dc1",
            "--host-ip=127.0.0.1",
            "--server-role=dc",
            "--dns-backend=SAMBA_INTERNAL",
            "--use-rfc2307",
        ])
        .arg(format!("--adminpass={ADMIN_PASSWORD}"))
        .arg("--option=interfaces = 127.0.0.1")
        .arg("--option=bind interfaces only = yes")
        .arg(format!("--option=pid directory = {d}/run"))
        .arg("--option=server services = -dns -nbt -wrepl -dnsupdate -s3fs -ntp_signd")
        .arg(format!("--option=log file = {d}/log/%m.log"))
        .arg(format!(
            "--option=winbindd socket directory = {d}/run/winbindd"
        ))
        .arg(format!("--option=ncalrpc dir = {d}/run/ncalrpc"))
        .arg(format!("--option=cache directory = {d}/cache")))
    .map_err(|e| Error::Start(format!("samba-tool domain provision failed: {e}")))?;
    let conf = t.join("etc/smb.conf");
    let text = std::fs::read_to_string(&conf).map_err(io("cannot read smb.conf"))?;
    let text = text.replacen(
        "[global]\n",
        "[global]\n\tldap server require strong auth = no\n",
        1,
    );
    std::fs::write(&conf, text).map_err(io("cannot write smb.conf"))?;
    std::fs::write(t.join("ready"), "").map_err(io("cannot mark the template"))?;
    Ok(t)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to))
    .map(|_| ())
}

/// Adds LDIF content records to a stopped DC's database through Samba's own Python bindings
/// (Debian's `python3-samba`), the way `ldbadd` would but without the `ldb-tools` package. Each
/// record is parsed on its own: parsing a whole file at once keeps every message alive in one
/// talloc context, which makes each add slower than the last. 500 adds per transaction.
const SEED_PY: &str = r#"
import sys
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.auth import system_session
lp = LoadParm()
lp.load(sys.argv[1])
db = SamDB(url=sys.argv[2], lp=lp, session_info=system_session())
n = 0
db.transaction_start()
with open(sys.argv[3]) as f:
    text = f.read()
for chunk in text.split("\n\n"):
    if not chunk.strip():
        continue
    for _, msg in db.parse_ldif(chunk + "\n"):
        db.add(msg)
        n += 1
    if n % 500 == 0:
        db.transaction_commit()
        db.transaction_start()
db.transaction_commit()
print(n)
"#;

impl SambaDc {
    /// Starts a DC from a fresh copy of the provisioned domain; waits until LDAP answers.
    pub fn start() -> Result<SambaDc> {
        Self::start_seeded(None)
    }

    /// Starts a DC whose database first gets the content records of `ldif` (added offline,
    /// before the server starts: thousands of users in about a minute, where `ldapadd` against
    /// the running server commits each entry on its own).
    pub fn start_with(ldif: &Path) -> Result<SambaDc> {
        Self::start_seeded(Some(ldif))
    }

    fn start_seeded(ldif: Option<&Path>) -> Result<SambaDc> {
        let template = ensure_template()?;
        let instance_lock = lock(&std::env::temp_dir().join("idsync-samba-instance.lock"))?;
        let dir = tempfile::Builder::new()
            .prefix("idsync-samba-")
            .tempdir()
            .map_err(io("cannot create the samba directory"))?;
        copy_dir(&template, dir.path())?;
        let _ = std::fs::remove_file(dir.path().join("ready"));
        let _ = std::fs::remove_file(dir.path().join("run/samba.pid"));
        let conf = dir.path().join("etc/smb.conf");
        let text = std::fs::read_to_string(&conf).map_err(io("cannot read smb.conf"))?;
        let text = text.replace(
            &template.display().to_string(),
            &dir.path().display().to_string(),
        );
        std::fs::write(&conf, text).map_err(io("cannot write smb.conf"))?;
        if let Some(ldif) = ldif {
            let script = dir.path().join("seed.py");
            std::fs::write(&script, SEED_PY).map_err(io("cannot write seed.py"))?;
            // Debian's own Python: the samba bindings are installed for it, not for another
            // interpreter first on PATH.
            run(Command::new("/usr/bin/python3")
                .arg(&script)
                .arg(&conf)
                .arg(dir.path().join("private/sam.ldb"))
                .arg(ldif))
            .map_err(|e| {
                Error::Start(format!(
                    "cannot add {} to the Samba database (package python3-samba): {e}",
                    ldif.display()
                ))
            })?;
        }
        let mut dc = SambaDc {
            dir,
            pid: None,
            _lock: instance_lock,
        };
        dc.launch()?;
        Ok(dc)
    }

    fn launch(&mut self) -> Result<()> {
        let conf = self.dir.path().join("etc/smb.conf");
        run(Command::new("samba").arg("-D").arg("-s").arg(&conf))?;
        let pidfile = self.dir.path().join("run/samba.pid");
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                self.pid = Some(pid);
            }
            if self.pid.is_some()
                && wait_for_port(LOOPBACK, 389, Duration::from_millis(200))
                && self.answers()
            {
                return Ok(());
            }
            if let Some(pid) = self.pid {
                if !process_alive(pid) {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.stop();
        let log =
            std::fs::read_to_string(self.dir.path().join("log/samba.log")).unwrap_or_default();
        Err(Error::Start(format!(
            "samba did not answer LDAP on 127.0.0.1:389 within 60 s; log tail: {}",
            log.lines().rev().take(10).collect::<Vec<_>>().join(" | ")
        )))
    }

    /// Whether an authenticated base search succeeds (the port opens before the directory
    /// serves).
    fn answers(&self) -> bool {
        self.tool("ldapsearch")
            .args(["-s", "base", "-b", BASE_DN, "dn"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ldap://127.0.0.1:389`.
    pub fn url(&self) -> String {
        "ldap://127.0.0.1:389".to_owned()
    }

    /// `ldaps://127.0.0.1:636` (Samba's self-signed certificate: its CA is `ca_file`).
    pub fn ldaps_url(&self) -> String {
        "ldaps://127.0.0.1:636".to_owned()
    }

    /// The CA of Samba's generated TLS certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("private/tls/ca.pem")
    }

    /// The Administrator's bind name.
    pub fn bind_dn(&self) -> String {
        format!("Administrator@{REALM}")
    }

    pub fn base_dn(&self) -> &'static str {
        BASE_DN
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// One of OpenLDAP's client tools against this DC as Administrator.
    pub fn tool(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(["-H", "ldap://127.0.0.1:389", "-x", "-D"])
            .arg(self.bind_dn())
            .arg("-w")
            .arg(ADMIN_PASSWORD);
        c
    }

    /// Applies LDIF change records with `ldapmodify`.
    pub fn modify(&self, ldif: &str) -> Result<()> {
        let p = self.dir.path().join("change.ldif");
        std::fs::write(&p, ldif).map_err(io("cannot write change.ldif"))?;
        run(self.tool("ldapmodify").arg("-f").arg(&p)).map(|_| ())
    }

    /// `samba-tool` against this DC's configuration (user create, group addmembers, …).
    pub fn samba_tool(&self, args: &[&str]) -> Result<String> {
        run(Command::new("samba-tool")
            .args(args)
            .arg("-s")
            .arg(self.dir.path().join("etc/smb.conf")))
    }

    pub fn stop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        signal(pid, "TERM");
        let until = Instant::now() + Duration::from_secs(15);
        while process_alive(pid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        if process_alive(pid) {
            signal(pid, "KILL");
        }
        // Samba's children (ldap, kdc, …) leave with their parent; wait for the port.
        let until = Instant::now() + Duration::from_secs(10);
        while wait_for_port(LOOPBACK, 389, Duration::from_millis(50)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        self.stop();
    }
}

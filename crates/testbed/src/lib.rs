//! Real servers for tests, benchmarks and the demo, started on loopback from a temporary
//! directory and stopped by their PID when dropped (never left running).
//!
//! Today it starts a throwaway OpenLDAP `slapd` (mdb backend, schemas core, cosine,
//! inetorgperson and nis; the syncprov overlay or not; optionally an accesslog database; LDAP and
//! optionally LDAPS with a CA made for the occasion), seeded from LDIF with `slapadd -q` before it
//! starts. Each server type is its own struct with the same shape (`start(options)`, `url()`,
//! `stop()`, `Drop`); Samba AD will be the next. A server that cannot start is an error, never a
//! skip: the caller's test fails.
//!
//! This crate never talks LDAP itself: it writes configuration files, runs the server's own
//! tools and watches its port. It must not depend on any idsync crate.

pub mod samba;
pub use samba::SambaDc;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{0}")]
    Start(String),
}

pub type Result<T> = std::result::Result<T, Error>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Runs a command to completion; a failure carries its stderr.
fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(io(format!("cannot run {shown}")))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: shown,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A port nobody listens on at this moment, on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A port nobody listens on at this moment, on `host`.
pub fn free_port_on(host: IpAddr) -> Result<u16> {
    let l = TcpListener::bind((host, 0)).map_err(io(format!("cannot bind a port on {host}")))?;
    let port = l
        .local_addr()
        .map_err(io("cannot read the bound port"))?
        .port();
    Ok(port)
}

fn wait_for_port(host: IpAddr, port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from((host, port));
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            // A zombie (state Z) has exited; only its parent's wait is missing.
            .map(|s| !s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
            .unwrap_or(false)
}

/// Sends a signal to one process by its PID (the `kill` tool, so no unsafe code here).
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// One of this machine's own IPv4 addresses that is not loopback (`ip -4 addr`, scope global;
/// else `hostname -I`), for a server that must look remote to a client on the same machine.
/// A machine without one is an error: the caller's test fails.
pub fn non_loopback_ipv4() -> Result<Ipv4Addr> {
    let from_ip = run(Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]))
        .ok()
        .and_then(|out| {
            out.split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
        });
    let found = from_ip.or_else(|| {
        run(Command::new("hostname").arg("-I"))
            .ok()?
            .split_whitespace()
            .filter_map(|a| a.parse::<Ipv4Addr>().ok())
            .find(|a| !a.is_loopback() && !a.is_unspecified())
    });
    found.ok_or_else(|| {
        Error::Start(
            "this machine has no IPv4 address other than loopback (`ip -4 addr`, `hostname -I`)"
                .to_owned(),
        )
    })
}

/// How a throwaway slapd is set up.
#[derive(Debug, Clone)]
pub struct SlapdOptions {
    /// The database suffix, e.g. `dc=example,dc=test`.
    pub suffix: String,
    /// Load the syncprov overlay (RFC 4533 syncrepl). Without it, clients must fall back.
    pub syncprov: bool,
    /// Keep an accesslog database (`cn=accesslog`) of every write: tests read it to see exactly
    /// which modifications a client sent; with syncprov it also serves as the session log.
    pub accesslog: bool,
    /// Also listen on LDAPS with a certificate signed by a CA made for this instance.
    pub tls: bool,
    /// With `tls`: a server certificate without subjectAltName (its name only in the subject's
    /// CN, as Samba's self-made certificate), which verifiers following RFC 6125 refuse.
    pub tls_without_san: bool,
    /// Sync every write to disk (slapd's default). Off, writes are much faster (`dbnosync`):
    /// right for tests, wrong for export benchmarks.
    pub durable: bool,
    /// The address it listens on: loopback by default; another of this machine's addresses
    /// (see [`non_loopback_ipv4`]) for tests of what a client does with a remote server.
    pub host: IpAddr,
    /// LDIF loaded with `slapadd -q` before the server starts (it must contain the suffix entry
    /// and the containers; see [`base_ldif`]).
    pub seed: Option<Vec<u8>>,
    /// A file of LDIF to load instead of `seed` (large seeds written by a generator).
    pub seed_file: Option<PathBuf>,
}

impl Default for SlapdOptions {
    fn default() -> Self {
        Self {
            suffix: "dc=example,dc=test".to_owned(),
            syncprov: true,
            accesslog: false,
            tls: false,
            tls_without_san: false,
            durable: false,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            seed: None,
            seed_file: None,
        }
    }
}

/// The suffix entry and `ou=People`, `ou=Groups`, `ou=Devices` under it, as LDIF.
pub fn base_ldif(suffix: &str) -> String {
    let dc = suffix
        .split(',')
        .next()
        .and_then(|r| r.split_once('='))
        .map(|(_, v)| v)
        .unwrap_or("example");
    let mut s = format!("dn: {suffix}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\ndc: {dc}\no: {dc}\n\n");
    for ou in ["People", "Groups", "Devices"] {
        s.push_str(&format!(
            "dn: ou={ou},{suffix}\nobjectClass: top\nobjectClass: organizationalUnit\nou: {ou}\n\n"
        ));
    }
    s
}

/// A running throwaway slapd. Dropping it stops the server (SIGTERM to its PID, then SIGKILL if
/// it does not go) and removes its directory.
#[derive(Debug)]
pub struct Slapd {
    dir: tempfile::TempDir,
    port: u16,
    tls_port: Option<u16>,
    pid: Option<u32>,
    options: SlapdOptions,
}

/// The administrator's password of every throwaway slapd (it listens on loopback only and
/// lives as long as a test).
pub const ROOT_PASSWORD: &str = "idsync-test-secret";

impl Slapd {
    /// Writes the configuration, loads the seed and starts the server; waits until it accepts
    /// connections.
    pub fn start(options: SlapdOptions) -> Result<Slapd> {
        let dir = tempfile::Builder::new()
            .prefix("idsync-slapd-")
            .tempdir()
            .map_err(io("cannot create the slapd directory"))?;
        let mut s = Slapd {
            port: free_port_on(options.host)?,
            tls_port: if options.tls {
                Some(free_port_on(options.host)?)
            } else {
                None
            },
            dir,
            pid: None,
            options,
        };
        s.write_config()?;
        s.seed()?;
        // A free port can be taken by another process between the probe and slapd's bind (tests
        // start servers in parallel): try fresh ports a few times.
        let mut tries = 0;
        loop {
            match s.launch() {
                Ok(()) => return Ok(s),
                Err(e) if tries >= 3 => return Err(e),
                Err(_) => {
                    tries += 1;
                    s.stop();
                    s.port = free_port_on(s.options.host)?;
                    if s.tls_port.is_some() {
                        s.tls_port = Some(free_port_on(s.options.host)?);
                    }
                }
            }
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ldap://127.0.0.1:PORT` (the address it listens on: [`SlapdOptions::host`]).
    pub fn url(&self) -> String {
        format!("ldap://{}:{}", self.host_in_url(), self.port)
    }

    /// `ldaps://127.0.0.1:PORT` when started with `tls`.
    pub fn ldaps_url(&self) -> Option<String> {
        self.tls_port
            .map(|p| format!("ldaps://{}:{p}", self.host_in_url()))
    }

    /// The listening address as a URL's host (an IPv6 address in brackets).
    fn host_in_url(&self) -> String {
        match self.options.host {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        }
    }

    /// The CA certificate (PEM) that signed the server's certificate, when started with `tls`.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.dir.path().join("ca.pem"))
    }

    pub fn suffix(&self) -> &str {
        &self.options.suffix
    }

    /// The administrator's DN (`cn=admin,SUFFIX`).
    pub fn root_dn(&self) -> String {
        format!("cn=admin,{}", self.options.suffix)
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn write_config(&self) -> Result<()> {
        let d = self.dir.path();
        for sub in ["db", "log", "run"] {
            std::fs::create_dir_all(d.join(sub)).map_err(io("cannot create slapd folders"))?;
        }
        let o = &self.options;
        let mut c = String::new();
        for schema in ["core", "cosine", "inetorgperson", "nis"] {
            c.push_str(&format!("include /etc/ldap/schema/{schema}.schema\n"));
        }
        c.push_str(&format!(
            "pidfile {}\nargsfile {}\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n",
            d.join("run/slapd.pid").display(),
            d.join("run/slapd.args").display()
        ));
        if o.syncprov {
            c.push_str("moduleload syncprov\n");
        }
        if o.accesslog {
            c.push_str("moduleload accesslog\n");
        }
        c.push_str("sizelimit unlimited\n");
        if o.tls {
            self.make_certificates(o.tls_without_san)?;
            c.push_str(&format!(
                "TLSCACertificateFile {0}/ca.pem\nTLSCertificateFile {0}/server.pem\nTLSCertificateKeyFile {0}/server.key\n",
                d.display()
            ));
        }
        let nosync = if o.durable { "" } else { "dbnosync\n" };
        if o.accesslog {
            // The log database must be declared before the database it logs.
            c.push_str(&format!(
                "database mdb\nsuffix \"cn=accesslog\"\nrootdn \"cn=admin,cn=accesslog\"\ndirectory {}\nmaxsize 1073741824\n{nosync}index default eq\nindex entryCSN,objectClass,reqEnd,reqResult,reqStart,reqDN eq\n",
                d.join("log").display()
            ));
            if o.syncprov {
                c.push_str("overlay syncprov\nsyncprov-nopresent TRUE\nsyncprov-reloadhint TRUE\n");
            }
        }
        c.push_str(&format!(
            "database mdb\nsuffix \"{suffix}\"\nrootdn \"cn=admin,{suffix}\"\nrootpw {ROOT_PASSWORD}\ndirectory {dir}\nmaxsize 4294967296\n{nosync}index objectClass,entryCSN,entryUUID eq\nindex uid,cn,mail eq\nlimits dn.exact=\"cn=admin,{suffix}\" size=unlimited time=unlimited\n",
            suffix = o.suffix,
            dir = d.join("db").display(),
        ));
        if o.syncprov {
            c.push_str("overlay syncprov\nsyncprov-checkpoint 100 10\n");
            if o.accesslog {
                c.push_str("syncprov-sessionlog-source cn=accesslog\n");
            } else {
                c.push_str("syncprov-sessionlog 100000\n");
            }
        }
        if o.accesslog {
            c.push_str("overlay accesslog\nlogdb cn=accesslog\nlogops writes\nlogsuccess TRUE\nlogpurge 07+00:00 01+00:00\n");
        }
        std::fs::write(d.join("slapd.conf"), c).map_err(io("cannot write slapd.conf"))
    }

    fn make_certificates(&self, without_san: bool) -> Result<()> {
        let d = self.dir.path();
        let ossl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(d));
        ossl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=idsync test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])?;
        ossl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ])?;
        let san = if without_san {
            ""
        } else {
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        };
        std::fs::write(
            d.join("server.ext"),
            format!("{san}basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"),
        )
        .map_err(io("cannot write server.ext"))?;
        ossl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ])?;
        Ok(())
    }

    fn seed(&self) -> Result<()> {
        let d = self.dir.path();
        let file = match (&self.options.seed_file, &self.options.seed) {
            (Some(f), _) => f.clone(),
            (None, Some(bytes)) => {
                let p = d.join("seed.ldif");
                let mut f = std::fs::File::create(&p).map_err(io("cannot write seed.ldif"))?;
                f.write_all(bytes).map_err(io("cannot write seed.ldif"))?;
                p
            }
            (None, None) => return Ok(()),
        };
        run(Command::new("slapadd")
            .arg("-q")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-b")
            .arg(&self.options.suffix)
            .arg("-l")
            .arg(&file))?;
        Ok(())
    }

    fn launch(&mut self) -> Result<()> {
        let d = self.dir.path();
        let host = self.host_in_url();
        let mut urls = format!("ldap://{host}:{}/", self.port);
        if let Some(p) = self.tls_port {
            urls.push_str(&format!(" ldaps://{host}:{p}/"));
        }
        let pidfile = d.join("run/slapd.pid");
        let _ = std::fs::remove_file(&pidfile);
        // slapd daemonizes: the command returns once the child runs; its PID is in the pidfile.
        run(Command::new("slapd")
            .arg("-h")
            .arg(&urls)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-s")
            .arg("0"))?;
        let until = Instant::now() + Duration::from_secs(10);
        while self.pid.is_none() && Instant::now() < until {
            self.pid = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            if self.pid.is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if self.pid.is_none() {
            return Err(Error::Start(format!(
                "slapd wrote no pidfile within 10 s ({})",
                d.display()
            )));
        }
        let ports = [Some(self.port), self.tls_port];
        for p in ports.into_iter().flatten() {
            if !wait_for_port(self.options.host, p, Duration::from_secs(10)) {
                self.stop();
                return Err(Error::Start(format!(
                    "slapd did not listen on {}:{p} within 10 s",
                    self.options.host
                )));
            }
        }
        Ok(())
    }

    /// Stops the server (its data stays, so [`Slapd::restart`] brings it back as it was).
    pub fn stop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        signal(pid, "TERM");
        let until = Instant::now() + Duration::from_secs(10);
        while process_alive(pid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if process_alive(pid) {
            signal(pid, "KILL");
            while process_alive(pid) && Instant::now() < until + Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts the stopped server again on the same port with the same data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch()
    }

    /// Runs one of OpenLDAP's client tools (`ldapsearch`, `ldapmodify`, ...) against this server
    /// as its administrator, with `-H`, `-x`, `-D` and `-w` filled in.
    pub fn tool(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.arg("-H")
            .arg(self.url())
            .arg("-x")
            .arg("-D")
            .arg(self.root_dn())
            .arg("-w")
            .arg(ROOT_PASSWORD);
        c
    }

    /// Applies LDIF change records with `ldapmodify`.
    pub fn modify(&self, ldif: &str) -> Result<()> {
        let p = self.dir.path().join("change.ldif");
        std::fs::write(&p, ldif).map_err(io("cannot write change.ldif"))?;
        run(self.tool("ldapmodify").arg("-f").arg(&p)).map(|_| ())
    }

    /// Searches with `ldapsearch -LLL` (base, filter, attributes) and returns its LDIF output.
    pub fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> Result<String> {
        run(self
            .tool("ldapsearch")
            .arg("-LLL")
            .arg("-o")
            .arg("ldif-wrap=no")
            .arg("-b")
            .arg(base)
            .arg(filter)
            .args(attrs))
    }

    /// Searches the accesslog database (`cn=accesslog`, with `accesslog`) for the requests that
    /// match `filter`, with what each changed (`reqMod`).
    pub fn search_log(&self, filter: &str) -> Result<String> {
        self.search("cn=accesslog", filter, &["reqType", "reqDN", "reqMod"])
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slapd_starts_answers_and_stops() {
        let mut s = Slapd::start(SlapdOptions {
            seed: Some(base_ldif("dc=example,dc=test").into_bytes()),
            ..Default::default()
        })
        .expect("slapd must start");
        let out = s
            .search("dc=example,dc=test", "(ou=People)", &["ou"])
            .unwrap();
        assert!(out.contains("ou: People"), "{out}");
        let pid = s.pid().unwrap();
        s.stop();
        assert!(!process_alive(pid));
        s.restart().unwrap();
        assert!(s.search("dc=example,dc=test", "(ou=Groups)", &[]).is_ok());
        let pid = s.pid().unwrap();
        drop(s);
        assert!(!process_alive(pid), "dropped slapd is stopped");
    }
}

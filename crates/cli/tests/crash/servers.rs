//! Real servers for the crash harness's scenarios (`servers = [...]` in scenarios.toml): a
//! throwaway OpenLDAP slapd, tables in the machine's PostgreSQL, and idsync's profile store
//! (`idsync serve`). A killed run and its rerun talk to the same running servers, and every
//! estate folder (the base, the run never killed, each kill) has its own server state, identical
//! to the base's when its runs begin:
//!
//! - slapd keeps its data in the folder (`slapd/db`), so copying the folder while the server is
//!   stopped copies the directory; its configuration is written again for each folder;
//! - PostgreSQL tables are named with a prefix unique to this test process; after the base is
//!   prepared they are copied to `<table>_snap`, and each folder's start restores them;
//! - the profile store's database is `profile-store.db` in the folder, served by `idsync serve`
//!   from the folder's start to its stop.
//!
//! Servers run one folder at a time, so each kind keeps one port for the whole scenario. A
//! server that cannot start fails the test (nothing is skipped). Everything started is stopped,
//! and the tables dropped, when the value is dropped, a failed assertion included.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SUFFIX: &str = "dc=example,dc=test";
const ROOT_DN: &str = "cn=admin,dc=example,dc=test";
const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The tables of the `servers` estate: the HR source and the accounts target.
const TABLES: &[&str] = &["hr", "accounts"];

pub struct Servers {
    slapd: bool,
    postgres: bool,
    profile_store: bool,
    slapd_port: u16,
    profile_port: u16,
    /// The prefix of this scenario's PostgreSQL tables.
    pg: String,
    bin: PathBuf,
    slapd_pid: Option<u32>,
    serve: Option<Child>,
    tables_made: bool,
    snapshot_made: bool,
    /// The engine's bearer token for the profile store (the same in every folder).
    token: String,
}

fn free_port() -> u16 {
    idsync_testbed::free_port().expect("a free loopback port")
}

fn wait_for_port(port: u16, what: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} does not listen on 127.0.0.1:{port} within 20 s");
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Servers {
    /// The servers a scenario names (`slapd`, `postgres`, `profile-store`); `tag` makes its
    /// table names unique.
    pub fn new(kinds: &[String], tag: &str, bin: PathBuf) -> Servers {
        for k in kinds {
            assert!(
                ["slapd", "postgres", "profile-store"].contains(&k.as_str()),
                "scenario {tag}: unknown server `{k}` (say slapd, postgres or profile-store)"
            );
        }
        let has = |k: &str| kinds.iter().any(|x| x == k);
        Servers {
            slapd: has("slapd"),
            postgres: has("postgres"),
            profile_store: has("profile-store"),
            slapd_port: free_port(),
            profile_port: free_port(),
            pg: format!(
                "crash_{}_{}_",
                std::process::id(),
                tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            ),
            bin,
            slapd_pid: None,
            serve: None,
            tables_made: false,
            snapshot_made: false,
            token: String::new(),
        }
    }

    pub fn any(&self) -> bool {
        self.slapd || self.postgres || self.profile_store
    }

    /// Fills in the placeholders of a configuration or a change.
    pub fn fill(&self, text: &str) -> String {
        text.replace("@SLAPD_PORT@", &self.slapd_port.to_string())
            .replace("@PROFILE_PORT@", &self.profile_port.to_string())
            .replace("@PG@", &self.pg)
    }

    fn psql(&self, sql: &str) -> String {
        run(Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c"])
            .arg(sql))
    }

    /// Creates the servers' state in the base folder from the sample estate in it.
    pub fn setup(&mut self, base: &Path) {
        if self.slapd {
            std::fs::create_dir_all(base.join("slapd/db")).unwrap();
            std::fs::write(base.join("ldap.pw"), idsync_testbed::ROOT_PASSWORD).unwrap();
            let seed = base.join("slapd/seed.ldif");
            std::fs::write(&seed, slapd_seed(base)).unwrap();
            self.slapd_config(base);
            run(Command::new("slapadd")
                .arg("-q")
                .arg("-f")
                .arg(base.join("slapd/slapd.conf"))
                .args(["-b", SUFFIX, "-l"])
                .arg(&seed));
        }
        if self.postgres {
            std::fs::write(base.join("pg.url"), PG_URL).unwrap();
            self.tables_made = true;
            let p = &self.pg;
            self.psql(&format!(
                "DROP TABLE IF EXISTS {p}hr, {p}accounts, {p}hr_snap, {p}accounts_snap;
                 CREATE TABLE {p}hr (employee_id text PRIMARY KEY, account text NOT NULL,
                   department text, \"costCenter\" text, title text, phones text,
                   updated_at timestamptz NOT NULL DEFAULT '2026-01-01T00:00:00Z');
                 CREATE TABLE {p}accounts (person_id text PRIMARY KEY, account text NOT NULL
                   UNIQUE, display_name text, mail text UNIQUE, department text, title text);
                 {}",
                hr_inserts(base, p)
            ));
        }
        if self.profile_store {
            let out = run(Command::new(&self.bin)
                .args(["token", "create", "--engine", "--db"])
                .arg(base.join("profile-store.db")));
            self.token = out.trim().to_owned();
            std::fs::write(base.join("engine.token"), &self.token).unwrap();
        }
    }

    /// After the base is prepared (servers stopped): keeps the tables' content for restores.
    pub fn snapshot(&mut self) {
        if self.postgres {
            let p = &self.pg;
            let sql: String = TABLES
                .iter()
                .map(|t| format!("CREATE TABLE {p}{t}_snap AS SELECT * FROM {p}{t};"))
                .collect();
            self.psql(&sql);
            self.snapshot_made = true;
        }
    }

    fn slapd_config(&self, dir: &Path) {
        let d = dir.join("slapd");
        let mut c = String::new();
        for schema in ["core", "cosine", "inetorgperson", "nis"] {
            c.push_str(&format!("include /etc/ldap/schema/{schema}.schema\n"));
        }
        c.push_str(&format!(
            "pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload syncprov\nsizelimit unlimited\n\
             database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\nrootpw {pw}\ndirectory {d}/db\nmaxsize 268435456\ndbnosync\n\
             index objectClass,entryCSN,entryUUID eq\nindex uid,cn,mail eq\nlimits dn.exact=\"{ROOT_DN}\" size=unlimited time=unlimited\n\
             overlay syncprov\nsyncprov-checkpoint 100 10\nsyncprov-sessionlog 10000\n",
            d = d.display(),
            pw = idsync_testbed::ROOT_PASSWORD,
        ));
        std::fs::write(d.join("slapd.conf"), c).unwrap();
    }

    /// Starts the servers on the folder's state (restored to the base's for PostgreSQL).
    pub fn start(&mut self, dir: &Path) {
        if self.postgres && self.snapshot_made {
            let p = &self.pg;
            let sql: String = TABLES
                .iter()
                .map(|t| format!("TRUNCATE {p}{t}; INSERT INTO {p}{t} SELECT * FROM {p}{t}_snap;"))
                .collect();
            self.psql(&sql);
        }
        if self.slapd {
            self.slapd_config(dir);
            let pidfile = dir.join("slapd/slapd.pid");
            let _ = std::fs::remove_file(&pidfile);
            run(Command::new("slapd")
                .arg("-h")
                .arg(format!("ldap://127.0.0.1:{}/", self.slapd_port))
                .arg("-f")
                .arg(dir.join("slapd/slapd.conf"))
                .args(["-s", "0"]));
            let until = Instant::now() + Duration::from_secs(10);
            while self.slapd_pid.is_none() {
                assert!(Instant::now() < until, "slapd wrote no pidfile in 10 s");
                self.slapd_pid = std::fs::read_to_string(&pidfile)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                std::thread::sleep(Duration::from_millis(10));
            }
            wait_for_port(self.slapd_port, "slapd");
        }
        if self.profile_store {
            let child = Command::new(&self.bin)
                .arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.profile_port))
                .arg("--db")
                .arg(dir.join("profile-store.db"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("idsync serve starts");
            self.serve = Some(child);
            wait_for_port(self.profile_port, "idsync serve");
        }
    }

    /// Stops what [`Servers::start`] started (slapd cleanly, so its files can be copied).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.serve.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = self.slapd_pid.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(15);
            while alive(pid) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(!alive(pid), "slapd {pid} does not stop");
        }
    }

    /// Applies LDIF change records to the running slapd.
    pub fn ldap_change(&self, dir: &Path, ldif: &str) {
        let p = dir.join("slapd/change.ldif");
        std::fs::write(&p, ldif.trim_start()).unwrap();
        run(self.ldap_tool("ldapmodify").arg("-f").arg(&p));
    }

    pub fn sql_change(&self, sql: &str) {
        self.psql(&self.fill(sql));
    }

    fn ldap_tool(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.arg("-H")
            .arg(format!("ldap://127.0.0.1:{}", self.slapd_port))
            .args(["-x", "-D", ROOT_DN, "-w", idsync_testbed::ROOT_PASSWORD]);
        c
    }

    /// The servers' content, by name, as sorted records: every slapd entry (user attributes,
    /// values sorted), every table's rows, every profile (without its generated id and times)
    /// with the hash of its photo's bytes.
    pub fn dump(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        if self.slapd {
            let text = run(self.ldap_tool("ldapsearch").args([
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-b",
                SUFFIX,
                "(objectClass=*)",
                "*",
            ]));
            let mut recs: Vec<String> = text
                .split("\n\n")
                .filter(|r| !r.trim().is_empty())
                .map(|r| {
                    let mut lines: Vec<&str> = r.lines().collect();
                    lines.sort();
                    lines.join(" | ")
                })
                .collect();
            recs.sort();
            out.push(("slapd".to_owned(), recs));
        }
        if self.postgres {
            for t in TABLES {
                let text = self.psql(&format!(
                    "SELECT row_to_json(t)::text FROM {}{t} t",
                    self.pg
                ));
                let mut rows: Vec<String> = text.lines().map(str::to_owned).collect();
                rows.sort();
                out.push((format!("postgres {t}"), rows));
            }
        }
        if self.profile_store {
            out.push(("profile store".to_owned(), self.profiles()));
        }
        out
    }

    fn profiles(&self) -> Vec<String> {
        let token = &self.token;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let get = |url: &str| {
            agent
                .get(url)
                .header("Authorization", format!("Bearer {}", token.trim()))
                .call()
                .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        };
        let base = format!("http://127.0.0.1:{}", self.profile_port);
        let mut r = get(&format!("{base}/scim/v2/Users?count=10000"));
        assert_eq!(r.status(), 200, "GET /scim/v2/Users");
        let page: serde_json::Value = r.body_mut().read_json().unwrap();
        let mut recs = Vec::new();
        for mut u in page["Resources"].as_array().cloned().unwrap_or_default() {
            let o = u.as_object_mut().unwrap();
            let id = o.remove("id").and_then(|v| v.as_str().map(str::to_owned));
            o.remove("meta");
            if let Some(photos) = o.get_mut("photos").and_then(|p| p.as_array_mut()) {
                for p in photos {
                    let Some(url) = p["value"].as_str().map(str::to_owned) else {
                        continue;
                    };
                    let url = if url.starts_with('/') {
                        format!("{base}{url}")
                    } else {
                        url
                    };
                    let mut r = get(&url);
                    let bytes = r
                        .body_mut()
                        .with_config()
                        .limit(64 << 20)
                        .read_to_vec()
                        .unwrap();
                    p["value"] = serde_json::Value::String(format!(
                        "{} bytes {}",
                        r.status(),
                        blake3::hash(&bytes).to_hex()
                    ));
                }
            }
            let mut text = serde_json::to_string(&u).unwrap();
            if let Some(id) = id {
                // The profile's own id inside other values (its photo's address).
                text = text.replace(&id, "<self>");
            }
            recs.push(text);
        }
        recs.sort();
        recs
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop();
        if self.tables_made {
            let p = &self.pg;
            let sql: String = TABLES
                .iter()
                .map(|t| format!("DROP TABLE IF EXISTS {p}{t}, {p}{t}_snap;"))
                .collect();
            let _ = Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "test",
                    "-c",
                ])
                .arg(sql)
                .output();
        }
    }
}

/// The sample directory as a slapd seed: the containers (and `ou=Staff` for the write-back),
/// plain `person` entries given `uidObject` (OpenLDAP's schema wants it for `uid`) and no photo,
/// photo files by absolute path.
fn slapd_seed(base: &Path) -> String {
    let text = std::fs::read_to_string(base.join("directory.ldif")).unwrap();
    let body = text.strip_prefix("version: 1\n").unwrap_or(&text);
    let mut seed = idsync_testbed::base_ldif(SUFFIX);
    seed.push_str(&format!(
        "dn: ou=Staff,{SUFFIX}\nobjectClass: top\nobjectClass: organizationalUnit\nou: Staff\n\n"
    ));
    let photos = format!("file://{}/", base.display());
    for record in body.split("\n\n").filter(|r| !r.trim().is_empty()) {
        let plain = record.contains("objectClass: organizationalPerson\n")
            && !record.contains("objectClass: inetOrgPerson");
        for line in record.lines() {
            if line.starts_with('#') || (plain && line.starts_with("jpegPhoto")) {
                continue;
            }
            seed.push_str(&line.replace(":< file:", &format!(":< {photos}")));
            seed.push('\n');
            if plain && line == "objectClass: organizationalPerson" {
                seed.push_str("objectClass: uidObject\n");
            }
        }
        seed.push('\n');
    }
    seed
}

/// The sample's HR file as INSERTs into the HR table (no hire date: the table has none).
fn hr_inserts(base: &Path, p: &str) -> String {
    let text = std::fs::read_to_string(base.join("hr.csv")).unwrap();
    let mut sql = String::new();
    for line in text.lines().skip(1) {
        let f = csv_fields(line);
        let q = |s: &str| {
            if s.is_empty() {
                "NULL".to_owned()
            } else {
                format!("'{}'", s.replace('\'', "''"))
            }
        };
        sql.push_str(&format!(
            "INSERT INTO {p}hr (employee_id, account, department, \"costCenter\", title, phones) VALUES ({}, {}, {}, {}, {}, {});\n",
            q(&f[0]),
            q(&f[1]),
            q(&f[2]),
            q(&f[3]),
            q(&f[4]),
            q(&f[6])
        ));
    }
    sql
}

/// The fields of one line of the sample's CSV (quotes only around whole fields).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    while out.len() < 7 {
        out.push(String::new());
    }
    out
}

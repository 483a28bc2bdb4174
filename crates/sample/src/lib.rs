//! Sample estates: a generated directory (LDIF), an HR table (CSV) that augments it, photos, and
//! the configuration that joins them, for `idsync demo`, the benchmarks and the tests.
//!
//! Generation is deterministic (a seeded generator), so a benchmark or a test sees the same data
//! every run. Writing files is this crate's whole job; it knows nothing of the engine.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Small JPEG portraits; each person's photo is one of these with the person's id in a JPEG
/// comment segment, so every photo is a valid JPEG with its own bytes.
const PORTRAITS: [&[u8]; 8] = [
    include_bytes!("../photos/p0.jpg"),
    include_bytes!("../photos/p1.jpg"),
    include_bytes!("../photos/p2.jpg"),
    include_bytes!("../photos/p3.jpg"),
    include_bytes!("../photos/p4.jpg"),
    include_bytes!("../photos/p5.jpg"),
    include_bytes!("../photos/p6.jpg"),
    include_bytes!("../photos/p7.jpg"),
];

/// A JPEG portrait for a person; `version` changes the bytes (a new photo) for the same person.
pub fn photo(uid: &str, version: u32) -> Vec<u8> {
    let h = uid.bytes().fold(version as usize, |a, b| {
        a.wrapping_mul(31).wrapping_add(b as usize)
    });
    let base = PORTRAITS[h % PORTRAITS.len()];
    let comment = format!("idsync sample photo of {uid}, version {version}");
    let len = (comment.len() + 2) as u16;
    let mut out = Vec::with_capacity(base.len() + comment.len() + 4);
    out.extend_from_slice(&base[..2]); // SOI
    out.extend_from_slice(&[0xFF, 0xFE]); // COM
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(comment.as_bytes());
    out.extend_from_slice(&base[2..]);
    out
}

/// A small deterministic generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const GIVEN: &[&str] = &[
    "Ann", "Bob", "Chloé", "Dmitri", "Eve", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal",
    "Lena", "Mateo", "Nora", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Viktor",
    "Wen", "Xavier", "Yara", "Zoé",
];
const FAMILY: &[&str] = &[
    "Lee",
    "Martin",
    "Okafor",
    "Novak",
    "García",
    "Müller",
    "Rossi",
    "Tanaka",
    "Kowalski",
    "Haddad",
    "Nguyen",
    "O'Brien",
    "Silva",
    "Andersson",
    "Dubois",
    "Petrov",
    "Khan",
    "Costa",
    "Schmidt",
    "Larsen",
];
const DEPARTMENTS: &[&str] = &[
    "Engineering",
    "Sales",
    "Finance",
    "Legal",
    "Support",
    "Marketing",
    "Operations",
    "Research",
];
const TITLES: &[&str] = &[
    "Engineer",
    "Analyst",
    "Manager",
    "Consultant",
    "Specialist",
    "Director",
    "Associate",
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub people: usize,
    /// Share of people with a photo, in percent.
    pub photo_percent: u64,
    /// Photos as `jpegPhoto:< file:` URLs to files beside the LDIF (true), or inline base64.
    pub photo_files: bool,
    /// How many groups.
    pub groups: usize,
    /// Out-of-scope objects (computers) mixed into the directory.
    pub devices: usize,
    /// HR rows for people who are not in the directory (augmenting rows with no person).
    pub hr_orphans: usize,
    pub seed: u64,
}

impl Options {
    pub fn demo() -> Self {
        Self {
            people: 300,
            photo_percent: 60,
            photo_files: true,
            groups: 6,
            devices: 12,
            hr_orphans: 5,
            seed: 2026,
        }
    }

    pub fn bench(people: usize) -> Self {
        Self {
            people,
            photo_percent: 10,
            photo_files: false,
            groups: 0,
            devices: 0,
            hr_orphans: 0,
            seed: 7,
        }
    }
}

/// One generated person's identity, for tests that need to know who is who.
pub fn uid(i: usize) -> String {
    format!("u{i:07}")
}

/// The deterministic entryUUID of person `i`.
pub fn entry_uuid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

pub fn person_dn(i: usize) -> String {
    format!("uid={},ou=People,dc=example,dc=test", uid(i))
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Generated {
    pub directory: PathBuf,
    pub hr: PathBuf,
    pub config: PathBuf,
    pub people: usize,
    pub inet_org_people: usize,
    pub plain_people: usize,
    pub devices: usize,
    pub groups: usize,
    pub photos: usize,
    pub hr_rows: usize,
}

/// Writes the sample estate and its configuration into `dir`.
pub fn generate(dir: &Path, o: &Options) -> std::io::Result<Generated> {
    // The estate's directory holds its stores and token: its owner's only (0700) when made here.
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    if o.photo_files {
        std::fs::create_dir_all(dir.join("photos"))?;
    }
    let mut rng = Rng::new(o.seed);
    let directory = dir.join("directory.ldif");
    let hr = dir.join("hr.csv");
    let mut ldif = BufWriter::with_capacity(1 << 20, std::fs::File::create(&directory)?);
    let mut csv = BufWriter::with_capacity(1 << 20, std::fs::File::create(&hr)?);
    writeln!(ldif, "version: 1")?;
    writeln!(ldif)?;
    writeln!(
        ldif,
        "# Sample directory generated by idsync: {} people, {} groups, {} devices.",
        o.people, o.groups, o.devices
    )?;
    writeln!(
        csv,
        "employee_id,account,department,costCenter,title,hireDate,phones"
    )?;
    let mut g = Generated {
        directory: directory.clone(),
        hr: hr.clone(),
        config: dir.join("idsync.toml"),
        people: o.people,
        inet_org_people: 0,
        plain_people: 0,
        devices: o.devices,
        groups: o.groups,
        photos: 0,
        hr_rows: 0,
    };
    let mut rec = String::with_capacity(4096);
    for i in 0..o.people {
        rec.clear();
        let uid = uid(i);
        let given = rng.pick(GIVEN);
        let family = rng.pick(FAMILY);
        // One person in eight is a plain `person` (contractors in an older part of the tree);
        // the rest are inetOrgPerson. Both are in scope: seed 003's comments lost the
        // inetOrgPerson ones silently.
        let plain = i % 8 == 7;
        let _ = writeln!(rec, "dn: {}", person_dn(i));
        if plain {
            g.plain_people += 1;
            rec.push_str(
                "objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n",
            );
        } else {
            g.inet_org_people += 1;
            rec.push_str("objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: inetOrgPerson\n");
        }
        let _ = writeln!(rec, "entryUUID: {}", entry_uuid(i));
        let _ = writeln!(rec, "uid: {uid}");
        let _ = writeln!(rec, "cn: {given} {family}");
        let _ = writeln!(rec, "sn: {family}");
        if !plain {
            let _ = writeln!(rec, "givenName: {given}");
            let _ = writeln!(rec, "mail: {uid}@example.test");
            let _ = writeln!(rec, "title: {}", rng.pick(TITLES));
            if i > 0 {
                // Managers are people with lower or higher numbers: some references point at
                // entries that come later in the file (order of arrival must not matter).
                let m = if i % 5 == 0 {
                    (i + 3) % o.people
                } else {
                    i / 10
                };
                if m != i {
                    let _ = writeln!(rec, "manager: {}", person_dn(m));
                }
            }
        }
        let _ = writeln!(rec, "telephoneNumber: +1 555 {:04}", i % 10000);
        if rng.below(100) < o.photo_percent {
            g.photos += 1;
            let bytes = photo(&uid, 1);
            if o.photo_files {
                std::fs::write(dir.join("photos").join(format!("{uid}.jpg")), &bytes)?;
                let _ = writeln!(rec, "jpegPhoto:< file:photos/{uid}.jpg");
            } else {
                use base64::Engine;
                let _ = writeln!(
                    rec,
                    "jpegPhoto:: {}",
                    base64::engine::general_purpose::STANDARD.encode(&bytes)
                );
            }
        }
        rec.push('\n');
        ldif.write_all(rec.as_bytes())?;

        // Nine people in ten have an HR row; the account is `EXAMPLE\uid`, so the join
        // normalises it (one of seed 003's comments).
        if i % 10 != 3 {
            g.hr_rows += 1;
            writeln!(
                csv,
                "E{i:07},EXAMPLE\\{uid},{},CC{:03},{},{},\"+1 555 {:04};+1 555 {:04}\"",
                rng.pick(DEPARTMENTS),
                rng.below(40),
                rng.pick(TITLES),
                1_500_000_000 + rng.below(300_000_000),
                rng.below(10000),
                rng.below(10000)
            )?;
        }
    }
    for d in 0..o.devices {
        writeln!(
            ldif,
            "dn: cn=pc{d:04},ou=Devices,dc=example,dc=test\nobjectClass: top\nobjectClass: device\ncn: pc{d:04}\nentryUUID: 00000000-0000-4000-9000-{d:012}\n"
        )?;
    }
    for k in 0..o.groups {
        writeln!(
            ldif,
            "dn: cn=team{k},ou=Groups,dc=example,dc=test\nobjectClass: top\nobjectClass: groupOfNames\ncn: team{k}\nentryUUID: 00000000-0000-4000-a000-{k:012}"
        )?;
        for i in (k..o.people).step_by(o.groups.max(1) * 3) {
            writeln!(ldif, "member: {}", person_dn(i))?;
        }
        writeln!(ldif)?;
    }
    for k in 0..o.hr_orphans {
        g.hr_rows += 1;
        writeln!(
            csv,
            "X{k:07},EXAMPLE\\gone{k},Sales,CC000,Former,1400000000,"
        )?;
    }
    ldif.flush()?;
    csv.flush()?;
    std::fs::write(&g.config, config_text())?;
    Ok(g)
}

/// The sample configuration: the directory projects people, HR augments them, and the profile
/// table receives them with their photos.
pub fn config_text() -> String {
    r#"# idsync sample configuration: a directory (LDIF), an HR system (CSV) that augments it, and
# a profile table that receives every person with their photo.

[store]
path = "idsync.db"

[[connector]]
name = "directory"
type = "ldif"
role = "directory"
path = "directory.ldif"
delta_path = "changes"
anchor = "entryUUID"

[[connector.object_type]]
name = "person"
object_classes = ["inetOrgPerson", "person", "user"]

[[connector]]
name = "hr"
type = "csv"
role = "business"
path = "hr.csv"
anchor = "employee_id"
multi_valued = ["phones"]
attribute_types = { hireDate = "timestamp" }

[[connector.object_type]]
name = "person"

[[connector]]
name = "profiles"
type = "csv"
role = "target"
path = "profiles.csv"
optional = true
anchor = "id"
dn = "account"
multi_valued = ["phones"]
columns = ["id", "account", "displayName", "mail", "title", "department", "costCenter", "manager", "phones", "hireDate", "photo"]
attribute_types = { photo = "binary-file", hireDate = "timestamp" }

[[connector.object_type]]
name = "person"

[[join]]
connector = "hr"
cs = "account"
mv = "uid"
normalize = ["strip_domain", "lowercase"]

[[import_flow]]
connector = "directory"
mv = "uid"
cs = "uid"

[[import_flow]]
connector = "directory"
mv = "displayName"
expr = "has(cs.givenName) ? cs.givenName + ' ' + cs.sn : cs.cn"

# What an LDAP `inetOrgPerson` target requires (`cn`, `sn`) and usually shows (`givenName`).
[[import_flow]]
connector = "directory"
mv = "cn"
cs = "cn"

[[import_flow]]
connector = "directory"
mv = "sn"
cs = "sn"

[[import_flow]]
connector = "directory"
mv = "givenName"
cs = "givenName"

[[import_flow]]
connector = "directory"
mv = "mail"
cs = "mail"

[[import_flow]]
connector = "directory"
mv = "title"
cs = "title"

[[import_flow]]
connector = "directory"
mv = "manager"
cs = "manager"

[[import_flow]]
connector = "directory"
mv = "photo"
cs = "jpegPhoto"

[[import_flow]]
connector = "hr"
mv = "department"
cs = "department"

[[import_flow]]
connector = "hr"
mv = "costCenter"
cs = "costCenter"

[[import_flow]]
connector = "hr"
mv = "title"
cs = "title"

[[import_flow]]
connector = "hr"
mv = "hireDate"
cs = "hireDate"

[[import_flow]]
connector = "hr"
mv = "phones"
cs = "phones"

# HR is authoritative for titles; the directory fills in where HR has none.
[precedence]
title = ["hr", "directory"]

[[provision]]
connector = "profiles"
mv_type = "person"
object_type = "person"
dn = "{uid}"

[[export_flow]]
connector = "profiles"
cs = "account"
mv = "uid"

[[export_flow]]
connector = "profiles"
cs = "displayName"
mv = "displayName"

[[export_flow]]
connector = "profiles"
cs = "mail"
mv = "mail"

[[export_flow]]
connector = "profiles"
cs = "title"
mv = "title"

[[export_flow]]
connector = "profiles"
cs = "department"
mv = "department"

[[export_flow]]
connector = "profiles"
cs = "costCenter"
mv = "costCenter"

[[export_flow]]
connector = "profiles"
cs = "manager"
mv = "manager"

[[export_flow]]
connector = "profiles"
cs = "phones"
mv = "phones"

[[export_flow]]
connector = "profiles"
cs = "hireDate"
mv = "hireDate"

[[export_flow]]
connector = "profiles"
cs = "photo"
mv = "photo"

[[unique]]
connector = "profiles"
attribute = "mail"
"#
    .to_owned()
}

/// The sample configuration with the profile store as the target: the same people, flows and
/// photos as [`config_text`], exported to idsync's profile store at `url` with the engine token
/// found at `token_ref` (`file:PATH` or `env:NAME`).
pub fn profile_store_config_text(url: &str, token_ref: &str) -> String {
    let text = config_text();
    let start = text
        .find("[[connector]]\nname = \"profiles\"")
        .expect("the sample has a profiles connector");
    let end = start
        + text[start..]
            .find("[[join]]")
            .expect("joins follow the connectors");
    let block = format!(
        r#"[[connector]]
name = "profiles"
type = "profile-store"
role = "target"
url = "{url}"
token = "{token_ref}"

[[connector.object_type]]
name = "person"
object_classes = ["User"]

[[connector.object_type]]
name = "group"
object_classes = ["Group"]

"#
    );
    let mut out = format!("{}{block}{}", &text[..start], &text[end..]);
    // The directory's groups and their members go to the profile store too (`/Groups`), each
    // group named by its `cn`, its members the people it holds.
    out = out.replace(
        "[[connector.object_type]]\nname = \"person\"\nobject_classes = [\"inetOrgPerson\", \"person\", \"user\"]\n",
        "[[connector.object_type]]\nname = \"person\"\nobject_classes = [\"inetOrgPerson\", \"person\", \"user\"]\n\n[[connector.object_type]]\nname = \"group\"\nobject_classes = [\"groupOfNames\"]\n",
    );
    out = out.replace(
        "[[unique]]\n",
        r#"[[import_flow]]
connector = "directory"
object_type = "group"
mv = "member"
cs = "member"

[[provision]]
connector = "profiles"
mv_type = "group"
object_type = "group"
dn = "{displayName}"

[[export_flow]]
connector = "profiles"
object_type = "group"
cs = "member"
mv = "member"

[[unique]]
"#,
    );
    // The profile's user name is its identifier (the provisioning template), not a property;
    // the profile store's default schema has no hire date.
    for flow in [
        "cs = \"account\"\nmv = \"uid\"",
        "cs = \"hireDate\"\nmv = \"hireDate\"",
    ] {
        out = out.replace(
            &format!("[[export_flow]]\nconnector = \"profiles\"\n{flow}\n\n"),
            "",
        );
    }
    out.replace(
        "# a profile table that receives every person with their photo.",
        "# idsync's profile store, which receives every person with their photo.",
    )
}

/// Seed 000's write-back: the picture flow reversed. The profile store becomes the source of
/// photos (people upload their own) and the directory receives them in `jpegPhoto`. Applied to
/// a configuration made by [`profile_store_config_text`]; nothing else changes, and no connector
/// space is cleared: the changed rules re-evaluate by themselves.
pub fn photo_writeback(config: &str) -> String {
    photo_writeback_to(config, "jpegPhoto")
}

/// [`photo_writeback`] for a directory that keeps photos in `attribute` (`thumbnailPhoto` in
/// Active Directory): the import flow `directory.<attribute>` → `photo` becomes
/// `profiles.photo` → `photo`, and the export flow `photo` → `profiles.photo` becomes `photo` →
/// `directory.<attribute>`.
pub fn photo_writeback_to(config: &str, attribute: &str) -> String {
    let from_directory = format!(
        "[[import_flow]]\nconnector = \"directory\"\nmv = \"photo\"\ncs = \"{attribute}\"\n"
    );
    let to_profiles = "[[export_flow]]\nconnector = \"profiles\"\ncs = \"photo\"\nmv = \"photo\"\n";
    assert!(config.contains(&from_directory) && config.contains(to_profiles));
    config
        .replace(
            &from_directory,
            "[[import_flow]]\nconnector = \"profiles\"\nmv = \"photo\"\ncs = \"photo\"\n",
        )
        .replace(
            to_profiles,
            &format!(
                "[[export_flow]]\nconnector = \"directory\"\ncs = \"{attribute}\"\nmv = \"photo\"\n"
            ),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_store_configuration_swaps_the_target_only() {
        let c = profile_store_config_text("http://127.0.0.1:1", "file:engine.token");
        assert!(c.contains("type = \"profile-store\""));
        assert!(!c.contains("profiles.csv"));
        assert!(c.contains("[[join]]"));
        let w = photo_writeback(&c);
        assert!(w.contains("connector = \"directory\"\ncs = \"jpegPhoto\""));
    }

    /// Issue 22 item 12: the README shows the reversed photo flow as configuration; its lines
    /// are exactly what [`photo_writeback`] changes.
    #[test]
    fn the_readme_shows_the_photo_writeback_as_the_toml_it_is() {
        let readme = include_str!("../../../README.md");
        let at = readme
            .find("Seed 000's photo write-back")
            .expect("the README describes the write-back");
        let blocks: Vec<&str> = readme[at..]
            .split("```toml\n")
            .skip(1)
            .take(2)
            .map(|b| b.split("```").next().unwrap())
            .collect();
        let c = profile_store_config_text("http://127.0.0.1:1", "file:engine.token");
        for block in &blocks {
            for flow in block.split("\n\n") {
                assert!(!flow.trim().is_empty());
            }
        }
        let mut by_hand = c.clone();
        let (old, new) = (blocks[0].split("\n\n"), blocks[1].split("\n\n"));
        for (o, n) in old.zip(new) {
            let o = format!("{}\n", o.trim_end());
            assert!(by_hand.contains(&o), "{o}");
            by_hand = by_hand.replace(&o, &format!("{}\n", n.trim_end()));
        }
        assert_eq!(by_hand, photo_writeback(&c));
        assert_ne!(by_hand, c);
    }

    #[test]
    fn photos_are_jpegs_with_their_own_bytes() {
        let a = photo("u1", 1);
        let b = photo("u1", 2);
        assert_eq!(&a[..2], &[0xFF, 0xD8]);
        assert_ne!(a, b);
        assert_eq!(photo("u1", 1), a);
    }
}

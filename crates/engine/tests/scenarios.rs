//! Engine scenarios through real files and the real SQLite store: one integration-test target
//! whose submodules say what they cover.
//! (A test target is a crate root, so its submodules' files are named by `#[path]`.)

#[path = "scenarios/harness.rs"]
mod harness;

/// Issue 17's property test: random source changes, delta cycles against a full cycle.
#[path = "scenarios/converge.rs"]
mod converge;

/// Test databases (PostgreSQL, MariaDB, SQLite), shared with the SQL connector's tests.
#[path = "../../connector-sql/tests/db/mod.rs"]
mod db;

/// Business-system augmentation from SQL and CSV: joins, not-joined rows, corrected join keys,
/// delta, a database gone mid-import.
#[path = "scenarios/augment.rs"]
mod augment;

/// Full and delta import: adds, updates, renames, deletes, watermarks, scope and its reasons.
#[path = "scenarios/import.rs"]
mod import;

/// Malformed input (LDIF, change files, CSV) and malformed configuration: errors name the
/// place, and nothing is stored half-way.
#[path = "scenarios/malformed.rs"]
mod malformed;

/// Joins on normalised keys, projection allowed and refused, precedence between sources.
#[path = "scenarios/join.rs"]
mod join;

/// References resolved through the metaverse whatever order their targets arrive in.
#[path = "scenarios/references.rs"]
mod references;

/// Value-level changes of multi-valued attributes, from import to export.
#[path = "scenarios/values.rs"]
mod values;

/// Photos: binary values compared by content, and seed 000's reversed photo flow.
#[path = "scenarios/photos.rs"]
mod photos;

/// Export: per-object errors kept and retried; deprovisioning.
#[path = "scenarios/export.rs"]
mod export;

/// Changed rules re-evaluate what they touch without clearing anything.
#[path = "scenarios/rules_change.rs"]
mod rules_change;

/// The LDAP connector against a real throwaway slapd: paged full import, syncrepl and its
/// fallback, value-level export, photos, references, failures and hostile values.
#[path = "scenarios/ldap.rs"]
mod ldap;

/// The LDAP connector's Active Directory profile against a real throwaway Samba AD DC: full
/// import, DirSync deltas across an engine restart.
#[path = "scenarios/ad.rs"]
mod ad;

//! The composition point for connectors: [`open`] knows every connector crate and opens one by
//! its configured `type`. The engine takes it as its `Opener`; connector crates never depend on
//! each other, only on `idsync-connectors` for the trait.

use idsync_connectors::{Connector, Error, Result};
use idsync_model::ConnectorId;
use std::path::Path;

/// Every connector type this build knows, for messages and `--help`.
pub const TYPES: &[&str] = &[
    "ldif",
    "csv",
    "ldap",
    "sql",
    "profile-store",
    "scim",
    "process",
    "singer",
];

/// Opens a connector of a configured type. `base_dir` resolves relative paths (the
/// configuration file's directory).
pub fn open(
    name: &ConnectorId,
    kind: &str,
    settings: &toml::Table,
    base_dir: &Path,
) -> Result<Box<dyn Connector>> {
    match kind {
        // Connector crates register here, one arm each (and in `TYPES`).
        "ldif" | "csv" => idsync_connectors::open(name, kind, settings, base_dir),
        "ldap" => Ok(Box::new(idsync_connector_ldap::LdapConnector::new(
            name.clone(),
            settings,
            base_dir,
        )?)),
        "sql" => Ok(Box::new(idsync_connector_sql::SqlConnector::new(
            name.clone(),
            settings,
            base_dir,
        )?)),
        // Any program speaking the connector protocol (docs/connector-protocol.md).
        "process" => Ok(Box::new(idsync_connector_process::ProcessConnector::new(
            name.clone(),
            settings,
            base_dir,
        )?)),
        // A Singer tap as a source (SCHEMA, RECORD, STATE).
        "singer" => Ok(Box::new(idsync_connector_process::SingerConnector::new(
            name.clone(),
            settings,
            base_dir,
        )?)),
        // A generic SCIM 2.0 service is the profile store's connector without the change feed
        // (delta by `meta.lastModified`), found out at run time.
        "profile-store" | "scim" => Ok(Box::new(
            idsync_connector_profile_store::ProfileStoreConnector::new(
                name.clone(),
                settings,
                base_dir,
            )?,
        )),
        other => Err(Error::Config {
            connector: name.to_string(),
            message: format!(
                "unknown connector type `{other}` (known: {})",
                TYPES.join(", ")
            ),
        }),
    }
}

pub use idsync_connector_process::{Check, CheckReport};

/// Drives a process connector's program through the protocol and lists every violation
/// (`idsync connector check`).
pub fn check_process(
    name: &ConnectorId,
    settings: &toml::Table,
    base_dir: &Path,
) -> Result<CheckReport> {
    let mut c = idsync_connector_process::ProcessConnector::new(name.clone(), settings, base_dir)?;
    Ok(idsync_connector_process::check(&mut c))
}

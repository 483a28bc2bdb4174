//! Issue 22 item 12: every configuration in `examples/` loads through the real configuration
//! loader and its connectors' settings pass the checks `idsync run` makes before connecting, so
//! the examples cannot rot. Secrets are references (`env:NAME`, `file:PATH`); the test gives
//! each one a placeholder, as an operator would.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The secret references in a configuration: `"env:NAME"` and `"file:PATH"` values.
fn references<'a>(text: &'a str, scheme: &str) -> Vec<&'a str> {
    let quoted = format!("\"{scheme}:");
    text.match_indices(&quoted)
        .filter_map(|(at, _)| {
            let rest = &text[at + quoted.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// Loads `config` as `idsync` does (a copy in a fresh folder, secrets given placeholders) and
/// returns the failure, if any.
fn check(config: &Path) -> Result<(), String> {
    let name = config.display();
    if config.extension().and_then(|e| e.to_str()) != Some("toml") {
        return Err(format!("{name}: examples/ holds idsync.toml files only"));
    }
    let text = std::fs::read_to_string(config).map_err(|e| format!("{name}: {e}"))?;
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("idsync.toml");
    std::fs::write(&copy, &text).unwrap();
    for path in references(&text, "file") {
        let secret = tmp.path().join(path);
        std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
        std::fs::write(secret, "placeholder-secret\n").unwrap();
    }
    let mut cmd = Command::cargo_bin("idsync").unwrap();
    cmd.current_dir(tmp.path())
        .env_remove("IDSYNC_CONFIG")
        .args(["-c", "idsync.toml", "plan", "--json"]);
    for var in references(&text, "env") {
        let value = if var.ends_with("_URL") {
            "postgres://127.0.0.1:5432/test"
        } else {
            "placeholder-secret"
        };
        cmd.env(var, value);
    }
    let out = cmd.output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn every_example_configuration_loads_and_its_connector_settings_pass() {
    let files = examples();
    for estate in [
        "ldap-to-profile-store.toml",
        "ad-to-profile-store-photo-writeback.toml",
        "ldap-sql-hr-to-profile-store.toml",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(estate)),
            "examples/{estate} is missing"
        );
    }
    let failures: Vec<String> = files.iter().filter_map(|f| check(f).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// No secret is written into an example: every password, token and database URL is a reference.
#[test]
fn example_secrets_are_references() {
    for file in examples() {
        let text = std::fs::read_to_string(&file).unwrap();
        let value = toml::from_str::<toml::Table>(&text).unwrap();
        for connector in value["connector"].as_array().unwrap() {
            for key in ["bind_password", "token", "password", "url"] {
                let Some(v) = connector.get(key).and_then(|v| v.as_str()) else {
                    continue;
                };
                let secret = key != "url" || connector["type"].as_str() == Some("sql");
                assert!(
                    !secret || v.starts_with("env:") || v.starts_with("file:"),
                    "{}: connector {}: {key} must be an env: or file: reference",
                    file.display(),
                    connector["name"]
                );
            }
        }
    }
}

/// The photo write-back example is the reversed flow `idsync_sample::photo_writeback_to` makes.
#[test]
fn the_ad_example_reverses_the_photo_flow() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/ad-to-profile-store-photo-writeback.toml"),
    )
    .unwrap();
    assert!(text
        .contains("[[import_flow]]\nconnector = \"profiles\"\nmv = \"photo\"\ncs = \"photo\"\n"));
    assert!(text.contains(
        "[[export_flow]]\nconnector = \"directory\"\ncs = \"thumbnailPhoto\"\nmv = \"photo\"\n"
    ));
    assert!(!text.contains("cs = \"photo\"\nmv = \"photo\""));
}

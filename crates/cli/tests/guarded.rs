//! End-to-end, issue 24: secrets and what the binary says about them. A secret or token file
//! others can read is warned about on stderr (naming the file, never its content); a password
//! bind in cleartext to a remote server is refused unless allowed; `--json` failures are JSON;
//! configuration errors about a secret name the key's line.

use assert_cmd::Command;
use std::path::Path;

fn idsync() -> Command {
    let mut c = Command::cargo_bin("idsync").expect("the idsync binary is built");
    // The default level (warnings) whatever the caller's environment says.
    c.env_remove("RUST_LOG");
    c
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A configuration with an LDAP directory binding with `file:bind.pw` and a profile store
/// reached with `file:engine.token`; neither server is contacted by `history`, which opens (and
/// so checks) every connector.
fn secret_files_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("idsync.toml");
    std::fs::write(
        &config,
        r#"[[connector]]
name = "dir"
type = "ldap"
role = "directory"
url = "ldap://127.0.0.1:1"
bind_dn = "cn=admin,dc=example,dc=test"
bind_password = "file:bind.pw"
base_dns = ["dc=example,dc=test"]
[[connector.object_type]]
name = "person"
object_classes = ["inetOrgPerson"]

[[connector]]
name = "profiles"
type = "profile-store"
role = "target"
url = "http://127.0.0.1:1"
token = "file:engine.token"
[[connector.object_type]]
name = "person"
"#,
    )
    .unwrap();
    std::fs::write(dir.join("bind.pw"), "bind-s3cret-value\n").unwrap();
    std::fs::write(dir.join("engine.token"), "token-s3cret-value\n").unwrap();
    config
}

#[cfg(unix)]
#[test]
fn a_secret_or_token_file_others_can_read_is_warned_about_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let config = secret_files_config(tmp.path());
    let run = || {
        let out = idsync()
            .arg("-c")
            .arg(&config)
            .args(["history", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        for secret in ["bind-s3cret-value", "token-s3cret-value"] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "a secret was printed: {stdout} {stderr}"
            );
        }
        stderr
    };
    // Group- or world-readable: one warning per file, naming it.
    chmod(&tmp.path().join("bind.pw"), 0o644);
    chmod(&tmp.path().join("engine.token"), 0o640);
    let err = run();
    let bind = tmp.path().join("bind.pw").display().to_string();
    let token = tmp.path().join("engine.token").display().to_string();
    let warned = |path: &str| {
        err.lines()
            .filter(|l| {
                l.contains("WARN") && l.contains(path) && l.contains("readable by group or others")
            })
            .count()
    };
    assert_eq!(warned(&bind), 1, "{err}");
    assert_eq!(warned(&token), 1, "{err}");
    assert!(err.contains("0644") && err.contains("0640"), "{err}");
    // Owner-only: nothing at all on stderr.
    chmod(&tmp.path().join("bind.pw"), 0o600);
    chmod(&tmp.path().join("engine.token"), 0o400);
    let err = run();
    assert_eq!(err, "", "owner-only secret files gave: {err}");
}

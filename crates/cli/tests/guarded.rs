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

/// An LDAP directory at `url` binding as the throwaway slapd's administrator with
/// `file:bind.pw` (owner-only), plus `extra` settings.
fn ldap_config(dir: &Path, url: &str, extra: &str) -> std::path::PathBuf {
    let config = dir.join("idsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[connector]]
name = "dir"
type = "ldap"
role = "directory"
url = "{url}"
bind_dn = "cn=admin,dc=example,dc=test"
bind_password = "file:bind.pw"
base_dns = ["dc=example,dc=test"]
{extra}
[[connector.object_type]]
name = "person"
object_classes = ["inetOrgPerson"]
"#
        ),
    )
    .unwrap();
    let pw = dir.join("bind.pw");
    std::fs::write(&pw, idsync_testbed::ROOT_PASSWORD).unwrap();
    #[cfg(unix)]
    chmod(&pw, 0o600);
    config
}

#[test]
fn a_password_bind_in_cleartext_to_another_machine_is_refused_before_anything_is_sent() {
    let ip = idsync_testbed::non_loopback_ipv4().expect("this machine's own non-loopback address");
    // Something listening there that would see any connection.
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let config = ldap_config(tmp.path(), &format!("ldap://{ip}:{port}"), "");
    for args in [
        &["run", "full-cycle"][..],
        &["run", "full-import", "--connector", "dir"],
    ] {
        let out = idsync().arg("-c").arg(&config).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        // At the url's line, naming the connector and the setting that would allow it.
        assert!(
            err.contains("idsync.toml:5:")
                && err.contains("connector `dir`")
                && err.contains("unencrypted")
                && err.contains("allow_cleartext_bind = true"),
            "{err}"
        );
        assert!(!err.contains(idsync_testbed::ROOT_PASSWORD), "{err}");
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("something connected to the remote server: {other:?}"),
    }
}

#[test]
fn an_allowed_cleartext_bind_reaches_a_remote_slapd_and_is_warned_about() {
    let ip = idsync_testbed::non_loopback_ipv4().expect("this machine's own non-loopback address");
    let mut seed = idsync_testbed::base_ldif("dc=example,dc=test");
    seed.push_str(
        "dn: uid=ada,ou=People,dc=example,dc=test\nobjectClass: inetOrgPerson\nuid: ada\ncn: Ada Lovelace\nsn: Lovelace\n\n",
    );
    let slapd = idsync_testbed::Slapd::start(idsync_testbed::SlapdOptions {
        host: ip.into(),
        seed: Some(seed.into_bytes()),
        ..Default::default()
    })
    .expect("slapd starts on this machine's non-loopback address");
    assert!(slapd.url().contains(&ip.to_string()), "{}", slapd.url());
    let tmp = tempfile::tempdir().unwrap();
    let config = ldap_config(tmp.path(), &slapd.url(), "allow_cleartext_bind = true");
    let out = idsync()
        .arg("-c")
        .arg(&config)
        .args(["run", "full-import", "--connector", "dir", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["stats"]["added"], 1, "{report}");
    // Said once (the import opens two connections), naming the connector and the server.
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("unencrypted"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("connector `dir`") && warnings[0].contains(&slapd.url()),
        "{err}"
    );
    assert!(!err.contains(idsync_testbed::ROOT_PASSWORD), "{err}");
}

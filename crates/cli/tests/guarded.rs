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

/// The line (1-based) of the first line of `text` starting with `key`.
fn line_of(text: &str, key: &str) -> usize {
    text.lines().position(|l| l.starts_with(key)).expect(key) + 1
}

#[test]
fn a_secret_setting_in_error_is_reported_at_its_own_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = secret_files_config(tmp.path());
    let original = std::fs::read_to_string(&config).unwrap();
    #[cfg(unix)]
    for f in ["bind.pw", "engine.token"] {
        chmod(&tmp.path().join(f), 0o600);
    }
    // An inline secret (refused by the rules, never quoted) and an unset variable (found when
    // the connector is opened): each at its key's line, not at its `[[connector]]`.
    for (from, to, key, shows) in [
        (
            r#"token = "file:engine.token""#,
            r#"token = "hunter2-inline""#,
            "token = ",
            "never the secret itself",
        ),
        (
            r#"bind_password = "file:bind.pw""#,
            r#"bind_password = "env:IDSYNC_TEST_UNSET_24B""#,
            "bind_password = ",
            "IDSYNC_TEST_UNSET_24B",
        ),
    ] {
        let text = original.replace(from, to);
        std::fs::write(&config, &text).unwrap();
        let line = line_of(&text, key);
        let out = idsync()
            .env_remove("IDSYNC_TEST_UNSET_24B")
            .arg("-c")
            .arg(&config)
            .arg("plan")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("idsync.toml:{line}:")) && err.contains(shows),
            "want line {line}: {err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        // The same under --json, as the object's line.
        let out = idsync()
            .env_remove("IDSYNC_TEST_UNSET_24B")
            .arg("-c")
            .arg(&config)
            .args(["plan", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["line"], line, "{v}");
        assert!(!out.stdout.windows(7).any(|w| w == b"hunter2"));
    }
}

#[test]
fn json_failures_are_one_json_error_object_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("idsync.toml");
    let text = "[[connector]]\nname = \"d\"\ntype = \"ldif\"\nrole = \"directory\"\npath = \"x.ldif\"\ndelta_pth = \"changes\"\n[[connector.object_type]]\nname = \"person\"\n";
    std::fs::write(&config, text).unwrap();
    let run = |args: &[&str]| {
        let out = idsync().arg("-c").arg(&config).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stderr.contains("error"),
            "{args:?}: plain-text error on stderr: {stderr}"
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.code(), v)
    };
    // A configuration error: where it is, as fields.
    let (code, v) = run(&["run", "full-cycle", "--json"]);
    assert_eq!(code, Some(1));
    let e = &v["error"];
    assert!(e["message"].as_str().unwrap().contains("delta_pth"), "{v}");
    assert_eq!(e["line"], 6, "{v}");
    assert_eq!(e["column"], 1, "{v}");
    assert!(e["file"].as_str().unwrap().ends_with("idsync.toml"), "{v}");
    assert_eq!(e["exit_code"], 1, "{v}");
    // A failure that is not the configuration's: message and causes, no place.
    std::fs::write(&config, text.replace("delta_pth = \"changes\"\n", "")).unwrap();
    let (code, v) = run(&["run", "bogus-step", "--json"]);
    assert_eq!(code, Some(1));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bogus-step"),
        "{v}"
    );
    assert!(
        v["error"]["causes"].is_array() && v["error"].get("line").is_none(),
        "{v}"
    );
    let (code, v) = run(&["show", "nobody", "--connector", "d", "--json"]);
    assert_eq!(code, Some(1), "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    // Bad usage too (exit 2).
    let (code, v) = run(&["run", "--json", "--no-such-flag"]);
    assert_eq!(code, Some(2));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--no-such-flag"),
        "{v}"
    );
    assert_eq!(v["error"]["exit_code"], 2, "{v}");
    // Without --json, the plain-text line as before.
    let out = idsync()
        .arg("-c")
        .arg(&config)
        .args(["run", "bogus-step"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_cycle_says_each_not_taken_note_once() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // A directory with a device (out of scope), and a target whose container is out of scope:
    // the target is imported twice in the cycle (before its export, and to confirm it).
    std::fs::write(
        d.join("src.ldif"),
        "dn: uid=ada,ou=People,dc=example,dc=test\nobjectClass: inetOrgPerson\nuid: ada\ncn: Ada\nsn: Lovelace\n\ndn: cn=printer,ou=Devices,dc=example,dc=test\nobjectClass: device\ncn: printer\n\n",
    )
    .unwrap();
    std::fs::write(
        d.join("tgt.ldif"),
        "dn: ou=People,dc=target,dc=test\nobjectClass: organizationalUnit\nou: People\n\n",
    )
    .unwrap();
    let mut config = String::from(
        "[[connector]]\nname = \"dir\"\ntype = \"ldif\"\nrole = \"directory\"\npath = \"src.ldif\"\nanchor = \"uid\"\n[[connector.object_type]]\nname = \"person\"\nobject_classes = [\"inetOrgPerson\"]\n\n[[connector]]\nname = \"tgt\"\ntype = \"ldif\"\nrole = \"target\"\npath = \"tgt.ldif\"\nanchor = \"dn\"\n[[connector.object_type]]\nname = \"person\"\nobject_classes = [\"inetOrgPerson\"]\n\n[[join]]\nconnector = \"tgt\"\ncs = \"uid\"\nmv = \"uid\"\n\n[[provision]]\nconnector = \"tgt\"\ndn = \"uid={uid},ou=People,dc=target,dc=test\"\nobject_classes = [\"inetOrgPerson\"]\n",
    );
    for a in ["uid", "cn", "sn"] {
        config.push_str(&format!(
            "\n[[import_flow]]\nconnector = \"dir\"\nmv = \"{a}\"\ncs = \"{a}\"\n\n[[export_flow]]\nconnector = \"tgt\"\ncs = \"{a}\"\nmv = \"{a}\"\n"
        ));
    }
    std::fs::write(d.join("idsync.toml"), config).unwrap();
    let out = idsync()
        .arg("-c")
        .arg(d.join("idsync.toml"))
        .args(["run", "full-cycle"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The target was imported twice (the confirming import), each counting its container...
    let imports = stdout
        .lines()
        .filter(|l| l.contains("full-import") && l.contains(" tgt "))
        .count();
    assert_eq!(imports, 2, "{stdout}");
    // ... and each note is said once.
    for note in [
        "full-import dir: 1 not taken: object class device not in scope",
        "full-import tgt: 1 not taken: object class organizationalUnit not in scope",
    ] {
        assert_eq!(stdout.matches(note).count(), 1, "{note}: {stdout}");
    }
}

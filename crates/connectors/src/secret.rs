//! Secrets by reference: a configuration names where a secret is (`env:NAME`, `file:PATH`),
//! never the secret itself, and the value never reaches a log.

use std::fmt;
use std::path::Path;

/// A secret value. Its `Debug` and `Display` print a placeholder, so a secret logged by mistake
/// shows nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it (a bind, a connection string).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Resolves `env:NAME` (an environment variable) or `file:PATH` (a file of one line, the value
/// without its trailing newline; relative to `base_dir`). Anything else is refused: a secret written into
/// the configuration is an error, not a convenience. Messages name the reference, never a value.
pub fn resolve_secret(reference: &str, base_dir: &Path) -> Result<Secret, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        return std::env::var(name)
            .map(Secret)
            .map_err(|_| format!("environment variable `{name}` (from `{reference}`) is not set"));
    }
    if let Some(path) = reference.strip_prefix("file:") {
        let p = base_dir.join(path);
        let cannot = |e: std::io::Error| format!("cannot read secret file {}: {e}", p.display());
        let mut file = std::fs::File::open(&p).map_err(cannot)?;
        // The mode of the file opened, not of the path looked at again.
        if let Some(mode) = file.metadata().ok().and_then(|m| readable_by_others(&m)) {
            tracing::warn!(
                "secret file {} is readable by group or others (mode {mode:04o}): make it \
                 readable by its owner only (chmod 600 {})",
                p.display(),
                p.display()
            );
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).map_err(cannot)?;
        // One value: a single line, its newline stripped. A file of more lines is not a secret
        // file (`file:/etc/shadow` would send every line); its content is never quoted.
        let value = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        if value.contains(['\n', '\r']) {
            return Err(format!(
                "secret file {} holds more than one line: a secret file holds one value, on a single line",
                p.display()
            ));
        }
        return Ok(Secret(value.to_owned()));
    }
    Err(
        "a secret must be a reference, `env:NAME` or `file:PATH`, never the secret itself"
            .to_owned(),
    )
}

/// The file's permission bits when its group or others may read it (a secret file must be
/// its owner's alone).
#[cfg(unix)]
pub fn readable_by_others(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
pub fn readable_by_others(_: &std::fs::Metadata) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_and_inline_secrets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bind.pw"), "s3cret\n").unwrap();
        let s = resolve_secret("file:bind.pw", dir.path()).unwrap();
        assert_eq!(s.expose(), "s3cret");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        std::env::set_var("IDSYNC_TEST_SECRET_X", "from-env");
        assert_eq!(
            resolve_secret("env:IDSYNC_TEST_SECRET_X", dir.path())
                .unwrap()
                .expose(),
            "from-env"
        );
        let e = resolve_secret("hunter2", dir.path()).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(resolve_secret("env:IDSYNC_TEST_SECRET_UNSET", dir.path()).is_err());
    }

    #[test]
    fn a_secret_file_is_one_line_and_more_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        for (text, value) in [
            ("s3cret", "s3cret"),
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
        ] {
            std::fs::write(dir.path().join("one.pw"), text).unwrap();
            let s = resolve_secret("file:one.pw", dir.path()).unwrap();
            assert_eq!(s.expose(), value, "{text:?}");
        }
        for text in [
            "root:hash1:19000\ndaemon:hash2:19000\n",
            "s3cret\n\n",
            "s3cret\rsecond",
        ] {
            std::fs::write(dir.path().join("shadow"), text).unwrap();
            let e = resolve_secret("file:shadow", dir.path()).unwrap_err();
            assert!(
                e.contains("shadow") && e.contains("more than one line"),
                "{e}"
            );
            for part in ["root:hash1", "daemon:hash2", "s3cret", "second"] {
                assert!(!e.contains(part), "the message quotes the file: {e}");
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_readable_by_group_or_others_is_told_apart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bind.pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        for (mode, loose) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let meta = std::fs::metadata(&p).unwrap();
            assert_eq!(readable_by_others(&meta).is_some(), loose, "{mode:o}");
        }
    }
}

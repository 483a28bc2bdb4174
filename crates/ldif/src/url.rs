//! Resolution of `attr:< URL` values. This is the only way the codec touches
//! anything outside its input, and the caller picks how (or whether) it
//! happens: an LDIF file from an untrusted source could otherwise name
//! `file:///etc/shadow` and have it copied into a directory entry (RFC 2849,
//! Security Considerations).

use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest file [`FileUrlResolver`] reads, the same cap as a logical
/// line, so that a URL naming `/dev/zero` or a huge file cannot exhaust
/// memory.
pub const MAX_URL_VALUE_LEN: usize = crate::reader::DEFAULT_MAX_LINE_LEN;

/// Resolves the URL of an `attr:< URL` value to the value's bytes.
///
/// The error is a human-readable reason; the reader adds the line number and
/// the attribute name. Any `FnMut(&str) -> Result<Vec<u8>, String>` closure
/// that is `Send` is a resolver too.
pub trait UrlResolver: Send {
    fn resolve(&mut self, url: &str) -> std::result::Result<Vec<u8>, String>;
}

impl<F> UrlResolver for F
where
    F: FnMut(&str) -> std::result::Result<Vec<u8>, String> + Send,
{
    fn resolve(&mut self, url: &str) -> std::result::Result<Vec<u8>, String> {
        self(url)
    }
}

/// Refuses every URL value; the choice for input that is not trusted.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUrlResolver;

impl UrlResolver for NoUrlResolver {
    fn resolve(&mut self, _url: &str) -> std::result::Result<Vec<u8>, String> {
        Err("URL values are not allowed here".to_string())
    }
}

/// Reads `file:` URLs from the local file system.
///
/// Accepted forms, following OpenLDAP's `ldif_fetch_url`:
/// * `file:///abs/path` (the RFC 2849 form), `file://localhost/abs/path`
///   and `file:/abs/path`: an absolute path;
/// * `file:rel/path` (no slash after `file:`): a path relative to
///   `base_dir`, and an error when `base_dir` is `None`.
///
/// `%XX` escapes in the path are decoded. Any other scheme, and a `file:`
/// URL naming another host (`file://server/x`, which is also what
/// `file://photo.jpg` means), is refused with a reason. `base_dir` is only
/// where relative paths start from; it does not confine absolute paths.
/// Files larger than [`MAX_URL_VALUE_LEN`] are refused.
#[derive(Debug, Clone, Default)]
pub struct FileUrlResolver {
    pub base_dir: Option<PathBuf>,
}

impl FileUrlResolver {
    /// The local path a `file:` URL names, without reading it.
    pub fn url_to_path(&self, url: &str) -> std::result::Result<PathBuf, String> {
        let rest = strip_prefix_ignore_case(url, "file:")
            .ok_or_else(|| format!("unsupported URL '{url}': only file: URLs are supported"))?;
        let path_part = if let Some(after) = rest.strip_prefix("//") {
            let (host, path) = match after.find('/') {
                Some(slash) => after.split_at(slash),
                None => (after, ""),
            };
            if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) || path.is_empty() {
                return Err(format!(
                    "file URL '{url}' names host '{host}'; only local files are supported \
                     (write file:///absolute/path, or file:relative/path with a base directory)"
                ));
            }
            path
        } else {
            rest
        };
        if path_part.is_empty() {
            return Err(format!("file URL '{url}' has no path"));
        }
        let decoded = percent_decode(path_part)
            .ok_or_else(|| format!("file URL '{url}' has an invalid %-escape"))?;
        let path = bytes_to_path(decoded)
            .ok_or_else(|| format!("file URL '{url}' does not decode to a valid path"))?;
        if path.is_absolute() || path_part.starts_with('/') {
            return Ok(path);
        }
        match &self.base_dir {
            Some(base) => Ok(base.join(path)),
            None => Err(format!(
                "relative file URL '{url}' needs a base directory, and none was given"
            )),
        }
    }
}

impl UrlResolver for FileUrlResolver {
    fn resolve(&mut self, url: &str) -> std::result::Result<Vec<u8>, String> {
        let path = self.url_to_path(url)?;
        read_capped(&path, MAX_URL_VALUE_LEN)
    }
}

fn read_capped(path: &Path, cap: usize) -> std::result::Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    // Reading one byte past the cap tells "exactly at the cap" from "over it"
    // without trusting the file's reported size, which special files lack.
    file.take(cap as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > cap {
        return Err(format!(
            "{} is larger than {cap} bytes, the most a URL value may hold",
            path.display()
        ));
    }
    Ok(bytes)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_digit(*bytes.get(i + 1)?)?;
            let lo = hex_digit(*bytes.get(i + 2)?)?;
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(unix)]
fn bytes_to_path(bytes: Vec<u8>) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    if bytes.contains(&0) {
        return None;
    }
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

#[cfg(not(unix))]
fn bytes_to_path(bytes: Vec<u8>) -> Option<PathBuf> {
    String::from_utf8(bytes).ok().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(resolver: &FileUrlResolver, url: &str) -> std::result::Result<PathBuf, String> {
        resolver.url_to_path(url)
    }

    #[test]
    fn absolute_forms() {
        let r = FileUrlResolver::default();
        for url in [
            "file:///usr/local/photo.jpg",
            "FILE:///usr/local/photo.jpg",
            "file://localhost/usr/local/photo.jpg",
            "file:/usr/local/photo.jpg",
        ] {
            assert_eq!(
                path(&r, url),
                Ok(PathBuf::from("/usr/local/photo.jpg")),
                "{url}"
            );
        }
        assert_eq!(
            path(&r, "file:///tmp/with%20space"),
            Ok(PathBuf::from("/tmp/with space"))
        );
    }

    #[test]
    fn relative_needs_base_dir() {
        let none = FileUrlResolver::default();
        assert_eq!(
            path(&none, "file:photos/a.jpg"),
            Err(
                "relative file URL 'file:photos/a.jpg' needs a base directory, and none was given"
                    .to_string()
            )
        );
        let based = FileUrlResolver {
            base_dir: Some(PathBuf::from("/data")),
        };
        assert_eq!(
            path(&based, "file:photos/a.jpg"),
            Ok(PathBuf::from("/data/photos/a.jpg"))
        );
        assert_eq!(path(&based, "file:///etc/x"), Ok(PathBuf::from("/etc/x")));
    }

    #[test]
    fn refused_forms() {
        let r = FileUrlResolver::default();
        let err = path(&r, "http://example.com/x").unwrap_err();
        assert!(err.contains("only file: URLs are supported"), "{err}");
        let err = path(&r, "file://server/share/x").unwrap_err();
        assert!(err.contains("names host 'server'"), "{err}");
        let err = path(&r, "file://photo.jpg").unwrap_err();
        assert!(err.contains("names host 'photo.jpg'"), "{err}");
        assert!(path(&r, "file:").is_err());
        assert!(path(&r, "file:///bad%zz").is_err());
        assert!(path(&r, "file:///nul%00").is_err());
        assert!(path(&r, "fi").is_err());
        assert!(path(&r, "f\u{e9}le:x").is_err());
    }

    #[test]
    fn reads_a_file_and_refuses_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("idsync-ldif-url-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let file = dir.join("value.bin");
        std::fs::write(&file, b"\x00binary\xff").expect("write temp file");
        let mut r = FileUrlResolver {
            base_dir: Some(dir.clone()),
        };
        assert_eq!(r.resolve("file:value.bin"), Ok(b"\x00binary\xff".to_vec()));
        let abs = format!("file://{}", file.display());
        assert_eq!(r.resolve(&abs), Ok(b"\x00binary\xff".to_vec()));
        let err = r.resolve("file:missing.bin").unwrap_err();
        assert!(err.starts_with("cannot open "), "{err}");
        assert!(read_capped(&file, 3)
            .unwrap_err()
            .contains("larger than 3 bytes"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn no_resolver_refuses() {
        assert_eq!(
            NoUrlResolver.resolve("file:///x"),
            Err("URL values are not allowed here".to_string())
        );
    }
}

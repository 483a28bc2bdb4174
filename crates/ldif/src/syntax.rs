//! Lexical rules of RFC 2849 shared by the reader and the writer, so that
//! what one accepts the other produces.

/// Whether `value` must be written base64-encoded (`name:: ...`) under the
/// RFC 2849 `SAFE-STRING` rules: it is not a `SAFE-STRING` when it holds
/// NUL, LF, CR or a byte above 127, or starts with a space, `:` or `<`; and
/// note 8 of the RFC adds values that end with a space.
///
/// The empty value is a `SAFE-STRING`.
pub fn needs_base64(value: &[u8]) -> bool {
    let Some((&first, _)) = value.split_first() else {
        return false;
    };
    if matches!(first, b' ' | b':' | b'<') {
        return true;
    }
    if value.last() == Some(&b' ') {
        return true;
    }
    value
        .iter()
        .any(|&b| b == 0 || b == b'\n' || b == b'\r' || b > 127)
}

/// The writer's stricter rule: besides [`needs_base64`], any other ASCII
/// control character is encoded too, because tools such as python-ldap
/// strip leading whitespace of plain values (tabs included), and terminals
/// and editors mangle control characters.
pub(crate) fn writer_needs_base64(value: &[u8]) -> bool {
    needs_base64(value) || value.iter().any(|&b| b < 0x20 || b == 0x7f)
}

/// Whether `oid` is a numeric OID: digits with single dots between them
/// (`1.2.840.113556.1.4.805`).
///
/// RFC 2849's grammar allows only one dot, an erratum; RFC 4512's
/// `numericoid` allows any number, which is what is accepted here.
pub fn is_valid_oid(oid: &str) -> bool {
    !oid.is_empty()
        && oid
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is an RFC 2849 `AttributeDescription`: an attribute type
/// (a letter then letters, digits and hyphens, or a numeric OID) followed by
/// zero or more `;option`s made of letters, digits and hyphens.
pub fn is_valid_attribute_description(name: &str) -> bool {
    let mut parts = name.split(';');
    let Some(ty) = parts.next() else {
        return false;
    };
    let type_ok = match ty.as_bytes().first() {
        Some(b) if b.is_ascii_alphabetic() => {
            ty.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }
        Some(b) if b.is_ascii_digit() => is_valid_oid(ty),
        _ => false,
    };
    type_ok
        && parts.all(|opt| {
            !opt.is_empty() && opt.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Renders input bytes for an error message: lossy UTF-8, control
/// characters escaped, cut to a readable length so a hostile 64 MiB line
/// does not end up in a log.
pub(crate) fn show(bytes: &[u8]) -> String {
    const MAX_CHARS: usize = 60;
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (count, ch) in text.chars().enumerate() {
        if count == MAX_CHARS {
            out.push_str("...");
            break;
        }
        if ch.is_control() {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_strings_need_no_base64() {
        assert!(!needs_base64(b""));
        assert!(!needs_base64(b"Barbara Jensen"));
        assert!(!needs_base64(b"a:b<c"));
        assert!(!needs_base64(b"#not a comment"));
        assert!(!needs_base64(b"tab\tinside"));
        assert!(!needs_base64(b"-"));
    }

    #[test]
    fn unsafe_strings_need_base64() {
        assert!(needs_base64(b" leading space"));
        assert!(needs_base64(b":colon"));
        assert!(needs_base64(b"<less"));
        assert!(needs_base64(b"trailing space "));
        assert!(needs_base64(b"nul\0"));
        assert!(needs_base64(b"line\nfeed"));
        assert!(needs_base64(b"carriage\rreturn"));
        assert!(needs_base64("caf\u{e9}".as_bytes()));
        assert!(needs_base64(b" "));
    }

    #[test]
    fn writer_is_stricter_about_control_characters() {
        assert!(!needs_base64(b"\ttab"));
        assert!(writer_needs_base64(b"\ttab"));
        assert!(writer_needs_base64(b"bell\x07"));
        assert!(writer_needs_base64(b"del\x7f"));
        assert!(!writer_needs_base64(b"plain text: fine"));
    }

    #[test]
    fn attribute_descriptions() {
        for ok in [
            "cn",
            "CN",
            "objectClass",
            "cn;lang-fr",
            "ou;lang-ja;phonetic",
            "x-custom-1",
            "2.5.4.3",
            "2.5.4.3;binary",
            "userCertificate;binary",
            "a",
        ] {
            assert!(is_valid_attribute_description(ok), "{ok}");
        }
        for bad in [
            "",
            "-cn",
            "1cn",
            "cn;",
            ";x",
            "cn;;x",
            "c n",
            "cn:",
            "2..5",
            "2.5.",
            "_x",
            "cn_x",
            "caf\u{e9}",
            "cn;a_b",
        ] {
            assert!(!is_valid_attribute_description(bad), "{bad}");
        }
    }

    #[test]
    fn oids() {
        assert!(is_valid_oid("1"));
        assert!(is_valid_oid("1.2.840.113556.1.4.805"));
        assert!(!is_valid_oid(""));
        assert!(!is_valid_oid("1."));
        assert!(!is_valid_oid(".1"));
        assert!(!is_valid_oid("1.a"));
    }

    #[test]
    fn show_escapes_and_truncates() {
        assert_eq!(show(b"a\nb"), "a\\nb");
        assert_eq!(show(b"\xff"), "\u{fffd}");
        let long = vec![b'x'; 100];
        assert_eq!(show(&long), format!("{}...", "x".repeat(60)));
    }
}

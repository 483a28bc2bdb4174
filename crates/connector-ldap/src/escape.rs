//! RFC 4514 (DN) and RFC 4515 (filter) escaping, and the little DN parsing the connector needs
//! (splitting off the first RDN). Every value that reaches the server in a DN or a filter goes
//! through here.

/// Escapes an attribute value for use in an RDN (RFC 4514, section 2.4): `"+,;<>\` and NUL
/// anywhere, `#` or a space at the start, a space at the end. Non-ASCII stays as UTF-8.
pub fn escape_rdn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

/// Escapes an assertion value for a filter (RFC 4515, section 3): `*`, `(`, `)`, `\` and NUL
/// become `\2a`, `\28`, `\29`, `\5c`, `\00`. UTF-8 passes as is.
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// An equality filter `(attr=value)` with the value escaped.
pub fn eq_filter(attr: &str, value: &str) -> String {
    format!("({attr}={})", escape_filter_value(value))
}

/// Splits a DN into its first RDN and the parent DN, honouring backslash escapes (`\,`, `\2C`)
/// and quoted values. `None` for an empty DN.
pub fn split_first_rdn(dn: &str) -> Option<(&str, &str)> {
    let dn = dn.trim();
    if dn.is_empty() {
        return None;
    }
    let bytes = dn.as_bytes();
    let mut i = 0;
    let mut quoted = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'"' => quoted = !quoted,
            b',' | b';' if !quoted => return Some((&dn[..i], dn[i + 1..].trim_start())),
            _ => {}
        }
        i += 1;
    }
    Some((dn, ""))
}

/// Unescapes an RDN value (RFC 4514): `\X` for a special character and `\HH` hex pairs (which
/// may spell UTF-8 bytes). Returns `None` when the escapes do not make valid UTF-8.
pub fn unescape_rdn_value(v: &str) -> Option<String> {
    let v = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v);
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), b.get(i + 2).and_then(|&c| hex(c))) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
            out.push(b[i + 1]);
            i += 2;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The first RDN of a DN as (attribute, unescaped value), for single-valued RDNs.
pub fn first_rdn_pair(dn: &str) -> Option<(String, String)> {
    let (rdn, _) = split_first_rdn(dn)?;
    let (attr, value) = rdn.split_once('=')?;
    Some((attr.trim().to_owned(), unescape_rdn_value(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdn_values_escape_and_unescape() {
        for v in [
            "plain",
            "Smith, John",
            "a+b",
            "#hash",
            " lead",
            "trail ",
            "quo\"te",
            "back\\slash",
            "nul\0byte",
            "<angle>;semi",
            "Zoé Müller 日本",
        ] {
            let e = escape_rdn_value(v);
            assert_eq!(unescape_rdn_value(&e).as_deref(), Some(v), "{e}");
            let dn = format!("cn={e},ou=People,dc=x");
            let (rdn, parent) = split_first_rdn(&dn).unwrap();
            assert_eq!(rdn, format!("cn={e}"));
            assert_eq!(parent, "ou=People,dc=x");
        }
        assert_eq!(unescape_rdn_value(r"caf\C3\A9").as_deref(), Some("café"));
    }

    #[test]
    fn filter_values_escape() {
        assert_eq!(eq_filter("cn", "a*(b)\\\0"), r"(cn=a\2a\28b\29\5c\00)");
        assert!(ldap3::parse_filter(eq_filter("cn", "*)(uid=*")).is_ok());
    }
}

//! Active Directory's own protocol pieces, beside RFC LDAP: the DirSync control
//! (1.2.840.113556.1.4.841), objectGUID's text form, ranged attribute retrieval
//! (`member;range=0-1499`) and the `userAccountControl` flags. No I/O here: the LDAP connector's
//! AD profile uses these on the wire.

pub mod photo;

use ldap3::asn1::{
    parse_tag, parse_uint, write, ASNTag, Integer, OctetString, Sequence, StructureTag, Tag,
    TagClass, Types,
};
use ldap3::controls::RawControl;

pub const DIRSYNC_OID: &str = "1.2.840.113556.1.4.841";
/// Only the object's changed attributes are returned, and the caller need not hold the
/// replication right on every object (LDAP_DIRSYNC_OBJECT_SECURITY).
pub const DIRSYNC_OBJECT_SECURITY: i64 = 0x1;
/// Linked attributes (member) come back as the values added and removed, not the whole list
/// (LDAP_DIRSYNC_INCREMENTAL_VALUES).
pub const DIRSYNC_INCREMENTAL_VALUES: i64 = 0x8000_0000;
/// Return parents before children (LDAP_DIRSYNC_ANCESTORS_FIRST_ORDER).
pub const DIRSYNC_ANCESTORS_FIRST: i64 = 0x800;
/// The show-deleted control, so tombstones can be read.
pub const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";

/// The DirSync request control: flags, the most bytes per answer, and the cookie of the last
/// answer (empty the first time: everything).
pub fn dirsync_request(flags: i64, max_bytes: i64, cookie: &[u8]) -> RawControl {
    // The flags are an unsigned 32-bit field that AD encodes as a signed INTEGER.
    let flags = flags as u32 as i32 as i64;
    let value = Tag::Sequence(Sequence {
        inner: vec![
            Tag::Integer(Integer {
                inner: flags,
                ..Default::default()
            }),
            Tag::Integer(Integer {
                inner: max_bytes,
                ..Default::default()
            }),
            Tag::OctetString(OctetString {
                inner: cookie.to_vec(),
                ..Default::default()
            }),
        ],
        ..Default::default()
    })
    .into_structure();
    let mut buf = bytes::BytesMut::new();
    let _ = write::encode_into(&mut buf, value);
    RawControl {
        ctype: DIRSYNC_OID.to_owned(),
        crit: true,
        val: Some(buf.to_vec()),
    }
}

/// The DirSync response: whether more changes wait, and the cookie to send next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSyncResponse {
    pub more: bool,
    pub cookie: Vec<u8>,
}

fn int_of(t: StructureTag) -> Option<u64> {
    let bytes = t
        .match_class(TagClass::Universal)?
        .match_id(Types::Integer as u64)?
        .expect_primitive()?;
    parse_uint(&bytes).ok().map(|(_, v)| v)
}

/// Decodes a DirSync response control's value; `None` when it is not one (a server's malformed
/// answer is an error for the caller to report, never a panic).
pub fn parse_dirsync_response(val: &[u8]) -> Option<DirSyncResponse> {
    let (_, tag) = parse_tag(val).ok()?;
    let mut parts = tag.expect_constructed()?.into_iter();
    let more = int_of(parts.next()?)? != 0;
    let _unused = parts.next()?;
    let cookie = parts
        .next()?
        .match_class(TagClass::Universal)?
        .match_id(Types::OctetString as u64)?
        .expect_primitive()?;
    Some(DirSyncResponse { more, cookie })
}

/// objectGUID's usual text form: the first three groups little-endian, as Windows shows it.
pub fn guid_text(raw: &[u8]) -> Option<String> {
    let b: &[u8; 16] = raw.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15]
    ))
}

/// The raw 16 bytes of a GUID in its text form (the inverse of [`guid_text`]).
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut v = [0u8; 16];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some([
        v[3], v[2], v[1], v[0], v[5], v[4], v[7], v[6], v[8], v[9], v[10], v[11], v[12], v[13],
        v[14], v[15],
    ])
}

/// A filter that matches one object by its GUID (`(objectGUID=\xx…)`, RFC 4515 escaped bytes).
pub fn guid_filter(text: &str) -> Option<String> {
    let b = guid_bytes(text)?;
    let mut f = String::from("(objectGUID=");
    for x in b {
        f.push_str(&format!("\\{x:02x}"));
    }
    f.push(')');
    Some(f)
}

/// A ranged attribute description: `member;range=0-1499` → (`member`, 0, Some(1499));
/// `member;range=1500-*` → (`member`, 1500, None), the last range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub attribute: String,
    pub start: u64,
    pub end: Option<u64>,
}

pub fn parse_range(description: &str) -> Option<Range> {
    let (attribute, options) = description.split_once(';')?;
    let spec = options.split(';').find_map(|o| {
        o.strip_prefix("range=")
            .or_else(|| o.strip_prefix("Range="))
    })?;
    let (s, e) = spec.split_once('-')?;
    Some(Range {
        attribute: attribute.to_owned(),
        start: s.parse().ok()?,
        end: if e == "*" {
            None
        } else {
            Some(e.parse().ok()?)
        },
    })
}

/// What a DirSync answer with incremental values means for a linked attribute: in AD's
/// incremental form, `member;range=1-1` carries values added and `member;range=0-0` values
/// removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incremental {
    Added,
    Removed,
}

pub fn incremental(description: &str) -> Option<(String, Incremental)> {
    let r = parse_range(description)?;
    match (r.start, r.end) {
        (1, Some(1)) => Some((r.attribute, Incremental::Added)),
        (0, Some(0)) => Some((r.attribute, Incremental::Removed)),
        _ => None,
    }
}

/// `userAccountControl` flags idsync exposes.
pub const UAC_ACCOUNTDISABLE: u32 = 0x2;
pub const UAC_NORMAL_ACCOUNT: u32 = 0x200;
pub const UAC_WORKSTATION_TRUST_ACCOUNT: u32 = 0x1000;
pub const UAC_SERVER_TRUST_ACCOUNT: u32 = 0x2000;

/// Whether a `userAccountControl` value says the account is disabled.
pub fn uac_disabled(value: &str) -> Option<bool> {
    let v: i64 = value.trim().parse().ok()?;
    Some(v as u32 & UAC_ACCOUNTDISABLE != 0)
}

/// The new `userAccountControl` with the disabled bit set or cleared.
pub fn uac_with_disabled(value: &str, disabled: bool) -> Option<String> {
    let v = value.trim().parse::<i64>().ok()? as u32;
    let v = if disabled {
        v | UAC_ACCOUNTDISABLE
    } else {
        v & !UAC_ACCOUNTDISABLE
    };
    Some(v.to_string())
}

/// AD stores text as UTF-16LE in quotes for `unicodePwd`; idsync never exports passwords, but
/// recognizes the attribute so it is never read or written by mistake.
pub fn is_secret_attribute(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "unicodepwd"
            | "userpassword"
            | "dbcspwd"
            | "ntpwdhistory"
            | "lmpwdhistory"
            | "supplementalcredentials"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_round_trips_in_windows_order() {
        let raw: Vec<u8> = (0u8..16).collect();
        let t = guid_text(&raw).unwrap();
        assert_eq!(t, "03020100-0504-0706-0809-0a0b0c0d0e0f");
        assert_eq!(guid_bytes(&t).unwrap().to_vec(), raw);
        assert_eq!(
            guid_filter(&t).unwrap(),
            "(objectGUID=\\00\\01\\02\\03\\04\\05\\06\\07\\08\\09\\0a\\0b\\0c\\0d\\0e\\0f)"
        );
        assert_eq!(guid_text(&raw[..15]), None);
        assert_eq!(guid_bytes("not-a-guid"), None);
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(
            parse_range("member;range=0-1499"),
            Some(Range {
                attribute: "member".into(),
                start: 0,
                end: Some(1499)
            })
        );
        assert_eq!(parse_range("member;range=1500-*").unwrap().end, None);
        assert_eq!(parse_range("member"), None);
        assert_eq!(parse_range("member;range=x-1"), None);
        assert_eq!(
            incremental("member;range=1-1"),
            Some(("member".into(), Incremental::Added))
        );
        assert_eq!(
            incremental("member;range=0-0"),
            Some(("member".into(), Incremental::Removed))
        );
    }

    #[test]
    fn dirsync_control_encodes_and_response_decodes() {
        let c = dirsync_request(
            DIRSYNC_OBJECT_SECURITY | DIRSYNC_INCREMENTAL_VALUES,
            1 << 20,
            b"ck",
        );
        assert_eq!(c.ctype, DIRSYNC_OID);
        assert!(c.crit);
        let v = c.val.unwrap();
        // SEQUENCE { INTEGER flags (negative: high bit), INTEGER max, OCTET STRING "ck" }
        assert_eq!(v[0], 0x30);
        assert!(v.ends_with(&[0x04, 0x02, b'c', b'k']));
        // A response has the same shape: more, unused, cookie.
        let r = Tag::Sequence(Sequence {
            inner: vec![
                Tag::Integer(Integer {
                    inner: 1,
                    ..Default::default()
                }),
                Tag::Integer(Integer {
                    inner: 0,
                    ..Default::default()
                }),
                Tag::OctetString(OctetString {
                    inner: b"next".to_vec(),
                    ..Default::default()
                }),
            ],
            ..Default::default()
        })
        .into_structure();
        let mut buf = bytes::BytesMut::new();
        write::encode_into(&mut buf, r).unwrap();
        assert_eq!(
            parse_dirsync_response(&buf),
            Some(DirSyncResponse {
                more: true,
                cookie: b"next".to_vec()
            })
        );
        assert_eq!(parse_dirsync_response(b"\x30\x01"), None);
        assert_eq!(parse_dirsync_response(b""), None);
    }

    #[test]
    fn account_control_bits() {
        assert_eq!(uac_disabled("514"), Some(true));
        assert_eq!(uac_disabled("512"), Some(false));
        assert_eq!(uac_with_disabled("512", true).as_deref(), Some("514"));
        assert_eq!(uac_with_disabled("514", false).as_deref(), Some("512"));
        assert_eq!(uac_disabled("x"), None);
    }
}

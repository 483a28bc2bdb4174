//! The streaming LDIF reader.
//!
//! Reading happens in three layers: physical lines (bytes up to LF, with a
//! CR before it dropped), logical lines (a physical line plus the
//! continuation lines folded onto it, comments dropped), and records (the
//! logical lines between blank lines). Only one record's logical lines are
//! held at a time, so memory stays bounded by the largest record rather
//! than the input.

use std::io::{self, BufRead, Read};

use base64::Engine as _;

use crate::error::{Error, Location, Result};
use crate::syntax::{is_valid_attribute_description, is_valid_oid, show};
use crate::url::UrlResolver;
use crate::{Attr, ChangeKind, Control, Located, ModOp, Modification, Record};

/// The longest logical line (after unfolding) the reader accepts: 64 MiB.
/// A longer one is an error, so hostile input cannot exhaust memory.
pub const DEFAULT_MAX_LINE_LEN: usize = 64 * 1024 * 1024;

/// Base64 as RFC 2045 defines it, but lenient about missing `=` padding,
/// which some producers leave out and which carries no information.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Says whether an attribute type holds bytes rather than text.
type IsBinary = dyn Fn(&str) -> bool + Send;

/// Reads LDIF records one at a time from a buffered input.
///
/// Iterating yields `Ok(Located { line, record })` for each record, with the
/// line of its `dn:`, or an `Err` naming the line and the reason. After a
/// syntax error the reader resumes with the next record; after an I/O error,
/// a line over the length limit or an unsupported `version:` it yields
/// nothing more.
pub struct Reader<R: BufRead> {
    input: R,
    source_name: Option<String>,
    resolver: Box<dyn UrlResolver>,
    max_line_len: usize,
    /// Physical lines consumed so far, so the next one is `line + 1`.
    line: usize,
    /// Whether the leading `version:` line has been looked for.
    version_checked: bool,
    /// Whether the file holds change records, once the first record said so.
    holds_changes: Option<bool>,
    /// Set after an error the reader cannot resume from.
    done: bool,
    /// When set, which attributes hold bytes: every other attribute's values must be UTF-8
    /// text ([`Reader::with_text_check`]).
    is_binary: Option<Box<IsBinary>>,
}

/// One logical line: folded lines joined, line ending removed.
struct Line {
    /// 1-based number of its first physical line.
    number: usize,
    text: Vec<u8>,
}

enum Logical {
    Eof,
    Blank,
    Text(Line),
}

/// How a line's value is given, after `name:`.
enum Spec<'a> {
    /// `name: value` (leading spaces already dropped).
    Plain(&'a [u8]),
    /// `name:: base64` (surrounding spaces already dropped).
    Base64(&'a [u8]),
    /// `name:< url` (surrounding spaces already dropped).
    Url(&'a [u8]),
}

impl<R: BufRead> Reader<R> {
    /// A reader of `input`. `source_name` (usually the file name, or "" for
    /// none) prefixes error messages; `resolver` resolves `attr:< URL`
    /// values.
    pub fn new(input: R, source_name: impl Into<String>, resolver: Box<dyn UrlResolver>) -> Self {
        let source_name = source_name.into();
        Reader {
            input,
            source_name: (!source_name.is_empty()).then_some(source_name),
            resolver,
            max_line_len: DEFAULT_MAX_LINE_LEN,
            line: 0,
            version_checked: false,
            holds_changes: None,
            done: false,
            is_binary: None,
        }
    }

    /// Makes every attribute value text unless `is_binary` says the attribute holds bytes: a
    /// value of any other attribute that is not valid UTF-8, whether written plain, in base64 or
    /// behind a URL, is then an error naming its line ("invalid UTF-8 in value of attribute
    /// 'cn'"). `is_binary` gets the attribute type without its options; a `;binary` option
    /// always marks bytes. Without this check values are bytes, as RFC 2849 says.
    pub fn with_text_check(mut self, is_binary: impl Fn(&str) -> bool + Send + 'static) -> Self {
        self.is_binary = Some(Box::new(is_binary));
        self
    }

    /// Sets the longest logical line accepted, in bytes (default
    /// [`DEFAULT_MAX_LINE_LEN`]).
    pub fn with_max_line_len(mut self, max: usize) -> Self {
        self.max_line_len = max;
        self
    }

    /// Gives back the underlying input.
    pub fn into_inner(self) -> R {
        self.input
    }

    fn error(&self, line: usize, reason: impl Into<String>) -> Error {
        Error::Syntax {
            at: Location {
                source_name: self.source_name.clone(),
                line,
            },
            reason: reason.into(),
        }
    }

    fn io_error(&mut self, source: io::Error) -> Error {
        // An input that failed once cannot be trusted to be at a line
        // boundary, so the reader stops here.
        self.done = true;
        Error::Io {
            at: Location {
                source_name: self.source_name.clone(),
                line: self.line + 1,
            },
            source,
        }
    }

    // ----- physical and logical lines -----

    /// The first byte of the next physical line, without consuming it.
    fn peek_byte(&mut self) -> Result<Option<u8>> {
        loop {
            match self.input.fill_buf() {
                Ok(buf) => return Ok(buf.first().copied()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(e)),
            }
        }
    }

    /// Appends the next physical line to `buf` without its line ending,
    /// dropping its first byte when it is a continuation line. Never lets
    /// `buf` grow much past the line length limit. `first_line` is the
    /// number of the logical line's first physical line, for the error.
    fn read_physical(
        &mut self,
        buf: &mut Vec<u8>,
        continuation: bool,
        first_line: usize,
    ) -> Result<()> {
        let start = buf.len();
        // Room for the rest of the allowed length plus the continuation
        // space and a CR LF; reading one byte more than that is how an
        // over-long line is detected without storing it.
        let budget = self.max_line_len.saturating_sub(start).saturating_add(3);
        let read = (&mut self.input).take(budget as u64).read_until(b'\n', buf);
        if let Err(e) = read {
            return Err(self.io_error(e));
        }
        self.line += 1;
        if buf.len() > start && buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.len() > start && buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        if continuation && buf.len() > start {
            buf.remove(start);
        }
        if buf.len() > self.max_line_len {
            self.done = true;
            return Err(self.error(
                first_line,
                format!(
                    "line is longer than {} bytes after unfolding",
                    self.max_line_len
                ),
            ));
        }
        Ok(())
    }

    /// The next logical line, skipping comments (folded ones included).
    fn next_logical(&mut self) -> Result<Logical> {
        loop {
            let Some(first) = self.peek_byte()? else {
                return Ok(Logical::Eof);
            };
            let number = self.line + 1;
            let mut text = Vec::new();
            self.read_physical(&mut text, false, number)?;
            if first == b' ' {
                // Continuation lines are folded onto the line before them
                // while that line is read, so one seen here follows a blank
                // line or starts the input. Its own continuations are
                // dropped with it so that reading can resume after it.
                while self.peek_byte()? == Some(b' ') {
                    text.clear();
                    let next = self.line + 1;
                    self.read_physical(&mut text, true, next)?;
                }
                return Err(self.error(
                    number,
                    "continuation line (starting with a space) has no line before it to continue",
                ));
            }
            if text.is_empty() {
                return Ok(Logical::Blank);
            }
            while self.peek_byte()? == Some(b' ') {
                self.read_physical(&mut text, true, number)?;
            }
            if text.first() == Some(&b'#') {
                continue;
            }
            return Ok(Logical::Text(Line { number, text }));
        }
    }

    /// The logical lines of the next record, or `None` at the end.
    fn next_block(&mut self) -> Result<Option<Vec<Line>>> {
        let mut lines = Vec::new();
        loop {
            match self.next_logical()? {
                Logical::Eof => break,
                Logical::Blank if lines.is_empty() => continue,
                Logical::Blank => break,
                Logical::Text(line) => lines.push(line),
            }
        }
        Ok((!lines.is_empty()).then_some(lines))
    }

    /// Checks a `version:` line; only version 1 exists.
    fn check_version(&mut self, line: &Line) -> Result<()> {
        let (name, spec) = self.split(line)?;
        let value = self.text_value(line, name, spec, "version")?;
        if value.trim_end_matches(' ') == "1" {
            Ok(())
        } else {
            Err(self.error(
                line.number,
                format!(
                    "unsupported LDIF version '{}' (only version 1 is supported)",
                    show(value.as_bytes())
                ),
            ))
        }
    }

    fn next_record(&mut self) -> Option<Result<Located<Record>>> {
        loop {
            let mut lines = match self.next_block() {
                Ok(Some(lines)) => lines,
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => return Some(Err(e)),
            };
            if !self.version_checked {
                self.version_checked = true;
                if lines
                    .first()
                    .is_some_and(|l| keyword_is(&l.text, "version"))
                {
                    let version_line = lines.remove(0);
                    if let Err(e) = self.check_version(&version_line) {
                        // A file of another (or an unreadable) version may
                        // mean anything, so nothing after it is interpreted.
                        self.done = true;
                        return Some(Err(e));
                    }
                    if lines.is_empty() {
                        continue;
                    }
                }
            }
            return Some(self.parse_record(lines));
        }
    }

    // ----- line syntax -----

    /// Splits a logical line into its attribute description and value spec.
    fn split<'a>(&self, line: &'a Line) -> Result<(&'a str, Spec<'a>)> {
        let text = &line.text;
        let Some(colon) = text.iter().position(|&b| b == b':') else {
            return Err(self.error(
                line.number,
                format!(
                    "line has no ':' (expected 'attribute: value'): '{}'",
                    show(text)
                ),
            ));
        };
        let name_bytes = &text[..colon];
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| self.error(line.number, "invalid UTF-8 in attribute name"))?;
        if !is_valid_attribute_description(name) {
            return Err(self.error(
                line.number,
                format!("invalid attribute name '{}'", show(name_bytes)),
            ));
        }
        Ok((name, value_spec(&text[colon + 1..])))
    }

    /// Decodes a value given in any of the three forms. `what` names the
    /// value's owner for error messages ("attribute 'cn'").
    fn decode(&mut self, line: &Line, spec: Spec<'_>, what: &str) -> Result<Vec<u8>> {
        match spec {
            Spec::Plain(bytes) => Ok(bytes.to_vec()),
            Spec::Base64(encoded) => BASE64
                .decode(encoded)
                .map_err(|_| self.error(line.number, format!("invalid base64 in value of {what}"))),
            Spec::Url(url) => {
                let url = std::str::from_utf8(url).map_err(|_| {
                    self.error(line.number, format!("invalid UTF-8 in URL of {what}"))
                })?;
                if url.is_empty() {
                    return Err(self.error(line.number, format!("empty URL in value of {what}")));
                }
                self.resolver.resolve(url).map_err(|reason| {
                    self.error(
                        line.number,
                        format!(
                            "cannot resolve URL '{}' in value of {what}: {reason}",
                            show(url.as_bytes())
                        ),
                    )
                })
            }
        }
    }

    /// An attribute value line's value.
    fn attr_value(&mut self, line: &Line, name: &str, spec: Spec<'_>) -> Result<Vec<u8>> {
        let what = format!("attribute '{name}'");
        let value = self.decode(line, spec, &what)?;
        if let Some(is_binary) = &self.is_binary {
            let (base, binary_option) = match name.split_once(';') {
                Some((base, options)) => (
                    base,
                    options.split(';').any(|o| o.eq_ignore_ascii_case("binary")),
                ),
                None => (name, false),
            };
            if !binary_option && !is_binary(base) && std::str::from_utf8(&value).is_err() {
                return Err(self.error(line.number, format!("invalid UTF-8 in value of {what}")));
            }
        }
        Ok(value)
    }

    /// A value that must be UTF-8 text (dn, newrdn, ...): plain or base64,
    /// never a URL.
    fn text_value(
        &mut self,
        line: &Line,
        name: &str,
        spec: Spec<'_>,
        what: &str,
    ) -> Result<String> {
        if let Spec::Url(_) = spec {
            return Err(self.error(
                line.number,
                format!("{what} cannot be given as a URL ('{name}:<')"),
            ));
        }
        let bytes = self.decode(line, spec, &format!("attribute '{name}'"))?;
        String::from_utf8(bytes)
            .map_err(|_| self.error(line.number, format!("invalid UTF-8 in {what}")))
    }

    /// A keyword argument (changetype, modify operation attribute,
    /// deleteoldrdn): text with trailing spaces dropped.
    fn keyword_value(&mut self, line: &Line, name: &str, spec: Spec<'_>) -> Result<String> {
        let text = self.text_value(line, name, spec, &format!("'{name}:' value"))?;
        Ok(text.trim_end_matches(' ').to_string())
    }

    // ----- records -----

    fn parse_record(&mut self, lines: Vec<Line>) -> Result<Located<Record>> {
        let mut lines = lines.into_iter().peekable();
        let Some(first) = lines.next() else {
            return Err(self.error(self.line, "empty record"));
        };
        let (name, spec) = self.split(&first)?;
        if !name.eq_ignore_ascii_case("dn") {
            return Err(self.error(
                first.number,
                format!("expected a 'dn:' line to start a record, found '{name}:'"),
            ));
        }
        let dn = self.text_value(&first, name, spec, "dn")?;
        let Some(second) = lines.peek() else {
            return Err(self.error(
                first.number,
                format!(
                    "record for dn '{}' has no attributes or changetype",
                    show(dn.as_bytes())
                ),
            ));
        };
        let is_change =
            keyword_is(&second.text, "changetype") || keyword_is(&second.text, "control");
        match self.holds_changes {
            Some(false) if is_change => {
                return Err(self.error(
                    second.number,
                    "change record in a file of content records (RFC 2849 does not allow mixing them)",
                ));
            }
            Some(true) if !is_change => {
                return Err(self.error(
                    second.number,
                    "content record in a file of change records (RFC 2849 does not allow mixing them; expected 'changetype:')",
                ));
            }
            Some(_) => {}
            None => self.holds_changes = Some(is_change),
        }
        let record = if is_change {
            self.parse_change(dn, first.number, lines)?
        } else {
            let mut attrs = Vec::new();
            for line in lines {
                attrs.push(self.parse_attr(&line)?);
            }
            Record::Content { dn, attrs }
        };
        Ok(Located {
            line: first.number,
            record,
        })
    }

    fn parse_attr(&mut self, line: &Line) -> Result<Attr> {
        let (name, spec) = self.split(line)?;
        let value = self.attr_value(line, name, spec)?;
        Ok(Attr {
            name: name.to_string(),
            value,
        })
    }

    fn parse_change(
        &mut self,
        dn: String,
        dn_line: usize,
        mut lines: std::iter::Peekable<std::vec::IntoIter<Line>>,
    ) -> Result<Record> {
        let mut controls = Vec::new();
        let mut last_line = dn_line;
        let changetype = loop {
            let Some(line) = lines.next() else {
                return Err(self.error(
                    last_line,
                    "record ends after 'control:' lines without a 'changetype:' line",
                ));
            };
            last_line = line.number;
            let (name, spec) = self.split(&line)?;
            if name.eq_ignore_ascii_case("control") {
                controls.push(self.parse_control(&line, spec)?);
            } else if name.eq_ignore_ascii_case("changetype") {
                let value = self.keyword_value(&line, name, spec)?;
                break (line.number, value);
            } else {
                return Err(self.error(
                    line.number,
                    format!("expected 'changetype:' after 'control:' lines, found '{name}:'"),
                ));
            }
        };
        let (ct_line, ct) = changetype;
        let change = match ct.to_ascii_lowercase().as_str() {
            "add" => {
                let mut attrs = Vec::new();
                for line in lines {
                    attrs.push(self.parse_attr(&line)?);
                }
                if attrs.is_empty() {
                    return Err(self.error(ct_line, "'changetype: add' record has no attributes"));
                }
                ChangeKind::Add { attrs }
            }
            "delete" => {
                if let Some(extra) = lines.next() {
                    return Err(self.error(
                        extra.number,
                        format!(
                            "unexpected line after 'changetype: delete': '{}'",
                            show(&extra.text)
                        ),
                    ));
                }
                ChangeKind::Delete
            }
            "modify" => ChangeKind::Modify {
                mods: self.parse_mods(lines)?,
            },
            "modrdn" | "moddn" => self.parse_moddn(&ct, ct_line, lines)?,
            _ => {
                return Err(self.error(
                    ct_line,
                    format!(
                        "unknown changetype '{}' (expected add, delete, modify, modrdn or moddn)",
                        show(ct.as_bytes())
                    ),
                ));
            }
        };
        Ok(Record::Change {
            dn,
            controls,
            change,
        })
    }

    /// Parses the line grammar `control: OID [true|false] [value-spec]`.
    fn parse_control(&mut self, line: &Line, spec: Spec<'_>) -> Result<Control> {
        let Spec::Plain(text) = spec else {
            return Err(self.error(
                line.number,
                "a control must be written 'control: <oid> [true|false] [value]'",
            ));
        };
        let oid_end = text
            .iter()
            .position(|&b| b == b' ' || b == b':')
            .unwrap_or(text.len());
        let oid_bytes = &text[..oid_end];
        let oid = match std::str::from_utf8(oid_bytes) {
            Ok(oid) if is_valid_oid(oid) => oid.to_string(),
            _ => {
                return Err(self.error(
                    line.number,
                    format!("invalid control OID '{}'", show(oid_bytes)),
                ));
            }
        };
        let mut rest = &text[oid_end..];
        let spaced = rest.first() == Some(&b' ');
        rest = skip_spaces(rest);
        let mut criticality = false;
        if spaced {
            for (word, value) in [(&b"true"[..], true), (&b"false"[..], false)] {
                let ends_word = matches!(rest.get(word.len()), None | Some(b' ') | Some(b':'));
                if rest.len() >= word.len()
                    && rest[..word.len()].eq_ignore_ascii_case(word)
                    && ends_word
                {
                    criticality = value;
                    rest = skip_spaces(&rest[word.len()..]);
                    break;
                }
            }
        }
        let value = match rest.split_first() {
            None => None,
            Some((b':', after)) => {
                let what = format!("control {oid}");
                Some(self.decode(line, value_spec(after), &what)?)
            }
            Some(_) => {
                return Err(self.error(
                    line.number,
                    format!(
                        "unexpected '{}' in control line (expected 'true', 'false' or ':' and a value)",
                        show(rest)
                    ),
                ));
            }
        };
        Ok(Control {
            oid,
            criticality,
            value,
        })
    }

    fn parse_mods(
        &mut self,
        lines: std::iter::Peekable<std::vec::IntoIter<Line>>,
    ) -> Result<Vec<Modification>> {
        let mut lines = lines;
        let mut mods = Vec::new();
        while let Some(header) = lines.next() {
            let (op_name, spec) = self.split(&header)?;
            let op = match op_name.to_ascii_lowercase().as_str() {
                "add" => ModOp::Add,
                "delete" => ModOp::Delete,
                "replace" => ModOp::Replace,
                "increment" => ModOp::Increment,
                _ => {
                    return Err(self.error(
                        header.number,
                        format!(
                            "expected 'add:', 'delete:', 'replace:' or 'increment:' in modify record, found '{op_name}:'"
                        ),
                    ));
                }
            };
            let attr = self.keyword_value(&header, op_name, spec)?;
            if !is_valid_attribute_description(&attr) {
                return Err(self.error(
                    header.number,
                    format!(
                        "invalid attribute name '{}' in '{op_name}:' line",
                        show(attr.as_bytes())
                    ),
                ));
            }
            let mut values = Vec::new();
            // The block ends at its '-' line, or, leniently, at the end of
            // the record (see the crate documentation).
            for line in lines.by_ref() {
                if is_dash(&line.text) {
                    break;
                }
                let (name, spec) = self.split(&line)?;
                if !name.eq_ignore_ascii_case(&attr) {
                    return Err(self.error(
                        line.number,
                        format!(
                            "attribute '{name}' does not match '{attr}' named in the '{}: {attr}' line (is a '-' line missing?)",
                            op.as_str()
                        ),
                    ));
                }
                values.push(self.attr_value(&line, name, spec)?);
            }
            mods.push(Modification { op, attr, values });
        }
        Ok(mods)
    }

    fn parse_moddn(
        &mut self,
        changetype: &str,
        ct_line: usize,
        mut lines: std::iter::Peekable<std::vec::IntoIter<Line>>,
    ) -> Result<ChangeKind> {
        let Some(rdn_line) = lines.next() else {
            return Err(self.error(
                ct_line,
                format!("'changetype: {changetype}' record has no 'newrdn:' line"),
            ));
        };
        let (name, spec) = self.split(&rdn_line)?;
        if !name.eq_ignore_ascii_case("newrdn") {
            return Err(self.error(
                rdn_line.number,
                format!("expected 'newrdn:' after 'changetype: {changetype}', found '{name}:'"),
            ));
        }
        let new_rdn = self.text_value(&rdn_line, name, spec, "newrdn")?;

        let Some(del_line) = lines.next() else {
            return Err(self.error(
                rdn_line.number,
                format!("'changetype: {changetype}' record has no 'deleteoldrdn:' line"),
            ));
        };
        let (name, spec) = self.split(&del_line)?;
        if !name.eq_ignore_ascii_case("deleteoldrdn") {
            return Err(self.error(
                del_line.number,
                format!("expected 'deleteoldrdn:' after 'newrdn:', found '{name}:'"),
            ));
        }
        let delete_old_rdn = match self.keyword_value(&del_line, name, spec)?.as_str() {
            "0" => false,
            "1" => true,
            other => {
                return Err(self.error(
                    del_line.number,
                    format!(
                        "deleteoldrdn must be 0 or 1, found '{}'",
                        show(other.as_bytes())
                    ),
                ));
            }
        };

        let mut new_superior = None;
        if let Some(sup_line) = lines.next() {
            let (name, spec) = self.split(&sup_line)?;
            if !name.eq_ignore_ascii_case("newsuperior") {
                return Err(self.error(
                    sup_line.number,
                    format!("expected 'newsuperior:' or the end of the record, found '{name}:'"),
                ));
            }
            new_superior = Some(self.text_value(&sup_line, name, spec, "newsuperior")?);
        }
        if let Some(extra) = lines.next() {
            return Err(self.error(
                extra.number,
                format!(
                    "unexpected line after the end of a '{changetype}' record: '{}'",
                    show(&extra.text)
                ),
            ));
        }
        Ok(ChangeKind::ModDn {
            new_rdn,
            delete_old_rdn,
            new_superior,
        })
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Located<Record>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.next_record()
    }
}

/// Classifies the text after `name:`.
fn value_spec(after_colon: &[u8]) -> Spec<'_> {
    match after_colon.split_first() {
        Some((b':', rest)) => Spec::Base64(trim_spaces(rest)),
        Some((b'<', rest)) => Spec::Url(trim_spaces(rest)),
        _ => Spec::Plain(skip_spaces(after_colon)),
    }
}

fn skip_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    &bytes[start..]
}

fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let bytes = skip_spaces(bytes);
    let end = bytes.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &bytes[..end]
}

/// Whether a line's attribute description is `keyword` (ignoring case).
fn keyword_is(text: &[u8], keyword: &str) -> bool {
    text.len() > keyword.len()
        && text[keyword.len()] == b':'
        && text[..keyword.len()].eq_ignore_ascii_case(keyword.as_bytes())
}

/// Whether a line is the `-` that ends a modify block (trailing spaces are
/// tolerated, as OpenLDAP does).
fn is_dash(text: &[u8]) -> bool {
    text.first() == Some(&b'-') && text[1..].iter().all(|&b| b == b' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoUrlResolver;

    fn read(input: &[u8]) -> Vec<Result<Located<Record>>> {
        Reader::new(input, "", Box::new(NoUrlResolver)).collect()
    }

    #[test]
    fn value_specs() {
        assert!(matches!(value_spec(b"  x y "), Spec::Plain(b"x y ")));
        assert!(matches!(value_spec(b":  QQ== "), Spec::Base64(b"QQ==")));
        assert!(matches!(
            value_spec(b"< file:///x "),
            Spec::Url(b"file:///x")
        ));
        assert!(matches!(value_spec(b""), Spec::Plain(b"")));
    }

    #[test]
    fn keywords_and_dashes() {
        assert!(keyword_is(b"DN: x", "dn"));
        assert!(!keyword_is(b"dnx: x", "dn"));
        assert!(!keyword_is(b"dn", "dn"));
        assert!(is_dash(b"-"));
        assert!(is_dash(b"-  "));
        assert!(!is_dash(b"-x"));
        assert!(!is_dash(b""));
    }

    #[test]
    fn crlf_and_folding() {
        let got = read(b"dn: cn=a\r\ncn: ab\r\n c\r\n\r\n");
        let rec = got[0].as_ref().expect("parses");
        assert_eq!(
            rec.record,
            Record::Content {
                dn: "cn=a".into(),
                attrs: vec![Attr::new("cn", "abc")],
            }
        );
    }

    #[test]
    fn lone_cr_stays_in_value() {
        let got = read(b"dn: cn=a\ncn: a\rb\r");
        let rec = got[0].as_ref().expect("parses");
        assert_eq!(
            rec.record,
            Record::Content {
                dn: "cn=a".into(),
                attrs: vec![Attr::new("cn", "a\rb\r")],
            }
        );
    }

    #[test]
    fn folded_comment_is_skipped() {
        let got = read(b"# a comment\n that goes on\ndn: cn=a\n# inner\n folded\ncn: a\n");
        assert_eq!(got.len(), 1);
        let rec = got[0].as_ref().expect("parses");
        assert_eq!(rec.line, 3);
    }

    #[test]
    fn over_long_line_stops_the_reader() {
        let input = b"dn: cn=a\ncn: 0123456789\n 0123456789\n\ndn: cn=b\ncn: x\n";
        let got: Vec<_> = Reader::new(&input[..], "", Box::new(NoUrlResolver))
            .with_max_line_len(16)
            .collect();
        assert_eq!(got.len(), 1);
        let err = got[0].as_ref().expect_err("too long");
        assert_eq!(err.line(), 2);
        assert_eq!(err.reason(), "line is longer than 16 bytes after unfolding");
    }

    #[test]
    fn line_exactly_at_limit_is_fine() {
        let input = b"dn: cn=a\ncn: 0123456789ab\n";
        let got: Vec<_> = Reader::new(&input[..], "", Box::new(NoUrlResolver))
            .with_max_line_len(16)
            .collect();
        assert!(got[0].is_ok(), "{got:?}");
        let crlf = b"dn: cn=a\r\ncn: 0123456789\r\n 01\r\n";
        let got: Vec<_> = Reader::new(&crlf[..], "", Box::new(NoUrlResolver))
            .with_max_line_len(16)
            .collect();
        assert!(got[0].is_ok(), "{got:?}");
    }

    #[test]
    fn reader_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Reader<&[u8]>>();
        assert_send::<crate::Writer<Vec<u8>>>();
    }

    #[test]
    fn io_error_stops_the_reader() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let mut reader = Reader::new(
            io::BufReader::new(Failing),
            "x.ldif",
            Box::new(NoUrlResolver),
        );
        let err = reader.next().expect("one item").expect_err("error");
        assert_eq!(err.to_string(), "x.ldif:1: read error: disk on fire");
        assert!(reader.next().is_none());
    }
}

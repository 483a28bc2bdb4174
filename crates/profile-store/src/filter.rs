//! The SCIM filter and attribute-path grammar (RFC 7644 3.4.2.2 and 3.5.2): text in, a syntax
//! tree or an error naming the character position out. No schema knowledge here: checking the
//! names against the schemas and turning the tree into SQL happen elsewhere. Nesting is bounded,
//! so hostile input cannot exhaust the stack.

use std::fmt;

/// `[urn:]name[.sub]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.urn {
            write!(f, "{u}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Debug, PartialEq)]
pub enum CompValue {
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, Op, CompValue),
    /// `attr[filter]`: some value of the multi-valued `attr` matches the inner filter, whose
    /// paths are relative to that value.
    ValuePath(AttrPath, Box<Filter>),
}

/// A PATCH path: `attrPath`, or `attrPath[valFilter]` optionally followed by `.subAttr`.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    /// 0-based character offset in the input.
    pub position: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.position + 1, self.message)
    }
}

impl std::error::Error for FilterError {}

/// At most `max` characters of `s`, cut with `…` (error details quote input, never all of it).
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// The part of `input` around character `position`: up to `EXCERPT / 2` characters on each
/// side, with `…` where it was cut, so an error detail quotes the place, not a 1 MB filter.
pub fn excerpt(input: &str, position: usize) -> String {
    const HALF: usize = EXCERPT / 2;
    let start = position.saturating_sub(HALF);
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    for (taken, c) in input.chars().skip(start).enumerate() {
        if taken == EXCERPT {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

/// The length of an [`excerpt`], in characters.
pub const EXCERPT: usize = 60;

const MAX_DEPTH: usize = 32;
const MAX_LEN: usize = 8192;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Str(String),
    Word(String),
}

fn lex(input: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    if input.len() > MAX_LEN {
        return Err(FilterError {
            position: 0,
            message: format!("longer than {MAX_LEN} bytes"),
        });
    }
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push((i, Tok::LParen));
                i += 1
            }
            ')' => {
                out.push((i, Tok::RParen));
                i += 1
            }
            '[' => {
                out.push((i, Tok::LBracket));
                i += 1
            }
            ']' => {
                out.push((i, Tok::RBracket));
                i += 1
            }
            '"' => {
                let start = i;
                i += 1;
                let mut raw = String::from("\"");
                loop {
                    let Some(&d) = chars.get(i) else {
                        return Err(FilterError {
                            position: start,
                            message: "unterminated string".into(),
                        });
                    };
                    raw.push(d);
                    i += 1;
                    if d == '\\' {
                        let Some(&e) = chars.get(i) else {
                            return Err(FilterError {
                                position: start,
                                message: "unterminated string".into(),
                            });
                        };
                        raw.push(e);
                        i += 1;
                    } else if d == '"' {
                        break;
                    }
                }
                let s: String = serde_json::from_str(&raw).map_err(|e| FilterError {
                    position: start,
                    message: format!("invalid string: {e}"),
                })?;
                out.push((start, Tok::Str(s)));
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !matches!(
                        chars[i],
                        ' ' | '\t' | '\n' | '\r' | '(' | ')' | '[' | ']' | '"'
                    )
                {
                    i += 1;
                }
                out.push((start, Tok::Word(chars[start..i].iter().collect())));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

fn is_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '$')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

/// Parses `[urn:]name[.sub]`.
pub fn parse_attr_path(word: &str, position: usize) -> Result<AttrPath, FilterError> {
    let err = |m: String| FilterError {
        position,
        message: m,
    };
    let (urn, rest) = match word.rfind(':') {
        Some(i) => (Some(word[..i].to_string()), &word[i + 1..]),
        None => (None, word),
    };
    if let Some(u) = &urn {
        if !u.to_ascii_lowercase().starts_with("urn:") {
            return Err(err(format!(
                "`{}` is not an attribute path",
                clip(word, 40)
            )));
        }
    }
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    if !is_name(name) || sub.is_some_and(|s| !is_name(s)) {
        return Err(err(format!(
            "`{}` is not an attribute path",
            clip(word, 40)
        )));
    }
    Ok(AttrPath {
        urn,
        name: name.to_string(),
        sub: sub.map(str::to_string),
    })
}

impl Parser {
    fn new(input: &str) -> Result<Parser, FilterError> {
        Ok(Parser {
            toks: lex(input)?,
            pos: 0,
            end: input.chars().count(),
        })
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn here(&self) -> usize {
        self.toks.get(self.pos).map(|(p, _)| *p).unwrap_or(self.end)
    }
    fn err<T>(&self, m: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError {
            position: self.here(),
            message: m.into(),
        })
    }
    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn or(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_DEPTH {
            return self.err("filter nested too deeply");
        }
        let mut left = self.and(depth)?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.unary(depth)?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if self.keyword("not") && matches!(self.toks.get(self.pos + 1), Some((_, Tok::LParen))) {
            self.pos += 2;
            let inner = self.or(depth + 1)?;
            self.expect_rparen()?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.peek().cloned() {
            Some(Tok::LParen) => {
                self.pos += 1;
                let inner = self.or(depth + 1)?;
                self.expect_rparen()?;
                Ok(inner)
            }
            Some(Tok::Word(w)) => {
                let at = self.here();
                let path = parse_attr_path(&w, at)?;
                self.pos += 1;
                if matches!(self.peek(), Some(Tok::LBracket)) {
                    if depth > MAX_DEPTH {
                        return self.err("filter nested too deeply");
                    }
                    self.pos += 1;
                    let inner = self.or(depth + 1)?;
                    if !matches!(self.peek(), Some(Tok::RBracket)) {
                        return self.err("expected `]`");
                    }
                    self.pos += 1;
                    return Ok(Filter::ValuePath(path, Box::new(inner)));
                }
                let op = match self.peek() {
                    Some(Tok::Word(o)) => o.to_ascii_lowercase(),
                    _ => return self.err(format!("expected an operator after `{}`", clip(&w, 40))),
                };
                let op = match op.as_str() {
                    "pr" => {
                        self.pos += 1;
                        return Ok(Filter::Present(path));
                    }
                    "eq" => Op::Eq,
                    "ne" => Op::Ne,
                    "co" => Op::Co,
                    "sw" => Op::Sw,
                    "ew" => Op::Ew,
                    "gt" => Op::Gt,
                    "ge" => Op::Ge,
                    "lt" => Op::Lt,
                    "le" => Op::Le,
                    other => return self.err(format!("unknown operator `{}`", clip(other, 20))),
                };
                self.pos += 1;
                let value = match self.peek().cloned() {
                    Some(Tok::Str(s)) => CompValue::Str(s),
                    Some(Tok::Word(v)) => match v.as_str() {
                        "true" => CompValue::Bool(true),
                        "false" => CompValue::Bool(false),
                        "null" => CompValue::Null,
                        n => match serde_json::from_str::<serde_json::Value>(n) {
                            Ok(serde_json::Value::Number(n)) => CompValue::Num(n),
                            _ => {
                                return self.err(format!(
                                    "`{}` is not a value (strings are quoted)",
                                    clip(n, 40)
                                ))
                            }
                        },
                    },
                    _ => return self.err("expected a value"),
                };
                self.pos += 1;
                Ok(Filter::Compare(path, op, value))
            }
            Some(_) => self.err("expected an attribute, `not` or `(`"),
            None => self.err("unexpected end of filter"),
        }
    }

    fn expect_rparen(&mut self) -> Result<(), FilterError> {
        if matches!(self.peek(), Some(Tok::RParen)) {
            self.pos += 1;
            Ok(())
        } else {
            self.err("expected `)`")
        }
    }
}

/// Parses a filter.
pub fn parse_filter(input: &str) -> Result<Filter, FilterError> {
    let mut p = Parser::new(input)?;
    let f = p.or(0)?;
    if p.pos != p.toks.len() {
        return p.err("unexpected text after the filter");
    }
    Ok(f)
}

/// Parses a PATCH path.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, FilterError> {
    let mut p = Parser::new(input)?;
    let (at, word) = match p.toks.first().cloned() {
        Some((at, Tok::Word(w))) => (at, w),
        _ => return p.err("expected an attribute path"),
    };
    let attr = parse_attr_path(&word, at)?;
    p.pos = 1;
    if p.pos == p.toks.len() {
        return Ok(PatchPath {
            attr,
            filter: None,
            sub: None,
        });
    }
    if !matches!(p.peek(), Some(Tok::LBracket)) || attr.sub.is_some() {
        return p.err("unexpected text after the attribute path");
    }
    p.pos += 1;
    let filter = p.or(1)?;
    if !matches!(p.peek(), Some(Tok::RBracket)) {
        return p.err("expected `]`");
    }
    p.pos += 1;
    let sub = match p.toks.get(p.pos).cloned() {
        None => None,
        Some((at, Tok::Word(w)))
            if w.starts_with('.') && is_name(&w[1..]) && p.pos + 1 == p.toks.len() =>
        {
            let _ = at;
            Some(w[1..].to_string())
        }
        Some(_) => return p.err("unexpected text after `]`"),
    };
    Ok(PatchPath {
        attr,
        filter: Some(filter),
        sub,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rfc_examples() {
        for f in [
            r#"userName eq "bjensen""#,
            r#"name.familyName co "O'Malley""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            r#"title pr and userType eq "Employee""#,
            r#"title pr or userType eq "Intern""#,
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "x""#,
            "active eq true and count gt 3.5",
        ] {
            parse_filter(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn precedence_and_binds_tighter() {
        let f = parse_filter(r#"a eq "1" or b eq "2" and c eq "3""#).unwrap();
        assert!(matches!(f, Filter::Or(_, r) if matches!(*r, Filter::And(_, _))));
    }

    #[test]
    fn errors_name_the_position() {
        let e = parse_filter(r#"userName eq"#).unwrap_err();
        assert_eq!(e.position, 11);
        let e = parse_filter(r#"userName zz "x""#).unwrap_err();
        assert!(e.message.contains("zz"));
        assert!(parse_filter(r#"(userName eq "x""#).is_err());
        assert!(parse_filter(r#"userName eq x"#).is_err());
        assert!(parse_filter(&"(".repeat(1000)).is_err());
        assert!(parse_filter(&"not (".repeat(100)).is_err());
    }

    #[test]
    fn excerpts_are_bounded_around_the_position() {
        let long = format!("{}HERE{}", "a".repeat(500), "b".repeat(500));
        let e = excerpt(&long, 500);
        assert!(
            e.starts_with('…') && e.ends_with('…') && e.contains("HERE"),
            "{e}"
        );
        assert_eq!(e.chars().count(), EXCERPT + 2);
        assert_eq!(excerpt("userName eq", 11), "userName eq");
        assert_eq!(excerpt("ä ö ü", 2), "ä ö ü");
        assert_eq!(clip("Ångström", 3), "Ång…");
        assert_eq!(clip("ann", 3), "ann");
        let e = parse_filter(&format!("{}% eq \"x\"", "n".repeat(5000))).unwrap_err();
        assert!(e.message.len() < 100, "{}", e.message);
    }

    #[test]
    fn patch_paths() {
        let p = parse_patch_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr.name, "emails");
        assert_eq!(p.sub.as_deref(), Some("value"));
        let p =
            parse_patch_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager")
                .unwrap();
        assert_eq!(p.attr.name, "manager");
        assert!(p.attr.urn.is_some());
        assert!(parse_patch_path("name.givenName")
            .unwrap()
            .attr
            .sub
            .is_some());
        assert!(parse_patch_path("emails[").is_err());
        assert!(parse_patch_path("").is_err());
    }
}

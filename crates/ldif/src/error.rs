//! Errors of the reader. Every error names the 1-based line it is about so a
//! person can find the offending spot, and the input's name when the caller
//! gave one.

use std::borrow::Cow;
use std::fmt;

/// Where in the input an error was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The name of the input (usually its file name), if the caller gave one.
    pub source_name: Option<String>,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source_name {
            Some(name) => write!(f, "{name}:{}", self.line),
            None => write!(f, "line {}", self.line),
        }
    }
}

/// An error found while reading LDIF.
///
/// Displays as `line 12: reason`, or `people.ldif:12: reason` when the
/// reader was given a source name.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The input is not valid LDIF (or a URL value could not be resolved).
    #[error("{at}: {reason}")]
    Syntax { at: Location, reason: String },
    /// Reading the input failed.
    #[error("{at}: read error: {source}")]
    Io {
        at: Location,
        #[source]
        source: std::io::Error,
    },
}

/// The result type of this crate's reading functions.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The 1-based line number the error is about.
    pub fn line(&self) -> usize {
        self.location().line
    }

    /// The input name given to the reader, if any.
    pub fn source_name(&self) -> Option<&str> {
        self.location().source_name.as_deref()
    }

    /// Where the error was found.
    pub fn location(&self) -> &Location {
        match self {
            Error::Syntax { at, .. } | Error::Io { at, .. } => at,
        }
    }

    /// The reason alone, without the location prefix.
    pub fn reason(&self) -> Cow<'_, str> {
        match self {
            Error::Syntax { reason, .. } => Cow::Borrowed(reason),
            Error::Io { source, .. } => Cow::Owned(format!("read error: {source}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_without_and_with_source_name() {
        let plain = Error::Syntax {
            at: Location {
                source_name: None,
                line: 12,
            },
            reason: "invalid base64 in value of attribute 'jpegPhoto'".into(),
        };
        assert_eq!(
            plain.to_string(),
            "line 12: invalid base64 in value of attribute 'jpegPhoto'"
        );
        let named = Error::Syntax {
            at: Location {
                source_name: Some("people.ldif".into()),
                line: 12,
            },
            reason: "line has no ':'".into(),
        };
        assert_eq!(named.to_string(), "people.ldif:12: line has no ':'");
        assert_eq!(named.line(), 12);
        assert_eq!(named.source_name(), Some("people.ldif"));
        assert_eq!(named.reason(), "line has no ':'");
    }
}

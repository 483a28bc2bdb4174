//! SQL values to cells: one small enum the connector maps to idsync values, decoded by the
//! column's SQL type on each server. A type not listed here is an error naming it, never a guess.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sqlx::{Column, Row, TypeInfo, ValueRef};

/// One decoded SQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
    /// Seconds since the epoch, UTC (a timestamp without time zone is taken as UTC).
    Timestamp(i64),
    Bytes(Vec<u8>),
    /// A PostgreSQL array of text.
    Texts(Vec<String>),
    /// A PostgreSQL array of integers.
    Ints(Vec<i64>),
}

impl Cell {
    pub fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Text(_) => "text",
            Cell::Int(_) => "an integer",
            Cell::Bool(_) => "a boolean",
            Cell::Timestamp(_) => "a timestamp",
            Cell::Bytes(_) => "binary",
            Cell::Texts(_) => "a text array",
            Cell::Ints(_) => "an integer array",
        }
    }
}

/// A watermark value, kept in the store as text with its kind so it is bound back with the
/// column's own type (comparing a timestamp column with a text parameter fails on PostgreSQL).
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Watermark {
    Int(i64),
    /// A timestamp without time zone (as the column holds it).
    Naive(NaiveDateTime),
    /// A timestamp with time zone.
    Utc(DateTime<Utc>),
    /// Text, compared by the server (SQLite dates are text).
    Text(String),
}

const NAIVE_FMT: &str = "%Y-%m-%dT%H:%M:%S%.f";

impl Watermark {
    pub fn encode(&self) -> String {
        match self {
            Watermark::Int(i) => format!("int:{i}"),
            Watermark::Naive(t) => format!("ts:{}", t.format(NAIVE_FMT)),
            Watermark::Utc(t) => format!("tstz:{}", t.to_rfc3339()),
            Watermark::Text(t) => format!("text:{t}"),
        }
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (kind, v) = s.split_once(':')?;
        match kind {
            "int" => v.parse().ok().map(Watermark::Int),
            "ts" => NaiveDateTime::parse_from_str(v, NAIVE_FMT)
                .ok()
                .map(Watermark::Naive),
            "tstz" => DateTime::parse_from_rfc3339(v)
                .ok()
                .map(|t| Watermark::Utc(t.with_timezone(&Utc))),
            "text" => Some(Watermark::Text(v.to_owned())),
            _ => None,
        }
    }
}

/// A result row of any of the three servers.
pub trait SqlRow {
    fn len(&self) -> usize;
    fn name(&self, i: usize) -> String;
    fn cell(&self, i: usize) -> Result<Cell, String>;
    /// The column's value as a watermark (NULL: none).
    fn watermark(&self, i: usize) -> Result<Option<Watermark>, String>;
}

fn unsupported(type_name: &str) -> String {
    format!(
        "a column of SQL type {type_name} is not mapped (text, integers, booleans, timestamps and binary are): cast it in a `query`"
    )
}

fn err(e: sqlx::Error) -> String {
    e.to_string()
}

fn naive_secs(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp()
}

/// A date as the time its day starts.
fn date_time(d: NaiveDate) -> NaiveDateTime {
    d.and_hms_opt(0, 0, 0).unwrap_or_default()
}

fn date_secs(d: NaiveDate) -> i64 {
    naive_secs(date_time(d))
}

impl SqlRow for sqlx::postgres::PgRow {
    fn len(&self) -> usize {
        self.columns().len()
    }

    fn name(&self, i: usize) -> String {
        self.columns()[i].name().to_owned()
    }

    fn cell(&self, i: usize) -> Result<Cell, String> {
        let raw = self.try_get_raw(i).map_err(err)?;
        if raw.is_null() {
            return Ok(Cell::Null);
        }
        let ty = self.columns()[i].type_info().name().to_ascii_uppercase();
        Ok(match ty.as_str() {
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => {
                Cell::Text(self.try_get(i).map_err(err)?)
            }
            "INT2" => Cell::Int(self.try_get::<i16, _>(i).map_err(err)?.into()),
            "INT4" => Cell::Int(self.try_get::<i32, _>(i).map_err(err)?.into()),
            "INT8" => Cell::Int(self.try_get(i).map_err(err)?),
            "BOOL" => Cell::Bool(self.try_get(i).map_err(err)?),
            "TIMESTAMP" => Cell::Timestamp(naive_secs(self.try_get(i).map_err(err)?)),
            "TIMESTAMPTZ" => Cell::Timestamp(
                self.try_get::<DateTime<Utc>, _>(i)
                    .map_err(err)?
                    .timestamp(),
            ),
            "DATE" => Cell::Timestamp(date_secs(self.try_get(i).map_err(err)?)),
            "BYTEA" => Cell::Bytes(self.try_get(i).map_err(err)?),
            "TEXT[]" | "VARCHAR[]" | "BPCHAR[]" | "NAME[]" => {
                Cell::Texts(self.try_get(i).map_err(err)?)
            }
            "INT2[]" => Cell::Ints(
                self.try_get::<Vec<i16>, _>(i)
                    .map_err(err)?
                    .into_iter()
                    .map(i64::from)
                    .collect(),
            ),
            "INT4[]" => Cell::Ints(
                self.try_get::<Vec<i32>, _>(i)
                    .map_err(err)?
                    .into_iter()
                    .map(i64::from)
                    .collect(),
            ),
            "INT8[]" => Cell::Ints(self.try_get(i).map_err(err)?),
            other => return Err(unsupported(other)),
        })
    }

    fn watermark(&self, i: usize) -> Result<Option<Watermark>, String> {
        let raw = self.try_get_raw(i).map_err(err)?;
        if raw.is_null() {
            return Ok(None);
        }
        let ty = raw.type_info().name().to_ascii_uppercase();
        Ok(Some(match ty.as_str() {
            "INT2" => Watermark::Int(self.try_get::<i16, _>(i).map_err(err)?.into()),
            "INT4" => Watermark::Int(self.try_get::<i32, _>(i).map_err(err)?.into()),
            "INT8" => Watermark::Int(self.try_get(i).map_err(err)?),
            "TIMESTAMP" => Watermark::Naive(self.try_get(i).map_err(err)?),
            "TIMESTAMPTZ" => Watermark::Utc(self.try_get(i).map_err(err)?),
            "DATE" => Watermark::Naive(date_time(self.try_get(i).map_err(err)?)),
            other => {
                return Err(format!(
                    "a watermark column must be an integer or a timestamp, not {other}"
                ))
            }
        }))
    }
}

impl SqlRow for sqlx::mysql::MySqlRow {
    fn len(&self) -> usize {
        self.columns().len()
    }

    fn name(&self, i: usize) -> String {
        self.columns()[i].name().to_owned()
    }

    fn cell(&self, i: usize) -> Result<Cell, String> {
        let raw = self.try_get_raw(i).map_err(err)?;
        if raw.is_null() {
            return Ok(Cell::Null);
        }
        let ty = self.columns()[i].type_info().name().to_ascii_uppercase();
        Ok(match ty.as_str() {
            "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" => {
                Cell::Text(self.try_get(i).map_err(err)?)
            }
            "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" => {
                Cell::Int(self.try_get(i).map_err(err)?)
            }
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED"
            | "BIGINT UNSIGNED" => {
                let v: u64 = self.try_get(i).map_err(err)?;
                Cell::Int(i64::try_from(v).map_err(|_| format!("{v} is too large for an integer"))?)
            }
            "BOOLEAN" => Cell::Bool(self.try_get(i).map_err(err)?),
            "DATETIME" => Cell::Timestamp(naive_secs(self.try_get(i).map_err(err)?)),
            // A TIMESTAMP is an instant (the server converts it from the session's time zone,
            // UTC for the connector), which sqlx decodes only as a zoned time.
            "TIMESTAMP" => Cell::Timestamp(
                self.try_get::<DateTime<Utc>, _>(i)
                    .map_err(err)?
                    .timestamp(),
            ),
            "DATE" => Cell::Timestamp(date_secs(self.try_get(i).map_err(err)?)),
            "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "VARBINARY" | "BINARY" => {
                Cell::Bytes(self.try_get(i).map_err(err)?)
            }
            other => return Err(unsupported(other)),
        })
    }

    fn watermark(&self, i: usize) -> Result<Option<Watermark>, String> {
        let raw = self.try_get_raw(i).map_err(err)?;
        if raw.is_null() {
            return Ok(None);
        }
        let ty = raw.type_info().name().to_ascii_uppercase();
        Ok(Some(match ty.as_str() {
            "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" => {
                Watermark::Int(self.try_get(i).map_err(err)?)
            }
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED"
            | "BIGINT UNSIGNED" => {
                let v: u64 = self.try_get(i).map_err(err)?;
                Watermark::Int(i64::try_from(v).map_err(|_| format!("{v} is too large"))?)
            }
            "DATETIME" => Watermark::Naive(self.try_get(i).map_err(err)?),
            "TIMESTAMP" => Watermark::Utc(self.try_get(i).map_err(err)?),
            "DATE" => Watermark::Naive(date_time(self.try_get(i).map_err(err)?)),
            other => {
                return Err(format!(
                    "a watermark column must be an integer or a timestamp, not {other}"
                ))
            }
        }))
    }
}

impl SqlRow for sqlx::sqlite::SqliteRow {
    fn len(&self) -> usize {
        self.columns().len()
    }

    fn name(&self, i: usize) -> String {
        self.columns()[i].name().to_owned()
    }

    fn cell(&self, i: usize) -> Result<Cell, String> {
        let raw = self.try_get_raw(i).map_err(err)?;
        if raw.is_null() {
            return Ok(Cell::Null);
        }
        // SQLite types values, not columns: the declared type says boolean or date, the value's
        // storage class says the rest.
        let declared = self.columns()[i].type_info().name().to_ascii_uppercase();
        let stored = raw.type_info().name().to_ascii_uppercase();
        Ok(match (declared.as_str(), stored.as_str()) {
            ("BOOLEAN", "INTEGER") => Cell::Bool(self.try_get::<i64, _>(i).map_err(err)? != 0),
            ("DATETIME" | "DATE", "INTEGER") => Cell::Timestamp(self.try_get(i).map_err(err)?),
            ("DATETIME", "TEXT") => {
                let t: String = self.try_get(i).map_err(err)?;
                Cell::Timestamp(parse_sqlite_time(&t)?)
            }
            ("DATE", "TEXT") => {
                let t: String = self.try_get(i).map_err(err)?;
                Cell::Timestamp(date_secs(
                    NaiveDate::parse_from_str(&t, "%Y-%m-%d")
                        .map_err(|_| format!("`{t}` is not a date (YYYY-MM-DD)"))?,
                ))
            }
            (_, "TEXT") => Cell::Text(self.try_get(i).map_err(err)?),
            (_, "INTEGER") => Cell::Int(self.try_get(i).map_err(err)?),
            (_, "BLOB") => Cell::Bytes(self.try_get(i).map_err(err)?),
            (d, s) => return Err(unsupported(&format!("{s} (declared {d})"))),
        })
    }

    fn watermark(&self, i: usize) -> Result<Option<Watermark>, String> {
        let raw = self.try_get_raw(i).map_err(err)?;
        if raw.is_null() {
            return Ok(None);
        }
        // Bound back as stored: SQLite compares text dates as text.
        match raw.type_info().name() {
            "INTEGER" => Ok(Some(Watermark::Int(self.try_get(i).map_err(err)?))),
            "TEXT" => Ok(Some(Watermark::Text(self.try_get(i).map_err(err)?))),
            other => Err(format!(
                "a watermark column must hold integers or text dates, not {other}"
            )),
        }
    }
}

/// SQLite's usual text times: `YYYY-MM-DD HH:MM:SS[.fff]`, with a `T` or a `Z` allowed.
fn parse_sqlite_time(t: &str) -> Result<i64, String> {
    let s = t.trim().trim_end_matches('Z').replace('T', " ");
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(v) = NaiveDateTime::parse_from_str(&s, fmt) {
            return Ok(naive_secs(v));
        }
    }
    if let Ok(v) = DateTime::parse_from_rfc3339(t.trim()) {
        return Ok(v.timestamp());
    }
    Err(format!(
        "`{t}` is not a date and time (YYYY-MM-DD HH:MM:SS)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_round_trip() {
        let t = NaiveDateTime::parse_from_str("2026-11-23 18:00:00.123456", "%Y-%m-%d %H:%M:%S%.f")
            .unwrap();
        for w in [
            Watermark::Int(42),
            Watermark::Naive(t),
            Watermark::Utc(t.and_utc()),
            Watermark::Text("2026-11-23 18:00:00".into()),
        ] {
            assert_eq!(Watermark::decode(&w.encode()), Some(w));
        }
        assert_eq!(Watermark::decode("bogus"), None);
    }

    #[test]
    fn sqlite_times_parse() {
        assert_eq!(parse_sqlite_time("1970-01-01 00:01:00").unwrap(), 60);
        assert_eq!(parse_sqlite_time("1970-01-01T00:01:00Z").unwrap(), 60);
        assert!(parse_sqlite_time("yesterday").is_err());
    }
}

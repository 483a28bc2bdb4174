//! Export to a table, only where configured (`export = true`): each item becomes one
//! parameterized INSERT, UPDATE or DELETE; a batch is one transaction, each item under a
//! savepoint so one refused row does not undo the others.

use crate::dialect::{Conn, Dialect};
use crate::{SqlSettings, CHILD_SEP};
use idsync_connectors::{Error, ExportItem, ExportOp, ExportResult};
use idsync_model::{AttributeChange, Attributes, Value};
use sqlx::Connection;

/// A bound parameter.
#[derive(Debug, Clone)]
enum Param {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
    Timestamp(chrono::DateTime<chrono::Utc>),
    Bytes(Vec<u8>),
}

pub struct ExportPlan {
    dialect: Dialect,
    table: String,
    anchor: Vec<String>,
    /// attribute (lower-case) -> (column, separator for multi-valued columns, child table)
    columns: Vec<(String, String, Option<String>, bool)>,
    /// Whether `columns` maps attributes explicitly (then only mapped attributes are written).
    mapped: bool,
}

/// One statement for one item.
struct Statement {
    sql: String,
    params: Vec<Param>,
    /// Zero rows changed is a failure (an update of a row that is gone).
    must_change: bool,
    anchor: Option<String>,
    /// For an insert: a query that finds the row only when it holds exactly these values (an
    /// insert refused as a duplicate is then this very insert, repeated after a crash).
    same_row: Option<(String, Vec<Param>)>,
}

impl ExportPlan {
    pub fn new(s: &SqlSettings, dialect: Dialect) -> idsync_connectors::Result<Self> {
        let table = s.table.clone().ok_or_else(|| Error::Config {
            connector: String::new(),
            message: "export needs a `table`".to_owned(),
        })?;
        let mut columns: Vec<(String, String, Option<String>, bool)> = s
            .columns
            .iter()
            .map(|(a, c)| (a.to_ascii_lowercase(), c.clone(), None, false))
            .collect();
        for m in &s.multi_valued {
            let child = m.table.is_some();
            let sep = if child {
                Some(CHILD_SEP.to_owned())
            } else {
                Some(m.separator.clone().unwrap_or_else(|| ";".to_owned()))
            };
            columns.retain(|(a, ..)| *a != m.attribute.to_ascii_lowercase());
            columns.push((
                m.attribute.to_ascii_lowercase(),
                m.column.clone(),
                sep,
                child,
            ));
        }
        Ok(Self {
            dialect,
            table,
            anchor: s.anchor.list(),
            columns,
            mapped: !s.columns.is_empty(),
        })
    }

    /// The column an attribute is written to; without a `columns` mapping, its own name.
    fn column(&self, attr: &str) -> Result<(String, Option<String>), String> {
        let key = attr.to_ascii_lowercase();
        match self.columns.iter().find(|(a, ..)| *a == key) {
            Some((_, _, _, true)) => Err(format!(
                "`{attr}` comes from a child table, which export does not write"
            )),
            Some((_, c, sep, false)) => Ok((c.clone(), sep.clone())),
            None if self.mapped && !self.anchor.iter().any(|a| a.eq_ignore_ascii_case(attr)) => {
                Err(format!("no column is mapped to `{attr}`"))
            }
            None => {
                crate::dialect::check_identifier(attr)?;
                Ok((attr.to_owned(), None))
            }
        }
    }

    fn param(values: &[Value], sep: Option<&str>) -> Result<Param, String> {
        if let Some(sep) = sep {
            let texts: Vec<String> = values.iter().map(Value::to_text).collect();
            return Ok(if texts.is_empty() {
                Param::Null
            } else {
                Param::Text(texts.join(sep))
            });
        }
        match values {
            [] => Ok(Param::Null),
            [v] => Ok(match v {
                Value::String(s) => Param::Text(s.clone()),
                Value::Integer(i) => Param::Int(*i),
                Value::Boolean(b) => Param::Bool(*b),
                Value::Timestamp(t) => Param::Timestamp(
                    chrono::DateTime::from_timestamp(*t, 0)
                        .ok_or_else(|| format!("timestamp {t} is out of range"))?,
                ),
                Value::Binary(b) => Param::Bytes(
                    b.data
                        .as_deref()
                        .map(<[u8]>::to_vec)
                        .ok_or("the bytes of a binary value are not loaded")?,
                ),
                other => Param::Text(other.to_text()),
            }),
            _ => Err("several values for a single-valued column".to_owned()),
        }
    }

    fn anchor_where(&self, anchor: &str, params: &mut Vec<Param>) -> Result<String, String> {
        let parts: Vec<&str> = if self.anchor.len() == 1 {
            vec![anchor]
        } else {
            anchor.split('/').collect()
        };
        if parts.len() != self.anchor.len() {
            return Err(format!(
                "anchor `{anchor}` does not name {} columns",
                self.anchor.len()
            ));
        }
        let mut clauses = Vec::new();
        for (c, v) in self.anchor.iter().zip(parts) {
            params.push(Param::Text(v.to_owned()));
            clauses.push(format!(
                "CAST({} AS {}) = {}",
                self.dialect.quote(c),
                if self.dialect == Dialect::MySql {
                    "CHAR"
                } else {
                    "TEXT"
                },
                self.dialect.placeholder(params.len())
            ));
        }
        Ok(clauses.join(" AND "))
    }

    fn statement(&self, item: &ExportItem) -> Result<Statement, String> {
        let d = self.dialect;
        let t = d.quote(&self.table);
        let mut params = Vec::new();
        match &item.op {
            ExportOp::Add { attributes, .. } => {
                let mut cols = Vec::new();
                let mut marks = Vec::new();
                let mut same = Vec::new();
                let mut same_params = Vec::new();
                for (name, values) in attributes.iter() {
                    let (col, sep) = self.column(name.as_str())?;
                    let p = Self::param(values, sep.as_deref())?;
                    if matches!(p, Param::Null) {
                        same.push(format!("{} IS NULL", d.quote(&col)));
                    } else {
                        same_params.push(p.clone());
                        same.push(format!(
                            "{} = {}",
                            d.quote(&col),
                            d.placeholder(same_params.len())
                        ));
                    }
                    params.push(p);
                    cols.push(d.quote(&col));
                    marks.push(d.placeholder(params.len()));
                }
                let anchor = anchor_of(attributes, &self.anchor);
                Ok(Statement {
                    sql: format!(
                        "INSERT INTO {t} ({}) VALUES ({})",
                        cols.join(", "),
                        marks.join(", ")
                    ),
                    params,
                    must_change: true,
                    anchor,
                    same_row: (!same.is_empty()).then(|| {
                        (
                            format!("SELECT 1 FROM {t} WHERE {}", same.join(" AND ")),
                            same_params,
                        )
                    }),
                })
            }
            ExportOp::Update { changes, .. } => {
                let anchor = item.anchor.as_ref().ok_or("the object has no anchor yet")?;
                let mut sets = Vec::new();
                for c in changes {
                    let (col, sep) = self.column(c.name.as_str())?;
                    let values = match &c.change {
                        AttributeChange::Replace(v) => v.clone(),
                        AttributeChange::Update { add, .. } if sep.is_none() => add.clone(),
                        AttributeChange::Update { .. } => {
                            return Err(format!(
                                "a value-level change of the multi-valued column `{col}` needs its whole value"
                            ))
                        }
                    };
                    params.push(Self::param(&values, sep.as_deref())?);
                    sets.push(format!(
                        "{} = {}",
                        d.quote(&col),
                        d.placeholder(params.len())
                    ));
                }
                if sets.is_empty() {
                    return Ok(Statement {
                        sql: String::new(),
                        params,
                        must_change: false,
                        anchor: None,
                        same_row: None,
                    });
                }
                let w = self.anchor_where(anchor.as_str(), &mut params)?;
                Ok(Statement {
                    sql: format!("UPDATE {t} SET {} WHERE {w}", sets.join(", ")),
                    params,
                    must_change: true,
                    anchor: None,
                    same_row: None,
                })
            }
            ExportOp::Delete => {
                let anchor = item.anchor.as_ref().ok_or("the object has no anchor yet")?;
                let w = self.anchor_where(anchor.as_str(), &mut params)?;
                // A row already gone is deleted: zero rows is success.
                Ok(Statement {
                    sql: format!("DELETE FROM {t} WHERE {w}"),
                    params,
                    must_change: false,
                    anchor: None,
                    same_row: None,
                })
            }
        }
    }

    /// Applies one batch in one transaction (`id` names the connector in crash points).
    pub async fn apply(
        &self,
        conn: &mut Conn,
        batch: &[ExportItem],
        id: &str,
    ) -> Result<Vec<ExportResult>, sqlx::Error> {
        macro_rules! bind {
            ($sql:expr, $params:expr) => {{
                let mut q = sqlx::query(sqlx::AssertSqlSafe($sql));
                for p in $params {
                    q = match p {
                        Param::Null => q.bind(None::<String>),
                        Param::Text(s) => q.bind(s.clone()),
                        Param::Int(i) => q.bind(*i),
                        Param::Bool(b) => q.bind(*b),
                        Param::Timestamp(t) => q.bind(*t),
                        Param::Bytes(b) => q.bind(b.clone()),
                    };
                }
                q
            }};
        }
        macro_rules! run {
            ($conn:expr) => {{
                let mut tx = $conn.begin().await?;
                let mut out = Vec::with_capacity(batch.len());
                for item in batch {
                    let st = match self.statement(item) {
                        Ok(st) => st,
                        Err(m) => {
                            out.push(ExportResult::Failed(m));
                            continue;
                        }
                    };
                    if st.sql.is_empty() {
                        out.push(ExportResult::Applied { anchor: None });
                        continue;
                    }
                    sqlx::query("SAVEPOINT idsync_item")
                        .execute(&mut *tx)
                        .await?;
                    let q = bind!(st.sql.as_str(), &st.params);
                    match q.execute(&mut *tx).await {
                        Ok(r) if r.rows_affected() == 0 && st.must_change => {
                            sqlx::query("ROLLBACK TO SAVEPOINT idsync_item")
                                .execute(&mut *tx)
                                .await?;
                            out.push(ExportResult::Failed("no row has this anchor".to_owned()));
                        }
                        Ok(_) => {
                            sqlx::query("RELEASE SAVEPOINT idsync_item")
                                .execute(&mut *tx)
                                .await?;
                            out.push(ExportResult::Applied {
                                anchor: st.anchor.map(idsync_model::Anchor::new),
                            });
                        }
                        // The server refused this row (a constraint, a type): the others go on.
                        Err(sqlx::Error::Database(e)) => {
                            sqlx::query("ROLLBACK TO SAVEPOINT idsync_item")
                                .execute(&mut *tx)
                                .await?;
                            // A duplicate that holds exactly the inserted values is this very
                            // insert, committed by a run stopped before idsync recorded it.
                            let repeated = match (&st.same_row, e.is_unique_violation()) {
                                (Some((sql, params)), true) => bind!(sql.as_str(), params)
                                    .fetch_optional(&mut *tx)
                                    .await?
                                    .is_some(),
                                _ => false,
                            };
                            out.push(if repeated {
                                ExportResult::Applied {
                                    anchor: st.anchor.map(idsync_model::Anchor::new),
                                }
                            } else {
                                ExportResult::Failed(e.to_string())
                            });
                        }
                        Err(e) => return Err(e),
                    }
                    // Mid-batch: this row is written in a transaction not yet committed (a
                    // death here leaves the server to roll the whole batch back).
                    idsync_connectors::crash_point!("sql-export:{id}:row");
                }
                tx.commit().await?;
                Ok(out)
            }};
        }
        match conn {
            Conn::Postgres(c) => run!(c),
            Conn::MySql(c) => run!(c),
            Conn::Sqlite(c) => run!(c),
        }
    }
}

fn anchor_of(attributes: &Attributes, anchor: &[String]) -> Option<String> {
    let mut parts = Vec::new();
    for c in anchor {
        parts.push(attributes.first(c)?.to_text());
    }
    Some(parts.join("/"))
}

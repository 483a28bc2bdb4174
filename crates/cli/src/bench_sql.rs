//! `idsync bench augment-sql`: seed 003's augmentation. A directory of N people (LDIF from
//! `idsync-sample`) is imported and synced first (not timed); then a PostgreSQL table of N HR
//! rows with 10 columns is imported with the SQL connector and synced, joining each row to its
//! person on `EXAMPLE\uid` → `uid` and flowing seven attributes. Timed: that import plus that
//! sync. The table lives in the server named by `IDSYNC_BENCH_PG_URL` (default: the local
//! server's `test` database) under a unique name, and is dropped afterwards.

use anyhow::{bail, Context, Result};
use idsync_engine::Step;
use serde_json::{json, Value};
use sqlx::Connection;
use std::time::Instant;

const URL_VAR: &str = "IDSYNC_BENCH_PG_URL";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn config(table: &str) -> String {
    format!(
        r#"[store]
path = "idsync.db"

[[connector]]
name = "directory"
type = "ldif"
role = "directory"
path = "directory.ldif"
anchor = "entryUUID"

[[connector.object_type]]
name = "person"
object_classes = ["inetOrgPerson", "person"]

[[connector]]
name = "hr"
type = "sql"
role = "business"
url = "env:{URL_VAR}"
table = "{table}"
anchor = "employee_id"
watermark_column = "updated_at"

[[connector.multi_valued]]
attribute = "phones"
column = "phones"
separator = ";"

[[connector.object_type]]
name = "person"

[[join]]
connector = "hr"
cs = "account"
mv = "uid"
normalize = ["strip_domain", "lowercase"]

[[import_flow]]
connector = "directory"
mv = "uid"
cs = "uid"
{}"#,
        [
            ("department", "department"),
            ("costCenter", "cost_center"),
            ("title", "title"),
            ("hireDate", "hire_date"),
            ("phones", "phones"),
            ("location", "location"),
            ("employeeType", "employee_type"),
        ]
        .iter()
        .map(|(mv, cs)| format!(
            "\n[[import_flow]]\nconnector = \"hr\"\nmv = \"{mv}\"\ncs = \"{cs}\"\n"
        ))
        .collect::<String>()
    )
}

/// Fills the table on the server (generate_series): one row per person, 10 columns.
fn create_table(rt: &tokio::runtime::Runtime, url: &str, table: &str, rows: usize) -> Result<()> {
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(url)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL (set {URL_VAR})"))?;
        let statements = [
            format!("DROP TABLE IF EXISTS {table}"),
            format!(
                "CREATE TABLE {table} (employee_id TEXT PRIMARY KEY, account TEXT NOT NULL, \
                 department TEXT, cost_center TEXT, title TEXT, hire_date TIMESTAMPTZ, phones TEXT, \
                 location TEXT, employee_type TEXT, updated_at TIMESTAMPTZ NOT NULL)"
            ),
            format!(
                "INSERT INTO {table} SELECT 'E' || lpad(g::text, 7, '0'), \
                 'EXAMPLE\\u' || lpad(g::text, 7, '0'), \
                 (ARRAY['Engineering','Sales','Finance','Research','Support'])[1 + g % 5], \
                 'CC' || lpad((g % 40)::text, 3, '0'), \
                 (ARRAY['Engineer','Manager','Analyst'])[1 + g % 3], \
                 to_timestamp(1500000000 + g::bigint * 97), \
                 '+1 555 ' || lpad((g % 10000)::text, 4, '0') || ';+1 555 ' || lpad((g * 7 % 10000)::text, 4, '0'), \
                 (ARRAY['Paris','Berlin','Austin'])[1 + g % 3], 'employee', now() \
                 FROM generate_series(0, {}) g",
                rows.saturating_sub(1)
            ),
            format!("ANALYZE {table}"),
        ];
        for s in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(s)).execute(&mut c).await?;
        }
        anyhow::Ok(())
    })
}

fn drop_table(rt: &tokio::runtime::Runtime, url: &str, table: &str) {
    let _ = rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
            .execute(&mut c)
            .await
    });
}

pub fn run(people: usize) -> Result<Value> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let g = idsync_sample::generate(dir.path(), &idsync_sample::Options::bench(people))
        .context("cannot generate the sample estate")?;
    let url = std::env::var(URL_VAR).unwrap_or_else(|_| {
        // Still one thread here: setting the variable the configuration references is safe.
        std::env::set_var(URL_VAR, DEFAULT_URL);
        DEFAULT_URL.to_owned()
    });
    let table = format!("idsync_bench_{}", std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let t = Instant::now();
    create_table(&rt, &url, &table, people)?;
    let table_seconds = t.elapsed().as_secs_f64();
    std::fs::write(&g.config, config(&table))?;
    let result = (|| {
        let mut engine = crate::open_engine(&g.config)?;
        let t = Instant::now();
        engine.run_step(Step::FullImport, "directory")?;
        engine.run_step(Step::FullSync, "directory")?;
        let setup_seconds = t.elapsed().as_secs_f64();
        // Peak memory of the timed part only: reset the high-water mark (Linux).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let t = Instant::now();
        let import = engine.run_step(Step::FullImport, "hr")?;
        let import_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let sync = engine.run_step(Step::FullSync, "hr")?;
        let sync_seconds = t.elapsed().as_secs_f64();
        let secs = import_seconds + sync_seconds;
        if sync.stats.joined as usize != people {
            bail!("{} of {people} rows joined", sync.stats.joined);
        }
        Ok(json!({
            "suite": "augment-sql", "people": people, "rows": import.stats.added, "columns": 10,
            "seconds": crate::bench::round(secs),
            "objects_per_second": (people as f64 / secs).round(),
            "peak_rss_mb": crate::bench::peak_rss_mb(),
            "import_seconds": crate::bench::round(import_seconds),
            "sync_seconds": crate::bench::round(sync_seconds),
            "joined": sync.stats.joined, "not_joined": sync.stats.disconnectors,
            "setup_seconds": crate::bench::round(setup_seconds),
            "table_seconds": crate::bench::round(table_seconds),
        }))
    })();
    drop_table(&rt, &url, &table);
    result
}

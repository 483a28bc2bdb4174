//! Feeds arbitrary bytes to the CSV connector's mapping (header, anchor and identifier columns,
//! multi-valued cells, typed columns including files named by cells) and checks that it never
//! panics: bad input is an error with a line, good input maps to objects.

#![no_main]

use idsync_connectors::csv::CsvConnector;
use idsync_model::ConnectorId;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static CONNECTOR: CsvConnector = connector();
}

fn connector() -> CsvConnector {
    {
        let settings: toml::Table = toml::from_str(
            r#"
path = "fuzz.csv"
anchor = "id"
dn = "account"
multi_valued = ["phones", "member"]
attribute_types = { n = "integer", ok = "boolean", at = "timestamp", raw = "binary", photo = "binary-file", member = "reference" }
"#,
        )
        .expect("fixed settings parse");
        // The folder does not exist: cells naming files fail cleanly.
        CsvConnector::new(
            ConnectorId::new("fuzz"),
            &settings,
            std::path::Path::new("/nonexistent-idsync-fuzz"),
        )
        .expect("fixed settings are valid")
    }
}

fuzz_target!(|data: &[u8]| {
    CONNECTOR.with(|c| {
        let _ = c.map_rows(data, "fuzz.csv", &mut |e| {
            assert!(e.attributes.iter().count() <= data.len() + 1);
            Ok(())
        });
    });
});

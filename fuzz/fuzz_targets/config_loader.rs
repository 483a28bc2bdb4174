//! Feeds arbitrary text to the configuration loader (TOML, connectors, rules, CEL expressions,
//! templates) and checks that it never panics: every error names the file, a line and a column
//! within the text.

#![no_main]

use idsync_rules::Rules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Rules::load(text, "fuzz.toml") {
        assert_eq!(e.file, "fuzz.toml");
        assert!(e.line >= 1 && e.line <= text.lines().count().max(1) + 1, "{e}");
    }
});

//! Feeds arbitrary bytes to the LDIF reader (with URL values refused) and
//! checks that it never panics and that every record it accepts survives a
//! write and a re-read unchanged.

#![no_main]

use idsync_ldif::{NoUrlResolver, Reader, Writer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for item in Reader::new(data, "fuzz", Box::new(NoUrlResolver)) {
        let Ok(located) = item else {
            continue;
        };
        let mut writer = Writer::new(Vec::new());
        writer
            .write(&located.record)
            .expect("a record the reader produced must be writable");
        let out = writer.finish().expect("writing to a Vec cannot fail");
        let again: Vec<_> = Reader::new(&out[..], "rewritten", Box::new(NoUrlResolver))
            .map(|r| r.expect("the writer's output must read back").record)
            .collect();
        assert_eq!(again, vec![located.record]);
    }
});

//! The profile store's SCIM filter and PATCH-path parser: any input yields a tree or an error
//! with a position inside the input, never a panic or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let len = text.chars().count();
        if let Err(e) = idsync_profile_store::filter::parse_filter(text) {
            assert!(e.position <= len);
        }
        if let Err(e) = idsync_profile_store::filter::parse_patch_path(text) {
            assert!(e.position <= len);
        }
    }
});

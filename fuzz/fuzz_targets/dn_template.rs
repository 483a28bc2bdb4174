//! Renders a provisioning identifier template with arbitrary metaverse values (outside input:
//! names, accounts) and an arbitrary template: never a panic, and every value is escaped (RFC
//! 4514) so it cannot add a component to the identifier.

#![no_main]

use idsync_model::{Attributes, Value};
use idsync_rules::render_template;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, value) = text.split_once('\n').unwrap_or(("uid={uid},ou=People", text));
    let mut mv = Attributes::new();
    mv.set("uid", vec![Value::String(value.to_owned())]);
    if let Ok(dn) = render_template("uid={uid},ou=People", &mv) {
        // The value is escaped: the identifier keeps exactly its two components.
        let mut commas = 0;
        let mut chars = dn.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                ',' => commas += 1,
                _ => {}
            }
        }
        assert_eq!(commas, 1, "{dn:?}");
    }
    let _ = render_template(template, &mv);
});

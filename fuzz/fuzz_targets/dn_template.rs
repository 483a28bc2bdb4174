//! Renders a provisioning identifier template with arbitrary metaverse values (outside input:
//! names, accounts) and an arbitrary template, for both identifier syntaxes: never a panic; in a
//! DN every value is escaped (RFC 4514) so it cannot add a component to the identifier, and a
//! plain identifier holds the value exactly.

#![no_main]

use idsync_model::{Attributes, IdentifierSyntax, Value};
use idsync_rules::render_template;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, value) = text.split_once('\n').unwrap_or(("uid={uid},ou=People", text));
    let mut mv = Attributes::new();
    mv.set("uid", vec![Value::String(value.to_owned())]);
    if let Ok(dn) = render_template("uid={uid},ou=People", &mv, IdentifierSyntax::Dn) {
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
    if let Ok(plain) = render_template("{uid}", &mv, IdentifierSyntax::Plain) {
        assert_eq!(plain, value);
    }
    let _ = render_template(template, &mv, IdentifierSyntax::Dn);
    let _ = render_template(template, &mv, IdentifierSyntax::Plain);
});

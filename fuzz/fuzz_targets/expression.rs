//! Feeds arbitrary text to the expression compiler (CEL) and evaluates what compiles over a
//! small object: neither may panic, and evaluation always terminates.

#![no_main]

use idsync_model::{Attributes, Value};
use idsync_rules::{Expr, Vars};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = Expr::compile(text) else {
        return;
    };
    let mut cs = Attributes::new();
    cs.set("givenName", vec![Value::String("Ada".into())]);
    cs.set("sn", vec![Value::String("Lovelace".into())]);
    cs.set("n", vec![Value::Integer(42)]);
    cs.set(
        "mail",
        vec![Value::String("a@x.test".into()), Value::String("b@x.test".into())],
    );
    let mut mv = Attributes::new();
    mv.set("uid", vec![Value::String("ada".into())]);
    let vars = Vars::new(Some(&cs), Some(&mv));
    let _ = expr.eval(&vars);
    let _ = expr.eval_bool(&vars);
});

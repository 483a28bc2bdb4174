//! Expressions in rules: the Common Expression Language, through the maintained `cel` crate.
//!
//! CEL is sandboxed and always terminates, which is what a rule an administrator writes must be.
//! An expression sees `cs` (the connector-space object's attributes) and, in export flows and
//! provisioning, `mv` (the metaverse object's attributes). A single-valued attribute is a value,
//! a multi-valued one a list; an attribute may be named as the source spells it or in lower case.

use cel::{Context, Env, Program};
use idsync_model::{Attributes, Blob, Reference, Value};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // The strings extension gives lowerAscii, trim, split, replace, join: the normalisation
        // functions identity rules need. It only fails on a duplicate declaration.
        env.add_extension(cel::extensions::strings)
            .expect("the strings extension declares each function once");
        Arc::new(env)
    })
}

/// A compiled expression with its source text kept for messages and rule versions.
pub struct Expr {
    pub source: String,
    program: Program,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

/// The variables an expression is evaluated against. They are converted to CEL values on first
/// use and once per object: rules that only copy attributes never pay for the conversion.
pub struct Vars<'a> {
    cs: Option<&'a Attributes>,
    mv: Option<&'a Attributes>,
    converted: std::cell::OnceCell<(Option<cel::Value>, Option<cel::Value>)>,
}

impl<'a> Vars<'a> {
    pub fn new(cs: Option<&'a Attributes>, mv: Option<&'a Attributes>) -> Self {
        Self {
            cs,
            mv,
            converted: std::cell::OnceCell::new(),
        }
    }

    fn values(&self) -> &(Option<cel::Value>, Option<cel::Value>) {
        self.converted.get_or_init(|| {
            (
                self.cs.map(attributes_to_cel),
                self.mv.map(attributes_to_cel),
            )
        })
    }
}

impl Expr {
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = env().compile(source).map_err(|e| {
            e.to_string()
                .lines()
                .next()
                .unwrap_or("invalid expression")
                .to_owned()
        })?;
        Ok(Self {
            source: source.to_owned(),
            program,
        })
    }

    /// Evaluates to values: null is no value, a list is several values.
    pub fn eval(&self, vars: &Vars<'_>) -> Result<Vec<Value>, String> {
        let mut ctx = Context::with_env(Arc::clone(env()));
        let (cs, mv) = vars.values();
        if let Some(cs) = cs {
            ctx.add_variable_from_value("cs", cs.clone());
        }
        if let Some(mv) = mv {
            ctx.add_variable_from_value("mv", mv.clone());
        }
        let out = self
            .program
            .execute(&ctx)
            .map_err(|e| format!("expression `{}`: {e}", self.source))?;
        let mut values = Vec::new();
        cel_to_values(out, &mut values)
            .map_err(|e| format!("expression `{}`: {e}", self.source))?;
        Ok(values)
    }

    /// Evaluates a condition: anything but `true` is false; an error is an error.
    pub fn eval_bool(&self, vars: &Vars<'_>) -> Result<bool, String> {
        let v = self.eval(vars)?;
        Ok(matches!(v.as_slice(), [Value::Boolean(true)]))
    }
}

fn value_to_cel(v: &Value) -> cel::Value {
    match v {
        Value::String(s) => cel::Value::from(s.clone()),
        Value::Integer(i) => cel::Value::Int(*i),
        Value::Boolean(b) => cel::Value::Bool(*b),
        Value::Timestamp(t) => cel::Value::Int(*t),
        Value::Binary(b) => match &b.data {
            Some(d) => cel::Value::from(d.to_vec()),
            None => cel::Value::Null,
        },
        Value::Reference(Reference::Dn(d)) => cel::Value::from(d.as_str().to_owned()),
        Value::Reference(Reference::Mv(m)) => cel::Value::from(m.as_str().to_owned()),
    }
}

fn attributes_to_cel(attrs: &Attributes) -> cel::Value {
    let mut map: HashMap<String, cel::Value> = HashMap::with_capacity(attrs.len() * 2);
    for (name, values) in attrs.iter() {
        let v = if values.len() == 1 {
            value_to_cel(&values[0])
        } else {
            cel::Value::List(Arc::new(values.iter().map(value_to_cel).collect()))
        };
        let lower = name.key();
        if lower != name.as_str() {
            map.insert(lower, v.clone());
        }
        map.insert(name.as_str().to_owned(), v);
    }
    cel::Value::from(map)
}

fn cel_to_values(v: cel::Value, out: &mut Vec<Value>) -> Result<(), String> {
    match v {
        cel::Value::Null => {}
        cel::Value::String(s) => out.push(Value::String(s.to_string())),
        cel::Value::Int(i) => out.push(Value::Integer(i)),
        cel::Value::UInt(u) => out.push(Value::Integer(
            i64::try_from(u).map_err(|_| format!("{u} does not fit a 64-bit integer"))?,
        )),
        cel::Value::Bool(b) => out.push(Value::Boolean(b)),
        cel::Value::Bytes(b) => out.push(Value::Binary(Blob::from_bytes(b.as_ref().clone()))),
        cel::Value::Timestamp(t) => out.push(Value::Timestamp(t.timestamp())),
        cel::Value::List(items) => {
            for item in items.iter() {
                cel_to_values(item.clone(), out)?;
            }
        }
        other => {
            return Err(format!(
                "a value of type {} cannot be an attribute value",
                other.type_of()
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> Attributes {
        let mut a = Attributes::new();
        a.set("givenName", vec!["Ann".into()]);
        a.set("sn", vec!["Lee".into()]);
        a.set("mail", vec!["ann@x.test".into(), "a.lee@x.test".into()]);
        a
    }

    #[test]
    fn expressions_see_attributes_by_either_spelling() {
        let p = person();
        let vars = Vars::new(Some(&p), None);
        let e = Expr::compile("cs.givenName + ' ' + cs.sn").unwrap();
        assert_eq!(e.eval(&vars).unwrap(), vec![Value::from("Ann Lee")]);
        let e = Expr::compile("cs.givenname.lowerAscii()").unwrap();
        assert_eq!(e.eval(&vars).unwrap(), vec![Value::from("ann")]);
        let e = Expr::compile("cs.mail").unwrap();
        assert_eq!(e.eval(&vars).unwrap().len(), 2);
        let e = Expr::compile("has(cs.title) ? cs.title : null").unwrap();
        assert!(e.eval(&vars).unwrap().is_empty());
    }

    #[test]
    fn a_syntax_error_is_reported() {
        assert!(Expr::compile("cs.givenName +").is_err());
    }

    #[test]
    fn a_missing_attribute_is_an_error_not_a_panic() {
        let p = person();
        let vars = Vars::new(Some(&p), None);
        let e = Expr::compile("cs.title").unwrap();
        assert!(e.eval(&vars).is_err());
    }
}

//! Identifier templates (`uid={uid},ou=people,dc=example,dc=test`) and the escaping of the
//! values put into them by the target's identifier syntax: RFC 4514 for a DN, so a hostile
//! attribute value cannot change the shape of a DN; nothing for a plain identifier (a SCIM
//! `userName`, a table or file key), which must equal the value exactly.

pub use idsync_model::escape_rdn_value;
use idsync_model::{Attributes, IdentifierSyntax};

/// Checks that every `{` has its `}` and names an attribute.
pub fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else {
            return Err("a `{` has no closing `}`".to_owned());
        };
        if rest[i + 1..i + j].trim().is_empty() {
            return Err("`{}` names no attribute".to_owned());
        }
        rest = &rest[i + j + 1..];
    }
    Ok(())
}

/// Fills `{attr}` placeholders with the first value of each metaverse attribute, escaped as
/// `syntax` needs.
pub fn render_template(
    t: &str,
    mv: &Attributes,
    syntax: IdentifierSyntax,
) -> Result<String, String> {
    let mut out = String::with_capacity(t.len() + 16);
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').ok_or("a `{` has no closing `}`")?;
        let name = rest[i + 1..i + j].trim();
        let value = mv
            .first(name)
            .map(|v| v.to_text())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("attribute `{name}` has no value"))?;
        match syntax {
            IdentifierSyntax::Dn => out.push_str(&escape_rdn_value(&value)),
            IdentifierSyntax::Plain => out.push_str(&value),
        }
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_escaped() {
        assert_eq!(escape_rdn_value("Smith, John"), r"Smith\, John");
        assert_eq!(escape_rdn_value("#x "), r"\#x\ ");
        assert_eq!(escape_rdn_value("a+b=c\\"), r"a\+b\=c\\");
        let mut mv = Attributes::new();
        mv.set("uid", vec!["ann,ou=admins".into()]);
        assert_eq!(
            render_template("uid={uid},ou=people", &mv, IdentifierSyntax::Dn).unwrap(),
            r"uid=ann\,ou\=admins,ou=people"
        );
        assert!(render_template("uid={missing},ou=people", &mv, IdentifierSyntax::Dn).is_err());
    }

    #[test]
    fn plain_identifiers_take_the_value_exactly() {
        let mut mv = Attributes::new();
        for v in [
            "#hash",
            "comma,plus+quote\"lt<gt>semi;",
            " lead and trail ",
            "back\\slash",
            "Ångström 李",
        ] {
            mv.set("uid", vec![v.into()]);
            assert_eq!(
                render_template("{uid}", &mv, IdentifierSyntax::Plain).unwrap(),
                v
            );
        }
    }
}

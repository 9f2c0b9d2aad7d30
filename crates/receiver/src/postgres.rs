//! PostgreSQL identifiers: the validated, always quoted table and column names the
//! PostgreSQL sink writes to and the PostgreSQL source reads from.

/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
const MAX_IDENTIFIER_BYTES: usize = 63;

/// A validated, optionally schema-qualified table name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    name: String,
}

impl TableName {
    pub fn parse(text: &str) -> anyhow::Result<TableName> {
        let (schema, name) = match text.split_once('.') {
            Some((schema, name)) => (Some(identifier(schema, "schema")?), identifier(name, "table")?),
            None => (None, identifier(text, "table")?),
        };
        Ok(TableName { schema, name })
    }

    /// The table's name, without its schema.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote(schema), quote(&self.name)),
            None => quote(&self.name),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Accepts `[A-Za-z_][A-Za-z0-9_]*` of at most 63 bytes. Quoting alone would make any name
/// safe; the narrow alphabet also keeps names unambiguous in logs, psql and `kubectl`.
pub fn identifier(text: &str, what: &str) -> anyhow::Result<String> {
    let mut chars = text.chars();
    let valid_start = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        anyhow::bail!(
            "invalid PostgreSQL {what} name {text:?}: use letters, digits and underscores, not starting with a digit"
        );
    }
    if text.len() > MAX_IDENTIFIER_BYTES {
        anyhow::bail!("PostgreSQL {what} name {text:?} is longer than {MAX_IDENTIFIER_BYTES} bytes");
    }
    Ok(text.to_string())
}

/// A double-quoted identifier. Validated names contain no quote; doubling keeps it safe anyway.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_validated_and_quoted() {
        assert_eq!(TableName::parse("contacts").unwrap().quoted(), r#""contacts""#);
        assert_eq!(TableName::parse("crm.Contacts_2").unwrap().quoted(), r#""crm"."Contacts_2""#);
        for bad in ["", "1contacts", "contacts; drop table x", "a.b.c", "con\"tacts", "naïve", &"x".repeat(64)] {
            assert!(TableName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(quote(r#"a"b"#), r#""a""b""#);
    }
}

//! What the PostgreSQL sink and the PostgreSQL source share: validated, always quoted table
//! and column names, and errors described without the row values they quote.

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

/// The server's message and SQLSTATE, without row values: the reason reaches logs and the
/// mapping's status and events, which more people can read than the tables' rows.
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            format!("PostgreSQL: {} (SQLSTATE {})", without_values(db.code().code(), db.message()), db.code().code())
        }
        None => format!("PostgreSQL: {error}"),
    }
}

/// `message` of an error with SQLSTATE `code` without the value it quotes. The detail, which
/// quotes whole rows, is never taken; data exceptions (class 22) quote the offending value
/// after a colon (`invalid input syntax for type integer: "lead"`). Other messages quote only
/// names (of constraints, columns, tables).
fn without_values<'m>(code: &str, message: &'m str) -> &'m str {
    match message.find(": \"") {
        Some(colon) if code.starts_with("22") => &message[..colon],
        _ => message,
    }
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

    #[test]
    fn data_exceptions_lose_the_value_they_quote_and_names_stay() {
        assert_eq!(
            without_values("22P02", r#"invalid input syntax for type integer: "lead""#),
            "invalid input syntax for type integer"
        );
        assert_eq!(
            without_values("22001", "value too long for type character varying(20)"),
            "value too long for type character varying(20)"
        );
        let names = r#"duplicate key value violates unique constraint "people_pkey""#;
        assert_eq!(without_values("23505", names), names);
    }
}

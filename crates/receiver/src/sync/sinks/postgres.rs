//! Upserts records into a PostgreSQL table, one transaction per batch.
//!
//! The table has one row per match key: the key column (the match key's external field, primary
//! key), one column per mapped field, one `text[]` column per association field (the associated
//! records' ids), and `hubspot_object_id`, `hubspot_updated_at` and `deleted`. Every write is guarded by `hubspot_updated_at`, so a replayed or late record never
//! overwrites newer data. A record with the same timestamp applies (HubSpot can write twice in
//! one millisecond, and the worker only delivers a state it has not delivered before), except
//! over a deletion: at the same instant a deletion wins, as in the worker's plan.
//!
//! Deletions are tombstones (`deleted = true`) rather than `DELETE`s: a removed row would forget
//! its timestamp, and a late upsert could bring it back.
//!
//! Values are sent as text parameters and the server converts them to each column's type, so a
//! table made by hand may use `integer`, `date`, `jsonb` and the like. Identifiers are validated
//! when the sink is built and always quoted; values are never part of the SQL text.

use std::borrow::Cow;
use std::time::Duration;

use bytes::BytesMut;
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

use super::SinkError;
use crate::postgres::{TableName, describe, identifier, quote};
use crate::sync::plan::{Op, Record};
use model::config::MappingConfig;

/// Column holding HubSpot's object id.
pub const OBJECT_ID_COLUMN: &str = "hubspot_object_id";
/// Column holding HubSpot's `updatedAt` (or the deletion time) of the row's state.
pub const UPDATED_AT_COLUMN: &str = "hubspot_updated_at";
/// Column marking rows whose HubSpot object is gone.
pub const DELETED_COLUMN: &str = "deleted";
const RESERVED_COLUMNS: [&str; 3] = [OBJECT_ID_COLUMN, UPDATED_AT_COLUMN, DELETED_COLUMN];

/// How long connecting may take unless the connection string says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one batch may take (connecting included) before it counts as failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL table destination.
pub struct PostgresSink {
    connection: tokio_postgres::Config,
    table: TableName,
    /// The key column, then the field columns, then the association columns, in statement
    /// parameter order.
    columns: Vec<String>,
    /// How many of `columns`, at the end, hold associations.
    association_columns: usize,
    create_table: bool,
    sql: Sql,
    /// The open connection and its prepared statements; `None` until the first delivery and
    /// after a connection failure.
    session: tokio::sync::Mutex<Option<Session>>,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink").field("table", &self.table.to_string()).finish_non_exhaustive()
    }
}

struct Session {
    client: Client,
    upsert: Statement,
    retire: Statement,
}

/// The statements of one table, built once from validated identifiers.
#[derive(Debug)]
struct Sql {
    create_table: String,
    create_index: String,
    /// `$1` key, `$2..` fields, then object id and timestamp: insert, or update the row when the
    /// record is not older.
    upsert: String,
    /// `$1` object id, `$2` timestamp, `$3` key or NULL: marks the object's rows under any other
    /// key (all of them when `$3` is NULL) deleted, unless they are newer.
    retire: String,
}

impl Sql {
    fn new(table: &TableName, columns: &[String], association_columns: usize) -> Sql {
        let t = table.quoted();
        let key = quote(&columns[0]);
        let (object_id, updated_at, deleted) =
            (quote(OBJECT_ID_COLUMN), quote(UPDATED_AT_COLUMN), quote(DELETED_COLUMN));

        let definitions: Vec<String> = std::iter::once(format!("{key} text PRIMARY KEY"))
            .chain(columns[1..].iter().enumerate().map(|(i, c)| {
                let array = i + 1 >= columns.len() - association_columns;
                format!("{} {}", quote(c), if array { "text[]" } else { "text" })
            }))
            .chain([
                format!("{object_id} text NOT NULL"),
                format!("{updated_at} timestamptz NOT NULL"),
                format!("{deleted} boolean NOT NULL DEFAULT false"),
            ])
            .collect();
        let create_table = format!("CREATE TABLE IF NOT EXISTS {t} ({})", definitions.join(", "));
        let index = quote(&format!("{}_{OBJECT_ID_COLUMN}_idx", table.name()));
        let create_index = format!("CREATE INDEX IF NOT EXISTS {index} ON {t} ({object_id})");

        let inserted: Vec<String> =
            columns.iter().map(|c| quote(c)).chain([object_id.clone(), updated_at.clone(), deleted.clone()]).collect();
        let placeholders: Vec<String> = (1..=columns.len() + 2).map(|n| format!("${n}")).collect();
        let assignments: Vec<String> = columns[1..]
            .iter()
            .map(|c| format!("{0} = excluded.{0}", quote(c)))
            .chain([
                format!("{object_id} = excluded.{object_id}"),
                format!("{updated_at} = excluded.{updated_at}"),
                format!("{deleted} = false"),
            ])
            .collect();
        // A row without a timestamp (written by someone else) counts as oldest.
        let upsert = format!(
            "INSERT INTO {t} AS existing ({}) VALUES ({}, false) \
             ON CONFLICT ({key}) DO UPDATE SET {} \
             WHERE existing.{updated_at} IS NULL \
             OR existing.{updated_at} < excluded.{updated_at} \
             OR (existing.{updated_at} = excluded.{updated_at} AND NOT existing.{deleted})",
            inserted.join(", "),
            placeholders.join(", "),
            assignments.join(", "),
        );
        let retire = format!(
            "UPDATE {t} SET {deleted} = true, {updated_at} = $2 \
             WHERE {object_id} = $1 AND {key} IS DISTINCT FROM $3 \
             AND ({updated_at} IS NULL OR {updated_at} <= $2)"
        );
        Sql { create_table, create_index, upsert, retire }
    }
}

impl PostgresSink {
    /// Checks the connection string, the table name and the mapping's column names; connects
    /// on the first delivery.
    pub fn new(url: &str, table: &str, create_table: bool, mapping: &MappingConfig) -> anyhow::Result<PostgresSink> {
        let mut connection: tokio_postgres::Config =
            url.parse().map_err(|_| anyhow::anyhow!("invalid PostgreSQL connection string"))?;
        if connection.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            anyhow::bail!("sslmode=require is not supported yet: the PostgreSQL destination connects without TLS");
        }
        if connection.get_connect_timeout().is_none() {
            connection.connect_timeout(CONNECT_TIMEOUT);
        }
        let table = TableName::parse(table)?;
        let columns = columns(mapping)?;
        let association_columns = mapping.associations.len();
        let sql = Sql::new(&table, &columns, association_columns);
        Ok(PostgresSink {
            connection,
            table,
            columns,
            association_columns,
            create_table,
            sql,
            session: tokio::sync::Mutex::new(None),
        })
    }

    /// The database and table, without credentials: `host:port/dbname/schema.table`.
    pub fn target(&self) -> String {
        let hosts: Vec<String> = self
            .connection
            .get_hosts()
            .iter()
            .map(|host| match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = self.connection.get_ports().iter().map(u16::to_string).collect();
        format!(
            "{}:{}/{}/{}",
            hosts.join(","),
            ports.join(","),
            self.connection.get_dbname().unwrap_or_default(),
            self.table
        )
    }

    /// Writes `records` in one transaction: all of them or none.
    pub async fn deliver(&self, records: &[Record]) -> Result<(), SinkError> {
        let rows = records.iter().map(|record| self.row(record)).collect::<Result<Vec<_>, _>>()?;
        let mut session = self.session.lock().await;
        let outcome = tokio::time::timeout(DELIVERY_TIMEOUT, async {
            if session.is_none() {
                *session = Some(self.connect().await?);
            }
            let open = session.as_mut().expect("connected above");
            write(open, &rows).await
        })
        .await;
        let result = match outcome {
            Ok(result) => result,
            Err(_) => Err(SinkError::Retryable {
                reason: format!("PostgreSQL did not answer within {}s", DELIVERY_TIMEOUT.as_secs()),
                retry_after: None,
            }),
        };
        // After a timeout the connection's state is unknown; after an error it may be gone.
        // Either way the next batch starts on a new one.
        if result.is_err() {
            *session = None;
        }
        result
    }

    async fn connect(&self) -> Result<Session, SinkError> {
        let (client, connection) = self.connection.connect(NoTls).await.map_err(classify)?;
        let table = self.table.to_string();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(table, error = %describe(&e), "PostgreSQL connection closed");
            }
        });
        if self.create_table {
            client.batch_execute(&self.sql.create_table).await.map_err(classify)?;
            client.batch_execute(&self.sql.create_index).await.map_err(classify)?;
        }
        let upsert = client.prepare(&self.sql.upsert).await.map_err(classify)?;
        let retire = client.prepare(&self.sql.retire).await.map_err(classify)?;
        Ok(Session { client, upsert, retire })
    }

    /// The statement parameters of one record, checked before anything is sent.
    fn row<'r>(&self, record: &'r Record) -> Result<Row<'r>, SinkError> {
        if record.updated_at_ms().is_none() {
            return Err(SinkError::Permanent {
                reason: format!("record of object {} has no valid timestamp", record.object_id),
            });
        }
        let upsert = match (record.op, &record.key) {
            (Op::Upsert, Some(key)) => {
                let (fields, associations) =
                    self.columns[1..].split_at(self.columns.len() - 1 - self.association_columns);
                let fields = fields.iter().map(|c| Text::of(record.fields.get(c).and_then(|v| v.as_deref())));
                let associations =
                    associations.iter().map(|c| Text(record.associations.get(c).map(|ids| array_literal(ids))));
                Some(std::iter::once(Text::of(Some(key.as_str()))).chain(fields).chain(associations).collect())
            }
            // Without a key value the object has no row: any row it had under an earlier key is
            // retired below.
            _ => None,
        };
        Ok(Row {
            object_id: Text::of(Some(&record.object_id)),
            updated_at: Text::of(Some(&record.updated_at)),
            key: Text::of(record.key.as_deref().filter(|_| record.op == Op::Upsert)),
            upsert,
        })
    }
}

/// One record as statement parameters.
struct Row<'r> {
    object_id: Text<'r>,
    updated_at: Text<'r>,
    /// The key the object now has; NULL for deletions.
    key: Text<'r>,
    /// Key and field values, when the record leaves a row behind.
    upsert: Option<Vec<Text<'r>>>,
}

/// Upserts each object's current row, then retires each object's rows under other keys, all
/// pipelined in one transaction. Upserts go first because a row's key can pass from one object
/// to another in one batch: when HubSpot merges contacts into a new record, the primary's row
/// is taken over by the new id while the old id's deletion retires what it still holds, and
/// retiring first would leave the key's row marked deleted at the same instant as the upsert.
async fn write(session: &mut Session, rows: &[Row<'_>]) -> Result<(), SinkError> {
    let transaction = session.client.transaction().await.map_err(classify)?;
    let mut parameters: Vec<Vec<&(dyn ToSql + Sync)>> = Vec::new();
    let mut statements: Vec<&Statement> = Vec::new();
    for (row, values) in rows.iter().filter_map(|row| Some((row, row.upsert.as_ref()?))) {
        let mut upsert: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        upsert.push(&row.object_id);
        upsert.push(&row.updated_at);
        parameters.push(upsert);
        statements.push(&session.upsert);
    }
    for row in rows {
        parameters.push(vec![&row.object_id, &row.updated_at, &row.key]);
        statements.push(&session.retire);
    }
    let executions =
        statements.iter().zip(&parameters).map(|(statement, params)| transaction.execute(*statement, params));
    // Requests go out back to back; responses come in order, so the first error is the cause.
    futures::future::try_join_all(executions).await.map_err(classify)?;
    transaction.commit().await.map_err(classify)
}

/// A parameter sent in text format: the server parses it as the column's type, as it would a
/// literal. `None` is SQL NULL.
#[derive(Debug)]
struct Text<'a>(Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    fn of(text: Option<&'a str>) -> Text<'a> {
        Text(text.map(Cow::Borrowed))
    }
}

/// A PostgreSQL array literal of `ids`, each element quoted: what a text array column gets.
pub fn array_literal(ids: &[String]) -> Cow<'static, str> {
    let elements: Vec<String> =
        ids.iter().map(|id| format!("\"{}\"", id.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    Cow::Owned(format!("{{{}}}", elements.join(",")))
}

impl ToSql for Text<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// The key column, the field columns, then the association columns of `mapping`, validated: identifiers, no reserved
/// names, no column twice.
fn columns(mapping: &MappingConfig) -> anyhow::Result<Vec<String>> {
    let key = &mapping.records.match_key;
    let mut columns = vec![identifier(&key.external_field, "column")?];
    for field in mapping.records.fields.iter().filter(|f| f.direction.to_external()) {
        let column = identifier(&field.external_field, "column")?;
        if column == columns[0] && field.hubspot_property == key.hubspot_property {
            // The match key mapped as a field as well: the key column already holds it.
            continue;
        }
        if columns.contains(&column) {
            anyhow::bail!("column {column:?} is mapped twice");
        }
        columns.push(column);
    }
    for association in &mapping.associations {
        let column = identifier(&association.field, "column")?;
        if columns.contains(&column) {
            anyhow::bail!("column {column:?} is mapped twice");
        }
        columns.push(column);
    }
    if let Some(reserved) = columns.iter().find(|c| RESERVED_COLUMNS.contains(&c.as_str())) {
        anyhow::bail!("column {reserved:?} is reserved for the destination's own bookkeeping");
    }
    Ok(columns)
}

/// Connection trouble, conflicts between transactions and server shutdowns pass; a statement
/// the table cannot take (missing table or column, constraint, bad value, privileges) will
/// fail again the same way.
fn classify(error: tokio_postgres::Error) -> SinkError {
    let reason = describe(&error);
    let permanent = error.code().is_some_and(|code| {
        let class = &code.code()[..2];
        // 0A feature not supported, 22 data exception, 23 integrity constraint violation,
        // 42 syntax error or access rule violation (undefined table/column, privileges).
        matches!(class, "0A" | "22" | "23" | "42")
    });
    if permanent { SinkError::Permanent { reason } } else { SinkError::Retryable { reason, retry_after: None } }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_mappings::{self, field};
    use model::api::mapping::Direction;

    fn mapping(key: &str, fields: &[(&str, &str)]) -> MappingConfig {
        let fields = fields.iter().map(|(hubspot, external)| field(hubspot, external, Direction::ToExternal)).collect();
        test_mappings::mapping("crm/contacts", "contacts", ("email", key), fields)
    }

    #[test]
    fn associations_are_text_array_columns_after_the_fields() {
        let mut m = mapping("email", &[("firstname", "first_name")]);
        m.associations = vec![model::api::mapping::AssociationMapping {
            to_object_type: "companies".into(),
            field: "company_ids".into(),
        }];
        assert_eq!(columns(&m).unwrap(), ["email", "first_name", "company_ids"]);
        let sql = Sql::new(&TableName::parse("contacts").unwrap(), &columns(&m).unwrap(), 1);
        assert!(sql.create_table.contains(r#""first_name" text, "company_ids" text[], "#), "{}", sql.create_table);
        assert_eq!(array_literal(&["12".into(), "3".into()]), r#"{"12","3"}"#);
        assert_eq!(array_literal(&[]), "{}");
        assert_eq!(array_literal(&[r#"a"b\c"#.into()]), r#"{"a\"b\\c"}"#);

        m.associations[0].field = "first_name".into();
        assert!(columns(&m).unwrap_err().to_string().contains("mapped twice"));
    }

    #[test]
    fn columns_come_from_the_mapping_without_clashes() {
        let m = mapping("email", &[("firstname", "first_name"), ("email", "email")]);
        assert_eq!(columns(&m).unwrap(), ["email", "first_name"]);

        let mut to_hubspot_only = mapping("email", &[("firstname", "first_name")]);
        to_hubspot_only.records.fields[0].direction = Direction::ToHubSpot;
        assert_eq!(columns(&to_hubspot_only).unwrap(), ["email"]);

        let clashes = [
            mapping("email", &[("firstname", "name"), ("lastname", "name")]),
            mapping("email", &[("hs_additional_emails", "email")]),
            mapping("email", &[("firstname", "deleted")]),
            mapping("hubspot_updated_at", &[]),
            mapping("email", &[("firstname", "first name")]),
        ];
        for m in clashes {
            assert!(columns(&m).is_err(), "{:?} accepted", m.records.fields);
        }
    }

    #[test]
    fn statements_quote_every_identifier_and_carry_the_guard() {
        let table = TableName::parse("crm.contacts").unwrap();
        let sql = Sql::new(&table, &["email".into(), "first_name".into()], 0);
        assert_eq!(
            sql.upsert,
            "INSERT INTO \"crm\".\"contacts\" AS existing (\"email\", \"first_name\", \"hubspot_object_id\", \
             \"hubspot_updated_at\", \"deleted\") VALUES ($1, $2, $3, $4, false) ON CONFLICT (\"email\") DO UPDATE \
             SET \"first_name\" = excluded.\"first_name\", \"hubspot_object_id\" = excluded.\"hubspot_object_id\", \
             \"hubspot_updated_at\" = excluded.\"hubspot_updated_at\", \"deleted\" = false WHERE \
             existing.\"hubspot_updated_at\" IS NULL OR existing.\"hubspot_updated_at\" < \
             excluded.\"hubspot_updated_at\" OR (existing.\"hubspot_updated_at\" = excluded.\"hubspot_updated_at\" \
             AND NOT existing.\"deleted\")"
        );
        assert_eq!(
            sql.create_table,
            "CREATE TABLE IF NOT EXISTS \"crm\".\"contacts\" (\"email\" text PRIMARY KEY, \"first_name\" text, \
             \"hubspot_object_id\" text NOT NULL, \"hubspot_updated_at\" timestamptz NOT NULL, \"deleted\" boolean \
             NOT NULL DEFAULT false)"
        );
        assert_eq!(
            sql.create_index,
            "CREATE INDEX IF NOT EXISTS \"contacts_hubspot_object_id_idx\" ON \"crm\".\"contacts\" (\"hubspot_object_id\")"
        );
    }

    #[test]
    fn connection_strings_are_checked_and_never_shown() {
        let m = mapping("email", &[]);
        let sink = PostgresSink::new("postgres://sync:s3cret@db.internal:5433/crm", "contacts", false, &m).unwrap();
        assert_eq!(sink.target(), "db.internal:5433/crm/contacts");
        assert!(!format!("{sink:?}").contains("s3cret"));
        let error = PostgresSink::new("postgres://sync:s3cret@db:port/crm", "contacts", false, &m).unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        assert!(PostgresSink::new("postgres://db/crm?sslmode=require", "contacts", false, &m).is_err());
        assert!(PostgresSink::new("postgres://db/crm", "contacts;", false, &m).is_err());
    }
}

//! The PostgreSQL source: polls a table or query for rows whose cursor column grew since the
//! last poll and queues them like ingested records. Each row is validated as the ingest API
//! validates a record, after dropping the columns the mapping does not take; a row that fails
//! is kept as rejected (category `INVALID_RECORD`) instead of blocking the source. Queued rows
//! and the new cursor are committed together, so every change is queued once.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio_postgres::NoTls;

use super::ingest::validate;
use super::store::{Rejection, ReverseStore};
use crate::metrics::{Metrics, SourceLabels};
use crate::postgres::{TableName, describe, identifier, quote};
use crate::time::now_ms;
use hubspot::error::json_error_without_values;
use model::api::mapping::PostgresPoll;
use model::config::{MappingConfig, SourceConfig};

/// How long connecting and one poll may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);

/// Polls one PostgreSQL source of a mapping.
pub struct PostgresPoller {
    /// `namespace/mapping/postgres-<index>`: names the source's cursor.
    id: String,
    /// `postgres-<index>`: the source within its mapping, as metrics label it.
    source: String,
    mapping: MappingConfig,
    url: String,
    /// `"table"` or `(query)`, ready to follow `FROM`.
    relation: String,
    cursor: String,
    interval: Duration,
}

impl PostgresPoller {
    /// The `index`th source of `mapping`, which must be a PostgreSQL source.
    pub fn new(mapping: &MappingConfig, index: usize) -> anyhow::Result<PostgresPoller> {
        let Some(SourceConfig::Postgres { url, poll }) = mapping.sources.get(index) else {
            anyhow::bail!("mapping {} has no PostgreSQL source {index}", mapping.name);
        };
        let PostgresPoll { table, query, cursor_column, interval_seconds } = poll;
        let relation = match (table, query) {
            (Some(table), None) => TableName::parse(table)?.quoted(),
            (None, Some(query)) => format!("({query})"),
            _ => anyhow::bail!("mapping {}: source {index}: set exactly one of table and query", mapping.name),
        };
        let source = format!("postgres-{index}");
        Ok(PostgresPoller {
            id: format!("{}/{source}", mapping.name),
            source,
            mapping: mapping.clone(),
            url: url.clone(),
            relation,
            cursor: quote(&identifier(cursor_column, "cursor column")?),
            interval: Duration::from_secs(u64::from((*interval_seconds).max(1))),
        })
    }

    /// Polls every `interval` until `shutdown` resolves; a failed poll is counted in
    /// `reverse_source_failures` and tried again at the next interval.
    pub async fn run(
        self,
        store: std::sync::Arc<ReverseStore>,
        metrics: std::sync::Arc<Metrics>,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let labels = SourceLabels { mapping: self.mapping.name.clone(), source: self.source.clone() };
        let failures = metrics.reverse_source_failures.get_or_create(&labels).clone();
        loop {
            let poll = tokio::time::timeout(POLL_TIMEOUT, self.poll_once(&store));
            let result = tokio::select! {
                _ = &mut shutdown => return,
                result = poll => result,
            };
            match result {
                Ok(Ok(queued)) => tracing::debug!(source = %self.id, queued, "polled PostgreSQL source"),
                Ok(Err(e)) => {
                    failures.inc();
                    tracing::warn!(source = %self.id, error = %format!("{e:#}"), "polling PostgreSQL source failed")
                }
                Err(_) => {
                    failures.inc();
                    tracing::warn!(source = %self.id, "polling PostgreSQL source timed out")
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// Reads the rows changed since the last poll and queues them; returns how many rows it
    /// read (queued or rejected).
    pub async fn poll_once(&self, store: &ReverseStore) -> anyhow::Result<usize> {
        let (client, connection) =
            tokio_postgres::connect(&self.url, NoTls).await.map_err(failed("connecting to the PostgreSQL source"))?;
        let connection = tokio::spawn(connection);
        let result = self.read_changes(&client, store).await;
        drop(client);
        let _ = connection.await;
        result
    }

    async fn read_changes(&self, client: &tokio_postgres::Client, store: &ReverseStore) -> anyhow::Result<usize> {
        let (relation, cursor) = (&self.relation, &self.cursor);
        // The cursor is kept as text and cast back to the column's type, so that it compares
        // as the column does (numbers as numbers, timestamps as timestamps).
        let Some(type_row) = client
            .query_opt(&format!("SELECT pg_typeof(t.{cursor})::text FROM {relation} t LIMIT 1"), &[])
            .await
            .map_err(failed("reading the cursor column's type"))?
        else {
            return Ok(0);
        };
        let cursor_type: String = type_row.get(0);
        let last = store.source_cursor(&self.id).await?;
        let rows = client
            .query(
                &format!(
                    "SELECT to_jsonb(t)::text, t.{cursor}::text FROM {relation} t
                     WHERE t.{cursor} IS NOT NULL AND ($1::text IS NULL OR t.{cursor} > CAST($1::text AS {cursor_type}))
                     ORDER BY t.{cursor}"
                ),
                &[&last],
            )
            .await
            .map_err(failed("reading changed rows"))?;
        let Some(newest) = rows.last().map(|row| row.get::<_, String>(1)) else { return Ok(0) };

        let received_at = now_ms();
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        for row in &rows {
            let row: Value = serde_json::from_str(&row.get::<_, String>(0))
                .map_err(|e| anyhow::anyhow!("decoding a row: {}", json_error_without_values(&e)))?;
            let record = self.taken_columns(row);
            match validate(&self.mapping, std::slice::from_ref(&record), received_at) {
                Ok(valid) => records.extend(valid),
                Err(problems) => rejected.push(Rejection {
                    mapping: self.mapping.name.clone(),
                    key: record
                        .get(&self.mapping.records.match_key.external_field)
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                        .unwrap_or_default(),
                    properties: Default::default(),
                    status: 0,
                    category: super::INVALID_RECORD.into(),
                    message: problems.into_iter().flat_map(|p| p.reasons).collect::<Vec<_>>().join("; "),
                    correlation_id: String::new(),
                    rejected_at: received_at,
                    changed_at: received_at,
                }),
            }
        }
        if !rejected.is_empty() {
            tracing::warn!(source = %self.id, rows = rejected.len(), "PostgreSQL source rows refused; kept as rejected");
        }
        let read = rows.len();
        store.polled(&self.id, records, rejected, newest).await?;
        Ok(read)
    }

    /// The row's columns the mapping takes: the match key, the fields flowing to HubSpot and
    /// the timestamp field. A NULL match key is dropped so that it reads as missing.
    fn taken_columns(&self, row: Value) -> Value {
        let mapping = &self.mapping;
        let takes = |column: &str| {
            column == mapping.records.match_key.external_field
                || mapping.policy.external_timestamp_field.as_deref() == Some(column)
                || mapping.records.fields.iter().any(|f| f.external_field == column && f.direction.to_hubspot())
        };
        match row {
            Value::Object(columns) => Value::Object(
                columns
                    .into_iter()
                    .filter(|(column, value)| {
                        takes(column) && !(column == &mapping.records.match_key.external_field && value.is_null())
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

/// `step` failed with `error`, described without the row values PostgreSQL's messages can
/// quote (a failed cast quotes the value, a detail quotes the row): the failure is logged.
fn failed(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> anyhow::Error {
    move |error| anyhow::anyhow!("{step}: {}", describe(&error))
}

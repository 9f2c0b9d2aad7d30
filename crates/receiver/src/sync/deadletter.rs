//! The dead-letter store: records a destination refused permanently, kept per (mapping,
//! destination, object) so that one bad record never blocks the others and is never lost.
//! A newer refused state of the same object replaces the older one (and counts an attempt);
//! a later successful delivery of the object to that destination resolves its dead letter.

use std::path::Path;

use anyhow::Context;
use prometheus_client::metrics::gauge::Gauge;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::plan::Record;
use crate::sqlite::{self, SharedConnection};

/// One stored refusal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: i64,
    pub mapping: String,
    /// The destination's label (`http-0`), as in metrics.
    pub sink: String,
    /// The destination's stable identity, as in delivered checkpoints.
    pub checkpoint_id: String,
    pub object_id: String,
    pub record: Record,
    /// What the destination answered the last time.
    pub reason: String,
    /// Epoch milliseconds of the first and the last refusal.
    pub first_failed_at_ms: i64,
    pub last_failed_at_ms: i64,
    pub attempts: i64,
}

/// Which dead letters an operation is about. Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterFilter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
}

impl DeadLetterFilter {
    pub fn is_everything(&self) -> bool {
        self.ids.is_empty() && self.mapping.is_none() && self.sink.is_none()
    }
}

/// The dead-letter store: one SQLite file next to the event log, every change fsync'd.
#[derive(Clone)]
pub struct DeadLetterStore {
    conn: SharedConnection,
    /// Records currently stored; kept exact after every change.
    stored: Gauge,
}

impl DeadLetterStore {
    pub fn open(path: &Path, stored: Gauge) -> anyhow::Result<Self> {
        let conn = sqlite::open(path, "dead-letter store")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS dead_letters (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 mapping TEXT NOT NULL,
                 sink TEXT NOT NULL,
                 checkpoint_id TEXT NOT NULL,
                 object_id TEXT NOT NULL,
                 record TEXT NOT NULL,
                 reason TEXT NOT NULL,
                 first_failed_at_ms INTEGER NOT NULL,
                 last_failed_at_ms INTEGER NOT NULL,
                 attempts INTEGER NOT NULL,
                 UNIQUE (mapping, checkpoint_id, object_id)
             );",
        )
        .context("creating dead-letter table")?;
        let conn = SharedConnection::new(conn, "dead-letter store");
        stored.set(conn.run_blocking(count)?);
        Ok(Self { conn, stored })
    }

    /// Stores `record` as refused by destination `sink` (`checkpoint_id`) for `reason`. An
    /// earlier dead letter of the same object there is replaced and its attempts counted on.
    pub async fn add(
        &self,
        sink: &str,
        checkpoint_id: &str,
        record: &Record,
        reason: &str,
        now_ms: i64,
    ) -> anyhow::Result<()> {
        let json = serde_json::to_string(record).context("serialising a dead letter")?;
        let (sink, checkpoint_id, reason) = (sink.to_string(), checkpoint_id.to_string(), reason.to_string());
        let (mapping, object_id) = (record.mapping.clone(), record.object_id.clone());
        self.change(move |conn| {
            conn.execute(
                "INSERT INTO dead_letters (mapping, sink, checkpoint_id, object_id, record, reason,
                     first_failed_at_ms, last_failed_at_ms, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 1)
                 ON CONFLICT (mapping, checkpoint_id, object_id) DO UPDATE SET
                     sink = excluded.sink, record = excluded.record, reason = excluded.reason,
                     last_failed_at_ms = excluded.last_failed_at_ms, attempts = attempts + 1",
                params![mapping, sink, checkpoint_id, object_id, json, reason, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    /// Notes that the dead letters `ids` failed again for `reason` (a redrive that could not
    /// reach the destination): they stay, with the new reason.
    pub async fn note_failure(&self, ids: Vec<i64>, reason: &str, now_ms: i64) -> anyhow::Result<()> {
        let reason = reason.to_string();
        self.change(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut update = tx.prepare_cached(
                    "UPDATE dead_letters SET reason = ?2, last_failed_at_ms = ?3, attempts = attempts + 1
                     WHERE id = ?1",
                )?;
                for id in ids {
                    update.execute(params![id, reason, now_ms])?;
                }
            }
            tx.commit()
        })
        .await
    }

    /// Removes the dead letters of `records` at destination `checkpoint_id`: it has them now.
    pub async fn resolve(&self, checkpoint_id: &str, records: &[Record]) -> anyhow::Result<()> {
        // The common case, on every delivery: nothing stored, nothing to look up.
        if self.stored.get() == 0 {
            return Ok(());
        }
        let keys: Vec<(String, String)> = records.iter().map(|r| (r.mapping.clone(), r.object_id.clone())).collect();
        let checkpoint_id = checkpoint_id.to_string();
        self.change(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut delete = tx.prepare_cached(
                    "DELETE FROM dead_letters WHERE mapping = ?1 AND checkpoint_id = ?2 AND object_id = ?3",
                )?;
                for (mapping, object_id) in keys {
                    delete.execute(params![mapping, checkpoint_id, object_id])?;
                }
            }
            tx.commit()
        })
        .await
    }

    /// Dead letters matching `filter`, oldest first, at most `limit`.
    pub async fn list(&self, filter: &DeadLetterFilter, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
        let filter = filter.clone();
        self.conn
            .run(move |conn| {
                let mut query = conn.prepare_cached(&format!("{SELECT} ORDER BY id"))?;
                let mut found = Vec::new();
                for letter in query.query_map([], read_row)? {
                    if found.len() >= limit {
                        break;
                    }
                    let letter = letter?;
                    if matches(&filter, &letter) {
                        found.push(letter);
                    }
                }
                Ok(found)
            })
            .await
    }

    pub async fn get(&self, id: i64) -> anyhow::Result<Option<DeadLetter>> {
        self.conn
            .run(move |conn| {
                conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?.query_row([id], read_row).optional()
            })
            .await
    }

    /// Removes the dead letters `ids`; returns how many there were.
    pub async fn remove(&self, ids: Vec<i64>) -> anyhow::Result<usize> {
        self.change(move |conn| {
            let tx = conn.transaction()?;
            let mut removed = 0;
            {
                let mut delete = tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
                for id in ids {
                    removed += delete.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(removed)
        })
        .await
    }

    pub async fn count(&self) -> anyhow::Result<i64> {
        self.conn.run(count).await
    }

    /// How many records each mapping (`namespace/name`) has in the store.
    pub async fn count_by_mapping(&self) -> anyhow::Result<Vec<(String, u64)>> {
        self.conn.run(|conn| sqlite::rows_by_mapping(conn, "dead_letters")).await
    }

    /// Runs a change and refreshes the gauge of stored records when rows changed.
    async fn change<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let stored = self.stored.clone();
        self.conn
            .run(move |conn| {
                let before = conn.total_changes();
                let result = work(conn)?;
                if conn.total_changes() != before {
                    stored.set(count(conn)?);
                }
                Ok(result)
            })
            .await
    }
}

const SELECT: &str = "SELECT id, mapping, sink, checkpoint_id, object_id, record, reason, first_failed_at_ms,
    last_failed_at_ms, attempts FROM dead_letters";

fn read_row(row: &rusqlite::Row) -> rusqlite::Result<DeadLetter> {
    let json: String = row.get(5)?;
    let record = serde_json::from_str(&json)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(DeadLetter {
        id: row.get(0)?,
        mapping: row.get(1)?,
        sink: row.get(2)?,
        checkpoint_id: row.get(3)?,
        object_id: row.get(4)?,
        record,
        reason: row.get(6)?,
        first_failed_at_ms: row.get(7)?,
        last_failed_at_ms: row.get(8)?,
        attempts: row.get(9)?,
    })
}

fn matches(filter: &DeadLetterFilter, letter: &DeadLetter) -> bool {
    (filter.ids.is_empty() || filter.ids.contains(&letter.id))
        && filter.mapping.as_ref().is_none_or(|m| *m == letter.mapping)
        && filter.sink.as_ref().is_none_or(|s| *s == letter.sink)
}

fn count(conn: &mut Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM dead_letters", [], |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::sync::plan::Op;

    fn record(object_id: &str, updated_at: &str) -> Record {
        let mut record = Record {
            mapping: "ns/m".into(),
            object_type: "contacts".into(),
            object_id: object_id.into(),
            op: Op::Upsert,
            key: Some(format!("{object_id}@x")),
            fields: BTreeMap::new(),
            updated_at: updated_at.into(),
            idempotency_key: String::new(),
            associations: BTreeMap::new(),
        };
        record.idempotency_key = crate::sync::plan::idempotency_key(&record);
        record
    }

    #[tokio::test]
    async fn refusals_of_one_object_share_a_letter_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead-letters.db");
        let gauge = Gauge::default();
        let store = DeadLetterStore::open(&path, gauge.clone()).unwrap();
        let v1 = record("1", "2026-01-01T00:00:01.000Z");
        let v2 = record("1", "2026-01-01T00:00:02.000Z");
        store.add("http-0", "http-abc", &v1, "HTTP 400", 1_000).await.unwrap();
        store.add("http-0", "http-abc", &record("2", "2026-01-01T00:00:01.000Z"), "HTTP 400", 1_500).await.unwrap();
        store.add("http-0", "http-abc", &v2, "HTTP 422", 2_000).await.unwrap();
        store.add("file-1", "file-def", &v1, "disk", 2_000).await.unwrap();
        assert_eq!(gauge.get(), 3);
        drop(store);

        let gauge = Gauge::default();
        let store = DeadLetterStore::open(&path, gauge.clone()).unwrap();
        assert_eq!(gauge.get(), 3, "the gauge starts from what is stored");
        let first = store.get(1).await.unwrap().unwrap();
        assert_eq!(first.record, v2);
        assert_eq!((first.reason.as_str(), first.attempts), ("HTTP 422", 2));
        assert_eq!((first.first_failed_at_ms, first.last_failed_at_ms), (1_000, 2_000));

        let http = DeadLetterFilter { sink: Some("http-0".into()), ..Default::default() };
        assert_eq!(store.list(&http, 10).await.unwrap().iter().map(|l| l.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(store.list(&DeadLetterFilter::default(), 1).await.unwrap().len(), 1);
        assert!(store.list(&DeadLetterFilter::default(), 0).await.unwrap().is_empty());

        // A delivery of the object resolves its letter at that destination only.
        store.resolve("http-abc", &[v2]).await.unwrap();
        assert!(store.get(1).await.unwrap().is_none());
        assert_eq!(store.count().await.unwrap(), 2);
        assert_eq!(store.remove(vec![2, 99]).await.unwrap(), 1);
        assert_eq!(gauge.get(), 1);
    }
}

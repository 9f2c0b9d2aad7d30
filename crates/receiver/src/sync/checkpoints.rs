//! Delivered checkpoints: per (mapping, destination, object) the `updatedAt` and idempotency
//! key last delivered, so duplicates and late replays never reach a destination twice and
//! never regress it. A record with the same `updatedAt` but another key is a second write in
//! the same millisecond: records are fetched one drain after another, so it is the newer one.
//! Checkpoints are kept per destination so that one failing destination does not make the
//! others receive the same records again on every retry. Each checkpoint also notes when the
//! destination last took the object, so a replay can find what was delivered since a time.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use rusqlite::{OptionalExtension, params};

use super::plan::{Op, Record};
use crate::sqlite::{self, SharedConnection};
use crate::time::now_ms;

/// The checkpoint store: one SQLite file next to the event log.
#[derive(Clone)]
pub struct CheckpointStore {
    conn: SharedConnection,
}

impl CheckpointStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = sqlite::open(path, "checkpoint store")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS delivered (
                 mapping TEXT NOT NULL,
                 sink TEXT NOT NULL,
                 object_id TEXT NOT NULL,
                 updated_at_ms INTEGER NOT NULL,
                 idempotency_key TEXT NOT NULL,
                 match_key TEXT,
                 PRIMARY KEY (mapping, sink, object_id)
             ) WITHOUT ROWID;",
        )
        .context("creating checkpoint table")?;
        // Stores written before replays existed lack the column; their rows have no time.
        sqlite::add_column(&conn, "delivered", "delivered_at_ms", "INTEGER")
            .context("adding the delivery time to the checkpoint table")?;
        Ok(Self { conn: SharedConnection::new(conn, "checkpoint store") })
    }

    /// The records `sink` has not yet seen in this state or a newer one. Records without a
    /// readable `updatedAt` cannot be compared and are always fresh.
    pub async fn fresh(&self, sink: &str, records: &[Record]) -> anyhow::Result<Vec<Record>> {
        let records = records.to_vec();
        let sink = sink.to_string();
        self.conn
            .run(move |conn| {
                let mut query = conn.prepare_cached(
                    "SELECT updated_at_ms, idempotency_key FROM delivered
                 WHERE mapping = ?1 AND sink = ?2 AND object_id = ?3",
                )?;
                let mut fresh = Vec::with_capacity(records.len());
                for record in records {
                    let Some(updated_at) = record.updated_at_ms() else {
                        fresh.push(record);
                        continue;
                    };
                    let delivered: Option<(i64, String)> = query
                        .query_row(params![record.mapping, sink, record.object_id], |row| {
                            Ok((row.get(0)?, row.get(1)?))
                        })
                        .optional()?;
                    let newer = |(at, key): (i64, String)| {
                        updated_at > at || (updated_at == at && record.idempotency_key != key)
                    };
                    if delivered.is_none_or(newer) {
                        fresh.push(record);
                    }
                }
                Ok(fresh)
            })
            .await
    }

    /// Notes that `sink` took `records` now. A checkpoint never moves backwards.
    pub async fn mark_delivered(&self, sink: &str, records: &[Record]) -> anyhow::Result<()> {
        let records = records.to_vec();
        let sink = sink.to_string();
        let now_ms = now_ms();
        self.conn
            .run(move |conn| {
                let tx = conn.transaction()?;
                {
                    let mut upsert = tx.prepare_cached(
                        "INSERT INTO delivered
                         (mapping, sink, object_id, updated_at_ms, idempotency_key, match_key, delivered_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (mapping, sink, object_id) DO UPDATE SET
                         delivered_at_ms = excluded.delivered_at_ms,
                         idempotency_key = CASE WHEN excluded.updated_at_ms >= updated_at_ms
                             THEN excluded.idempotency_key ELSE idempotency_key END,
                         updated_at_ms = max(updated_at_ms, excluded.updated_at_ms),
                         match_key = coalesce(excluded.match_key, match_key)",
                    )?;
                    for record in &records {
                        if let Some(updated_at) = record.updated_at_ms() {
                            upsert.execute(params![
                                record.mapping,
                                sink,
                                record.object_id,
                                updated_at,
                                record.idempotency_key,
                                record.key,
                                now_ms
                            ])?;
                        }
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// Ids of the objects of `mapping` that `sink` took at or after `since_ms`, in id order,
    /// after `after` (paging), at most `limit`.
    pub async fn delivered_since(
        &self,
        mapping: &str,
        sink: &str,
        since_ms: i64,
        after: Option<String>,
        limit: usize,
    ) -> anyhow::Result<Vec<String>> {
        let (mapping, sink) = (mapping.to_string(), sink.to_string());
        self.conn
            .run(move |conn| {
                let mut query = conn.prepare_cached(
                    "SELECT object_id FROM delivered
                 WHERE mapping = ?1 AND sink = ?2 AND delivered_at_ms >= ?3 AND object_id > ?4
                 ORDER BY object_id LIMIT ?5",
                )?;
                let ids = query
                    .query_map(params![mapping, sink, since_ms, after.unwrap_or_default(), limit as i64], |row| {
                        row.get(0)
                    })?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                Ok(ids)
            })
            .await
    }

    /// Gives deletions without a key the key last delivered for that object, so destinations
    /// keyed by the match key can find what to delete.
    pub async fn fill_deleted_keys(&self, records: Vec<Record>) -> anyhow::Result<Vec<Record>> {
        self.conn
            .run(move |conn| {
                let mut query = conn.prepare_cached(
                    "SELECT match_key FROM delivered
                 WHERE mapping = ?1 AND object_id = ?2 AND match_key IS NOT NULL LIMIT 1",
                )?;
                let mut known: HashMap<(String, String), Option<String>> = HashMap::new();
                let mut filled = records;
                for record in filled.iter_mut().filter(|r| r.op == Op::Delete && r.key.is_none()) {
                    let id = (record.mapping.clone(), record.object_id.clone());
                    if !known.contains_key(&id) {
                        let key = query.query_row(params![id.0, id.1], |row| row.get(0)).optional()?;
                        known.insert(id.clone(), key);
                    }
                    record.key = known[&id].clone();
                }
                Ok(filled)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn record(object_id: &str, op: Op, updated_at: &str, key: Option<&str>) -> Record {
        let mut record = Record {
            mapping: "ns/m".into(),
            object_type: "contacts".into(),
            object_id: object_id.into(),
            op,
            key: key.map(str::to_string),
            fields: BTreeMap::new(),
            updated_at: updated_at.into(),
            idempotency_key: String::new(),
            associations: BTreeMap::new(),
        };
        record.idempotency_key = crate::sync::plan::idempotency_key(&record);
        record
    }

    fn ids(records: &[Record]) -> Vec<&str> {
        records.iter().map(|r| r.object_id.as_str()).collect()
    }

    #[tokio::test]
    async fn only_newer_records_are_fresh_and_checkpoints_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.db");
        let store = CheckpointStore::open(&path).unwrap();
        let v1 = record("1", Op::Upsert, "2026-01-01T00:00:01.000Z", Some("a@x"));
        store.mark_delivered("http-0", std::slice::from_ref(&v1)).await.unwrap();
        drop(store);

        let store = CheckpointStore::open(&path).unwrap();
        let older = record("1", Op::Upsert, "2026-01-01T00:00:00.000Z", Some("a@x"));
        let newer = record("1", Op::Upsert, "2026-01-01T00:00:02.000Z", Some("a@x"));
        let other = record("2", Op::Upsert, "2026-01-01T00:00:00.000Z", None);
        let unreadable = record("1", Op::Upsert, "", None);
        let candidates = [v1.clone(), older.clone(), newer.clone(), other, unreadable];
        assert_eq!(ids(&store.fresh("http-0", &candidates).await.unwrap()), vec!["1", "2", "1"]);
        assert_eq!(store.fresh("http-0", &candidates).await.unwrap()[0].updated_at, newer.updated_at);
        // Another destination has its own checkpoints.
        assert_eq!(store.fresh("file-1", &candidates).await.unwrap().len(), 5);

        // A late, older delivery does not move the checkpoint back.
        store.mark_delivered("http-0", std::slice::from_ref(&newer)).await.unwrap();
        store.mark_delivered("http-0", &[older]).await.unwrap();
        assert!(store.fresh("http-0", &[newer]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_second_write_in_the_same_millisecond_is_fresh_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(&dir.path().join("sync.db")).unwrap();
        let at = "2026-01-01T00:00:01.000Z";
        let first = record("1", Op::Upsert, at, Some("a@x"));
        let mut second = first.clone();
        second.fields.insert("first_name".into(), Some("Grace".into()));
        second.idempotency_key = crate::sync::plan::idempotency_key(&second);
        store.mark_delivered("http-0", std::slice::from_ref(&first)).await.unwrap();
        assert!(store.fresh("http-0", std::slice::from_ref(&first)).await.unwrap().is_empty());
        assert_eq!(store.fresh("http-0", std::slice::from_ref(&second)).await.unwrap(), vec![second.clone()]);
        store.mark_delivered("http-0", std::slice::from_ref(&second)).await.unwrap();
        assert!(store.fresh("http-0", &[second]).await.unwrap().is_empty());
        // An older state never comes back, whatever its key.
        let older = record("1", Op::Upsert, "2026-01-01T00:00:00.999Z", Some("b@x"));
        assert!(store.fresh("http-0", &[older]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn deliveries_are_found_by_time_per_destination() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(&dir.path().join("sync.db")).unwrap();
        let before = now_ms();
        let records: Vec<Record> =
            ["1", "2", "3"].iter().map(|id| record(id, Op::Upsert, "2026-01-01T00:00:01.000Z", None)).collect();
        store.mark_delivered("http-0", &records).await.unwrap();
        store.mark_delivered("file-1", &records[..1]).await.unwrap();
        let since = |sink: &'static str, at: i64, after: Option<&'static str>, limit| {
            let store = store.clone();
            async move { store.delivered_since("ns/m", sink, at, after.map(str::to_string), limit).await.unwrap() }
        };
        assert_eq!(since("http-0", before, None, 10).await, vec!["1", "2", "3"]);
        assert_eq!(since("http-0", before, None, 2).await, vec!["1", "2"]);
        assert_eq!(since("http-0", before, Some("2"), 2).await, vec!["3"]);
        assert_eq!(since("file-1", before, None, 10).await, vec!["1"]);
        assert!(since("http-0", i64::MAX, None, 10).await.is_empty());
    }

    #[tokio::test]
    async fn a_store_from_before_delivery_times_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.db");
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE delivered (mapping TEXT NOT NULL, sink TEXT NOT NULL, object_id TEXT NOT NULL,
                 updated_at_ms INTEGER NOT NULL, idempotency_key TEXT NOT NULL, match_key TEXT,
                 PRIMARY KEY (mapping, sink, object_id)) WITHOUT ROWID;
             INSERT INTO delivered VALUES ('ns/m', 'http-0', '1', 1767225601000, 'k', 'a@x');",
        )
        .unwrap();
        drop(old);

        let store = CheckpointStore::open(&path).unwrap();
        let v1 = record("1", Op::Upsert, "2026-01-01T00:00:01.000Z", Some("a@x"));
        assert_eq!(store.fresh("http-0", std::slice::from_ref(&v1)).await.unwrap().len(), 1, "another key, same time");
        let older = record("1", Op::Upsert, "2026-01-01T00:00:00.000Z", Some("a@x"));
        assert!(store.fresh("http-0", &[older]).await.unwrap().is_empty(), "the old checkpoint still counts");
        // Deliveries of unknown time are not replayed; new ones are.
        assert!(store.delivered_since("ns/m", "http-0", 0, None, 10).await.unwrap().is_empty());
        store.mark_delivered("http-0", &[v1]).await.unwrap();
        assert_eq!(store.delivered_since("ns/m", "http-0", 0, None, 10).await.unwrap(), vec!["1"]);
        drop(store);
        CheckpointStore::open(&path).unwrap();
    }

    #[tokio::test]
    async fn deletions_get_the_last_delivered_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(&dir.path().join("sync.db")).unwrap();
        store
            .mark_delivered("http-0", &[record("1", Op::Upsert, "2026-01-01T00:00:01.000Z", Some("a@x"))])
            .await
            .unwrap();
        let filled = store
            .fill_deleted_keys(vec![
                record("1", Op::Delete, "2026-01-01T00:00:02.000Z", None),
                record("2", Op::Delete, "2026-01-01T00:00:02.000Z", None),
                record("1", Op::Upsert, "2026-01-01T00:00:02.000Z", None),
            ])
            .await
            .unwrap();
        let keys: Vec<Option<&str>> = filled.iter().map(|r| r.key.as_deref()).collect();
        assert_eq!(keys, vec![Some("a@x"), None, None]);
    }
}

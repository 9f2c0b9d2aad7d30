//! The timeline store: one SQLite file on the receiver's volume (`timeline.db`) holding
//!
//! - `queue`: accepted occurrences not yet delivered to HubSpot nor refused by it, each marked
//!   once a send of it has started (`attempted`), so that an occurrence whose send had an
//!   unknown outcome is looked for in HubSpot before it is sent again,
//! - `known`: the id of every occurrence ever accepted, per event type, so that the same id
//!   sent again is not stored twice (ids are short, and kept after delivery),
//! - `rejected`: occurrences HubSpot refused, with its message and correlationId, until they
//!   are resent or discarded.
//!
//! Writes are group-committed by one writer thread and answered once fsync'd, as the reverse
//! sync store's are: an occurrence is answered 202 only once it is durable.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rusqlite::{CachedStatement, Connection, Transaction, params};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::validate::Occurrence;
use crate::group_commit::GroupCommit;
use crate::sqlite;
use crate::time::now_ms;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS queue (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_type TEXT NOT NULL,
        occurrence TEXT NOT NULL,
        attempted INTEGER NOT NULL DEFAULT 0,
        received_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS known (
        event_type TEXT NOT NULL,
        occurrence_id TEXT NOT NULL,
        PRIMARY KEY (event_type, occurrence_id)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS rejected (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_type TEXT NOT NULL,
        occurrence_id TEXT NOT NULL,
        occurrence TEXT NOT NULL,
        status INTEGER NOT NULL,
        category TEXT NOT NULL,
        message TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        rejected_at INTEGER NOT NULL
    );
";

/// A queued occurrence, its position, and whether a send of it may have reached HubSpot.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedOccurrence {
    pub seq: i64,
    pub attempted: bool,
    pub occurrence: Occurrence,
}

/// HubSpot's refusal of one occurrence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// HTTP status of HubSpot's answer (207 for one input of a partly refused batch).
    pub status: u16,
    pub category: String,
    pub message: String,
    pub correlation_id: String,
}

/// A refused occurrence as kept, with the id that resends or discards it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedOccurrence {
    pub id: i64,
    pub occurrence: Occurrence,
    #[serde(flatten)]
    pub refusal: Refusal,
    /// Epoch ms.
    pub rejected_at: i64,
}

/// Which rejected occurrences an operation is about; empty fields select everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OccurrenceFilter {
    pub ids: Vec<i64>,
    /// `namespace/name` of the event type.
    pub event_type: Option<String>,
}

impl OccurrenceFilter {
    /// The `WHERE` condition, over parameters `?1` (ids as a JSON array) and `?2` (event type).
    const CONDITION: &'static str =
        "(?1 = '[]' OR id IN (SELECT value FROM json_each(?1))) AND (?2 IS NULL OR event_type = ?2)";

    fn params(&self) -> (String, Option<String>) {
        (serde_json::to_string(&self.ids).unwrap_or_else(|_| "[]".into()), self.event_type.clone())
    }
}

/// What one event type holds, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub pending: u64,
    pub rejected: u64,
}

/// What the worker settled in one batch; committed at once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settled {
    /// Queue positions HubSpot has.
    pub delivered: Vec<QueuedOccurrence>,
    /// Queue positions HubSpot refused, with its answer.
    pub rejected: Vec<(QueuedOccurrence, Refusal)>,
}

enum Write {
    Enqueue(Vec<Occurrence>),
    Attempt(Vec<i64>),
    Settle(Settled),
    Resend(OccurrenceFilter),
    Discard(OccurrenceFilter),
}

/// The timeline store, see the module documentation.
pub struct TimelineStore {
    files: GroupCommit<Write, u64>,
    enqueued: Arc<Notify>,
}

impl TimelineStore {
    /// Opens (or creates, with its parent directory) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<TimelineStore> {
        let writer = sqlite::open(path, "timeline store")?;
        writer.execute_batch(SCHEMA).context("creating the timeline store's schema")?;
        let enqueued = Arc::new(Notify::new());
        let commit = {
            let enqueued = enqueued.clone();
            Box::new(move |conn: &mut Connection, writes: &[Write]| {
                let affected = commit_group(conn, writes, now_ms())?;
                if writes.iter().any(|w| matches!(w, Write::Enqueue(_) | Write::Resend(_))) {
                    enqueued.notify_waiters();
                    enqueued.notify_one();
                }
                Ok(affected)
            })
        };
        let files = GroupCommit::start("timeline store", writer, sqlite::open(path, "timeline store")?, commit)?;
        Ok(TimelineStore { files, enqueued })
    }

    /// Stores the occurrences whose id their event type does not know yet; returns once they
    /// are on disk, with how many were new (the rest were known already and are left alone).
    pub async fn enqueue(&self, occurrences: Vec<Occurrence>) -> anyhow::Result<u64> {
        self.files.submit(Write::Enqueue(occurrences)).await
    }

    /// Marks queue positions as being sent, durably, before the send starts.
    pub async fn attempt(&self, seqs: Vec<i64>) -> anyhow::Result<()> {
        self.files.submit(Write::Attempt(seqs)).await.map(drop)
    }

    /// Takes delivered and refused occurrences out of the queue.
    pub async fn settle(&self, settled: Settled) -> anyhow::Result<()> {
        self.files.submit(Write::Settle(settled)).await.map(drop)
    }

    /// Puts the selected rejected occurrences back in the queue; how many.
    pub async fn resend(&self, filter: OccurrenceFilter) -> anyhow::Result<u64> {
        self.files.submit(Write::Resend(filter)).await
    }

    /// Removes the selected rejected occurrences and forgets their ids, so that a corrected
    /// occurrence with the same id is taken; how many.
    pub async fn discard(&self, filter: OccurrenceFilter) -> anyhow::Result<u64> {
        self.files.submit(Write::Discard(filter)).await
    }

    /// Up to `max` queued occurrences, oldest first.
    pub async fn pending(&self, max: usize) -> anyhow::Result<Vec<QueuedOccurrence>> {
        self.files
            .read(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT seq, attempted, occurrence FROM queue ORDER BY seq LIMIT ?1")?;
                let rows = stmt.query_map([i64::try_from(max).unwrap_or(i64::MAX)], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, bool>(1)?, row.get::<_, String>(2)?))
                })?;
                rows.map(|row| {
                    let (seq, attempted, occurrence) = row?;
                    let occurrence = serde_json::from_str(&occurrence)
                        .with_context(|| format!("decoding queued occurrence {seq}"))?;
                    Ok(QueuedOccurrence { seq, attempted, occurrence })
                })
                .collect()
            })
            .await
    }

    /// The selected rejected occurrences, oldest first, at most `limit`, and how many are selected.
    pub async fn rejected(
        &self,
        filter: &OccurrenceFilter,
        limit: usize,
    ) -> anyhow::Result<(Vec<RejectedOccurrence>, u64)> {
        let filter = filter.clone();
        self.files
            .read(move |conn| {
                let (ids, event_type) = filter.params();
                let condition = OccurrenceFilter::CONDITION;
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT id, occurrence, status, category, message, correlation_id, rejected_at
                     FROM rejected WHERE {condition} ORDER BY id LIMIT ?3"
                ))?;
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = stmt.query_map(params![ids, event_type, limit], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        Refusal {
                            status: row.get(2)?,
                            category: row.get(3)?,
                            message: row.get(4)?,
                            correlation_id: row.get(5)?,
                        },
                        row.get::<_, i64>(6)?,
                    ))
                })?;
                let listed = rows
                    .map(|row| {
                        let (id, occurrence, refusal, rejected_at) = row?;
                        let occurrence = serde_json::from_str(&occurrence).context("decoding a rejected occurrence")?;
                        Ok(RejectedOccurrence { id, occurrence, refusal, rejected_at })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let total: i64 = conn.query_row(
                    &format!("SELECT COUNT(*) FROM rejected WHERE {condition}"),
                    params![ids, event_type],
                    |row| row.get(0),
                )?;
                Ok((listed, total as u64))
            })
            .await
    }

    /// What each event type (`namespace/name`) that holds any occurrence holds.
    pub async fn held(&self) -> anyhow::Result<Vec<(String, Held)>> {
        self.files
            .read(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT event_type, sum(pending), sum(rejected) FROM
                         (SELECT event_type, 1 AS pending, 0 AS rejected FROM queue
                          UNION ALL SELECT event_type, 0, 1 FROM rejected)
                     GROUP BY event_type",
                )?;
                let rows = stmt.query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        Held { pending: row.get::<_, i64>(1)? as u64, rejected: row.get::<_, i64>(2)? as u64 },
                    ))
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    /// Resolves after occurrences were enqueued, or spuriously.
    pub async fn notified(&self) {
        self.enqueued.notified().await
    }
}

/// Commits `writes` in one transaction; what each affected, in order.
fn commit_group(conn: &mut Connection, writes: &[Write], now_ms: i64) -> anyhow::Result<Vec<u64>> {
    let tx = conn.transaction()?;
    let affected = {
        let mut statements = Statements::prepare(&tx)?;
        writes.iter().map(|write| statements.apply(write, now_ms)).collect::<anyhow::Result<Vec<_>>>()?
    };
    tx.commit()?;
    Ok(affected)
}

/// The statements of a group's writes, prepared once per transaction.
struct Statements<'tx> {
    remember: CachedStatement<'tx>,
    enqueue: CachedStatement<'tx>,
    attempt: CachedStatement<'tx>,
    dequeue: CachedStatement<'tx>,
    reject: CachedStatement<'tx>,
    requeue: CachedStatement<'tx>,
    unreject: CachedStatement<'tx>,
    forget: CachedStatement<'tx>,
}

impl<'tx> Statements<'tx> {
    fn prepare(tx: &'tx Transaction<'_>) -> rusqlite::Result<Statements<'tx>> {
        let condition = OccurrenceFilter::CONDITION;
        Ok(Statements {
            remember: tx.prepare_cached("INSERT OR IGNORE INTO known (event_type, occurrence_id) VALUES (?1, ?2)")?,
            enqueue: tx
                .prepare_cached("INSERT INTO queue (event_type, occurrence, received_at) VALUES (?1, ?2, ?3)")?,
            attempt: tx.prepare_cached("UPDATE queue SET attempted = 1 WHERE seq = ?1")?,
            dequeue: tx.prepare_cached("DELETE FROM queue WHERE seq = ?1")?,
            reject: tx.prepare_cached(
                "INSERT INTO rejected
                     (event_type, occurrence_id, occurrence, status, category, message, correlation_id, rejected_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            requeue: tx.prepare_cached(&format!(
                "INSERT INTO queue (event_type, occurrence, received_at)
                 SELECT event_type, occurrence, ?3 FROM rejected WHERE {condition} ORDER BY id"
            ))?,
            unreject: tx.prepare_cached(&format!("DELETE FROM rejected WHERE {condition}"))?,
            forget: tx.prepare_cached(&format!(
                "DELETE FROM known WHERE (event_type, occurrence_id) IN
                     (SELECT event_type, occurrence_id FROM rejected WHERE {condition})"
            ))?,
        })
    }

    /// Applies one write; how many occurrences it affected.
    fn apply(&mut self, write: &Write, now_ms: i64) -> anyhow::Result<u64> {
        let mut affected = 0;
        match write {
            Write::Enqueue(occurrences) => {
                for o in occurrences {
                    if self.remember.execute(params![o.event_type, o.id])? == 1 {
                        self.enqueue.execute(params![o.event_type, serde_json::to_string(o)?, now_ms])?;
                        affected += 1;
                    }
                }
            }
            Write::Attempt(seqs) => {
                for seq in seqs {
                    affected += self.attempt.execute([seq])? as u64;
                }
            }
            Write::Settle(settled) => {
                for q in &settled.delivered {
                    affected += self.dequeue.execute([q.seq])? as u64;
                }
                for (q, refusal) in &settled.rejected {
                    if self.dequeue.execute([q.seq])? == 1 {
                        let o = &q.occurrence;
                        self.reject.execute(params![
                            o.event_type,
                            o.id,
                            serde_json::to_string(o)?,
                            refusal.status,
                            refusal.category,
                            refusal.message,
                            refusal.correlation_id,
                            now_ms
                        ])?;
                        affected += 1;
                    }
                }
            }
            Write::Resend(filter) => {
                let (ids, event_type) = filter.params();
                self.requeue.execute(params![ids, event_type, now_ms])?;
                affected = self.unreject.execute(params![ids, event_type])? as u64;
            }
            Write::Discard(filter) => {
                let (ids, event_type) = filter.params();
                self.forget.execute(params![ids, event_type])?;
                affected = self.unreject.execute(params![ids, event_type])? as u64;
            }
        }
        Ok(affected)
    }
}

#[cfg(test)]
mod tests;

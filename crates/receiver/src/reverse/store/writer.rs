//! The reverse sync store's writes, which its writer thread (`GroupCommit`) commits in groups.

use rusqlite::{CachedStatement, Connection, Transaction, params};
use tokio::sync::Notify;

use super::{Completion, INVALID_RECORD, IngestRecord, Rejection, RejectionFilter};
use crate::time::now_ms;

pub(super) enum Write {
    Enqueue(Vec<IngestRecord>),
    Complete(Completion),
    /// What one poll of a source read, and how far it got: committed together, so a row is
    /// queued exactly once.
    Polled {
        records: Vec<IngestRecord>,
        rejected: Vec<Rejection>,
        source: String,
        cursor: String,
    },
    /// Moves the selected rejected records back into the queue.
    Resend(RejectionFilter),
    /// Removes the selected rejected records.
    Discard(RejectionFilter),
    /// HubSpot merged records into `survivor`: what this receiver wrote to the merged-away ids
    /// counts for the survivor, the first of `merged_away` winning (the primary's values win
    /// in HubSpot's merge), and none of it over what the survivor has of its own.
    FollowMerge {
        object_type: String,
        survivor: String,
        merged_away: Vec<String>,
    },
}

/// Rows one write affected: for a resend, the records queued again and the ones left.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Affected {
    pub(super) rows: u64,
    pub(super) left: u64,
}

/// Commits a group of writes, then wakes the worker when records were queued.
pub(super) fn commit_and_notify(
    conn: &mut Connection,
    writes: &[Write],
    enqueued: &Notify,
) -> anyhow::Result<Vec<Affected>> {
    let affected = commit_group(conn, writes, now_ms())?;
    if writes.iter().any(|w| matches!(w, Write::Enqueue(_) | Write::Polled { .. } | Write::Resend(_))) {
        enqueued.notify_waiters();
        enqueued.notify_one();
    }
    Ok(affected)
}

/// Commits `writes` in one transaction; what each affected, in order.
fn commit_group(conn: &mut Connection, writes: &[Write], now_ms: i64) -> anyhow::Result<Vec<Affected>> {
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
    enqueue: CachedStatement<'tx>,
    dequeue: CachedStatement<'tx>,
    reject: CachedStatement<'tx>,
    requeue: CachedStatement<'tx>,
    unreject: CachedStatement<'tx>,
    count_rejected: CachedStatement<'tx>,
    discard: CachedStatement<'tx>,
    remember_value: CachedStatement<'tx>,
    remember_creation: CachedStatement<'tx>,
    move_cursor: CachedStatement<'tx>,
    carry_written: CachedStatement<'tx>,
}

impl<'tx> Statements<'tx> {
    fn prepare(tx: &'tx Transaction<'_>) -> rusqlite::Result<Statements<'tx>> {
        let condition = RejectionFilter::CONDITION;
        Ok(Statements {
            enqueue: tx.prepare_cached(
                "INSERT INTO queue (mapping, match_key, properties, changed_at, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?,
            dequeue: tx.prepare_cached("DELETE FROM queue WHERE seq = ?1")?,
            reject: tx.prepare_cached(
                "INSERT INTO rejected
                     (mapping, match_key, properties, status, category, message, correlation_id, rejected_at, changed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?,
            requeue: tx.prepare_cached(&format!(
                "INSERT INTO queue (mapping, match_key, properties, changed_at, received_at)
                 SELECT mapping, match_key, properties, coalesce(changed_at, rejected_at), ?3 FROM rejected
                 WHERE {condition} AND category <> '{INVALID_RECORD}' ORDER BY id"
            ))?,
            unreject: tx
                .prepare_cached(&format!("DELETE FROM rejected WHERE {condition} AND category <> '{INVALID_RECORD}'"))?,
            count_rejected: tx.prepare_cached(&format!("SELECT COUNT(*) FROM rejected WHERE {condition}"))?,
            discard: tx.prepare_cached(&format!("DELETE FROM rejected WHERE {condition}"))?,
            remember_value: tx.prepare_cached(
                "INSERT INTO written (object_type, object_id, property, value, written_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (object_type, object_id, property) DO UPDATE SET value = excluded.value, written_at = excluded.written_at",
            )?,
            remember_creation: tx.prepare_cached(
                "INSERT OR REPLACE INTO created (object_type, object_id, created_at) VALUES (?1, ?2, ?3)",
            )?,
            move_cursor: tx.prepare_cached("INSERT OR REPLACE INTO source_cursors (source, cursor) VALUES (?1, ?2)")?,
            carry_written: tx.prepare_cached(
                "INSERT INTO written (object_type, object_id, property, value, written_at)
                 SELECT object_type, ?2, property, value, written_at FROM written WHERE object_type = ?1 AND object_id = ?3
                 ON CONFLICT (object_type, object_id, property) DO NOTHING",
            )?,
        })
    }

    /// Applies one write; what it affected.
    fn apply(&mut self, write: &Write, now_ms: i64) -> anyhow::Result<Affected> {
        let mut done = Affected::default();
        match write {
            Write::Enqueue(records) => self.enqueue(records, now_ms)?,
            Write::Polled { records, rejected, source, cursor } => {
                self.enqueue(records, now_ms)?;
                for r in rejected {
                    self.reject(r)?;
                }
                self.move_cursor.execute(params![source, cursor])?;
            }
            Write::Complete(completion) => self.complete(completion)?,
            Write::Resend(filter) => {
                let (ids, mapping) = filter.params();
                self.requeue.execute(params![ids, mapping, now_ms])?;
                done.rows = self.unreject.execute(params![ids, mapping])? as u64;
                done.left = self.count_rejected.query_row(params![ids, mapping], |row| row.get::<_, i64>(0))? as u64;
            }
            Write::Discard(filter) => {
                let (ids, mapping) = filter.params();
                done.rows = self.discard.execute(params![ids, mapping])? as u64;
            }
            Write::FollowMerge { object_type, survivor, merged_away } => {
                for old in merged_away {
                    done.rows += self.carry_written.execute(params![object_type, survivor, old])? as u64;
                }
            }
        }
        Ok(done)
    }

    fn enqueue(&mut self, records: &[IngestRecord], now_ms: i64) -> anyhow::Result<()> {
        for r in records {
            let properties = serde_json::to_string(&r.properties)?;
            self.enqueue.execute(params![r.mapping, r.key, properties, r.changed_at, now_ms])?;
        }
        Ok(())
    }

    fn reject(&mut self, r: &Rejection) -> anyhow::Result<()> {
        let properties = serde_json::to_string(&r.properties)?;
        self.reject.execute(params![
            r.mapping,
            r.key,
            properties,
            r.status,
            r.category,
            r.message,
            r.correlation_id,
            r.rejected_at,
            r.changed_at
        ])?;
        Ok(())
    }

    fn complete(&mut self, completion: &Completion) -> anyhow::Result<()> {
        for &seq in &completion.done {
            if let Ok(seq) = i64::try_from(seq) {
                self.dequeue.execute([seq])?;
            }
        }
        for r in &completion.rejected {
            self.reject(r)?;
        }
        for w in &completion.written {
            self.remember_value.execute(params![w.object_type, w.object_id, w.property, w.value, w.written_at])?;
        }
        for (object_type, object_id, at) in &completion.created {
            self.remember_creation.execute(params![object_type, object_id, at])?;
        }
        Ok(())
    }
}

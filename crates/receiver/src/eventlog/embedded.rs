//! The embedded event log: one SQLite file on the receiver's volume.
//!
//! One writer thread owns the write connection. Appends and releases are sent to it over a
//! channel; it takes every request waiting, applies them all in one transaction and commits
//! once (group commit), so concurrent webhook requests share one fsync instead of queueing
//! behind each other's. Every request is answered only after its commit is on disk
//! (`synchronous=FULL`), which is what allows the receiver to answer HubSpot with 2xx.
//! Reads use a second connection and never wait for the writer (WAL mode).
//!
//! The writer also enforces the size limits: an append that would take the unreleased events
//! past `maxPendingEvents` or `maxPendingBytes` stores nothing and fails with
//! [`EventLogError::Full`].

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::future::BoxFuture;
use rusqlite::{CachedStatement, Connection, OptionalExtension as _, Transaction};
use tokio::sync::{Notify, oneshot};

use super::{AppendOutcome, EncodedEvent, EventLog, EventLogError, Result, StoredEvent};
use crate::sqlite;
use crate::time::now_ms;
use hubspot::DeliveryIdentity;
use model::config::LogLimits;

/// How long a delivery identity is remembered. HubSpot retries a delivery for up to 24 hours;
/// three times that leaves room for clock trouble and long outages.
pub const DEDUP_RETENTION: Duration = Duration::from_secs(72 * 60 * 60);

/// How often the writer forgets delivery identities older than `DEDUP_RETENTION`.
const PRUNE_INTERVAL: Duration = Duration::from_secs(10 * 60);

// `AUTOINCREMENT` keeps a released `seq` from ever being handed out again (plain rowids restart
// after the newest rows are deleted), so a position always names one event.
// `appended_at` (ms since the epoch) is NULL in rows of logs written before it existed.
//
// `seen_deliveries` holds the delivery identities, keyed with `occurred_at` first: new
// identities then land at the right edge of the b-tree whatever HubSpot's event ids look like,
// and pruning is a range of the key, with no second index. (A text key led by the portal and
// subscription puts each insert at a random place once event ids are not sequential: 25 µs of
// CPU per event instead of 3, see docs/benchmarks.md.) An association change's object ids are
// `from_object_id`/`to_object_id`, 0 for other events (key columns cannot be NULL).
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, appended_at INTEGER);
    CREATE TABLE IF NOT EXISTS seen_deliveries (
        occurred_at INTEGER NOT NULL,
        portal_id INTEGER NOT NULL,
        subscription_id INTEGER NOT NULL,
        event_id INTEGER NOT NULL,
        object_id INTEGER NOT NULL,
        from_object_id INTEGER NOT NULL,
        to_object_id INTEGER NOT NULL,
        seen_at INTEGER NOT NULL,
        PRIMARY KEY (occurred_at, portal_id, subscription_id, event_id, object_id, from_object_id, to_object_id)
    ) WITHOUT ROWID;
";

const REMEMBER: &str = "INSERT OR IGNORE INTO seen_deliveries VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// Row counts of the multi-row inserts that store a write's events: few statements for any
/// number of events (100 take four), and only these few are ever prepared. One statement per
/// event costs about a fifth of the writer's time at batch size 100.
const STORE_CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// Page size of new log files. Each commit writes every page it changed, whole, to the WAL (a
/// header and a page, a `pwrite` each) and a checkpoint copies them again; at 8 KiB the same
/// events take half as many frames as at SQLite's default of 4 KiB. Alternated runs stored 2% to
/// 21% more events/s at batch size 100, and the same at batch size 1 (docs/benchmarks.md).
const PAGE_SIZE: i64 = 8192;

/// Embedded event log, see the module documentation.
pub struct EmbeddedEventLog {
    writes: mpsc::Sender<WriteRequest>,
    /// Taken only by `Drop`.
    writer: Option<JoinHandle<()>>,
    reader: Arc<Mutex<Connection>>,
    appended: Arc<Notify>,
}

enum Write {
    Append(Vec<EncodedEvent>),
    Release(Vec<u64>),
}

struct WriteRequest {
    write: Write,
    /// Answered after the commit; a release answers with an empty outcome.
    done: oneshot::Sender<Result<AppendOutcome>>,
}

impl EmbeddedEventLog {
    /// Opens (or creates, with its parent directory) the log file at `path`, with the default
    /// size limits.
    pub fn open(path: &Path) -> anyhow::Result<EmbeddedEventLog> {
        Self::open_with(path, LogLimits::default())
    }

    /// Opens (or creates, with its parent directory) the log file at `path`.
    pub fn open_with(path: &Path, limits: LogLimits) -> anyhow::Result<EmbeddedEventLog> {
        let mut write_conn = open_connection(path)?;
        // Each write of a group commit is a savepoint, whose undo journal SQLite would otherwise
        // keep in a temporary file: one write() per page changed. It is never needed after a
        // crash (the WAL is what recovers), so memory will do.
        write_conn.pragma_update(None, "temp_store", "MEMORY")?;
        write_conn.execute_batch(SCHEMA).context("creating the event log schema")?;
        // Logs written before the time was kept lack it.
        sqlite::add_column(&write_conn, "events", "appended_at", "INTEGER")
            .context("upgrading the event log schema")?;
        move_text_identities(&mut write_conn).context("upgrading the event log's delivery identities")?;
        prune_seen(&mut write_conn, now_ms() - retention_ms()).context("pruning delivery identities")?;
        let reader = open_connection(path)?;
        reader.pragma_update(None, "query_only", true)?;

        let (writes, requests) = mpsc::channel();
        let appended = Arc::new(Notify::new());
        let writer = std::thread::Builder::new()
            .name("eventlog-writer".into())
            .spawn({
                let appended = appended.clone();
                move || run_writer(write_conn, limits, requests, &appended)
            })
            .context("starting the event log writer thread")?;
        Ok(EmbeddedEventLog { writes, writer: Some(writer), reader: Arc::new(Mutex::new(reader)), appended })
    }

    async fn submit(&self, write: Write) -> Result<AppendOutcome> {
        let (done, answer) = oneshot::channel();
        self.writes.send(WriteRequest { write, done }).map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| EventLogError::Unavailable("event log writer stopped before committing".into()))?
    }

    /// Runs `read` on the read connection off the async threads.
    async fn read<T: Send + 'static>(&self, read: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        // Reads alone would still work, but a log that cannot store is not a working log.
        if self.writer.as_ref().is_none_or(|writer| writer.is_finished()) {
            return Err(writer_stopped());
        }
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().map_err(|_| EventLogError::Unavailable("event log reader poisoned".into()))?;
            read(&conn)
        })
        .await
        .map_err(|e| EventLogError::storage("event log read task failed", e))?
    }
}

impl Drop for EmbeddedEventLog {
    fn drop(&mut self) {
        // Closing the channel stops the writer once it has committed what it holds; joining it
        // means the file is closed when the log is gone (a reopen finds everything committed).
        drop(std::mem::replace(&mut self.writes, mpsc::channel().0));
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl EventLog for EmbeddedEventLog {
    fn append_encoded(&self, events: Vec<EncodedEvent>) -> BoxFuture<'_, Result<AppendOutcome>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(AppendOutcome::default());
            }
            self.submit(Write::Append(events)).await
        })
    }

    fn pending(&self, max: usize) -> BoxFuture<'_, Result<Vec<StoredEvent>>> {
        Box::pin(self.read(move |conn| {
            let limit = i64::try_from(max).unwrap_or(i64::MAX);
            let rows = read_pending(conn, limit).map_err(|e| EventLogError::storage("reading pending events", e))?;
            rows.into_iter()
                .map(|(seq, body, appended_at_ms)| {
                    let event = serde_json::from_str(&body)
                        .map_err(|e| EventLogError::storage(format!("decoding stored event {seq}"), e))?;
                    Ok(StoredEvent { seq: seq as u64, event, appended_at_ms })
                })
                .collect()
        }))
    }

    fn release(&self, seqs: Vec<u64>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if !seqs.is_empty() {
                self.submit(Write::Release(seqs)).await?;
            }
            Ok(())
        })
    }

    fn pending_count(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.read(|conn| {
            let count: i64 = conn
                .query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))
                .map_err(|e| EventLogError::storage("counting pending events", e))?;
            Ok(count as u64)
        }))
    }

    fn oldest_pending_age(&self) -> BoxFuture<'_, Result<Option<Duration>>> {
        Box::pin(self.read(|conn| {
            let oldest = oldest_appended_at(conn).map_err(|e| EventLogError::storage("reading the oldest event", e))?;
            Ok(oldest.map(|oldest| Duration::from_millis(now_ms().saturating_sub(oldest).max(0) as u64)))
        }))
    }

    fn notified(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.appended.notified())
    }
}

fn writer_stopped() -> EventLogError {
    EventLogError::Unavailable("event log writer has stopped".into())
}

/// Up to `limit` unreleased events, oldest first: position, JSON and time appended.
fn read_pending(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<(i64, String, Option<i64>)>> {
    let mut stmt = conn.prepare_cached("SELECT seq, body, appended_at FROM events ORDER BY seq LIMIT ?1")?;
    let rows = stmt.query_map([limit], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    rows.collect()
}

/// When the oldest unreleased event was appended (epoch milliseconds); `None` when there is
/// none.
fn oldest_appended_at(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let oldest: Option<Option<i64>> =
        conn.query_row("SELECT appended_at FROM events ORDER BY seq LIMIT 1", [], |row| row.get(0)).optional()?;
    // A row from before `appended_at` existed: as old as the first row that has a time.
    match oldest {
        None => Ok(None),
        Some(Some(ms)) => Ok(Some(ms)),
        Some(None) => conn.query_row("SELECT MIN(appended_at) FROM events", [], |row| row.get(0)),
    }
}

/// A connection to the log file: every commit fsync'd, so an answered append survives a crash
/// or power loss.
fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    sqlite::open_with_page_size(path, "event log", PAGE_SIZE)
}

/// Logs written before identities were kept as integers hold them as text keys in `seen`: they
/// move to `seen_deliveries` with their first-seen time, and `seen` goes. The move commits a
/// slice of first-seen times at a time, so a receiver stopped during a long move (a liveness
/// probe, say) goes on from where it was; in first-seen order, the new table's inserts land
/// near the end of its key order.
fn move_text_identities(conn: &mut Connection) -> rusqlite::Result<()> {
    const SLICE: i64 = 20_000;
    let has_text_identities: bool =
        conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'seen'", [], |row| {
            row.get::<_, i64>(0).map(|n| n > 0)
        })?;
    if !has_text_identities {
        return Ok(());
    }
    let (mut moved, mut unreadable) = (0usize, 0usize);
    loop {
        let tx = conn.transaction()?;
        // The first-seen time the slice ends at, ties included; past the last slice, every row.
        let until: i64 = tx.query_row(
            "SELECT COALESCE((SELECT seen_at FROM seen ORDER BY seen_at LIMIT 1 OFFSET ?1), (SELECT MAX(seen_at) FROM seen))",
            [SLICE - 1],
            |row| row.get::<_, Option<i64>>(0),
        )?
        .unwrap_or(i64::MIN);
        {
            let mut read = tx.prepare("SELECT key, seen_at FROM seen WHERE seen_at <= ?1 ORDER BY seen_at")?;
            let mut remember = tx.prepare_cached(REMEMBER)?;
            let mut rows = read.query([until])?;
            while let Some(row) = rows.next()? {
                let (key, seen_at): (String, i64) = (row.get(0)?, row.get(1)?);
                match DeliveryIdentity::parse_key(&key) {
                    Some(identity) => moved += remember.execute(identity_params(&identity, seen_at))?,
                    None => unreadable += 1,
                }
            }
        }
        tx.execute("DELETE FROM seen WHERE seen_at <= ?1", [until])?;
        let empty: bool = tx.query_row("SELECT NOT EXISTS (SELECT 1 FROM seen)", [], |row| row.get(0))?;
        if empty {
            tx.execute_batch("DROP TABLE seen")?;
        }
        tx.commit()?;
        if empty {
            break;
        }
    }
    tracing::info!(moved, unreadable, "moved delivery identities to the integer-keyed table");
    Ok(())
}

/// `REMEMBER`'s parameters. SQLite integers are signed: ids above `i64::MAX` wrap, which keeps
/// them distinct.
fn identity_params(identity: &DeliveryIdentity, seen_at: i64) -> [i64; 8] {
    let (from, to) = identity.association.unwrap_or((0, 0));
    [
        identity.occurred_at,
        identity.portal_id as i64,
        identity.subscription_id as i64,
        identity.event_id as i64,
        identity.object_id as i64,
        from as i64,
        to as i64,
        seen_at,
    ]
}

/// Stores `events` in order, in as few statements as `STORE_CHUNKS` allow.
fn store_events(conn: &Connection, events: &[&EncodedEvent], now_ms: i64) -> rusqlite::Result<()> {
    // The statements' text, made once: it is also their key in the statement cache.
    static STORE: std::sync::LazyLock<[String; 4]> = std::sync::LazyLock::new(|| {
        STORE_CHUNKS
            .map(|size| format!("INSERT INTO events (body, appended_at) VALUES {}", vec!["(?, ?)"; size].join(", ")))
    });
    let mut rest = events;
    for (size, sql) in STORE_CHUNKS.into_iter().zip(STORE.iter()) {
        while rest.len() >= size {
            let (chunk, tail) = rest.split_at(size);
            let params: Vec<&dyn rusqlite::ToSql> =
                chunk.iter().flat_map(|event| [*event as &dyn rusqlite::ToSql, &now_ms]).collect();
            conn.prepare_cached(sql)?.execute(params.as_slice())?;
            rest = tail;
        }
    }
    Ok(())
}

/// An event's JSON as text, bound without a copy of its own (SQLite takes text as UTF-8 bytes).
impl rusqlite::ToSql for EncodedEvent {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(&self.json)))
    }
}

/// What the unreleased events take, measured as the limits are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Occupancy {
    events: u64,
    bytes: u64,
}

impl Occupancy {
    fn read(conn: &Connection) -> rusqlite::Result<Occupancy> {
        conn.query_row("SELECT COUNT(*), COALESCE(SUM(length(CAST(body AS BLOB))), 0) FROM events", [], |row| {
            Ok(Occupancy { events: row.get::<_, i64>(0)? as u64, bytes: row.get::<_, i64>(1)? as u64 })
        })
    }

    /// Why `events` more events of `bytes` in all do not fit under `limits` (0: no limit), if
    /// they do not.
    fn refuse(&self, events: u64, bytes: u64, limits: &LogLimits) -> Option<EventLogError> {
        if limits.max_pending_events != 0 && self.events + events > limits.max_pending_events {
            Some(EventLogError::Full {
                reason: format!("{} unreleased events, the limit is {}", self.events, limits.max_pending_events),
            })
        } else if limits.max_pending_bytes != 0 && self.bytes + bytes > limits.max_pending_bytes {
            Some(EventLogError::Full {
                reason: format!("{} bytes of unreleased events, the limit is {}", self.bytes, limits.max_pending_bytes),
            })
        } else {
            None
        }
    }

    /// Why all of `events` would not fit under `limits`, if they would not.
    fn refuse_all(&self, events: &[EncodedEvent], limits: &LogLimits) -> Option<EventLogError> {
        let bytes = events.iter().map(|event| event.json.len() as u64).sum();
        self.refuse(events.len() as u64, bytes, limits)
    }
}

/// The writer thread: group commits until every sender is gone.
fn run_writer(mut conn: Connection, limits: LogLimits, requests: mpsc::Receiver<WriteRequest>, appended: &Notify) {
    let mut last_prune = Instant::now();
    let mut occupancy = match Occupancy::read(&conn) {
        Ok(occupancy) => occupancy,
        Err(e) => {
            // Without it no limit can be kept: a log that cannot count is not a working log.
            tracing::error!(error = %e, "event log cannot measure what it holds");
            return;
        }
    };
    loop {
        let first = match requests.recv_timeout(PRUNE_INTERVAL) {
            Ok(request) => request,
            Err(RecvTimeoutError::Timeout) => {
                prune_if_due(&mut conn, &mut last_prune);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let group: Vec<WriteRequest> = std::iter::once(first).chain(requests.try_iter()).collect();
        let (writes, answers): (Vec<Write>, Vec<_>) = group.into_iter().map(|r| (r.write, r.done)).unzip();
        match commit_group(&mut conn, &writes, now_ms(), &limits, &mut occupancy) {
            Ok(outcomes) => {
                if outcomes.iter().any(|o| o.as_ref().is_ok_and(|o| o.appended > 0)) {
                    // Wake every waiting consumer, and leave a permit for one that is between
                    // finding the log empty and starting to wait.
                    appended.notify_waiters();
                    appended.notify_one();
                }
                for (done, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = done.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = answers.len(), "event log commit failed");
                // Rolled back: what the log holds is what it held before, as the file says.
                match Occupancy::read(&conn) {
                    Ok(read) => occupancy = read,
                    Err(e) => tracing::error!(error = %e, "event log cannot measure what it holds"),
                }
                let e = std::sync::Arc::new(e);
                for done in answers {
                    let _ = done.send(Err(EventLogError::storage("event log commit failed", e.clone())));
                }
            }
        }
        prune_if_due(&mut conn, &mut last_prune);
    }
}

fn prune_if_due(conn: &mut Connection, last_prune: &mut Instant) {
    if last_prune.elapsed() < PRUNE_INTERVAL {
        return;
    }
    *last_prune = Instant::now();
    match prune_seen(conn, now_ms() - retention_ms()) {
        Ok(forgotten) => tracing::debug!(forgotten, "pruned old delivery identities"),
        Err(e) => tracing::warn!(error = %e, "pruning delivery identities failed"),
    }
}

/// Applies a group of writes in one transaction; one outcome per write, in order. An append
/// that does not fit under `limits` stores nothing (not even its delivery identities, so the
/// sender's retry is stored) and answers [`EventLogError::Full`]; the others are applied. `occupancy` is
/// updated once the transaction is committed.
fn commit_group(
    conn: &mut Connection,
    writes: &[Write],
    now_ms: i64,
    limits: &LogLimits,
    occupancy: &mut Occupancy,
) -> rusqlite::Result<Vec<Result<AppendOutcome>>> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(writes.len());
    let mut after = *occupancy;
    let mut remember = tx.prepare_cached(REMEMBER)?;
    let mut delete = tx.prepare_cached("DELETE FROM events WHERE seq = ?1 RETURNING length(CAST(body AS BLOB))")?;
    for write in writes {
        let outcome = match write {
            Write::Append(events) => match append(&tx, &mut remember, events, now_ms, limits, after)? {
                Ok((outcome, occupancy)) => {
                    after = occupancy;
                    Ok(outcome)
                }
                Err(full) => Err(full),
            },
            Write::Release(seqs) => {
                after = release(&mut delete, seqs, after)?;
                Ok(AppendOutcome::default())
            }
        };
        outcomes.push(outcome);
    }
    drop((remember, delete));
    tx.commit()?;
    *occupancy = after;
    Ok(outcomes)
}

/// Applies one append of a group, the log holding `occupancy` before it: its outcome and what the
/// log holds after it, or why it does not fit, with nothing of it stored.
fn append(
    tx: &Transaction<'_>,
    remember: &mut CachedStatement<'_>,
    events: &[EncodedEvent],
    now_ms: i64,
    limits: &LogLimits,
    mut occupancy: Occupancy,
) -> rusqlite::Result<Result<(AppendOutcome, Occupancy)>> {
    // An append that could take the log past a limit runs in a savepoint, so that refusing it
    // leaves the group's other writes alone. The others need none: a savepoint copies every page
    // it touches before changing it (9-17% more events/s at batch size 1 without,
    // docs/benchmarks.md).
    let guarded = occupancy.refuse_all(events, limits).is_some();
    if guarded {
        tx.execute_batch("SAVEPOINT append")?;
    }
    let mut outcome = AppendOutcome::default();
    let mut fresh = Vec::with_capacity(events.len());
    for event in events {
        // An identity already present (from any earlier write, including one earlier in this
        // transaction) makes the event a duplicate.
        if remember.execute(identity_params(&event.identity, now_ms))? == 0 {
            outcome.duplicates += 1;
            continue;
        }
        let bytes = event.json.len() as u64;
        if let Some(full) = occupancy.refuse(1, bytes, limits) {
            tx.execute_batch("ROLLBACK TO append; RELEASE append")?;
            return Ok(Err(full));
        }
        fresh.push(event);
        occupancy.events += 1;
        occupancy.bytes += bytes;
    }
    store_events(tx, &fresh, now_ms)?;
    if guarded {
        tx.execute_batch("RELEASE append")?;
    }
    outcome.appended = fresh.len();
    Ok(Ok((outcome, occupancy)))
}

/// Deletes the released events of a group's write, the log holding `occupancy` before it; what
/// the log holds after it.
fn release(delete: &mut CachedStatement<'_>, seqs: &[u64], mut occupancy: Occupancy) -> rusqlite::Result<Occupancy> {
    for &seq in seqs {
        // Positions beyond i64 were never handed out; there is nothing to delete.
        let Ok(seq) = i64::try_from(seq) else { continue };
        if let Some(bytes) = delete.query_row([seq], |row| row.get::<_, i64>(0)).optional()? {
            occupancy.events -= 1;
            occupancy.bytes = occupancy.bytes.saturating_sub(bytes as u64);
        }
    }
    Ok(occupancy)
}

/// Forgets delivery identities first seen before `cutoff_ms`; returns how many. Those of events
/// that occurred before it are the candidates (a range of the key): an event is seen after it
/// occurs, clock trouble aside, and one seen later than it occurred is kept until both passed.
fn prune_seen(conn: &mut Connection, cutoff_ms: i64) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM seen_deliveries WHERE occurred_at < ?1 AND seen_at < ?1", [cutoff_ms])
}

fn retention_ms() -> i64 {
    DEDUP_RETENTION.as_millis() as i64
}

#[cfg(test)]
mod tests;

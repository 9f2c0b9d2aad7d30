//! The reverse sync store: one SQLite file on the receiver's volume (`reverse.db`) holding
//!
//! - `queue`: ingested records not yet accepted or refused by HubSpot,
//! - `rejected`: records HubSpot refused, with its message and correlationId, until they are
//!   resent (back into `queue`) or discarded,
//! - `written` and `created`: what this receiver wrote to HubSpot (per object and property the
//!   last value and HubSpot's time of the write), which the forward worker uses to recognise
//!   the webhooks its own writes cause and the conflict policy uses as the last sync time,
//! - `source_cursors`: how far each polled source has been read.
//!
//! Writes go through one writer thread that commits every request waiting in one transaction
//! (group commit) and answers each only after the commit is on disk (`synchronous=FULL`), as
//! the embedded event log does; so an ingest request is answered 202 only once its records are
//! durable. Reads use a second connection (WAL mode) and never wait for the writer.

mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::eventlog::StoredEvent;
use crate::group_commit::GroupCommit;
use crate::sqlite::{self, rows_by_mapping};
use writer::{Affected, Write, commit_and_notify};

/// How far apart HubSpot's time of a write and the `occurredAt` of a webhook may be for the
/// webhook to count as that write's echo. HubSpot stamps both from its own clock; the margin
/// covers the time between the write and the events it emits.
pub const ECHO_WINDOW: Duration = Duration::from_secs(10 * 60);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS queue (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        mapping TEXT NOT NULL,
        match_key TEXT NOT NULL,
        properties TEXT NOT NULL,
        changed_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS rejected (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mapping TEXT NOT NULL,
        match_key TEXT NOT NULL,
        properties TEXT NOT NULL,
        status INTEGER NOT NULL,
        category TEXT NOT NULL,
        message TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        rejected_at INTEGER NOT NULL,
        changed_at INTEGER
    );
    CREATE TABLE IF NOT EXISTS written (
        object_type TEXT NOT NULL,
        object_id TEXT NOT NULL,
        property TEXT NOT NULL,
        value TEXT NOT NULL,
        written_at INTEGER NOT NULL,
        PRIMARY KEY (object_type, object_id, property)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS source_cursors (
        source TEXT PRIMARY KEY,
        cursor TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS created (
        object_type TEXT NOT NULL,
        object_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (object_type, object_id)
    ) WITHOUT ROWID;
";

/// One external record bound for HubSpot, as validated at ingest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestRecord {
    /// `namespace/name` of the mapping.
    pub mapping: String,
    /// Value of the match key (the HubSpot `idProperty` value).
    pub key: String,
    /// HubSpot property → value; an empty string clears the property.
    pub properties: BTreeMap<String, String>,
    /// When the external system changed the record (epoch ms).
    pub changed_at: i64,
}

/// A queued record and its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedRecord {
    pub seq: u64,
    pub record: IngestRecord,
}

/// A record HubSpot refused, with HubSpot's reasons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    pub mapping: String,
    pub key: String,
    pub properties: BTreeMap<String, String>,
    /// HTTP status of HubSpot's answer.
    pub status: u16,
    pub category: String,
    pub message: String,
    pub correlation_id: String,
    /// Epoch ms.
    pub rejected_at: i64,
    /// When the external system changed the record (epoch ms, the newest of its properties),
    /// which a resent record keeps so that the conflict policy judges it as it was.
    pub changed_at: i64,
}

/// A rejected record as kept, with the id that resends or discards it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRejection {
    pub id: i64,
    #[serde(flatten)]
    pub rejection: Rejection,
}

/// Category of the rows a PostgreSQL source read that failed the mapping's validation. They
/// hold no record to resend: the row is fixed at the source, and read again once its cursor
/// column moves.
pub const INVALID_RECORD: &str = "INVALID_RECORD";

/// Which rejected records an operation is about; empty fields select everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RejectionFilter {
    pub ids: Vec<i64>,
    pub mapping: Option<String>,
}

impl RejectionFilter {
    pub fn is_everything(&self) -> bool {
        self.ids.is_empty() && self.mapping.is_none()
    }

    /// The `WHERE` condition, over parameters `?1` (ids as a JSON array) and `?2` (mapping).
    const CONDITION: &'static str =
        "(?1 = '[]' OR id IN (SELECT value FROM json_each(?1))) AND (?2 IS NULL OR mapping = ?2)";

    fn params(&self) -> (String, Option<String>) {
        (serde_json::to_string(&self.ids).unwrap_or_else(|_| "[]".into()), self.mapping.clone())
    }
}

/// What a resend did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResendReport {
    /// Records put back in the queue, to be written to HubSpot again.
    pub resent: u64,
    /// Selected rows that hold no record (`INVALID_RECORD`), left as they are.
    pub not_resendable: u64,
}

/// Rejected records: how many, and the newest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedSummary {
    pub count: u64,
    pub last: Option<StoredRejection>,
}

/// A value this receiver wrote to a HubSpot object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenValue {
    pub object_type: String,
    pub object_id: String,
    pub property: String,
    pub value: String,
    /// HubSpot's time of the write (the object's `updatedAt` in the answer), epoch ms.
    pub written_at: i64,
}

/// What one upsert round settled; committed at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// Queue positions that leave the queue (written, refused or superseded).
    pub done: Vec<u64>,
    pub rejected: Vec<Rejection>,
    pub written: Vec<WrittenValue>,
    /// Objects this receiver's upserts created: (object type, object id, HubSpot's time).
    pub created: Vec<(String, String, i64)>,
}

/// The reverse sync store, see the module documentation.
pub struct ReverseStore {
    files: GroupCommit<Write, Affected>,
    enqueued: Arc<Notify>,
    /// Held for writing from before an upsert is sent until what it wrote is committed, and
    /// for reading while echoes are looked for. HubSpot may deliver the webhooks of a write
    /// before its answer is back, so without it such a webhook could be checked against a
    /// ledger that does not know the write yet.
    write_gate: tokio::sync::RwLock<()>,
}

impl ReverseStore {
    /// Opens (or creates, with its parent directory) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<ReverseStore> {
        let write_conn = open_connection(path)?;
        write_conn.execute_batch(SCHEMA).context("creating the reverse sync schema")?;
        // Stores written before resends existed lack the change time of their rejections.
        sqlite::add_column(&write_conn, "rejected", "changed_at", "INTEGER")
            .context("adding the change time to the rejected table")?;
        let enqueued = Arc::new(Notify::new());
        let commit = {
            let enqueued = enqueued.clone();
            Box::new(move |conn: &mut Connection, writes: &[Write]| commit_and_notify(conn, writes, &enqueued))
        };
        let files = GroupCommit::start("reverse sync", write_conn, open_connection(path)?, commit)?;
        Ok(ReverseStore { files, enqueued, write_gate: tokio::sync::RwLock::new(()) })
    }

    /// Stores `records` durably; returns once they are on disk.
    pub async fn enqueue(&self, records: Vec<IngestRecord>) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.submit(Write::Enqueue(records)).await.map(drop)
    }

    /// Queues what one poll of `source` read (valid rows as records, invalid ones as
    /// rejections) and moves its cursor to `cursor`, in one transaction.
    pub async fn polled(
        &self,
        source: &str,
        records: Vec<IngestRecord>,
        rejected: Vec<Rejection>,
        cursor: String,
    ) -> anyhow::Result<()> {
        self.submit(Write::Polled { records, rejected, source: source.to_string(), cursor }).await.map(drop)
    }

    /// The cursor value up to which `source` has been read.
    pub async fn source_cursor(&self, source: &str) -> anyhow::Result<Option<String>> {
        let source = source.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row("SELECT cursor FROM source_cursors WHERE source = ?1", [source], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    /// Applies what an upsert round settled, in one transaction.
    pub async fn complete(&self, completion: Completion) -> anyhow::Result<()> {
        self.submit(Write::Complete(completion)).await.map(drop)
    }

    /// Up to `max` queued records, oldest first.
    pub async fn pending(&self, max: usize) -> anyhow::Result<Vec<QueuedRecord>> {
        self.read(move |conn| {
            let limit = i64::try_from(max).unwrap_or(i64::MAX);
            let mut stmt = conn.prepare_cached(
                "SELECT seq, mapping, match_key, properties, changed_at FROM queue ORDER BY seq LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })?;
            rows.map(|row| {
                let (seq, mapping, key, properties, changed_at) = row?;
                let properties =
                    serde_json::from_str(&properties).with_context(|| format!("decoding queued record {seq}"))?;
                Ok(QueuedRecord { seq: seq as u64, record: IngestRecord { mapping, key, properties, changed_at } })
            })
            .collect()
        })
        .await
    }

    /// Number of queued records.
    pub async fn pending_count(&self) -> anyhow::Result<u64> {
        self.read(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM queue", [], |row| row.get::<_, i64>(0))? as u64)).await
    }

    /// How many records HubSpot refused, and the newest refusal.
    pub async fn rejected_summary(&self) -> anyhow::Result<RejectedSummary> {
        self.read(|conn| {
            let count = conn.query_row("SELECT COUNT(*) FROM rejected", [], |row| row.get::<_, i64>(0))? as u64;
            let last = select_rejections(conn, &RejectionFilter::default(), "ORDER BY id DESC LIMIT 1")?.pop();
            Ok(RejectedSummary { count, last })
        })
        .await
    }

    /// How many rejected records each mapping (`namespace/name`) has.
    pub async fn rejected_by_mapping(&self) -> anyhow::Result<Vec<(String, u64)>> {
        self.read(|conn| Ok(rows_by_mapping(conn, "rejected")?)).await
    }

    /// How many records each mapping (`namespace/name`) has waiting for HubSpot.
    pub async fn queued_by_mapping(&self) -> anyhow::Result<Vec<(String, u64)>> {
        self.read(|conn| Ok(rows_by_mapping(conn, "queue")?)).await
    }

    /// The selected rejected records, oldest first, at most `limit`, and how many are selected.
    pub async fn rejected(
        &self,
        filter: &RejectionFilter,
        limit: usize,
    ) -> anyhow::Result<(Vec<StoredRejection>, u64)> {
        let filter = filter.clone();
        self.read(move |conn| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let listed = select_rejections(conn, &filter, &format!("ORDER BY id LIMIT {limit}"))?;
            let (ids, mapping) = filter.params();
            let total = conn.query_row(
                &format!("SELECT COUNT(*) FROM rejected WHERE {}", RejectionFilter::CONDITION),
                params![ids, mapping],
                |row| row.get::<_, i64>(0),
            )? as u64;
            Ok((listed, total))
        })
        .await
    }

    /// Puts the selected rejected records back in the queue, oldest first and with their
    /// original change time, for the reverse worker to write again (after the cause was fixed in
    /// HubSpot, e.g. a missing enumeration option added). Rows without a record stay.
    pub async fn resend(&self, filter: RejectionFilter) -> anyhow::Result<ResendReport> {
        let affected = self.submit(Write::Resend(filter)).await?;
        Ok(ResendReport { resent: affected.rows, not_resendable: affected.left })
    }

    /// Removes the selected rejected records; how many there were.
    pub async fn discard_rejected(&self, filter: RejectionFilter) -> anyhow::Result<u64> {
        Ok(self.submit(Write::Discard(filter)).await?.rows)
    }

    /// HubSpot merged the records `merged_away` (the primary first) into `survivor`: what this
    /// receiver wrote to them is what it wrote to the survivor, so that the conflict policy's
    /// last sync time and echo detection follow the merged record's id. The primary's writes
    /// win over the others'; the survivor's own writes stand. How many values were carried.
    pub async fn follow_merge(&self, object_type: &str, survivor: &str, merged_away: &[String]) -> anyhow::Result<u64> {
        let write = Write::FollowMerge {
            object_type: object_type.to_string(),
            survivor: survivor.to_string(),
            merged_away: merged_away.to_vec(),
        };
        Ok(self.submit(write).await?.rows)
    }

    /// HubSpot's time of this receiver's last write of each `(object id, property)` asked for.
    pub async fn last_written(
        &self,
        object_type: &str,
        wanted: Vec<(String, String)>,
    ) -> anyhow::Result<BTreeMap<(String, String), i64>> {
        let object_type = object_type.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT written_at FROM written WHERE object_type = ?1 AND object_id = ?2 AND property = ?3",
            )?;
            let mut found = BTreeMap::new();
            for (object_id, property) in wanted {
                if let Some(at) =
                    stmt.query_row(params![object_type, object_id, property], |row| row.get::<_, i64>(0)).optional()?
                {
                    found.insert((object_id, property), at);
                }
            }
            Ok(found)
        })
        .await
    }

    /// Positions of the events that are echoes of this receiver's own writes: changes HubSpot
    /// attributes to an integration (`changeSource` INTEGRATION) that set a property of an
    /// object to the value this receiver last wrote there, or creations of objects its upserts
    /// created, within `ECHO_WINDOW` of that write. Another app's write of a different value,
    /// or at another time, is no echo: it still flows to the destinations.
    ///
    /// Call it after taking `events` from the event log: it waits for a write in flight to be
    /// committed, so an echo of a write that had started by then is always recognised.
    pub async fn echoes(&self, events: Vec<StoredEvent>) -> anyhow::Result<Vec<u64>> {
        let _no_write_in_flight = self.write_gate.read().await;
        self.read(move |conn| {
            let window = ECHO_WINDOW.as_millis() as i64;
            let mut value_written = conn.prepare_cached(
                "SELECT value, written_at FROM written WHERE object_type = ?1 AND object_id = ?2 AND property = ?3",
            )?;
            let mut object_created =
                conn.prepare_cached("SELECT created_at FROM created WHERE object_type = ?1 AND object_id = ?2")?;
            let mut echoes = Vec::new();
            for stored in &events {
                let event = &stored.event;
                if event.change_source.as_deref() != Some("INTEGRATION") {
                    continue;
                }
                let Some(object_type) = event.object_type() else { continue };
                let object_id = event.object_id.to_string();
                let echo = match (event.action(), event.property_name.as_deref()) {
                    ("propertyChange", Some(property)) => value_written
                        .query_row(params![object_type, object_id, property], |row| {
                            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                        })
                        .optional()?
                        .is_some_and(|(value, at)| {
                            value == event.property_value.as_deref().unwrap_or("")
                                && (event.occurred_at - at).abs() <= window
                        }),
                    ("creation", _) => object_created
                        .query_row(params![object_type, object_id], |row| row.get::<_, i64>(0))
                        .optional()?
                        .is_some_and(|at| (event.occurred_at - at).abs() <= window),
                    _ => false,
                };
                if echo {
                    echoes.push(stored.seq);
                }
            }
            Ok(echoes)
        })
        .await
    }

    /// Marks a write to HubSpot as in flight until the guard is dropped; drop it only after
    /// `complete` committed what the write did (see `echoes`).
    pub async fn hold_for_write(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.write_gate.write().await
    }

    /// Resolves after records were enqueued, or spuriously.
    pub async fn notified(&self) {
        self.enqueued.notified().await
    }

    async fn submit(&self, write: Write) -> anyhow::Result<Affected> {
        self.files.submit(write).await
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        self.files.read(read).await
    }
}

fn select_rejections(
    conn: &Connection,
    filter: &RejectionFilter,
    order_and_limit: &str,
) -> anyhow::Result<Vec<StoredRejection>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, mapping, match_key, properties, status, category, message, correlation_id, rejected_at,
                coalesce(changed_at, rejected_at)
         FROM rejected WHERE {} {order_and_limit}",
        RejectionFilter::CONDITION
    ))?;
    let (ids, mapping) = filter.params();
    let rows = stmt.query_map(params![ids, mapping], |row| {
        Ok((
            StoredRejection {
                id: row.get(0)?,
                rejection: Rejection {
                    mapping: row.get(1)?,
                    key: row.get(2)?,
                    properties: BTreeMap::new(),
                    status: row.get(4)?,
                    category: row.get(5)?,
                    message: row.get(6)?,
                    correlation_id: row.get(7)?,
                    rejected_at: row.get(8)?,
                    changed_at: row.get(9)?,
                },
            },
            row.get::<_, String>(3)?,
        ))
    })?;
    rows.map(|row| {
        let (mut stored, properties) = row?;
        stored.rejection.properties = serde_json::from_str(&properties).context("decoding a rejected record")?;
        Ok(stored)
    })
    .collect()
}

/// A connection to the store file: every commit fsync'd, so a record answered 202 survives a
/// crash or power loss.
fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    sqlite::open(path, "reverse sync store")
}

#[cfg(test)]
mod tests;

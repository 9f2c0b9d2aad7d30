//! Catch-up: finds what webhooks did not bring and feeds it to the worker.
//!
//! A new mapping needs the records that existed before it, and a receiver that was down for
//! longer than HubSpot retries deliveries missed changes. At start, the backfill searches
//! HubSpot for each mapped object type's objects modified since the mapping's cursor (all of
//! them for a new mapping), oldest first, and appends one change hint per object to the event
//! log. The worker then reads and delivers them like webhook events, and the destinations'
//! checkpoints skip what they already have. Webhooks serve everything after that: HubSpot is
//! not polled. While the receiver keeps up (nothing pending in the log), the cursors move to
//! "now minus a margin" every minute, so the next start only searches the time it was away.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{OptionalExtension, params};

use crate::eventlog::EventLog;
use crate::metrics::Metrics;
use crate::sqlite::{self, SharedConnection};
use crate::time::{now_ms, timestamp_ms};
use hubspot::client::{SEARCH_PAGE_LIMIT, SEARCH_RESULTS_CAP};
use hubspot::webhook::subscription_prefix;
use hubspot::{
    CrmObject, Filter, FilterGroup, FilterOperator, HubSpotClient, SearchRequest, SearchSort, SortDirection,
    WebhookEvent,
};
use model::config::MappingConfig;

/// Changes this recent may not be searchable yet (HubSpot indexes with a lag) or their webhook
/// may still be on its way; a cursor never moves closer to now than this.
pub const CURSOR_MARGIN: Duration = Duration::from_secs(10 * 60);
/// How often the cursors move forward while the receiver keeps up.
const CURSOR_TICK: Duration = Duration::from_secs(60);
/// `changeSource` of the hints the backfill appends, which tells them apart in logs.
pub const BACKFILL_SOURCE: &str = "BACKFILL";

/// Per mapping, the time before which every change was handed to the event log.
#[derive(Clone)]
pub struct CursorStore {
    conn: SharedConnection,
}

impl CursorStore {
    /// Opens the cursor table in the worker's state file (`sync.db`).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = sqlite::open(path, "backfill cursor store")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS backfill_cursors (
                 mapping TEXT PRIMARY KEY,
                 modified_since_ms INTEGER NOT NULL
             ) WITHOUT ROWID;",
        )
        .context("creating the backfill cursor table")?;
        Ok(Self { conn: SharedConnection::new(conn, "backfill cursor store") })
    }

    /// The mapping's cursor; `None` for a mapping never backfilled.
    pub fn get(&self, mapping: &str) -> anyhow::Result<Option<i64>> {
        self.conn
            .run_blocking(|conn| {
                conn.query_row("SELECT modified_since_ms FROM backfill_cursors WHERE mapping = ?1", [mapping], |row| {
                    row.get(0)
                })
                .optional()
            })
            .context("reading a backfill cursor")
    }

    /// Moves the mapping's cursor to `ms`; never backwards.
    pub fn advance(&self, mapping: &str, ms: i64) -> anyhow::Result<()> {
        self.conn
            .run_blocking(|conn| {
                conn.execute(
                    "INSERT INTO backfill_cursors (mapping, modified_since_ms) VALUES (?1, ?2)
                     ON CONFLICT (mapping) DO UPDATE SET modified_since_ms = max(modified_since_ms, excluded.modified_since_ms)",
                    params![mapping, ms],
                )
            })
            .context("writing a backfill cursor")?;
        Ok(())
    }
}

/// The catch-up task of one receiver.
pub struct Backfill {
    client: HubSpotClient,
    log: Arc<dyn EventLog>,
    cursors: CursorStore,
    metrics: Arc<Metrics>,
    /// Mapping names by object type, of the mappings that ask for a backfill.
    mappings: BTreeMap<String, Vec<String>>,
    /// Results one search pages through before the next window starts.
    window_cap: u64,
}

/// What one search window saw.
#[derive(Default)]
struct Window {
    hints: u64,
    /// Every match was seen.
    complete: bool,
    newest_modified: i64,
    largest_id: u64,
}

impl Backfill {
    pub fn new(
        mappings: &[MappingConfig],
        client: HubSpotClient,
        log: Arc<dyn EventLog>,
        cursors: CursorStore,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for mapping in mappings.iter().filter(|m| m.policy.backfill) {
            by_type.entry(mapping.records.object_type.clone()).or_default().push(mapping.name.clone());
        }
        Self { client, log, cursors, metrics, mappings: by_type, window_cap: SEARCH_RESULTS_CAP }
    }

    /// Catches up once, then keeps the cursors current until `shutdown` resolves. A failed
    /// catch-up is retried at the next tick; the cursors only move after a complete one.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut caught_up = false;
        loop {
            if !caught_up {
                match self.catch_up(now_ms()).await {
                    Ok(hints) => {
                        caught_up = true;
                        tracing::info!(hints, "backfill complete");
                    }
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "backfill failed; retrying"),
                }
            } else if let Err(e) = self.advance_if_current().await {
                tracing::warn!(error = %format!("{e:#}"), "could not move the backfill cursors");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(CURSOR_TICK) => {}
            }
        }
    }

    /// Appends a hint for every object modified since its mappings' cursors and moves the
    /// cursors to `started_ms` minus the margin; the number of hints appended.
    pub async fn catch_up(&self, started_ms: i64) -> anyhow::Result<u64> {
        let mut hints = 0;
        for (object_type, names) in &self.mappings {
            let mut since = i64::MAX;
            for name in names {
                since = since.min(self.cursors.get(name)?.unwrap_or(0));
            }
            hints += self.catch_up_type(object_type, since).await?;
            for name in names {
                self.cursors.advance(name, started_ms - CURSOR_MARGIN.as_millis() as i64)?;
            }
        }
        Ok(hints)
    }

    /// Searches one type oldest change first, in windows of at most 10,000 results (HubSpot
    /// pages no deeper): each window starts at the last modification time the one before saw.
    /// When a whole window shares one modification time, that instant is walked by object id.
    async fn catch_up_type(&self, object_type: &str, mut since: i64) -> anyhow::Result<u64> {
        let modified = last_modified_property(object_type);
        let mut hints = 0;
        loop {
            let filters = vec![Filter::compare(modified, FilterOperator::Gte, since.to_string())];
            let window = self.search_window(object_type, filters, modified).await?;
            hints += window.hints;
            if window.complete {
                return Ok(hints);
            }
            if window.newest_modified > since {
                // Objects of that very millisecond come again and are deduplicated by the log.
                since = window.newest_modified;
                continue;
            }
            hints += self.catch_up_instant(object_type, since).await?;
            since += 1;
        }
    }

    /// Every object modified at exactly `instant`, in windows by ascending id.
    async fn catch_up_instant(&self, object_type: &str, instant: i64) -> anyhow::Result<u64> {
        let modified = last_modified_property(object_type);
        let mut after_id = 0;
        let mut hints = 0;
        loop {
            let filters = vec![
                Filter::compare(modified, FilterOperator::Eq, instant.to_string()),
                Filter::compare("hs_object_id", FilterOperator::Gt, after_id.to_string()),
            ];
            let window = self.search_window(object_type, filters, "hs_object_id").await?;
            hints += window.hints;
            if window.complete || window.largest_id <= after_id {
                return Ok(hints);
            }
            after_id = window.largest_id;
        }
    }

    /// Pages through one search (ascending by `sort_by`) up to the window cap, appending a hint
    /// per object.
    async fn search_window(&self, object_type: &str, filters: Vec<Filter>, sort_by: &str) -> anyhow::Result<Window> {
        let modified = last_modified_property(object_type);
        let mut request = SearchRequest {
            filter_groups: vec![FilterGroup { filters }],
            sorts: vec![SearchSort { property_name: sort_by.into(), direction: SortDirection::Ascending }],
            properties: vec![modified.into()],
            limit: Some(SEARCH_PAGE_LIMIT),
            ..Default::default()
        };
        let mut window = Window::default();
        let mut seen = 0u64;
        loop {
            let page = self.client.search(object_type, &request).await.context("searching HubSpot")?;
            seen += page.results.len() as u64;
            for object in &page.results {
                window.newest_modified = window.newest_modified.max(modified_ms(object).unwrap_or(0));
                window.largest_id = window.largest_id.max(object.id.parse().unwrap_or(0));
            }
            window.hints += self.append_hints(object_type, &page.results).await?;
            match page.next_after() {
                Some(after) if seen < self.window_cap => request.after = Some(after.to_string()),
                _ => {
                    window.complete = page.total <= seen;
                    return Ok(window);
                }
            }
        }
    }

    async fn append_hints(&self, object_type: &str, objects: &[CrmObject]) -> anyhow::Result<u64> {
        let events: Vec<WebhookEvent> = objects.iter().filter_map(|o| hint(object_type, o)).collect();
        if events.is_empty() {
            return Ok(0);
        }
        let outcome = self.log.append(events).await.context("appending backfill hints to the event log")?;
        self.metrics.backfill_hints.inc_by(outcome.appended as u64);
        Ok(outcome.appended as u64)
    }

    /// Moves every cursor to now minus the margin when nothing is pending: every change HubSpot
    /// delivered until now has been handled.
    async fn advance_if_current(&self) -> anyhow::Result<()> {
        if self.log.pending_count().await? > 0 {
            return Ok(());
        }
        let to = now_ms() - CURSOR_MARGIN.as_millis() as i64;
        for name in self.mappings.values().flatten() {
            self.cursors.advance(name, to)?;
        }
        Ok(())
    }
}

/// The property holding an object's last modification time: contacts have their own name.
pub fn last_modified_property(object_type: &str) -> &'static str {
    if object_type == "contacts" { "lastmodifieddate" } else { "hs_lastmodifieddate" }
}

fn modified_ms(object: &CrmObject) -> Option<i64> {
    object.updated_at.as_deref().and_then(timestamp_ms)
}

/// A change hint for `object`, shaped like the webhook event HubSpot would have sent, so the
/// worker needs no second path. Its identity (object and modification time) makes a repeated
/// backfill of an unchanged object a duplicate.
fn hint(object_type: &str, object: &CrmObject) -> Option<WebhookEvent> {
    let object_id = object.id.parse().ok()?;
    let prefix = subscription_prefix(object_type);
    Some(WebhookEvent {
        occurred_at: modified_ms(object)?,
        subscription_type: format!("{prefix}.backfill"),
        object_id,
        object_type_id: (prefix == "object").then(|| object_type.to_string()),
        change_source: Some(BACKFILL_SOURCE.into()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::EmbeddedEventLog;
    use emulator::{EmulatorConfig, RunningEmulator};
    use hubspot::ClientSettings;

    fn contacts_mapping() -> MappingConfig {
        crate::test_mappings::mapping("crm/contacts", "contacts", ("email", "email"), vec![])
    }

    #[tokio::test]
    async fn windows_reach_every_object_and_a_second_run_only_searches_since_the_cursor() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let emulator =
            RunningEmulator::start(EmulatorConfig { seed: 230, ..Default::default() }, listener).await.unwrap();
        let base_url = emulator.base_url();
        // One batch update: its objects share a modification time, often to the millisecond.
        let inputs: Vec<_> =
            (1..=100).map(|id| serde_json::json!({ "id": id.to_string(), "properties": { "city": "Oslo" } })).collect();
        let updated = reqwest::Client::new()
            .post(format!("{base_url}/crm/v3/objects/contacts/batch/update"))
            .bearer_auth(emulator::DEFAULT_TOKEN)
            .json(&serde_json::json!({ "inputs": inputs }))
            .send()
            .await
            .unwrap();
        assert_eq!(updated.status(), 200);

        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
        let cursors = CursorStore::open(&dir.path().join("sync.db")).unwrap();
        let client = HubSpotClient::new(ClientSettings {
            base_url,
            api_version: "v3".into(),
            access_token: emulator::DEFAULT_TOKEN.into(),
            tier: Default::default(),
        });
        let metrics = Arc::new(Metrics::default());
        let mut backfill = Backfill::new(&[contacts_mapping()], client, log.clone(), cursors.clone(), metrics.clone());
        backfill.window_cap = 40;

        let started = now_ms();
        assert_eq!(backfill.catch_up(started).await.unwrap(), 230);
        let pending = log.pending(1000).await.unwrap();
        let ids: std::collections::BTreeSet<u64> = pending.iter().map(|e| e.event.object_id).collect();
        assert_eq!((pending.len(), ids.len()), (230, 230));
        assert!(pending.iter().all(|e| e.event.object_type().as_deref() == Some("contacts")));
        assert_eq!(metrics.backfill_hints.get(), 230);
        let cursor = cursors.get("crm/contacts").unwrap().unwrap();
        assert_eq!(cursor, started - CURSOR_MARGIN.as_millis() as i64);

        // Only the objects modified since the cursor are found again, and the log knows them.
        assert_eq!(backfill.catch_up(now_ms()).await.unwrap(), 0);
        assert_eq!(log.pending_count().await.unwrap(), 230);
    }

    #[test]
    fn cursors_never_move_backwards_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.db");
        let cursors = CursorStore::open(&path).unwrap();
        assert_eq!(cursors.get("ns/m").unwrap(), None);
        cursors.advance("ns/m", 2_000).unwrap();
        cursors.advance("ns/m", 1_000).unwrap();
        drop(cursors);
        let cursors = CursorStore::open(&path).unwrap();
        assert_eq!(cursors.get("ns/m").unwrap(), Some(2_000));
        assert_eq!(cursors.get("ns/other").unwrap(), None);
    }

    #[test]
    fn hints_look_like_webhook_events_of_their_type() {
        let object = CrmObject {
            id: "42".into(),
            properties: Default::default(),
            created_at: None,
            updated_at: Some("2026-11-26T10:00:00.000Z".into()),
            archived: false,
        };
        let contact = hint("contacts", &object).unwrap();
        assert_eq!(contact.object_type().as_deref(), Some("contacts"));
        assert_eq!((contact.object_id, contact.occurred_at), (42, 1_795_687_200_000));
        assert_eq!(contact.dedup_key(), hint("contacts", &object).unwrap().dedup_key());
        let custom = hint("2-123", &object).unwrap();
        assert_eq!(custom.object_type().as_deref(), Some("2-123"));
        let unmodified = CrmObject { updated_at: None, ..object };
        assert!(hint("contacts", &unmodified).is_none());
    }
}

//! `hubspot-operator bench soak-receiver`: the receiver binary, in a process of its own, under
//! HubSpot's delivery profile for a long time: 10 signed webhook requests in flight, batches of
//! 1 to 100 events, some events sent again in later batches (duplicates) and some requests sent
//! again whole (retries). Each event stands for a real change the benchmark made to a contact in
//! the emulator, which the worker reads back in batches and upserts into a PostgreSQL table.
//!
//! Every interval it prints the receiver's RSS and open file descriptors (from /proc), the size
//! of its data directory (event log and stores), its lag and its counters, so that a leak or an
//! unbounded table shows as a slope; the summary gives the slopes over the second half of the
//! run and checks that the table ends equal to HubSpot and that no valid request got a 5xx.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use rand::Rng as _;
use serde_json::json;

use super::{EmulatorAdmin, proc_status_kib, start_process};
use emulator::{EmulatorConfig, RunningEmulator, TokenGrant};
use hubspot::signature::{HEADER_SIGNATURE_V3, HEADER_TIMESTAMP, sign_v3};
use hubspot::{Tier, WebhookEvent};
use model::api::mapping::{Direction, FieldMapping, MappedRecords, MatchKey};
use model::config::{HubSpotConnection, MappingConfig, ReceiverConfig, SinkConfig, WebhookConfig};
use model::contract::WEBHOOK_PATH;

const TOKEN: &str = "pat-na1-bench-soak-receiver";
const CLIENT_SECRET: &str = "bench-soak-receiver-client-secret";
const TABLE: &str = "soak_contacts";
/// Requests in flight: HubSpot's default concurrency for an app's webhooks.
const IN_FLIGHT: usize = 10;
/// Share of each batch's events that repeat an event sent before.
const DUPLICATE_SHARE: f64 = 0.1;
/// Share of requests sent again whole once answered, as HubSpot retries a timed-out delivery.
const RETRY_SHARE: f64 = 0.05;
/// Contact changes (emulator admin calls) in flight for one request's batch.
const CHANGES_IN_FLIGHT: usize = 8;
/// How long the receiver may take to deliver its backlog once the load stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

/// `hubspot-operator bench soak-receiver` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ReceiverSoakArgs {
    /// How long the load runs.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Seconds between two lines of figures.
    #[arg(long, default_value_t = 60)]
    pub interval_seconds: u64,
    /// Webhook events per second (each one a contact changed in the emulator).
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Contacts the changes go round.
    #[arg(long, default_value_t = 5000)]
    pub contacts: usize,
    /// PostgreSQL server for the destination; the benchmark creates a database of its own
    /// there and drops it at the end.
    #[arg(long, env = "HUBSPOT_OPERATOR_TEST_POSTGRES_URL")]
    pub postgres_url: String,
}

/// One line of figures.
#[derive(Clone, Debug, Default)]
struct Sample {
    elapsed: Duration,
    rss_kib: u64,
    open_fds: u64,
    data_bytes: u64,
    pending: u64,
    oldest_pending_seconds: f64,
    appended: u64,
    duplicates: u64,
    delivered: u64,
    rows: i64,
}

impl Sample {
    const HEADER: &str = "| elapsed | RSS | open fds | data dir | pending events | oldest pending | events appended | duplicates | records delivered | table rows |\n\
                          |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

    fn row(&self) -> String {
        format!(
            "| {:.1} min | {:.1} MiB | {} | {:.1} MiB | {} | {:.1} s | {} | {} | {} | {} |",
            self.elapsed.as_secs_f64() / 60.0,
            self.rss_kib as f64 / 1024.0,
            self.open_fds,
            self.data_bytes as f64 / (1024.0 * 1024.0),
            self.pending,
            self.oldest_pending_seconds,
            self.appended,
            self.duplicates,
            self.delivered,
            self.rows,
        )
    }
}

/// What the load generator sent and what it was answered.
#[derive(Default)]
struct Sent {
    requests: AtomicU64,
    retries: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    /// Contacts changed at least once.
    changed: Mutex<HashSet<u64>>,
}

/// The database of the destination table, dropped by `drop_database`.
struct SoakDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl SoakDatabase {
    async fn create(admin_url: &str) -> anyhow::Result<SoakDatabase> {
        let name = format!("hsop_soak_{}", rand::rng().random_range(0..u32::MAX));
        connect(admin_url).await?.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await?;
        // A later `dbname` parameter overrides the URL's path.
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}dbname={name}");
        Ok(SoakDatabase { admin_url: admin_url.into(), name, url })
    }

    async fn drop_database(self) {
        let dropped = async {
            let admin = connect(&self.admin_url).await?;
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).await?;
            anyhow::Ok(())
        };
        if let Err(e) = dropped.await {
            eprintln!("could not drop the benchmark database {}: {e:#}", self.name);
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    Ok(client)
}

pub async fn run(args: &ReceiverSoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.minutes > 0.0 && args.rate > 0 && args.contacts > 0 && args.interval_seconds > 0,
        "--minutes, --rate, --contacts and --interval-seconds must be > 0"
    );
    let database = SoakDatabase::create(&args.postgres_url).await?;
    let emulator = RunningEmulator::start(
        EmulatorConfig {
            tokens: vec![TokenGrant { token: TOKEN.into(), scopes: None }],
            tier: Tier::Professional,
            ..Default::default()
        },
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    )
    .await?;
    let result = soak(args, &emulator, &database.url).await;
    emulator.shutdown().await;
    database.drop_database().await;
    result
}

async fn soak(args: &ReceiverSoakArgs, emulator: &RunningEmulator, database_url: &str) -> anyhow::Result<()> {
    let admin = EmulatorAdmin::new(emulator.base_url());
    let ids = create_contacts(&admin, args.contacts).await?;

    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    let listen = free_address()?;
    let status_listen = free_address()?;
    let mut config = receiver_config(&data_dir, &emulator.base_url(), database_url);
    config.listen = listen;
    config.status_listen = status_listen;
    let config_path = dir.path().join("receiver.yaml");
    std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;
    let base_url = format!("http://{listen}");
    let receiver_args = [std::ffi::OsStr::new("receiver"), "--config".as_ref(), config_path.as_os_str()];
    let mut receiver = start_process("receiver", receiver_args, &base_url, "/readyz").await?;
    let pid = receiver.id().context("the receiver has no process id")?;
    let observer = Observer {
        pid,
        data_dir,
        metrics_url: format!("http://{status_listen}/metrics"),
        http: reqwest::Client::new(),
        database: connect(database_url).await?,
    };

    println!(
        "receiver soak: {} min, {} events/s over {} contacts, {IN_FLIGHT} requests in flight, batches of 1-100 events, \
         {:.0}% duplicated events, {:.0}% retried requests, PostgreSQL destination\n",
        args.minutes,
        args.rate,
        args.contacts,
        DUPLICATE_SHARE * 100.0,
        RETRY_SHARE * 100.0
    );
    println!("{}", Sample::HEADER);
    let started = Instant::now();
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let sent = Arc::new(Sent::default());
    let load = tokio::spawn(load(
        admin.clone(),
        format!("{base_url}{WEBHOOK_PATH}"),
        ids,
        args.rate,
        started + duration,
        sent.clone(),
    ));

    let mut samples = Vec::new();
    let mut next = started;
    while next < started + duration {
        next += Duration::from_secs(args.interval_seconds).min(started + duration - next);
        tokio::time::sleep_until(next.into()).await;
        // The emulator's request log would otherwise grow in this process for the whole run.
        admin.clear_requests().await?;
        let sample = observer.sample(started.elapsed()).await?;
        println!("{}", sample.row());
        samples.push(sample);
        if let Some(status) = receiver.try_wait()? {
            anyhow::bail!("the receiver exited with {status}");
        }
    }
    load.await.context("load generator")??;

    let drained = observer.drained().await?;
    let lost = lost_contacts(&admin, &observer.database, &sent).await?;
    receiver.start_kill()?;
    println!("{}", summary(&samples, &sent, drained, lost));
    anyhow::ensure!(lost == 0, "{lost} contacts' final state is missing from the destination");
    anyhow::ensure!(sent.server_errors.load(Ordering::Relaxed) == 0, "the receiver answered 5xx to valid requests");
    anyhow::ensure!(sent.client_errors.load(Ordering::Relaxed) == 0, "the receiver answered 4xx to valid requests");
    Ok(())
}

fn free_address() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The receiver's view: its process, its data directory, its metrics and its destination.
struct Observer {
    pid: u32,
    data_dir: std::path::PathBuf,
    metrics_url: String,
    http: reqwest::Client,
    database: tokio_postgres::Client,
}

impl Observer {
    async fn sample(&self, elapsed: Duration) -> anyhow::Result<Sample> {
        let metrics = self.http.get(&self.metrics_url).send().await?.error_for_status()?.text().await?;
        let rows: i64 = self
            .database
            .query_one(format!("SELECT count(*) FROM {TABLE}").as_str(), &[])
            .await
            .map_or(0, |r| r.get(0));
        Ok(Sample {
            elapsed,
            rss_kib: proc_status_kib(Some(self.pid), "VmRSS").unwrap_or(0),
            open_fds: std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, |d| d.count() as u64),
            data_bytes: directory_bytes(&self.data_dir),
            pending: metric(&metrics, "hubspot_operator_events_pending", "") as u64,
            oldest_pending_seconds: metric(&metrics, "hubspot_operator_oldest_pending_event_age_seconds", ""),
            appended: metric(&metrics, "hubspot_operator_webhook_events_total", "outcome=\"appended\"") as u64,
            duplicates: metric(&metrics, "hubspot_operator_webhook_events_total", "outcome=\"duplicate\"") as u64,
            delivered: metric(&metrics, "hubspot_operator_records_delivered_total", "") as u64,
            rows,
        })
    }

    /// Waits until no event is pending; returns how long that took.
    async fn drained(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let metrics = self.http.get(&self.metrics_url).send().await?.text().await?;
            if metric(&metrics, "hubspot_operator_events_pending", "") == 0.0 {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(started.elapsed() < DRAIN_TIMEOUT, "events still pending {DRAIN_TIMEOUT:?} after the load");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The sum of the samples of `name` whose labels contain `labels`, in Prometheus' text format.
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            (series_name == name && series_labels.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Bytes of the files under `dir` (files that vanish while it is read count as empty).
fn directory_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => directory_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn receiver_config(data_dir: &std::path::Path, hubspot_url: &str, database_url: &str) -> ReceiverConfig {
    let records = MappedRecords::new(
        "contacts",
        MatchKey::new("email", "email"),
        vec![FieldMapping::new("firstname", "first_name", Direction::ToExternal)],
    );
    let mut mapping = MappingConfig {
        sinks: vec![SinkConfig::Postgres { url: database_url.into(), table: TABLE.into(), create_table: true }],
        ..MappingConfig::new("bench/soak-contacts", records)
    };
    mapping.policy.backfill = false;
    let hubspot = HubSpotConnection { tier: Tier::Professional, ..HubSpotConnection::new(hubspot_url, TOKEN) };
    let mut config = ReceiverConfig::new("bench/soak", data_dir, hubspot, WebhookConfig::new(CLIENT_SECRET));
    config.admin.listen = ([127, 0, 0, 1], 0).into();
    config.mappings = vec![mapping];
    config
}

/// Creates `count` contacts as a user (no webhook: the load's events are the benchmark's own).
async fn create_contacts(admin: &EmulatorAdmin, count: usize) -> anyhow::Result<Vec<u64>> {
    let ids: Vec<anyhow::Result<u64>> = futures::stream::iter(0..count)
        .map(|i| async move {
            let body = json!({"properties": {"email": format!("soak-{i}@example.com"), "firstname": "0"}});
            let created = admin.call(reqwest::Method::POST, "/_emulator/objects/contacts", Some(body)).await?;
            created["id"].as_str().and_then(|id| id.parse().ok()).context("created contact without a numeric id")
        })
        .buffered(32)
        .collect()
        .await;
    ids.into_iter().collect()
}

/// `IN_FLIGHT` senders until `deadline`, `rate` events per second between them. Each request:
/// change 1..100 contacts in the emulator, then send their events (a share of them replaced by
/// events sent before) signed, and a share of requests again whole.
async fn load(
    admin: EmulatorAdmin,
    url: String,
    ids: Vec<u64>,
    rate: u32,
    deadline: Instant,
    sent: Arc<Sent>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (ids, url) = (Arc::new(ids), Arc::new(url));
    let scheduled_events = Arc::new(AtomicU64::new(0));
    let next_event_id = Arc::new(AtomicU64::new(1));
    let http = reqwest::Client::new();
    let mut senders = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (admin, url, ids, sent, http) = (admin.clone(), url.clone(), ids.clone(), sent.clone(), http.clone());
        let (scheduled_events, next_event_id) = (scheduled_events.clone(), next_event_id.clone());
        senders.push(tokio::spawn(async move {
            let mut earlier: Vec<WebhookEvent> = Vec::new();
            loop {
                let size = rand::rng().random_range(1..=100usize);
                let due = scheduled_events.fetch_add(size as u64, Ordering::Relaxed);
                let at = started + Duration::from_secs_f64(due as f64 / rate as f64);
                if at >= deadline {
                    return anyhow::Ok(());
                }
                tokio::time::sleep_until(at.into()).await;
                let events = changes(&admin, &ids, size, &next_event_id, &earlier, &sent).await?;
                let body = serde_json::to_vec(&events)?;
                post(&http, &url, &body, &sent).await?;
                if rand::rng().random_bool(RETRY_SHARE) {
                    sent.retries.fetch_add(1, Ordering::Relaxed);
                    post(&http, &url, &body, &sent).await?;
                }
                // Keep a bounded sample of this sender's events for later duplicates.
                earlier.extend(events);
                let excess = earlier.len().saturating_sub(500);
                earlier.drain(..excess);
            }
        }));
    }
    for sender in senders {
        sender.await.context("load sender")??;
    }
    Ok(())
}

/// Changes `size` contacts in the emulator and returns their events, a share of them replaced
/// by events from `earlier` (which HubSpot may deliver twice).
async fn changes(
    admin: &EmulatorAdmin,
    ids: &[u64],
    size: usize,
    next_event_id: &AtomicU64,
    earlier: &[WebhookEvent],
    sent: &Sent,
) -> anyhow::Result<Vec<WebhookEvent>> {
    let mut events = Vec::with_capacity(size);
    let mut changed = Vec::new();
    for _ in 0..size {
        if !earlier.is_empty() && rand::rng().random_bool(DUPLICATE_SHARE) {
            events.push(earlier[rand::rng().random_range(0..earlier.len())].clone());
            continue;
        }
        let contact = ids[rand::rng().random_range(0..ids.len())];
        let event_id = next_event_id.fetch_add(1, Ordering::Relaxed);
        changed.push((contact, event_id));
    }
    let results: Vec<anyhow::Result<WebhookEvent>> = futures::stream::iter(changed)
        .map(|(contact, event_id)| async move {
            let value = format!("v{event_id}");
            let path = format!("/_emulator/objects/contacts/{contact}");
            admin.call(reqwest::Method::PATCH, &path, Some(json!({"properties": {"firstname": value}}))).await?;
            anyhow::Ok(WebhookEvent {
                event_id,
                subscription_id: 2_940_017,
                portal_id: 62515,
                app_id: 54321,
                occurred_at: now_ms(),
                subscription_type: "contact.propertyChange".into(),
                object_id: contact,
                change_source: Some("CRM_UI".into()),
                property_name: Some("firstname".into()),
                property_value: Some(value),
                ..Default::default()
            })
        })
        .buffer_unordered(CHANGES_IN_FLIGHT)
        .collect()
        .await;
    let mut changed_ids = sent.changed.lock().expect("changed contacts lock");
    for event in results {
        let event = event?;
        changed_ids.insert(event.object_id);
        events.push(event);
    }
    Ok(events)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Sends one signed webhook request and counts its answer.
async fn post(http: &reqwest::Client, url: &str, body: &[u8], sent: &Sent) -> anyhow::Result<()> {
    let now = now_ms();
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(HEADER_SIGNATURE_V3, sign_v3(CLIENT_SECRET, "POST", url, body, now))
        .header(HEADER_TIMESTAMP, now)
        .body(body.to_vec())
        .send()
        .await
        .context("sending a webhook request")?;
    sent.requests.fetch_add(1, Ordering::Relaxed);
    let status = response.status();
    if status.is_server_error() {
        sent.server_errors.fetch_add(1, Ordering::Relaxed);
    } else if status.is_client_error() {
        sent.client_errors.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Changed contacts whose row in the destination does not hold HubSpot's final `firstname`.
async fn lost_contacts(admin: &EmulatorAdmin, database: &tokio_postgres::Client, sent: &Sent) -> anyhow::Result<usize> {
    let hubspot: HashMap<String, String> = admin
        .objects("contacts")
        .await?
        .into_iter()
        .filter_map(|o| Some((o["id"].as_str()?.to_string(), o["properties"]["firstname"].as_str()?.to_string())))
        .collect();
    let rows = database.query(format!("SELECT hubspot_object_id, first_name FROM {TABLE}").as_str(), &[]).await?;
    let table: HashMap<String, Option<String>> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let changed = sent.changed.lock().expect("changed contacts lock");
    Ok(changed
        .iter()
        .filter(|id| {
            let id = id.to_string();
            table.get(&id).cloned().flatten() != hubspot.get(&id).cloned()
        })
        .count())
}

/// Least-squares slope of `(hours, value)` points, per hour.
fn slope_per_hour(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mean_x, mean_y) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let covariance: f64 = points.iter().map(|(x, y)| (x - mean_x) * (y - mean_y)).sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if variance == 0.0 { 0.0 } else { covariance / variance }
}

fn summary(samples: &[Sample], sent: &Sent, drained: Duration, lost: usize) -> String {
    let half = samples.last().map_or(Duration::ZERO, |s| s.elapsed) / 2;
    let second_half: Vec<&Sample> = samples.iter().filter(|s| s.elapsed >= half).collect();
    let slope = |value: fn(&Sample) -> f64| {
        let points: Vec<(f64, f64)> =
            second_half.iter().map(|s| (s.elapsed.as_secs_f64() / 3600.0, value(s))).collect();
        slope_per_hour(&points)
    };
    format!(
        "\nslopes over the second half ({} samples, least squares, per hour): RSS {:+.2} MiB, open fds {:+.1}, \
         data dir {:+.2} MiB, pending events {:+.1}, oldest pending {:+.2} s\n\
         requests sent: {} ({} retried whole); answered 4xx: {}, 5xx: {}\n\
         backlog delivered {:.1} s after the load stopped; contacts whose final state is missing from the table: {} of {} changed\n",
        second_half.len(),
        slope(|s| s.rss_kib as f64 / 1024.0),
        slope(|s| s.open_fds as f64),
        slope(|s| s.data_bytes as f64 / (1024.0 * 1024.0)),
        slope(|s| s.pending as f64),
        slope(|s| s.oldest_pending_seconds),
        sent.requests.load(Ordering::Relaxed),
        sent.retries.load(Ordering::Relaxed),
        sent.client_errors.load(Ordering::Relaxed),
        sent.server_errors.load(Ordering::Relaxed),
        drained.as_secs_f64(),
        lost,
        sent.changed.lock().expect("changed contacts lock").len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_the_least_squares_fit() {
        assert_eq!(slope_per_hour(&[(0.0, 1.0), (0.5, 2.0), (1.0, 3.0)]), 2.0);
        assert_eq!(slope_per_hour(&[(0.0, 5.0), (1.0, 5.0)]), 0.0);
        assert_eq!(slope_per_hour(&[(0.0, 5.0)]), 0.0);
    }

    #[test]
    fn metric_sums_the_matching_series() {
        let text = "# HELP x\nhubspot_operator_events_pending 7\n\
                    hubspot_operator_webhook_events_total{outcome=\"appended\"} 10\n\
                    hubspot_operator_webhook_events_total{outcome=\"duplicate\"} 3\n\
                    hubspot_operator_events_pending_other 100\n";
        assert_eq!(metric(text, "hubspot_operator_events_pending", ""), 7.0);
        assert_eq!(metric(text, "hubspot_operator_webhook_events_total", ""), 13.0);
        assert_eq!(metric(text, "hubspot_operator_webhook_events_total", "outcome=\"duplicate\""), 3.0);
    }
}

//! `hubspot-operator bench api-efficiency` and `bench lag`: the emulator, the receiver and its
//! sync worker run in this process; users change contacts in the emulator (its admin API, as
//! in HubSpot's UI), the emulator sends signed webhooks to the receiver, and the worker reads
//! the changed contacts from the emulator and delivers them to an HTTP destination served here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use serde_json::{Value, json};

use super::{CallCounts, EmulatorAdmin, ms};
use emulator::{EmulatorConfig, RunningEmulator, TokenGrant};
use hubspot::Tier;
use model::api::mapping::{Direction, FieldMapping, MappedRecords, MatchKey};
use model::config::{HubSpotConnection, MappingConfig, ReceiverConfig, SinkConfig, SyncConfig, WebhookConfig};
use model::contract::WEBHOOK_PATH;
use receiver::metrics::Metrics;
use receiver::sync::Record;

const TOKEN: &str = "pat-na1-bench-sync";
const CLIENT_SECRET: &str = "bench-sync-client-secret";
/// Admin calls (user changes) in flight at once.
const CHANGES_IN_FLIGHT: usize = 32;
/// How long the whole path may take to deliver what it was given before the run fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// `hubspot-operator bench api-efficiency` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct EfficiencyArgs {
    /// Contacts changed once each in the steady phase.
    #[arg(long, default_value_t = 2000)]
    pub changes: usize,
    /// Changes per second in the steady phase.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Contacts changed while the destination is down, then drained.
    #[arg(long, default_value_t = 10_000)]
    pub backlog: usize,
    /// The tier the emulator enforces and the worker's budget is sized for.
    #[arg(long, default_value = "free")]
    pub tier: Tier,
    /// The receiver's `sync.maxBatchWaitMilliseconds`.
    #[arg(long, default_value_t = SyncConfig::DEFAULT_MAX_BATCH_WAIT_MILLISECONDS)]
    pub max_batch_wait_ms: u64,
}

/// `hubspot-operator bench lag` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct LagArgs {
    /// Changes per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// How long changes are made.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Contacts the changes go round.
    #[arg(long, default_value_t = 5000)]
    pub contacts: usize,
    #[arg(long, default_value = "professional")]
    pub tier: Tier,
    /// The receiver's `sync.maxBatchWaitMilliseconds`.
    #[arg(long, default_value_t = SyncConfig::DEFAULT_MAX_BATCH_WAIT_MILLISECONDS)]
    pub max_batch_wait_ms: u64,
}

/// The HTTP destination: answers a switchable status and keeps, per object, the latest
/// `first_name` delivered, and the lag of every record accepted.
#[derive(Default)]
struct Destination {
    status: AtomicU16,
    delivered: Mutex<Delivered>,
}

#[derive(Default)]
struct Delivered {
    latest: HashMap<String, String>,
    /// Arrival time minus the record's `updatedAt`, in milliseconds.
    lags_ms: Vec<i64>,
    first_accepted: Option<Instant>,
    last_accepted: Option<Instant>,
}

impl Destination {
    async fn receive(
        axum::extract::State(this): axum::extract::State<Arc<Destination>>,
        body: axum::body::Bytes,
    ) -> axum::http::StatusCode {
        let status = this.status.load(Ordering::SeqCst);
        if status == 200 {
            let now_ms =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            let records: Vec<Record> = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|b| serde_json::from_value(b["records"].clone()).ok())
                .unwrap_or_default();
            let mut d = this.delivered.lock().expect("destination lock");
            let now = Instant::now();
            d.first_accepted.get_or_insert(now);
            d.last_accepted = Some(now);
            for record in records {
                if let Some(updated_at) = record.updated_at_ms() {
                    d.lags_ms.push(now_ms - updated_at);
                }
                if let Some(Some(name)) = record.fields.get("first_name") {
                    d.latest.insert(record.object_id.clone(), name.clone());
                }
            }
        }
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// How many of `ids` hold `value`.
    fn holding(&self, ids: &[String], value: &str) -> usize {
        let d = self.delivered.lock().expect("destination lock");
        ids.iter().filter(|id| d.latest.get(*id).map(String::as_str) == Some(value)).count()
    }
}

/// Emulator, receiver with its worker, and destination, running.
struct Pipeline {
    emulator: Option<RunningEmulator>,
    admin: EmulatorAdmin,
    destination: Arc<Destination>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    receiver: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data_dir: tempfile::TempDir,
}

impl Pipeline {
    async fn start(tier: Tier, sync: SyncConfig) -> anyhow::Result<Pipeline> {
        let destination = Arc::new(Destination { status: AtomicU16::new(200), ..Default::default() });
        let destination_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let destination_url = format!("http://{}/records", destination_listener.local_addr()?);
        let app = axum::Router::new()
            .route("/records", axum::routing::post(Destination::receive))
            .with_state(destination.clone());
        tokio::spawn(async move { axum::serve(destination_listener, app).await });

        let receiver_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let webhook_url = format!("http://{}{WEBHOOK_PATH}", receiver_listener.local_addr()?);
        let emulator = RunningEmulator::start(
            EmulatorConfig {
                tokens: vec![TokenGrant { token: TOKEN.into(), scopes: None }],
                webhook_url: Some(webhook_url),
                client_secret: CLIENT_SECRET.into(),
                tier,
                ..Default::default()
            },
            tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        )
        .await?;
        let data_dir = tempfile::tempdir()?;
        let mut config = receiver_config(data_dir.path(), &emulator.base_url(), tier, &destination_url);
        config.sync = sync;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let receiver = tokio::spawn(receiver::run(config, receiver_listener, Arc::new(Metrics::default()), async {
            let _ = stopped.await;
        }));
        let admin = EmulatorAdmin::new(emulator.base_url());
        Ok(Pipeline { emulator: Some(emulator), admin, destination, stop: Some(stop), receiver, _data_dir: data_dir })
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let stopped = (&mut self.receiver).await.context("receiver task")?;
        if let Some(emulator) = self.emulator.take() {
            emulator.shutdown().await;
        }
        stopped
    }

    /// Creates `count` contacts as a user; returns their ids once all are delivered.
    async fn create_contacts(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let admin = &self.admin;
        let ids: Vec<anyhow::Result<String>> = futures::stream::iter(0..count)
            .map(|i| async move {
                let body = json!({"properties": {"email": format!("bench-{i}@example.com"), "firstname": "0"}});
                let created = admin.call(reqwest::Method::POST, "/_emulator/objects/contacts", Some(body)).await?;
                created["id"].as_str().map(String::from).context("created contact without id")
            })
            .buffered(CHANGES_IN_FLIGHT)
            .collect()
            .await;
        let ids = ids.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        self.delivered(&ids, "0").await?;
        Ok(ids)
    }

    /// Sets `firstname` of `ids` to `value`, as a user, about `rate` changes per second (as
    /// fast as possible when 0); returns how long it took.
    async fn change(&self, ids: &[String], value: &str, rate: u32) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let admin = &self.admin;
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(ids.iter().enumerate())
            .map(|(i, id)| async move {
                if rate > 0 {
                    tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / rate as f64)).into()).await;
                }
                let body = json!({"properties": {"firstname": value}});
                admin
                    .call(reqwest::Method::PATCH, &format!("/_emulator/objects/contacts/{id}"), Some(body))
                    .await
                    .map(drop)
            })
            .buffer_unordered(CHANGES_IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<()>>()?;
        Ok(started.elapsed())
    }

    /// Waits until the destination holds `value` for every one of `ids`.
    async fn delivered(&self, ids: &[String], value: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let holding = self.destination.holding(ids, value);
            if holding == ids.len() {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the destination holds {value:?} for {holding} of {} contacts after {DELIVERY_TIMEOUT:?}",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the emulator has no webhook event left to deliver.
    async fn webhooks_sent(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        while self.admin.call(reqwest::Method::GET, "/_emulator/webhooks", None).await?["pending"] != json!(0) {
            anyhow::ensure!(Instant::now() < deadline, "webhooks still pending after {DELIVERY_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

fn receiver_config(data_dir: &std::path::Path, hubspot_url: &str, tier: Tier, destination_url: &str) -> ReceiverConfig {
    let records = MappedRecords::new(
        "contacts",
        MatchKey::new("email", "email"),
        vec![FieldMapping::new("firstname", "first_name", Direction::ToExternal)],
    );
    let mut mapping = MappingConfig {
        sinks: vec![SinkConfig::Http { url: destination_url.into(), signing_secret: None }],
        ..MappingConfig::new("bench/contacts", records)
    };
    mapping.policy.backfill = false;
    let hubspot = HubSpotConnection { tier, ..HubSpotConnection::new(hubspot_url, TOKEN) };
    let mut config = ReceiverConfig::new("bench/sync", data_dir, hubspot, WebhookConfig::new(CLIENT_SECRET));
    config.listen = ([127, 0, 0, 1], 0).into();
    // Ephemeral, as for the admin API: a benchmark runs beside whatever holds 8081.
    config.status_listen = ([127, 0, 0, 1], 0).into();
    config.admin.listen = ([127, 0, 0, 1], 0).into();
    config.mappings = vec![mapping];
    config
}

/// `bench api-efficiency` figures.
#[derive(Clone, Debug)]
pub struct EfficiencyReport {
    pub changes: usize,
    pub change_seconds: f64,
    /// HubSpot calls made while the steady changes were delivered.
    pub steady: CallCounts,
    pub backlog: usize,
    /// From the destination's first accepted delivery after its return to the last.
    pub drain_seconds: f64,
    /// HubSpot calls made from the destination's return until the backlog was delivered.
    pub draining: CallCounts,
    pub budget: u32,
}

impl EfficiencyReport {
    pub fn calls_per_100_changes(&self) -> f64 {
        self.steady.calls as f64 * 100.0 / self.changes as f64
    }

    /// Share of the budget the drain used: calls per 10 s against the burst limit.
    pub fn budget_share_draining(&self) -> f64 {
        let windows = self.drain_seconds / 10.0;
        self.draining.calls as f64 / (self.budget as f64 * windows)
    }

    pub fn table(&self) -> String {
        format!(
            "| phase | changed records | HubSpot calls | calls per 100 records | rate-limit 429s | figure |\n\
             |---|---:|---:|---:|---:|---|\n\
             | steady ({} changes in {:.1} s) | {} | {} | {:.2} | {} | target ≤ 1.05 calls per 100 |\n\
             | backlog drain ({:.1} s) | {} | {} | {:.2} | {} | {:.0}% of the budget ({} per 10 s) used; target ≥ 90% |\n",
            self.changes,
            self.change_seconds,
            self.changes,
            self.steady.calls,
            self.calls_per_100_changes(),
            self.steady.rate_limited,
            self.drain_seconds,
            self.backlog,
            self.draining.calls,
            self.draining.calls as f64 * 100.0 / self.backlog as f64,
            self.draining.rate_limited,
            self.budget_share_draining() * 100.0,
            self.budget,
        )
    }
}

pub async fn api_efficiency(args: &EfficiencyArgs) -> anyhow::Result<EfficiencyReport> {
    anyhow::ensure!(args.changes > 0 && args.backlog > 0, "--changes and --backlog must be > 0");
    let pipeline =
        Pipeline::start(args.tier, SyncConfig { max_batch_wait_milliseconds: args.max_batch_wait_ms }).await?;
    let result = measure_efficiency(&pipeline, args).await;
    pipeline.stop().await?;
    result
}

async fn measure_efficiency(pipeline: &Pipeline, args: &EfficiencyArgs) -> anyhow::Result<EfficiencyReport> {
    let ids = pipeline.create_contacts(args.changes.max(args.backlog)).await?;
    let admin = &pipeline.admin;

    // Steady state: each of `changes` contacts changed once, at `rate`.
    let steady_ids = &ids[..args.changes];
    admin.clear_requests().await?;
    let change_time = pipeline.change(steady_ids, "1", args.rate).await?;
    pipeline.delivered(steady_ids, "1").await?;
    let steady = admin.counts().await?;

    // Backlog: the destination is down while `backlog` contacts change, then returns.
    let backlog_ids = &ids[..args.backlog];
    pipeline.destination.status.store(503, Ordering::SeqCst);
    pipeline.change(backlog_ids, "2", 0).await?;
    pipeline.webhooks_sent().await?;
    admin.clear_requests().await?;
    {
        let mut d = pipeline.destination.delivered.lock().expect("destination lock");
        d.first_accepted = None;
    }
    pipeline.destination.status.store(200, Ordering::SeqCst);
    pipeline.delivered(backlog_ids, "2").await?;
    let draining = admin.counts().await?;
    let drain_seconds = {
        let d = pipeline.destination.delivered.lock().expect("destination lock");
        match (d.first_accepted, d.last_accepted) {
            (Some(first), Some(last)) => (last - first).as_secs_f64(),
            _ => 0.0,
        }
    };
    Ok(EfficiencyReport {
        changes: args.changes,
        change_seconds: change_time.as_secs_f64(),
        steady,
        backlog: args.backlog,
        drain_seconds,
        draining,
        budget: args.tier.burst_limit(),
    })
}

/// `bench lag` figures.
#[derive(Clone, Debug)]
pub struct LagReport {
    pub target_rate: u32,
    pub changes: usize,
    /// Changes per second the generator achieved.
    pub achieved_rate: f64,
    pub records: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub hubspot: CallCounts,
}

impl LagReport {
    pub fn table(&self) -> String {
        format!(
            "| target changes/s | achieved changes/s | changes | records delivered | p50 lag | p99 lag | max lag | HubSpot calls | rate-limit 429s |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
             | {} | {:.0} | {} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {} | {} |\n",
            self.target_rate,
            self.achieved_rate,
            self.changes,
            self.records,
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.hubspot.calls,
            self.hubspot.rate_limited
        )
    }
}

pub async fn lag(args: &LagArgs) -> anyhow::Result<LagReport> {
    anyhow::ensure!(
        args.rate > 0 && args.seconds > 0 && args.contacts > 0,
        "--rate, --seconds, --contacts must be > 0"
    );
    let pipeline =
        Pipeline::start(args.tier, SyncConfig { max_batch_wait_milliseconds: args.max_batch_wait_ms }).await?;
    let result = measure_lag(&pipeline, args).await;
    pipeline.stop().await?;
    result
}

async fn measure_lag(pipeline: &Pipeline, args: &LagArgs) -> anyhow::Result<LagReport> {
    let ids = pipeline.create_contacts(args.contacts).await?;
    pipeline.admin.clear_requests().await?;
    pipeline.destination.delivered.lock().expect("destination lock").lags_ms.clear();
    // Changes go round the contacts; each contact's last change carries the last value.
    let changes = args.rate as usize * args.seconds as usize;
    let targets: Vec<String> = (0..changes).map(|i| ids[i % ids.len()].clone()).collect();
    let mut elapsed = Duration::ZERO;
    let mut last_values = HashMap::new();
    for (round, chunk) in targets.chunks(ids.len()).enumerate() {
        let value = format!("lag-{round}");
        elapsed += pipeline.change(chunk, &value, args.rate).await?;
        for id in chunk {
            last_values.insert(id.clone(), value.clone());
        }
    }
    for (value, group) in group_by_value(&last_values) {
        pipeline.delivered(&group, &value).await?;
    }
    let hubspot = pipeline.admin.counts().await?;
    let mut lags = pipeline.destination.delivered.lock().expect("destination lock").lags_ms.clone();
    anyhow::ensure!(!lags.is_empty(), "no record was delivered");
    lags.sort();
    let at = |q: f64| Duration::from_millis(lags[((lags.len() as f64 * q) as usize).min(lags.len() - 1)].max(0) as u64);
    Ok(LagReport {
        target_rate: args.rate,
        changes,
        achieved_rate: changes as f64 / elapsed.as_secs_f64(),
        records: lags.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
        hubspot,
    })
}

fn group_by_value(values: &HashMap<String, String>) -> HashMap<String, Vec<String>> {
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for (id, value) in values {
        groups.entry(value.clone()).or_default().push(id.clone());
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every change reaches the destination through webhooks and batch reads, HubSpot never
    /// refused a call, and the backlog drained completely.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn api_efficiency_delivers_every_change_without_rate_limit_refusals() {
        let args = EfficiencyArgs { changes: 300, rate: 300, backlog: 600, tier: Tier::Free, max_batch_wait_ms: 200 };
        let report = api_efficiency(&args).await.unwrap();
        assert!(report.steady.calls > 0, "the worker read the changes from HubSpot");
        assert!(report.draining.calls > 0);
        assert_eq!(report.steady.rate_limited + report.draining.rate_limited, 0, "{}", report.table());
        assert_eq!((report.steady.injected_faults, report.draining.injected_faults), (0, 0));
    }

    /// Every change made reaches the destination with its latest value, and the lag is
    /// measured on each delivered record.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lag_delivers_every_change_and_measures_each_record() {
        let args = LagArgs { rate: 200, seconds: 2, contacts: 150, tier: Tier::Free, max_batch_wait_ms: 200 };
        let report = lag(&args).await.unwrap();
        assert_eq!(report.changes, 400);
        assert!(report.records >= 150, "at least the last state of each contact: {}", report.table());
        assert!(report.p50 <= report.p99 && report.p99 <= report.max);
        assert_eq!(report.hubspot.rate_limited, 0, "{}", report.table());
    }
}

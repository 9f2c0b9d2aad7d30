//! `hubspot-operator bench [ingest]`: load the webhook ingress the way HubSpot does (signed batches, a
//! fixed number of requests in flight) and report throughput, acknowledgement latency and
//! memory. The load generator runs in the same process, on the same cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config::LogLimits;
use crate::config::{HubSpotConnection, ReceiverConfig, WebhookConfig};
use crate::eventlog::{EmbeddedEventLog, EventLog, JetStreamEventLog, jetstream};
use crate::hubspot::WebhookEvent;
use crate::hubspot::signature::{HEADER_SIGNATURE_V3, HEADER_TIMESTAMP, sign_v3};
use crate::receiver::{ReceiverState, WEBHOOK_PATH, router, serve};
use crate::telemetry::Metrics;

use super::{ms, peak_rss_kib};

const CLIENT_SECRET: &str = "bench-client-secret";

/// `hubspot-operator bench ingest` flags (also `bench` with no mode).
#[derive(clap::Args, Clone, Debug)]
pub struct IngestArgs {
    /// Events per webhook request (HubSpot sends up to 100).
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub batch_sizes: Vec<usize>,
    /// Requests in flight (HubSpot's default is 10).
    #[arg(long, value_delimiter = ',', default_value = "10,64")]
    pub concurrency: Vec<usize>,
    /// How long each combination runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Directory for the event log files (use the disk you will deploy on).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Event log backend to store into.
    #[arg(long, value_enum, default_value_t = BenchLog::Embedded)]
    pub event_log: BenchLog,
    /// NATS server for `--event-log jetstream`; each combination gets streams of its own,
    /// deleted afterwards.
    #[arg(long, env = "HUBSPOT_OPERATOR_BENCH_NATS_URL", required_if_eq("event_log", "jetstream"))]
    pub nats_url: Option<String>,
}

/// The event log a benchmark run stores into.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchLog {
    Embedded,
    Jetstream,
}

/// One measured combination.
#[derive(Debug, Clone)]
pub struct IngestFigures {
    pub batch_size: usize,
    pub concurrency: usize,
    pub requests: usize,
    pub events_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    println!("| batch size | in flight | requests | events/s | p50 ack | p99 ack | max ack |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &batch_size in &args.batch_sizes {
        for &concurrency in &args.concurrency {
            let duration = Duration::from_secs(args.seconds);
            let f = match (args.event_log, &args.nats_url) {
                (BenchLog::Jetstream, Some(url)) => {
                    let settings = bench_stream(url);
                    let log = Arc::new(JetStreamEventLog::open(&settings).await?);
                    let figures = ingest(log, batch_size, concurrency, duration).await;
                    delete_streams(&settings).await;
                    figures?
                }
                (BenchLog::Jetstream, None) => anyhow::bail!("--event-log jetstream needs --nats-url"),
                (BenchLog::Embedded, _) => {
                    let dir = match &args.data_dir {
                        Some(base) => tempfile::TempDir::new_in(base)?,
                        None => tempfile::TempDir::new()?,
                    };
                    let log = Arc::new(EmbeddedEventLog::open_with(&dir.path().join("events.db"), UNLIMITED)?);
                    ingest(log, batch_size, concurrency, duration).await?
                }
            };
            println!(
                "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
                f.batch_size,
                f.concurrency,
                f.requests,
                f.events_per_second,
                ms(f.p50),
                ms(f.p99),
                ms(f.max)
            );
        }
    }
    if let Some(peak) = peak_rss_kib() {
        println!("\npeak RSS of the process (receiver and load generator): {:.1} MiB", peak as f64 / 1024.0);
    }
    Ok(())
}

/// No size limit: the benchmark measures storing, not refusing.
const UNLIMITED: LogLimits = LogLimits { max_pending_events: 0, max_pending_bytes: 0 };

/// Streams of their own for one combination.
fn bench_stream(url: &str) -> jetstream::Settings {
    let suffix: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..10).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
    };
    jetstream::Settings {
        url: url.to_string(),
        stream: format!("hsop_bench_{suffix}"),
        subject: format!("hsop.bench.{suffix}.events"),
        replicas: 1,
        limits: UNLIMITED,
        ack_wait: Duration::from_secs(60),
    }
}

async fn delete_streams(settings: &jetstream::Settings) {
    let Ok(client) = async_nats::connect(settings.url.as_str()).await else { return };
    let context = async_nats::jetstream::new(client);
    for name in [settings.stream.clone(), format!("{}_seen", settings.stream)] {
        if let Err(e) = context.delete_stream(&name).await {
            eprintln!("could not delete benchmark stream {name}: {e}");
        }
    }
}

/// Runs the receiver's ingress over `log` and loads it for `duration`.
pub async fn ingest(
    log: Arc<dyn EventLog>,
    batch_size: usize,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<IngestFigures> {
    let config = bench_config();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}{WEBHOOK_PATH}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(ReceiverState::new(&config, log, Arc::new(Metrics::default())));
    let server = tokio::spawn(serve(listener, app, async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let started = Instant::now();
    let deadline = started + duration;
    let next_event = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let mut senders = Vec::new();
    for _ in 0..concurrency {
        let (http, url, next_event) = (http.clone(), url.clone(), next_event.clone());
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let first = next_event.fetch_add(batch_size as u64, std::sync::atomic::Ordering::Relaxed);
                let body = batch(first, batch_size);
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header(HEADER_SIGNATURE_V3, sign_v3(CLIENT_SECRET, "POST", &url, &body, now_ms))
                    .header(HEADER_TIMESTAMP, now_ms.to_string())
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(response.status().is_success(), "the receiver answered {}", response.status());
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for sender in senders {
        latencies.extend(sender.await.context("load generator task")??);
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    server.await??;

    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(IngestFigures {
        batch_size,
        concurrency,
        requests: latencies.len(),
        events_per_second: (latencies.len() * batch_size) as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        max: *latencies.last().expect("at least one request"),
    })
}

fn bench_config() -> ReceiverConfig {
    ReceiverConfig {
        integration: "bench/ingest".into(),
        listen: ([127, 0, 0, 1], 0).into(),
        // The ingress alone runs; nothing is written there.
        data_dir: std::env::temp_dir(),
        hubspot: HubSpotConnection {
            base_url: "http://127.0.0.1:9".into(),
            api_version: "v3".into(),
            access_token: "unused".into(),
            access_token_file: None,
            tier: Default::default(),
        },
        webhooks: WebhookConfig {
            client_secret: CLIENT_SECRET.into(),
            public_url: None,
            accept_legacy_signatures: false,
            max_body_bytes: 1024 * 1024,
        },
        event_log: Default::default(),
        ingest: None,
        mappings: vec![],
        admin: Default::default(),
        sync: Default::default(),
    }
}

/// A webhook body of `size` distinct, realistic property-change events. HubSpot's event ids are
/// not sequential across a portal's subscriptions: here they are scattered (a bijection of the
/// counter, so still distinct), which a log whose cost depends on their order would show.
fn batch(first: u64, size: usize) -> Vec<u8> {
    let events: Vec<WebhookEvent> = (first..first + size as u64)
        .map(|id| WebhookEvent {
            event_id: id.wrapping_mul(0x9E37_79B9_7F4A_7C15) & ((1 << 62) - 1),
            subscription_id: 2_940_017,
            portal_id: 62515,
            app_id: 54321,
            occurred_at: 1_764_000_000_000 + id as i64,
            subscription_type: "contact.propertyChange".into(),
            attempt_number: 0,
            object_id: 1_000_000 + id % 50_000,
            change_source: Some("CRM_UI".into()),
            source_id: Some("userId:1234567".into()),
            property_name: Some("firstname".into()),
            property_value: Some(format!("Name {id}")),
            ..Default::default()
        })
        .collect();
    serde_json::to_vec(&events).expect("events serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark itself works (figures are not asserted: they belong in docs/benchmarks.md).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ingest_measures_acknowledged_events() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
        let figures = ingest(log, 10, 4, Duration::from_millis(300)).await.unwrap();
        assert!(figures.requests > 0);
        assert!(figures.p50 <= figures.p99 && figures.p99 <= figures.max);
        let log = EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap();
        assert_eq!(
            log.pending_count().await.unwrap(),
            (figures.requests * 10) as u64,
            "every acknowledged event is stored"
        );
    }
}

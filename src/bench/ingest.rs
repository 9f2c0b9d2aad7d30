//! `hubspot-operator bench [ingest]`: load the webhook ingress the way HubSpot does (signed batches, a
//! fixed number of requests in flight) and report throughput, acknowledgement latency and
//! memory. Each combination starts a receiver of its own as a child process (`bench
//! ingest-receiver`), so the peak RSS reported is the receiver's alone; the load generator runs
//! in the benchmark's process, on the same cores.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use hubspot::signature::{HEADER_SIGNATURE_V3, HEADER_TIMESTAMP, sign_v3};
use model::config::LogLimits;
use model::config::{HubSpotConnection, ReceiverConfig, WebhookConfig};
use model::contract::WEBHOOK_PATH;
use receiver::eventlog::{EmbeddedEventLog, EventLog, JetStreamEventLog, jetstream};
use receiver::metrics::Metrics;
use receiver::{ListenerSettings, ServerState, router, serve};

use super::slow_clients::SlowClients;
use super::{ms, peak_rss_kib, start_child};

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
    pub data_dir: Option<PathBuf>,
    /// Event log backend to store into.
    #[arg(long, value_enum, default_value_t = BenchLog::Embedded)]
    pub event_log: BenchLog,
    /// NATS server for `--event-log jetstream` (one URL or several, comma-separated; of a
    /// cluster, any node's will do, the client learns the others from it); each combination
    /// gets streams of its own, deleted afterwards.
    #[arg(long, env = "HUBSPOT_OPERATOR_BENCH_NATS_URL", required_if_eq("event_log", "jetstream"))]
    pub nats_url: Option<String>,
    /// Replicas of each stream for `--event-log jetstream` (more than 1 needs a cluster of at
    /// least that many JetStream servers).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Clients that hold a connection mid-request throughout each combination (half send part
    /// of their headers, half announce a body they never send; cut off by the receiver's read
    /// timeouts, they connect again at once).
    #[arg(long, default_value_t = 0)]
    pub slow_connections: usize,
}

/// The event log a benchmark run stores into.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchLog {
    Embedded,
    Jetstream,
}

/// `hubspot-operator bench ingest-receiver` flags: the receiver `bench ingest` loads, in a
/// process of its own so that the peak RSS reported is the receiver's alone. It stops when its
/// standard input closes (or on SIGTERM or Ctrl-C), closing its event log.
#[derive(clap::Args, Clone, Debug)]
pub struct ReceiverArgs {
    /// Address to serve the webhook ingress on.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The event log a benchmark receiver stores into: an embedded log file, or a JetStream stream
/// (with its `_seen` companion). No size limits: the benchmark measures storing, not refusing.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// Embedded event log file.
    #[arg(long, required_unless_present = "nats_url", conflicts_with = "nats_url")]
    pub log_file: Option<PathBuf>,
    /// NATS server of a JetStream event log.
    #[arg(long, requires = "stream")]
    pub nats_url: Option<String>,
    /// Name of the JetStream event stream; its subject is `<stream>.events`.
    #[arg(long)]
    pub stream: Option<String>,
    /// Replicas of the JetStream streams.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
}

impl StoreArgs {
    fn embedded(log_file: PathBuf) -> StoreArgs {
        StoreArgs { log_file: Some(log_file), nats_url: None, stream: None, replicas: 1 }
    }

    /// Streams of their own, named at random.
    fn jetstream(url: &str, replicas: usize) -> StoreArgs {
        let suffix: String = {
            use rand::Rng;
            let mut rng = rand::rng();
            (0..10).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
        };
        StoreArgs { log_file: None, nats_url: Some(url.into()), stream: Some(format!("hsop_bench_{suffix}")), replicas }
    }

    /// These settings as `bench ingest-receiver` flags.
    fn flags(&self) -> Vec<OsString> {
        let mut flags = Vec::new();
        if let Some(path) = &self.log_file {
            flags.extend(["--log-file".into(), path.into()]);
        }
        if let (Some(url), Some(stream)) = (&self.nats_url, &self.stream) {
            let replicas = self.replicas.to_string();
            flags.extend(["--nats-url", url, "--stream", stream, "--replicas", &replicas].map(OsString::from));
        }
        flags
    }

    /// The JetStream log's settings, if it is one.
    fn jetstream_settings(&self) -> Option<jetstream::Settings> {
        let (url, stream) = (self.nats_url.as_ref()?, self.stream.as_ref()?);
        Some(jetstream::Settings {
            url: url.clone(),
            stream: stream.clone(),
            subject: format!("{stream}.events"),
            replicas: self.replicas,
            limits: UNLIMITED,
            ack_wait: Duration::from_secs(60),
        })
    }

    async fn open(&self) -> anyhow::Result<Arc<dyn EventLog>> {
        if let Some(settings) = self.jetstream_settings() {
            return Ok(Arc::new(JetStreamEventLog::open(&settings).await?));
        }
        let path = self.log_file.as_ref().context("no event log: --log-file or --nats-url and --stream")?;
        Ok(Arc::new(EmbeddedEventLog::open_with(path, UNLIMITED)?))
    }
}

/// No size limit: the benchmark measures storing, not refusing.
const UNLIMITED: LogLimits = LogLimits { max_pending_events: 0, max_pending_bytes: 0 };

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
    println!("| batch size | in flight | requests | events/s | p50 ack | p99 ack | max ack | receiver RSS |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &batch_size in &args.batch_sizes {
        for &concurrency in &args.concurrency {
            let (f, receiver_rss) = combination(&args, batch_size, concurrency).await?;
            println!(
                "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
                f.batch_size,
                f.concurrency,
                f.requests,
                f.events_per_second,
                ms(f.p50),
                ms(f.p99),
                ms(f.max),
                receiver_rss.map_or("n/a".into(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0))
            );
        }
    }
    println!(
        "\nreceiver RSS: peak RSS (VmHWM) of the receiver process alone, a fresh one per combination; \
         the load generator runs in another process and is not included."
    );
    if args.slow_connections > 0 {
        println!(
            "\n{} stalled clients held connections mid-request throughout each combination \
             (the receiver's default 10 s read timeouts cut them off, and they connected again).",
            args.slow_connections
        );
    }
    Ok(())
}

/// Starts a receiver process over a fresh event log, loads it, and returns the figures and the
/// receiver's peak RSS (KiB) just before it was stopped.
async fn combination(
    args: &IngestArgs,
    batch_size: usize,
    concurrency: usize,
) -> anyhow::Result<(IngestFigures, Option<u64>)> {
    // Lives until the receiver has stopped.
    let mut dir = None;
    let store = match (args.event_log, &args.nats_url) {
        (BenchLog::Jetstream, Some(url)) => StoreArgs::jetstream(url, args.replicas),
        (BenchLog::Jetstream, None) => anyhow::bail!("--event-log jetstream needs --nats-url"),
        (BenchLog::Embedded, _) => {
            let path = dir
                .insert(match &args.data_dir {
                    Some(base) => tempfile::TempDir::new_in(base)?,
                    None => tempfile::TempDir::new()?,
                })
                .path()
                .join("events.db");
            StoreArgs::embedded(path)
        }
    };
    let measured = async {
        let receiver_args = [OsString::from("bench"), "ingest-receiver".into()].into_iter().chain(store.flags());
        let (receiver, base_url) = start_child("receiver", receiver_args, "/readyz").await?;
        let duration = Duration::from_secs(args.seconds);
        let authority = base_url.trim_start_matches("http://");
        let slow = SlowClients::start(authority, args.slow_connections, Instant::now() + duration * 2).await?;
        let figures = load(&format!("{base_url}{WEBHOOK_PATH}"), batch_size, concurrency, duration).await;
        slow.stop().await;
        let peak = receiver.id().and_then(|pid| peak_rss_kib(Some(pid)));
        stop(receiver).await?;
        anyhow::Ok((figures?, peak))
    }
    .await;
    if let Some(settings) = store.jetstream_settings() {
        delete_streams(&settings).await;
    }
    drop(dir);
    measured
}

/// Closes the receiver's standard input, which stops it, and waits until it has exited.
async fn stop(mut receiver: tokio::process::Child) -> anyhow::Result<()> {
    drop(receiver.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(30), receiver.wait())
        .await
        .context("the receiver did not stop within 30 s")??;
    anyhow::ensure!(status.success(), "the receiver exited with {status}");
    Ok(())
}

async fn delete_streams(settings: &jetstream::Settings) {
    let Ok(client) = async_nats::connect(jetstream::servers(&settings.url)).await else { return };
    let context = async_nats::jetstream::new(client);
    for name in [settings.stream.clone(), format!("{}_seen", settings.stream)] {
        if let Err(e) = context.delete_stream(&name).await {
            eprintln!("could not delete benchmark stream {name}: {e}");
        }
    }
}

/// `bench ingest-receiver`: serves the receiver's ingress over the event log of `args` until
/// standard input closes (or SIGTERM or Ctrl-C), then closes the log.
pub async fn serve_receiver(args: ReceiverArgs) -> anyhow::Result<()> {
    let log = args.store.open().await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    // A thread of its own, not a blocking task: the runtime would wait for a read that a signal
    // interrupted before the end of input.
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed.send(());
    });
    serve(listener, ingress(log), public_listener(), async {
        tokio::select! {
            _ = stdin_closed => {}
            _ = crate::shutdown::signal() => {}
        }
    })
    .await
}

/// Runs the receiver's ingress over `log` in this process and loads it for `duration` (the
/// tests' way in; `bench ingest` runs the receiver in a process of its own).
pub async fn ingest(
    log: Arc<dyn EventLog>,
    batch_size: usize,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<IngestFigures> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}{WEBHOOK_PATH}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, ingress(log), public_listener(), async {
        let _ = stopped.await;
    }));
    let figures = load(&url, batch_size, concurrency, duration).await;
    let _ = stop.send(());
    server.await??;
    figures
}

/// The receiver's routes over `log`, configured for the benchmark.
fn ingress(log: Arc<dyn EventLog>) -> axum::Router {
    router(ServerState::new(&bench_config(), log, Arc::new(Metrics::default())))
}

/// The receiver's public listener with the limits a receiver has by default.
fn public_listener() -> ListenerSettings {
    ListenerSettings { name: "public", limits: bench_config().http, metrics: Arc::new(Metrics::default()) }
}

/// The load generator: `concurrency` requests of `batch_size` signed events in flight to the
/// webhook endpoint `url` for `duration`, each sender on an HTTP/1.1 connection of its own, kept
/// alive (as HubSpot's are). Plain hyper rather than reqwest: the generator shares the cores with
/// the receiver, and reqwest's per-request URL handling and pooling cost as much CPU as the
/// receiver's signature check.
async fn load(url: &str, batch_size: usize, concurrency: usize, duration: Duration) -> anyhow::Result<IngestFigures> {
    let uri: http::Uri = url.parse().with_context(|| format!("webhook URL {url}"))?;
    let authority = uri.authority().context("the webhook URL has no host")?.to_string();
    let started = Instant::now();
    let deadline = started + duration;
    let next_event = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let mut senders = Vec::new();
    for _ in 0..concurrency {
        let (uri, authority, url, next_event) = (uri.clone(), authority.clone(), url.to_string(), next_event.clone());
        senders.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&authority).await?;
            // A body larger than a segment is written apart from its headers; without this the
            // second write waits for the receiver's delayed ACK.
            stream.set_nodelay(true)?;
            let (mut connection, driver) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(driver);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let first = next_event.fetch_add(batch_size as u64, std::sync::atomic::Ordering::Relaxed);
                let body = batch(first, batch_size);
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                let request = http::Request::post(uri.clone())
                    .header(http::header::HOST, &authority)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(HEADER_SIGNATURE_V3, sign_v3(CLIENT_SECRET, "POST", &url, &body, now_ms))
                    .header(HEADER_TIMESTAMP, now_ms)
                    .body(http_body_util::Full::new(body))?;
                let sent = Instant::now();
                connection.ready().await?;
                let response = connection.send_request(request).await?;
                let status = response.status();
                http_body_util::BodyExt::collect(response.into_body()).await?;
                anyhow::ensure!(status.is_success(), "the receiver answered {status}");
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
    let hubspot = HubSpotConnection::new("http://127.0.0.1:9", "unused");
    // The ingress alone runs; nothing is written in the data directory.
    let mut config =
        ReceiverConfig::new("bench/ingest", std::env::temp_dir(), hubspot, WebhookConfig::new(CLIENT_SECRET));
    config.listen = ([127, 0, 0, 1], 0).into();
    config.status_listen = ([127, 0, 0, 1], 0).into();
    config
}

/// A webhook body of `size` distinct, realistic property-change events. HubSpot's event ids are
/// not sequential across a portal's subscriptions: here they are scattered (a bijection of the
/// counter, so still distinct), which a log whose cost depends on their order would show.
/// Written from a template rather than serialised from `WebhookEvent`s: serde's Strings per field
/// were half the load generator's CPU (`batch_is_the_events_it_stands_for` keeps the two in step).
fn batch(first: u64, size: usize) -> bytes::Bytes {
    use std::io::Write as _;
    let mut body = Vec::with_capacity(size * 300 + 2);
    body.push(b'[');
    for id in first..first + size as u64 {
        if id != first {
            body.push(b',');
        }
        write!(
            body,
            r#"{{"eventId":{},"subscriptionId":2940017,"portalId":62515,"appId":54321,"occurredAt":{},"subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":{},"changeSource":"CRM_UI","sourceId":"userId:1234567","propertyName":"firstname","propertyValue":"Name {id}"}}"#,
            scattered_event_id(id),
            1_764_000_000_000 + id as i64,
            1_000_000 + id % 50_000,
        )
        .expect("writing to a Vec cannot fail");
    }
    body.push(b']');
    body.into()
}

/// A bijection of the counter onto event ids in no particular order.
fn scattered_event_id(counter: u64) -> u64 {
    counter.wrapping_mul(0x9E37_79B9_7F4A_7C15) & ((1 << 62) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubspot::WebhookEvent;

    /// The template is the events it stands for, as HubSpot would send them.
    #[test]
    fn batch_is_the_events_it_stands_for() {
        let events: Vec<WebhookEvent> = serde_json::from_slice(&batch(7, 3)).unwrap();
        let expected: Vec<WebhookEvent> = (7..10)
            .map(|id| WebhookEvent {
                event_id: scattered_event_id(id),
                subscription_id: 2_940_017,
                portal_id: 62515,
                app_id: 54321,
                occurred_at: 1_764_000_000_000 + id as i64,
                subscription_type: "contact.propertyChange".into(),
                attempt_number: 0,
                object_id: 1_000_000 + id,
                change_source: Some("CRM_UI".into()),
                source_id: Some("userId:1234567".into()),
                property_name: Some("firstname".into()),
                property_value: Some(format!("Name {id}")),
                ..Default::default()
            })
            .collect();
        assert_eq!(events, expected);
        assert_ne!(events[0].event_id, events[1].event_id);
    }

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

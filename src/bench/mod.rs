//! `hubspot-operator bench`: benchmarks that run the components they measure and print a
//! Markdown table of their figures (docs/benchmarks.md holds measured ones). Where a benchmark
//! reports memory, what it does not measure runs in child processes (`start_child`).
//!
//! - `ingest` (the default): the webhook ingress under HubSpot-shaped load, the receiver in a
//!   child process (`ingest.rs`), optionally beside clients stalled mid-request
//!   (`slow_clients.rs`).
//! - `api-efficiency`: HubSpot calls per changed record, and the budget used draining a
//!   backlog (`sync.rs`).
//! - `lag`: time from a change in HubSpot to its delivery at the destination (`sync.rs`).
//! - `soak`: many tasks on one client under injected 429 storms, 5xx and latency; the budget
//!   is never overrun and no acknowledged write is lost (`soak.rs`).
//! - `timeline`: occurrences through the timeline API to HubSpot as custom events: acknowledged
//!   and delivered per second at the tier's budget, HubSpot calls per 100 (`timeline.rs`).
//! - `soak-receiver`: the receiver binary under HubSpot's delivery profile for a long time,
//!   delivering to PostgreSQL; its RSS, open fds, data size and lag over time
//!   (`receiver_soak.rs`).
//! - `controller`: the integration, property and mapping controllers reconciling many objects
//!   against the emulator, with a Kubernetes API stand-in (`controller.rs`, the `test-support`
//!   crate).

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

pub mod controller;
pub mod ingest;
pub mod receiver_soak;
mod slow_clients;
pub mod soak;
pub mod sync;
pub mod timeline;

pub use ingest::{BenchLog, IngestArgs, IngestFigures};

/// `hubspot-operator bench` flags.
#[derive(clap::Args, Clone, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub mode: Option<BenchMode>,
    #[command(flatten)]
    pub ingest: IngestArgs,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum BenchMode {
    /// The webhook ingress: throughput, acknowledgement latency and the receiver's peak RSS (the default).
    Ingest(IngestArgs),
    /// HubSpot calls per changed record, and the budget used draining a backlog.
    ApiEfficiency(sync::EfficiencyArgs),
    /// Time from a change in HubSpot to its delivery at the destination.
    Lag(sync::LagArgs),
    /// Timeline occurrences through the timeline API to HubSpot: throughput and calls per 100.
    Timeline(timeline::TimelineArgs),
    /// Many tasks calling one HubSpot client against the emulator with injected faults.
    Soak(soak::SoakArgs),
    /// The receiver in a process of its own under HubSpot's delivery profile for a long time,
    /// delivering to PostgreSQL: its memory, file descriptors, storage and lag over time.
    SoakReceiver(receiver_soak::ReceiverSoakArgs),
    /// The integration, property and mapping controllers reconciling many objects against the
    /// emulator.
    Controller(controller::ControllerBenchArgs),
    /// The Kubernetes API stand-in `controller` runs as a child process.
    #[command(hide = true)]
    KubeApiStandIn(controller::StandInArgs),
    /// The receiver `ingest` runs as a child process.
    #[command(hide = true)]
    IngestReceiver(ingest::ReceiverArgs),
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.mode {
        None => ingest::run(args.ingest).await,
        Some(BenchMode::Ingest(ingest)) => ingest::run(ingest).await,
        Some(BenchMode::ApiEfficiency(efficiency)) => {
            println!("maxBatchWaitMilliseconds: {}\n", efficiency.max_batch_wait_ms);
            println!("{}", sync::api_efficiency(&efficiency).await?.table());
            Ok(())
        }
        Some(BenchMode::Lag(lag)) => {
            println!("maxBatchWaitMilliseconds: {}\n", lag.max_batch_wait_ms);
            println!("{}", sync::lag(&lag).await?.table());
            Ok(())
        }
        Some(BenchMode::Soak(soak)) => {
            let report = soak::run(&soak).await?;
            println!("{}", report.table());
            Ok(())
        }
        Some(BenchMode::SoakReceiver(soak)) => receiver_soak::run(&soak).await,
        Some(BenchMode::Controller(controller)) => controller::run(controller).await,
        Some(BenchMode::Timeline(timeline)) => timeline::run(timeline).await,
        Some(BenchMode::KubeApiStandIn(stand_in)) => controller::serve_stand_in(stand_in).await,
        Some(BenchMode::IngestReceiver(receiver)) => ingest::serve_receiver(receiver).await,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Peak resident set size (`VmHWM`) of the process `pid`, or of this one for `None`, from
/// /proc (Linux only).
fn peak_rss_kib(pid: Option<u32>) -> Option<u64> {
    proc_status_kib(pid, "VmHWM")
}

/// A field in kB (`VmRSS`, `VmHWM`) of /proc/<pid>/status, of this process for `None`.
fn proc_status_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let process = pid.map_or("self".to_string(), |pid| pid.to_string());
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Starts `hubspot-operator <args> --listen <a free local port>` and waits until it answers
/// `ready_path`. Returns the child (killed when dropped; its standard input is a pipe, which
/// a child may take the closing of as the sign to stop) and its base URL.
async fn start_child(
    what: &str,
    args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    ready_path: &str,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string();
    let url = format!("http://{listen}");
    let args = args.into_iter().map(|a| a.as_ref().to_os_string()).chain(["--listen".into(), listen.into()]);
    let child = start_process(what, args, &url, ready_path).await?;
    Ok((child, url))
}

/// Starts `hubspot-operator <args>` and waits until `url` answers `ready_path`. The child is
/// killed when dropped; its standard input is a pipe.
async fn start_process(
    what: &str,
    args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    url: &str,
    ready_path: &str,
) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("locating the hubspot-operator binary")?;
    let mut child = tokio::process::Command::new(exe)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the {what}"))?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http.get(format!("{url}{ready_path}")).send().await.is_err() {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the {what} exited with {status} before it answered");
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the {what} did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(child)
}

/// The emulator's admin API (`/_emulator/...`), as the benchmarks use it.
#[derive(Clone)]
struct EmulatorAdmin {
    http: reqwest::Client,
    base_url: String,
}

/// What `/_emulator/requests/counts` says.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CallCounts {
    /// Every API call answered.
    pub calls: u64,
    /// Calls the emulator's rate limits refused with 429.
    pub rate_limited: u64,
    /// Calls answered by an injected fault.
    pub injected_faults: u64,
}

impl EmulatorAdmin {
    fn new(base_url: String) -> Self {
        Self { http: reqwest::Client::new(), base_url }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base_url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "{method} {path} answered {status}: {text}");
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    async fn counts(&self) -> anyhow::Result<CallCounts> {
        let counts = self.call(reqwest::Method::GET, "/_emulator/requests/counts", None).await?;
        let number = |field: &str| counts[field].as_u64().with_context(|| format!("counts without {field}"));
        let calls = counts["calls"].as_array().context("counts without calls")?;
        Ok(CallCounts {
            calls: calls.iter().filter_map(|c| c["count"].as_u64()).sum(),
            rate_limited: number("rateLimited")?,
            injected_faults: number("injectedFaults")?,
        })
    }

    /// Clears the request log and its counts.
    async fn clear_requests(&self) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, "/_emulator/requests", None).await.map(drop)
    }

    async fn set_faults(&self, plan: Value) -> anyhow::Result<()> {
        self.call(reqwest::Method::PUT, "/_emulator/faults", Some(plan)).await.map(drop)
    }

    async fn clear_faults(&self) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, "/_emulator/faults", None).await.map(drop)
    }

    /// Every stored object of `object_type`, archived ones included.
    async fn objects(&self, object_type: &str) -> anyhow::Result<Vec<Value>> {
        let objects = self.call(reqwest::Method::GET, &format!("/_emulator/objects/{object_type}"), None).await?;
        serde_json::from_value(objects).context("objects list")
    }
}

//! `hubspot-operator bench`: benchmarks that run every component in this process and print
//! a Markdown table of their figures (docs/benchmarks.md holds measured ones).
//!
//! - `ingest` (the default): the webhook ingress under HubSpot-shaped load (`ingest.rs`).
//! - `api-efficiency`: HubSpot calls per changed record, and the budget used draining a
//!   backlog (`sync.rs`).
//! - `lag`: time from a change in HubSpot to its delivery at the destination (`sync.rs`).
//! - `soak`: many tasks on one client under injected 429 storms, 5xx and latency; the budget
//!   is never overrun and no acknowledged write is lost (`soak.rs`).
//! - `controller`: the property and mapping controllers reconciling many objects against the
//!   emulator, with an in-process Kubernetes API stand-in (`controller.rs`, `fake_api.rs`).

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

pub mod controller;
pub mod fake_api;
pub mod ingest;
pub mod soak;
pub mod sync;

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
    /// The webhook ingress: throughput and acknowledgement latency (the default).
    Ingest(IngestArgs),
    /// HubSpot calls per changed record, and the budget used draining a backlog.
    ApiEfficiency(sync::EfficiencyArgs),
    /// Time from a change in HubSpot to its delivery at the destination.
    Lag(sync::LagArgs),
    /// Many tasks calling one HubSpot client against the emulator with injected faults.
    Soak(soak::SoakArgs),
    /// The property and mapping controllers reconciling many objects against the emulator.
    Controller(controller::ControllerBenchArgs),
    /// The Kubernetes API stand-in `controller` runs as a child process.
    #[command(hide = true)]
    KubeApiStandIn(controller::StandInArgs),
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
        Some(BenchMode::Controller(controller)) => controller::run(controller).await,
        Some(BenchMode::KubeApiStandIn(stand_in)) => controller::serve_stand_in(stand_in).await,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Peak resident set size of this process, from /proc (Linux only).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
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

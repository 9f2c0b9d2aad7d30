//! `hubspot-operator bench soak`: many tasks share one HubSpot client (one request budget) and
//! upsert and read contacts against the emulator while faults are switched over time: calm,
//! 5xx answers, slow answers, dropped connections, a 429 storm. Witnesses, all from the emulator: 429s its own rate
//! limits answered (the budget was overrun; must be none), and every write the client
//! acknowledged must be stored at the end (with its value or a later one of the same writer).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use super::{CallCounts, EmulatorAdmin};
use emulator::{EmulatorConfig, RunningEmulator, TokenGrant};
use hubspot::{ClientSettings, HubSpotClient, Tier, UpsertInput};

const TOKEN: &str = "pat-na1-bench-soak";
/// Contacts each task writes over and over (so that upserts both create and update).
const POOL_PER_TASK: usize = 300;
/// Inputs per batch upsert.
const BATCH: usize = 50;
/// HubSpot's rolling window for the burst limit.
const WINDOW: Duration = Duration::from_secs(10);

/// `hubspot-operator bench soak` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct SoakArgs {
    /// How long the soak runs.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Tasks calling the client at once.
    #[arg(long, default_value_t = 16)]
    pub tasks: usize,
    /// How long each fault phase lasts (calm, 5xx, latency, dropped connections, 429 storm, then again).
    #[arg(long, default_value_t = 30.0)]
    pub phase_seconds: f64,
    /// The tier the emulator enforces and the client's budget is sized for.
    #[arg(long, default_value = "professional")]
    pub tier: Tier,
}

/// The faults of one phase.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Calm,
    /// For the first 2 seconds (at most half the phase) every call answers 429
    /// (TEN_SECONDLY_ROLLING), as when another app of the account used the quota.
    RateLimitStorm,
    /// One call in each 200 ms answers 500, 502 or 503.
    ServerErrors,
    /// Every call is answered 400 ms late.
    Latency,
    /// One call in each 200 ms gets its connection closed with no answer.
    DroppedConnections,
}

// The storm comes last: the client waits out a 429 until its window ends (up to 10 s), which
// would leave a short phase after it without calls.
const PHASES: [Phase; 5] =
    [Phase::Calm, Phase::ServerErrors, Phase::Latency, Phase::DroppedConnections, Phase::RateLimitStorm];

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Calm => "calm",
            Phase::RateLimitStorm => "429 storm",
            Phase::ServerErrors => "5xx",
            Phase::Latency => "latency 400 ms",
            Phase::DroppedConnections => "dropped connections",
        }
    }
}

/// Figures of one phase.
#[derive(Clone, Debug)]
pub struct PhaseFigures {
    pub phase: &'static str,
    /// API calls the emulator answered during the phase.
    pub calls: u64,
    /// Most calls the emulator answered in any 10-second window ending in this phase (sampled
    /// each second).
    pub max_window_calls: u64,
    pub injected_faults: u64,
    pub rate_limited: u64,
    pub acknowledged_writes: u64,
    pub failed_calls: u64,
}

/// The soak's outcome.
#[derive(Clone, Debug)]
pub struct SoakReport {
    pub budget: u32,
    pub phases: Vec<PhaseFigures>,
    /// Inputs of batch upserts the client reported done.
    pub acknowledged_writes: u64,
    /// Client calls that returned an error after the client's retries.
    pub failed_calls: u64,
    pub reads: u64,
    /// Reads right after a write that did not show it.
    pub stale_reads: u64,
    /// Acknowledged writes the emulator does not hold at the end.
    pub lost_writes: u64,
    pub totals: CallCounts,
}

impl SoakReport {
    pub fn max_window_calls(&self) -> u64 {
        self.phases.iter().map(|p| p.max_window_calls).max().unwrap_or(0)
    }

    pub fn table(&self) -> String {
        let mut out = String::from(
            "| phase | calls | max calls in a 10 s window | budget | injected faults | rate-limit 429s | acknowledged writes | failed calls |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for p in &self.phases {
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                p.phase,
                p.calls,
                p.max_window_calls,
                self.budget,
                p.injected_faults,
                p.rate_limited,
                p.acknowledged_writes,
                p.failed_calls
            );
        }
        out += &format!(
            "\ntotal: {} calls, {} rate-limit 429s, {} injected faults; {} acknowledged writes, {} lost; \
             {} failed calls; {} reads, {} stale",
            self.totals.calls,
            self.totals.rate_limited,
            self.totals.injected_faults,
            self.acknowledged_writes,
            self.lost_writes,
            self.failed_calls,
            self.reads,
            self.stale_reads
        );
        out
    }
}

/// What the writing tasks count.
#[derive(Default)]
struct Progress {
    acknowledged_writes: u64,
    failed_calls: u64,
    reads: u64,
    stale_reads: u64,
    /// The latest acknowledged sequence number of each email.
    acknowledged: BTreeMap<String, u64>,
}

pub async fn run(args: &SoakArgs) -> anyhow::Result<SoakReport> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let config = EmulatorConfig {
        tokens: vec![TokenGrant { token: TOKEN.into(), scopes: None }],
        tier: args.tier,
        ..Default::default()
    };
    let emulator = RunningEmulator::start(config, listener).await?;
    let result = soak(&emulator.base_url(), args).await;
    emulator.shutdown().await;
    result
}

async fn soak(base_url: &str, args: &SoakArgs) -> anyhow::Result<SoakReport> {
    let admin = EmulatorAdmin::new(base_url.to_string());
    let client = HubSpotClient::new(ClientSettings {
        base_url: base_url.to_string(),
        api_version: "v3".into(),
        access_token: TOKEN.into(),
        tier: args.tier,
    });
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let phase_length = Duration::from_secs_f64(args.phase_seconds);
    anyhow::ensure!(!duration.is_zero() && !phase_length.is_zero(), "--minutes and --phase-seconds must be > 0");
    let mut before = admin.counts().await?;
    let started = Instant::now();
    let deadline = started + duration;
    let progress = Arc::new(Mutex::new(Progress::default()));
    // Together the tasks ask for the whole budget (each iteration is 2 calls), so that calls
    // flow all the time and catching up after a stall asks for more than the budget allows.
    let pace = WINDOW * 2 * args.tasks.max(1) as u32 / args.tier.burst_limit();
    let writers: Vec<_> = (0..args.tasks)
        .map(|task| tokio::spawn(write_and_read(client.clone(), task, pace, deadline, progress.clone())))
        .collect();

    // Switch the faults phase by phase, sampling the emulator's counts each second.
    let mut phases = Vec::new();
    let mut samples: Vec<(Instant, u64)> = vec![(started, before.calls)];
    let mut progress_before = (0, 0);
    for phase in PHASES.iter().cycle() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let phase_end = (now + phase_length).min(deadline);
        match phase {
            Phase::Calm | Phase::ServerErrors => {}
            Phase::RateLimitStorm => admin.set_faults(json!({"status": 429})).await?,
            Phase::Latency => admin.set_faults(json!({"delayMs": 400})).await?,
            Phase::DroppedConnections => {}
        }
        let mut max_window_calls = 0;
        let mut next_sample = Instant::now();
        let mut server_error = 0;
        let storm_end = now + (phase_length / 2).min(Duration::from_secs(2));
        while Instant::now() < phase_end {
            if *phase == Phase::RateLimitStorm && Instant::now() >= storm_end {
                admin.clear_faults().await?;
            }
            if *phase == Phase::ServerErrors {
                let status = [500, 502, 503][server_error % 3];
                server_error += 1;
                admin.set_faults(json!({"status": status, "count": 1})).await?;
            }
            if *phase == Phase::DroppedConnections {
                admin.set_faults(json!({"dropConnection": true, "count": 1})).await?;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if Instant::now() >= next_sample {
                next_sample += Duration::from_secs(1);
                let at = Instant::now();
                let calls = admin.counts().await?.calls;
                samples.push((at, calls));
                max_window_calls = max_window_calls.max(calls_in_window_ending(&samples, at, calls));
            }
        }
        admin.clear_faults().await?;
        let after = admin.counts().await?;
        let (acknowledged_writes, failed_calls) = {
            let p = progress.lock().expect("progress lock");
            (p.acknowledged_writes, p.failed_calls)
        };
        phases.push(PhaseFigures {
            phase: phase.name(),
            calls: after.calls - before.calls,
            max_window_calls,
            injected_faults: after.injected_faults - before.injected_faults,
            rate_limited: after.rate_limited - before.rate_limited,
            acknowledged_writes: acknowledged_writes - progress_before.0,
            failed_calls: failed_calls - progress_before.1,
        });
        before = after;
        progress_before = (acknowledged_writes, failed_calls);
    }
    for writer in writers {
        writer.await.context("writer task")?;
    }
    let totals = admin.counts().await?;
    if let Some(last) = phases.last_mut() {
        // Calls still in flight at the deadline finished after the last phase was measured.
        last.calls += totals.calls - before.calls;
        last.rate_limited += totals.rate_limited - before.rate_limited;
        last.injected_faults += totals.injected_faults - before.injected_faults;
    }

    let stored: BTreeMap<String, u64> = admin
        .objects("contacts")
        .await?
        .into_iter()
        .filter(|o| !o["archived"].as_bool().unwrap_or(false))
        .filter_map(|o| {
            let email = o["properties"]["email"].as_str()?.to_string();
            let sequence = o["properties"]["firstname"].as_str()?.parse().ok()?;
            Some((email, sequence))
        })
        .collect();
    let progress = Arc::try_unwrap(progress).map_err(|_| anyhow::anyhow!("writers still running"))?;
    let progress = progress.into_inner().expect("progress lock");
    let lost_writes = progress
        .acknowledged
        .iter()
        .filter(|(email, sequence)| stored.get(*email).is_none_or(|s| s < sequence))
        .count();
    Ok(SoakReport {
        budget: args.tier.burst_limit(),
        phases,
        acknowledged_writes: progress.acknowledged_writes,
        failed_calls: progress.failed_calls,
        reads: progress.reads,
        stale_reads: progress.stale_reads,
        lost_writes: lost_writes as u64,
        totals,
    })
}

/// Calls answered in the 10 seconds before `at`, from the samples taken so far.
fn calls_in_window_ending(samples: &[(Instant, u64)], at: Instant, calls: u64) -> u64 {
    let window_start = at.checked_sub(WINDOW).unwrap_or(at);
    // The latest sample at or before the window's start; the first sample is the start.
    let base = samples.iter().rev().find(|(t, _)| *t <= window_start).unwrap_or(&samples[0]).1;
    calls - base
}

/// One writer: batch upserts of its own contacts (each input carrying a sequence number that
/// only grows), each followed by a batch read of what it wrote.
async fn write_and_read(
    client: HubSpotClient,
    task: usize,
    pace: Duration,
    deadline: Instant,
    progress: Arc<Mutex<Progress>>,
) {
    let properties = vec!["email".to_string(), "firstname".to_string()];
    let mut sequence: u64 = 0;
    // Missed ticks are caught up at once: after a stall the tasks ask for more than the budget.
    let mut ticks = tokio::time::interval(pace);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while Instant::now() < deadline {
        ticks.tick().await;
        sequence += 1;
        let first = (sequence as usize * BATCH) % POOL_PER_TASK;
        let inputs: Vec<UpsertInput> = (first..first + BATCH)
            .map(|k| UpsertInput {
                id: format!("soak-{task}-{}@example.com", k % POOL_PER_TASK),
                id_property: "email".into(),
                properties: BTreeMap::from([
                    ("firstname".to_string(), sequence.to_string()),
                    ("lastname".to_string(), format!("task {task}")),
                ]),
            })
            .collect();
        let written = match client.batch_upsert("contacts", &inputs).await {
            Ok(results) => results,
            Err(e) => {
                tracing::debug!(task, error = %e, "soak upsert failed");
                progress.lock().expect("progress lock").failed_calls += 1;
                continue;
            }
        };
        {
            let mut p = progress.lock().expect("progress lock");
            p.acknowledged_writes += inputs.len() as u64;
            for input in &inputs {
                p.acknowledged.insert(input.id.clone(), sequence);
            }
        }
        let ids: Vec<String> = written.iter().map(|r| r.object.id.clone()).collect();
        match client.batch_read("contacts", &properties, &ids).await {
            Ok(objects) => {
                let stale = objects
                    .iter()
                    .filter(|o| o.properties.get("firstname").cloned().flatten() != Some(sequence.to_string()))
                    .count()
                    + ids.len().saturating_sub(objects.len());
                let mut p = progress.lock().expect("progress lock");
                p.reads += 1;
                p.stale_reads += stale as u64;
            }
            Err(e) => {
                tracing::debug!(task, error = %e, "soak read failed");
                progress.lock().expect("progress lock").failed_calls += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short soak through every fault phase: faults were injected and answered, yet the
    /// emulator's rate limits never refused a call, every acknowledged write is stored and
    /// every read showed the write before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn soak_never_overruns_the_budget_and_loses_no_acknowledged_write() {
        // Five 3 s phases and a few seconds of slack: each phase ends after its last admin call,
        // so on a busy machine phases run long and 15 s would cut off the last one.
        let args = SoakArgs { minutes: 0.3, tasks: 8, phase_seconds: 3.0, tier: Tier::Free };
        let report = run(&args).await.unwrap();
        let phases: Vec<_> = report.phases.iter().map(|p| p.phase).collect();
        let expected = ["calm", "5xx", "latency 400 ms", "dropped connections", "429 storm"];
        assert_eq!(phases[..5], expected, "{}", report.table());
        assert!(report.phases[1].injected_faults > 0, "5xx were injected:\n{}", report.table());
        assert!(report.phases[3].injected_faults > 0, "connections were dropped:\n{}", report.table());
        assert!(report.phases[4].injected_faults > 0, "the storm hit:\n{}", report.table());
        assert_eq!(report.totals.rate_limited, 0, "the budget was overrun:\n{}", report.table());
        assert!(report.acknowledged_writes > 0 && report.reads > 0);
        assert_eq!(report.lost_writes, 0, "{}", report.table());
        assert_eq!(report.stale_reads, 0, "{}", report.table());
        assert_eq!(report.totals.calls, report.phases.iter().map(|p| p.calls).sum::<u64>());
    }
}

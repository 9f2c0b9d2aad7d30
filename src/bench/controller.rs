//! `hubspot-operator bench controller`: the integration, property and mapping controllers
//! (kube-runtime, real reconcilers, real HubSpot client over HTTP) reconcile many objects
//! against the HubSpot emulator, with a Kubernetes API stand-in ([`FakeApiServer`]) serving
//! the objects. The stand-in runs no pods, so the integration's receiver stays unavailable
//! (and its mappings read no sync reports), and the integration is visited again every
//! drift interval. The
//! emulator and the stand-in run as child processes, so the peak RSS is the controllers'.
//! Measured from the emulator's request counts: the first pass (creates), then HubSpot writes
//! and reads per object per drift interval in the steady state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use serde_json::{Value, json};

use super::start_child;
use hubspot::Tier;
use model::api::mapping::{
    Destination, Direction, FieldMapping, FileDestination, IntegrationRef, MappedRecords, MatchKey, PropertyMappingSpec,
};
use model::api::property::{FieldType, PropertyType};
use model::api::{HubSpotIntegration, HubSpotProperty, HubSpotPropertySpec, PropertyMapping};
use operator::{
    Context, DEFAULT_MAX_CONCURRENT_RECONCILES, error_policy, instrumented, integration, mapping, property,
};
use test_support::{ApiCalls, CALLS_PATH, FakeApiServer};

const NAMESPACE: &str = "bench";
const TOKEN: &str = "bench-token";
const PROPERTIES: &str = "/apis/hubspot.io/v1alpha1/namespaces/bench/hubspotproperties";
const MAPPINGS: &str = "/apis/hubspot.io/v1alpha1/namespaces/bench/propertymappings";
const INTEGRATIONS: &str = "/apis/hubspot.io/v1alpha1/namespaces/bench/hubspotintegrations";
/// Where HubSpot describes a private app token (`POST`, without changing anything).
const TOKEN_INTROSPECTION: &str = "/oauth/v2/private-apps/get/access-token-info";

/// `hubspot-operator bench controller` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ControllerBenchArgs {
    /// HubSpotProperty objects, and as many PropertyMapping objects (each maps one of them).
    #[arg(long, default_value_t = 1000)]
    pub objects: usize,
    /// Drift interval of the controllers (5 minutes in production), shortened for the run.
    #[arg(long, default_value_t = 150, value_name = "SECONDS")]
    pub drift_interval: u64,
    /// Drift intervals the steady state is observed for.
    #[arg(long, default_value_t = 2)]
    pub intervals: u32,
    /// Subscription tier of the emulated portal (sizes HubSpot's rate limits and the client's
    /// request budget).
    #[arg(long, default_value = "professional")]
    pub tier: Tier,
    /// Reconciles each controller runs at once, as the controller's flag of that name.
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT_RECONCILES)]
    pub max_concurrent_reconciles: u16,
}

/// `hubspot-operator bench kube-api-stand-in` flags: the Kubernetes API stand-in of `bench
/// controller`, in a process of its own so that the benchmark's peak RSS is the controllers'.
#[derive(clap::Args, Clone, Debug)]
pub struct StandInArgs {
    /// Address to serve the Kubernetes API on.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// HubSpot API base URL of the benchmark's integration.
    #[arg(long)]
    pub hubspot_url: String,
    #[command(flatten)]
    pub bench: ControllerBenchArgs,
}

/// Serves the Kubernetes API stand-in holding the benchmark's objects until the process ends.
pub async fn serve_stand_in(args: StandInArgs) -> anyhow::Result<()> {
    let api = FakeApiServer::default();
    load_objects(&api, &args.bench, &args.hubspot_url);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    Ok(api.serve(listener).await?)
}

/// HubSpot API calls in one phase, from the emulator's request counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubSpotCalls {
    pub reads: u64,
    pub writes: u64,
    pub property_creates: u64,
    /// Reads of the whole property list (the mapping reconciler's).
    pub list_reads: u64,
    /// The most reads of any single property (the property reconciler's).
    pub most_reads_of_one_property: u64,
    /// Answers other than 2xx and 404 (404 is the expected answer to reading a missing property).
    pub failures: u64,
}

impl HubSpotCalls {
    /// Adds the calls of a later part of the same phase; the most reads of one property stay
    /// the most of any part.
    fn add(&mut self, later: HubSpotCalls) {
        self.reads += later.reads;
        self.writes += later.writes;
        self.property_creates += later.property_creates;
        self.list_reads += later.list_reads;
        self.failures += later.failures;
        self.most_reads_of_one_property = self.most_reads_of_one_property.max(later.most_reads_of_one_property);
    }
}

/// Figures of one run.
#[derive(Clone, Debug)]
pub struct ControllerFigures {
    pub objects: usize,
    pub first_pass: Duration,
    pub first_pass_calls: HubSpotCalls,
    pub steady_calls: HubSpotCalls,
    pub steady_window: Duration,
    pub intervals: u32,
    /// Kubernetes API calls in the steady state.
    pub steady_api_calls: ApiCalls,
    pub peak_rss_kib: Option<u64>,
}

impl ControllerFigures {
    /// HubSpot reads per object (properties and mappings) per drift interval in the steady state.
    pub fn reads_per_object_per_interval(&self) -> f64 {
        self.steady_calls.reads as f64 / (2 * self.objects) as f64 / f64::from(self.intervals)
    }
}

/// Runs the emulator and the Kubernetes API stand-in as child processes (so the peak RSS is
/// the controllers' alone), then the benchmark, and prints the figures.
pub async fn run(args: ControllerBenchArgs) -> anyhow::Result<()> {
    let tier = tier_name(args.tier);
    let emulator_args = ["emulator", "--token", TOKEN, "--tier", &tier];
    let (mut emulator, base_url) = start_child("emulator", &emulator_args, "/_emulator/requests").await?;
    let objects = args.objects.to_string();
    let stand_in_args =
        ["bench", "kube-api-stand-in", "--hubspot-url", &base_url, "--objects", &objects, "--tier", &tier];
    let (mut stand_in, kube_url) = start_child("Kubernetes API stand-in", &stand_in_args, CALLS_PATH).await?;
    let figures = measure(&args, &base_url, &kube_url).await;
    stand_in.kill().await.ok();
    emulator.kill().await.ok();
    let f = figures?;
    let per_interval = |n: u64| n as f64 / f64::from(f.intervals);
    println!(
        "objects: {} HubSpotProperty + {} PropertyMapping, {} reconciles at once per controller",
        f.objects, f.objects, args.max_concurrent_reconciles
    );
    println!(
        "first pass: {:.1} s, HubSpot reads {} ({} property lists), writes {} ({} property creates), failed calls {}",
        f.first_pass.as_secs_f64(),
        f.first_pass_calls.reads,
        f.first_pass_calls.list_reads,
        f.first_pass_calls.writes,
        f.first_pass_calls.property_creates,
        f.first_pass_calls.failures
    );
    println!(
        "steady state: {} drift intervals of {} s ({:.1} s observed)",
        f.intervals,
        args.drift_interval,
        f.steady_window.as_secs_f64()
    );
    println!(
        "  HubSpot writes: {}; reads: {} ({} property lists; {:.2} per object per interval); failed calls {}",
        f.steady_calls.writes,
        f.steady_calls.reads,
        f.steady_calls.list_reads,
        f.reads_per_object_per_interval(),
        f.steady_calls.failures
    );
    let api = f.steady_api_calls;
    println!(
        "  Kubernetes API per interval: {:.0} writes ({:.0} status patches, {:.0} changing the object; {:.0} applies; \
         {:.0} deletes; {:.0} events), {:.0} gets, {:.0} lists",
        per_interval(api.writes()),
        per_interval(api.status_patches),
        per_interval(api.status_changes),
        per_interval(api.applies),
        per_interval(api.deletes),
        per_interval(api.events),
        per_interval(api.gets),
        per_interval(api.lists)
    );
    if let Some(peak) = f.peak_rss_kib {
        println!(
            "peak RSS of the controllers (the emulator and the Kubernetes API stand-in run apart): {:.1} MiB",
            peak as f64 / 1024.0
        );
    }
    Ok(())
}

fn tier_name(tier: Tier) -> String {
    serde_json::to_value(tier)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "professional".into())
}

/// Runs the controllers against the Kubernetes API stand-in at `kube_url` (holding the objects
/// of `load_objects`) and the emulator at `hubspot_url` (accepting the token `bench-token`)
/// until every object is ready, then for `args.intervals` drift intervals.
pub async fn measure(
    args: &ControllerBenchArgs,
    hubspot_url: &str,
    kube_url: &str,
) -> anyhow::Result<ControllerFigures> {
    let api = StandIn { http: reqwest::Client::new(), url: kube_url.to_string() };
    let mut config = kube::Config::new(kube_url.parse()?);
    config.default_namespace = NAMESPACE.into();
    let client = kube::Client::try_from(config)?;
    let mut ctx = Context::new(client.clone(), "unused");
    ctx.drift_interval = Duration::from_secs(args.drift_interval);
    ctx.max_concurrent_reconciles = args.max_concurrent_reconciles;
    let ctx = Arc::new(ctx);
    let mut log = RequestLog::new(hubspot_url);
    log.take().await?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = futures::FutureExt::shared(async move {
        let _ = stop_rx.await;
    });
    // The integration first, as in a cluster where it exists before its properties and
    // mappings: its first status (Authenticated) reconciles every one of them again, which
    // during their first pass would only race their own first reconciles.
    let receivers = integration::controller(&ctx, Some(NAMESPACE))
        .with_config(ctx.controller_config::<HubSpotIntegration>())
        .graceful_shutdown_on(stop.clone())
        .run(instrumented(integration::reconcile), error_policy, ctx.clone())
        .for_each(|_| async {});
    let receivers = tokio::spawn(receivers);
    let started = Instant::now();
    while api
        .objects(INTEGRATIONS)
        .await?
        .iter()
        .any(|i| i.status.as_ref().and_then(|s| s.observed_generation).is_none())
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let properties = property::controller(client.clone(), Some(NAMESPACE))
        .with_config(ctx.controller_config::<HubSpotProperty>())
        .graceful_shutdown_on(stop.clone())
        .run(instrumented(property::reconcile), error_policy, ctx.clone())
        .for_each(|_| async {});
    let mappings = mapping::controller(client.clone(), Some(NAMESPACE))
        .with_config(ctx.controller_config::<PropertyMapping>())
        .graceful_shutdown_on(stop)
        .run(instrumented(mapping::reconcile), error_policy, ctx.clone())
        .for_each(|_| async {});
    let integrations = {
        let (ctx, client) = (ctx.clone(), client.clone());
        async move { ctx.integrations.watch(client, Some(NAMESPACE)).await }
    };
    let controllers = tokio::spawn(async move {
        tokio::select! {
            _ = futures::future::join(properties, mappings) => {}
            () = integrations => {}
        }
    });

    let mut last_progress = Instant::now();
    loop {
        let (properties, mappings) = (ready(&api.objects(PROPERTIES).await?), ready(&api.objects(MAPPINGS).await?));
        if properties == args.objects && mappings == args.objects {
            break;
        }
        if last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = Instant::now();
            tracing::info!(elapsed_s = started.elapsed().as_secs(), properties, mappings, "first pass: ready so far");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first_pass = started.elapsed();
    let first_pass_calls = log.take().await?;

    let api_before = api.calls().await?;
    let steady_started = Instant::now();
    let mut steady_calls = HubSpotCalls::default();
    for _ in 0..args.intervals {
        tokio::time::sleep(Duration::from_secs(args.drift_interval)).await;
        // Per interval, so that the most reads of one property are the most in one interval.
        steady_calls.add(log.take().await?);
    }
    let steady_window = steady_started.elapsed();
    let after = api.calls().await?;
    let _ = stop_tx.send(());
    controllers.await?;
    receivers.await?;
    Ok(ControllerFigures {
        objects: args.objects,
        first_pass,
        first_pass_calls,
        steady_calls,
        steady_window,
        intervals: args.intervals,
        steady_api_calls: after.since(&api_before),
        peak_rss_kib: super::peak_rss_kib(None),
    })
}

/// The Kubernetes API stand-in, over HTTP.
struct StandIn {
    http: reqwest::Client,
    url: String,
}

impl StandIn {
    /// What the benchmark reads of the objects of `collection` (a list call, as the stand-in
    /// counts it). Only their status is deserialised: the whole list as JSON values would take
    /// several MiB of the benchmark's process, whose peak RSS is reported as the controllers'.
    async fn objects(&self, collection: &str) -> anyhow::Result<Vec<Observed>> {
        let list: Listed =
            self.http.get(format!("{}{collection}", self.url)).send().await?.error_for_status()?.json().await?;
        Ok(list.items)
    }

    async fn calls(&self) -> anyhow::Result<ApiCalls> {
        let url = format!("{}{CALLS_PATH}", self.url);
        Ok(self.http.get(url).send().await?.error_for_status()?.json().await?)
    }
}

/// Integration `crm` calling `hubspot_url` (whose receiver config renders with every mapping),
/// its token Secret, and `args.objects` properties `bench_NNNN` (text on contacts) with one
/// mapping each.
fn load_objects(api: &FakeApiServer, args: &ControllerBenchArgs, hubspot_url: &str) {
    api.insert(
        "secrets",
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": { "name": "hubspot", "namespace": NAMESPACE },
            "data": {
                "token": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, TOKEN),
                "client-secret": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "bench-secret"),
            }
        }),
    );
    api.insert(
        "hubspotintegrations",
        json!({
            "apiVersion": "hubspot.io/v1alpha1", "kind": "HubSpotIntegration",
            "metadata": { "name": "crm", "namespace": NAMESPACE },
            "spec": {
                "api": { "baseUrl": hubspot_url, "tier": args.tier },
                "credentials": { "privateAppToken": { "name": "hubspot", "key": "token" } },
                "webhooks": { "clientSecret": { "name": "hubspot", "key": "client-secret" } }
            }
        }),
    );
    for i in 0..args.objects {
        let name = format!("bench_{i:04}");
        let spec = HubSpotPropertySpec {
            integration_ref: IntegrationRef { name: "crm".into() },
            object_type: "contacts".into(),
            name: name.clone(),
            label: format!("Bench {i}"),
            description: None,
            type_: PropertyType::String,
            field_type: FieldType::Text,
            group_name: "contactinformation".into(),
            group: None,
            options: vec![],
            has_unique_value: false,
            hidden: None,
            form_field: None,
            display_order: None,
            deletion_policy: Default::default(),
            management_policy: Default::default(),
        };
        api.insert("hubspotproperties", resource("HubSpotProperty", &name.replace('_', "-"), json!(spec)));
        let records = MappedRecords::new(
            "contacts",
            MatchKey::new("email", "email"),
            vec![FieldMapping::new(&name, &name, Direction::ToExternal)],
        );
        let mut spec = PropertyMappingSpec {
            destinations: vec![Destination {
                file: Some(FileDestination { path: "contacts.jsonl".into() }),
                ..Default::default()
            }],
            ..PropertyMappingSpec::new("crm", records)
        };
        spec.policy.backfill = false;
        let mapping = PropertyMapping::new(&name.replace('_', "-"), spec);
        api.insert(
            "propertymappings",
            resource("PropertyMapping", &mapping.metadata.name.clone().unwrap(), json!(mapping.spec)),
        );
    }
}

fn resource(kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "hubspot.io/v1alpha1", "kind": kind,
        "metadata": { "name": name, "namespace": NAMESPACE, "uid": format!("{kind}-{name}") },
        "spec": spec
    })
}

/// How many of `objects` are `Ready`.
fn ready(objects: &[Observed]) -> usize {
    let is_ready = |c: &ObservedCondition| c.type_ == "Ready" && c.status == "True";
    let conditions =
        |o: &Observed| o.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(is_ready));
    objects.iter().filter(|o| conditions(o)).count()
}

/// A list of objects as the benchmark reads it.
#[derive(serde::Deserialize)]
struct Listed {
    items: Vec<Observed>,
}

/// The part of an object's status the benchmark reads.
#[derive(serde::Deserialize)]
struct Observed {
    status: Option<ObservedStatus>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObservedStatus {
    observed_generation: Option<i64>,
    conditions: Option<Vec<ObservedCondition>>,
}

#[derive(serde::Deserialize)]
struct ObservedCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

/// The emulator's count of every API call by method, path and status. Counts are read, never
/// cleared: clearing between two reads would lose the calls answered in between, and unlike
/// the request log they are not capped at the last 10,000 calls.
struct RequestLog {
    url: String,
    http: reqwest::Client,
    /// The counts at the last take.
    seen: HashMap<(String, String, u64), u64>,
}

impl RequestLog {
    fn new(hubspot_url: &str) -> Self {
        Self {
            url: format!("{hubspot_url}/_emulator/requests/counts"),
            http: reqwest::Client::new(),
            seen: HashMap::new(),
        }
    }

    /// The calls answered since the last take.
    async fn take(&mut self) -> anyhow::Result<HubSpotCalls> {
        let counts: Value =
            self.http.get(&self.url).send().await?.error_for_status()?.json().await.context("the request counts")?;
        let mut calls = HubSpotCalls::default();
        // By path: a property read 404 and later 200 is one property.
        let mut property_reads = HashMap::<&str, u64>::new();
        for entry in counts["calls"].as_array().context("counts without calls")? {
            let method = entry["method"].as_str().unwrap_or_default();
            let path = entry["path"].as_str().unwrap_or_default();
            let status = entry["status"].as_u64().unwrap_or_default();
            let total = entry["count"].as_u64().unwrap_or_default();
            let seen = self.seen.insert((method.into(), path.into(), status), total).unwrap_or(0);
            let n = total - seen;
            if n == 0 {
                continue;
            }
            // A token introspection is a POST that changes nothing: the integration's check.
            if method == "GET" || path == TOKEN_INTROSPECTION {
                calls.reads += n;
                if path.ends_with("/properties/contacts") {
                    calls.list_reads += n;
                } else if path.contains("/properties/contacts/") {
                    *property_reads.entry(path).or_default() += n;
                }
            } else {
                calls.writes += n;
            }
            if method == "POST" && path.starts_with("/crm/") && path.ends_with("/properties/contacts") {
                calls.property_creates += n;
            }
            if !(200..300).contains(&status) && status != 404 {
                calls.failures += n;
            }
        }
        calls.most_reads_of_one_property = property_reads.into_values().max().unwrap_or(0);
        Ok(calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emulator::{EmulatorConfig, RunningEmulator, TokenGrant};

    /// 50 properties and 50 mappings: the first pass creates each property once, and the
    /// steady state reads HubSpot at most once per object per drift interval and never writes,
    /// to HubSpot or to Kubernetes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn steady_state_reads_each_object_at_most_once_per_interval_and_never_writes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config =
            EmulatorConfig { tokens: vec![TokenGrant { token: TOKEN.into(), scopes: None }], ..Default::default() };
        let emulator = RunningEmulator::start(config, listener).await.unwrap();
        let args = ControllerBenchArgs {
            objects: 50,
            drift_interval: 4,
            intervals: 2,
            tier: Tier::default(),
            max_concurrent_reconciles: DEFAULT_MAX_CONCURRENT_RECONCILES,
        };

        let api = FakeApiServer::default();
        load_objects(&api, &args, &emulator.base_url());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let kube_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(api.serve(listener));

        let hubspot_url = emulator.base_url();
        let measured = tokio::time::timeout(Duration::from_secs(300), measure(&args, &hubspot_url, &kube_url));
        let f = measured.await.expect("every object ready within five minutes").unwrap();

        assert_eq!(f.first_pass_calls.property_creates, 50, "{f:?}");
        assert_eq!(f.first_pass_calls.failures, 0, "{f:?}");
        assert_eq!(f.steady_calls.writes, 0, "{f:?}");
        assert_eq!(f.steady_calls.failures, 0, "{f:?}");
        // Each object is due once per interval. The measuring windows are not aligned with each
        // property's schedule, and `lastSyncTime` has second precision (a read can come up to
        // 1 s before the interval is over), so one read near the start and one near the end of
        // a 4 s window are still once per interval; a read loop would be dozens.
        assert!(f.steady_calls.reads > 0, "{f:?}");
        assert!(f.steady_calls.most_reads_of_one_property <= 2, "{f:?}");
        let property_reads = f.steady_calls.reads - f.steady_calls.list_reads;
        assert!(property_reads <= 50 * (u64::from(args.intervals) + 1), "{f:?}");
        assert!(f.steady_calls.list_reads <= 50 * u64::from(args.intervals), "{f:?}");
        assert_eq!(f.steady_api_calls.unexpected, 0, "{f:?}");
        // Nothing changed, so nothing is written to Kubernetes: no status patch, and no apply of
        // the receiver's objects, which the integration controller's caches show as they are.
        assert_eq!(f.steady_api_calls.writes(), 0, "{f:?}");
        // The integration comes from a watch and its token Secret is read once per integration
        // and minute, not per object. Each visit of the integration (once per interval, and
        // the windows are not aligned with its schedule) reads its Secrets, at most two (the
        // receiver Deployment of earlier versions is looked for once a pod is available); the
        // mappings come from its cache.
        assert!(f.steady_api_calls.gets <= 2 + 2 * (u64::from(args.intervals) + 1), "{f:?}");
        assert_eq!(f.steady_api_calls.lists, 0, "{f:?}");
    }
}

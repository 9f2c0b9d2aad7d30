//! The webhook receiver's HTTP ingress: HubSpot's signed webhook batches go into the durable
//! event log and are answered 2xx only once stored, and external systems' records come in
//! through the ingest API. That listener is the one an Ingress, HTTPRoute or load balancer
//! publishes. `/metrics` and `/sync/status` are for Prometheus and the controller only, so they
//! have a status listener of their own; the health and readiness probes answer on both. The
//! admin API (dead letters, replays) has a third listener.

pub mod admin;
mod listener;
mod webhook;

pub use listener::{ListenerSettings, serve};

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::eventlog::EventLog;
use crate::metrics::Metrics;
use crate::reverse::{IngestState, PostgresPoller, ReverseStore, ReverseWorker};
use crate::sync::report::{SyncReporter, TimelineReporter};
use crate::timeline::{TimelineApi, TimelineStore, TimelineWorker};
use hubspot::{HubSpotClient, SignatureVerifier};
use model::config::ReceiverConfig;
use model::contract::WEBHOOK_PATH;
use model::report::SYNC_STATUS_PATH;

/// Content type of `/metrics` (OpenMetrics text, which is what `Metrics::encode` writes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long `/readyz` waits for the event log: well inside a probe's timeout, so a receiver
/// whose log cannot store (a JetStream cluster without quorum) is reported not ready at once.
const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(900);

/// The HTTP server's shared state: what the receiver's handlers share.
#[derive(Clone)]
pub struct ServerState {
    verifier: SignatureVerifier,
    log: Arc<dyn EventLog>,
    metrics: Arc<Metrics>,
    /// Base URL HubSpot calls (scheme, host, optional path prefix), without a trailing slash.
    public_url: Option<String>,
    max_body_bytes: usize,
    /// The reverse sync store, for the gauges `/metrics` refreshes.
    reverse_store: Option<Arc<ReverseStore>>,
    /// The ingest API; `None` when it is off.
    ingest: Option<IngestState>,
    /// `GET /sync/status`; `None` without a sync worker.
    sync_reporter: Option<SyncReporter>,
    /// The timeline API; `None` when the ingest API is off.
    timeline: Option<TimelineApi>,
    /// The timeline event types' part of `GET /sync/status`; `None` without a timeline store.
    timeline_reporter: Option<TimelineReporter>,
}

impl ServerState {
    pub fn new(config: &ReceiverConfig, log: Arc<dyn EventLog>, metrics: Arc<Metrics>) -> Self {
        let webhooks = &config.webhooks;
        ServerState {
            verifier: SignatureVerifier::new(webhooks.client_secret.clone(), webhooks.accept_legacy_signatures),
            log,
            metrics,
            public_url: webhooks.public_url.as_deref().map(|url| url.trim_end_matches('/').to_string()),
            max_body_bytes: webhooks.max_body_bytes,
            ingest: None,
            reverse_store: None,
            sync_reporter: None,
            timeline: None,
            timeline_reporter: None,
        }
    }

    /// Turns `GET /sync/status` on.
    pub fn with_sync_reporter(mut self, reporter: SyncReporter) -> Self {
        self.sync_reporter = Some(reporter);
        self
    }

    /// Turns the ingest API on: records are validated against `config`'s mappings and queued
    /// in `store`. Without an ingest section in `config` the API stays off.
    pub fn with_ingest(mut self, config: &ReceiverConfig, store: Arc<ReverseStore>) -> Self {
        if let Some(ingest) = &config.ingest {
            self.ingest = Some(IngestState::new(ingest, &config.mappings, store.clone()));
        }
        self.reverse_store = Some(store);
        self
    }

    /// Turns the timeline API on for `config`'s timeline event types, storing in `store`, with
    /// the ingest API's token (without an ingest section in `config` the API stays off), and
    /// reports the types on `GET /sync/status`.
    pub fn with_timeline(mut self, config: &ReceiverConfig, store: Arc<TimelineStore>) -> Self {
        if let Some(ingest) = &config.ingest {
            self.timeline = Some(TimelineApi::new(ingest, &config.timeline_event_types, store.clone()));
        }
        self.timeline_reporter = Some(TimelineReporter {
            store,
            activity: self.metrics.timeline_activity.clone(),
            types: config.timeline_event_types.iter().map(|t| t.qualified_name()).collect(),
        });
        self
    }
}

/// The public routes (`config.listen`): `POST /webhooks/hubspot`,
/// `POST /ingest/{namespace}/{mapping}`, `GET /ingest/rejected`, `POST /timeline/{namespace}/{name}`,
/// `GET /healthz`, `GET /readyz`.
pub fn router(state: ServerState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    let ingest = crate::reverse::ingest::router(state.ingest.clone(), state.metrics.clone());
    let timeline = crate::timeline::api::router(state.timeline.clone(), state.metrics.clone());
    with_probes(Router::new())
        .route(WEBHOOK_PATH, post(webhook::receive).layer(DefaultBodyLimit::max(max_body_bytes)))
        .with_state(state)
        .merge(ingest)
        .merge(timeline)
}

/// The status routes (`config.status_listen`): `GET /metrics`, `GET /sync/status`,
/// `GET /healthz`, `GET /readyz`.
pub fn status_router(state: ServerState) -> Router {
    with_probes(Router::new())
        .route("/metrics", get(metrics))
        .route(SYNC_STATUS_PATH, get(sync_status))
        .with_state(state)
}

fn with_probes(router: Router<ServerState>) -> Router<ServerState> {
    router.route("/healthz", get(|| async { "ok" })).route("/readyz", get(ready))
}

/// Ready while the event log answers; a receiver that cannot store must not get traffic.
async fn ready(State(state): State<ServerState>) -> impl IntoResponse {
    match tokio::time::timeout(READINESS_TIMEOUT, state.log.check_writable()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "event log unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "event log unavailable")
        }
        Err(_) => {
            tracing::warn!(timeout_ms = READINESS_TIMEOUT.as_millis() as u64, "event log did not answer in time");
            (StatusCode::SERVICE_UNAVAILABLE, "event log did not answer in time")
        }
    }
}

async fn metrics(State(state): State<ServerState>) -> impl IntoResponse {
    // Refreshed per scrape, so the gauges are exact whoever released events.
    crate::eventlog::update_gauges(state.log.as_ref(), &state.metrics).await;
    if let Some(store) = &state.reverse_store {
        if let Ok(pending) = store.pending_count().await {
            state.metrics.reverse_pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        if let Ok(summary) = store.rejected_summary().await {
            state.metrics.reverse_rejected.set(i64::try_from(summary.count).unwrap_or(i64::MAX));
        }
    }
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], state.metrics.encode())
}

/// Each mapping's sync as this receiver sees it, for the mappings' status (see `sync::report`).
async fn sync_status(State(state): State<ServerState>) -> axum::response::Response {
    let Some(reporter) = &state.sync_reporter else {
        return (StatusCode::NOT_FOUND, "this receiver runs no sync worker").into_response();
    };
    let report = async {
        let mut report = reporter.report().await?;
        if let Some(timeline) = &state.timeline_reporter {
            report.timeline_event_types = timeline.report().await?;
        }
        anyhow::Ok(report)
    };
    match report.await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "sync report unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, format!("sync report unavailable: {e:#}")).into_response()
        }
    }
}

/// Runs one integration's receiver until `shutdown` resolves: the webhook ingress on
/// `listener`, the status endpoints on `config.status_listen`, the admin API on
/// `config.admin.listen`, the sync worker and the catch-up backfill, sharing the event log
/// `config.event_log` chooses.
pub async fn run(
    config: ReceiverConfig,
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.admin.validate()?;
    config.http.validate()?;
    let settings = |name| ListenerSettings { name, limits: config.http, metrics: metrics.clone() };
    let admin_listener = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for the admin API: {e}", config.admin.listen))?;
    tracing::info!(listen = %admin_listener.local_addr()?, token = config.admin.token.is_some(), "admin API listening");
    let status_listener = tokio::net::TcpListener::bind(config.status_listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for /metrics and /sync/status: {e}", config.status_listen))?;
    tracing::info!(listen = %status_listener.local_addr()?, "status endpoints listening");
    let log = crate::eventlog::open(&config).await?;
    let client = config.hubspot.client().with_observer(metrics.clone());
    let mut worker = crate::sync::Worker::new(&config, log.clone(), client.clone(), metrics.clone())?;
    let mut state = ServerState::new(&config, log.clone(), metrics.clone());
    let cursors = crate::sync::backfill::CursorStore::open(&config.sync_state_path())?;
    let backfill =
        crate::sync::backfill::Backfill::new(&config.mappings, client.clone(), log.clone(), cursors, metrics.clone());
    let stop = CancellationToken::new();
    let timeline = start_timeline(&config, client.clone(), &metrics, &stop)?;
    if let Some(timeline) = &timeline {
        state = state.with_timeline(&config, timeline.store.clone());
    }
    let reverse = start_reverse_sync(&config, client, &metrics, &stop)?;
    let reverse_store = reverse.as_ref().map(|reverse| reverse.store.clone());
    if let Some(store) = &reverse_store {
        worker = worker.with_echo_ledger(store.clone());
        state = state.with_ingest(&config, store.clone());
    }
    state = state.with_sync_reporter(SyncReporter {
        log: log.clone(),
        activity: metrics.activity.clone(),
        dead_letters: worker.dead_letters().clone(),
        reverse: reverse_store.clone(),
        mappings: config.mappings.iter().map(|m| m.name.clone()).collect(),
    });
    let admin = tokio::spawn(serve(
        admin_listener,
        admin::router_with_timeline(
            worker.clone(),
            reverse_store,
            timeline.as_ref().map(|timeline| timeline.store.clone()),
            config.admin.token.clone(),
        ),
        settings("admin"),
        stop.clone().cancelled_owned(),
    ));
    let status = tokio::spawn(serve(
        status_listener,
        status_router(state.clone()),
        settings("status"),
        stop.clone().cancelled_owned(),
    ));
    let worker = tokio::spawn(worker.run(stop.clone().cancelled_owned()));
    let backfill = tokio::spawn(backfill.run(stop.clone().cancelled_owned()));
    let served = serve(listener, router(state), settings("public"), shutdown).await;
    // The ingress has answered every request it accepted. The sync worker settles the step
    // under way, within its grace; whatever a worker leaves unsettled is taken up again on the
    // next start (or, for webhook events, by another receiver sharing the log, which `close`
    // hands them to at once).
    stop.cancel();
    worker.await?;
    backfill.await?;
    for task in reverse.into_iter().flat_map(|reverse| reverse.tasks) {
        task.await?;
    }
    if let Some(timeline) = timeline {
        timeline.worker.await?;
    }
    admin.await??;
    status.await??;
    log.close().await;
    served
}

/// A receiver's reverse sync: its store, and the tasks polling sources and writing HubSpot.
struct ReverseSync {
    store: Arc<ReverseStore>,
    tasks: Vec<JoinHandle<()>>,
}

/// Opens the reverse sync store and starts the PostgreSQL sources' polls and the reverse worker,
/// until `stop`, when the receiver has records for HubSpot.
fn start_reverse_sync(
    config: &ReceiverConfig,
    client: HubSpotClient,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
) -> anyhow::Result<Option<ReverseSync>> {
    // The store is kept while records may be queued in it, even after the ingest API is
    // turned off, so that nothing accepted is left behind.
    let has_sources = config.mappings.iter().any(|m| !m.sources.is_empty());
    if !(config.ingest.is_some() || has_sources || config.reverse_store_path().exists()) {
        return Ok(None);
    }
    let store = Arc::new(ReverseStore::open(&config.reverse_store_path())?);
    let mut tasks = Vec::new();
    for mapping in &config.mappings {
        for index in 0..mapping.sources.len() {
            let source = PostgresPoller::new(mapping, index)?;
            tasks.push(tokio::spawn(source.run(store.clone(), metrics.clone(), stop.clone().cancelled_owned())));
        }
    }
    let writer = ReverseWorker::new(store.clone(), &config.mappings, client, metrics.clone());
    tasks.push(tokio::spawn(writer.run(stop.clone().cancelled_owned())));
    Ok(Some(ReverseSync { store, tasks }))
}

/// A receiver's timeline events: their store and the worker sending them.
struct Timeline {
    store: Arc<TimelineStore>,
    worker: JoinHandle<()>,
}

/// Opens the timeline store and starts the timeline worker, until `stop`, when the receiver
/// has timeline event types (or occurrences still stored from when it had).
fn start_timeline(
    config: &ReceiverConfig,
    client: HubSpotClient,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Timeline>> {
    if config.timeline_event_types.is_empty() && !config.timeline_store_path().exists() {
        return Ok(None);
    }
    let store = Arc::new(TimelineStore::open(&config.timeline_store_path())?);
    let worker = TimelineWorker::new(store.clone(), &config.timeline_event_types, client, metrics.clone());
    let worker = tokio::spawn(worker.run(stop.clone().cancelled_owned()));
    Ok(Some(Timeline { store, worker }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::contract::{INGEST_PATH, PUBLIC_PATH_PREFIXES};

    /// What an Ingress or HTTPRoute of `/` routes (`PUBLIC_PATH_PREFIXES`) covers the webhook and
    /// ingest paths and none of the cluster-only ones.
    #[test]
    fn public_prefixes_cover_the_webhook_and_ingest_paths_only() {
        let public = |path: &str| {
            PUBLIC_PATH_PREFIXES.iter().any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")))
        };
        for path in [WEBHOOK_PATH, INGEST_PATH, "/ingest/rejected"] {
            assert!(public(path), "{path} must be routed");
        }
        for path in ["/metrics", SYNC_STATUS_PATH, "/healthz", "/readyz"] {
            assert!(!public(path), "{path} must stay in the cluster");
        }
    }
}

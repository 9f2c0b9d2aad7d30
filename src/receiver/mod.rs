//! The webhook receiver's HTTP ingress: HubSpot's signed webhook batches go into the durable
//! event log and are answered 2xx only once stored; health, readiness and metrics endpoints
//! sit beside them. The admin API (dead letters, replays) has a listener of its own.

pub mod admin;
mod webhook;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::config::ReceiverConfig;
use crate::eventlog::EventLog;
use crate::hubspot::SignatureVerifier;
use crate::telemetry::Metrics;

/// Path HubSpot delivers webhook batches to.
pub const WEBHOOK_PATH: &str = "/webhooks/hubspot";

/// Content type of `/metrics` (OpenMetrics text, which is what `Metrics::encode` writes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the receiver's handlers share.
#[derive(Clone)]
pub struct ReceiverState {
    verifier: SignatureVerifier,
    log: Arc<dyn EventLog>,
    metrics: Arc<Metrics>,
    /// Base URL HubSpot calls (scheme, host, optional path prefix), without a trailing slash.
    public_url: Option<String>,
    max_body_bytes: usize,
}

impl ReceiverState {
    pub fn new(config: &ReceiverConfig, log: Arc<dyn EventLog>, metrics: Arc<Metrics>) -> Self {
        let webhooks = &config.webhooks;
        ReceiverState {
            verifier: SignatureVerifier::new(webhooks.client_secret.clone(), webhooks.accept_legacy_signatures),
            log,
            metrics,
            public_url: webhooks.public_url.as_deref().map(|url| url.trim_end_matches('/').to_string()),
            max_body_bytes: webhooks.max_body_bytes,
        }
    }
}

/// The receiver's routes: `POST /webhooks/hubspot`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
pub fn router(state: ReceiverState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    Router::new()
        .route(WEBHOOK_PATH, post(webhook::receive).layer(DefaultBodyLimit::max(max_body_bytes)))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes the requests in
/// flight (an accepted batch is always answered after it is stored).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// Ready while the event log answers; a receiver that cannot store must not get traffic.
async fn ready(State(state): State<ReceiverState>) -> impl IntoResponse {
    match state.log.pending_count().await {
        Ok(pending) => {
            state.metrics.events_pending.set(pending as i64);
            (StatusCode::OK, "ready")
        }
        Err(e) => {
            tracing::warn!(error = %e, "event log unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "event log unavailable")
        }
    }
}

async fn metrics(State(state): State<ReceiverState>) -> impl IntoResponse {
    // Refreshed per scrape, so the gauges are exact whoever released events.
    crate::eventlog::update_gauges(state.log.as_ref(), &state.metrics).await;
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], state.metrics.encode())
}

/// Runs one integration's receiver until `shutdown` resolves: the webhook ingress, the admin
/// API on `config.admin.listen`, the sync worker and the catch-up backfill, sharing the event log
/// `config.event_log` chooses.
pub async fn run(
    config: ReceiverConfig,
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.admin.validate()?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for the admin API: {e}", config.admin.listen))?;
    tracing::info!(listen = %admin_listener.local_addr()?, token = config.admin.token.is_some(), "admin API listening");
    let log = crate::eventlog::open(&config).await?;
    let client = crate::hubspot::HubSpotClient::new(config.hubspot.client_settings()).with_metrics(metrics.clone());
    let worker = crate::sync::Worker::new(&config, log.clone(), client.clone(), metrics.clone())?;
    let cursors = crate::sync::backfill::CursorStore::open(&config.sync_state_path())?;
    let backfill =
        crate::sync::backfill::Backfill::new(&config.mappings, client, log.clone(), cursors, metrics.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let admin = tokio::spawn(serve(
        admin_listener,
        admin::router(worker.clone(), config.admin.token.clone()),
        stop.clone().cancelled_owned(),
    ));
    let worker = tokio::spawn(worker.run(stop.clone().cancelled_owned()));
    let backfill = tokio::spawn(backfill.run(stop.clone().cancelled_owned()));
    let served = serve(listener, router(ReceiverState::new(&config, log.clone(), metrics)), shutdown).await;
    // The ingress has answered every request it accepted; the worker may stop mid-step, as
    // whatever it had not released is delivered again on the next start (or by another
    // receiver sharing the log, which `close` hands it to at once).
    stop.cancel();
    worker.await?;
    backfill.await?;
    admin.await??;
    log.close().await;
    served
}

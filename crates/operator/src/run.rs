//! The `controller` command: leader election, the controllers, and the health and
//! metrics server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{Action, Error as ControllerError};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource};
use model::api::{HubSpotIntegration, HubSpotProperty, HubSpotTimelineEventType, PropertyMapping};

use crate::metrics::NameLabels;
use crate::{
    Context, ControllerArgs, Error, error_policy, instrumented, integration, leader, mapping, property, timeline,
};

/// How long a shutdown waits for running reconciles (well within Kubernetes' default 30 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs every controller until `shutdown` resolves, serving metrics and health on
/// `args.metrics_listen`. With leader election, the controllers run only while this replica
/// holds the Lease; losing it stops them and ends in an error, so the pod restarts as a
/// follower; a shutdown releases it.
pub async fn run(args: ControllerArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let lease = args.lease_settings(client.default_namespace()).map_err(|e| anyhow::anyhow!("leader election: {e}"))?;
    let mut ctx = Context::new(client.clone(), args.receiver_image.clone());
    ctx.max_concurrent_reconciles = args.max_concurrent_reconciles;
    ctx.receiver_trace_env = crate::trace_env::receiver_trace_env(std::env::vars());
    let ctx = Arc::new(ctx);
    let shutdown = async {
        shutdown.await;
        tracing::info!("shutting down");
    }
    .boxed()
    .shared();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics address {}: {e}", args.metrics_listen))?;
    let server = tokio::spawn(serve_health(listener, ctx.clone(), ready.clone(), shutdown.clone()));

    let mut elector = lease.map(|settings| leader::LeaderElector::new(client.clone(), settings));
    if let Some(elector) = elector.as_mut() {
        // A replica standing by is ready: it serves its purpose by waiting, and a rollout must
        // not wait for it to lead.
        ready.store(true, Ordering::Relaxed);
        tracing::info!(lease = %elector.settings().name, namespace = %elector.settings().namespace, identity = %elector.settings().identity, "waiting for the leader lease");
        if !elector.acquire(shutdown.clone()).await {
            server.await??;
            return Ok(());
        }
        ready.store(false, Ordering::Relaxed);
    }
    let leader_gauge = elector
        .as_ref()
        .map(|e| ctx.metrics.leader.get_or_create(&NameLabels { name: e.settings().name.clone() }).clone());
    if let Some(gauge) = &leader_gauge {
        gauge.set(1);
    }

    let (controllers_done, controllers_done_rx) = tokio::sync::oneshot::channel::<()>();
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = elector.map(|mut elector| {
        tokio::spawn(async move {
            // Renew until the controllers have stopped, so no other replica starts meanwhile.
            let end = elector
                .hold(async {
                    let _ = controllers_done_rx.await;
                })
                .await;
            if end == leader::HoldEnd::Lost {
                let _ = lost_tx.send(());
            }
            (elector, end)
        })
    });
    let lost = async {
        if lost_rx.await.is_err() {
            // No elector, or it stopped without losing: never a reason to stop.
            std::future::pending::<()>().await;
        }
    }
    .boxed()
    .shared();
    let stop = futures::future::select(shutdown.clone(), lost.clone()).map(|_| ()).shared();
    tokio::select! {
        () = run_controllers(client, ctx.clone(), args.namespace.as_deref(), ready, stop) => {}
        // Another replica may be leading already: drop running reconciles rather than finish them.
        () = lost => tracing::error!("stopping the controllers at once"),
    }
    let _ = controllers_done.send(());
    if let Some(holder) = holder {
        let (mut elector, end) = holder.await?;
        if let Some(gauge) = &leader_gauge {
            gauge.set(0);
        }
        if end == leader::HoldEnd::Lost {
            anyhow::bail!("lost the leader lease; exiting so that this replica restarts as a follower");
        }
        if let Err(e) = elector.release().await {
            tracing::warn!(error = %e, "could not release the leader lease; another replica takes over once it expires");
        }
    }
    server.await??;
    tracing::info!("controller stopped");
    Ok(())
}

/// Runs the controllers until `stop`, then waits for running reconciles, at most
/// [`SHUTDOWN_GRACE`]. Sets `ready` once every cache holds a complete first listing.
async fn run_controllers(
    client: Client,
    ctx: Arc<Context>,
    namespace: Option<&str>,
    ready: Arc<AtomicBool>,
    stop: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let integrations =
        integration::controller(&ctx, namespace).with_config(ctx.controller_config::<HubSpotIntegration>());
    let mappings =
        mapping::controller(client.clone(), namespace).with_config(ctx.controller_config::<PropertyMapping>());
    let properties =
        property::controller(client.clone(), namespace).with_config(ctx.controller_config::<HubSpotProperty>());
    let event_types = timeline::controller(client.clone(), namespace)
        .with_config(ctx.controller_config::<HubSpotTimelineEventType>());
    let (integration_store, mapping_store, property_store, event_type_store) =
        (integrations.store(), mappings.store(), properties.store(), event_types.store());
    tokio::spawn(async move {
        if integration_store.wait_until_ready().await.is_ok()
            && mapping_store.wait_until_ready().await.is_ok()
            && property_store.wait_until_ready().await.is_ok()
            && event_type_store.wait_until_ready().await.is_ok()
        {
            ready.store(true, Ordering::Relaxed);
        }
    });
    tracing::info!(namespace = namespace.unwrap_or("*"), image = %ctx.receiver_image, "controllers started");
    let integration_cache = ctx.integrations.watch(client.clone(), namespace);
    let integrations = integrations
        .graceful_shutdown_on(stop.clone())
        .run(instrumented(integration::reconcile), error_policy, ctx.clone())
        .for_each(log_outcome);
    let mappings = mappings
        .graceful_shutdown_on(stop.clone())
        .run(instrumented(mapping::reconcile), error_policy, ctx.clone())
        .for_each(log_outcome);
    let properties = properties
        .graceful_shutdown_on(stop.clone())
        .run(instrumented(property::reconcile), error_policy, ctx.clone())
        .for_each(log_outcome);
    let event_types = event_types
        .graceful_shutdown_on(stop.clone())
        .run(instrumented(timeline::reconcile), error_policy, ctx.clone())
        .for_each(log_outcome);
    let everything = async {
        tokio::select! {
            _ = async { tokio::join!(integrations, mappings, properties, event_types) } => {}
            () = integration_cache => tracing::error!("the watch of HubSpotIntegrations ended"),
        }
    };
    // A graceful shutdown waits for running reconciles, and for the first listing of each
    // cache, which never comes while the API server is unreachable: do not wait forever.
    let grace_over = stop.then(|()| tokio::time::sleep(SHUTDOWN_GRACE));
    tokio::select! {
        _ = everything => {}
        () = grace_over => tracing::warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "still busy after the shutdown grace period; stopping"),
    }
}

async fn log_outcome<K, QE>(outcome: Result<(ObjectRef<K>, Action), ControllerError<Error, QE>>)
where
    K: Resource,
    QE: std::error::Error,
{
    match outcome {
        Ok((object, _)) => tracing::debug!(%object, "reconciled"),
        // Failed reconciles are logged by `error_policy` with their backoff.
        Err(ControllerError::ReconcilerFailed(..)) => {}
        Err(e) => tracing::warn!(error = %e, "controller error"),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`.
async fn serve_health(
    listener: tokio::net::TcpListener,
    ctx: Arc<Context>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    ctx.metrics.encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
                }
            }),
        );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[tokio::test]
    async fn health_server_reports_liveness_readiness_and_metrics_until_shutdown() {
        let (ctx, _api) = fixtures::test_context();
        let error = Err(Error::MissingObjectKey("crm".into(), "uid"));
        ctx.metrics.observe("hubspotintegration", &error, Duration::from_millis(3));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_health(listener, ctx, ready.clone(), async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::new();
        let get = |path: &str| {
            let request = http.get(format!("{base}{path}"));
            async move {
                let response = tokio::time::timeout(Duration::from_secs(10), request.send()).await.unwrap().unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        assert_eq!(get("/healthz").await, (200, "ok".to_string()));
        assert_eq!(get("/readyz").await.0, 503);
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get("/readyz").await, (200, "ok".to_string()));
        let (status, metrics) = get("/metrics").await;
        assert_eq!(status, 200);
        assert!(
            metrics.contains(r#"controller_runtime_reconcile_total{controller="hubspotintegration",result="error"} 1"#),
            "{metrics}"
        );
        assert!(metrics.ends_with("# EOF\n"), "{metrics}");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
    }
}

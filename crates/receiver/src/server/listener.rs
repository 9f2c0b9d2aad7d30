//! How each listener of the receiver takes connections: HTTP/1.1 served by hyper, with a bound
//! on the time a client has to send a request's headers (hyper's `header_read_timeout`) and
//! its body (a deadline the request body carries), and a cap on open connections. Without
//! them a client that sends its headers slowly, or announces a body and never sends it, holds
//! its connection for as long as it likes, and enough of them would keep HubSpot out of the
//! public port. `axum::serve` has no setting for either, hence hyper's server here.
//!
//! What a listener closes or refuses is counted per listener (`public`, `status`, `admin`):
//! `http_read_timeouts` by phase (`headers`, `body`), `http_connections_refused`, and the
//! `http_connections_open` gauge.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::body_deadline::DeadlineBody;
use crate::metrics::Metrics;
use model::config::HttpLimits;

/// One listener of the receiver: its name in the metrics, its limits, where it counts.
#[derive(Clone)]
pub struct ListenerSettings {
    /// `public`, `status` or `admin`: the `listener` label of its metrics.
    pub name: &'static str,
    pub limits: HttpLimits,
    pub metrics: Arc<Metrics>,
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes the requests in
/// flight (an accepted batch is always answered after it is stored); the read timeouts bound
/// how long that can take.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ListenerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ListenerSettings { name, limits, metrics } = settings;
    let deadline = BodyDeadline { timeout: limits.body_read_timeout(), name, metrics: metrics.clone() };
    let router = router.layer(middleware::from_fn_with_state(deadline, bound_body_time));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let open = metrics.http_connections_open(name);
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    wait_after_accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over the cap, closed at once: a client that cannot be served should learn so now,
        // not wait in the kernel's queue.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.http_connection_refused(name);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        let (metrics, open) = (metrics.clone(), open.clone());
        open.inc();
        tokio::spawn(async move {
            if let Err(e) = connection.await
                && e.is_timeout()
            {
                metrics.http_read_timeout(name, "headers");
            }
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Accepting fails when a connection was reset before it was taken (nothing to do) or when the
/// process is out of file descriptors or memory; then a short pause lets connections close
/// instead of spinning.
async fn wait_after_accept_error(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %error, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The time a request's body has to arrive, for [`bound_body_time`].
#[derive(Clone)]
struct BodyDeadline {
    timeout: Duration,
    name: &'static str,
    metrics: Arc<Metrics>,
}

/// Gives the request's body `timeout` to arrive whole, from when its headers were read. A
/// body late by then fails whoever reads it, and the request is answered 408 and its
/// connection closed, whatever the handler made of the failure. A deadline rather than a
/// time between reads: a client sending a byte now and then must not hold the connection
/// either.
async fn bound_body_time(
    axum::extract::State(deadline): axum::extract::State<BodyDeadline>,
    request: Request,
    next: Next,
) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| Body::new(DeadlineBody::new(body, deadline.timeout, expired.clone())));
    let response = next.run(request).await;
    if !expired.load(Ordering::Acquire) {
        return response;
    }
    deadline.metrics.http_read_timeout(deadline.name, "body");
    let message = format!("the request body did not arrive within {} s", deadline.timeout.as_secs());
    (StatusCode::REQUEST_TIMEOUT, [(header::CONNECTION, "close")], message).into_response()
}

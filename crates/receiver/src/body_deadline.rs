//! A deadline for a request body to arrive whole, which the listeners give every request (see
//! `server::listener`), and how the handlers that read a body tell a late one from a malformed
//! one.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::Frame;

/// A request body that fails with [`BodyTimeout`] once its deadline has passed.
pub(crate) struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl DeadlineBody {
    /// `inner`, failing once `timeout` has passed from now; `expired` is set when it does.
    pub(crate) fn new(inner: Body, timeout: Duration, expired: Arc<AtomicBool>) -> Self {
        DeadlineBody { inner, deadline: Box::pin(tokio::time::sleep(timeout)), expired }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body did not arrive within the listener's `bodyReadTimeoutSeconds`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// Whether reading a body failed because it came too late: handlers count those apart from
/// malformed bodies.
pub(crate) fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| e.is::<BodyTimeout>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{FromRequest, Request};

    fn with_deadline(body: Body, timeout: Duration) -> (Request, Arc<AtomicBool>) {
        let expired = Arc::new(AtomicBool::new(false));
        (Request::new(Body::new(DeadlineBody::new(body, timeout, expired.clone()))), expired)
    }

    #[tokio::test]
    async fn a_body_that_never_comes_fails_as_a_timeout_through_the_extractor() {
        let silent = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let (request, expired) = with_deadline(silent, Duration::from_millis(20));
        let rejection = Bytes::from_request(request, &()).await.unwrap_err();
        assert!(is_body_timeout(&rejection), "{rejection}");
        assert!(expired.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_whole_body_is_read_and_other_failures_are_not_timeouts() {
        let (request, expired) = with_deadline(Body::from("{}"), Duration::from_secs(60));
        assert_eq!(Bytes::from_request(request, &()).await.unwrap(), "{}");
        assert!(!expired.load(Ordering::Acquire));
        let broken = Body::from_stream(futures::stream::iter([Err::<Bytes, _>(std::io::Error::other("reset"))]));
        let (request, expired) = with_deadline(broken, Duration::from_secs(60));
        let rejection = Bytes::from_request(request, &()).await.unwrap_err();
        assert!(!is_body_timeout(&rejection), "{rejection}");
        assert!(!expired.load(Ordering::Acquire));
    }
}

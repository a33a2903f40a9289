//! Timeouts, as Knative's revision timeouts: a total deadline from arrival (queueing
//! counts), a deadline for the runtime's response headers, and a longest gap between body
//! chunks. Before the headers an expiry is a 504; after them the stream is cut, since the
//! status has already been sent.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use serval_proxy::body::{BoxError, ProxyBody};
use tokio::time::{sleep_until, Instant, Sleep};
use tower::{Layer, Service};

use crate::error::ProxyError;
use crate::layers::ResponseFuture;

/// Zero disables a timeout.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Timeouts {
    pub(crate) total: Duration,
    pub(crate) first_byte: Duration,
    pub(crate) idle: Duration,
}

#[derive(Clone, Debug)]
pub(crate) struct TimeoutLayer {
    timeouts: Timeouts,
}

impl TimeoutLayer {
    pub(crate) fn new(timeouts: Timeouts) -> Self {
        Self { timeouts }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            timeouts: self.timeouts,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Timeout<S> {
    inner: S,
    timeouts: Timeouts,
}

fn deadline(start: Instant, after: Duration) -> Option<Instant> {
    (!after.is_zero()).then(|| start + after)
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let start = Instant::now();
        let Timeouts {
            total,
            first_byte,
            idle,
        } = self.timeouts;
        let total_deadline = deadline(start, total);
        // Headers must arrive before whichever deadline comes first.
        let header_deadline = [total_deadline, deadline(start, first_byte)]
            .into_iter()
            .flatten()
            .min();
        let response = self.inner.clone().call(request);
        Box::pin(async move {
            let response = match header_deadline {
                None => response.await?,
                Some(at) => match tokio::time::timeout_at(at, response).await {
                    Ok(response) => response?,
                    Err(_) => {
                        let waited = at.saturating_duration_since(start);
                        return Ok(ProxyError::Timeout(waited).into_response());
                    }
                },
            };
            if total_deadline.is_none() && idle.is_zero() {
                return Ok(response);
            }
            Ok(response.map(|inner| {
                TimeoutBody {
                    inner,
                    total: total_deadline.map(sleep_until),
                    idle,
                    idle_sleep: (!idle.is_zero()).then(|| sleep_until(Instant::now() + idle)),
                }
                .boxed_unsync()
            }))
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("response body {0}")]
struct BodyTimeout(&'static str);

pin_project! {
    struct TimeoutBody {
        #[pin]
        inner: ProxyBody,
        #[pin]
        total: Option<Sleep>,
        idle: Duration,
        #[pin]
        idle_sleep: Option<Sleep>,
    }
}

impl Body for TimeoutBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(total) = this.total.as_mut().as_pin_mut() {
            if total.poll(cx).is_ready() {
                return Poll::Ready(Some(
                    Err(BodyTimeout("exceeded the request timeout").into()),
                ));
            }
        }
        if let Some(idle) = this.idle_sleep.as_mut().as_pin_mut() {
            if idle.poll(cx).is_ready() {
                return Poll::Ready(Some(Err(
                    BodyTimeout("stalled past the idle timeout").into()
                )));
            }
        }
        let polled = this.inner.poll_frame(cx);
        if polled.is_ready() {
            if let Some(idle) = this.idle_sleep.as_mut().as_pin_mut() {
                idle.reset(Instant::now() + *this.idle);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serval_proxy::body::RequestBody;
    use std::convert::Infallible;
    use tower::ServiceExt;

    fn slow_backend(
        delay: Duration,
    ) -> impl Service<
        Request<RequestBody>,
        Response = Response<ProxyBody>,
        Error = Infallible,
        Future = ResponseFuture,
    > + Clone {
        tower::service_fn(move |_req: Request<RequestBody>| {
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok::<_, Infallible>(Response::new(serval_proxy::body::full(Bytes::from_static(
                    b"ok",
                ))))
            }) as ResponseFuture
        })
    }

    fn request() -> Request<RequestBody> {
        Request::new(serval_proxy::body::empty_request())
    }

    #[tokio::test(start_paused = true)]
    async fn slow_headers_get_504_and_fast_ones_pass() {
        let timeouts = Timeouts {
            total: Duration::from_secs(10),
            first_byte: Duration::from_secs(2),
            idle: Duration::ZERO,
        };
        let slow = TimeoutLayer::new(timeouts).layer(slow_backend(Duration::from_secs(3)));
        let response = slow.oneshot(request()).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::GATEWAY_TIMEOUT);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            body.starts_with(br#"{"error":"timed out after 2s"#),
            "{body:?}"
        );

        let fast = TimeoutLayer::new(timeouts).layer(slow_backend(Duration::from_secs(1)));
        let response = fast.oneshot(request()).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "ok"
        );
    }
}

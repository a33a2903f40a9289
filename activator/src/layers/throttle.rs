//! Throttling: takes a slot on a pod of the resolved revision (waiting in the revision's
//! bounded line, 503 when it is full, 504 past the revision's timeout with queueing
//! counted), forwards, and holds the slot until the response has been sent. A pod that
//! fails a request is taken out until it probes healthy; the request is tried on another
//! pod only when it provably never left. Also counts the revision's concurrency for reports.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;

use http::{Request, Response};
use serval_proxy::body::{hold_until_sent, ProxyBody, RequestBody};
use serval_proxy::trace_context;
use tokio::time::Instant;
use tower::{Layer, Service};
use tracing::Instrument;

use super::{ready, ResponseFuture};
use crate::error::ActivatorError;
use crate::proxy::{ForwardError, ForwardFuture, PodAddress};
use crate::report::InFlight;
use crate::routes::{Resolved, RouteTable};
use crate::throttler::{Lease, Throttler};

/// How a wait for a slot ended.
enum Waited {
    Acquired(Result<Lease, ActivatorError>),
    /// The request's revision no longer takes its traffic; this is where it goes now.
    Moved(Resolved),
}

#[derive(Clone, Debug)]
pub(crate) struct ThrottleLayer {
    throttler: Arc<Throttler>,
    routes: Arc<RouteTable>,
    max_retries: u32,
}

impl ThrottleLayer {
    pub(crate) fn new(
        throttler: Arc<Throttler>,
        routes: Arc<RouteTable>,
        max_retries: u32,
    ) -> Self {
        Self {
            throttler,
            routes,
            max_retries,
        }
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle {
            inner,
            throttler: self.throttler.clone(),
            routes: self.routes.clone(),
            max_retries: self.max_retries,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Throttle<S> {
    inner: S,
    throttler: Arc<Throttler>,
    routes: Arc<RouteTable>,
    max_retries: u32,
}

impl<S> Service<Request<RequestBody>> for Throttle<S>
where
    S: Service<
            Request<RequestBody>,
            Response = Response<ProxyBody>,
            Error = ForwardError,
            Future = ForwardFuture,
        > + Clone
        + Send
        + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> ResponseFuture {
        let Some(resolved) = request.extensions_mut().remove::<Resolved>() else {
            let error = ActivatorError::BadRequest("the request was not routed".into());
            return ready(error.into_response());
        };
        let mut settings = resolved.revision.clone();
        let mut revision = self.throttler.revision(&settings.name);
        let deadline = Instant::now() + settings.timeout;
        let mut in_flight = InFlight::start(revision.clone());
        let (mut inner, max_retries) = (self.inner.clone(), self.max_retries);
        let (throttler, routes) = (self.throttler.clone(), self.routes.clone());
        Box::pin(async move {
            let mut resolved = resolved;
            let mut retries = 0;
            loop {
                let waited = {
                    let acquire = revision.acquire(&settings, deadline);
                    let acquire = async {
                        if trace_context::enabled() {
                            let span = tracing::info_span!(
                                "activator.wait",
                                serval.revision = %settings.name,
                                serval.at_zero = revision.healthy_pods() == 0,
                                serval.retry = retries,
                            );
                            acquire.instrument(span).await
                        } else {
                            acquire.await
                        }
                    };
                    tokio::pin!(acquire);
                    // Most requests find a slot at once; only one that waits watches the
                    // routes. While it waits, traffic may move off its revision (a rollout
                    // finished and the old revision is going away): then it waits for the
                    // revision that takes its traffic now, with the same deadline.
                    match (&mut acquire).now_or_never() {
                        Some(acquired) => Waited::Acquired(acquired),
                        None => {
                            // Subscribed before the first look, so no change is missed.
                            let mut route_changes = routes.subscribe();
                            loop {
                                if let Some(moved) = routes.reroute(&resolved) {
                                    break Waited::Moved(moved);
                                }
                                tokio::select! {
                                    biased;
                                    acquired = &mut acquire => break Waited::Acquired(acquired),
                                    Ok(()) = route_changes.changed() => {}
                                }
                            }
                        }
                    }
                };
                let acquired = match waited {
                    Waited::Acquired(acquired) => acquired,
                    Waited::Moved(moved) => {
                        tracing::debug!(from = %settings.name, to = %moved.revision.name,
                            "traffic moved while the request waited");
                        settings = moved.revision.clone();
                        revision = throttler.revision(&settings.name);
                        in_flight = InFlight::start(revision.clone());
                        resolved = moved;
                        continue;
                    }
                };
                let lease = match acquired {
                    Ok(lease) => lease,
                    Err(error) => return Ok(error.into_response()),
                };
                request.extensions_mut().insert(PodAddress {
                    authority: lease.authority.clone(),
                    retriable: retries < max_retries,
                });
                let error = match tokio::time::timeout_at(deadline, inner.call(request)).await {
                    Ok(Ok(response)) => return Ok(hold_until_sent(response, (lease, in_flight))),
                    Ok(Err(error)) => error,
                    Err(_) => {
                        let error = ActivatorError::Timeout {
                            revision: settings.name.clone(),
                            waited: settings.timeout,
                        };
                        return Ok(error.into_response());
                    }
                };
                lease.mark_unhealthy();
                tracing::debug!(revision = %settings.name, pod = %lease.endpoint.name,
                    reason = %error.reason, retry = error.unsent.is_some(), "forwarding failed");
                match error.unsent {
                    Some(unsent) if retries < max_retries => {
                        retries += 1;
                        request = unsent;
                    }
                    _ => {
                        let error = ActivatorError::Upstream {
                            revision: settings.name.clone(),
                            reason: error.reason,
                        };
                        return Ok(error.into_response());
                    }
                }
            }
        })
    }
}

//! `serving.serval.dev/rate-limit`: an optional per-InferenceService limit in requests per
//! second with a burst (GCRA through `governor`); excess gets 429 with `Retry-After`. Runs
//! after routing (the limit belongs to the service) and before throttling (a refused
//! request never holds a place in line).

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::task::{Context, Poll};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use http::{Request, Response};
use serval_proxy::body::{ProxyBody, RequestBody};
use tower::{Layer, Service};

use super::{ready, ResponseFuture};
use crate::error::ActivatorError;
use crate::routes::{RateLimit, Resolved};

type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One service's limiter.
pub(crate) struct Limiter<C: Clock = DefaultClock> {
    limit: RateLimit,
    clock: C,
    /// `None` for a rate too high to express (no limit in practice).
    inner: Option<Direct<C>>,
}

impl<C: Clock> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self::with_clock(limit, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    pub(crate) fn with_clock(limit: RateLimit, clock: C) -> Self {
        let period = (limit.per_second.is_finite() && limit.per_second > 0.0)
            .then(|| Duration::try_from_secs_f64(1.0 / limit.per_second).ok())
            .flatten();
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let inner = period
            .and_then(Quota::with_period)
            .map(|quota| RateLimiter::direct_with_clock(quota.allow_burst(burst), clock.clone()));
        Self {
            limit,
            clock,
            inner,
        }
    }

    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a cell, or says how long until one is free.
    pub(crate) fn check(&self) -> Result<(), Duration> {
        match &self.inner {
            None => Ok(()),
            Some(limiter) => limiter
                .check()
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RateLimitLayer;

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct RateLimited<S> {
    inner: S,
}

impl<S> Service<Request<RequestBody>> for RateLimited<S>
where
    S: Service<
        Request<RequestBody>,
        Response = Response<ProxyBody>,
        Error = Infallible,
        Future = ResponseFuture,
    >,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> ResponseFuture {
        let refused = request.extensions().get::<Resolved>().and_then(|resolved| {
            let limiter = resolved.service.limiter.as_ref()?;
            let retry_after = limiter.check().err()?;
            Some(ActivatorError::RateLimited {
                service: resolved.service.id.clone(),
                per_second: limiter.limit().per_second,
                retry_after,
            })
        });
        match refused {
            Some(error) => ready(error.into_response()),
            None => self.inner.call(request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn allows_the_burst_then_the_rate() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(RateLimit::new(2.0, Some(3)), clock.clone());
        for _ in 0..3 {
            assert_eq!(limiter.check(), Ok(()));
        }
        let wait = limiter.check().unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        clock.advance(Duration::from_millis(500));
        assert_eq!(limiter.check(), Ok(()));
        assert!(limiter.check().is_err());
        // A second later, two more (the rate), not the whole burst.
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.check(), Ok(()));
        assert_eq!(limiter.check(), Ok(()));
        assert!(limiter.check().is_err());
    }

    #[test]
    fn absurd_rates_do_not_panic() {
        for rate in [f64::INFINITY, f64::NAN, 0.0, -1.0, 1e300] {
            let limiter = Limiter::new(RateLimit::new(rate, None));
            assert!(limiter.check().is_ok(), "{rate}");
        }
    }
}

//! The activator's per-request concerns, one tower layer each, stacked in
//! `crate::server::stack`.

pub(crate) mod headers;
pub(crate) mod rate_limit;
pub(crate) mod routing;
pub(crate) mod throttle;

use std::future::Future;
use std::pin::Pin;

use http::Response;

use serval_proxy::body::ProxyBody;

/// Every layer answers with a response (errors are already rendered), so the stack's error
/// type is `Infallible`.
pub(crate) type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, std::convert::Infallible>> + Send>>;

/// A response that is ready now.
pub(crate) fn ready(response: Response<ProxyBody>) -> ResponseFuture {
    Box::pin(std::future::ready(Ok(response)))
}

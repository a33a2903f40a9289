//! The proxy's concerns, one tower layer each, stacked in `crate::proxy::stack`.

pub(crate) mod concurrency;
pub(crate) mod stats;
pub(crate) mod timeout;
pub(crate) mod tokens;

use std::future::Future;
use std::pin::Pin;

use http::Response;

use serval_proxy::body::ProxyBody;

/// Every layer answers with a response (errors are already rendered), so the stack's error
/// type is `Infallible`.
pub(crate) type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, std::convert::Infallible>> + Send>>;

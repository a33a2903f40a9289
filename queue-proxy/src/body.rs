//! Body types of the proxy, and a wrapper that lets a layer watch a body stream by: the
//! layer's observer sees each data chunk and is dropped when the body is done, so "until the
//! response has been sent" is the observer's lifetime.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request bodies inside the proxy stack.
pub(crate) type RequestBody = BoxBody<Bytes, BoxError>;
/// Response bodies inside the proxy stack.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Watches a body's data; dropped when the body completes, fails or is abandoned.
pub(crate) trait BodyObserver: Send + 'static {
    fn on_data(&mut self, _data: &Bytes) {}
}

/// An observer that only needs to live as long as the body.
pub(crate) struct Hold<T>(pub(crate) T);

impl<T: Send + 'static> BodyObserver for Hold<T> {}

pin_project! {
    pub(crate) struct Observed<B, O> {
        #[pin]
        inner: B,
        observer: O,
    }
}

impl<B, O> Body for Observed<B, O>
where
    B: Body<Data = Bytes>,
    O: BodyObserver,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.observer.on_data(data);
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

/// Wraps a response body with `observer`.
pub(crate) fn observe_response<O: BodyObserver>(
    response: http::Response<ProxyBody>,
    observer: O,
) -> http::Response<ProxyBody> {
    response.map(|inner| Observed { inner, observer }.boxed_unsync())
}

/// Wraps a request body with `observer`.
pub(crate) fn observe_request<O: BodyObserver + Sync>(
    request: http::Request<RequestBody>,
    observer: O,
) -> http::Request<RequestBody> {
    request.map(|inner| Observed { inner, observer }.boxed())
}

/// A complete response body.
pub(crate) fn full(data: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty request body.
#[cfg(test)]
pub(crate) fn empty_request() -> RequestBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

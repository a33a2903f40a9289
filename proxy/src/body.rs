//! Body types of both proxies, and a wrapper that lets a layer watch a body stream by: the
//! layer's observer sees each data chunk and is dropped when the body is done, so "until the
//! response has been sent" is the observer's lifetime.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request bodies inside a proxy.
pub type RequestBody = BoxBody<Bytes, BoxError>;
/// Response bodies inside a proxy.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Watches a body's data; dropped when the body completes, fails or is abandoned.
pub trait BodyObserver: Send + 'static {
    fn on_data(&mut self, _data: &Bytes) {}
}

/// An observer that only needs to live as long as the body: a lease, a count in flight.
#[derive(Debug)]
pub struct Hold<T>(pub T);

impl<T: Send + 'static> BodyObserver for Hold<T> {}

pin_project! {
    #[derive(Debug)]
    pub struct Observed<B, O> {
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
pub fn observe_response<O: BodyObserver>(
    response: http::Response<ProxyBody>,
    observer: O,
) -> http::Response<ProxyBody> {
    response.map(|inner| Observed { inner, observer }.boxed_unsync())
}

/// Wraps a request body with `observer`.
pub fn observe_request<O: BodyObserver + Sync>(
    request: http::Request<RequestBody>,
    observer: O,
) -> http::Request<RequestBody> {
    request.map(|inner| Observed { inner, observer }.boxed())
}

/// Holds `guard` until `response`'s body has been sent.
pub fn hold_until_sent<G: Send + 'static>(
    response: http::Response<ProxyBody>,
    guard: G,
) -> http::Response<ProxyBody> {
    observe_response(response, Hold(guard))
}

/// A complete response body.
pub fn full(data: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A complete request body.
pub fn full_request(data: impl Into<Bytes>) -> RequestBody {
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty request body.
pub fn empty_request() -> RequestBody {
    full_request(Bytes::new())
}

/// Any body as a request body.
pub fn request_body<B>(body: B) -> RequestBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct CountBytes(Arc<AtomicUsize>);

    impl BodyObserver for CountBytes {
        fn on_data(&mut self, data: &Bytes) {
            self.0.fetch_add(data.len(), Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn an_observer_sees_every_chunk_and_a_held_guard_lives_until_the_body_is_sent() {
        let seen = Arc::new(AtomicUsize::new(0));
        let request = http::Request::new(full_request("12345"));
        let request = observe_request(request, CountBytes(seen.clone()));
        let body = request.into_body().collect().await.unwrap().to_bytes();
        assert_eq!((body.len(), seen.load(Ordering::Relaxed)), (5, 5));

        let guard = Arc::new(());
        let response = hold_until_sent(http::Response::new(full("ok")), guard.clone());
        assert_eq!(
            Arc::strong_count(&guard),
            2,
            "held while the body is unsent"
        );
        let _ = response.into_body().collect().await.unwrap();
        assert_eq!(Arc::strong_count(&guard), 1, "released once sent");
    }
}

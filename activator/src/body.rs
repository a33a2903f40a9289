//! Body types of the activator, a wrapper that lets a layer watch a body go by (dropped
//! when the body is done, so "until the response has been sent" is its lifetime), and a
//! request body that can be taken back if it was never read, which is what makes a retry
//! on another pod safe.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request bodies inside the activator.
pub(crate) type RequestBody = BoxBody<Bytes, BoxError>;
/// Response bodies inside the activator.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pin_project! {
    /// Keeps `guard` alive until the body completes, fails or is dropped.
    pub(crate) struct Held<B, G> {
        #[pin]
        inner: B,
        guard: G,
    }
}

impl<B: Body<Data = Bytes>, G> Body for Held<B, G> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Holds `guard` until `response`'s body has been sent.
pub(crate) fn hold_until_sent<G: Send + 'static>(
    response: http::Response<ProxyBody>,
    guard: G,
) -> http::Response<ProxyBody> {
    response.map(|inner| Held { inner, guard }.boxed_unsync())
}

/// Where a [`Reclaimable`] body sits until its first read.
pub(crate) type Slot = Arc<Mutex<Option<RequestBody>>>;

/// A request body that stays in a shared slot until it is first read: if sending fails
/// before that, the sender takes it back and nothing was sent.
pub(crate) struct Reclaimable {
    slot: Slot,
    taken: Option<RequestBody>,
}

impl Reclaimable {
    pub(crate) fn new(body: RequestBody) -> (Self, Slot) {
        let slot = Arc::new(Mutex::new(Some(body)));
        let body = Self {
            slot: slot.clone(),
            taken: None,
        };
        (body, slot)
    }

    fn with_slot<T>(&self, f: impl FnOnce(Option<&RequestBody>) -> T) -> T {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        f(slot.as_ref())
    }
}

/// The body, if it was never read.
pub(crate) fn reclaim(slot: &Slot) -> Option<RequestBody> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

impl Body for Reclaimable {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.taken.is_none() {
            this.taken = reclaim(&this.slot);
        }
        match this.taken.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            // Reclaimed by the sender: this attempt is over.
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(body) => body.is_end_stream(),
            None => self.with_slot(|b| b.is_none_or(|b| b.is_end_stream())),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(body) => body.size_hint(),
            None => self.with_slot(|b| b.map(|b| b.size_hint()).unwrap_or_default()),
        }
    }
}

/// A complete response body.
pub(crate) fn full(data: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A complete request body.
#[cfg(test)]
pub(crate) fn full_request(data: impl Into<Bytes>) -> RequestBody {
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unread_body_can_be_reclaimed_and_a_read_one_cannot() {
        let (body, slot) = Reclaimable::new(full_request("payload"));
        assert_eq!(body.size_hint().exact(), Some(7));
        let back = reclaim(&slot).expect("never read");
        assert_eq!(back.collect().await.unwrap().to_bytes(), "payload");

        let (body, slot) = Reclaimable::new(full_request("payload"));
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(read, "payload");
        assert!(reclaim(&slot).is_none(), "a read body is gone");
    }
}

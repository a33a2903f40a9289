//! A request body that can be taken back if it was never read, which is what makes a retry
//! on another pod safe: a connect that fails never reads the body, and the sender gets it
//! back whole.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::body::{BoxError, RequestBody};

/// Where a [`Reclaimable`] body sits until its first read.
#[derive(Debug, Clone)]
pub struct Slot(Arc<Mutex<Option<RequestBody>>>);

impl Slot {
    /// The body, if it was never read.
    pub fn reclaim(&self) -> Option<RequestBody> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A request body that stays in a shared slot until it is first read: if sending fails
/// before that, the sender takes it back and nothing was sent.
#[derive(Debug)]
pub struct Reclaimable {
    slot: Slot,
    taken: Option<RequestBody>,
}

impl Reclaimable {
    pub fn new(body: RequestBody) -> (Self, Slot) {
        let slot = Slot(Arc::new(Mutex::new(Some(body))));
        let body = Self {
            slot: slot.clone(),
            taken: None,
        };
        (body, slot)
    }

    fn with_slot<T>(&self, f: impl FnOnce(Option<&RequestBody>) -> T) -> T {
        let slot = self.slot.0.lock().unwrap_or_else(|e| e.into_inner());
        f(slot.as_ref())
    }
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
            this.taken = this.slot.reclaim();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full_request;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn an_unread_body_can_be_reclaimed_and_a_read_one_cannot() {
        let (body, slot) = Reclaimable::new(full_request("payload"));
        assert_eq!(body.size_hint().exact(), Some(7));
        let back = slot.reclaim().expect("never read");
        assert_eq!(back.collect().await.unwrap().to_bytes(), "payload");

        let (body, slot) = Reclaimable::new(full_request("payload"));
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(read, "payload");
        assert!(slot.reclaim().is_none(), "a read body is gone");
    }
}

//! Telling an HTTP/1 client when its connection will close because its request body was not
//! read.
//!
//! A request refused before its body is read (a 401 on `/mcp`, a CSRF 403 on `/api`) leaves
//! that body on the wire. hyper then closes the connection after the response rather than read
//! an unbounded body, but the response it has already written carries no `Connection: close`:
//! a client that reuses the connection for its next request (Python's `requests`, most pools)
//! sends it into a closed socket and fails without an answer. RFC 9112 §9.6 asks a server
//! that will close to say so; this marks such responses.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::header::{CONNECTION, HeaderValue};
use http_body::{Body, Frame, SizeHint};

/// A request body that records whether it was read to its end.
pub(super) struct TrackedBody<B> {
    inner: B,
    finished: Arc<AtomicBool>,
}

/// Whether the body of a request was read to its end; kept by the connection while the router
/// holds the body.
#[derive(Clone)]
pub(super) struct BodyRead(Arc<AtomicBool>);

/// Wraps a request's body so that [`mark_unread_close`] can tell, once the response is ready,
/// whether it was read.
pub(super) fn track<B: Body>(
    request: http::Request<B>,
) -> (http::Request<TrackedBody<B>>, BodyRead) {
    let finished = Arc::new(AtomicBool::new(request.body().is_end_stream()));
    let read = BodyRead(finished.clone());
    (request.map(|inner| TrackedBody { inner, finished }), read)
}

/// Adds `Connection: close` to an HTTP/1 response whose request body was left unread.
/// (HTTP/2 streams end on their own; the header is forbidden there.)
pub(super) fn mark_unread_close<T>(
    version: http::Version,
    read: &BodyRead,
    response: &mut http::Response<T>,
) {
    let http1 = matches!(version, http::Version::HTTP_10 | http::Version::HTTP_11);
    if http1 && !read.0.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.finished.store(true, Ordering::Release);
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

//! A response body that says when it ended: the timeline's HTTP stages
//! end when the last byte was handed to the connection, not when the
//! headers left (an 8 MB kernel fetched by iPXE under emulation takes
//! seconds, which belong to the kernel stage, not to the OS's boot).
//!
//! Whole files come from memory as one piece; handed to hyper at once, it
//! would take the end of the body long before the bytes left. So data is
//! handed over in pieces of [`PIECE`]: hyper asks for the next one as it
//! writes, and the last one is asked for once the rest is on its way.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};

/// How a body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every byte was handed over: `sent` bytes.
    Done { sent: u64 },
    /// Dropped before its end (the client went away): `sent` of `total`.
    Cut { sent: u64, total: Option<u64> },
}

/// The most handed over at once.
pub const PIECE: usize = 64 * 1024;

/// `inner`, calling `on_end` once when it ends or is dropped.
pub struct Recorded<F: FnOnce(End) + Send + 'static> {
    inner: Body,
    /// What is left of a piece of `inner` bigger than [`PIECE`].
    rest: Bytes,
    sent: u64,
    total: Option<u64>,
    on_end: Option<F>,
}

impl<F: FnOnce(End) + Send + 'static> Recorded<F> {
    /// `length` is the response's Content-Length, if it says one: a
    /// body streamed from disk may not know its own.
    pub fn new(inner: Body, length: Option<u64>, on_end: F) -> Recorded<F> {
        let total = http_body::Body::size_hint(&inner).exact().or(length);
        Recorded {
            inner,
            rest: Bytes::new(),
            sent: 0,
            total,
            on_end: Some(on_end),
        }
    }

    fn end(&mut self, end: End) {
        if let Some(f) = self.on_end.take() {
            f(end);
        }
    }
}

impl<F: FnOnce(End) + Send + 'static + Unpin> http_body::Body for Recorded<F> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if !self.rest.is_empty() {
            let n = self.rest.len().min(PIECE);
            let piece = self.rest.split_to(n);
            self.sent += n as u64;
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let polled = match polled {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() > PIECE {
                        self.rest = data.split_off(PIECE);
                    }
                    self.sent += data.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        };
        match &polled {
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(None) => {
                let sent = self.sent;
                self.end(End::Done { sent });
            }
            Poll::Ready(Some(Err(_))) => {
                let (sent, total) = (self.sent, self.total);
                self.end(End::Cut { sent, total });
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

impl<F: FnOnce(End) + Send + 'static> Drop for Recorded<F> {
    fn drop(&mut self) {
        let (sent, total) = (self.sent, self.total);
        if total == Some(sent) {
            self.end(End::Done { sent });
        } else {
            self.end(End::Cut { sent, total });
        }
    }
}

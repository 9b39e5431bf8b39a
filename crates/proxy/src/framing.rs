//! Spots an HTTP/1 request head that carries both `Content-Length` and `Transfer-Encoding`.
//!
//! hyper resolves that conflict itself (chunked wins, the connection closes afterwards), and the
//! proxy re-frames every request it forwards, so no upstream could ever see the ambiguity. But
//! such a request is a smuggling attempt and policy is to refuse and audit it, and hyper drops the
//! evidence (the `Content-Length` header) before the service sees the request. So the client's
//! byte stream is watched on its way into hyper: any blank-line-terminated block with both header
//! lines raises a flag that the request handler checks. A body that embeds such a block (an
//! HTTP message inside a payload) raises it too; that errs towards refusing.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Enough of a line to recognise the two header names.
const PREFIX: usize = 20;

#[derive(Debug)]
pub(crate) struct FramingWatch<T> {
    inner: T,
    line: [u8; PREFIX],
    line_len: usize,
    saw_length: bool,
    saw_encoding: bool,
    conflict: Arc<AtomicBool>,
}

impl<T> FramingWatch<T> {
    pub(crate) fn new(inner: T, conflict: Arc<AtomicBool>) -> Self {
        FramingWatch {
            inner,
            line: [0; PREFIX],
            line_len: 0,
            saw_length: false,
            saw_encoding: false,
            conflict,
        }
    }

    fn observe(&mut self, data: &[u8]) {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            self.take_line_part(&data[start..nl]);
            self.end_line();
            start = nl + 1;
        }
        self.take_line_part(&data[start..]);
    }

    fn take_line_part(&mut self, part: &[u8]) {
        let room = PREFIX.saturating_sub(self.line_len.min(PREFIX));
        let n = room.min(part.len());
        let at = self.line_len.min(PREFIX);
        self.line[at..at + n].copy_from_slice(&part[..n]);
        self.line_len = self.line_len.saturating_add(part.len());
    }

    fn end_line(&mut self) {
        let len = self.line_len.min(PREFIX);
        let line = &self.line[..len];
        let blank = self.line_len == 0 || (self.line_len == 1 && line == b"\r");
        if blank {
            if self.saw_length && self.saw_encoding {
                self.conflict.store(true, Ordering::Release);
            }
            self.saw_length = false;
            self.saw_encoding = false;
        } else if starts_with_ignore_case(line, b"content-length:") {
            self.saw_length = true;
        } else if starts_with_ignore_case(line, b"transfer-encoding:") {
            self.saw_encoding = true;
        }
        self.line_len = 0;
    }
}

fn starts_with_ignore_case(line: &[u8], name: &[u8]) -> bool {
    line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name)
}

impl<T: AsyncRead + Unpin> AsyncRead for FramingWatch<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &res {
            this.observe(&buf.filled()[before..]);
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FramingWatch<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

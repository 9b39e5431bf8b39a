//! Guards the write side of a backend: a backend that stops reading its stdin must not hold
//! the gateway's writes (and every call queued behind them) forever.
//!
//! A write or flush that makes no progress for the stall limit fails, and so does every later
//! one, and the guard's token is cancelled so the supervisor ends the connection (killing the
//! process) and restarts it. Calls queued behind the stalled write then fail at once and their
//! arguments are freed, instead of waiting in memory for a reader that never comes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

pub(crate) struct StdinGuard {
    inner: Pin<Box<dyn AsyncWrite + Send>>,
    stall_limit: Duration,
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: CancellationToken,
}

impl std::fmt::Debug for StdinGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdinGuard")
            .field("stalled", &self.stalled.is_cancelled())
            .finish()
    }
}

impl StdinGuard {
    /// Guards `inner`; the returned token is cancelled when the backend has stalled.
    pub(crate) fn new(
        inner: Pin<Box<dyn AsyncWrite + Send>>,
        stall_limit: Duration,
    ) -> (Self, CancellationToken) {
        let stalled = CancellationToken::new();
        let guard = StdinGuard {
            inner,
            stall_limit,
            stalled_since: None,
            stalled: stalled.clone(),
        };
        (guard, stalled)
    }

    fn stalled_error() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "backend stopped reading its stdin")
    }

    /// Passes `poll`'s result through, failing it once it has been pending for the limit.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut (dyn AsyncWrite + Send)>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.stalled.is_cancelled() {
            return Poll::Ready(Err(Self::stalled_error()));
        }
        match poll(self.inner.as_mut(), cx) {
            Poll::Ready(result) => {
                self.stalled_since = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let limit = self.stall_limit;
                let timer = self
                    .stalled_since
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    self.stalled.cancel();
                    return Poll::Ready(Err(Self::stalled_error()));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for StdinGuard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().guard(cx, |w, cx| w.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(cx, |w, cx| w.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner.as_mut().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_stalled_reader_fails_the_write_and_every_later_one() {
        let (writer, _reader_never_read) = tokio::io::duplex(16);
        let (mut guard, stalled) = StdinGuard::new(Box::pin(writer), Duration::from_millis(200));
        let error = guard.write_all(&[b'x'; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(stalled.is_cancelled());
        assert!(guard.write_all(b"y").await.is_err());
    }

    #[tokio::test]
    async fn a_slow_but_moving_reader_is_not_a_stall() {
        // Reading the whole input takes longer than the limit, but no write waits that long.
        let (writer, mut reader) = tokio::io::duplex(16);
        let (mut guard, stalled) = StdinGuard::new(Box::pin(writer), Duration::from_secs(2));
        let drain = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let mut total = 0;
            while total < 256 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                total += tokio::io::AsyncReadExt::read(&mut reader, &mut buf)
                    .await
                    .unwrap();
            }
        });
        guard.write_all(&[b'x'; 256]).await.unwrap();
        drain.await.unwrap();
        assert!(!stalled.is_cancelled());
    }
}

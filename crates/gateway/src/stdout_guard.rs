//! A read-side guard on a backend's stdout: the first line of defence against a hostile server.
//!
//! rmcp's line transport drops an oversized line and keeps going, which suits a trusted peer.
//! A backend is not trusted: a line over the limit, or bytes that cannot be JSON-RPC, mean the
//! backend is broken or hostile, so the guard ends the stream. The supervisor then fails that
//! backend's calls and restarts it; no other backend or session is touched, and memory held
//! per backend stays below the limit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

pin_project_lite::pin_project! {
    /// Passes bytes through unchanged while checking line length and framing.
    #[derive(Debug)]
    pub struct StdoutGuard<R> {
        #[pin]
        inner: R,
        max_line: usize,
        line_len: usize,
        // Whether the current line has shown a non-whitespace byte yet.
        line_started: bool,
        failed: Option<ProtocolViolation>,
    }
}

/// What the backend did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolViolation {
    /// A line longer than the configured message limit.
    Oversized { limit: usize },
    /// A line that does not start a JSON object or array (logs on stdout, binary garbage).
    NotJson { first_byte: u8 },
}

impl std::fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Oversized { limit } => write!(f, "sent a message larger than {limit} bytes"),
            Self::NotJson { first_byte } => {
                write!(f, "wrote non-JSON-RPC output (byte 0x{first_byte:02x})")
            }
        }
    }
}

impl<R> StdoutGuard<R> {
    pub fn new(inner: R, max_line: usize) -> Self {
        Self {
            inner,
            max_line,
            line_len: 0,
            line_started: false,
            failed: None,
        }
    }
}

impl<R: AsyncRead> AsyncRead for StdoutGuard<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if let Some(violation) = this.failed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                violation.to_string(),
            )));
        }
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            for &byte in &buf.filled()[before..] {
                if byte == b'\n' {
                    *this.line_len = 0;
                    *this.line_started = false;
                    continue;
                }
                *this.line_len += 1;
                if *this.line_len > *this.max_line {
                    *this.failed = Some(ProtocolViolation::Oversized {
                        limit: *this.max_line,
                    });
                } else if !*this.line_started && !byte.is_ascii_whitespace() {
                    *this.line_started = true;
                    if byte != b'{' && byte != b'[' {
                        *this.failed = Some(ProtocolViolation::NotJson { first_byte: byte });
                    }
                }
                if let Some(violation) = this.failed {
                    // Hand nothing of the offending read to the decoder.
                    buf.set_filled(before);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        violation.to_string(),
                    )));
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn read_all(input: &[u8], max: usize) -> Result<Vec<u8>, io::Error> {
        let mut guard = StdoutGuard::new(input, max);
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.map(|_| out)
    }

    #[tokio::test]
    async fn passes_well_formed_lines() {
        let input = b"{\"jsonrpc\":\"2.0\"}\n  [1]\r\n\n{\"a\":1}\n";
        assert_eq!(read_all(input, 64).await.unwrap(), input);
    }

    #[tokio::test]
    async fn stops_at_an_oversized_line() {
        let mut input = b"{\"ok\":1}\n{".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100));
        let err = read_all(&input, 64).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("larger than 64"));
    }

    #[tokio::test]
    async fn stops_at_garbage() {
        let err = read_all(b"{\"ok\":1}\nStarting server...\n", 64)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("0x53"), "{err}");
    }

    #[tokio::test]
    async fn an_unterminated_flood_never_exceeds_the_limit() {
        let flood = vec![b'{'; 1 << 20];
        let mut guard = StdoutGuard::new(&flood[..], 4096);
        let mut seen = 0usize;
        let mut chunk = [0u8; 1024];
        loop {
            match guard.read(&mut chunk).await {
                Ok(0) => panic!("flood must be refused"),
                Ok(n) => seen += n,
                Err(_) => break,
            }
        }
        assert!(seen <= 4096, "passed {seen} bytes of one line");
    }
}

//! Fuzz target: the read-side framing guard on a backend's stdout ([`StdoutGuard`]).
//!
//! Properties: the guard never panics; what it decides (pass everything, or stop at a
//! violation and which one) depends only on the bytes, never on how the pipe split them or on
//! the reader's buffer size; it agrees with a one-line model of the rule; and when it stops,
//! it has passed only a prefix of the input that ends before the offending byte.

use std::io;

use gig_fuzz::models::{StdoutStop, stdout_stop};
use gig_fuzz::{SplitReader, fuzz};
use gig_gateway::stdout_guard::{ProtocolViolation, StdoutGuard};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads everything through the guard with reads of at most `read_size` bytes: the bytes
/// passed, and the error that ended the stream if any.
fn drain(
    reader: impl AsyncRead + Unpin,
    max: usize,
    read_size: usize,
) -> (Vec<u8>, Option<String>) {
    futures::executor::block_on(async {
        let mut guard = StdoutGuard::new(reader, max);
        let mut out = Vec::new();
        let mut chunk = vec![0u8; read_size];
        loop {
            match guard.read(&mut chunk).await {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                    // A stopped guard stays stopped, with the same reason.
                    let again = guard.read(&mut chunk).await.unwrap_err();
                    assert_eq!(again.to_string(), e.to_string());
                    return (out, Some(e.to_string()));
                }
            }
        }
    })
}

/// The rule ([`stdout_stop`]) in the guard's terms: the offending byte's offset and the
/// violation.
fn model(input: &[u8], max: usize) -> Option<(usize, ProtocolViolation)> {
    stdout_stop(input, max).map(|(at, stop)| {
        let violation = match stop {
            StdoutStop::Oversized => ProtocolViolation::Oversized { limit: max },
            StdoutStop::NotJson { first_byte } => ProtocolViolation::NotJson { first_byte },
        };
        (at, violation)
    })
}

/// Mostly well-formed output: JSON-RPC lines, blank and CRLF lines, indented arrays, long
/// lines near the limit, log lines, and a few raw bytes flipped.
fn stdout_bytes() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        6 => (0u32..1000).prop_map(|id| format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#).into_bytes()),
        2 => Just(b"  [1,2]\r".to_vec()),
        2 => Just(Vec::new()),
        1 => Just(b"\t \r".to_vec()),
        2 => (1usize..300).prop_map(|n| { let mut l = b"{\"x\":\"".to_vec(); l.resize(n, b'a'); l }),
        1 => Just(b"Starting server on stdio...".to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
    ];
    (
        proptest::collection::vec(line, 0..12),
        any::<bool>(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    )
        .prop_map(|(lines, trailing_newline, flips)| {
            let mut out = lines.join(&b'\n');
            if trailing_newline {
                out.push(b'\n');
            }
            for (at, byte) in flips {
                if !out.is_empty() {
                    let i = at.index(out.len());
                    out[i] = byte;
                }
            }
            out
        })
}

#[test]
fn fuzz_stdout_framing() {
    let strategy = (
        stdout_bytes(),
        8usize..200,
        proptest::collection::vec(1usize..64, 1..8),
        1usize..48,
    );
    fuzz(
        "gateway/stdout_framing",
        file!(),
        6000,
        strategy,
        |(input, max, sizes, read_size)| {
            let whole = drain(&input[..], max, input.len().max(1));
            let split = drain(SplitReader::new(input.clone(), sizes, true), max, read_size);
            match model(&input, max) {
                None => {
                    prop_assert_eq!(&whole, &(input.clone(), None));
                    prop_assert_eq!(&split, &(input.clone(), None));
                }
                Some((at, violation)) => {
                    let why = violation.to_string();
                    prop_assert_eq!(whole.1.as_deref(), Some(why.as_str()));
                    prop_assert_eq!(split.1.as_deref(), Some(why.as_str()));
                    for passed in [&whole.0, &split.0] {
                        prop_assert!(passed.len() <= at, "passed the offending byte at {}", at);
                        prop_assert_eq!(&passed[..], &input[..passed.len()]);
                    }
                }
            }
            Ok(())
        },
    );
}

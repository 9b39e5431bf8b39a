//! The backend stdout guard (`gig_gateway::stdout_guard`): what a stdio MCP server writes.
//!
//! Input: knobs (line limit, reader buffer, pipe chunk sizes), then the bytes on stdout.
//! Properties: the guard passes everything or stops with the reason the plain rule
//! (`gig_fuzz::models::stdout_stop`) gives, the same for the whole input and for any split into
//! reads with `Pending` between them; when it stops it has passed only a prefix that ends
//! before the offending byte, and it stays stopped with the same reason.

#![no_main]

use std::io;

use gig_fuzz::SplitReader;
use gig_fuzz::models::{StdoutStop, stdout_stop};
use gig_fuzz_cov::Knobs;
use gig_gateway::stdout_guard::{ProtocolViolation, StdoutGuard};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncReadExt};

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
                    let again = guard.read(&mut chunk).await.unwrap_err();
                    assert_eq!(
                        again.to_string(),
                        e.to_string(),
                        "a stopped guard stays stopped"
                    );
                    return (out, Some(e.to_string()));
                }
            }
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut knobs = Knobs::new(data);
    let max = knobs.in_range(8, 200);
    let read_size = knobs.in_range(1, 47);
    let splits = knobs.in_range(1, 7);
    let sizes: Vec<usize> = (0..splits).map(|_| knobs.in_range(1, 63)).collect();
    let input = knobs.rest();

    let whole = drain(input, max, input.len().max(1));
    let split = drain(
        SplitReader::new(input.to_vec(), sizes, true),
        max,
        read_size,
    );
    match stdout_stop(input, max) {
        None => {
            assert_eq!(whole, (input.to_vec(), None));
            assert_eq!(split, (input.to_vec(), None));
        }
        Some((at, stop)) => {
            let why = match stop {
                StdoutStop::Oversized => ProtocolViolation::Oversized { limit: max },
                StdoutStop::NotJson { first_byte } => ProtocolViolation::NotJson { first_byte },
            }
            .to_string();
            assert_eq!(whole.1.as_deref(), Some(why.as_str()));
            assert_eq!(split.1.as_deref(), Some(why.as_str()));
            for passed in [&whole.0, &split.0] {
                assert!(passed.len() <= at, "passed the offending byte at {at}");
                assert_eq!(&passed[..], &input[..passed.len()]);
            }
        }
    }
});

//! The proxy's request-smuggling watch on a client connection (`Content-Length` and
//! `Transfer-Encoding` in one head).
//!
//! Input: knobs (reader buffer, chunk sizes), then the client's bytes. Property: the flag is
//! raised exactly when the line-by-line rule (`gig_fuzz::models::framing_conflict`) says so,
//! for the whole input and for any split into reads.

#![no_main]

use std::sync::atomic::Ordering;

use gig_fuzz::SplitReader;
use gig_fuzz::models::framing_conflict;
use gig_fuzz_cov::Knobs;
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncReadExt;

fn watch(data: &[u8], sizes: Vec<usize>, read_size: usize) -> bool {
    let (mut watched, flag) =
        gig_proxy::fuzzing::framing_watch(SplitReader::new(data.to_vec(), sizes, false));
    futures::executor::block_on(async {
        let mut buf = vec![0u8; read_size];
        while watched.read(&mut buf).await.expect("in-memory reads") > 0 {}
    });
    flag.load(Ordering::Acquire)
}

fuzz_target!(|data: &[u8]| {
    let mut knobs = Knobs::new(data);
    let read_size = knobs.in_range(1, 64);
    let splits = knobs.in_range(1, 6);
    let sizes: Vec<usize> = (0..splits).map(|_| knobs.in_range(1, 40)).collect();
    let head = knobs.rest();
    let expected = framing_conflict(head);
    let all = head.len().max(1);
    assert_eq!(watch(head, vec![all], all), expected, "whole input");
    assert_eq!(watch(head, sizes, read_size), expected, "split input");
});

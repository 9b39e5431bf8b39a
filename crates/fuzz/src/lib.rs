//! Dev-only: runs one property-based fuzz target with a bounded number of inputs.
//!
//! Coverage-guided fuzzing (libFuzzer through `cargo fuzz`) is not what `cargo test` runs, so
//! every crate's hostile-input targets are `proptest` properties run through [`fuzz`]: a few
//! seconds each by default (what CI runs); `GIG_FUZZ_FACTOR=K` multiplies every target's
//! default (`make fuzz` uses 10) and `PROPTEST_CASES=N` sets one count for all.
//! Each target prints one line, `fuzz <target>: <n> inputs`, that `make fuzz` tallies. A
//! failing input is shrunk, saved beside the target as `<file>.proptest-regressions` (commit
//! it: it is replayed first on every later run) and reported with the panic.
//!
//! [`models`] holds the plain statements of rules that the targets (and the coverage-guided
//! harness in `fuzz/`, see docs/reliability.md) compare the real code against.
//!
//! This crate must never be a dependency of anything but tests and that harness.

#![forbid(unsafe_code)]

pub mod models;

use std::cell::Cell;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestError, TestRunner};

/// The number of inputs a target tries: `PROPTEST_CASES` when set, else `default_cases` times
/// `GIG_FUZZ_FACTOR` (1 unless set: `make fuzz` sets it).
// A test-only runner reads its own knobs, as proptest itself does (not configuration).
#[allow(clippy::disallowed_methods)]
pub fn cases(default_cases: u32) -> u32 {
    let env = |name| {
        std::env::var(name)
            .ok()
            .and_then(|v: String| v.trim().parse::<u32>().ok())
    };
    env("PROPTEST_CASES")
        .unwrap_or_else(|| default_cases.saturating_mul(env("GIG_FUZZ_FACTOR").unwrap_or(1)))
}

/// Runs `property` on inputs drawn from `strategy` and panics with the shrunk failing input
/// if one fails. `source_file` is the caller's `file!()`: failures are persisted beside it.
pub fn fuzz<S: Strategy>(
    target: &str,
    source_file: &'static str,
    default_cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config {
        cases: cases(default_cases),
        source_file: Some(source_file),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        // No rejection-heavy strategies here: a target that filters that much is a bug.
        max_global_rejects: 4096,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let tried = Cell::new(0u64);
    let result = runner.run(&strategy, |input| {
        tried.set(tried.get() + 1);
        property(input)
    });
    println!("fuzz {target}: {} inputs", tried.get());
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            panic!("fuzz {target} failed: {why}\nminimal failing input: {input:#?}")
        }
        Err(TestError::Abort(why)) => panic!("fuzz {target} aborted: {why}"),
    }
}

/// An in-memory reader that hands out `data` in the given chunk sizes (cycled), one chunk per
/// read: the splits a pipe or socket makes, for properties that must hold for any split. With
/// `stalls`, it also says "not ready yet" before every other chunk, as a pipe does.
#[derive(Debug)]
pub struct SplitReader {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
    stalls: bool,
    stall_next: bool,
}

impl SplitReader {
    /// `sizes` must not be empty.
    pub fn new(data: Vec<u8>, sizes: Vec<usize>, stalls: bool) -> Self {
        assert!(
            !sizes.is_empty(),
            "SplitReader needs at least one chunk size"
        );
        SplitReader {
            data,
            pos: 0,
            sizes,
            turn: 0,
            stalls,
            stall_next: false,
        }
    }
}

impl tokio::io::AsyncRead for SplitReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.stall_next {
            this.stall_next = false;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        this.stall_next = this.stalls && this.turn.is_multiple_of(2);
        let size = this.sizes[this.turn % this.sizes.len()];
        this.turn += 1;
        let n = size.min(buf.remaining()).min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        std::task::Poll::Ready(Ok(()))
    }
}

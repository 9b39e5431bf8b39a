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
//! This crate must never be a dependency of anything but tests.

#![forbid(unsafe_code)]

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

//! Dev-only: runs one property-based fuzz target with a bounded number of inputs.
//!
//! Coverage-guided fuzzing (libFuzzer through `cargo fuzz`) is not what `cargo test` runs, so
//! every crate's hostile-input targets are `proptest` properties run through [`fuzz`]: a few
//! seconds each by default (what CI runs), `PROPTEST_CASES=N` for a longer run (`make fuzz`).
//! Each target prints one line, `fuzz <target>: <n> inputs`, that `make fuzz` tallies. A
//! failing input is shrunk, saved beside the target as `<file>.proptest-regressions` (commit
//! it: it is replayed first on every later run) and reported with the panic.
//!
//! This crate must never be a dependency of anything but tests.

#![forbid(unsafe_code)]

use std::cell::Cell;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestError, TestRunner};

/// The number of inputs a target tries: `PROPTEST_CASES` when set, else `default_cases`.
pub fn cases(default_cases: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default_cases)
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

//! Shared by the coverage-guided targets in `fuzz_targets/`: knobs (sizes and choices) read
//! from the front of an input, so the rest of it is the untrusted bytes themselves and a
//! corpus file stays readable (a signed index, a tar layer, an HTTP request).
//!
//! The targets assert properties, not only "no panic"; a failure is a panic that libFuzzer
//! saves under `artifacts/<target>/` (replay it with `make fuzz-cov FUZZ_TARGETS=<target>
//! FUZZ_ARGS=<file>` or the target's binary and the file).

#![forbid(unsafe_code)]

/// Reads knobs from the front of an input; past its end every knob reads as zero.
#[derive(Debug)]
pub struct Knobs<'a> {
    data: &'a [u8],
}

impl<'a> Knobs<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Knobs { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A value in `lo..=hi` from one byte.
    pub fn in_range(&mut self, lo: usize, hi: usize) -> usize {
        lo + usize::from(self.byte()) % (hi - lo + 1)
    }

    /// What is left after the knobs.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// `s` with every byte but ASCII letters and digits percent-encoded: how the proxy writes a
/// secret into a query, and one of the forms its scrubber must find.
pub fn percent_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

//! Finding placeholders in what a sandbox sends, and scrubbing secrets from what comes back.
//!
//! Detection is deliberately broader than substitution: a placeholder is searched for raw, in any
//! base64 alignment (standard and URL-safe alphabets, so `Basic` credentials and base64 blobs are
//! covered), and after up to four rounds of percent-decoding and JSON unescaping. The placeholder
//! is worthless on its own, so detection is about catching and auditing a server that tries;
//! the real protection is that a secret is only ever written into requests to its own hosts.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use memchr::memmem;

/// The encodings of one value that are searched for.
#[derive(Debug, Clone)]
pub(crate) struct Needles {
    forms: Vec<Vec<u8>>,
}

impl Needles {
    pub(crate) fn new(value: &str) -> Self {
        let mut forms = vec![value.as_bytes().to_vec()];
        forms.extend(base64_cores(value.as_bytes()));
        forms.sort();
        forms.dedup();
        Needles { forms }
    }

    fn in_raw(&self, hay: &[u8]) -> bool {
        self.forms.iter().any(|n| memmem::find(hay, n).is_some())
    }

    /// Whether `hay` carries the value in any of the covered encodings.
    pub(crate) fn found_in(&self, hay: &[u8]) -> bool {
        if self.in_raw(hay) {
            return true;
        }
        let mut current: Cow<'_, [u8]> = Cow::Borrowed(hay);
        for _ in 0..4 {
            let decoded =
                json_unescape(&percent_encoding::percent_decode(&current).collect::<Vec<u8>>());
            if decoded == *current {
                return false;
            }
            if self.in_raw(&decoded) {
                return true;
            }
            current = Cow::Owned(decoded);
        }
        false
    }
}

/// The characters of `data`'s base64 encoding that depend only on `data`, for each of the three
/// byte alignments it can have inside a longer base64 string, in both alphabets.
pub(crate) fn base64_cores(data: &[u8]) -> Vec<Vec<u8>> {
    let mut cores = Vec::new();
    if data.len() < 6 {
        return cores;
    }
    for pad in 0..3usize {
        let mut padded = vec![0u8; pad];
        padded.extend_from_slice(data);
        // Character i covers bits [6i, 6i+6); keep those lying entirely within `data`'s bits.
        let start = (8 * pad).div_ceil(6);
        let end = (8 * (pad + data.len())) / 6;
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&padded);
            if end > start && end <= encoded.len() {
                cores.push(encoded.as_bytes()[start..end].to_vec());
            }
        }
    }
    cores
}

/// Undoes JSON string escapes (`\uXXXX`, `\n`, `\/`...); anything malformed is kept as is.
fn json_unescape(input: &[u8]) -> Vec<u8> {
    if !input.contains(&b'\\') {
        return input.to_vec();
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' || i + 1 >= input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let simple = match input[i + 1] {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        if input[i + 1] == b'u'
            && let Some(code) = input
                .get(i + 2..i + 6)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
        {
            let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            i += 6;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// Replaces every occurrence of `from` in `data` with `to`.
pub(crate) fn replace_all(data: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() {
        return None;
    }
    let mut found = memmem::find_iter(data, from).peekable();
    found.peek()?;
    let mut out = Vec::with_capacity(data.len());
    let mut last = 0;
    for at in found {
        if at < last {
            continue;
        }
        out.extend_from_slice(&data[last..at]);
        out.extend_from_slice(to);
        last = at + from.len();
    }
    out.extend_from_slice(&data[last..]);
    Some(out)
}

/// (secret form, what the server sees instead) pairs for one injected secret.
type ScrubPair = (Vec<u8>, Vec<u8>);

/// Holds secret material: its `Debug` shows only how many forms it has.
#[derive(Clone, Default)]
pub(crate) struct ScrubSet {
    pairs: Vec<ScrubPair>,
}

impl std::fmt::Debug for ScrubSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScrubSet({} forms)", self.pairs.len())
    }
}

impl Drop for ScrubSet {
    fn drop(&mut self) {
        for (secret, _) in &mut self.pairs {
            zeroize::Zeroize::zeroize(secret);
        }
    }
}

impl ScrubSet {
    /// Adds the forms of `secret` a response may carry: raw, percent-encoded, JSON-escaped, the
    /// exact `Basic` value that was injected, and any base64 alignment of the secret.
    pub(crate) fn add(&mut self, secret: &str, placeholder: &str, basic_user: Option<&str>) {
        let ph = placeholder.as_bytes().to_vec();
        if let Some(user) = basic_user {
            let real = STANDARD.encode(format!("{user}:{secret}"));
            let fake = STANDARD.encode(format!("{user}:{placeholder}"));
            self.pairs.push((real.into_bytes(), fake.into_bytes()));
        }
        self.pairs.push((secret.as_bytes().to_vec(), ph.clone()));
        let encoded =
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        self.pairs.push((encoded.into_bytes(), ph.clone()));
        for escape_slash in [false, true] {
            let json = json_escape(secret, escape_slash);
            self.pairs.push((json.into_bytes(), ph.clone()));
        }
        if secret.len() >= 12 {
            for core in base64_cores(secret.as_bytes()) {
                self.pairs.push((core, ph.clone()));
            }
        }
        self.pairs.sort();
        self.pairs.dedup();
        // Longest first, so a form containing another is replaced whole.
        self.pairs
            .sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// How many trailing bytes a streaming scrubber must hold back between chunks.
    pub(crate) fn overlap(&self) -> usize {
        self.pairs
            .iter()
            .map(|(f, _)| f.len())
            .max()
            .unwrap_or(1)
            .saturating_sub(1)
    }

    /// Scrubs a complete value; `None` if nothing was found.
    pub(crate) fn scrub(&self, data: &[u8]) -> Option<Vec<u8>> {
        let (out, rest, replaced) = self.scrub_prefix(data, data.len());
        debug_assert!(rest == data.len());
        replaced.then_some(out)
    }

    /// Leftmost-longest replacement of the matches that start before `limit`; returns the
    /// output, how far into `data` it covers, and whether anything was replaced. Deciding only
    /// starts before `limit` (with all needles fully visible there) makes streaming give the
    /// same result as scrubbing the whole body at once.
    fn scrub_prefix(&self, data: &[u8], limit: usize) -> (Vec<u8>, usize, bool) {
        let mut out = Vec::with_capacity(data.len());
        let mut pos = 0;
        let mut replaced = false;
        while pos < limit {
            let mut best: Option<(usize, &ScrubPair)> = None;
            for pair in &self.pairs {
                if let Some(at) = memmem::find(&data[pos..], &pair.0) {
                    let at = pos + at;
                    // Pairs are sorted longest first, so `<` keeps the longest on a tie.
                    if at < limit && best.is_none_or(|(b, _)| at < b) {
                        best = Some((at, pair));
                    }
                }
            }
            let Some((at, (from, to))) = best else {
                out.extend_from_slice(&data[pos..limit]);
                pos = limit;
                break;
            };
            out.extend_from_slice(&data[pos..at]);
            out.extend_from_slice(to);
            pos = at + from.len();
            replaced = true;
        }
        (out, pos, replaced)
    }
}

use base64::engine::general_purpose::STANDARD;

/// JSON string escaping of a secret, as a JSON encoder would write it (without quotes).
fn json_escape(s: &str, escape_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if escape_slash => out.push_str("\\/"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A streaming scrubber: holds back the last `overlap` bytes so a secret split across chunks is
/// still found.
pub(crate) struct StreamScrubber {
    set: ScrubSet,
    carry: Vec<u8>,
}

impl std::fmt::Debug for StreamScrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamScrubber").finish_non_exhaustive()
    }
}

impl StreamScrubber {
    pub(crate) fn new(set: ScrubSet) -> Self {
        StreamScrubber {
            set,
            carry: Vec::new(),
        }
    }

    /// Feeds a chunk; returns what may be released now.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.carry.extend_from_slice(chunk);
        let limit = self.carry.len().saturating_sub(self.set.overlap());
        let (out, used, _) = self.set.scrub_prefix(&self.carry, limit);
        self.carry.drain(..used);
        out
    }

    /// Releases what was held back at the end of the body.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let carry = std::mem::take(&mut self.carry);
        self.set.scrub(&carry).unwrap_or(carry)
    }
}

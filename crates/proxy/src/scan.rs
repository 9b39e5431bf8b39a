//! Finding placeholders in what a sandbox sends, and scrubbing secrets from what comes back.
//!
//! Detection is deliberately broader than substitution: a placeholder is searched for raw, in any
//! base64 alignment (standard and URL-safe alphabets, so `Basic` credentials and base64 blobs are
//! covered), and after up to four rounds of percent-decoding and JSON unescaping. The placeholder
//! is worthless on its own, so detection is about catching and auditing a server that tries;
//! the real protection is that a secret is only ever written into requests to its own hosts.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// The encodings of a set of values (one sandbox's placeholders) searched for in one pass.
#[derive(Debug, Clone)]
pub(crate) struct Needles {
    /// `None` when there is nothing to look for.
    matcher: Option<AhoCorasick>,
    /// Pattern index → value index.
    owner: Vec<usize>,
    values: usize,
}

impl Needles {
    pub(crate) fn new(values: &[&str]) -> Self {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut owner = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let mut forms = vec![value.as_bytes().to_vec()];
            forms.extend(base64_cores(value.as_bytes()));
            forms.sort();
            forms.dedup();
            owner.extend(std::iter::repeat_n(i, forms.len()));
            patterns.extend(forms);
        }
        let matcher = (!patterns.is_empty()).then(|| {
            AhoCorasick::new(&patterns).expect("placeholder patterns are small and valid")
        });
        Needles {
            matcher,
            owner,
            values: values.len(),
        }
    }

    pub(crate) fn hits(&self) -> Vec<bool> {
        vec![false; self.values]
    }

    fn mark_raw(&self, matcher: &AhoCorasick, hay: &[u8], hits: &mut [bool]) {
        for m in matcher.find_overlapping_iter(hay) {
            hits[self.owner[m.pattern().as_usize()]] = true;
        }
    }

    /// Marks in `hits` every value `hay` carries in any of the covered encodings.
    pub(crate) fn mark(&self, hay: &[u8], hits: &mut [bool]) {
        let Some(matcher) = &self.matcher else { return };
        self.mark_raw(matcher, hay, hits);
        let mut current: Cow<'_, [u8]> = Cow::Borrowed(hay);
        for _ in 0..4 {
            if memchr::memchr2(b'%', b'\\', &current).is_none() {
                return;
            }
            let decoded =
                json_unescape(&percent_encoding::percent_decode(&current).collect::<Vec<u8>>());
            if decoded == *current {
                return;
            }
            self.mark_raw(matcher, &decoded, hits);
            current = Cow::Owned(decoded);
        }
    }

    /// Whether `hay` carries any of the values.
    #[cfg(test)]
    pub(crate) fn found_in(&self, hay: &[u8]) -> bool {
        let mut hits = self.hits();
        self.mark(hay, &mut hits);
        hits.contains(&true)
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

/// (secret form, what the server sees instead) pairs for one injected secret.
/// (secret form, what the server sees instead) pairs for the secrets injected into a request,
/// with a leftmost-longest matcher over the forms.
#[derive(Clone, Default)]
pub(crate) struct ScrubSet {
    from: Vec<Vec<u8>>,
    to: Vec<Vec<u8>>,
    matcher: Option<AhoCorasick>,
    longest: usize,
}

impl std::fmt::Debug for ScrubSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScrubSet({} forms)", self.from.len())
    }
}

impl Drop for ScrubSet {
    fn drop(&mut self) {
        for secret in &mut self.from {
            zeroize::Zeroize::zeroize(secret);
        }
    }
}

impl ScrubSet {
    /// For each `(secret, placeholder, basic-auth user)`, the forms a response may carry: raw,
    /// percent-encoded, JSON-escaped, the exact `Basic` value that was injected, and any base64
    /// alignment of the secret (for secrets of 12 bytes or more).
    pub(crate) fn new(entries: &[(&str, &str, Option<&str>)]) -> Self {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (secret, placeholder, basic_user) in entries {
            let ph = placeholder.as_bytes().to_vec();
            if let Some(user) = basic_user {
                let real = STANDARD.encode(format!("{user}:{secret}"));
                let fake = STANDARD.encode(format!("{user}:{placeholder}"));
                pairs.push((real.into_bytes(), fake.into_bytes()));
            }
            pairs.push((secret.as_bytes().to_vec(), ph.clone()));
            let encoded =
                percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            pairs.push((encoded.into_bytes(), ph.clone()));
            for escape_slash in [false, true] {
                pairs.push((json_escape(secret, escape_slash).into_bytes(), ph.clone()));
            }
            if secret.len() >= 12 {
                for core in base64_cores(secret.as_bytes()) {
                    pairs.push((core, ph.clone()));
                }
            }
        }
        pairs.retain(|(from, _)| !from.is_empty());
        pairs.sort();
        pairs.dedup_by(|a, b| a.0 == b.0);
        let longest = pairs.iter().map(|(f, _)| f.len()).max().unwrap_or(0);
        let (from, to): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
        let matcher = (!from.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&from)
                .expect("secret forms are valid patterns")
        });
        ScrubSet {
            from,
            to,
            matcher,
            longest,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// How many trailing bytes a streaming scrubber must hold back between chunks.
    pub(crate) fn overlap(&self) -> usize {
        self.longest.saturating_sub(1)
    }

    /// Scrubs a complete value; `None` if nothing was found.
    pub(crate) fn scrub(&self, data: &[u8]) -> Option<Vec<u8>> {
        let (out, _, replaced) = self.scrub_prefix(data, data.len());
        replaced.then_some(out)
    }

    /// Leftmost-longest replacement of the matches that start before `limit`; returns the
    /// output, how far into `data` it covers, and whether anything was replaced. Deciding only
    /// starts before `limit` (where every form is fully visible) makes streaming give the same
    /// result as scrubbing the whole body at once.
    fn scrub_prefix(&self, data: &[u8], limit: usize) -> (Vec<u8>, usize, bool) {
        let Some(matcher) = &self.matcher else {
            return (data[..limit].to_vec(), limit, false);
        };
        let mut out = Vec::with_capacity(data.len());
        let mut pos = 0;
        let mut replaced = false;
        for m in matcher.find_iter(data) {
            if m.start() >= limit {
                break;
            }
            out.extend_from_slice(&data[pos..m.start()]);
            out.extend_from_slice(&self.to[m.pattern().as_usize()]);
            pos = m.end();
            replaced = true;
        }
        if pos < limit {
            out.extend_from_slice(&data[pos..limit]);
            pos = limit;
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
    set: std::sync::Arc<ScrubSet>,
    carry: Vec<u8>,
}

impl std::fmt::Debug for StreamScrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamScrubber").finish_non_exhaustive()
    }
}

impl StreamScrubber {
    pub(crate) fn new(set: std::sync::Arc<ScrubSet>) -> Self {
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

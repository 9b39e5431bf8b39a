//! Fuzz targets for the proxy's own parsing and scanning (private, so they live here).
//!
//! - `proxy/framing_watch`: the `Content-Length` + `Transfer-Encoding` watch on the client's
//!   bytes raises its flag for exactly the inputs a line-by-line model flags, however the bytes
//!   are split between reads.
//! - `proxy/placeholders`: requests carrying the sandbox's placeholders in every covered
//!   encoding, anywhere, to allowed and other hosts. A placeholder never leaves for a host that
//!   is not its credential's (refused as exfiltration); a secret is injected only for a
//!   credential whose hosts match the destination, over an allowed scheme; after injection no
//!   placeholder, whole or in part, is left anywhere in the request, and the secret sits only
//!   at its declared position.
//! - `proxy/scrub_stream`: the response scrubber gives the same bytes whatever the chunking,
//!   and no secret survives it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use gig_fuzz::models::framing_conflict;
use gig_fuzz::{SplitReader, fuzz};
use gig_policy::Injection;
use http::Request;
use proptest::prelude::*;
use tokio::io::AsyncReadExt;

use crate::PLACEHOLDER_PREFIX;
use crate::framing::FramingWatch;
use crate::fuzz_fixture::{ENVS, HOSTS, placeholder, sandbox, secret, secrets};
use crate::phases::{inject, placeholders};
use crate::scan::{Needles, ScrubSet, StreamScrubber};
use crate::upstream::Destination;

fn watch(data: &[u8], sizes: Vec<usize>, read_size: usize) -> bool {
    let flag = Arc::new(AtomicBool::new(false));
    let reader = SplitReader::new(data.to_vec(), sizes, false);
    let mut watched = FramingWatch::new(reader, flag.clone());
    futures::executor::block_on(async {
        let mut buf = vec![0u8; read_size];
        while watched.read(&mut buf).await.expect("in-memory reads") > 0 {}
    });
    flag.load(Ordering::Acquire)
}

fn http_head() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just("GET http://a.test/ HTTP/1.1".to_owned()),
        Just("Host: a.test".to_owned()),
        "(?i:content-length): ?[0-9]{1,3}",
        "(?i:transfer-encoding): ?(chunked|gzip)",
        Just("Content-Length : 5".to_owned()),
        Just(" Transfer-Encoding: chunked".to_owned()),
        Just(String::new()),
        Just("x".repeat(40)),
        "[ -~]{0,30}",
    ];
    (
        proptest::collection::vec((line, any::<bool>()), 0..16),
        any::<bool>(),
    )
        .prop_map(|(lines, final_newline)| {
            let mut out = Vec::new();
            for (i, (line, crlf)) in lines.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
                }
                out.extend_from_slice(line.as_bytes());
            }
            if final_newline {
                out.extend_from_slice(b"\r\n\r\n");
            }
            out
        })
}

#[test]
fn fuzz_framing_watch() {
    let strategy = (
        http_head(),
        proptest::collection::vec(1usize..40, 1..6),
        1usize..64,
    );
    fuzz(
        "proxy/framing_watch",
        file!(),
        3000,
        strategy,
        |(head, sizes, read_size)| {
            let expected = framing_conflict(&head);
            prop_assert_eq!(
                watch(&head, vec![head.len().max(1)], head.len().max(1)),
                expected
            );
            prop_assert_eq!(watch(&head, sizes, read_size), expected);
            Ok(())
        },
    );
}

// ---- placeholders ----------------------------------------------------------------------------

/// How a placeholder is written into a request.
#[derive(Debug, Clone, Copy)]
enum Form {
    Raw,
    Percent,
    DoublePercent,
    JsonEscaped,
    Base64 { pad: usize, url: bool },
    Basic,
    Truncated,
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        4 => Just(Form::Raw),
        1 => Just(Form::Percent),
        1 => Just(Form::DoublePercent),
        1 => Just(Form::JsonEscaped),
        1 => (0usize..3, any::<bool>()).prop_map(|(pad, url)| Form::Base64 { pad, url }),
        1 => Just(Form::Basic),
        1 => Just(Form::Truncated),
    ]
}

fn encode(form: Form, ph: &str) -> String {
    match form {
        Form::Raw => ph.to_owned(),
        Form::Percent => ph.bytes().map(|b| format!("%{b:02X}")).collect(),
        Form::DoublePercent => ph.bytes().map(|b| format!("%25{b:02X}")).collect(),
        Form::JsonEscaped => ph.chars().map(|c| format!("\\u{:04x}", c as u32)).collect(),
        Form::Base64 { pad, url } => {
            let data = format!("{}{ph}", "x".repeat(pad));
            if url {
                URL_SAFE.encode(data)
            } else {
                STANDARD.encode(data)
            }
        }
        Form::Basic => format!("Basic {}", STANDARD.encode(format!("me:{ph}"))),
        // Not the placeholder: must not count as carrying it.
        Form::Truncated => ph[..ph.len() - 1].to_owned(),
    }
}

/// Where in the request a placeholder goes.
#[derive(Debug, Clone, Copy)]
enum Spot {
    /// The credential's own declared position (header, Basic, or query `key`).
    Declared,
    Query,
    OtherHeader,
    Body,
}

#[derive(Debug, Clone)]
struct Case {
    host: usize,
    tls: bool,
    /// (credential, form, spot)
    carried: Vec<(usize, Form, Spot)>,
    noise: String,
}

fn case() -> impl Strategy<Value = Case> {
    let spot = prop_oneof![
        4 => Just(Spot::Declared),
        1 => Just(Spot::Query),
        1 => Just(Spot::OtherHeader),
        1 => Just(Spot::Body),
    ];
    (
        0..HOSTS.len(),
        prop::bool::weighted(0.8),
        proptest::collection::vec((0..ENVS.len(), form(), spot), 0..3),
        "[a-z0-9]{0,8}",
    )
        .prop_map(|(host, tls, carried, noise)| Case {
            host,
            tls,
            carried,
            noise,
        })
}

/// `text` as a query value may carry it (what a client's URL encoder does to `+`, `\\` and
/// spaces).
fn in_query(text: &str) -> String {
    text.replace('+', "%2B")
        .replace('\\', "%5C")
        .replace(' ', "%20")
}

fn request(case: &Case) -> (http::request::Parts, Vec<u8>) {
    let mut query = vec![format!("q={}", case.noise)];
    let mut headers: Vec<(String, String)> = vec![("x-noise".into(), case.noise.clone())];
    let mut body = format!("{{\"n\":\"{}\"", case.noise);
    for (n, &(i, form, spot)) in case.carried.iter().enumerate() {
        let text = encode(form, &placeholder(i));
        match spot {
            Spot::Declared => match i {
                0 => headers.push(("authorization".into(), format!("Bearer {text}"))),
                1 => query.push(format!("key={}", in_query(&text))),
                _ => headers.push(("authorization".into(), text)),
            },
            Spot::Query => query.push(format!("p{n}={}", in_query(&text))),
            Spot::OtherHeader => headers.push((format!("x-h{n}"), text)),
            Spot::Body => body.push_str(&format!(",\"b{n}\":\"{text}\"")),
        }
    }
    body.push('}');
    let uri = format!("/v1/path?{}", query.join("&"));
    let mut b = Request::builder().uri(uri.as_str());
    for (k, v) in &headers {
        b = b.header(k.as_str(), v.as_str());
    }
    (b.body(()).unwrap().into_parts().0, body.into_bytes())
}

/// Everything in a request that goes upstream, as bytes per place.
fn places(parts: &http::request::Parts, body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![parts.uri.to_string().into_bytes(), body.to_vec()];
    for (name, value) in &parts.headers {
        out.push(name.as_str().as_bytes().to_vec());
        out.push(value.as_bytes().to_vec());
    }
    out
}

#[test]
fn fuzz_placeholders() {
    let sandbox = sandbox();
    let secrets = secrets();
    let detector = Needles::new(&[&placeholder(0), &placeholder(1), &placeholder(2)]);
    fuzz("proxy/placeholders", file!(), 1500, case(), |case| {
        let host = HOSTS[case.host];
        let dest = Destination {
            host: host.into(),
            port: if case.tls { 443 } else { 80 },
            addrs: Vec::new(),
            tls: case.tls,
        };
        let (mut parts, body) = request(&case);
        let own_host = |i: usize| sandbox.creds[i].spec.hosts.iter().any(|h| h.matches(host));
        let carried: Vec<usize> = case
            .carried
            .iter()
            .filter(|(_, form, _)| !matches!(form, Form::Truncated))
            .map(|(i, _, _)| *i)
            .collect();
        let result = placeholders::check(&sandbox, &dest, &parts, &[body.as_slice()]);
        if carried.iter().any(|&i| !own_host(i)) {
            // Refused. (Flagged as exfiltration unless an earlier credential's own refusal,
            // such as plain HTTP, came first: the order of `check`'s loop.)
            prop_assert!(result.is_err(), "a placeholder left for another host");
            return Ok(());
        }
        let Ok(chosen) = result else {
            return Ok(());
        };
        for &i in &chosen {
            prop_assert!(own_host(i), "credential {} injected for {}", ENVS[i], host);
            prop_assert!(dest.tls, "credential {} injected over plain HTTP", ENVS[i]);
        }
        let injected = futures::executor::block_on(inject::credentials(
            &sandbox,
            &secrets,
            chosen.clone(),
            &mut parts,
        ));
        let Ok(injected) = injected else {
            return Ok(());
        };
        prop_assert_eq!(injected.credentials.len(), chosen.len());
        // No placeholder, whole or in part (its first or last 16 characters), is left; a
        // truncated one the case wrote itself is not a placeholder and stays.
        let truncated = case
            .carried
            .iter()
            .any(|(_, f, _)| matches!(f, Form::Truncated));
        for place in places(&parts, &body) {
            prop_assert!(
                !detector.found_in(&place),
                "{:?}",
                String::from_utf8_lossy(&place)
            );
            for i in 0..ENVS.len() {
                let ph = placeholder(i);
                let text = String::from_utf8_lossy(&place);
                let (head, tail) = (&ph[..16 + PLACEHOLDER_PREFIX.len()], &ph[ph.len() - 16..]);
                prop_assert!(
                    truncated || !text.contains(head) && !text.contains(tail),
                    "{}",
                    text
                );
            }
        }
        // Each injected secret sits exactly at its declared position.
        for &i in &chosen {
            let s = secret(i);
            match &sandbox.creds[i].spec.inject {
                Injection::Header { .. } => {
                    prop_assert_eq!(parts.headers.get_all("authorization").iter().count(), 1)
                }
                Injection::Query { param } => {
                    let encoded = percent_encoding::utf8_percent_encode(
                        &s,
                        percent_encoding::NON_ALPHANUMERIC,
                    );
                    let wanted = format!("{param}={encoded}");
                    let count = parts
                        .uri
                        .query()
                        .unwrap_or("")
                        .split('&')
                        .filter(|p| p.starts_with(&format!("{param}=")))
                        .count();
                    prop_assert_eq!(count, 1);
                    prop_assert!(
                        parts
                            .uri
                            .query()
                            .unwrap_or("")
                            .split('&')
                            .any(|p| p == wanted)
                    );
                }
                Injection::Basic { .. } => {}
            }
            let declared = match &sandbox.creds[i].spec.inject {
                Injection::Header { template, .. } => template.replace("{}", &s),
                Injection::Basic { username } => {
                    format!("Basic {}", STANDARD.encode(format!("{username}:{s}")))
                }
                Injection::Query { .. } => continue,
            };
            let auth = parts.headers.get("authorization").map(|v| v.as_bytes());
            prop_assert_eq!(auth, Some(declared.as_bytes()));
            prop_assert!(!String::from_utf8_lossy(&body).contains(&s));
        }
        Ok(())
    });
}

// ---- response scrubbing ------------------------------------------------------------------------

#[test]
fn fuzz_scrub_stream() {
    // No upper case, so no secret is part of a placeholder; at least 8 characters, so none is
    // (but by a one-in-a-billion chance) part of the base64 that replaces a Basic value.
    let secret_text = "[a-z0-9!\"\\\\/%&=+ ._-]{8,24}";
    let strategy = (
        proptest::collection::vec((secret_text, any::<bool>()), 1..3),
        proptest::collection::vec(
            prop_oneof![
                3 => "[a-z0-9 ]{0,12}".prop_map(Chunk::Noise),
                2 => (0usize..3, 0usize..5).prop_map(|(s, f)| Chunk::Secret(s, f)),
            ],
            0..12,
        ),
        proptest::collection::vec(1usize..40, 1..6),
    );
    fuzz(
        "proxy/scrub_stream",
        file!(),
        1000,
        strategy,
        |(secrets, pieces, sizes)| {
            let phs: Vec<String> = (0..secrets.len())
                .map(|i| format!("PH{}PLACEHOLDER", char::from(b'A' + i as u8)))
                .collect();
            let entries: Vec<(&str, &str, Option<&str>)> = secrets
                .iter()
                .zip(&phs)
                .map(|((s, basic), ph)| (s.as_str(), ph.as_str(), basic.then_some("svc")))
                .collect();
            let set = Arc::new(ScrubSet::new(&entries));
            let mut body = Vec::new();
            for piece in &pieces {
                match piece {
                    Chunk::Noise(t) => body.extend_from_slice(t.as_bytes()),
                    Chunk::Secret(s, f) => {
                        let s = &secrets[s % secrets.len()].0;
                        let form = match f {
                            0 => s.clone(),
                            1 => percent_encoding::utf8_percent_encode(
                                s,
                                percent_encoding::NON_ALPHANUMERIC,
                            )
                            .to_string(),
                            2 => serde_json::to_string(s)
                                .unwrap()
                                .trim_matches('"')
                                .to_owned(),
                            3 => STANDARD.encode(format!("svc:{s}")),
                            _ => STANDARD.encode(format!("ab{s}")),
                        };
                        body.extend_from_slice(form.as_bytes());
                    }
                }
            }
            let whole = set.scrub(&body).unwrap_or_else(|| body.clone());
            let mut stream = StreamScrubber::new(set.clone());
            let mut streamed = Vec::new();
            let mut at = 0;
            for size in sizes.iter().cycle() {
                if at >= body.len() {
                    break;
                }
                let end = (at + size).min(body.len());
                streamed.extend(stream.push(&body[at..end]));
                at = end;
            }
            streamed.extend(stream.finish());
            prop_assert_eq!(&streamed, &whole, "chunking changed the output");
            for (s, _) in &secrets {
                let raw = s.as_bytes();
                prop_assert!(
                    !whole.windows(raw.len()).any(|w| w == raw),
                    "secret {:?} survived in {:?}",
                    s,
                    String::from_utf8_lossy(&whole)
                );
            }
            Ok(())
        },
    );
}

#[derive(Debug, Clone)]
enum Chunk {
    Noise(String),
    /// (which secret, which form)
    Secret(usize, usize),
}

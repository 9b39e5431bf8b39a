//! Entry points for the coverage-guided fuzz harness (`fuzz/`, docs/reliability.md): the
//! proxy's parsing and scanning are private, so this module, built only with the `fuzzing`
//! feature that nothing but that harness turns on, hands them out. It adds no behaviour: each
//! function calls the same phases, in the same order, as the proxy does.
//!
//! This module must never be enabled in a build that serves traffic.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::AsyncRead;

use crate::framing::FramingWatch;
use crate::phases::{Refusal, agree, body, inject, placeholders};
use crate::proxy::{ProxyLimits, SandboxEgress, SecretSource};
use crate::scan::{ScrubSet, StreamScrubber};
use crate::upstream::Destination;

/// `inner`, watched for a request head with both `Content-Length` and `Transfer-Encoding`
/// (the flag is raised when one is seen), as a client connection is.
pub fn framing_watch<R: AsyncRead + Unpin>(inner: R) -> (impl AsyncRead + Unpin, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(false));
    (FramingWatch::new(inner, flag.clone()), flag)
}

/// What the proxy decided about a request before sending it.
#[derive(Debug)]
pub enum Verdict {
    Refused {
        status: u16,
        /// Flagged as an exfiltration attempt in the audit record.
        exfiltration: bool,
        reason: String,
    },
    /// Would be sent upstream as it is now: after injection.
    Send {
        parts: Box<http::request::Parts>,
        body: Bytes,
        /// The credentials injected, by `env`.
        credentials: Vec<String>,
    },
}

impl From<Refusal> for Verdict {
    fn from(r: Refusal) -> Self {
        Verdict::Refused {
            status: r.status.as_u16(),
            exfiltration: r.exfiltration,
            reason: r.reason,
        }
    }
}

/// A request that reached the proxy as HTTP/1 (`conflict`: the connection's framing flag),
/// either inside an intercepted tunnel to `host:port` (`tls`) or as absolute-form plain HTTP,
/// through every phase up to sending but the policy (which resolves names): the head checks,
/// agreement on the destination, the body read and decoded, the placeholder scan and the
/// injection.
pub async fn request_phases(
    sandbox: &SandboxEgress,
    secrets: &dyn SecretSource,
    limits: &ProxyLimits,
    tunnel: Option<(&str, u16)>,
    conflict: bool,
    request: http::Request<Bytes>,
) -> Verdict {
    match phases(sandbox, secrets, limits, tunnel, conflict, request).await {
        Ok(send) => send,
        Err(refusal) => refusal.into(),
    }
}

async fn phases(
    sandbox: &SandboxEgress,
    secrets: &dyn SecretSource,
    limits: &ProxyLimits,
    tunnel: Option<(&str, u16)>,
    conflict: bool,
    request: http::Request<Bytes>,
) -> Result<Verdict, Refusal> {
    let (mut parts, bytes) = request.into_parts();
    body::check_head(
        &parts.headers,
        limits.max_header_bytes,
        &AtomicBool::new(conflict),
    )?;
    let dest = match tunnel {
        Some((host, port)) => {
            agree::tunnel_request(&parts.method, &parts.uri, &parts.headers, host, port, false)?;
            Destination {
                host: host.to_owned(),
                port,
                addrs: Vec::new(),
                tls: true,
            }
        }
        None => {
            let (host, port) = agree::absolute_form(&parts.uri)?;
            agree::host_headers(&parts.headers, &host, port, false)?;
            Destination {
                host,
                port,
                addrs: Vec::new(),
                tls: false,
            }
        }
    };
    let whole = body::read_whole(&parts.headers, Full::new(bytes), limits).await?;
    let chosen = placeholders::check(sandbox, &dest, &parts, &whole.scanned())?;
    let body = whole.into_bytes();
    let injected = inject::credentials(sandbox, secrets, chosen, &mut parts).await?;
    Ok(Verdict::Send {
        parts: Box::new(parts),
        body,
        credentials: injected.credentials,
    })
}

/// The response scrubber for `(secret, placeholder, Basic user)` entries: the body scrubbed
/// whole, and the same body scrubbed as a stream cut into `chunks` (cycled; not empty).
pub fn scrub(
    entries: &[(&str, &str, Option<&str>)],
    body: &[u8],
    chunks: &[usize],
) -> (Vec<u8>, Vec<u8>) {
    let set = Arc::new(ScrubSet::new(entries));
    let whole = set.scrub(body).unwrap_or_else(|| body.to_vec());
    let mut stream = StreamScrubber::new(set);
    let mut streamed = Vec::new();
    let mut at = 0;
    for &size in chunks.iter().cycle() {
        if at >= body.len() {
            break;
        }
        let end = (at + size.max(1)).min(body.len());
        streamed.extend(stream.push(&body[at..end]));
        at = end;
    }
    streamed.extend(stream.finish());
    (whole, streamed)
}

//! Phase 7, scrub: when a secret was injected, every form of it is replaced by its placeholder
//! in the response's headers, its body (streamed, holding back enough bytes that a secret split
//! across chunks is still found) and its trailers. A gzip/deflate body is decoded to be
//! scrubbed; any other encoding is refused with 502 (decision 34).

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::content_encoding;
use super::send::Sent;
use super::{Body, BoxError, Refusal, empty};
use crate::audit::{AuditGuard, Exchange};
use crate::scan::{ScrubSet, StreamScrubber};

/// A response ready to be passed on: headers scrubbed, the body (unless the response has none)
/// with the decoder its scrubbing needs.
#[derive(Debug)]
pub(crate) struct Scrubbed<B = Incoming> {
    pub(crate) parts: http::response::Parts,
    body: Option<(B, Option<Decoder>)>,
    scrub: Arc<ScrubSet>,
    /// What the record of this request says about the exchange.
    pub(crate) exchange: Exchange,
}

/// Scrubs `sent`'s headers with `scrub` and prepares its body; `method` is the request's (a
/// `HEAD` answer has no body).
pub(crate) fn response<B>(
    sent: Sent<B>,
    scrub: &Arc<ScrubSet>,
    method: &str,
) -> Result<Scrubbed<B>, Refusal> {
    let Sent {
        mut parts,
        body,
        exchange,
    } = sent;
    let no_body = method == "HEAD"
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    if no_body {
        scrub_headers(scrub, &mut parts.headers);
        return Ok(Scrubbed {
            parts,
            body: None,
            scrub: scrub.clone(),
            exchange,
        });
    }
    let mut decoder = None;
    if !scrub.is_empty() {
        scrub_headers(scrub, &mut parts.headers);
        match content_encoding(&parts.headers).as_deref() {
            None | Some("identity") => {}
            Some("gzip" | "x-gzip") => {
                decoder = Some(Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new()), 0))
            }
            Some("deflate") => {
                decoder = Some(Decoder::Zlib(
                    flate2::write::ZlibDecoder::new(Vec::new()),
                    0,
                ))
            }
            Some(other) => {
                // This record has never counted the request's bytes; kept as it was.
                let exchange = Exchange {
                    request_bytes: 0,
                    ..exchange
                };
                return Err(Refusal::response(
                    format!("the response is encoded with {other:?}, which cannot be scrubbed"),
                    format!("encoded with {other:?}, which cannot be scrubbed"),
                )
                .with(exchange));
            }
        }
        if decoder.is_some() {
            parts.headers.remove(header::CONTENT_ENCODING);
        }
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    Ok(Scrubbed {
        parts,
        body: Some((body, decoder)),
        scrub: scrub.clone(),
        exchange,
    })
}

impl<B> Scrubbed<B>
where
    B: HttpBody<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError> + std::fmt::Display,
{
    /// The response for the server. `audit` is recorded when the body ends, fails or is
    /// dropped, or at once when there is no body.
    pub(crate) fn deliver(self, mut audit: AuditGuard) -> Response<Body> {
        let Some((inner, decoder)) = self.body else {
            audit.finish(None);
            return Response::from_parts(self.parts, empty());
        };
        let scrubbing = !self.scrub.is_empty();
        let body = ProxiedBody {
            inner,
            decoder,
            scrubber: scrubbing.then(|| StreamScrubber::new(self.scrub.clone())),
            scrub_trailers: self.scrub,
            pending_trailers: None,
            finished: false,
            audit,
        };
        Response::from_parts(self.parts, body.boxed())
    }
}

fn scrub_headers(scrub: &ScrubSet, headers: &mut HeaderMap) {
    for value in headers.values_mut() {
        if let Some(clean) = scrub.scrub(value.as_bytes()) {
            *value =
                HeaderValue::from_bytes(&clean).unwrap_or_else(|_| HeaderValue::from_static(""));
        }
    }
}

pub(crate) enum Decoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>, u64),
    Zlib(flate2::write::ZlibDecoder<Vec<u8>>, u64),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoder::Gzip(..) => "Decoder::Gzip",
            Decoder::Zlib(..) => "Decoder::Zlib",
        })
    }
}

/// Most bytes a compressed response may expand to when the proxy must decode it to scrub a
/// secret: a small body that inflates a thousandfold must not exhaust the gateway's memory.
const MAX_DECODED_RESPONSE: u64 = 256 << 20;

impl Decoder {
    fn feed(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        let (out, total) = match self {
            Decoder::Gzip(d, total) => {
                d.write_all(data)?;
                (std::mem::take(d.get_mut()), total)
            }
            Decoder::Zlib(d, total) => {
                d.write_all(data)?;
                (std::mem::take(d.get_mut()), total)
            }
        };
        *total += out.len() as u64;
        if *total > MAX_DECODED_RESPONSE {
            return Err(io::Error::other(format!(
                "the compressed response expands beyond {MAX_DECODED_RESPONSE} bytes"
            )));
        }
        Ok(out)
    }
    fn finish(&mut self) -> io::Result<Vec<u8>> {
        match self {
            Decoder::Gzip(d, _) => {
                d.try_finish()?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Zlib(d, _) => {
                d.try_finish()?;
                Ok(std::mem::take(d.get_mut()))
            }
        }
    }
}

/// The upstream's response body on its way to the server: decompressed and scrubbed when a
/// secret was injected, counted always.
struct ProxiedBody<B> {
    inner: B,
    decoder: Option<Decoder>,
    scrubber: Option<StreamScrubber>,
    scrub_trailers: Arc<ScrubSet>,
    pending_trailers: Option<HeaderMap>,
    finished: bool,
    audit: AuditGuard,
}

impl<B> ProxiedBody<B> {
    fn process(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        let decoded = match &mut self.decoder {
            Some(d) => d.feed(data)?,
            None => data.to_vec(),
        };
        Ok(match &mut self.scrubber {
            Some(s) => s.push(&decoded),
            None => decoded,
        })
    }

    fn flush(&mut self) -> io::Result<Vec<u8>> {
        let mut tail = match &mut self.decoder {
            Some(d) => d.finish()?,
            None => Vec::new(),
        };
        if let Some(s) = &mut self.scrubber {
            let mut out = s.push(&tail);
            out.extend(s.finish());
            tail = out;
        }
        Ok(tail)
    }

    fn data_frame(&mut self, data: Vec<u8>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.audit.add_bytes(data.len());
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(data)))))
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.audit.finish(Some(format!("response body: {e}")));
        Poll::Ready(Some(Err(Box::new(e))))
    }
}

impl<B> HttpBody for ProxiedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError> + std::fmt::Display,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.finished {
                if let Some(trailers) = this.pending_trailers.take() {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                this.audit.finish(None);
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => match this.process(&data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return this.data_frame(out),
                        Err(e) => return this.fail(e),
                    },
                    Err(frame) => {
                        if let Ok(mut trailers) = frame.into_trailers() {
                            if !this.scrub_trailers.is_empty() {
                                scrub_headers(&this.scrub_trailers, &mut trailers);
                            }
                            this.pending_trailers = Some(trailers);
                            this.finished = true;
                            match this.flush() {
                                Ok(tail) if !tail.is_empty() => return this.data_frame(tail),
                                Ok(_) => continue,
                                Err(e) => return this.fail(e),
                            }
                        }
                    }
                },
                Some(Err(e)) => {
                    this.audit
                        .finish(Some(format!("upstream response body: {e}")));
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => {
                    this.finished = true;
                    match this.flush() {
                        Ok(tail) if !tail.is_empty() => return this.data_frame(tail),
                        Ok(_) => continue,
                        Err(e) => return this.fail(e),
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.decoder.is_none() && self.scrubber.is_none() {
            self.inner.size_hint()
        } else {
            SizeHint::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::proxy::SecretScope;
    use std::convert::Infallible;
    use std::sync::Mutex;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use futures::stream;
    use http_body_util::StreamBody;

    use super::*;
    use crate::audit::{AuditEvent, AuditSink, Outcome, Target};
    use crate::new_placeholder;
    use crate::scan::base64_cores;
    use crate::{Decision, Scheme};

    const SECRET: &str = "sk-live-REAL/secret\"value+42";

    #[derive(Default)]
    struct Events(Mutex<Vec<AuditEvent>>);
    impl AuditSink for Events {
        fn record(&self, event: AuditEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    type Chunks = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

    fn chunked(data: &[u8], size: usize, trailers: Option<HeaderMap>) -> Chunks {
        let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = data
            .chunks(size)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        frames.extend(trailers.map(|t| Ok(Frame::trailers(t))));
        StreamBody::new(stream::iter(frames))
    }

    fn sent<B>(status: u16, headers: &[(&str, &str)], body: B) -> Sent<B> {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        Sent {
            parts,
            body,
            exchange: Exchange {
                credentials: vec!["KEY".into()],
                request_bytes: 7,
                upstream: Some("127.0.0.1:443".parse().unwrap()),
            },
        }
    }

    fn set(ph: &str) -> Arc<ScrubSet> {
        Arc::new(ScrubSet::new(&[(SECRET, ph, Some("api"))]))
    }

    fn target(method: &str) -> Target {
        Target {
            scheme: Scheme::Https,
            method: method.into(),
            host: "api.example.test".into(),
            port: 443,
            path: "/".into(),
        }
    }

    /// Delivers `scrubbed` and reads it to the end: the body, its trailers and the records.
    async fn deliver<B>(
        scrubbed: Scrubbed<B>,
    ) -> (
        http::response::Parts,
        Vec<u8>,
        Option<HeaderMap>,
        Vec<AuditEvent>,
    )
    where
        B: HttpBody<Data = Bytes> + Unpin + Send + Sync + 'static,
        B::Error: Into<BoxError> + std::fmt::Display,
    {
        let events = Arc::new(Events::default());
        let status = scrubbed.parts.status.as_u16();
        let event = AuditEvent::new(
            "srv",
            SecretScope::Server,
            None,
            &target("GET"),
            Outcome::allowed(status, scrubbed.exchange.clone()),
        );
        let resp = scrubbed.deliver(AuditGuard::new(events.clone(), event));
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        let body = collected.to_bytes().to_vec();
        let events = events.0.lock().unwrap().clone();
        (parts, body, trailers, events)
    }

    #[test]
    fn scrubbing_replaces_every_form_even_split_byte_by_byte() {
        let ph = new_placeholder();
        let set = set(&ph);
        let basic = STANDARD.encode(format!("api:{SECRET}"));
        let pct = percent_encoding::utf8_percent_encode(SECRET, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
        let json = serde_json::to_string(SECRET).unwrap();
        let b64 = STANDARD.encode(format!("zz{SECRET}"));
        let body = format!("raw={SECRET} basic=Basic {basic} pct={pct} json={json} b64={b64} end");
        for chunk_size in [1, 3, 7, 1000] {
            let mut s = StreamScrubber::new(set.clone());
            let mut out = Vec::new();
            for chunk in body.as_bytes().chunks(chunk_size) {
                out.extend(s.push(chunk));
            }
            out.extend(s.finish());
            let out = String::from_utf8_lossy(&out);
            assert!(
                !out.contains(SECRET),
                "raw secret survived (chunks of {chunk_size}): {out}"
            );
            assert!(!out.contains(&basic), "basic value survived");
            assert!(!out.contains(&pct), "percent form survived");
            assert!(!out.contains("REAL\\/secret"), "json form survived: {out}");
            assert!(
                !out.contains(&json[1..json.len() - 1]),
                "serde json form survived: {out}"
            );
            let ph_basic = STANDARD.encode(format!("api:{ph}"));
            assert!(
                out.contains(&ph_basic),
                "basic not mapped to the placeholder: {out}"
            );
            assert!(out.starts_with(&format!("raw={ph} ")));
            assert!(out.ends_with(" end"));
            for core in base64_cores(SECRET.as_bytes()) {
                assert!(
                    !out.as_bytes()
                        .windows(core.len())
                        .any(|w| w == core.as_slice())
                );
            }
        }
    }

    #[tokio::test]
    async fn a_key_split_across_chunks_is_removed_from_body_headers_and_trailers() {
        let ph = new_placeholder();
        let body = format!("{{\"echo\":\"{SECRET}\",\"again\":\"{SECRET}\"}}");
        let mut trailers = HeaderMap::new();
        trailers.insert("x-trailer", HeaderValue::from_str(SECRET).unwrap());
        for size in [1, 2, 5, 11] {
            let up = sent(
                200,
                &[("x-echo", SECRET), ("content-length", "999")],
                chunked(body.as_bytes(), size, Some(trailers.clone())),
            );
            let scrubbed = response(up, &set(&ph), "GET").unwrap();
            assert_eq!(scrubbed.parts.headers["x-echo"], ph.as_str());
            assert!(!scrubbed.parts.headers.contains_key(header::CONTENT_LENGTH));
            let (_, out, trailers, events) = deliver(scrubbed).await;
            let out = String::from_utf8(out).unwrap();
            assert_eq!(out, body.replace(SECRET, &ph), "chunks of {size}");
            assert_eq!(trailers.unwrap()["x-trailer"], ph.as_str());
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].response_bytes, out.len() as u64);
            assert_eq!(events[0].decision, Decision::Allowed);
        }
    }

    #[tokio::test]
    async fn a_gzip_answer_is_decoded_then_scrubbed() {
        let ph = new_placeholder();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(format!("key={SECRET}").as_bytes()).unwrap();
        let packed = e.finish().unwrap();
        let up = sent(
            200,
            &[("content-encoding", "gzip")],
            chunked(&packed, 3, None),
        );
        let scrubbed = response(up, &set(&ph), "GET").unwrap();
        assert!(
            !scrubbed
                .parts
                .headers
                .contains_key(header::CONTENT_ENCODING)
        );
        let (_, out, _, _) = deliver(scrubbed).await;
        assert_eq!(out, format!("key={ph}").into_bytes());
    }

    #[tokio::test]
    async fn nothing_injected_passes_the_answer_through_untouched() {
        let empty = Arc::new(ScrubSet::new(&[]));
        let up = sent(
            200,
            &[("content-encoding", "br"), ("content-length", "5")],
            chunked(b"brotl", 2, None),
        );
        let scrubbed = response(up, &empty, "GET").unwrap();
        assert_eq!(scrubbed.parts.headers[header::CONTENT_ENCODING], "br");
        assert_eq!(scrubbed.parts.headers[header::CONTENT_LENGTH], "5");
        let (_, out, _, events) = deliver(scrubbed).await;
        assert_eq!(out, b"brotl");
        assert_eq!(events[0].response_bytes, 5);
    }

    #[test]
    fn an_encoding_that_cannot_be_scrubbed_is_refused() {
        let ph = new_placeholder();
        let up = sent(200, &[("content-encoding", "br")], chunked(b"x", 1, None));
        let r = response(up, &set(&ph), "GET").unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert_eq!(
            r.reason,
            "the response is encoded with \"br\", which cannot be scrubbed"
        );
        assert_eq!(r.exchange.credentials, ["KEY"]);
        assert_eq!(r.exchange.upstream, Some("127.0.0.1:443".parse().unwrap()));
        assert_eq!(r.exchange.request_bytes, 0, "as before the phase split");
    }

    #[tokio::test]
    async fn answers_without_a_body_are_recorded_at_once() {
        let ph = new_placeholder();
        for (method, status) in [("HEAD", 200), ("GET", 204), ("GET", 304)] {
            let up = sent(status, &[("x-echo", SECRET)], chunked(b"ignored", 3, None));
            let scrubbed = response(up, &set(&ph), method).unwrap();
            assert_eq!(scrubbed.parts.headers["x-echo"], ph.as_str());
            let (parts, out, _, events) = deliver(scrubbed).await;
            assert_eq!(parts.status.as_u16(), status);
            assert!(out.is_empty());
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].status, status);
            assert_eq!(events[0].response_bytes, 0);
        }
    }
}

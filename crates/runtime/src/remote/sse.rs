//! The legacy HTTP+SSE transport (MCP 2024-11-05) as a byte channel: a GET opens an event
//! stream whose first `endpoint` event names where to POST; every `message` event is one
//! JSON-RPC message from the server. A bridge turns that into the JSON-lines channel the
//! supervisor already bounds and supervises.
//!
//! Hostile-server bounds: the endpoint must be on the stream's own origin (a server cannot
//! point the gateway's POSTs, and their headers, anywhere else); an event larger than the
//! message limit ends the connection (a flooding stream is cut off, not buffered); the endpoint
//! must arrive within 10 s.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use gig_gateway::launcher::{Channel, Connection, LaunchError};
use gig_outbound::error_chain;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes buffered between the bridge and the supervisor in each direction.
const PIPE_BYTES: usize = 256 * 1024;

fn fail(why: impl Into<String>) -> LaunchError {
    LaunchError::Other(why.into())
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq, Eq)]
struct Event {
    name: String,
    data: String,
}

/// An SSE parser that refuses any event over `max` bytes (field lines included). Linear in what
/// it is fed: each byte is looked at once, and consumed lines leave the buffer once per feed.
#[derive(Debug)]
struct Parser {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already searched for a newline (the incomplete tail).
    scanned: usize,
    event: Event,
    event_bytes: usize,
    max: usize,
}

impl Parser {
    fn new(max: usize) -> Self {
        Parser {
            buffer: Vec::new(),
            scanned: 0,
            event: Event::default(),
            event_bytes: 0,
            max,
        }
    }

    /// Feeds bytes; returns the events they complete.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, String> {
        let too_big = || format!("an event is over {} bytes", self.max);
        // The unconsumed tail is one incomplete line of the current event: bounded before it
        // grows, not after.
        if self.event_bytes + self.buffer.len() + bytes.len() > self.max && !bytes.contains(&b'\n')
        {
            return Err(too_big());
        }
        self.buffer.extend_from_slice(bytes);
        let mut done = Vec::new();
        let mut start = 0;
        while let Some(offset) = self.buffer[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + offset;
            self.scanned = end + 1;
            let line = std::str::from_utf8(&self.buffer[start..end])
                .map_err(|_| "an event is not UTF-8".to_owned())?
                .trim_end_matches('\r');
            start = end + 1;
            self.event_bytes += line.len() + 1;
            if self.event_bytes > self.max {
                return Err(too_big());
            }
            if line.is_empty() {
                self.event_bytes = 0;
                let event = std::mem::take(&mut self.event);
                if !event.data.is_empty() || !event.name.is_empty() {
                    done.push(event);
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event.name = value.to_owned(),
                "data" => {
                    if !self.event.data.is_empty() {
                        self.event.data.push('\n');
                    }
                    self.event.data.push_str(value);
                }
                _ => {} // id, retry and comments: nothing to do for a bridge
            }
        }
        self.buffer.drain(..start);
        self.scanned -= start;
        if self.event_bytes + self.buffer.len() > self.max {
            return Err(too_big());
        }
        Ok(done)
    }
}

/// Opens the event stream, waits for the endpoint, and starts the bridge.
pub(super) async fn connect(
    client: reqwest::Client,
    url: url::Url,
    headers: HashMap<http::HeaderName, http::HeaderValue>,
    max_message_bytes: usize,
    post_timeout: Duration,
) -> Result<Connection, LaunchError> {
    let mut request = client
        .get(url.clone())
        .header(http::header::ACCEPT, "text/event-stream");
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let shown = shown_url(&url);
    let response = tokio::time::timeout(ENDPOINT_TIMEOUT, request.send())
        .await
        .map_err(|_| fail(format!("GET {shown}: no answer within 10 s")))?
        .map_err(|e| fail(format!("GET {shown}: {}", error_chain(&e))))?;
    if !response.status().is_success() {
        return Err(fail(format!("GET {shown}: HTTP {}", response.status())));
    }
    let mut stream = response.bytes_stream();
    let mut parser = Parser::new(max_message_bytes);
    // The endpoint comes first (2024-11-05 transport); what arrives before it is kept only up to
    // one message's worth, so a server cannot fill memory while the bridge waits.
    let mut early = Vec::new();
    let mut early_bytes = 0;
    let endpoint = tokio::time::timeout(ENDPOINT_TIMEOUT, async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| fail(format!("event stream: {}", error_chain(&e))))?;
            for event in parser.feed(&chunk).map_err(fail)? {
                if event.name == "endpoint" {
                    return Ok(event.data);
                }
                early_bytes += event.data.len() + event.name.len();
                if early_bytes > max_message_bytes {
                    return Err(fail("events before the endpoint exceed one message"));
                }
                early.push(event);
            }
        }
        Err(fail("the event stream ended before naming its endpoint"))
    })
    .await
    .map_err(|_| fail("no endpoint event within 10 s"))??;
    let endpoint = url
        .join(endpoint.trim())
        .map_err(|e| fail(format!("endpoint {endpoint:?}: {e}")))?;
    if endpoint.origin() != url.origin() {
        return Err(fail(format!(
            "the server named an endpoint on another origin ({}); refused",
            endpoint.origin().ascii_serialization()
        )));
    }

    let (gateway_side, bridge_side) = tokio::io::duplex(PIPE_BYTES);
    let (bridge_read, mut bridge_write) = tokio::io::split(bridge_side);
    let (gateway_read, gateway_write) = tokio::io::split(gateway_side);
    let events = tokio::spawn(async move {
        let mut deliver = early;
        loop {
            for event in deliver.drain(..) {
                if event.name.is_empty() || event.name == "message" {
                    let line = format!("{}\n", event.data.replace('\n', ""));
                    if bridge_write.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
            match stream.next().await {
                Some(Ok(chunk)) => match parser.feed(&chunk) {
                    Ok(events) => deliver = events,
                    Err(why) => {
                        tracing::warn!(%why, "legacy SSE server cut off");
                        return;
                    }
                },
                Some(Err(e)) => {
                    tracing::info!(error = %error_chain(&e), "legacy SSE stream ended");
                    return;
                }
                None => return,
            }
        }
    });
    let posts = tokio::spawn(async move {
        let mut lines = BufReader::new(bridge_read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut request = client
                .post(endpoint.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                // A server that takes a message and never answers the POST stalls the bridge:
                // bounded like the calls it carries.
                .timeout(post_timeout)
                .body(line);
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::info!(status = %r.status(), "legacy SSE server refused a message");
                    return;
                }
                Err(e) => {
                    tracing::info!(error = %error_chain(&e), "legacy SSE server unreachable");
                    return;
                }
            }
        }
    });
    Ok(Connection {
        channel: Channel::Lines {
            reader: Box::pin(gateway_read),
            writer: Box::pin(gateway_write),
        },
        guard: Box::new(Bridge([events, posts])),
        on_tool_call: None,
        stderr: None,
    })
}

/// A URL as logs and errors show it: scheme, host and port only (hosted servers put tokens in
/// paths and queries).
pub(super) fn shown_url(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

/// Ends both halves of the bridge when the connection is dropped.
struct Bridge([tokio::task::JoinHandle<()>; 2]);

impl Drop for Bridge {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_chunks_and_bounded() {
        let mut p = Parser::new(64);
        assert!(
            p.feed(b"event: endpoint\ndata: /messages?s")
                .unwrap()
                .is_empty()
        );
        let events = p.feed(b"=1\n\ndata: {\"a\":1}\r\n\n: comment\n\n").unwrap();
        assert_eq!(
            events,
            [
                Event {
                    name: "endpoint".into(),
                    data: "/messages?s=1".into()
                },
                Event {
                    name: String::new(),
                    data: "{\"a\":1}".into()
                }
            ]
        );
        let mut flood = Parser::new(64);
        assert!(
            flood.feed(&[b'x'; 100]).is_err(),
            "no newline, still bounded"
        );
        let mut long = Parser::new(64);
        let many: Vec<u8> = b"data: xxxxxxxxxx\n".repeat(10);
        assert!(
            long.feed(&many).is_err(),
            "many lines of one event are one event"
        );
    }
}

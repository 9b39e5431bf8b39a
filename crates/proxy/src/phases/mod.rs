//! The checks and changes a request goes through, one module per phase, in the order that is the
//! proxy's guarantee (the order itself is written out once, in `crate::proxy`):
//!
//! 1. [`agree`]: SNI, `CONNECT` host, `Host` and `:authority` name one destination.
//! 2. [`policy`]: an allow rule for it, then every resolved address checked; only those are used.
//! 3. [`body`]: a sane head, and the whole body read (and decoded) so nothing is sent unscanned.
//! 4. [`placeholders`]: a placeholder anywhere but its credential's declared position on its own
//!    host is refused as exfiltration; what is left says which credentials go in.
//! 5. [`inject`]: the real secrets written at their declared positions, nowhere else.
//! 6. [`send`]: hop-by-hop headers dropped, sent to exactly the checked addresses.
//! 7. [`scrub`]: the real secrets scrubbed from the response (headers, body, trailers).
//! 8. audit: one record per request, built by `crate::audit::AuditEvent::new`.
//!
//! Each phase refuses with a [`Refusal`]; the caller turns it into the answer and the record.

pub(crate) mod agree;
pub(crate) mod body;
pub(crate) mod inject;
pub(crate) mod placeholders;
pub(crate) mod policy;
pub(crate) mod scrub;
pub(crate) mod send;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

use crate::audit::Exchange;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// Why a phase stopped a request: the status the server sees, the reason in the answer and the
/// audit record, and what was already exchanged with the upstream.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
    /// A placeholder was sent where its credential may not go.
    pub(crate) exfiltration: bool,
    pub(crate) answer: Answer,
    /// Set by the phases after injection (credentials, bytes sent, upstream address).
    pub(crate) exchange: Exchange,
}

/// How a refusal is worded to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `gig-proxy refused this request: <reason>` (and an "egress refused" log line).
    Request,
    /// `gig-proxy could not complete this request: <reason>` (the upstream exchange failed).
    Upstream,
    /// `gig-proxy refused the response: <text>` (the upstream's answer cannot be scrubbed).
    Response(String),
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
            exfiltration: false,
            answer: Answer::Request,
            exchange: Exchange::default(),
        }
    }

    pub(crate) fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, reason)
    }

    pub(crate) fn exfiltration(reason: impl Into<String>) -> Self {
        Refusal {
            exfiltration: true,
            ..Self::forbidden(reason)
        }
    }

    /// The upstream exchange failed (502).
    pub(crate) fn upstream(reason: impl Into<String>) -> Self {
        Refusal {
            answer: Answer::Upstream,
            ..Self::new(StatusCode::BAD_GATEWAY, reason)
        }
    }

    /// The upstream's response cannot be passed on (502): `reason` for the record, `text` for
    /// the server.
    pub(crate) fn response(reason: impl Into<String>, text: impl Into<String>) -> Self {
        Refusal {
            answer: Answer::Response(text.into()),
            ..Self::new(StatusCode::BAD_GATEWAY, reason)
        }
    }

    pub(crate) fn with(self, exchange: Exchange) -> Self {
        Refusal { exchange, ..self }
    }

    /// The answer the server gets.
    pub(crate) fn to_response(&self) -> Response<Body> {
        let text = match &self.answer {
            Answer::Request => format!("gig-proxy refused this request: {}\n", self.reason),
            Answer::Upstream => format!(
                "gig-proxy could not complete this request: {}\n",
                self.reason
            ),
            Answer::Response(text) => format!("gig-proxy refused the response: {text}\n"),
        };
        text_response(self.status, text)
    }
}

pub(crate) fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn text_response(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn text(resp: Response<Body>) -> String {
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn each_kind_of_refusal_is_worded_as_before() {
        let r = Refusal::forbidden("not allowed").to_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            text(r).await,
            "gig-proxy refused this request: not allowed\n"
        );
        let r = Refusal::upstream("connecting failed").to_response();
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            text(r).await,
            "gig-proxy could not complete this request: connecting failed\n"
        );
        let r = Refusal::response("record reason", "encoded with \"br\"").to_response();
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            text(r).await,
            "gig-proxy refused the response: encoded with \"br\"\n"
        );
        let r = Refusal::exfiltration("ph");
        assert!(r.exfiltration);
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
}

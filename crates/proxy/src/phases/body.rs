//! Phase 3, the request itself: a head of sane size and framing, and the whole body read (and,
//! when compressed, decoded) before anything is sent, so the placeholder scan sees every byte.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::{BoxError, Refusal};
use crate::proxy::ProxyLimits;

/// Refuses oversized heads, and every request once the connection has shown conflicting
/// framing headers (`conflict`, raised by [`crate::framing::FramingWatch`]).
pub(crate) fn check_head(
    headers: &HeaderMap,
    max_header_bytes: usize,
    conflict: &AtomicBool,
) -> Result<(), Refusal> {
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > max_header_bytes {
        return Err(Refusal::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers over {max_header_bytes} bytes"),
        ));
    }
    if conflict.load(Ordering::Acquire) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "both Content-Length and Transfer-Encoding (request smuggling)",
        ));
    }
    Ok(())
}

/// A request body read whole: the bytes to send, and their decoded form when the request was
/// compressed (what the placeholder scan reads).
#[derive(Debug)]
pub(crate) struct WholeBody {
    bytes: Bytes,
    decoded: Option<Vec<u8>>,
}

impl WholeBody {
    /// What the placeholder scan must read: the bytes as they will be sent and, for a
    /// compressed body, their decoded form too. A gzip header's name, comment and extra fields
    /// are sent but never decoded, so scanning the decoded form alone would let a placeholder
    /// through in them.
    pub(crate) fn scanned(&self) -> Vec<&[u8]> {
        let mut parts = vec![&self.bytes[..]];
        parts.extend(self.decoded.as_deref());
        parts
    }

    /// The bytes to send; the decoded copy is dropped.
    pub(crate) fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

/// Reads the whole body within [`ProxyLimits::max_request_body`] after refusing ambiguous framing,
/// and decodes gzip/deflate within [`ProxyLimits::max_decoded_request_body`]; other encodings cannot
/// be scanned and are refused.
pub(crate) async fn read_whole<B>(
    headers: &HeaderMap,
    body: B,
    limits: &ProxyLimits,
) -> Result<WholeBody, Refusal>
where
    B: HttpBody,
    B::Error: Into<BoxError>,
{
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH)
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "both Content-Length and Transfer-Encoding (request smuggling)",
        ));
    }
    if headers.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "more than one Content-Length",
        ));
    }
    let bytes = match Limited::new(body, limits.max_request_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {} bytes", limits.max_request_body),
            ));
        }
        Err(e) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("reading the request body failed: {e}"),
            ));
        }
    };
    let decoded = match content_encoding(headers).as_deref() {
        None | Some("identity") => None,
        Some(enc @ ("gzip" | "x-gzip" | "deflate")) => {
            match inflate(enc, &bytes, limits.max_decoded_request_body) {
                Ok(d) => Some(d),
                Err(e) => {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        format!("request body: {e}"),
                    ));
                }
            }
        }
        Some(other) => {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("request bodies encoded with {other:?} cannot be checked"),
            ));
        }
    };
    Ok(WholeBody { bytes, decoded })
}

/// The `Content-Encoding`, lowercased; stacked encodings come back joined (and are unsupported).
pub(crate) fn content_encoding(headers: &HeaderMap) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{0}invalid").split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    match values.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        // Stacked encodings are not unwrapped: treat as unsupported.
        many => Some(many.join(",")),
    }
}

fn inflate(encoding: &str, data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let read = if encoding == "deflate" {
        flate2::read::ZlibDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out)
    } else {
        flate2::read::MultiGzDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out)
    };
    read.map_err(|e| format!("cannot decompress ({encoding}): {e}"))?;
    if out.len() > max {
        return Err(format!("decompresses to more than {max} bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use http::HeaderValue;
    use http_body_util::Full;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    async fn read(pairs: &[(&str, &str)], body: Vec<u8>) -> Result<WholeBody, Refusal> {
        let limits = ProxyLimits {
            max_request_body: 1024,
            max_decoded_request_body: 4096,
            ..ProxyLimits::default()
        };
        read_whole(&headers(pairs), Full::new(Bytes::from(body)), &limits).await
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn heads_over_the_limit_or_after_conflicting_framing_are_refused() {
        let conflict = AtomicBool::new(false);
        let h = headers(&[("x-a", "0123456789")]);
        assert!(check_head(&h, 64, &conflict).is_ok());
        let r = check_head(&h, 10, &conflict).unwrap_err();
        assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        conflict.store(true, Ordering::Release);
        let r = check_head(&h, 64, &conflict).unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.reason.contains("request smuggling"));
    }

    #[tokio::test]
    async fn ambiguous_framing_is_refused_before_reading() {
        let r = read(
            &[("transfer-encoding", "chunked"), ("content-length", "3")],
            b"abc".to_vec(),
        )
        .await
        .unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = read(
            &[("content-length", "3"), ("content-length", "3")],
            b"abc".to_vec(),
        )
        .await
        .unwrap_err();
        assert_eq!(r.reason, "more than one Content-Length");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let r = read(&[], vec![b'a'; 1025]).await.unwrap_err();
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        let ok = read(&[], vec![b'a'; 1024]).await.unwrap();
        assert_eq!(ok.scanned(), [&[b'a'; 1024][..]]);
    }

    #[tokio::test]
    async fn compressed_bodies_are_scanned_as_sent_and_decoded_and_sent_as_they_came() {
        let plain = b"{\"key\":\"value\"}".to_vec();
        let packed = gzip(&plain);
        let body = read(&[("content-encoding", "GZIP")], packed.clone())
            .await
            .unwrap();
        assert_eq!(body.scanned(), [packed.as_slice(), plain.as_slice()]);
        assert_eq!(body.into_bytes(), Bytes::from(packed));
        let body = read(&[("content-encoding", "identity")], plain.clone())
            .await
            .unwrap();
        assert_eq!(body.scanned(), [plain.as_slice()]);
    }

    #[tokio::test]
    async fn undecodable_or_unknown_encodings_are_refused() {
        let bomb = gzip(&vec![0u8; 5000]);
        let r = read(&[("content-encoding", "gzip")], bomb)
            .await
            .unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.reason.contains("decompresses to more than 4096 bytes"));
        let r = read(&[("content-encoding", "gzip")], b"not gzip".to_vec())
            .await
            .unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        for enc in ["br", "gzip, gzip"] {
            let r = read(&[("content-encoding", enc)], b"x".to_vec())
                .await
                .unwrap_err();
            assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{enc}");
        }
    }
}

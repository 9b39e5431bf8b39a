//! Plain, line-by-line statements of the framing rules that fuzz targets hold the real,
//! incremental code to: one copy, shared by the property-based targets and the coverage-guided
//! harness in `fuzz/`.

/// Why the backend stdout rule stops a stream (the gateway's `ProtocolViolation`, without a
/// dependency on the gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdoutStop {
    /// A line longer than the limit.
    Oversized,
    /// A line whose first non-whitespace byte is not `{` or `[`.
    NotJson { first_byte: u8 },
}

/// The backend stdout rule, written plainly: the first byte that makes a line longer than `max`,
/// or that starts a line with anything but `{` or `[` (after whitespace). Returns its offset and
/// why it stops the stream.
pub fn stdout_stop(input: &[u8], max: usize) -> Option<(usize, StdoutStop)> {
    let mut len = 0;
    let mut started = false;
    for (at, &byte) in input.iter().enumerate() {
        if byte == b'\n' {
            len = 0;
            started = false;
            continue;
        }
        len += 1;
        if len > max {
            return Some((at, StdoutStop::Oversized));
        }
        if !started && !byte.is_ascii_whitespace() {
            started = true;
            if byte != b'{' && byte != b'[' {
                return Some((at, StdoutStop::NotJson { first_byte: byte }));
            }
        }
    }
    None
}

/// The proxy's request-smuggling rule, line by line over the whole input: a blank line ends a
/// block, and a block that had both a `Content-Length` and a `Transfer-Encoding` line is a
/// conflict.
pub fn framing_conflict(data: &[u8]) -> bool {
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let (mut length, mut encoding) = (false, false);
    // The last piece has no newline yet: it has not ended.
    for line in &lines[..lines.len() - 1] {
        let lower = line.to_ascii_lowercase();
        if line.is_empty() || *line == b"\r" {
            if length && encoding {
                return true;
            }
            (length, encoding) = (false, false);
        } else if lower.starts_with(b"content-length:") {
            length = true;
        } else if lower.starts_with(b"transfer-encoding:") {
            encoding = true;
        }
    }
    false
}

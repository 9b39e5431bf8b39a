//! The one length-prefix encoding shared by the AAD and the sealed blob.

/// Appends `u32be(len) || bytes`.
///
/// # Panics
/// If `bytes` is 4 GiB or longer. Fields are row keys and secret records, which a gateway's
/// store bounds far below that; a fixed u32 keeps the format identical on every platform.
pub(crate) fn put_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("vault field is 4 GiB or longer");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Splits `u32be(len) || bytes || rest` into `(bytes, rest)`; `None` if `input` is too short.
pub(crate) fn take_len_prefixed(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = input.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    rest.split_at_checked(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_short_input() {
        let mut out = Vec::new();
        put_len_prefixed(&mut out, b"abc");
        out.push(9);
        assert_eq!(out, [0, 0, 0, 3, b'a', b'b', b'c', 9]);
        assert_eq!(take_len_prefixed(&out), Some((&b"abc"[..], &[9u8][..])));
        for cut in 0..out.len() - 1 {
            assert_eq!(take_len_prefixed(&out[..cut]), None, "cut at {cut}");
        }
    }
}

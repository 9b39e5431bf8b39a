//! Values the gateway hands to a browser and must get back unchanged (a pending sign-in in its
//! cookie, an authorization request in the consent form): sealed with XChaCha20-Poly1305 under
//! a key that exists only in this process's memory, so the browser can neither read nor forge
//! one, and a restart voids every one outstanding.

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) struct Sealer(XChaCha20Poly1305);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

impl Sealer {
    /// A fresh random key.
    pub(crate) fn new() -> Self {
        Sealer(XChaCha20Poly1305::new(&rand::random::<[u8; 32]>().into()))
    }

    /// Hex of a random nonce followed by the ciphertext of `value` as JSON.
    pub(crate) fn seal<T: Serialize>(&self, value: &T) -> String {
        let nonce: [u8; 24] = rand::random();
        let plain = serde_json::to_vec(value).unwrap_or_default();
        let sealed = self
            .0
            .encrypt(&nonce.into(), plain.as_slice())
            .unwrap_or_default();
        format!("{}{}", hex::encode(nonce), hex::encode(sealed))
    }

    /// The value sealed in `text`, if this process sealed it; `None` for anything else,
    /// including anything longer than `max_len` (checked before decoding: it is the browser's
    /// to send).
    pub(crate) fn open<T: DeserializeOwned>(&self, text: &str, max_len: usize) -> Option<T> {
        if text.len() > max_len {
            return None;
        }
        let bytes = hex::decode(text).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        let plain = self.0.decrypt(&nonce.into(), sealed).ok()?;
        serde_json::from_slice(&plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_this_key_sealed_opens() {
        let (a, b) = (Sealer::new(), Sealer::new());
        let sealed = a.seal(&("state", 7));
        assert_eq!(
            a.open::<(String, i32)>(&sealed, 4096),
            Some(("state".into(), 7))
        );
        assert_eq!(b.open::<(String, i32)>(&sealed, 4096), None);
        assert_eq!(a.open::<(String, i32)>(&sealed, 10), None);
        let mut flipped = sealed.into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(a.open::<(String, i32)>(&flipped, 4096), None);
        assert_eq!(a.open::<(String, i32)>("zz", 4096), None);
    }
}

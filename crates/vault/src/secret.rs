//! The opened plaintext.

use std::fmt;

use zeroize::Zeroizing;

use crate::VaultError;

/// An opened secret: zeroized on drop, `Debug` prints `SecretBytes([REDACTED])`.
///
/// Deliberately not `Clone`, `PartialEq` or `Display`: each would be a way to copy, time or
/// print the secret without going through [`SecretBytes::expose`].
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    // A Vec rather than a boxed slice: converting would reallocate whenever capacity exceeds
    // length (it does after the tag is cut off) and leave an unzeroized copy behind.
    pub(crate) fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// The plaintext. Keep the borrow short and never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The plaintext as UTF-8, for secrets that are strings (tokens, passwords).
    pub fn expose_str(&self) -> Result<&str, VaultError> {
        std::str::from_utf8(&self.0).map_err(|_| VaultError::NotUtf8)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes([REDACTED])")
    }
}

//! The row a secret belongs to, bound into both encryption layers.

use crate::wire::put_len_prefixed;

/// Bumped if the layout below ever changes, so old and new encodings can never collide.
const AAD_TAG: &[u8] = b"gigmcp/aad/v1";

/// Identifies the store row a secret lives in. Opening with any other row's `Aad` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aad<'a> {
    /// The secret's primary key.
    pub secret_id: &'a str,
    /// Who the secret belongs to (user, team or server).
    pub owner: &'a str,
    /// The secret's name, e.g. an environment variable.
    pub name: &'a str,
}

impl Aad<'_> {
    /// `"gigmcp/aad/v1" || u32be len || secret_id || u32be len || owner || u32be len || name`.
    ///
    /// Length prefixes make the encoding injective: `("ab", "c")` and `("a", "bc")` differ.
    ///
    /// # Panics
    /// If a field is 4 GiB or longer.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let fields = [self.secret_id, self.owner, self.name];
        let body: usize = fields.iter().map(|f| 4 + f.len()).sum();
        let mut out = Vec::with_capacity(AAD_TAG.len() + body);
        out.extend_from_slice(AAD_TAG);
        for field in fields {
            put_len_prefixed(&mut out, field.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_tag_then_length_prefixed_fields() {
        let aad = Aad {
            secret_id: "s1",
            owner: "",
            name: "TOKEN",
        };
        let mut expected = b"gigmcp/aad/v1".to_vec();
        expected.extend_from_slice(b"\0\0\0\x02s1\0\0\0\0\0\0\0\x05TOKEN");
        assert_eq!(aad.canonical_bytes(), expected);
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let a = Aad {
            secret_id: "ab",
            owner: "c",
            name: "",
        };
        let b = Aad {
            secret_id: "a",
            owner: "bc",
            name: "",
        };
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
    }
}

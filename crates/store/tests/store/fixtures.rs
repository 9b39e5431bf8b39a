//! Builders for the rows most cases need, with the fields they do not care about left empty.

use gig_store::{CredentialScope, NewProfileToken, NewUser, SealedCredential};
use time::OffsetDateTime;

pub fn user(subject: &str) -> NewUser<'_> {
    NewUser {
        subject,
        email: None,
        display_name: None,
    }
}

/// An unnamed profile token that never expires (what tokens were before schema 3).
pub fn profile_token(token_hash: &str, profile_id: i64) -> NewProfileToken<'_> {
    NewProfileToken {
        token_hash,
        profile_id,
        name: "",
        expires_at: None,
    }
}

pub fn global<'a>(server: &'a str) -> CredentialScope<'a> {
    CredentialScope {
        server,
        user_id: None,
        profile_id: None,
    }
}

pub fn sealed<'a>(
    scope: CredentialScope<'a>,
    name: &'a str,
    key_id: &'a str,
    bytes: &'a [u8],
) -> SealedCredential<'a> {
    SealedCredential {
        scope,
        name,
        key_id,
        wrapped_dek: bytes,
        ciphertext: bytes,
    }
}

/// What the store does to an instant: UTC, whole microseconds.
pub fn gig_store_normalized(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap()
}

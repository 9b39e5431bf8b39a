//! Entry points for the coverage-guided fuzz harness (`fuzz/`, docs/reliability.md): the
//! `/api` body types and the checks handlers run on them are private, and the only public way
//! in is the whole router over a store. This module, built only with the `fuzzing` feature
//! that nothing but that harness turns on, hands them out; it adds no behaviour.
//!
//! This module must never be enabled in a build that serves traffic.

use serde::de::DeserializeOwned;

use crate::api_tokens::{NewToken, lifetime, valid_name};
use crate::approvals::Approval;
use crate::profiles::{ProfileBody, TokenBody};
use crate::routes::read_json;
use crate::servers::{CredentialValue, InstallRequest};
use crate::users::{ImpersonationStart, RoleChange, parse_role};

pub use crate::oauth::fuzzing as oauth;

/// How many `/api` JSON body types [`api_body`] chooses from.
pub const BODY_KINDS: u8 = 8;

fn read<T: DeserializeOwned>(bytes: &[u8]) -> Result<(), (u16, String)> {
    read_json::<T>(bytes)
        .map(drop)
        .map_err(|e| (e.status.as_u16(), e.message))
}

/// Reads `bytes` as `/api` body type `kind % BODY_KINDS` the way its handler does: `Ok`, or
/// the refusal's status and message.
pub fn api_body(kind: u8, bytes: &[u8]) -> Result<(), (u16, String)> {
    match kind % BODY_KINDS {
        0 => read::<NewToken>(bytes),
        1 => read::<Approval>(bytes),
        2 => read::<TokenBody>(bytes),
        3 => read::<InstallRequest>(bytes),
        4 => read::<CredentialValue>(bytes),
        5 => read::<RoleChange>(bytes),
        6 => read::<ImpersonationStart>(bytes),
        _ => read::<ProfileBody>(bytes),
    }
}

/// A profile body as its handler validates it: the name and the filter it stores, or `None`
/// when it is refused.
pub fn profile_body(bytes: &[u8]) -> Option<(String, serde_json::Value)> {
    read_json::<ProfileBody>(bytes).ok()?.validated().ok()
}

/// A token or profile name as accepted (trimmed), or the refusal's status.
pub fn name(text: &str) -> Result<String, u16> {
    valid_name(text, "token").map_err(|e| e.status.as_u16())
}

/// A role's name as parsed, or `None`.
pub fn role(text: &str) -> Option<String> {
    parse_role(text).ok().map(|r| r.as_str().to_owned())
}

/// A token lifetime in seconds (`expires_in`, default 30 days, at most a year), or the
/// refusal's status.
pub fn lifetime_secs(requested: Option<i64>) -> Result<i64, u16> {
    lifetime(requested, 30 * 24 * 3600, 365 * 24 * 3600)
        .map(|d| d.whole_seconds())
        .map_err(|e| e.status.as_u16())
}

//! The OAuth parameter checks, for the coverage-guided harness (`crate::fuzzing`, feature
//! `fuzzing` only): the same functions the endpoints call.

use super::authorize;
use super::clients;
use super::form::Params;

/// Every scope the server grants.
pub const SCOPES: [&str; 2] = super::SCOPES;

/// Reads a query string or form body as the endpoints do; on success, the non-empty value of
/// each of `names`.
pub fn params(raw: &[u8], names: &[&str]) -> Result<Vec<Option<String>>, String> {
    let params = Params::parse(raw)?;
    Ok(names
        .iter()
        .map(|n| params.get(n).map(str::to_owned))
        .collect())
}

/// Whether client registration accepts `uri` as a redirect URI.
pub fn valid_redirect_uri(uri: &str) -> bool {
    clients::valid_redirect_uri(uri).is_ok()
}

/// Where a code goes for a client that registered `registered` and asked for `requested`.
pub fn chosen_redirect_uri(registered: &[String], requested: Option<&str>) -> Option<String> {
    authorize::chosen_redirect_uri(registered, requested)
}

/// The scopes granted for a requested `scope` parameter, or `None` when it is refused.
pub fn parse_scope(raw: &str) -> Option<Vec<&'static str>> {
    super::parse_scope(raw)
}

/// Whether `value` has the shape of a PKCE verifier or challenge.
pub fn pkce_shaped(value: &str) -> bool {
    authorize::pkce_shaped(value)
}

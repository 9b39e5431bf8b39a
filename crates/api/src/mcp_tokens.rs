//! Bearer tokens on `/mcp` besides the static one: profile tokens (`gigp_`) and OAuth access
//! tokens (`gigo_`), each + 64 hex characters and stored only as their SHA-256. The check is on
//! every call's path, so a verified token is cached and re-read from the store in the
//! background every half second; an answer older than 1.5 s is never used without re-reading.
//! A revocation (or expiry, a change of the profile, the owner's demotion) is seen within 1.5 s
//! on this replica and on every other replica sharing the database. A store that cannot be read
//! fails closed (401), never open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use gig_gateway::http::{PrincipalResolver, TokenRefusal};
use gig_gateway::profile::{Principal, ProfileFilter, ProfileView};
use gig_store::Store;

use crate::lock;
use crate::session::token_hash;

/// What a profile token looks like; anything else is refused without a store lookup.
pub const PREFIX: &str = "gigp_";
/// How long a verified (or refused) token is trusted before the store is asked again (in the
/// background while the answer is at most `STALE` old, so the call does not wait).
const RECHECK: Duration = Duration::from_millis(500);
/// Beyond this the store is asked before answering: a revocation is seen within it.
const STALE: Duration = Duration::from_millis(1500);
/// Tokens remembered at once; beyond it the cache starts over (costing one lookup each).
const MAX_CACHED: usize = 10_000;

/// A fresh profile token (shown once, never stored).
pub fn new_token() -> String {
    format!("{PREFIX}{}", crate::session::random_token())
}

/// Whether `token` is `prefix` + 64 hex characters.
pub fn well_formed(token: &str, prefix: &str) -> bool {
    token
        .strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The answer for one token.
type Answer = Result<Principal, TokenRefusal>;

#[derive(Debug, Clone)]
struct Cached {
    principal: Answer,
    checked: Instant,
    /// A background re-read is under way (one per token at a time).
    refreshing: bool,
}

type Cache = Arc<Mutex<HashMap<String, Cached>>>;

/// Which kind of token a cache entry is, by its prefix.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Profile,
    OAuth,
}

#[derive(Debug)]
pub struct McpTokens {
    store: Store,
    cache: Cache,
    /// The audience OAuth access tokens must be for: this gateway's `/mcp` URL.
    resource: String,
}

impl McpTokens {
    pub fn new(store: Store, resource: String) -> Self {
        McpTokens {
            store,
            cache: Arc::default(),
            resource,
        }
    }
}

/// Reads the token, its profile and its owner from the store and remembers the answer.
async fn refresh(store: Store, cache: Cache, kind: Kind, resource: String, hash: String) -> Answer {
    let principal = match kind {
        Kind::Profile => load(&store, &hash).await.ok_or(TokenRefusal::Invalid),
        Kind::OAuth => crate::oauth::access::load(&store, &hash, &resource).await,
    };
    let mut cache = lock(&cache);
    if cache.len() >= MAX_CACHED {
        cache.retain(|_, c| c.checked.elapsed() < STALE);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
    }
    cache.insert(
        hash,
        Cached {
            principal: principal.clone(),
            checked: Instant::now(),
            refreshing: false,
        },
    );
    principal
}

async fn load(store: &Store, hash: &str) -> Option<Principal> {
    // Read first: a random well-formed token costs a read, never a write.
    let known = store.get_profile_token(hash).await.ok()??;
    if !known.is_active(time::OffsetDateTime::now_utc()) {
        return None;
    }
    let token = match store.touch_profile_token(hash).await {
        Ok(token) => token?,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check a profile token; refusing it");
            return None;
        }
    };
    let profile = store.get_profile(token.profile_id).await.ok()??;
    let view = profile_view(store, profile.id, profile.user_id).await?;
    Some(Principal::Profile(Arc::new(view)))
}

/// The profile `profile_id` as `/mcp` applies it for `user_id`, if the user may still use
/// profiles (their role now, not when a token was made: a demoted user loses their tokens
/// within a second).
pub(crate) async fn profile_view(
    store: &Store,
    profile_id: i64,
    user_id: i64,
) -> Option<ProfileView> {
    let profile = store.get_profile(profile_id).await.ok()??;
    if profile.user_id != user_id {
        return None;
    }
    let user = store.get_user(user_id).await.ok()??;
    let role = crate::session::role_of(store, user.id).await.ok()?;
    if !crate::rbac::allows(role, crate::rbac::Permission::UseProfiles) {
        return None;
    }
    let filter = match ProfileFilter::parse(&profile.tool_filter) {
        Ok(filter) => filter,
        Err(e) => {
            tracing::warn!(profile = profile.id, error = %e, "stored profile does not parse");
            return None;
        }
    };
    let label = crate::session::user_label(&user);
    Some(ProfileView::new(profile.id, user.id, label, filter))
}

impl PrincipalResolver for McpTokens {
    fn resolve<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let kind = if well_formed(token, PREFIX) {
                Kind::Profile
            } else if well_formed(token, crate::oauth::ACCESS_PREFIX) {
                Kind::OAuth
            } else {
                return Err(TokenRefusal::Invalid);
            };
            let hash = token_hash(token);
            // Fresh: answer from memory. Stale but recent: answer from memory and re-read in
            // the background, so no call waits on the store. Older: re-read before answering.
            let stale = {
                let mut cache = lock(&self.cache);
                match cache.get_mut(&hash) {
                    Some(c) if c.checked.elapsed() < RECHECK => return c.principal.clone(),
                    Some(c) if c.checked.elapsed() < STALE => {
                        let start = !c.refreshing;
                        c.refreshing = true;
                        Some((c.principal.clone(), start))
                    }
                    _ => None,
                }
            };
            match stale {
                Some((principal, start)) => {
                    if start {
                        let (store, cache) = (self.store.clone(), self.cache.clone());
                        let resource = self.resource.clone();
                        tokio::spawn(refresh(store, cache, kind, resource, hash));
                    }
                    principal
                }
                None => {
                    let (store, cache) = (self.store.clone(), self.cache.clone());
                    refresh(store, cache, kind, self.resource.clone(), hash).await
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_shape_is_a_profile_token() {
        assert!(well_formed(&new_token(), PREFIX));
        for bad in [
            "",
            "gigp_",
            "gigp_xyz",
            &format!("gigp_{}", "g".repeat(64)),
            &"a".repeat(69),
        ] {
            assert!(!well_formed(bad, PREFIX), "{bad}");
        }
    }
}

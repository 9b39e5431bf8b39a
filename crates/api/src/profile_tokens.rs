//! Profile tokens on `/mcp`: `gigp_` + 64 hex characters, stored only as their SHA-256. The
//! check is on every call's path, so a verified token is cached and re-read from the store in the
//! background every half second; an answer older than 1.5 s is never used without re-reading.
//! A revocation (or expiry, a change of the profile, the owner's demotion) is seen within 1.5 s
//! on this replica and on every other replica sharing the database. A store that cannot be read
//! fails closed (401), never open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use gig_gateway::http::PrincipalResolver;
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

/// Whether `token` has the shape of a profile token.
pub fn well_formed(token: &str) -> bool {
    token
        .strip_prefix(PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[derive(Debug, Clone)]
struct Cached {
    principal: Option<Principal>,
    checked: Instant,
    /// A background re-read is under way (one per token at a time).
    refreshing: bool,
}

type Cache = Arc<Mutex<HashMap<String, Cached>>>;

#[derive(Debug)]
pub struct ProfileTokens {
    store: Store,
    cache: Cache,
}

impl ProfileTokens {
    pub fn new(store: Store) -> Self {
        ProfileTokens {
            store,
            cache: Arc::default(),
        }
    }
}

/// Reads the token, its profile and its owner from the store and remembers the answer.
async fn refresh(store: Store, cache: Cache, hash: String) -> Option<Principal> {
    let principal = load(&store, &hash).await;
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
    let user = store.get_user(profile.user_id).await.ok()??;
    // The owner's role now, not when the token was made: a user demoted below the
    // permission (or deprovisioned to viewer) loses their tokens within a second.
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
    let view = ProfileView::new(profile.id, user.id, label, filter);
    Some(Principal::Profile(Arc::new(view)))
}

impl PrincipalResolver for ProfileTokens {
    fn resolve<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<Principal>> {
        Box::pin(async move {
            if !well_formed(token) {
                return None;
            }
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
                        tokio::spawn(refresh(store, cache, hash));
                    }
                    principal
                }
                None => refresh(self.store.clone(), self.cache.clone(), hash).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_shape_is_a_profile_token() {
        assert!(well_formed(&new_token()));
        for bad in [
            "",
            "gigp_",
            "gigp_xyz",
            &format!("gigp_{}", "g".repeat(64)),
            &"a".repeat(69),
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}

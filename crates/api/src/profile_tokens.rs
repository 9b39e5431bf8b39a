//! Profile tokens on `/mcp`: `gigp_` + 64 hex characters, stored only as their SHA-256. The
//! check is on every call's path, so a verified token is cached and re-read from the store at
//! most once a second: a revocation (or expiry, or a change of the profile) is seen within a
//! second on this replica and on every other replica sharing the database. A store that cannot
//! be read fails closed (401), never open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use gig_gateway::http::PrincipalResolver;
use gig_gateway::profile::{Principal, ProfileFilter, ProfileView};
use gig_store::Store;

use crate::session::token_hash;

/// What a profile token looks like; anything else is refused without a store lookup.
pub const PREFIX: &str = "gigp_";
/// How long a verified (or refused) token is trusted before the store is asked again.
const RECHECK: Duration = Duration::from_secs(1);
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
}

#[derive(Debug)]
pub struct ProfileTokens {
    store: Store,
    cache: Mutex<HashMap<String, Cached>>,
}

impl ProfileTokens {
    pub fn new(store: Store) -> Self {
        ProfileTokens {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn load(&self, hash: &str) -> Option<Principal> {
        // Read first: a random well-formed token costs a read, never a write.
        let known = self.store.get_profile_token(hash).await.ok()??;
        if !known.is_active(time::OffsetDateTime::now_utc()) {
            return None;
        }
        let token = match self.store.touch_profile_token(hash).await {
            Ok(token) => token?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a profile token; refusing it");
                return None;
            }
        };
        let profile = self.store.get_profile(token.profile_id).await.ok()??;
        let user = self.store.get_user(profile.user_id).await.ok()??;
        // The owner's role now, not when the token was made: a user demoted below the
        // permission (or deprovisioned to viewer) loses their tokens within a second.
        let roles = self.store.list_roles(user.id).await.ok()?;
        let role = roles
            .iter()
            .filter_map(|r| r.parse::<gig_config::Role>().ok())
            .max()
            .unwrap_or(gig_config::Role::Viewer);
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
}

impl PrincipalResolver for ProfileTokens {
    fn resolve<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<Principal>> {
        Box::pin(async move {
            if !well_formed(token) {
                return None;
            }
            let hash = token_hash(token);
            if let Some(cached) = lock(&self.cache).get(&hash)
                && cached.checked.elapsed() < RECHECK
            {
                return cached.principal.clone();
            }
            let principal = self.load(&hash).await;
            let mut cache = lock(&self.cache);
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, c| c.checked.elapsed() < RECHECK);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(
                hash,
                Cached {
                    principal: principal.clone(),
                    checked: Instant::now(),
                },
            );
            principal
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

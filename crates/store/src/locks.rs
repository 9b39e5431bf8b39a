//! A lock every gateway sharing the database sees: held while something must not run twice at
//! once anywhere, such as renewing a rotating refresh token (two replicas renewing one token
//! together: the authorization server honours the first and revokes the whole grant on the
//! second, or refuses it, and the user's connection breaks).

use crate::Store;
use crate::backend::Backend;
use crate::error::{Result, db_err};

/// Held until dropped.
///
/// On PostgreSQL it is a transaction-scoped advisory lock: dropping the guard rolls the
/// transaction back, which releases it, and so does the holder's connection ending with its
/// process. On SQLite it holds nothing: one SQLite database serves one gateway process
/// (replicas need PostgreSQL), and that process's own locks serialise it.
#[derive(Debug)]
pub struct StoreLock {
    _held: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
}

impl Store {
    /// Waits for, then holds, the database-wide lock named `key`.
    pub async fn lock_across_replicas(&self, key: &str) -> Result<StoreLock> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(StoreLock { _held: None });
        };
        let mut tx = pool.begin().await.map_err(db_err("lock"))?;
        // A holder that never lets go (a stuck replica) fails its waiters after a while
        // instead of holding their connections for ever.
        sqlx::query("SET LOCAL lock_timeout = '30s'")
            .execute(&mut *tx)
            .await
            .map_err(db_err("lock"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(advisory_key(key))
            .execute(&mut *tx)
            .await
            .map_err(db_err("lock"))?;
        Ok(StoreLock { _held: Some(tx) })
    }
}

/// PostgreSQL names advisory locks by a 64-bit number: FNV-1a of the key, with a prefix of
/// our own so no other user of the database's advisory locks (sqlx's migration lock) shares
/// one. A collision would only make two unrelated holders wait for each other.
fn advisory_key(key: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "gigmcp:".bytes().chain(key.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_stable_and_distinct() {
        let a = super::advisory_key("oauth-refresh:acct:1");
        assert_eq!(a, super::advisory_key("oauth-refresh:acct:1"));
        assert_ne!(a, super::advisory_key("oauth-refresh:acct:2"));
    }
}

//! One suite, both backends. Every case listed in `both_backends!` runs twice, as
//! `sqlite::CASE` (a file in a temporary directory, always) and `postgres::CASE` (a fresh schema
//! in the database named by `GIG_TEST_DATABASE_URL`; skipped when unset, but FAILING when
//! `GIG_REQUIRE_POSTGRES=1`). The cases live in one module per resource; `harness` opens the
//! stores. `sqlite_only` and `postgres_only` hold what only one backend has (file corruption,
//! connection retries).

// Tests read their own switches (CI, GIG_REQUIRE_SANDBOX) and hand the environment to children.
#![allow(clippy::disallowed_methods)]

mod fixtures;
mod harness;

mod audit;
mod concurrency;
mod credentials;
mod fingerprints;
mod oauth;
mod postgres_only;
mod profiles;
mod schema;
mod servers;
mod sqlite_only;
mod stored_enums;
mod users;
mod vault;

/// `mod $backend` with one test per case, each running `crate::$module::$case` on `$kind`.
macro_rules! backend_tests {
    ($backend:ident, $kind:ident, $($module:ident::{$($case:ident),+ $(,)?}),+ $(,)?) => {
        mod $backend {
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::harness::run(
                        gig_store::BackendKind::$kind,
                        stringify!($case),
                        crate::$module::$case,
                    )
                    .await;
                }
            )+)+
        }
    };
}

/// Generate `sqlite::CASE` and `postgres::CASE` for every case.
macro_rules! both_backends {
    ($($cases:tt)+) => {
        backend_tests!(sqlite, Sqlite, $($cases)+);
        backend_tests!(postgres, Postgres, $($cases)+);
    };
}

both_backends!(
    servers::{servers_round_trip, index_state_only_moves_forward},
    credentials::{credentials_round_trip, credential_scope_nulls_collide},
    vault::{vault_meta_rotation_lifecycle, rotate_is_all_or_nothing},
    users::{users_roles_sessions, api_tokens_lifecycle, session_impersonation},
    profiles::{
        profiles_and_tokens,
        profiles_rename_and_list_all,
        profile_tokens_have_names_and_expire,
    },
    fingerprints::{fingerprints_detect_changes, fingerprint_definitions_follow_approval},
    audit::{audit_is_append_only, audit_filters_and_paging},
    schema::{newer_schema_is_refused},
    concurrency::{concurrent_writers_lose_nothing},
    oauth::{oauth_grants_codes_and_tokens},
    stored_enums::{stored_enums_round_trip, stored_enums_refuse_unknown_text},
);

//! The sandbox both fuzz harnesses drive: the property-based targets (`src/fuzz.rs`, built
//! with `cargo test`) and the coverage-guided ones (`fuzz/`, with the `fuzzing` feature). One
//! fixture, so both check the proxy against the same credentials, hosts and placeholders.

use std::collections::HashMap;

use gig_policy::{CredentialSpec, EgressPolicy, Injection};

use crate::PLACEHOLDER_PREFIX;
use crate::proxy::{SandboxEgress, StaticSecrets};

/// The credentials' `env` names, in placeholder order.
pub const ENVS: [&str; 3] = ["HDR", "QRY", "BAS"];
/// Each credential's own host.
pub const OWN: [&str; 3] = ["api.example.test", "api.example.test", "other.example.test"];
/// The first three are allowed; the last two are not (one of them a look-alike).
pub const HOSTS: [&str; 5] = [
    "api.example.test",
    "other.example.test",
    "third.example.test",
    "api.example.test.evil.test",
    "evil.test",
];

/// Credential `i`'s placeholder.
pub fn placeholder(i: usize) -> String {
    format!("{PLACEHOLDER_PREFIX}{}", hex::encode([i as u8 + 1; 32]))
}

/// Credential `i`'s real value.
pub fn secret(i: usize) -> String {
    format!("real-secret-{i}-s3cr3t")
}

/// `HDR` (Bearer header) and `QRY` (query `key`) for `api.example.test`, `BAS` (Basic, user
/// `svc`) for `other.example.test`; `third.example.test` is allowed but has no credential.
pub fn sandbox() -> SandboxEgress {
    let injections = [
        Injection::Header {
            name: "Authorization".into(),
            template: "Bearer {}".into(),
        },
        Injection::Query {
            param: "key".into(),
        },
        Injection::Basic {
            username: "svc".into(),
        },
    ];
    let credentials = ENVS
        .iter()
        .zip(OWN)
        .zip(injections)
        .map(|((env, host), inject)| CredentialSpec {
            env: env.to_string(),
            secret: None,
            hosts: vec![host.parse().expect("a valid host pattern")],
            inject,
        })
        .collect();
    let policy = EgressPolicy {
        allow: HOSTS[..3]
            .iter()
            .map(|r| r.parse().expect("a valid egress rule"))
            .collect(),
        allow_addresses: Vec::new(),
        credentials,
    };
    let placeholders: HashMap<String, String> = ENVS
        .iter()
        .enumerate()
        .map(|(i, e)| (e.to_string(), placeholder(i)))
        .collect();
    SandboxEgress::new("srv", policy, placeholders).expect("the fixture policy is valid")
}

/// Every credential's real value, by `env`.
pub fn secrets() -> StaticSecrets {
    ENVS.iter()
        .enumerate()
        .fold(StaticSecrets::new(), |s, (i, e)| s.with(e, &secret(i)))
}

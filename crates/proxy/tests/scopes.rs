//! Whose secret a sandbox's request carries: a user's own instance gets that user's value and
//! no one else's; the listing instance of a per-user server gets none at all.

mod support;

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use gig_proxy::*;
use support::*;

/// A vault with one value of every secret per scope, recording every scope asked.
#[derive(Default)]
struct PerUser {
    asked: Mutex<Vec<SecretScope>>,
}

fn value_of(scope: SecretScope, name: &str) -> String {
    let owner: String = format!("{scope:?}")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("sk-{name}-of-{owner}")
}

impl SecretSource for PerUser {
    fn secret<'a>(
        &'a self,
        _server: &'a str,
        scope: SecretScope,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Zeroizing<String>, SecretError>> {
        self.asked.lock().unwrap().push(scope);
        let found = match scope {
            SecretScope::Nobody => Err(SecretError {
                name: name.into(),
                reason: "asked for nobody's secret".into(),
            }),
            _ => Ok(Zeroizing::new(value_of(scope, name))),
        };
        Box::pin(async move { found })
    }
}

struct World {
    up: Upstream,
    proxy: EgressProxy,
    audit: Arc<Audit>,
    vault: Arc<PerUser>,
}

async fn world() -> World {
    let ca = TestCa::new();
    let up = Upstream::https(&ca, &[b"http/1.1"]).await;
    let audit = Arc::new(Audit::default());
    let vault = Arc::new(PerUser::default());
    let proxy = EgressProxy::new(
        RuntimeCa::generate().unwrap(),
        ProxyConfig {
            extra_roots: vec![ca.der.clone()],
            public_roots: false,
            resolver: Arc::new(resolver()),
            limits: ProxyLimits::default(),
        },
        vault.clone(),
        audit.clone(),
    )
    .unwrap();
    World {
        up,
        proxy,
        audit,
        vault,
    }
}

/// A sandbox of `scope` sending its placeholder to the credential's host; the status it got.
async fn call_as(w: &World, scope: SecretScope) -> u16 {
    let egress = SandboxEgress::new("fetch", policy(w.up.addr.port(), &[]), placeholders())
        .unwrap()
        .for_scope(scope);
    let sb = Sandbox::serve(&w.proxy, Arc::new(egress), placeholders()).await;
    let url = format!("https://api.example.test:{}/echo", w.up.addr.port());
    let resp = sb
        .client(&w.proxy, true)
        .get(url)
        .header(
            "authorization",
            format!("Bearer {}", sb.ph("OPENAI_API_KEY")),
        )
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

/// The `n`th audit record (1-based): an allowed request's is written when its response body
/// has ended, which may be just after the client has read it.
async fn audited(w: &World, n: usize) -> AuditEvent {
    for _ in 0..500 {
        if let Some(event) = w.audit.events().get(n - 1) {
            return event.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no audit record {n}: {:?}", w.audit.events());
}

#[tokio::test]
async fn each_users_instance_carries_that_users_secret_only() {
    let w = world().await;
    for (n, user) in [1, 2, 1].into_iter().enumerate() {
        let status = call_as(&w, SecretScope::User(user)).await;
        let event = audited(&w, n + 1).await;
        assert_eq!(status, 200, "{:?}", event.reason);
        let seen = w.up.last().headers["authorization"].clone();
        assert_eq!(
            seen,
            format!(
                "Bearer {}",
                value_of(SecretScope::User(user), "OPENAI_API_KEY")
            )
        );
        assert_eq!(event.user, Some(user));
    }
    assert_eq!(call_as(&w, SecretScope::Server).await, 200);
    assert_eq!(audited(&w, 4).await.user, None);
    // Every secret injected for each request was asked of that request's scope only.
    let mut asked = w.vault.asked.lock().unwrap().clone();
    asked.dedup();
    assert_eq!(
        asked,
        [
            SecretScope::User(1),
            SecretScope::User(2),
            SecretScope::User(1),
            SecretScope::Server
        ]
    );
}

#[tokio::test]
async fn the_instance_of_nobody_is_refused_without_asking_the_vault() {
    let w = world().await;
    let before = w.up.count();
    assert_eq!(call_as(&w, SecretScope::Nobody).await, 502);
    assert_eq!(w.up.count(), before, "the request reached the upstream");
    assert!(w.vault.asked.lock().unwrap().is_empty());
    let event = w.audit.last();
    assert_eq!(event.decision, Decision::Refused);
    assert!(
        event
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("serves no user"),
        "{:?}",
        event.reason
    );
}

use crate::*;

#[test]
fn placeholders_are_prefixed_long_and_unique() {
    let a = new_placeholder();
    let b = new_placeholder();
    assert!(a.starts_with(PLACEHOLDER_PREFIX));
    assert_eq!(a.len(), PLACEHOLDER_PREFIX.len() + 64);
    assert_ne!(a, b);
    assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
}

#[test]
fn sandbox_env_points_everything_at_the_proxy_and_ca() {
    let env = sandbox_env("http://10.0.0.1:3128", "/etc/gig/ca.pem");
    for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        assert_eq!(env[k], "http://10.0.0.1:3128");
    }
    for k in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"] {
        assert_eq!(env[k], "/etc/gig/ca.pem");
    }
    assert_eq!(env["NO_PROXY"], "");
    assert_eq!(env["no_proxy"], "");
}

#[test]
fn leaf_cache_reuses_and_stays_bounded() {
    let ca = RuntimeCa::generate().unwrap();
    let cache = crate::ca::LeafCache::new(2);
    let a1 = cache.get(&ca, "a.example.test").unwrap();
    let a2 = cache.get(&ca, "a.example.test").unwrap();
    assert!(std::sync::Arc::ptr_eq(&a1, &a2));
    cache.get(&ca, "b.example.test").unwrap();
    // `a` was used more recently than... nothing: touch it so `b` is the LRU.
    cache.get(&ca, "a.example.test").unwrap();
    cache.get(&ca, "c.example.test").unwrap();
    assert_eq!(cache.len(), 2);
    let a3 = cache.get(&ca, "a.example.test").unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&a1, &a3),
        "the recently used entry was evicted"
    );
    assert!(
        cache.get(&ca, "192.0.2.1").is_ok(),
        "IP leaves are minted too"
    );
}

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use crate::scan::{Needles, ScrubSet, StreamScrubber, base64_cores};
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
fn needles_find_the_placeholder_in_every_covered_encoding() {
    let ph = new_placeholder();
    let n = Needles::new(&[&ph]);
    let pct: String = ph.bytes().map(|b| format!("%{b:02X}")).collect();
    let json: String = ph.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    let double_pct = pct.replace('%', "%25");
    let cases = [
        format!("x-key: {ph}"),
        format!("/v1?key={pct}"),
        format!("{{\"k\":\"{json}\"}}"),
        format!("Basic {}", STANDARD.encode(format!("user:{ph}"))),
        format!("blob={}", URL_SAFE.encode(format!("ab{ph}cd"))),
        format!("blob={}", STANDARD.encode(format!("a{ph}"))),
        format!("q={double_pct}"),
    ];
    for case in &cases {
        assert!(n.found_in(case.as_bytes()), "not found in {case:?}");
    }
    let other = new_placeholder();
    for clean in [
        other.clone(),
        STANDARD.encode(format!("user:{other}")),
        ph[..ph.len() - 1].to_string(),
    ] {
        assert!(!n.found_in(clean.as_bytes()), "false positive in {clean:?}");
    }
}

#[test]
fn base64_cores_match_every_alignment() {
    let data = b"0123456789abcdef-secret";
    let cores = base64_cores(data);
    for prefix in ["", "x", "xy", "xyz"] {
        for suffix in ["", "q", "qr"] {
            let mut s = prefix.as_bytes().to_vec();
            s.extend_from_slice(data);
            s.extend_from_slice(suffix.as_bytes());
            let enc = STANDARD.encode(&s);
            assert!(
                cores
                    .iter()
                    .any(|c| enc.as_bytes().windows(c.len()).any(|w| w == c.as_slice())),
                "no core in {enc}"
            );
        }
    }
}

#[test]
fn scrubbing_replaces_every_form_even_split_byte_by_byte() {
    let secret = "sk-live-REAL/secret\"value+42";
    let ph = new_placeholder();
    let set = std::sync::Arc::new(ScrubSet::new(&[(secret, &ph, Some("api"))]));
    let basic = STANDARD.encode(format!("api:{secret}"));
    let pct = percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    let json = serde_json::to_string(secret).unwrap();
    let b64 = STANDARD.encode(format!("zz{secret}"));
    let body = format!("raw={secret} basic=Basic {basic} pct={pct} json={json} b64={b64} end");
    for chunk_size in [1, 3, 7, 1000] {
        let mut s = StreamScrubber::new(set.clone());
        let mut out = Vec::new();
        for chunk in body.as_bytes().chunks(chunk_size) {
            out.extend(s.push(chunk));
        }
        out.extend(s.finish());
        let out = String::from_utf8_lossy(&out);
        assert!(
            !out.contains(secret),
            "raw secret survived (chunks of {chunk_size}): {out}"
        );
        assert!(!out.contains(&basic), "basic value survived");
        assert!(!out.contains(&pct), "percent form survived");
        assert!(!out.contains("REAL\\/secret"), "json form survived: {out}");
        assert!(
            !out.contains(&json[1..json.len() - 1]),
            "serde json form survived: {out}"
        );
        let ph_basic = STANDARD.encode(format!("api:{ph}"));
        assert!(
            out.contains(&ph_basic),
            "basic not mapped to the placeholder: {out}"
        );
        assert!(out.starts_with(&format!("raw={ph} ")));
        assert!(out.ends_with(" end"));
        for core in base64_cores(secret.as_bytes()) {
            assert!(
                !out.as_bytes()
                    .windows(core.len())
                    .any(|w| w == core.as_slice())
            );
        }
    }
}

#[test]
fn non_public_addresses_are_classified() {
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(non_public_reason(ip).is_some(), "{ip} counted as public");
    }
    for ip in [
        "93.184.216.34",
        "2606:4700::1111",
        "203.0.113.7",
        "172.32.0.1",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(non_public_reason(ip), None, "{ip} counted as non-public");
    }
}

#[test]
fn audit_paths_keep_keys_and_drop_values() {
    assert_eq!(redact_query("/a/b"), "/a/b");
    assert_eq!(redact_query("/s?q=secret&key=abc&flag"), "/s?q=&key=&flag=");
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

#[test]
fn sandbox_egress_rejects_missing_weak_or_shared_placeholders() {
    use gig_policy::{CredentialSpec, EgressPolicy, Injection};
    let cred = |env: &str| CredentialSpec {
        env: env.into(),
        secret: None,
        hosts: vec!["api.example.test".parse().unwrap()],
        inject: Injection::Query {
            param: "key".into(),
        },
    };
    let policy = EgressPolicy {
        credentials: vec![cred("A"), cred("B")],
        ..Default::default()
    };
    let ph = new_placeholder();
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(SandboxEgress::new("s", policy.clone(), map(&[("A", &ph)])).is_err());
    assert!(SandboxEgress::new("s", policy.clone(), map(&[("A", &ph), ("B", "short")])).is_err());
    assert!(SandboxEgress::new("s", policy.clone(), map(&[("A", &ph), ("B", &ph)])).is_err());
    let other = new_placeholder();
    let ok = SandboxEgress::new("s", policy, map(&[("A", &ph), ("B", &other)])).unwrap();
    assert!(ok.allow_credential_over_plain_http("C").is_err());
}

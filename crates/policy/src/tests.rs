use super::*;

fn pat(s: &str) -> HostPattern {
    s.parse().unwrap()
}

#[test]
fn wildcard_matches_strictly_below_the_domain() {
    let p = pat("*.example.com");
    assert!(p.matches("api.example.com"));
    assert!(p.matches("a.b.EXAMPLE.com"));
    assert!(!p.matches("example.com"));
    assert!(!p.matches("badexample.com"));
    assert!(!p.matches("example.com.evil.test"));
    assert!(!p.matches(".example.com"));
}

#[test]
fn exact_names_are_case_insensitive_and_nothing_else() {
    let p = pat("API.Example.com");
    assert_eq!(p.to_string(), "api.example.com");
    assert!(p.matches("api.example.COM"));
    assert!(!p.matches("api.example.com.evil.test"));
    assert!(!p.matches("x.api.example.com"));
}

#[test]
fn ip_literals_match_only_themselves() {
    let p = pat("127.0.0.1");
    assert!(p.matches("127.0.0.1"));
    assert!(!p.matches("127.0.0.2"));
    assert!(!p.matches("localhost"));
    let v6 = pat("[::1]");
    assert!(v6.matches("::1") && v6.matches("[::1]"));
    assert_eq!(v6.to_string(), "[::1]");
}

#[test]
fn bad_patterns_are_refused_with_a_reason() {
    for bad in [
        "",
        "*",
        "*.com",
        "a.*.com",
        "ex ample.com",
        "exa_mple.com",
        "-a.com",
        "a..com",
        "a.com.",
        "münchen.de",
    ] {
        let e = bad.parse::<HostPattern>().unwrap_err();
        assert!(e.to_string().contains("invalid host pattern"), "{bad}: {e}");
    }
}

#[test]
fn rules_parse_ports_and_plain_http() {
    let r: EgressRule = "api.example.com".parse().unwrap();
    assert_eq!((r.ports.clone(), r.plain_http), (vec![443], false));
    assert!(r.allows("api.example.com", 443) && !r.allows("api.example.com", 80));
    let r: EgressRule = "*.example.com:443,8443".parse().unwrap();
    assert_eq!(r.ports, vec![443, 8443]);
    assert_eq!(r.to_string(), "*.example.com:443,8443");
    let r: EgressRule = "http://127.0.0.1:8080".parse().unwrap();
    assert!(r.plain_http && r.allows("127.0.0.1", 8080));
    assert_eq!(r.to_string(), "http://127.0.0.1:8080");
    let r: EgressRule = "[::1]:9000".parse().unwrap();
    assert!(r.allows("::1", 9000));
    assert!("a.com:0".parse::<EgressRule>().is_err());
    assert!("a.com:x".parse::<EgressRule>().is_err());
    assert!("a.com:70000".parse::<EgressRule>().is_err());
}

#[test]
fn empty_policy_denies_everything() {
    let p = EgressPolicy::default();
    assert!(p.rule_for("example.com", 443).is_none());
}

#[test]
fn credentials_round_trip_and_validate() {
    let json = r#"{"env":"API_KEY","hosts":["api.example.com","*.example.org"],
                   "inject":{"type":"header","name":"Authorization","template":"Bearer {}"}}"#;
    let c: CredentialSpec = serde_json::from_str(json).unwrap();
    c.validate().unwrap();
    assert_eq!(c.secret_name(), "API_KEY");
    let back: CredentialSpec = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);

    let mut bad = c.clone();
    bad.inject = Injection::Header {
        name: "Authorization".into(),
        template: "Bearer".into(),
    };
    assert!(bad.validate().is_err());
    let mut bad = c.clone();
    bad.hosts.clear();
    assert!(bad.validate().is_err());
    let mut bad = c.clone();
    bad.env = "1X".into();
    assert!(bad.validate().is_err());
    assert!(
        serde_json::from_str::<CredentialSpec>(
            r#"{"env":"A","hosts":["*"],"inject":{"type":"query","param":"k"}}"#
        )
        .is_err()
    );
    assert!(
        serde_json::from_str::<CredentialSpec>(
            r#"{"env":"A","hosts":["a.com"],"inject":{"type":"query","param":"k"},"extra":1}"#
        )
        .is_err()
    );

    let twice = EgressPolicy {
        credentials: vec![c.clone(), c],
        ..Default::default()
    };
    assert!(twice.validate().is_err());
}

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::canonical::{canonicalize, parse_strict};
use super::import::{ImportError, ImportOptions, import_server_json};
use super::*;

const DIGEST: &str = "sha256:3f1a8b0e2c4d6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn index_json() -> Value {
    json!({
        "schemaVersion": 1,
        "version": 7,
        "expires": "2030-01-01T00:00:00Z",
        "servers": {
            "echo": {
                "description": "Echoes",
                "latest": "1.1.0",
                "versions": {
                    "1.0.0": {
                        "image": format!("127.0.0.1:5000/echo-mcp:1.0.0@{DIGEST}"),
                        "entrypoint": "/echo-mcp",
                    },
                    "1.1.0": {
                        "image": format!("ghcr.io/gig/echo-mcp:1.1.0@{DIGEST}"),
                        "entrypoint": "/usr/bin/echo-mcp",
                        "args": ["--stdio"],
                        "transport": "stdio",
                        "env": {"LOG": "info"},
                        "credentials": [{
                            "env": "API_KEY",
                            "hosts": ["api.example.com"],
                            "inject": {"type": "header", "name": "Authorization", "template": "Bearer {}"}
                        }],
                        "egress": ["api.example.com", "*.example.org:443,8443"],
                        "limits": {"memoryBytes": 268435456},
                        "extract": "rootfs",
                        "description": "with a key"
                    }
                }
            }
        }
    })
}

fn index() -> Index {
    Index::from_json(index_json().to_string().as_bytes()).unwrap()
}

fn key() -> IndexSigningKey {
    IndexSigningKey::generate().unwrap()
}

fn trusted(keys: &[&IndexSigningKey]) -> TrustedKeys {
    TrustedKeys::new(keys.iter().map(|k| k.public())).unwrap()
}

fn signed(index: &Index, keys: &[&IndexSigningKey]) -> Vec<u8> {
    sign_index(index, keys).unwrap()
}

fn schema_err(v: Value) -> String {
    match Index::from_json(v.to_string().as_bytes()) {
        Err(IndexError::Schema(e)) => e,
        other => panic!("expected a schema error, got {other:?}"),
    }
}

// ---- canonical encoding -------------------------------------------------------------------

#[test]
fn canonical_sorts_by_utf16_code_units_as_rfc8785_says() {
    // RFC 8785 §3.2.3: U+1F600 (a surrogate pair, 0xD83D...) sorts before U+FB33 in UTF-16,
    // after it in UTF-8 byte order.
    let v = parse_strict(
        r#"{"\u20ac":1,"\r":2,"\ufb33":3,"1":4,"\ud83d\ude00":5,"\u0080":6,"\u00f6":7}"#.as_bytes(),
    )
    .unwrap();
    let out = String::from_utf8(canonicalize(&v).unwrap()).unwrap();
    assert_eq!(
        out,
        "{\"\\r\":2,\"1\":4,\"\u{80}\":6,\"ö\":7,\"€\":1,\"😀\":5,\"\u{fb33}\":3}"
    );
}

#[test]
fn canonical_escapes_strings_like_json_stringify() {
    let v = json!({"s": "\"\\\u{8}\t\n\u{c}\r\u{1}\u{1f}\u{7f}</x>é\u{2028}"});
    let out = String::from_utf8(canonicalize(&v).unwrap()).unwrap();
    assert_eq!(
        out,
        "{\"s\":\"\\\"\\\\\\b\\t\\n\\f\\r\\u0001\\u001f\u{7f}</x>é\u{2028}\"}"
    );
}

#[test]
fn canonical_matches_an_independent_jcs_implementation() {
    let signed: Value = serde_json::from_slice(&signed(&index(), &[&key()])).unwrap();
    let ours = canonicalize(&signed["signed"]).unwrap();
    assert_eq!(ours, serde_jcs::to_vec(&signed["signed"]).unwrap());
    // Stable: parse -> canonicalize -> parse -> canonicalize gives the same bytes.
    assert_eq!(canonicalize(&parse_strict(&ours).unwrap()).unwrap(), ours);
}

#[test]
fn numbers_without_a_safe_canonical_form_are_refused() {
    for bad in ["1.5", "1e3", "1.0", "9007199254740992", "-9007199254740992"] {
        let v = parse_strict(format!("{{\"n\":{bad}}}").as_bytes()).unwrap();
        assert!(canonicalize(&v).is_err(), "{bad}");
    }
    let v = parse_strict(b"{\"n\":[9007199254740991,-9007199254740991,0]}").unwrap();
    assert_eq!(
        canonicalize(&v).unwrap(),
        b"{\"n\":[9007199254740991,-9007199254740991,0]}"
    );
}

#[test]
fn duplicate_keys_are_refused_at_any_depth() {
    for bad in [r#"{"a":1,"a":1}"#, r#"{"x":[{"b":{"c":1,"c":2}}]}"#] {
        let e = parse_strict(bad.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("duplicate key"), "{e}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_strict(deep.as_bytes()).is_err());
    let k = key();
    let env = format!("{{\"signed\":{deep},\"signatures\":[]}}");
    assert!(matches!(
        verify(env.as_bytes(), &trusted(&[&k]), now(), None),
        Err(IndexError::Malformed(_))
    ));
}

// ---- schema -------------------------------------------------------------------------------

#[test]
fn a_full_index_parses_and_round_trips() {
    let idx = index();
    let entry = idx.servers[&"echo".parse::<IndexServerName>().unwrap()].versions["1.1.0"]
        .image()
        .unwrap();
    assert_eq!(entry.image.registry(), "ghcr.io");
    assert_eq!(entry.image.repository(), "gig/echo-mcp");
    assert_eq!(entry.image.tag(), Some("1.1.0"));
    assert_eq!(entry.image.digest(), DIGEST);
    assert_eq!(entry.extract, ExtractMode::Rootfs);
    assert_eq!(entry.egress[1].ports, vec![443, 8443]);
    assert_eq!(entry.limits.memory_bytes, Some(256 << 20));
    let old = idx.servers[&"echo".parse::<IndexServerName>().unwrap()].versions["1.0.0"]
        .image()
        .unwrap();
    assert_eq!(old.extract, ExtractMode::Entrypoint);
    assert!(old.args.is_empty() && old.credentials.is_empty());
    assert_eq!(Index::from_json(&idx.to_json_pretty()).unwrap(), idx);
}

#[test]
fn an_entry_may_ask_for_instances_per_user_and_is_checked() {
    let mut v = index_json();
    let version = &mut v["servers"]["echo"]["versions"]["1.0.0"];
    version["instances"] = json!("per-user");
    version["maxInstances"] = json!(8);
    let idx = Index::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
    let entry = idx.servers[&"echo".parse::<IndexServerName>().unwrap()].versions["1.0.0"]
        .image()
        .unwrap();
    let policy = entry.instance_policy().unwrap();
    assert_eq!(
        (policy.mode, policy.max_instances),
        (InstanceMode::PerUser, 8)
    );
    // Shared entries keep their exact written form: no key appears that was not there.
    let other = &idx.servers[&"echo".parse::<IndexServerName>().unwrap()].versions["1.1.0"];
    assert!(!serde_json::to_string(other).unwrap().contains("nstances"));

    let mut v = index_json();
    v["servers"]["echo"]["versions"]["1.0.0"]["maxInstances"] = json!(3);
    assert!(schema_err(v).contains("need \"instances\""));
    let mut v = index_json();
    v["servers"]["echo"]["versions"]["1.0.0"]["instances"] = json!("per-process");
    assert!(schema_err(v).contains("unknown variant"));
}

#[test]
fn schema_violations_name_the_field() {
    let mut v = index_json();
    v["servers"]["echo"]["versions"]["1.0.0"]["imagee"] = json!("x");
    let e = schema_err(v);
    assert!(
        e.contains("servers.echo.versions.1.0.0") && e.contains("unknown field"),
        "{e}"
    );

    let mut v = index_json();
    v["servers"]["echo"]["versions"]["1.0.0"]["image"] = json!("ghcr.io/gig/echo:1.0");
    let e = schema_err(v);
    assert!(e.contains("pinned by digest"), "{e}");

    let mut v = index_json();
    v["servers"]["my_echo"] = v["servers"]["echo"].clone();
    assert!(schema_err(v).contains("invalid server name \"my_echo\""));

    let mut v = index_json();
    v["servers"]["echo"]["latest"] = json!("9.9.9");
    assert!(schema_err(v).contains("servers.echo.latest"));

    let mut v = index_json();
    v["servers"]["echo"]["versions"]["1.0.0"]["entrypoint"] = json!("bin/echo");
    assert!(schema_err(v).contains("absolute"));

    let mut v = index_json();
    v["servers"]["echo"]["versions"]["1.0.0"]["entrypoint"] = json!("/bin/../echo");
    assert!(schema_err(v).contains("normalized"));

    let mut v = index_json();
    v["servers"]["echo"]["versions"]["1.0.0"]["env"] = json!({"NO_PROXY": "*"});
    assert!(schema_err(v).contains("set by the gateway"));

    let mut v = index_json();
    v["servers"]["echo"]["versions"]["1.0.0"]["transport"] = json!("sse");
    assert!(schema_err(v).contains("unknown variant"));

    let mut v = index_json();
    v["servers"]["echo"]["versions"]["1.0.0"]["egress"] = json!(["*.com"]);
    assert!(schema_err(v).contains("invalid host pattern"));

    let mut v = index_json();
    v["servers"]["echo"]["versions"]["1.1.0"]["credentials"][0]["hosts"] = json!([]);
    assert!(schema_err(v).contains("at least one host"));

    let mut v = index_json();
    v["servers"]["echo"]["versions"]["1.1.0"]["env"] = json!({"API_KEY": "x"});
    assert!(schema_err(v).contains("both a plain env variable and a credential"));

    let mut v = index_json();
    v["schemaVersion"] = json!(2);
    assert!(schema_err(v).contains("schemaVersion 2 is not supported"));

    let mut v = index_json();
    v["expires"] = json!("tomorrow");
    assert!(schema_err(v).contains("expires"));

    let mut v = index_json();
    let entry = v["servers"]["echo"]["versions"]["1.0.0"].clone();
    v["servers"]["echo"]["versions"]["1 0"] = entry;
    assert!(schema_err(v).contains("invalid version \"1 0\""));
}

#[test]
fn image_references_must_be_pinned_and_explicit() {
    let ok = [
        format!("127.0.0.1:5000/echo@{DIGEST}"),
        format!("localhost/a/b-c__d.e:v1.2_3@{DIGEST}"),
        format!("registry.example.com/x/y/z@{DIGEST}"),
    ];
    for s in &ok {
        let r: ImageRef = s.parse().unwrap();
        assert_eq!(r.to_string(), *s);
        assert_eq!(r.digest(), DIGEST);
    }
    let r: ImageRef = ok[0].parse().unwrap();
    assert_eq!(
        (r.registry(), r.repository(), r.tag()),
        ("127.0.0.1:5000", "echo", None)
    );
    let bad = [
        "ghcr.io/x/y:1".to_string(),
        format!("echo@{DIGEST}"),
        format!("library/echo@{DIGEST}"),
        format!("ghcr.io/X/y@{DIGEST}"),
        format!("ghcr.io/x/y@{}", DIGEST.to_uppercase()),
        "ghcr.io/x/y@sha256:abc".into(),
        format!("ghcr.io/x/y@sha512:{}", &DIGEST[7..]),
        format!("ghcr.io/x/../y@{DIGEST}"),
        format!("ghcr.io/x/y:-bad@{DIGEST}"),
        format!("ghcr.io:0/x@{DIGEST}"),
        format!("ghcr.io/x//y@{DIGEST}"),
    ];
    for s in &bad {
        assert!(s.parse::<ImageRef>().is_err(), "{s}");
    }
}

// ---- signatures and verification ---------------------------------------------------------

#[test]
fn sign_then_verify_round_trips_and_reports_what_to_persist() {
    let k = key();
    let bytes = signed(&index(), &[&k]);
    let v = verify(&bytes, &trusted(&[&k]), now(), None).unwrap();
    assert_eq!(v.index(), &index());
    assert_eq!(v.signed_by(), [k.public().key_id().to_owned()]);
    assert_eq!(v.accepted().version, 7);
    assert_eq!(v.accepted().content_sha256.len(), 64);
    // Same version, same content: fine (a gateway restart re-reads the same file).
    let again = verify(&bytes, &trusted(&[&k]), now(), Some(v.accepted())).unwrap();
    assert_eq!(again.accepted(), v.accepted());
}

#[test]
fn formatting_of_the_envelope_does_not_matter() {
    let k = key();
    let compact =
        serde_json::to_vec(&serde_json::from_slice::<Value>(&signed(&index(), &[&k])).unwrap())
            .unwrap();
    verify(&compact, &trusted(&[&k]), now(), None).unwrap();
}

fn tamper(bytes: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn each_failure_has_its_own_error() {
    let k = key();
    let other = key();
    let keys = trusted(&[&k]);
    let good = signed(&index(), &[&k]);

    let t = tamper(&good, |v| {
        v["signed"]["servers"]["echo"]["latest"] = json!("1.0.0")
    });
    assert_eq!(
        verify(&t, &keys, now(), None).unwrap_err(),
        IndexError::BadSignature(k.public().key_id().into())
    );

    let t = tamper(&good, |v| v["signatures"] = json!([]));
    assert_eq!(
        verify(&t, &keys, now(), None).unwrap_err(),
        IndexError::NoSignature
    );

    let by_other = signed(&index(), &[&other]);
    assert_eq!(
        verify(&by_other, &keys, now(), None).unwrap_err(),
        IndexError::UnknownKeys(vec![other.public().key_id().into()])
    );

    let t = tamper(&good, |v| v["signatures"][0]["sig"] = json!("!!"));
    assert!(matches!(
        verify(&t, &keys, now(), None),
        Err(IndexError::BadSignature(_))
    ));

    let late = SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000); // 2030-01-01
    assert!(matches!(
        verify(&good, &keys, late, None),
        Err(IndexError::Expired { expires, .. }) if expires == "2030-01-01T00:00:00Z"
    ));

    let newer = AcceptedIndex {
        version: 8,
        content_sha256: "00".repeat(32),
    };
    assert_eq!(
        verify(&good, &keys, now(), Some(&newer)).unwrap_err(),
        IndexError::RolledBack {
            version: 7,
            newest: 8
        }
    );

    let mut changed = index();
    changed.servers.clear();
    let accepted = verify(&good, &keys, now(), None)
        .unwrap()
        .accepted()
        .clone();
    assert_eq!(
        verify(&signed(&changed, &[&k]), &keys, now(), Some(&accepted)).unwrap_err(),
        IndexError::Equivocation { version: 7 }
    );
    changed.version = 8;
    verify(&signed(&changed, &[&k]), &keys, now(), Some(&accepted)).unwrap();

    assert!(matches!(
        verify(b"{", &keys, now(), None),
        Err(IndexError::Malformed(_))
    ));
    let t = tamper(&good, |v| v["extra"] = json!(1));
    assert!(matches!(
        verify(&t, &keys, now(), None),
        Err(IndexError::Malformed(_))
    ));
    let huge = vec![b' '; MAX_INDEX_BYTES + 1];
    assert!(matches!(
        verify(&huge, &keys, now(), None),
        Err(IndexError::TooLarge { .. })
    ));
}

#[test]
fn a_signed_index_that_violates_the_schema_is_a_schema_error() {
    let k = key();
    // Sign a hand-made document the way a buggy signer might, bypassing `sign_index`'s checks.
    let mut bad = index_json();
    bad["servers"]["echo"]["latest"] = json!("nope");
    let canonical = canonicalize(&bad).unwrap();
    let sig = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        k.sign(&canonical),
    );
    let env = json!({"signed": bad, "signatures": [{"keyid": k.public().key_id(), "sig": sig}]});
    let e = verify(env.to_string().as_bytes(), &trusted(&[&k]), now(), None).unwrap_err();
    assert!(
        matches!(e, IndexError::Schema(ref m) if m.contains("latest")),
        "{e}"
    );
}

#[test]
fn threshold_counts_distinct_trusted_keys() {
    let (a, b) = (key(), key());
    let two = trusted(&[&a, &b]).with_threshold(2).unwrap();
    let one_sig = signed(&index(), &[&a]);
    assert_eq!(
        verify(&one_sig, &two, now(), None).unwrap_err(),
        IndexError::Threshold {
            valid: 1,
            needed: 2
        }
    );
    // The same signature twice is still one key.
    let doubled = tamper(&one_sig, |v| {
        let s = v["signatures"][0].clone();
        v["signatures"].as_array_mut().unwrap().push(s);
    });
    assert!(matches!(
        verify(&doubled, &two, now(), None),
        Err(IndexError::Threshold { .. })
    ));
    let both = signed(&index(), &[&a, &b]);
    assert_eq!(
        verify(&both, &two, now(), None).unwrap().signed_by().len(),
        2
    );
    // With threshold 1, an appended garbage signature cannot veto a valid one.
    let junk = tamper(&both, |v| v["signatures"][1]["sig"] = json!("AAAA"));
    verify(&junk, &trusted(&[&a, &b]), now(), None).unwrap();
    assert!(trusted(&[&a]).with_threshold(2).is_err());
    assert!(trusted(&[&a]).with_threshold(0).is_err());
}

#[test]
fn mutated_bytes_never_panic_and_never_verify_as_something_else() {
    let k = key();
    let keys = trusted(&[&k]);
    let good = signed(&index(), &[&k]);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..3000 {
        let mut b = good.clone();
        match round % 4 {
            0 => {
                let i = (rand() as usize) % b.len();
                b[i] ^= 1 << (rand() % 8);
            }
            1 => {
                let i = (rand() as usize) % b.len();
                let alphabet = b"{}[]\",:0123456789aez\\ \n";
                b[i] = alphabet[(rand() as usize) % alphabet.len()];
            }
            2 => b.truncate((rand() as usize) % b.len()),
            _ => {
                let i = (rand() as usize) % b.len();
                let j = (rand() as usize) % b.len();
                b.swap(i, j);
            }
        }
        if let Ok(v) = verify(&b, &keys, now(), None) {
            // Only whitespace-level changes can keep a valid signature.
            assert_eq!(v.index(), &index(), "round {round}");
        }
    }
}

// ---- keys ---------------------------------------------------------------------------------

#[test]
fn public_keys_parse_with_clear_errors() {
    let k = key();
    let line = k.public().to_string();
    assert!(line.starts_with("ed25519:"));
    assert_eq!(line.parse::<PublicKey>().unwrap(), k.public());
    assert_eq!(k.public().key_id().len(), 16);
    let list = format!(" {line} , {} ", key().public());
    let keys = TrustedKeys::parse_list(&list).unwrap();
    assert!(keys.get(k.public().key_id()).is_some());
    for (bad, why) in [
        ("rsa:AAAA", "expected ed25519:"),
        ("ed25519:not base64!", "base64"),
        ("ed25519:AAAA", "32 bytes"),
        // The identity point: a small-order key anyone can "sign" for.
        (
            "ed25519:AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "weak",
        ),
    ] {
        let e = bad.parse::<PublicKey>().unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
    assert_eq!(TrustedKeys::parse_list(" ").unwrap_err(), KeyError::NoKeys);
    assert!(TrustedKeys::parse_list(&format!("{line},")).is_err());
}

#[test]
fn private_key_files_round_trip_and_never_print() {
    let k = key();
    let text = k.to_file_text();
    let back = IndexSigningKey::from_file_text(&text).unwrap();
    assert_eq!(back.public(), k.public());
    let secret_b64 = text.trim_end().rsplit(':').next().unwrap().to_owned();
    assert!(!format!("{k:?}").contains(&secret_b64));
    assert!(IndexSigningKey::from_file_text(&k.public().to_string()).is_err());
    assert!(IndexSigningKey::from_file_text("gig-index-secret-key ed25519:AAAA").is_err());
}

// ---- refs ---------------------------------------------------------------------------------

#[test]
fn refs_resolve_to_latest_or_the_named_version() {
    let idx = index();
    let r = idx.resolve("echo").unwrap();
    assert_eq!((r.name.as_str(), r.version), ("echo", "1.1.0"));
    assert_eq!(r.entry.image().unwrap().entrypoint, "/usr/bin/echo-mcp");
    let r = idx.resolve("echo@1.0.0").unwrap();
    assert_eq!(r.entry.image().unwrap().entrypoint, "/echo-mcp");
    assert_eq!(
        idx.resolve("fetch").unwrap_err().to_string(),
        "no server \"fetch\" in the index (it has: echo)"
    );
    assert_eq!(
        idx.resolve("echo@2.0").unwrap_err().to_string(),
        "server \"echo\" has no version \"2.0\" (it has: 1.0.0, 1.1.0)"
    );
    for bad in ["", "Echo", "echo@", "echo@a b", "@1.0.0"] {
        assert!(
            matches!(idx.resolve(bad), Err(ResolveError::Malformed(..))),
            "{bad}"
        );
    }
}

// ---- server.json import -------------------------------------------------------------------

const SERVER_JSON: &[u8] = include_bytes!("../tests/fixtures/server.json");

fn weather_credential() -> gig_policy::CredentialSpec {
    serde_json::from_value(json!({
        "env": "OPENWEATHER_API_KEY",
        "hosts": ["api.openweathermap.org"],
        "inject": {"type": "query", "param": "appid"}
    }))
    .unwrap()
}

#[test]
fn import_refuses_secrets_without_operator_declared_hosts() {
    let opts = ImportOptions {
        entrypoint: Some("/usr/local/bin/weather-mcp".into()),
        ..Default::default()
    };
    let e = import_server_json(SERVER_JSON, &opts).unwrap_err();
    assert_eq!(
        e,
        ImportError::MissingCredentials(vec!["OPENWEATHER_API_KEY".into()])
    );
    assert!(e.to_string().contains("--credential"), "{e}");
}

#[test]
fn import_takes_the_oci_stdio_package_into_an_entry() {
    let opts = ImportOptions {
        entrypoint: Some("/usr/local/bin/weather-mcp".into()),
        credentials: vec![weather_credential()],
        egress: vec!["api.openweathermap.org".parse().unwrap()],
        env: [("WEATHER_LANG".to_string(), "fr".to_string())].into(),
        ..Default::default()
    };
    let imported = import_server_json(SERVER_JSON, &opts).unwrap();
    assert_eq!(imported.name.as_str(), "weather-server");
    assert_eq!(imported.version, "1.4.2");
    assert_eq!(
        imported.image(),
        Some("ghcr.io/example-org/weather-mcp:1.4.2")
    );
    assert!(imported.pinned_image().is_none());
    let pinned: ImageRef = format!("{}@{DIGEST}", imported.image().unwrap())
        .parse()
        .unwrap();
    let entry = imported.into_entry(Some(pinned)).unwrap();
    let entry = entry.image().unwrap();
    assert_eq!(entry.args, ["--units", "metric", "info"]);
    assert_eq!(
        entry.env,
        [
            ("WEATHER_LANG".to_string(), "fr".to_string()),
            ("WEATHER_TIMEOUT_SECS".to_string(), "10".to_string())
        ]
        .into()
    );
    assert_eq!(entry.credentials, [weather_credential()]);
    assert_eq!(
        entry.description,
        "Current weather and forecasts from OpenWeatherMap"
    );
}

#[test]
fn import_handles_older_layouts_and_refuses_what_it_cannot_run() {
    let opts = ImportOptions {
        entrypoint: Some("/srv".into()),
        ..Default::default()
    };
    let old = json!({"name": "io.github.x/Time.Server", "version": "0.2.0", "packages": [
        {"registryType": "oci", "registryBaseUrl": "https://docker.io", "identifier": "mcp/time",
         "version": "0.2.0", "transport": {"type": "stdio"}}]});
    let i = import_server_json(old.to_string().as_bytes(), &opts).unwrap();
    assert_eq!(
        (i.name.as_str(), i.image().unwrap()),
        ("time-server", "docker.io/mcp/time:0.2.0")
    );

    let pinned = json!({"name": "a/b", "version": "1", "packages": [
        {"registryType": "oci", "identifier": format!("quay.io/a/b@{DIGEST}"), "transport": {"type": "stdio"}}]});
    let i = import_server_json(pinned.to_string().as_bytes(), &opts).unwrap();
    assert_eq!(i.pinned_image().unwrap().digest(), DIGEST);

    let npm_only = json!({"name": "a/b", "version": "1", "packages": [
        {"registryType": "npm", "identifier": "@a/b", "version": "1", "transport": {"type": "stdio"}}]});
    let e = import_server_json(npm_only.to_string().as_bytes(), &opts).unwrap_err();
    assert!(
        e.to_string().contains("no OCI package") && e.to_string().contains("npm (stdio)"),
        "{e}"
    );

    let required = json!({"name": "a/b", "version": "1", "packages": [
        {"registryType": "oci", "identifier": "ghcr.io/a/b:1", "transport": {"type": "stdio"},
         "environmentVariables": [{"name": "ROOT_DIR", "isRequired": true}]}]});
    let e = import_server_json(required.to_string().as_bytes(), &opts).unwrap_err();
    assert!(e.to_string().contains("required env ROOT_DIR"), "{e}");

    let bad_version = json!({"name": "a/b", "version": "^1.0", "packages": []});
    assert!(import_server_json(bad_version.to_string().as_bytes(), &opts).is_err());
    assert!(matches!(
        import_server_json(b"[]", &opts),
        Err(ImportError::Malformed(_))
    ));
}

// ---- stability ----------------------------------------------------------------------------

/// Pins the canonical bytes and the signature of a fixed index under a fixed key: a change in
/// canonicalization or signing would invalidate every index already signed in the field.
#[test]
fn canonical_form_and_signatures_are_stable_across_releases() {
    use base64::Engine;
    let seed = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let k =
        IndexSigningKey::from_file_text(&format!("gig-index-secret-key ed25519:{seed}")).unwrap();
    let envelope: Value = serde_json::from_slice(&signed(&index(), &[&k])).unwrap();
    let canonical = canonicalize(&envelope["signed"]).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&canonical));
    assert_eq!(
        sha,
        "aa2be65d0c77441206347c3cb8aa0f877f69a1198b551780a336fb9dbe2b41dd"
    );
    assert_eq!(
        envelope["signatures"][0]["sig"],
        "Gz/Z0YPK85daibOARqV5RhQ1Kinj33Tb0R1JXYzyw64FczhLQ5C97xRXqZdi/JmNLTYMCmfzsBCGdkOZIIhRBw=="
    );
}

#[test]
fn a_key_list_can_require_a_threshold() {
    let (a, b, c) = (key(), key(), key());
    let line = |k: &IndexSigningKey| k.public().to_string();
    let list = format!("threshold=2, {}, {},{}", line(&a), line(&b), line(&c));
    let keys = TrustedKeys::parse_list(&list).unwrap();
    assert_eq!(keys.threshold(), 2);
    let index = index();
    let one = signed(&index, &[&a]);
    let err = verify(&one, &keys, now(), None).unwrap_err();
    assert!(err.to_string().contains("2 required"), "{err}");
    assert!(verify(&signed(&index, &[&a, &c]), &keys, now(), None).is_ok());
    // Without the entry: one key suffices, as before.
    let plain = format!("{},{}", line(&a), line(&b));
    assert_eq!(TrustedKeys::parse_list(&plain).unwrap().threshold(), 1);

    for bad in [
        format!("threshold=3,{},{}", line(&a), line(&b)),
        // The same key twice is one key.
        format!("threshold=2,{},{}", line(&a), line(&a)),
        format!("threshold=0,{}", line(&a)),
        format!("threshold=two,{}", line(&a)),
        format!("threshold=1,threshold=1,{}", line(&a)),
        "threshold=1".to_string(),
    ] {
        assert!(TrustedKeys::parse_list(&bad).is_err(), "{bad}");
    }
}

// ---- remote entries -----------------------------------------------------------------------

fn with_remote(remote: Value) -> Result<Index, IndexError> {
    let mut v = index_json();
    v["servers"]["echo"]["versions"]["2.0.0"] = remote;
    Index::from_json(&serde_json::to_vec(&v).unwrap())
}

#[test]
fn a_remote_entry_parses_round_trips_and_gives_its_checked_spec() {
    let idx = with_remote(json!({
        "remote": {"type": "http", "url": "https://mcp.example.com/mcp",
                   "headers": {"X-Key": "${credential:gh-token}"}},
        "description": "hosted"
    }))
    .unwrap();
    let entry = &idx.servers[&"echo".parse::<IndexServerName>().unwrap()].versions["2.0.0"];
    let VersionEntry::Remote(remote) = entry else {
        panic!("read as {entry:?}");
    };
    assert_eq!(entry.description(), "hosted");
    let spec = remote.spec("echo").unwrap();
    assert_eq!(spec.credentials(), ["gh-token"]);
    assert_eq!(Index::from_json(&idx.to_json_pretty()).unwrap(), idx);
    // The written form is the form read: no key appears that was not there.
    let written = serde_json::to_value(entry).unwrap();
    assert_eq!(
        written,
        json!({"remote": {"type": "http", "url": "https://mcp.example.com/mcp",
                          "headers": {"X-Key": "${credential:gh-token}"}},
               "description": "hosted"})
    );
}

#[test]
fn a_remote_entry_is_held_to_the_servers_file_rules_and_more() {
    for (remote, needle) in [
        (json!({"url": "http://mcp.example.com/mcp"}), "plain http"),
        (
            json!({"url": "http://10.0.0.1/mcp", "allowAddresses": ["10.0.0.1/32"]}),
            "GIG_EGRESS_ALLOW_ADDRESSES",
        ),
        (json!({"url": "https://u:p@x.example/mcp"}), "credentials"),
        (json!({"url": "https://x.example/mcp", "type": "ws"}), "ws"),
        (
            json!({"url": "https://x.example/mcp", "headers": {"Host": "y"}}),
            "set by the gateway",
        ),
        (
            json!({"url": "https://x.example/mcp", "headers": {"Accept": "text/html"}}),
            "set by the gateway",
        ),
        (
            json!({"url": "https://x.example/mcp", "headers": {"MCP-Protocol-Version": "1"}}),
            "set by the gateway",
        ),
        (
            json!({"url": "https://x.example/mcp", "oauth": {"grant": "client_credentials", "clientId": "a", "clientSecret": "literal"}}),
            "never the secret itself",
        ),
        (
            json!({"url": "https://x.example/mcp", "command": "x"}),
            "unknown field",
        ),
    ] {
        let err = with_remote(json!({ "remote": remote }))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("servers.echo.versions.2.0.0") && err.contains(needle),
            "{remote}: {err}"
        );
    }
    // Image-only keys beside `remote` are refused, not ignored.
    let err =
        with_remote(json!({"remote": {"url": "https://x.example/mcp"}, "egress": ["x.example"]}))
            .unwrap_err()
            .to_string();
    assert!(err.contains("unknown field `egress`"), "{err}");
}

#[test]
fn import_takes_a_remote_with_its_secret_headers_as_vault_references() {
    let sj = json!({"name": "io.github.acme/issues", "version": "2.1.0", "description": "Issues",
    "remotes": [{"type": "streamable-http", "url": "https://mcp.acme.example/mcp",
        "headers": [
            {"name": "Authorization", "value": "Bearer {acme_token}", "isSecret": true, "isRequired": true},
            {"name": "X-Api-Key", "isSecret": true},
            {"name": "X-Region", "value": "eu"},
            {"name": "X-Optional"}
        ]}]});
    let imported =
        import_server_json(sj.to_string().as_bytes(), &ImportOptions::default()).unwrap();
    assert_eq!(imported.name.as_str(), "issues");
    assert_eq!(imported.image(), None);
    let entry = imported.into_entry(None).unwrap();
    let VersionEntry::Remote(remote) = &entry else {
        panic!("{entry:?}");
    };
    assert_eq!(
        remote.remote.headers,
        [
            (
                "Authorization".to_string(),
                "Bearer ${credential:acme_token}".to_string()
            ),
            (
                "X-Api-Key".to_string(),
                "${credential:x-api-key}".to_string()
            ),
            ("X-Region".to_string(), "eu".to_string()),
        ]
        .into()
    );
    assert_eq!(remote.remote.transport.as_deref(), Some("http"));
    assert_eq!(entry.description(), "Issues");
    assert_eq!(
        remote.spec("issues").unwrap().credentials(),
        ["acme_token", "x-api-key"]
    );
}

#[test]
fn import_chooses_between_packages_and_remotes_only_when_told() {
    let both = json!({"name": "a/b", "version": "1",
        "packages": [{"registryType": "oci", "identifier": format!("quay.io/a/b@{DIGEST}"), "transport": {"type": "stdio"}}],
        "remotes": [{"type": "sse", "url": "https://b.example/sse"}, {"type": "streamable-http", "url": "https://b.example/mcp"}]});
    let bytes = both.to_string();
    // A package is taken unless a remote is asked for; it needs its entrypoint.
    let e = import_server_json(bytes.as_bytes(), &ImportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("--entrypoint"), "{e}");
    let take = |i| ImportOptions {
        remote: Some(i),
        ..Default::default()
    };
    let sse = import_server_json(bytes.as_bytes(), &take(0)).unwrap();
    let VersionEntry::Remote(r) = sse.into_entry(None).unwrap() else {
        panic!("not remote")
    };
    assert_eq!(r.remote.transport.as_deref(), Some("sse"));
    let e = import_server_json(bytes.as_bytes(), &take(2)).unwrap_err();
    assert_eq!(e, ImportError::AmbiguousRemote(2));

    let only_remotes = json!({"name": "a/b", "version": "1",
        "remotes": [{"type": "sse", "url": "https://b.example/sse"}, {"type": "streamable-http", "url": "https://b.example/mcp"}]});
    let e = import_server_json(
        only_remotes.to_string().as_bytes(),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e, ImportError::AmbiguousRemote(2));

    let templated = json!({"name": "a/b", "version": "1",
        "remotes": [{"type": "streamable-http", "url": "https://{tenant}.b.example/mcp",
                     "headers": [{"name": "X-Tenant", "value": "{tenant}"}]}]});
    let e = import_server_json(templated.to_string().as_bytes(), &ImportOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("--url"), "{e}");
    let opts = ImportOptions {
        url: Some("https://acme.b.example/mcp".into()),
        headers: [("X-Tenant".to_string(), "acme".to_string())].into(),
        ..Default::default()
    };
    let fixed = import_server_json(templated.to_string().as_bytes(), &opts).unwrap();
    let VersionEntry::Remote(r) = fixed.into_entry(None).unwrap() else {
        panic!("not remote")
    };
    assert_eq!(r.remote.url, "https://acme.b.example/mcp");
    assert_eq!(r.remote.headers["X-Tenant"], "acme");

    let bad_secret = json!({"name": "a/b", "version": "1",
        "remotes": [{"type": "streamable-http", "url": "https://b.example/mcp",
                     "headers": [{"name": "Authorization", "value": "Bearer {a b}", "isSecret": true}]}]});
    let e = import_server_json(bad_secret.to_string().as_bytes(), &ImportOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("not a credential name"), "{e}");
}

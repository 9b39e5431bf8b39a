//! A sandbox's HTTP/1 request through the proxy's phases before sending (head checks,
//! agreement on the destination, body read and decoded, placeholder scan, injection):
//! `gig_proxy::fuzzing::request_phases`, on a request head parsed by `httparse` (hyper's
//! parser).
//!
//! Input: one knob (inside a TLS tunnel to which host, or absolute-form plain HTTP), then the
//! request bytes (head, then body). The sandbox has three credentials: `HDR` (a Bearer header)
//! and `QRY` (query `key`) for `api.example.test`, `BAS` (Basic) for `other.example.test`.
//! Properties: the verdict is the same twice; a credential is injected only inside a tunnel to
//! one of its hosts; what would be sent (target, every header, the body as sent) holds no
//! placeholder; each injected secret sits exactly at its declared position and nowhere else;
//! no refusal's reason quotes a secret.

#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use gig_fuzz::models::framing_conflict;
use gig_fuzz_cov::{Knobs, contains, percent_encoded};
use gig_proxy::fuzz_fixture::{ENVS, HOSTS, OWN, placeholder, sandbox, secret, secrets};
use gig_proxy::fuzzing::{Verdict, request_phases};
use gig_proxy::{ProxyLimits, SandboxEgress, StaticSecrets};
use libfuzzer_sys::fuzz_target;

static SANDBOX: LazyLock<SandboxEgress> = LazyLock::new(sandbox);
static SECRETS: LazyLock<StaticSecrets> = LazyLock::new(secrets);

fn parse(raw: &[u8]) -> Option<http::Request<Bytes>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(raw).ok()? else {
        return None;
    };
    let mut builder = http::Request::builder().method(req.method?).uri(req.path?);
    for h in req.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    builder.body(Bytes::copy_from_slice(&raw[len..])).ok()
}

fn decide(tunnel: Option<(&str, u16)>, raw: &[u8]) -> Option<Verdict> {
    let request = parse(raw)?;
    let limits = ProxyLimits::default();
    Some(futures::executor::block_on(request_phases(
        &SANDBOX,
        &*SECRETS,
        &limits,
        tunnel,
        framing_conflict(raw),
        request,
    )))
}

fuzz_target!(|data: &[u8]| {
    let mut knobs = Knobs::new(data);
    let choice = knobs.byte();
    let tunnel = (choice % 6 < 5).then(|| (HOSTS[usize::from(choice % 6)], 443));
    let raw = knobs.rest();
    let Some(verdict) = decide(tunnel, raw) else {
        return;
    };
    let again = decide(tunnel, raw).expect("parsed once");
    assert_eq!(format!("{verdict:?}"), format!("{again:?}"), "two verdicts");
    // A secret the request itself spells out (in any form checked here) says nothing about
    // the proxy. Header names are case-insensitive and come out lowercased, so the request is
    // also read lowercased (a crash input named a header `…real-sEcret-2-s3cr3t…`).
    let lowered = raw.to_ascii_lowercase();
    let secrets: Vec<Option<String>> = (0..ENVS.len())
        .map(|i| {
            Some(secret(i)).filter(|s| {
                !forms(s)
                    .iter()
                    .any(|f| contains(raw, f.as_bytes()) || contains(&lowered, f.as_bytes()))
            })
        })
        .collect();

    let (parts, body, injected) = match verdict {
        Verdict::Refused { status, reason, .. } => {
            assert!((400..600).contains(&status), "{status}");
            for s in secrets.iter().flatten() {
                assert!(
                    !reason.contains(s.as_str()),
                    "a refusal quotes a secret: {reason}"
                );
            }
            return;
        }
        Verdict::Send {
            parts,
            body,
            credentials,
        } => (parts, body, credentials),
    };
    for env in &injected {
        let i = ENVS
            .iter()
            .position(|e| e == env)
            .expect("a known credential");
        assert_eq!(
            tunnel.map(|t| t.0),
            Some(OWN[i]),
            "{env} injected for {tunnel:?}"
        );
    }
    let uri = parts.uri.to_string();
    let mut places: Vec<(String, &[u8])> = vec![
        ("target".into(), uri.as_bytes()),
        ("body".into(), &body[..]),
    ];
    for (name, value) in &parts.headers {
        places.push((format!("header name {name}"), name.as_str().as_bytes()));
        places.push((format!("header {name}"), value.as_bytes()));
    }
    for (i, env) in ENVS.iter().enumerate() {
        let ph = placeholder(i);
        for (place, bytes) in &places {
            assert!(
                !contains(bytes, ph.as_bytes()),
                "placeholder {env} leaves in the {place}"
            );
        }
    }
    for (i, s) in secrets.iter().enumerate() {
        let Some(s) = s else { continue };
        let injected = injected.iter().any(|e| e == ENVS[i]);
        let declared = match i {
            0 => format!("Bearer {s}"),
            1 => format!("key={}", percent_encoded(s)),
            _ => format!("Basic {}", STANDARD.encode(format!("svc:{s}"))),
        };
        let at_declared = match i {
            1 => {
                let query = parts.uri.query().unwrap_or("");
                let keys: Vec<&str> = query.split('&').filter(|p| p.starts_with("key=")).collect();
                keys == [declared.as_str()]
            }
            _ => {
                let auth: Vec<_> = parts.headers.get_all("authorization").iter().collect();
                auth.len() == 1 && auth[0].as_bytes() == declared.as_bytes()
            }
        };
        assert_eq!(
            at_declared, injected,
            "{} injected: {injected}, at its position: {at_declared}",
            ENVS[i]
        );
        for (place, bytes) in &places {
            let own = match i {
                1 => place == "target",
                _ => place == "header authorization",
            };
            if own && injected {
                continue;
            }
            for form in &forms(s) {
                assert!(
                    !contains(bytes, form.as_bytes()),
                    "secret {} in the {place}",
                    ENVS[i]
                );
            }
        }
    }
});

/// The forms of a secret looked for: raw, as the query carries it, as the Basic value.
fn forms(s: &str) -> [String; 3] {
    [
        s.to_owned(),
        percent_encoded(s),
        STANDARD.encode(format!("svc:{s}")),
    ]
}

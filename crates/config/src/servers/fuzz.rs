//! Fuzz targets: the servers file and its header templates.
//!
//! Properties: arbitrary bytes never panic the parser; a generated file (mostly valid
//! entries, local, sandboxed and remote, with hostile names, paths, URLs and headers mixed
//! in) parses the same twice, and what it accepts holds every rule the parser states (names,
//! absolute sandbox paths, limits, URLs without credentials, plain http only to allowed
//! addresses, no gateway-owned header); a refusal names a server of the file (or is a
//! parse error, for values typed at parse time such as egress rules). A header
//! template that parses renders back to itself through the identity lookup and names only
//! valid credentials.

use gig_fuzz::fuzz;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use gig_policy::remote::{CREDENTIAL_REF, HeaderTemplate};

fn parse(bytes: &[u8]) -> Result<DeclaredServers, ServersFileError> {
    parse_servers_json(Path::new("servers.json"), bytes)
}

#[test]
fn fuzz_servers_file_arbitrary_bytes() {
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "\\PC{0,120}".prop_map(|s| format!("{{\"mcpServers\":{{\"a\":{s}}}}}").into_bytes()),
    ];
    fuzz("config/servers_file_bytes", file!(), 3000, bytes, |bytes| {
        let _ = parse(&bytes);
        Ok(())
    });
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z][a-z0-9_-]{0,12}",
        1 => Just(String::new()),
        1 => Just("@registry".to_owned()),
        1 => Just("a\u{7}b".to_owned()),
        1 => Just("n".repeat(129)),
        1 => Just("my server".to_owned()),
        1 => Just("../up".to_owned()),
        1 => Just(".hidden".to_owned()),
        1 => Just("Svc.v2".to_owned()),
    ]
}

fn program() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("/usr/bin/server".to_owned()),
        2 => Just("npx".to_owned()),
        1 => Just("   ".to_owned()),
        1 => Just("/bin/a\0b".to_owned()),
    ]
}

fn local() -> impl Strategy<Value = Value> {
    let sandbox = (
        proptest::collection::vec(prop_oneof![Just("/opt/data"), Just("rel/path")], 0..2),
        proptest::option::of(prop_oneof![Just(0u64), Just(64), Just(1u64 << 30)]),
        proptest::option::of(prop_oneof![Just(1u64 << 20), Just(256u64 << 20)]),
        proptest::collection::vec(
            prop_oneof![
                Just("api.example.com"),
                Just("*.example.org:443"),
                Just("bad host")
            ],
            0..2,
        ),
    )
        .prop_map(|(bind, procs, memory, egress)| {
            let mut sb = json!({"bindRo": bind, "egress": egress});
            if let Some(p) = procs {
                sb["maxProcesses"] = json!(p);
            }
            if let Some(m) = memory {
                sb["memoryBytes"] = json!(m);
            }
            sb
        });
    (
        program(),
        proptest::collection::vec("\\PC{0,6}", 0..3),
        proptest::collection::btree_map(
            prop_oneof![4 => "[A-Z_]{1,6}", 1 => Just("A=B".to_owned())],
            "\\PC{0,6}",
            0..2,
        ),
        proptest::option::of(sandbox),
        proptest::option::of(prop_oneof![Just("stdio"), Just("sse")]),
    )
        .prop_map(|(command, args, env, sandbox, transport)| {
            let mut s = json!({"command": command, "args": args, "env": env});
            if let Some(sb) = sandbox {
                s["sandbox"] = sb;
            }
            if let Some(t) = transport {
                s["type"] = json!(t);
            }
            s
        })
}

fn remote() -> impl Strategy<Value = Value> {
    let url = prop_oneof![
        4 => Just("https://mcp.example.com/mcp"),
        1 => Just("http://10.0.0.5:8080/mcp"),
        1 => Just("https://user:pw@mcp.example.com/"),
        1 => Just("ftp://mcp.example.com/"),
        1 => Just("not a url"),
    ];
    let header = (
        prop_oneof![
            4 => Just("Authorization"),
            1 => Just("Host"),
            1 => Just("Bad Name"),
            1 => Just("mcp-session-id"),
        ],
        prop_oneof![
            3 => Just("Bearer ${credential:gh-token}"),
            1 => Just("${credential:unclosed"),
            1 => Just("${credential:bad name}"),
            1 => Just("literal\nvalue"),
            1 => Just("plain"),
        ],
    );
    (
        url,
        proptest::collection::vec(header, 0..2),
        proptest::option::of(prop_oneof![Just("http"), Just("sse"), Just("stdio")]),
        any::<bool>(),
    )
        .prop_map(|(url, headers, transport, allow)| {
            let headers: serde_json::Map<String, Value> = headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), json!(v)))
                .collect();
            let mut s = json!({"url": url, "headers": headers});
            if let Some(t) = transport {
                s["type"] = json!(t);
            }
            if allow {
                s["allowAddresses"] = json!(["10.0.0.0/8"]);
            }
            s
        })
}

fn file() -> impl Strategy<Value = Value> {
    let server = (
        prop_oneof![3 => local(), 2 => remote()],
        prop::bool::weighted(0.15),
    )
        .prop_map(|(mut s, disabled)| {
            if disabled {
                s["disabled"] = json!(true);
            }
            s
        });
    proptest::collection::btree_map(name(), server, 0..4).prop_map(|servers| {
        let servers: serde_json::Map<String, Value> = servers.into_iter().collect();
        json!({"mcpServers": servers})
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[test]
fn fuzz_servers_file_structured() {
    fuzz("config/servers_file", file!(), 1500, file(), |doc| {
        let bytes = serde_json::to_vec(&doc).unwrap();
        let result = parse(&bytes);
        prop_assert_eq!(format!("{result:?}"), format!("{:?}", parse(&bytes)));
        let servers = doc["mcpServers"].as_object().unwrap();
        let declared = match result {
            Ok(d) => d,
            Err(ServersFileError::Server { name, .. }) => {
                prop_assert!(servers.contains_key(&name), "{} is not in the file", name);
                return Ok(());
            }
            // Values typed at parse time (egress rules, addresses) refuse the whole file.
            Err(ServersFileError::Parse { .. }) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        };
        let enabled: Vec<&String> = servers
            .iter()
            .filter(|(_, s)| s.get("disabled") != Some(&json!(true)))
            .map(|(n, _)| n)
            .collect();
        prop_assert_eq!(declared.local.len() + declared.remote.len(), enabled.len());
        for spec in &declared.local {
            prop_assert!(
                valid_name(spec.name.as_str()) && enabled.contains(&&spec.name.to_string())
            );
            let program = &spec.command.program;
            prop_assert!(!program.trim().is_empty() && !program.contains('\0'));
            prop_assert!(
                spec.command
                    .env
                    .keys()
                    .all(|k| !k.is_empty() && !k.contains('='))
            );
            if let Some(sb) = &spec.sandbox {
                prop_assert!(Path::new(program).is_absolute());
                prop_assert!(sb.bind_ro.iter().all(|p| p.is_absolute()));
                prop_assert!(sb.limits.max_processes.is_some_and(|p| p >= 1));
                prop_assert!(sb.limits.memory_bytes.is_some_and(|m| m >= 16 << 20));
                prop_assert!(sb.egress.validate().is_ok());
            }
        }
        for spec in &declared.remote {
            prop_assert!(
                valid_name(spec.name.as_str()) && enabled.contains(&&spec.name.to_string())
            );
            prop_assert!(matches!(spec.url.scheme(), "http" | "https"));
            prop_assert!(spec.url.host_str().is_some() && spec.url.username().is_empty());
            prop_assert!(spec.url.password().is_none());
            prop_assert!(spec.url.scheme() == "https" || !spec.allow_addresses.is_empty());
            for key in spec.headers.keys() {
                let lower = key.to_ascii_lowercase();
                prop_assert!(!matches!(
                    lower.as_str(),
                    "host"
                        | "content-length"
                        | "transfer-encoding"
                        | "connection"
                        | "mcp-session-id"
                ));
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_header_templates() {
    let text = proptest::collection::vec(
        prop_oneof![
            3 => "[ -~]{0,6}",
            2 => "[a-z0-9._-]{0,8}".prop_map(|n| format!("${{credential:{n}}}")),
            1 => Just("${credential:".to_owned()),
            1 => Just("}".to_owned()),
            1 => "\\PC{0,3}",
            1 => Just("\t".to_owned()),
            1 => Just("\r\n".to_owned()),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat());
    fuzz("config/header_templates", file!(), 3000, text, |text| {
        let Ok(template) = HeaderTemplate::parse(&text) else {
            return Ok(());
        };
        prop_assert!(!text.chars().any(|c| c.is_control() && c != '\t'));
        for name in template.credentials() {
            prop_assert!(!name.is_empty() && name.len() <= 128);
            prop_assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            );
        }
        let same: Result<String, ()> =
            template.render(|name| Ok(format!("${{credential:{name}}}")));
        prop_assert_eq!(same.unwrap(), text.clone());
        let rendered: Result<String, ()> = template.render(|_| Ok("SECRET".to_owned()));
        prop_assert!(!rendered.unwrap().contains(CREDENTIAL_REF));
        Ok(())
    });
}

//! The servers file (`gig_config::parse_servers_file`): an operator's file, often copied from
//! another client's configuration.
//!
//! Input: the file's bytes. Properties: parsing twice gives the same result; a refusal of one
//! server names a server of the file; what is accepted is exactly the file's enabled servers,
//! each holding the parser's rules (names, absolute programs and paths when sandboxed, limits,
//! a valid egress policy, URLs with a host and no credentials, plain http only to allowed
//! addresses, no gateway-owned header), and every header template renders back to itself.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use gig_config::{DeclaredServers, ServersFileError, parse_servers_file};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().unwrap());

fn parse(path: &Path) -> Result<DeclaredServers, ServersFileError> {
    parse_servers_file(path)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('@')
        && !name.chars().any(char::is_control)
}

fuzz_target!(|data: &[u8]| {
    let path: PathBuf = DIR.path().join("servers.json");
    std::fs::write(&path, data).unwrap();
    let result = parse(&path);
    assert_eq!(
        format!("{result:?}"),
        format!("{:?}", parse(&path)),
        "parses the same twice"
    );
    let file: Option<Value> = serde_json::from_slice(data).ok();
    let servers = file
        .as_ref()
        .and_then(|f| f.get("mcpServers"))
        .and_then(Value::as_object);
    let declared = match result {
        Ok(declared) => declared,
        Err(ServersFileError::Server { name, .. }) => {
            let servers = servers.expect("a refused server comes from a parsed file");
            assert!(servers.contains_key(&name), "{name:?} is not in the file");
            return;
        }
        Err(_) => return,
    };
    let servers = servers.expect("an accepted file has mcpServers");
    let enabled: Vec<&String> = servers
        .iter()
        .filter(|(_, s)| s.get("disabled") != Some(&Value::Bool(true)))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(declared.local.len() + declared.remote.len(), enabled.len());
    for spec in &declared.local {
        assert!(
            valid_name(&spec.name) && enabled.contains(&&spec.name),
            "{:?}",
            spec.name
        );
        let program = &spec.command.program;
        assert!(
            !program.trim().is_empty() && !program.contains('\0'),
            "{program:?}"
        );
        assert!(
            spec.command
                .env
                .keys()
                .all(|k| !k.is_empty() && !k.contains('='))
        );
        if let Some(sb) = &spec.sandbox {
            assert!(Path::new(program).is_absolute(), "{program:?}");
            assert!(sb.bind_ro.iter().all(|p| p.is_absolute()));
            assert!(sb.limits.max_processes.is_some_and(|p| p >= 1));
            assert!(sb.limits.memory_bytes.is_some_and(|m| m >= 16 << 20));
            assert!(sb.egress.validate().is_ok());
        }
    }
    for spec in &declared.remote {
        assert!(
            valid_name(&spec.name) && enabled.contains(&&spec.name),
            "{:?}",
            spec.name
        );
        assert!(matches!(spec.url.scheme(), "http" | "https"));
        assert!(spec.url.host_str().is_some() && spec.url.username().is_empty());
        assert!(spec.url.password().is_none());
        assert!(spec.url.scheme() == "https" || !spec.allow_addresses.is_empty());
        for (key, template) in &spec.headers {
            let lower = key.to_ascii_lowercase();
            assert!(
                !matches!(
                    lower.as_str(),
                    "host"
                        | "content-length"
                        | "transfer-encoding"
                        | "connection"
                        | "mcp-session-id"
                ),
                "{key:?}"
            );
            let same: Result<String, ()> =
                template.render(|name| Ok(format!("${{credential:{name}}}")));
            assert_eq!(
                same.unwrap(),
                template.literal(),
                "a template renders back to itself"
            );
            for name in template.credentials() {
                assert!(!name.is_empty() && name.len() <= 128, "{name:?}");
            }
        }
    }
});

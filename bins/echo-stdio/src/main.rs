//! `echo-stdio`: the smallest stdio MCP server that can stand behind the gateway in a benchmark.
//!
//! Newline-delimited JSON-RPC on stdin/stdout, one blocking loop, no async runtime and no MCP
//! library, so its own cost per call is a line parse and a line write: what the benchmark
//! measures beside it is the gateway's. It answers `initialize` (echoing the client's
//! protocol version when it knows it), `ping`, `tools/list` (one tool, `echo`) and
//! `tools/call` (`echo` returns its `text` argument as text content); notifications and
//! responses are ignored, any other method gets -32601.

#![forbid(unsafe_code)]

use std::io::{self, BufRead, Write};

use serde_json::{Value, json};

const KNOWN_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
const DEFAULT_VERSION: &str = "2025-06-18";

/// The answer to one request: `Ok(result)` or `Err((code, message))`.
fn handle(method: &str, params: &Value) -> Result<Value, (i64, String)> {
    match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str);
            let version = asked
                .filter(|v| KNOWN_VERSIONS.contains(v))
                .unwrap_or(DEFAULT_VERSION);
            Ok(json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "echo-stdio", "version": env!("CARGO_PKG_VERSION")},
            }))
        }
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({
            "tools": [{
                "name": "echo",
                "description": "Returns the given text unchanged",
                "inputSchema": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                },
            }],
        })),
        "tools/call" => {
            let name = params.get("name").and_then(Value::as_str);
            if name != Some("echo") {
                return Err((-32602, format!("unknown tool {}", name.unwrap_or("(none)"))));
            }
            let text = params
                .get("arguments")
                .and_then(|a| a.get("text"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(json!({"content": [{"type": "text", "text": text}], "isError": false}))
        }
        other => Err((-32601, format!("method not found: {other}"))),
    }
}

/// The response line for one incoming line, or `None` for notifications and responses.
fn respond(line: &str) -> Option<Value> {
    let message: Value = match serde_json::from_str(line) {
        Ok(message) => message,
        Err(e) => {
            return Some(json!({
                "jsonrpc": "2.0", "id": null,
                "error": {"code": -32700, "message": format!("parse error: {e}")},
            }));
        }
    };
    // A notification has no id; a response (to a request we never make) has no method.
    let id = message.get("id")?.clone();
    let method = message.get("method").and_then(Value::as_str)?;
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    Some(match handle(method, &params) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, text)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": text}})
        }
    })
}

fn main() -> io::Result<()> {
    let stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    for line in stdin.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(response) = respond(&line) {
            serde_json::to_writer(&mut stdout, &response)?;
            stdout.write_all(b"\n")?;
            stdout.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialize_echoes_known_versions_only() {
        for (asked, expected) in [
            ("2025-03-26", "2025-03-26"),
            ("2025-11-25", "2025-11-25"),
            ("2026-07-28", DEFAULT_VERSION),
        ] {
            let line = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{asked}"}}}}"#
            );
            let r = respond(&line).expect("answered");
            assert_eq!(r["result"]["protocolVersion"], expected);
            assert_eq!(r["result"]["capabilities"], json!({"tools": {}}));
        }
    }

    #[test]
    fn call_echoes_text_and_unknown_method_is_32601() {
        let r = respond(
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
        )
        .expect("answered");
        assert_eq!(r["id"], "a");
        assert_eq!(r["result"]["content"][0]["text"], "hi");
        let r = respond(r#"{"jsonrpc":"2.0","id":2,"method":"nope"}"#).expect("answered");
        assert_eq!(r["error"]["code"], -32601);
        assert!(respond(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_none());
    }
}

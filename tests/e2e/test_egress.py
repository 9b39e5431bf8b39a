"""The egress proxy end to end, as root with real sandboxes (bubblewrap + veth + nftables):

- fetch-mcp sandboxed by the gateway with a credential: the upstream (an HTTPS server this test
  starts on loopback, with its own CA) receives the real key; the server, its environment and
  everything the MCP client sees hold only the placeholder, even when the upstream echoes the key;
  hosts outside the policy and the placeholder sent to a non-credential host are refused before
  anything reaches the upstream; the audit log names the credential, never its value.
- Real HTTP stacks (Python requests, httpx, httpx2; Node fetch and https) inside
  `gigmcp sandbox exec --allow-host`, reaching the upstream only through the proxy.

Needs root, bubblewrap, nft and ip: skipped with a message otherwise, failed on CI or with
GIG_REQUIRE_SANDBOX=1.
"""

import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from conftest import TARGET, connect, start_gateway, stop
from netlab import (
    TlsUpstream,
    egress_env,
    ip_tool,
    make_tls,
    nft_tool,
    node_binary,
    public_dir,
    python_packages,
    require_sandbox_net,
    sandbox_exec,
    world_traversable,
)

SERVER = "fetch"
SECRET_NAME = "api-key"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    require_sandbox_net()
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def upstream(tls):
    server = TlsUpstream(tls)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def other_upstream(tls, upstream):
    """other.example.test's own upstream: 127.0.0.2, on the same port as the main one."""
    server = TlsUpstream(tls, host="127.0.0.2", port=upstream.port)
    yield server
    server.stop()


# ------------------------------------------------------------------ credentials through the gateway


def gigmcp_secret_set(env: dict, value: str) -> None:
    done = subprocess.run(
        [str(TARGET / "gigmcp"), "secret", "set", SERVER, SECRET_NAME],
        input=value,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "GIG_LOG": "warn", **env},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def sandboxed_pids(program: Path) -> list[int]:
    """Host PIDs of processes running `program` (the sandboxed server, after bootstrap's exec)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if argv0 == str(program).encode():
            pids.append(int(entry.name))
    return pids


def audit_rows(db: Path, want: int, timeout: float = 30.0) -> list[dict]:
    """egress.request rows once at least `want` are there (the audit writer is asynchronous)."""
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            conn.row_factory = sqlite3.Row
            rows = [
                dict(r)
                for r in conn.execute(
                    "SELECT actor, action, target, result, detail FROM audit_log "
                    "WHERE action = 'egress.request' ORDER BY id"
                )
            ]
        if len(rows) >= want:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"expected {want} egress.request audit rows, found {len(rows)}: {rows}")


def text_of(result) -> str:
    return json.dumps(result.model_dump(mode="json"))


class CredentialSetup:
    """A gateway whose sandboxed fetch-mcp has one credential (API_KEY, for api.example.test)
    whose real value sits in the vault."""

    def __init__(self, tmp_path, sandbox_bins, tls, upstream, **extra_env):
        self.real = "sk-live-" + secrets.token_hex(20)
        # Every form the key may take on the wire: raw, and percent-encoded in a query string
        # (the proxy encodes everything but letters and digits; other encoders leave '-' alone).
        self.forms = {
            self.real,
            quote(self.real, safe=""),
            "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in self.real),
        }
        master = secrets.token_hex(32)
        # The proxy's CA certificate is bound into the sandbox from GIG_DATA_DIR/public: the sandbox's user
        # must be able to traverse to it (pytest makes tmp_path 0700).
        tmp_path.chmod(0o711)
        self.data_dir = tmp_path / "data"
        gigmcp_secret_set({"GIG_MASTER_KEY": master, "GIG_DATA_DIR": str(self.data_dir)}, self.real)
        port = upstream.port
        self.fetch_mcp = sandbox_bins["fetch-mcp"]
        servers = {
            SERVER: {
                "command": str(self.fetch_mcp),
                "sandbox": {
                    "egress": [f"api.example.test:{port}", f"other.example.test:{port}"],
                    "allowAddresses": ["127.0.0.1/32", "127.0.0.2/32"],
                    "credentials": [
                        {
                            "env": "API_KEY",
                            "secret": SECRET_NAME,
                            "hosts": ["api.example.test"],
                            "inject": {"type": "header", "name": "Authorization", "template": "Bearer {}"},
                        }
                    ],
                },
            }
        }
        self.gw = start_gateway(
            tmp_path,
            servers,
            GIG_MASTER_KEY=master,
            GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
            GIG_SANDBOX_POOL="198.19.201.0/24",
            **egress_env(tls),
            **extra_env,
        )

    def leaked(self, text: str) -> bool:
        return any(f in text for f in self.forms)


@pytest.mark.anyio
async def test_credential_is_injected_only_for_its_host_and_never_seen_by_the_server(
    tmp_path, sandbox_bins, tls, upstream, other_upstream
):
    require_sandbox_net()
    setup = CredentialSetup(tmp_path, sandbox_bins, tls, upstream)
    gw, real, leaked, data_dir, fetch_mcp = setup.gw, setup.real, setup.leaked, setup.data_dir, setup.fetch_mcp
    port = upstream.port
    api = f"https://api.example.test:{port}"
    other = f"https://other.example.test:{port}"
    try:
        async with connect(gw) as session:
            names = {t.name for t in (await session.list_tools()).tools}
            assert {"fetch_fetch", "fetch_env"} <= names, gw.logs()

            # The server's own view of its environment: the placeholder, never the key.
            env = (await session.call_tool("fetch_env", {})).structured_content["env"]
            placeholder = env.get("API_KEY", "")
            assert placeholder.startswith("gigph_") and len(placeholder) >= 32, env
            assert not leaked(json.dumps(env))
            assert env["HTTPS_PROXY"].startswith("http://198.19.201.")
            # ... and the host's view of the sandboxed process (what a debugger inside would see).
            pids = sandboxed_pids(fetch_mcp)
            assert pids, "the sandboxed fetch-mcp process was not found"
            for pid in pids:
                environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
                assert f"API_KEY={placeholder}" in environ.split("\0")
                assert not leaked(environ)

            # 1. To the credential's host: the upstream gets the real key in the declared header,
            # the server gets the upstream's echo back with the key scrubbed.
            before = upstream.count()
            result = await session.call_tool(
                "fetch_fetch",
                {
                    "url": f"{api}/v1/echo",
                    "headers": {"Authorization": f"Bearer {placeholder}"},
                },
            )
            assert not result.is_error, text_of(result)
            assert upstream.count() == before + 1
            seen = upstream.requests[-1]
            assert seen["headers"]["authorization"] == f"Bearer {real}"
            out = text_of(result)
            assert result.structured_content["status"] == 200
            assert not leaked(out), f"the real key reached the MCP client: {out}"
            assert placeholder in result.structured_content["headers"]["x-echo-authorization"]

            # 1b. The placeholder anywhere but the declared header, even to its own host (the
            # query, a body an upstream could reflect in some other form): refused.
            for args in (
                {"url": f"{api}/v1/echo?key={placeholder}"},
                {"url": f"{api}/v1/chat", "method": "POST", "body": json.dumps({"prompt": placeholder})},
            ):
                result = await session.call_tool("fetch_fetch", args)
                assert result.is_error or result.structured_content["status"] == 403, (args, text_of(result))
            assert upstream.count() == before + 1, upstream.requests[before + 1:]

            # 1c. The proxy listener serves only the sandbox's own address: the host (any local
            # user) connecting to it gets nothing, so it cannot borrow the injected key.
            proxy_host, proxy_port = env["HTTPS_PROXY"].removeprefix("http://").rsplit(":", 1)
            with socket.create_connection((proxy_host, int(proxy_port)), timeout=5) as s:
                s.sendall(f"CONNECT api.example.test:{port} HTTP/1.1\r\nHost: api.example.test:{port}\r\n\r\n".encode())
                s.settimeout(5)
                try:
                    answer = s.recv(100)
                except ConnectionResetError:
                    answer = b""
                assert answer == b"", f"the proxy answered a connection from the host: {answer!r}"
            assert upstream.count() == before + 1

            # 2. The header is injected on every request to the credential's host.
            result = await session.call_tool("fetch_fetch", {"url": f"{api}/v1/plain"})
            assert not result.is_error, text_of(result)
            assert upstream.requests[-1]["headers"]["authorization"] == f"Bearer {real}"
            assert not leaked(text_of(result))

            # 3. A host the policy does not list: refused, nothing reaches the upstream.
            before = upstream.count()
            other_before = other_upstream.count()
            result = await session.call_tool("fetch_fetch", {"url": f"https://denied.test:{port}/"})
            assert result.is_error or result.structured_content["status"] == 403, text_of(result)
            # 4. An allowed host on a port the policy does not list.
            result = await session.call_tool("fetch_fetch", {"url": f"https://api.example.test:{port + 1}/"})
            assert result.is_error or result.structured_content["status"] == 403, text_of(result)
            assert upstream.count() == before

            # 5. The placeholder sent to an allowed host that is not the credential's: refused as
            # exfiltration, in a header, the query and the body alike.
            for args in (
                {"url": f"{other}/collect", "headers": {"X-Api-Key": placeholder}},
                {"url": f"{other}/collect?k={placeholder}"},
                {"url": f"{other}/collect", "method": "POST", "body": json.dumps({"k": placeholder})},
                {"url": f"{other}/collect", "headers": {"Authorization": f"Bearer {placeholder}"}},
            ):
                result = await session.call_tool("fetch_fetch", args)
                assert result.is_error or result.structured_content["status"] == 403, (args, text_of(result))
                assert not leaked(text_of(result))
            assert upstream.count() == before, upstream.requests[before:]
            assert other_upstream.count() == other_before, other_upstream.requests[other_before:]

            # 6. The same host without the placeholder is fine, and gets no credential.
            result = await session.call_tool("fetch_fetch", {"url": f"{other}/public"})
            assert not result.is_error and result.structured_content["status"] == 200, text_of(result)
            assert other_upstream.count() == other_before + 1
            assert "authorization" not in other_upstream.requests[-1]["headers"]

            # 7. A Host header naming the other host does not move the credential: whatever the
            # proxy does, the key never reaches other.example.test's address ...
            other_before = other_upstream.count()
            result = await session.call_tool(
                "fetch_fetch", {"url": f"{api}/host-swap", "headers": {"Host": f"other.example.test:{port}"}}
            )
            assert not leaked(text_of(result))
            assert other_upstream.count() == other_before, other_upstream.requests[other_before:]
            # ... and naming the credential's host on a request to the other one does not bring it.
            result = await session.call_tool(
                "fetch_fetch", {"url": f"{other}/host-swap", "headers": {"Host": f"api.example.test:{port}"}}
            )
            assert not leaked(text_of(result))
            for seen in other_upstream.requests[other_before:]:
                assert not leaked(json.dumps(seen)), f"other.example.test received the key: {seen}"
            # (The proxy refuses a Host that does not match the CONNECT target outright.)
            swapped = [r for r in upstream.requests + other_upstream.requests if r["path"] == "/host-swap"]
            assert swapped == [], swapped

        rows = audit_rows(data_dir / "gigmcp.db", want=13)
    finally:
        stop(gw.proc)

    audit = json.dumps(rows)
    assert not leaked(audit), "the audit log holds the real key"
    assert all(r["actor"] == SERVER for r in rows)
    by_target: dict[str, list[dict]] = {}
    for r in rows:
        r["detail"] = json.loads(r["detail"])
        by_target.setdefault(r["target"], []).append(r)
    api_rows = by_target[f"api.example.test:{port}"]
    assert [r["result"] for r in api_rows[:3]] == ["ok", "exfiltration", "exfiltration"], api_rows
    ok_rows = [r for r in api_rows if r["result"] == "ok"]
    # The credential is named (by the variable the server sees), its value is not.
    assert len(ok_rows) >= 2 and all(r["detail"]["credentials"] == ["API_KEY"] for r in ok_rows), api_rows
    # Each record names the tool call that caused it.
    assert all(r["detail"]["toolCall"] == f"{SERVER}/fetch" for r in api_rows), api_rows
    assert [r["result"] for r in by_target[f"denied.test:{port}"]] == ["denied"]
    assert [r["result"] for r in by_target[f"api.example.test:{port + 1}"]] == ["denied"]
    other_results = [r["result"] for r in by_target[f"other.example.test:{port}"]]
    assert other_results[:5] == ["exfiltration"] * 4 + ["ok"], by_target[f"other.example.test:{port}"]
    for r in by_target[f"other.example.test:{port}"][:4]:
        assert r["detail"]["exfiltration"] is True and "API_KEY" in r["detail"]["reason"], r
    # Nothing at rest or in the logs holds the value either (the vault keeps it encrypted).
    for f in data_dir.rglob("*"):
        if f.is_file():
            assert real.encode() not in f.read_bytes(), f"{f} holds the real key in clear"
    assert not leaked(gw.logs()), "the gateway log holds the real key"


# ------------------------------------------------------------------ real HTTP stacks in sandbox exec

PY_PROBE = r'''
import json, sys
stack, url = sys.argv[1], sys.argv[2]
if stack == "requests":
    import requests
    r = requests.get(url, timeout=30)
    status, body, lib = r.status_code, r.text, "requests " + requests.__version__
elif stack == "httpx":
    import httpx
    r = httpx.get(url, timeout=30)
    status, body, lib = r.status_code, r.text, "httpx " + httpx.__version__
elif stack == "httpx2":
    import httpx2
    r = httpx2.get(url, timeout=30)
    status, body, lib = r.status_code, r.text, "httpx2 " + httpx2.__version__
print(json.dumps({"status": status, "body": body, "lib": lib}))
'''

NODE_PROBE = r"""
import https from 'node:https';
const [mode, url] = process.argv.slice(2);
if (mode === 'fetch') {
  const r = await fetch(url);
  console.log(JSON.stringify({ status: r.status, body: await r.text(), lib: 'node fetch ' + process.version }));
} else {
  const { status, body } = await new Promise((resolve, reject) => {
    https.get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    }).on('error', reject);
  });
  console.log(JSON.stringify({ status, body, lib: 'node https ' + process.version }));
}
"""

SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.fixture(scope="module")
def python_kit():
    """A 0755 directory with the probe script and copies of the HTTP libraries, run by the
    system interpreter inside the sandbox (the test venv's interpreter may sit under /root)."""
    require_sandbox_net()
    if not SYSTEM_PYTHON.exists():
        pytest.fail(f"{SYSTEM_PYTHON} is missing: install Debian's python3")
    version = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(*sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    if version != [str(v) for v in sys.version_info[:2]]:
        pytest.fail(f"{SYSTEM_PYTHON} is Python {'.'.join(version)}, the test venv {sys.version_info[:2]}: "
                    "the copied packages would not import")
    kit = public_dir("gig-e2e-pykit-")
    python_packages(["requests", "httpx", "httpx2"], kit)
    (kit / "probe.py").write_text(PY_PROBE)
    (kit / "probe.py").chmod(0o644)
    yield kit
    import shutil

    shutil.rmtree(kit, ignore_errors=True)


@pytest.fixture(scope="module")
def node_kit():
    require_sandbox_net()
    node = node_binary()
    kit = public_dir("gig-e2e-nodekit-")
    if world_traversable(node):
        binary = node
    else:
        import shutil

        binary = kit / "node"
        shutil.copy(node, binary)
        binary.chmod(0o755)
    (kit / "probe.mjs").write_text(NODE_PROBE)
    (kit / "probe.mjs").chmod(0o644)
    yield binary, kit
    import shutil

    shutil.rmtree(kit, ignore_errors=True)


STACKS = ["requests", "httpx", "httpx2", "node-fetch", "node-https"]


def run_stack(stack, url, allow, bins, tls, python_kit, node_kit):
    if stack.startswith("node"):
        node, kit = node_kit
        command = [str(node), str(kit / "probe.mjs"), stack.removeprefix("node-"), url]
        binds = [kit] if node.parent == kit else [kit, node.parent]
    else:
        command = [str(SYSTEM_PYTHON), "-s", str(python_kit / "probe.py"), stack, url]
        binds = [python_kit]
    return sandbox_exec(command, bins["bootstrap"], egress_env(tls), allow=allow, binds=binds)


@pytest.mark.parametrize("stack", STACKS)
def test_http_stack_reaches_the_upstream_only_through_the_proxy(stack, sandbox_bins, tls, upstream, python_kit, node_kit):
    port = upstream.port
    path = f"/stack/{stack}"
    before = upstream.count()
    done = run_stack(stack, f"https://allowed.test:{port}{path}", [f"allowed.test:{port}"],
                     sandbox_bins, tls, python_kit, node_kit)
    assert done.returncode == 0, f"{stack} failed in the sandbox:\n{done.stdout}\n{done.stderr}"
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{stack}: {answer['lib']} -> {answer['status']}")
    assert answer["status"] == 200
    assert json.loads(answer["body"])["path"] == path
    assert upstream.count() == before + 1
    assert upstream.requests[-1]["path"] == path

    # The same client, a host outside the policy: no answer from the upstream, nothing arrives.
    denied = run_stack(stack, f"https://denied.test:{port}{path}", [f"allowed.test:{port}"],
                       sandbox_bins, tls, python_kit, node_kit)
    if denied.returncode == 0:
        assert json.loads(denied.stdout.strip().splitlines()[-1])["status"] != 200, denied.stdout
    assert upstream.count() == before + 1


def test_without_allow_host_there_is_no_network(sandbox_bins, tls, upstream, python_kit):
    env = sandbox_exec(["/usr/bin/env"], sandbox_bins["bootstrap"], egress_env(tls))
    assert env.returncode == 0, env.stderr
    assert "PROXY" not in env.stdout.upper(), env.stdout
    before = upstream.count()
    # Straight at the upstream's loopback port: inside, 127.0.0.1 is the sandbox's own.
    done = sandbox_exec(
        [str(SYSTEM_PYTHON), "-s", str(python_kit / "probe.py"), "requests", f"https://127.0.0.1:{upstream.port}/"],
        sandbox_bins["bootstrap"], egress_env(tls), binds=[python_kit],
    )
    assert done.returncode != 0 and "Connection refused" in done.stderr, done.stderr
    assert upstream.count() == before


@pytest.mark.anyio
@pytest.mark.parametrize("echo", ["echo-split", "echo-gzip"])
async def test_scrubbing_survives_chunk_boundaries_and_compression(echo, tmp_path, sandbox_bins, tls, upstream):
    """The upstream echoes the key cut across two chunks sent apart, or gzip-compressed although
    the proxy asked for identity: neither may carry the key to the server."""
    require_sandbox_net()
    setup = CredentialSetup(tmp_path, sandbox_bins, tls, upstream)
    try:
        async with connect(setup.gw) as session:
            before = upstream.count()
            result = await session.call_tool("fetch_fetch", {"url": f"https://api.example.test:{upstream.port}/{echo}"})
            assert upstream.count() == before + 1
            assert upstream.requests[-1]["headers"]["authorization"] == f"Bearer {setup.real}"
            out = text_of(result)
            assert not setup.leaked(out), f"the real key reached the MCP client: {out}"
            if not result.is_error and result.structured_content["status"] == 200:
                body = result.structured_content["body"]
                if result.structured_content["headers"].get("content-encoding") == "gzip":
                    pytest.fail(f"the proxy passed a compressed body through unscrubbed: {body!r}")
                assert json.loads(body)["authorization"].startswith("Bearer gigph_"), body
            print(f"{echo}: {out[:300]}")
    finally:
        stop(setup.gw.proc)


# ------------------------------------------------------------------ clean shutdown


def start_egress_gateway(tmp_path, sandbox_bins, tls, **env):
    tmp_path.chmod(0o711)
    servers = {SERVER: {"command": str(sandbox_bins["fetch-mcp"]), "sandbox": {"egress": ["allowed.test:443"]}}}
    return start_gateway(tmp_path, servers, GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
                         GIG_SANDBOX_POOL="198.19.203.0/24", **egress_env(tls), **env)


def host_links(prefix: str) -> list[str]:
    out = subprocess.run([ip_tool(), "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return [link["ifname"] for link in json.loads(out) if link["ifname"].startswith(prefix)]


def owned_networking(gw) -> tuple[str, str]:
    """The link-name prefix and firewall table the gateway claimed (its start-up line says)."""
    found = re.search(r"links=(\S+)\* table=(\S+)", gw.logs())
    assert found, f"no sandbox networking line:\n{gw.logs()[-2000:]}"
    return found.group(1), found.group(2)


def table_exists(table: str) -> bool:
    return subprocess.run([nft_tool(), "list", "table", "inet", table], capture_output=True).returncode == 0


@pytest.mark.anyio
async def test_gateway_shutdown_removes_its_sandbox_links(tmp_path, sandbox_bins, tls):
    require_sandbox_net()
    gw = start_egress_gateway(tmp_path, sandbox_bins, tls)
    links, _ = owned_networking(gw)
    try:
        async with connect(gw) as session:
            await session.call_tool("fetch_env", {})
            assert host_links(links), "the sandboxed server has no link on the host"
    finally:
        stop(gw.proc)
    assert gw.proc.returncode == 0, gw.logs()
    assert host_links(links) == []


def test_gateway_shutdown_removes_its_firewall_table(tmp_path, sandbox_bins, tls):
    require_sandbox_net()
    gw = start_egress_gateway(tmp_path, sandbox_bins, tls)
    _, table = owned_networking(gw)
    assert table_exists(table)
    stop(gw.proc)
    assert gw.proc.returncode == 0, gw.logs()
    assert not table_exists(table), "the gateway left its firewall table behind"


@pytest.mark.anyio
async def test_two_gateways_on_one_host_keep_their_own_networking(tmp_path, sandbox_bins, tls):
    """The second gateway once deleted the first's live links and firewall table as "stale".
    Now each claims its own share (names, table, addresses) and leaves the other's alone."""
    require_sandbox_net()
    tmp_path.chmod(0o711)  # sandboxes run as unprivileged users and must reach each data dir's public files
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_egress_gateway(tmp_path / "a", sandbox_bins, tls)
    try:
        links_a, table_a = owned_networking(first)
        async with connect(first) as session:
            await session.call_tool("fetch_env", {})
        before = host_links(links_a)
        assert before
        second = start_egress_gateway(tmp_path / "b", sandbox_bins, tls)
        try:
            links_b, table_b = owned_networking(second)
            assert (links_b, table_b) != (links_a, table_a)
            async with connect(second) as session:
                await session.call_tool("fetch_env", {})
            assert host_links(links_b)
            assert host_links(links_a) == before, "the second gateway took the first's links"
            assert table_exists(table_a) and table_exists(table_b)
        finally:
            stop(second.proc)
        assert second.proc.returncode == 0, second.logs()
        assert host_links(links_b) == [] and not table_exists(table_b)
        # The first is untouched by the second's start and its stop.
        assert host_links(links_a) == before and table_exists(table_a)
        async with connect(first) as session:
            assert (await session.call_tool("fetch_env", {})).is_error is not True
    finally:
        stop(first.proc)
    assert not table_exists(table_a)

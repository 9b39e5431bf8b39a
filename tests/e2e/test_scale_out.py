"""Scale-out: two gateway replicas sharing one real PostgreSQL behind a real load balancer
(Debian's haproxy) that keeps each `Mcp-Session-Id` on the replica that opened it and each
browser on one replica (its sign-in is sealed there).

Changes made through one replica reach the other: an install (its reconciler), a credential
(the vault is the database), a profile token and its revocation (the resolver re-reads the
store). Killing the replica that holds a session: the load balancer sends the client to the
other, which answers 404, and a new session works there. Stateless 2026-07-28 requests work on
either. No audit row is lost. Each replica runs its own sandbox and owns its own networking.
Propagation times are printed, not asserted (timing does not belong in tests); docs/deployment.md
has them."""

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from conftest import (
    REPO,
    USERS,
    Gateway,
    connect,
    csrf_headers,
    echo_server,
    free_port,
    start_gateway,
    stop,
    wait_port,
)
from loadgen import stateless_tool_call
from netlab import require_sandbox_net
from oidc import OidcProvider, client, login
from test_api_servers import install
from test_egress import owned_networking
from test_install import echo_and_fetch_index, registry, world_reachable  # noqa: F401 (fixture)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def postgres(tmp_path):
    """A throwaway PostgreSQL of this test's own (scripts/pg-test.sh); returns (url, stop, its
    directory for `pg-test.sh halt|resume`)."""
    directory = f"/tmp/gig-scale-{uuid.uuid4().hex[:8]}"
    os.makedirs(directory, mode=0o755)
    port = free_port()
    url = subprocess.run([str(REPO / "scripts" / "pg-test.sh"), "start", f"{directory}/pg", str(port)],
                         capture_output=True, text=True, timeout=300, check=True).stdout.strip()
    return url, lambda: (subprocess.run([str(REPO / "scripts" / "pg-test.sh"), "stop", f"{directory}/pg"],
                                        capture_output=True, timeout=120), shutil.rmtree(directory, True)), \
        f"{directory}/pg"


def start_haproxy(tmp_path, front: int, replicas: dict[str, int]) -> subprocess.Popen:
    assert os.path.exists(HAPROXY), "haproxy missing: run tests/peers/install-peers.sh (make peers)"
    servers = "\n".join(
        f"    server {name} 127.0.0.1:{port} check inter 300ms fall 2 rise 1 cookie {name}"
        for name, port in replicas.items())
    config = tmp_path / "haproxy.cfg"
    config.write_text(f"""global
    maxconn 512
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    option redispatch
    retries 1
frontend gateway
    bind 127.0.0.1:{front}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /healthz
    # An MCP session stays where it was opened; a browser stays where it signed in.
    stick-table type string len 64 size 100k expire 30m
    stick match req.hdr(mcp-session-id)
    stick store-response res.hdr(mcp-session-id)
    cookie GIGREPLICA insert indirect nocache httponly
{servers}
""")
    return run_haproxy(config, front, tmp_path / "haproxy.log")


def run_haproxy(config: Path, front: int, log: Path) -> subprocess.Popen:
    """HAProxy with `config`, in the foreground (stopped by PID), once `front` accepts."""
    assert os.path.exists(HAPROXY), "haproxy missing: run tests/peers/install-peers.sh (make peers)"
    proc = subprocess.Popen([HAPROXY, "-f", str(config), "-db"], stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))
    try:
        wait_port(front)
    except BaseException:
        stop(proc)
        raise
    return proc


def wait_until(check, what: str, timeout: float = 60.0) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout}s"
        time.sleep(0.1)
    took = time.monotonic() - started
    print(f"scale-out: {what} after {took:.2f}s")
    return took


def state_on(base: str, http, name: str) -> str | None:
    listed = http.get(f"{base}/api/servers", timeout=10).json()["servers"]
    return next((s["state"] for s in listed if s["name"] == name), None)


def mcp_init(base: str, token: str) -> requests.Response:
    return requests.post(f"{base}/mcp", timeout=30, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"})


def stateless_call(base: str, token: str, message: str) -> requests.Response:
    return stateless_tool_call(f"{base}/mcp", token, "plain_echo", {"message": message})


@pytest.mark.anyio
async def test_two_replicas_behind_haproxy(tmp_path, sandbox_bins, registry):
    require_sandbox_net()
    database, stop_database, _ = postgres(tmp_path)
    front = free_port()
    base = f"http://127.0.0.1:{front}"
    token = secrets.token_hex(24)
    idp = OidcProvider.start(clients=[client(f"{base}/api/auth/callback")], users=USERS)
    index = echo_and_fetch_index(tmp_path, registry)
    shared = {
        "GIG_DATABASE_URL": database, "GIG_MASTER_KEY": secrets.token_hex(32), "GIG_BEARER_TOKEN": token,
        "GIG_PUBLIC_URL": base, "GIG_OIDC_ISSUER": idp.issuer, "GIG_OIDC_CLIENT_ID": "gig-gateway",
        "GIG_OIDC_CLIENT_SECRET": "gig-test-secret", "GIG_OIDC_ROLE_MAP": "gig-admins=admin,gig-ops=operator",
        "GIG_BOOTSTRAP": str(sandbox_bins["bootstrap"]), "GIG_SANDBOX_POOL": "198.19.208.0/24", **index.env(),
    }
    replicas: dict[str, Gateway] = {}
    homes = {}
    lb = None
    try:
        for name in ("a", "b"):
            homes[name] = world_reachable(tmp_path / name)
            replicas[name] = start_gateway(homes[name], {"plain": echo_server()}, **shared)
        a, b = replicas["a"], replicas["b"]
        lb = start_haproxy(tmp_path, front, {"a": int(a.base.rsplit(":", 1)[1]), "b": int(b.base.rsplit(":", 1)[1])})

        # Signed in through the load balancer; the session is in the database, so either
        # replica knows it.
        admin = requests.Session()
        assert login(admin, f"{base}/api/auth/login", "alice").status_code == 302
        front_gw = Gateway(f"{base}/mcp", base, token, None, a.log)
        for replica in (a, b):
            assert admin.get(f"{replica.base}/api/me", timeout=10).status_code == 200

        # An install through the front reaches both replicas, each in its own sandbox and
        # its own share of the host's networking.
        assert install(front_gw, admin, "echo")[-1][0] == "done"
        for replica in (a, b):
            wait_until(lambda r=replica: state_on(r.base, admin, "echo") == "up",
                       f"installed echo up on replica {replica.base}")
        assert owned_networking(a) != owned_networking(b)

        # A credential set through one replica is there for the other (the vault is the store).
        assert install(front_gw, admin, "fetch")[-1][0] == "done"
        wait_until(lambda: state_on(b.base, admin, "fetch") == "up", "fetch up on b")
        secret = "sk-scale-out-0123456789"
        put = admin.put(f"{a.base}/api/servers/fetch/credentials/api-key", json={"value": secret},
                        headers={**csrf_headers(a, admin), "Origin": base})
        assert put.status_code == 204, put.text
        listed = admin.get(f"{b.base}/api/servers/fetch/credentials", timeout=10).json()["credentials"]
        assert [c["name"] for c in listed] == ["api-key"]

        # A profile token made through one replica works on the other; revoked through one,
        # the other refuses it (its resolver re-reads the store).
        profile = admin.post(f"{a.base}/api/profiles", json={"name": "scale", "tools": ["plain_echo"]},
                             headers={**csrf_headers(a, admin), "Origin": base})
        assert profile.status_code == 201, profile.text
        made = admin.post(f"{a.base}/api/profiles/{profile.json()['id']}/tokens", json={"name": "t"},
                          headers={**csrf_headers(a, admin), "Origin": base})
        assert made.status_code == 201, made.text
        profile_token = made.json()["token"]
        assert mcp_init(b.base, profile_token).status_code == 200
        token_id = made.json()["id"]
        revoked = admin.delete(f"{a.base}/api/profiles/{profile.json()['id']}/tokens/{token_id}",
                               headers={**csrf_headers(a, admin), "Origin": base})
        assert revoked.status_code == 204, revoked.text
        wait_until(lambda: mcp_init(b.base, profile_token).status_code == 401, "revocation seen by b")

        # Stateless 2026-07-28 calls work on either replica.
        for replica in (a, b):
            r = stateless_call(replica.base, token, "either")
            assert r.status_code == 200 and "either" in r.text, r.text

        # Sessions through the load balancer stay on their replica for every call.
        calls = 0
        async with connect(front_gw) as session:
            for i in range(10):
                said = await session.call_tool("plain_echo", {"message": f"sticky {i}"})
                assert not said.is_error
                calls += 1
        opened = mcp_init(base, token)
        session_id = opened.headers["mcp-session-id"]
        headers = {"Authorization": f"Bearer {token}", "Mcp-Session-Id": session_id,
                   "MCP-Protocol-Version": "2025-06-18", "Accept": "application/json, text/event-stream"}
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        owner = next(n for n, r in replicas.items()
                     if requests.post(r.url, json=ping, headers=headers, timeout=10).status_code == 200)
        survivor = replicas["b" if owner == "a" else "a"]

        # The replica holding the session dies: the client is sent to the other, which does
        # not know it (404), and a new session works there.
        _, killed_table = owned_networking(replicas[owner])
        replicas[owner].proc.send_signal(signal.SIGKILL)
        replicas[owner].proc.wait(timeout=30)
        wait_until(lambda: requests.post(f"{base}/mcp", json=ping, headers=headers, timeout=10).status_code == 404,
                   "a killed replica's session answered 404 by the survivor")
        again = mcp_init(base, token)
        assert again.status_code == 200, again.text
        for i in range(5):
            r = stateless_call(base, token, f"after {i}")
            assert r.status_code == 200, r.text
            calls += 1

        # Every call is in the audit log, whichever replica served it.
        def audited() -> int:
            exported = admin.get(f"{survivor.base}/api/audit/export", params={"kind": "tool.call"}, timeout=30).text
            return sum(1 for line in exported.splitlines() if json.loads(line)["target"] == "plain/echo")
        wait_until(lambda: audited() >= calls + 2, "every tool call audited")  # + the two "either" calls
        assert audited() == calls + 2

        # The killed replica comes back on its own data: it reclaims what the kill left (its
        # firewall table) and serves again; stopped cleanly, it leaves nothing.
        back = start_gateway(homes[owner], {"plain": echo_server()}, **shared)
        replicas[owner] = back
        assert owned_networking(back)[1] == killed_table, "the freed slot is taken again"
        r = stateless_call(back.base, token, "back")
        assert r.status_code == 200 and "back" in r.text, r.text
        stop(back.proc)
        left = subprocess.run(["nft", "list", "table", "inet", killed_table], capture_output=True)
        assert left.returncode != 0, "the restarted replica left the killed one's table behind"
    finally:
        if lb:
            stop(lb)
        for replica in replicas.values():
            if replica.proc.poll() is None:
                stop(replica.proc)
        idp.stop()
        stop_database()

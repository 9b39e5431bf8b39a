"""Shared fixtures: the real `gigmcp` binary started on a free loopback port with a servers file.

Every process a test starts is stopped by PID at teardown, also when the test fails.
"""

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug"
PEERS = REPO / ".peers" / "bin"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, want: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == want:
                    return
        except Exception as e:  # noqa: BLE001 - not up yet
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready: {last}")


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class Gateway:
    url: str
    base: str
    token: str
    proc: subprocess.Popen
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_gateway(tmp_path: Path, servers: dict, port: int | None = None, **env) -> Gateway:
    port = port or free_port()
    token = secrets.token_hex(24)
    servers_file = tmp_path / "servers.json"
    servers_file.write_text(json.dumps({"mcpServers": servers}))
    log = tmp_path / "gateway.log"
    child_env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "GIG_BEARER_TOKEN": token,
        "GIG_MASTER_KEY": secrets.token_hex(32),
        "GIG_LISTEN": f"127.0.0.1:{port}",
        "GIG_DATA_DIR": str(tmp_path / "data"),
        "GIG_SERVERS_FILE": str(servers_file),
        **env,
    }
    proc = subprocess.Popen(
        [str(TARGET / "gigmcp")], env=child_env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    gw = Gateway(f"http://127.0.0.1:{port}/mcp", f"http://127.0.0.1:{port}", token, proc, log)
    try:
        wait_http(f"{gw.base}/readyz")
    except Exception:
        stop(proc)
        raise AssertionError(f"gateway did not become ready:\n{gw.logs()}")
    return gw


@contextlib.asynccontextmanager
async def connect(gw: "Gateway", **session_options):
    """An initialized Python SDK session (initialize handshake) to the gateway; `session_options`
    go to ClientSession (sampling_callback, ...)."""
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {gw.token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as client:
        async with streamable_http_client(gw.url, http_client=client) as (read, write):
            async with ClientSession(read, write, **session_options) as session:
                await session.initialize()
                yield session


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def echo_server() -> dict:
    return {"command": str(TARGET / "echo-mcp")}


def time_server() -> dict:
    return {"command": str(PEERS / "mcp-server-time"), "args": ["--local-timezone", "UTC"]}


@pytest.fixture
def gateway(tmp_path):
    gw = start_gateway(tmp_path, {"echo": echo_server(), "time": time_server()})
    yield gw
    stop(gw.proc)


@pytest.fixture
def sandbox_bins(tmp_path_factory):
    """echo-mcp, fetch-mcp, escape-probe and bootstrap copied into a 0755 directory: as root the
    sandbox runs as `nobody`, which must be able to reach what it binds even when the checkout is
    under /root."""
    import shutil

    base = tmp_path_factory.mktemp("sandbox-bins")
    base.chmod(0o755)
    for parent in base.parents:
        if str(parent) in ("/", "/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o755)
    copies = {}
    for name in ("echo-mcp", "fetch-mcp", "escape-probe", "bootstrap"):
        copy = base / name
        shutil.copy(TARGET / name, copy)
        copy.chmod(0o755)
        copies[name] = copy
    return copies


# ---------------------------------------------------------------- the control plane

import requests  # noqa: E402
from oidc import OidcProvider, client, login, user  # noqa: E402

USERS = {
    "alice": user("u-alice", "alice@example.test", "Alice", ["gig-admins"]),
    "bob": user("u-bob", "bob@example.test", "Bob", ["gig-viewers"]),
    "carol": user("u-carol", "carol@example.test", "Carol", []),
    "dave": user("u-dave", "dave@example.test", "Dave", ["gig-ops"]),
}


def fresh_database() -> dict:
    """`GIG_E2E_DATABASE=postgres` (make test runs the control-plane tests a second time so):
    a new database on the throwaway PostgreSQL of scripts/with-postgres.sh; else SQLite."""
    if os.environ.get("GIG_E2E_DATABASE") != "postgres":
        return {}
    admin_url = os.environ.get("GIG_TEST_DATABASE_URL")
    assert admin_url, "GIG_E2E_DATABASE=postgres needs scripts/with-postgres.sh (GIG_TEST_DATABASE_URL)"
    name = f"gig_e2e_{secrets.token_hex(6)}"
    subprocess.run(["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True, timeout=60)
    base, _, _ = admin_url.rpartition("/")
    return {"GIG_DATABASE_URL": f"{base}/{name}"}


def start_control_plane(tmp: Path, servers: dict, port: int | None = None, public: str | None = None, **env):
    """A real OpenID Provider and a gateway signing in to it; returns (idp, gateway). `public`:
    the gateway's public URL when something (a TLS front) stands before its `port`."""
    env = {**fresh_database(), **env}
    port = port or free_port()
    base = public or f"http://127.0.0.1:{port}"
    idp = OidcProvider.start(clients=[client(f"{base}/api/auth/callback")], users=USERS)
    try:
        gw = start_gateway(
            tmp,
            servers,
            port=port,
            GIG_PUBLIC_URL=base,
            GIG_OIDC_ISSUER=idp.issuer,
            GIG_OIDC_CLIENT_ID="gig-gateway",
            GIG_OIDC_CLIENT_SECRET="gig-test-secret",
            GIG_OIDC_ROLE_MAP="gig-admins=admin,gig-ops=operator,gig-viewers=viewer",
            **env,
        )
    except BaseException:
        idp.stop()
        raise
    return idp, gw


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    """One provider and one gateway with the control plane on, for the module."""
    tmp = tmp_path_factory.mktemp("control-plane")
    idp, gw = start_control_plane(tmp, {"echo": echo_server(), "time": time_server()})
    yield idp, gw
    stop(gw.proc)
    idp.stop()


def signed_in(gw, name: str) -> requests.Session:
    http = requests.Session()
    response = login(http, f"{gw.base}/api/auth/login", name)
    assert response.status_code == 302, response.text
    assert response.headers["location"] == "/"
    return http


def csrf_headers(gw, http) -> dict:
    me = http.get(f"{gw.base}/api/me").json()
    return {"X-CSRF-Token": me["csrf_token"], "Origin": gw.base}



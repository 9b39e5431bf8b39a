"""Backends beyond echo: fetch-mcp against a loopback HTTP server the test starts itself, and
structured JSON logs."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import TARGET, connect, start_gateway, stop


class Upstream(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server API
        body = json.dumps({"path": self.path, "agent": self.headers.get("User-Agent", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "yes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.anyio
async def test_fetch_mcp_through_the_gateway(tmp_path, upstream):
    gw = start_gateway(tmp_path, {"fetch": {"command": str(TARGET / "fetch-mcp")}}, GIG_LOG_FORMAT="json")
    try:
        async with connect(gw) as session:
            result = await session.call_tool("fetch_fetch", {"url": f"{upstream}/hello?x=1"})
        assert not result.is_error
        data = result.structured_content
        assert data["status"] == 200
        assert data["headers"]["x-upstream"] == "yes"
        assert json.loads(data["body"])["path"] == "/hello?x=1"
    finally:
        stop(gw.proc)
    # GIG_LOG_FORMAT=json: every log line is a JSON object.
    lines = [line for line in gw.logs().splitlines() if line.strip()]
    assert lines, "no logs"
    for line in lines:
        record = json.loads(line)
        assert "level" in record and "fields" in record


@pytest.mark.anyio
async def test_sandboxed_backend_serves_tools_through_the_gateway(tmp_path, sandbox_bins):
    servers = {
        "echo": {"command": str(sandbox_bins["echo-mcp"]), "sandbox": {}},
        "twin": {"command": str(sandbox_bins["echo-mcp"]), "sandbox": {}},
        "plain": {"command": str(TARGET / "echo-mcp")},
    }
    gw = start_gateway(tmp_path, servers, GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
                       GIG_SANDBOX_IDS="1879048192-1879048319")
    try:
        async with connect(gw) as session:
            names = {t.name for t in (await session.list_tools()).tools}
            assert {"echo_echo", "twin_echo", "plain_echo"} <= names
            result = await session.call_tool("echo_echo", {"message": "from inside the sandbox"})
            assert result.content[0].text == "from inside the sandbox"
        # Each sandboxed echo-mcp runs as a host user of its own from GIG_SANDBOX_IDS: not as
        # the gateway's user, not as nobody, and not as the other sandbox's user.
        import subprocess

        ps = subprocess.run(["ps", "-eo", "uid,gid,args"], capture_output=True, text=True).stdout
        sandboxed = [line.split() for line in ps.splitlines()
                     if str(sandbox_bins["echo-mcp"]) in line and "bwrap" not in line and "bootstrap" not in line]
        ids = {(int(uid), int(gid)) for uid, gid, *_ in sandboxed}
        assert len(sandboxed) == 2 and len(ids) == 2, ps
        assert all(1879048192 <= uid <= 1879048319 and gid == uid for uid, gid in ids), ids
    finally:
        stop(gw.proc)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def ancestors(pid: int) -> list[int]:
    """The parent chain of `pid`, up to the first process that has none."""
    chain = []
    while pid > 1:
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


@pytest.mark.anyio
async def test_a_plain_server_leaves_no_daemon_behind(tmp_path):
    """A plain server that daemonizes a child (a shell backgrounds it in a new session and
    exits) leaves a process nothing in the process tree links to the server: its parent is
    init. The server's cgroup still holds it, and stopping the gateway kills it."""
    import time

    gw = start_gateway(tmp_path, {"fixture": {"command": str(TARGET / "fixture-mcp")}})
    try:
        async with connect(gw) as session:
            daemon = int((await session.call_tool("fixture_daemonize", {})).content[0].text)
            assert alive(daemon)
            # Once its shell has exited, no process of the gateway's is among its ancestors.
            deadline = time.monotonic() + 10
            while gw.proc.pid in ancestors(daemon):
                assert time.monotonic() < deadline, f"{daemon} still under the gateway: {ancestors(daemon)}"
                time.sleep(0.05)
            with open(f"/proc/{daemon}/cgroup") as f:
                placed = f.read()
            assert "/gigmcp/plain.fixture-" in placed, f"not in the server's cgroup: {placed}"
    finally:
        stop(gw.proc)
    deadline = time.monotonic() + 30
    while alive(daemon):
        assert time.monotonic() < deadline, f"{daemon} outlived the gateway that ran its server"
        time.sleep(0.2)


@pytest.mark.anyio
async def test_what_a_killed_gateways_plain_server_left_is_reclaimed_at_the_next_start(tmp_path):
    """SIGKILL gives the gateway no teardown: the daemon its plain server started lives on in
    the server's cgroup. The next gateway's start finds that cgroup of a dead gateway, kills
    what it holds and removes it (decision 75)."""
    import signal
    import time

    gw = start_gateway(tmp_path, {"fixture": {"command": str(TARGET / "fixture-mcp")}})
    try:
        async with connect(gw) as session:
            daemon = int((await session.call_tool("fixture_daemonize", {})).content[0].text)
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait(timeout=30)
        time.sleep(0.5)
        assert alive(daemon), "the daemon died with the gateway: nothing left to reclaim"
    finally:
        stop(gw.proc)
    (tmp_path / "again").mkdir()
    again = start_gateway(tmp_path / "again", {"fixture": {"command": str(TARGET / "fixture-mcp")}})
    try:
        deadline = time.monotonic() + 30
        while alive(daemon):
            assert time.monotonic() < deadline, f"{daemon} outlived its dead gateway's next start"
            time.sleep(0.2)
    finally:
        stop(again.proc)

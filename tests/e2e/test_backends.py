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

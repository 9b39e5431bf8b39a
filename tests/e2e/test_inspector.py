"""The TypeScript side: the MCP Inspector CLI (npm @modelcontextprotocol/inspector 2.x)."""

import json
import subprocess

from conftest import PEERS


def inspector(gw, *args):
    cmd = [str(PEERS / "inspector-cli"), gw.url, "--stored-auth-only", "--header", f"Authorization: Bearer {gw.token}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_inspector_lists_and_calls_tools(gateway):
    listed = inspector(gateway, "--method", "tools/list")
    assert listed.returncode == 0, listed.stderr
    names = {t["name"] for t in json.loads(listed.stdout)["tools"]}
    assert {"echo_echo", "time_get_current_time"} <= names

    called = inspector(gateway, "--method", "tools/call", "--tool-name", "echo_echo", "--tool-arg", "message=from-inspector")
    assert called.returncode == 0, called.stderr
    result = json.loads(called.stdout)
    assert result["content"][0]["text"] == "from-inspector"

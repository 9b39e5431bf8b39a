"""Bench helper: the gateway's resident memory per idle initialize-era session.

Usage: idle-sessions.py MCP_URL TOKEN GATEWAY_PID N -> one JSON line. Opens N sessions
(initialize + notifications/initialized, each answered) and leaves them idle; RSS is read from
/proc before and after, once the allocator has settled."""

import json
import sys
import time

import requests


def rss_kib(pid: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


url, token, pid, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
http = requests.Session()
headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
           "Content-Type": "application/json"}
init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "idle", "version": "0"}}}
# Warm up allocator and caches with a few sessions first.
def open_session() -> None:
    r = http.post(url, json=init, headers=headers, timeout=30)
    r.raise_for_status()
    sid = r.headers["mcp-session-id"]
    r = http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                  headers={**headers, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}, timeout=30)
    assert r.status_code in (200, 202), r.status_code

for _ in range(50):
    open_session()
time.sleep(1)
before = rss_kib(pid)
for _ in range(n):
    open_session()
time.sleep(2)
after = rss_kib(pid)
print(json.dumps({"sessions": n, "rss_before_kib": before, "rss_after_kib": after,
                  "per_session_kib": (after - before) / n}))

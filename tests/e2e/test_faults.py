"""Faults, each checking that nothing is lost: the database stopped under traffic, the gateway
SIGKILLed mid-traffic, mid-install and mid-rotation, the data directory's filesystem full, a
sandboxed server killed by its memory limit.

Each test owns what it breaks (its own PostgreSQL, its own loop-mounted filesystem, its own
gateway) and removes it, also when it fails."""

import json
import subprocess
import threading
import time

import pytest
import requests

from conftest import (
    REPO,
    connect,
    csrf_headers,
    echo_server,
    signed_in,
    start_control_plane,
    start_gateway,
    stop,
)
from test_scale_out import postgres, stateless_call

PG_TEST = str(REPO / "scripts" / "pg-test.sh")


def wait_until(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_postgres_stopped_under_traffic_loses_no_acknowledged_write(tmp_path):
    url, stop_database, pg_dir = postgres(tmp_path)
    idp = gw = None
    calls = {"ok": 0, "failed": []}
    running = threading.Event()
    running.set()

    def traffic():
        i = 0
        while running.is_set():
            r = stateless_call(gw.base, gw.token, f"t{i}")
            if r.status_code == 200 and f"t{i}" in r.text:
                calls["ok"] += 1
            else:
                calls["failed"].append((r.status_code, r.text[:200]))
            i += 1
            time.sleep(0.02)

    try:
        idp, gw = start_control_plane(tmp_path, {"plain": echo_server()}, GIG_DATABASE_URL=url)
        admin = signed_in(gw, "alice")
        headers = csrf_headers(gw, admin)
        acknowledged = []

        def create_profile(name: str) -> requests.Response:
            r = admin.post(f"{gw.base}/api/profiles", json={"name": name, "tools": ["plain_echo"]},
                           headers=headers, timeout=30)
            if r.status_code == 201:
                acknowledged.append(r.json()["id"])
            return r

        assert create_profile("before").status_code == 201
        worker = threading.Thread(target=traffic)
        worker.start()
        wait_until(lambda: calls["ok"] >= 5, "calls flowing")

        subprocess.run([PG_TEST, "halt", pg_dir], check=True, capture_output=True, timeout=120)
        during = create_profile("during")
        assert during.status_code == 503, during.text
        assert during.json()["error"]["code"] == "store_unavailable", during.text
        assert "Retry-After" in during.headers
        # A signed-in user is not signed out by an outage: their session is not "unknown".
        me = admin.get(f"{gw.base}/api/me", timeout=30)
        assert me.status_code == 503, me.text
        ok_before = calls["ok"]
        wait_until(lambda: calls["ok"] >= ok_before + 20, "calls answered while the database is down")

        subprocess.run([PG_TEST, "resume", pg_dir], check=True, capture_output=True, timeout=120)
        after = wait_until(lambda: (r := create_profile("after")).status_code == 201 and r,
                           "a write succeeding after the database is back")
        assert after
        running.clear()
        worker.join(timeout=60)
        assert not calls["failed"], calls["failed"][:5]

        listed = {p["id"] for p in admin.get(f"{gw.base}/api/profiles", timeout=30).json()["profiles"]}
        assert set(acknowledged) <= listed, "an acknowledged profile is missing"

        # Every call answered is in the audit log, those made during the outage included.
        def audited() -> int:
            exported = admin.get(f"{gw.base}/api/audit/export", params={"kind": "tool.call"}, timeout=30)
            return sum(1 for line in exported.text.splitlines() if json.loads(line)["target"] == "plain/echo")
        wait_until(lambda: audited() >= calls["ok"], f"{calls['ok']} tool calls audited")
        assert audited() == calls["ok"]
        print(f"\n[faults] postgres halted under traffic: {calls['ok']} calls answered, "
              f"{len(acknowledged)} acknowledged writes kept, 0 lost")
    finally:
        running.clear()
        if gw:
            stop(gw.proc)
        if idp:
            idp.stop()
        stop_database()


@pytest.mark.anyio
async def test_a_server_killed_by_its_memory_limit_fails_its_caller_and_restarts(tmp_path, sandbox_bins):
    servers = {"hog": {"command": str(sandbox_bins["echo-mcp"]), "args": ["--fault-tools"],
                       "sandbox": {"memoryBytes": 64 << 20}}}
    gw = start_gateway(tmp_path, servers, GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]))
    try:
        async with connect(gw) as session:
            small = await session.call_tool("hog_allocate", {"megabytes": 8})
            assert not small.is_error and small.content[0].text == "held 8 MiB", small
            from mcp.shared.exceptions import MCPError
            with pytest.raises(MCPError) as killed:
                await session.call_tool("hog_allocate", {"megabytes": 512})
            said = str(killed.value)
            assert '"hog"' in said, f"the error does not name the server: {said}"
            print(f"\n[faults] a call whose server hit its memory limit got: {said}")

            async def answers():
                try:
                    result = await session.call_tool("hog_echo", {"message": "back"})
                    return not result.is_error and result.content[0].text == "back"
                except Exception:  # noqa: BLE001 - still restarting
                    return False
            deadline = time.monotonic() + 60
            while not await answers():
                assert time.monotonic() < deadline, f"hog never came back:\n{gw.logs()[-3000:]}"
                time.sleep(0.5)
        # The operator's log says why it ended (the cgroup counted the kill).
        assert "killed by its memory limit" in gw.logs(), gw.logs()[-3000:]
    finally:
        stop(gw.proc)

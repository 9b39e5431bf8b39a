"""Faults, each checking that nothing is lost: the database stopped under traffic, the gateway
SIGKILLed mid-traffic, mid-install and mid-rotation, the data directory's filesystem full, a
sandboxed server killed by its memory limit.

Each test owns what it breaks (its own PostgreSQL, its own loop-mounted filesystem, its own
gateway) and removes it, also when it fails."""

import json
import os
import secrets
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import (
    REPO,
    TARGET,
    connect,
    csrf_headers,
    echo_server,
    signed_in,
    start_control_plane,
    start_gateway,
    stop,
)
from netlab import require_sandbox_net
from test_egress import host_links, owned_networking, start_egress_gateway, table_exists
from test_egress import tls  # noqa: F401 (fixture)
from test_install import Index, cli_env, push_image, registry, wait_for, world_reachable  # noqa: F401 (fixture)
from loadgen import stateless_tool_call
from test_scale_out import postgres, stateless_call

PG_TEST = str(REPO / "scripts" / "pg-test.sh")


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
        wait_for(lambda: calls["ok"] >= 5, "calls flowing", timeout=60)

        subprocess.run([PG_TEST, "halt", pg_dir], check=True, capture_output=True, timeout=120)
        during = create_profile("during")
        assert during.status_code == 503, during.text
        assert during.json()["error"]["code"] == "store_unavailable", during.text
        assert "Retry-After" in during.headers
        # A signed-in user is not signed out by an outage: their session is not "unknown".
        me = admin.get(f"{gw.base}/api/me", timeout=30)
        assert me.status_code == 503, me.text
        ok_before = calls["ok"]
        wait_for(lambda: calls["ok"] >= ok_before + 20, "calls answered while the database is down", timeout=60)

        subprocess.run([PG_TEST, "resume", pg_dir], check=True, capture_output=True, timeout=120)
        wait_for(lambda: create_profile("after").status_code == 201,
                 "a write succeeding after the database is back", timeout=60)
        running.clear()
        worker.join(timeout=60)
        assert not calls["failed"], calls["failed"][:5]

        listed = {p["id"] for p in admin.get(f"{gw.base}/api/profiles", timeout=30).json()["profiles"]}
        assert set(acknowledged) <= listed, "an acknowledged profile is missing"

        # Every call answered is in the audit log, those made during the outage included.
        def audited() -> int:
            exported = admin.get(f"{gw.base}/api/audit/export", params={"kind": "tool.call"}, timeout=30)
            return sum(1 for line in exported.text.splitlines() if json.loads(line)["target"] == "plain/echo")
        wait_for(lambda: audited() >= calls["ok"], f"{calls['ok']} tool calls audited", timeout=60)
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


def processes_running(path: str) -> list[int]:
    """PIDs whose command line names `path` (a test's own copy of a server binary)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if path.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def cgroups_named(fragment: str) -> list[str]:
    """Cgroup directories (any hierarchy) whose name contains `fragment`."""
    hits = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        hits += [os.path.join(root, d) for d in dirs if fragment in d]
    return hits


def test_sigkill_mid_traffic_leaves_nothing_the_next_start_does_not_reclaim(tmp_path, sandbox_bins, tls):  # noqa: F811
    require_sandbox_net()
    key = {"GIG_MASTER_KEY": secrets.token_hex(32)}
    gw = start_egress_gateway(tmp_path, sandbox_bins, tls, **key)
    links, table = owned_networking(gw)
    fetch = str(sandbox_bins["fetch-mcp"])
    running = threading.Event()
    running.set()
    answered = []

    def traffic():
        while running.is_set():
            try:
                answered.append(stateless_tool_call(gw.url, gw.token, "fetch_env", {}).status_code)
            except requests.RequestException:
                answered.append(None)

    worker = threading.Thread(target=traffic)
    again = None
    try:
        worker.start()
        wait_for(lambda: answered.count(200) >= 5, "calls flowing", timeout=60)
        killed_pid = gw.proc.pid
        assert processes_running(fetch) and host_links(links) and table_exists(table)
        assert cgroups_named(f"-{killed_pid}-"), "the sandbox has no cgroup to check"
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait(timeout=30)
        running.clear()
        worker.join(timeout=30)
        # The sandbox dies with the gateway (bubblewrap's --die-with-parent; its pid namespace).
        wait_for(lambda: not processes_running(fetch), "the sandbox to die with its gateway", timeout=30)

        # The next start on the same data directory reclaims what the kill left and serves.
        again = start_egress_gateway(tmp_path, sandbox_bins, tls, **key)
        assert owned_networking(again) == (links, table), "the freed slot is taken again"
        assert not cgroups_named(f"-{killed_pid}-"), "the killed gateway's cgroups are left over"
        assert stateless_tool_call(again.url, again.token, "fetch_env", {}).status_code == 200
        stop(again.proc)
        assert again.proc.returncode == 0, again.logs()[-3000:]
        assert host_links(links) == [] and not table_exists(table)
        assert not cgroups_named(f"-{again.proc.pid}-") and not processes_running(fetch)
        print(f"\n[faults] SIGKILL under traffic ({answered.count(200)} calls answered): "
              "sandbox died with the gateway; links, table and cgroups reclaimed on restart")
    finally:
        running.clear()
        for proc in (gw.proc, again.proc if again else None):
            if proc and proc.poll() is None:
                stop(proc)


def test_sigkill_mid_install_leaves_it_done_or_not_started(tmp_path, sandbox_bins, registry):  # noqa: F811
    """The gateway installs `echo` at boot (GIG_INSTALL) and is killed at growing delays into
    it. After every kill the record is all or nothing: `gigmcp list` shows echo installed (and
    a start serves it) or not at all, and the image cache keeps no temp files of a dead run."""
    push_image(tmp_path, registry, "echo")
    index = Index(tmp_path)
    index.add("echo", f"{registry}/echo-mcp:0.1.0")
    index.sign()
    home = world_reachable(tmp_path / "gw")
    data = home / "data"
    key = secrets.token_hex(32)
    env = {"PATH": os.environ["PATH"], "GIG_BEARER_TOKEN": secrets.token_hex(16), "GIG_MASTER_KEY": key,
           "GIG_LISTEN": "127.0.0.1:0", "GIG_DATA_DIR": str(data), "GIG_LOG": "warn",
           "GIG_BOOTSTRAP": str(sandbox_bins["bootstrap"]), **index.env(install="echo")}
    states = []
    delay = 0.02
    while True:
        proc = subprocess.Popen([str(TARGET / "gigmcp")], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        listed = subprocess.run([str(TARGET / "gigmcp"), "list"], env=cli_env(data, key, index),
                                capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        installed = "echo\t0.1.0\tinstalled" in listed.stdout
        assert installed or "echo" not in listed.stdout, f"a half-written record: {listed.stdout!r}"
        states.append((round(delay, 3), installed))
        if installed:
            break
        assert delay < 30, f"the install never completed: {states}"
        delay *= 1.6
    assert len(states) > 1, "the first kill came after the install: nothing was interrupted"

    # Interrupted runs left no temp files for good: the next start's cache cleans them.
    gw = start_gateway(home, {}, GIG_MASTER_KEY=key, GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
                       **index.env(install="echo"))
    try:
        assert stateless_tool_call(gw.url, gw.token, "echo_echo", {"message": "whole"}).status_code == 200
        leftovers = [p.name for p in (data / "public" / "oci" / "tmp").iterdir()]
        assert len(leftovers) == 1, f"temp dirs of killed runs are left beside this run's: {leftovers}"
    finally:
        stop(gw.proc)
    print(f"\n[faults] SIGKILL mid-install at {len(states)} points {states}: always all or nothing")


def test_sigkill_mid_rotation_leaves_every_secret_under_one_key(tmp_path):
    """`gigmcp vault rotate` killed at growing delays: after every kill either one key (old or
    new) opens the vault with every secret sealed under it, or the vault refuses both and says
    to re-run the rotation, which finishes it. No secret is lost either way."""
    data = tmp_path / "data"
    old, new = secrets.token_hex(32), secrets.token_hex(32)
    base = {"PATH": os.environ["PATH"], "GIG_DATA_DIR": str(data), "GIG_LOG": "warn"}

    def gig(*args, key, check=True, **extra):
        out = subprocess.run([str(TARGET / "gigmcp"), *args], env={**base, "GIG_MASTER_KEY": key, **extra},
                             capture_output=True, text=True, timeout=60, input="value")
        assert not check or out.returncode == 0, f"{args}: {out.stderr}"
        return out

    count = 120
    for i in range(count):
        gig("secret", "set", "svc", f"s{i}", key=old)
    points = []
    delay, current = 0.005, old
    while True:
        target = new if current == old else old
        proc = subprocess.Popen([str(TARGET / "gigmcp"), "vault", "rotate"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                env={**base, "GIG_MASTER_KEY": current, "GIG_NEW_MASTER_KEY": target})
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        opened = {k: gig("secret", "list", key=k, check=False) for k in (old, new)}
        works = [k for k, out in opened.items() if out.returncode == 0]
        if not works:
            # Killed between its steps: both keys are refused with the way out, and re-running
            # the same rotation finishes it.
            said = opened[current].stderr
            assert "was interrupted; run `gigmcp vault rotate` again" in said, said
            gig("vault", "rotate", key=current, GIG_NEW_MASTER_KEY=target)
            works, state = [target], "interrupted, finished by re-running"
            opened[target] = gig("secret", "list", key=target)
        else:
            assert len(works) == 1, works
            state = "done" if works[0] == target else "not started"
        listed = opened[works[0]].stdout.splitlines()
        assert len(listed) == count and len({line.split("\t")[2] for line in listed}) == 1, listed[:3]
        points.append((round(delay, 3), state))
        current = works[0]
        if state == "done":
            break
        assert delay < 30, f"the rotation never completed before a kill: {points}"
        delay *= 1.5
    assert len(points) > 1, "the first kill came after the rotation: nothing was interrupted"
    # Every secret opens under the key that won: re-wrapping them all to a third key succeeds.
    third = secrets.token_hex(32)
    done = gig("vault", "rotate", key=current, GIG_NEW_MASTER_KEY=third)
    assert f"re-wrapped {count} secrets" in done.stdout, done.stdout + done.stderr
    print(f"\n[faults] SIGKILL mid-rotation at {len(points)} points {points}: one key each time, none lost")


class SmallFilesystem:
    """A 24 MiB ext4 filesystem on a loop device, mounted at `path` (no blocks reserved for
    root, so root fills it too); `fill` takes every free block, `free` gives them back."""

    def __init__(self, tmp_path):
        self.image = tmp_path / "small.img"
        self.path = tmp_path / "small"
        self.path.mkdir()
        subprocess.run(["truncate", "-s", "24M", str(self.image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(self.image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(self.image), str(self.path)], check=True)
        self.filler = self.path / "filler"

    def fill(self):
        with open(self.filler, "ab", buffering=0) as f:
            chunk = b"\0" * (1 << 16)
            try:
                while True:
                    f.write(chunk)
            except OSError:
                pass
        # What an allocator can still find in partial blocks goes too.
        with open(self.path / "crumbs", "ab", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 512)
            except OSError:
                pass

    def free(self):
        self.filler.unlink()
        (self.path / "crumbs").unlink()

    def remove(self):
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def test_a_full_data_directory_fails_writes_clearly_and_recovers(tmp_path):
    fs = SmallFilesystem(tmp_path)
    gw = idp = None
    try:
        fs.path.chmod(0o711)
        key = secrets.token_hex(32)
        # The control plane on: tool calls are audited then.
        idp, gw = start_control_plane(fs.path, {"plain": echo_server()}, GIG_MASTER_KEY=key)
        data = fs.path / "data"
        cli = {"PATH": os.environ["PATH"], "GIG_DATA_DIR": str(data), "GIG_MASTER_KEY": key, "GIG_LOG": "warn"}

        def set_secret(name, value="v"):
            return subprocess.run([str(TARGET / "gigmcp"), "secret", "set", "plain", name], env=cli,
                                  capture_output=True, text=True, timeout=60, input=value)

        assert set_secret("before").returncode == 0
        fs.fill()
        answered = 0
        for i in range(20):
            r = stateless_call(gw.base, gw.token, f"full {i}")
            assert r.status_code == 200 and f"full {i}" in r.text, r.text
            answered += 1
        # SQLite reuses its write-ahead log in place, so small writes may still fit: write
        # 60 KiB secrets until one is refused (the filesystem has 24 MiB in all). Every write
        # acknowledged must be there afterwards.
        stored_during = []
        for i in range(400):
            refused = set_secret(f"during{i}", secrets.token_hex(30 << 10))
            if refused.returncode != 0:
                break
            stored_during.append(f"during{i}")
        assert refused.returncode != 0, "every write fitted on a full disk"
        assert "disk is full" in refused.stderr and "panicked" not in refused.stderr, refused.stderr

        fs.free()
        assert set_secret("after").returncode == 0
        listed = subprocess.run([str(TARGET / "gigmcp"), "secret", "list"], env=cli, capture_output=True,
                                text=True, timeout=60, check=True).stdout
        names = {line.split("\t")[1] for line in listed.splitlines()}
        assert names == {"before", "after", *stored_during}, f"acknowledged writes lost: {listed}"

        # The calls made while the disk was full reach the audit log once space is back.
        import sqlite3

        def audited() -> int:
            with sqlite3.connect(f"file:{data / 'gigmcp.db'}?mode=ro", uri=True) as db:
                return db.execute("SELECT count(*) FROM audit_log WHERE action = 'tool.call'").fetchone()[0]
        wait_for(lambda: audited() >= answered,
                 f"the audit records held during the outage ({audited()} of {answered}):\n{gw.logs()[-3000:]}",
                 timeout=60)
        stop(gw.proc)
        assert gw.proc.returncode == 0, gw.logs()[-2000:]
        with sqlite3.connect(str(data / "gigmcp.db")) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        print(f"\n[faults] disk full: {answered} calls answered, the write refused ('disk is full'), "
              "audit caught up and integrity_check ok after space returned")
    finally:
        if gw and gw.proc.poll() is None:
            stop(gw.proc)
        if idp:
            idp.stop()
        fs.remove()

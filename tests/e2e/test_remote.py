"""Remote MCP servers behind the gateway: the reference server-everything over Streamable HTTP
and over the legacy HTTP+SSE transport, and the official Python SDK's server over TLS with a
bearer key from the vault; one that dies and comes back, one that floods its event stream, a
slow one, and the address policy on the gateway's own connections."""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from mcp import ClientSession, MCPError
from mcp import types as mcp_types

from conftest import PEERS, REPO, TARGET, connect, free_port, start_gateway, stop, wait_port
from netlab import make_tls

UPSTREAM = REPO / "tests" / "e2e" / "remote_upstream.py"
LOOPBACK = ["127.0.0.1/32"]


def everything(mode: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([str(PEERS / "server-everything"), mode], env={**os.environ, "PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
    except BaseException:
        stop(proc)
        raise
    return proc


def upstream(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(UPSTREAM), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        stop(proc)
        raise AssertionError(f"upstream did not start: {line!r}")
    return proc


def state(gw, name: str) -> str:
    """The backend's state; "absent" before the gateway has added it (an install is picked up
    within seconds)."""
    backends = requests.get(f"{gw.base}/readyz", timeout=10).json()["backends"]
    return backends[name]["state"] if name in backends else "absent"


def wait_state(gw, name: str, want: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (seen := state(gw, name)) != want:
        assert time.monotonic() < deadline, f"{name} stayed {seen}, wanted {want}:\n{gw.logs()[-3000:]}"
        time.sleep(0.2)


def text(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


@pytest.mark.anyio
async def test_streamable_http_remote_relays_everything(tmp_path):
    port = free_port()
    server = everything("streamableHttp", port)
    try:
        gw = start_gateway(tmp_path, {"everything": {
            "type": "http", "url": f"http://127.0.0.1:{port}/mcp", "allowAddresses": LOOPBACK}})
        try:
            wait_state(gw, "everything", "up")
            progress = []

            async def sampled(context, params):
                return mcp_types.CreateMessageResult(
                    role="assistant", model="test-model",
                    content=mcp_types.TextContent(type="text", text="sampled by the test client"))

            async with connect(gw, sampling_callback=sampled) as session:
                names = {t.name for t in (await session.list_tools()).tools}
                assert {"everything_echo", "everything_trigger-long-running-operation"} <= names, names
                assert "Echo: over http" in text(await session.call_tool("everything_echo", {"message": "over http"}))
                assert (await session.list_resources()).resources
                assert (await session.list_prompts()).prompts

                async def on_progress(done, total, message):
                    progress.append(done)

                done = await session.call_tool("everything_trigger-long-running-operation",
                                               {"duration": 1, "steps": 3}, progress_callback=on_progress)
                assert "completed" in text(done).lower(), text(done)
                assert len(progress) >= 2, progress
                # The gateway declares sampling upstream, so the server offers its sampling tool,
                # and the request it sends mid-call reaches this client and back.
                assert "everything_trigger-sampling-request" in names, names
                answer = await session.call_tool("everything_trigger-sampling-request",
                                                 {"prompt": "hi", "maxTokens": 10})
                assert "sampled by the test client" in text(answer), text(answer)
        finally:
            stop(gw.proc)
    finally:
        stop(server)


@pytest.mark.anyio
async def test_legacy_sse_remote_and_one_that_dies_and_comes_back(tmp_path):
    port = free_port()
    server = everything("sse", port)
    try:
        gw = start_gateway(tmp_path, {"old": {
            "type": "sse", "url": f"http://127.0.0.1:{port}/sse", "allowAddresses": LOOPBACK}})
        try:
            wait_state(gw, "old", "up")
            async with connect(gw) as session:
                said = await session.call_tool("old_echo", {"message": "over sse"})
                assert "Echo: over sse" in text(said)
            stop(server)
            wait_state(gw, "old", "down")
            server = everything("sse", port)
            wait_state(gw, "old", "up")
            async with connect(gw) as session:
                said = await session.call_tool("old_echo", {"message": "back again"})
                assert "Echo: back again" in text(said)
        finally:
            stop(gw.proc)
    finally:
        stop(server)


@pytest.mark.anyio
async def test_a_remote_that_stops_answering_is_reconnected_when_it_answers_again(tmp_path):
    """A frozen server (SIGSTOP: its connections stay open, nothing is answered) has no process
    the gateway could see die: the ping every call timeout finds it, it drops out of the
    catalog, and it is reconnected once it answers again (SIGCONT)."""
    port = free_port()
    server = everything("streamableHttp", port)
    try:
        gw = start_gateway(tmp_path, {"frozen": {
            "type": "http", "url": f"http://127.0.0.1:{port}/mcp", "allowAddresses": LOOPBACK}},
            GIG_CALL_TIMEOUT_SECS="2")
        try:
            wait_state(gw, "frozen", "up")
            async with connect(gw) as session:
                assert "Echo: before" in text(await session.call_tool("frozen_echo", {"message": "before"}))
            server.send_signal(signal.SIGSTOP)
            try:
                wait_state(gw, "frozen", "down", timeout=30)
                assert "did not answer a ping within 2s" in gw.logs(), gw.logs()[-3000:]
            finally:
                server.send_signal(signal.SIGCONT)
            wait_state(gw, "frozen", "up", timeout=60)
            async with connect(gw) as session:
                assert "Echo: after" in text(await session.call_tool("frozen_echo", {"message": "after"}))
        finally:
            stop(gw.proc)
    finally:
        stop(server)


def set_secret(env: dict, server: str, name: str, value: str) -> None:
    done = subprocess.run([str(TARGET / "gigmcp"), "secret", "set", server, name], input=value,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "GIG_LOG": "warn", **env})
    assert done.returncode == 0, done.stderr


@pytest.mark.anyio
async def test_tls_remote_gets_its_key_from_the_vault_and_nothing_else(tmp_path):
    tls = make_tls(tmp_path, names=("127.0.0.1",))
    token = "upstream-key-" + secrets.token_hex(12)
    seen = tmp_path / "seen.txt"
    port = free_port()
    server = upstream("bearer", str(port), str(tls["cert"]), str(tls["key"]), token, str(seen))
    remote = {"type": "http", "url": f"https://127.0.0.1:{port}/mcp", "allowAddresses": LOOPBACK,
              "headers": {"Authorization": "Bearer ${credential:api-token}"}}
    base_env = {"GIG_MASTER_KEY": secrets.token_hex(32), "GIG_DATA_DIR": str(tmp_path / "data")}
    try:
        # No credential yet: the server stays down, saying which one and how to set it.
        gw = start_gateway(tmp_path, {"keyed": remote}, GIG_EGRESS_EXTRA_ROOTS=str(tls["ca"]), **base_env)
        try:
            wait_state(gw, "keyed", "down")
            assert "credential api-token is not set" in gw.logs()
        finally:
            stop(gw.proc)
        set_secret(base_env, "keyed", "api-token", token)
        gw = start_gateway(tmp_path, {"keyed": remote}, GIG_EGRESS_EXTRA_ROOTS=str(tls["ca"]), **base_env)
        try:
            wait_state(gw, "keyed", "up")
            async with connect(gw) as session:
                assert text(await session.call_tool("keyed_add", {"a": 2, "b": 3})) == "5"
            received = set(seen.read_text().splitlines())
            assert received == {f"Bearer {token}"}, "only the vault's key, on every request"
            assert gw.token not in seen.read_text(), "the client's token never reaches an upstream"
            assert token not in gw.logs()
        finally:
            stop(gw.proc)
        # Without the test CA among its roots, the gateway does not trust the server.
        gw = start_gateway(tmp_path, {"keyed": remote}, **base_env)
        try:
            wait_state(gw, "keyed", "down")
            assert "certificate" in gw.logs().lower() or "tls" in gw.logs().lower(), gw.logs()[-2000:]
        finally:
            stop(gw.proc)
    finally:
        stop(server)


def test_loopback_is_refused_unless_allowed(tmp_path):
    port = free_port()
    server = everything("streamableHttp", port)
    try:
        gw = start_gateway(tmp_path, {"local": {"type": "http", "url": f"https://127.0.0.1:{port}/mcp"}})
        try:
            wait_state(gw, "local", "down")
            assert "loopback address" in gw.logs(), gw.logs()[-2000:]
        finally:
            stop(gw.proc)
    finally:
        stop(server)
    # Plain http is never sent to an address the entry does not name.
    bad = tmp_path / "plain"
    bad.mkdir()
    with pytest.raises(AssertionError, match="plain http"):
        start_gateway(bad, {"plain": {"type": "http", "url": "http://127.0.0.1:9/mcp"}})


@pytest.mark.anyio
async def test_a_flooding_event_stream_is_cut_off_and_a_slow_call_times_out(tmp_path):
    port = free_port()
    flood = upstream("flood", str(port))
    slow_port = free_port()
    slow = everything("streamableHttp", slow_port)
    try:
        gw = start_gateway(tmp_path, {
            "flood": {"type": "sse", "url": f"http://127.0.0.1:{port}/sse", "allowAddresses": LOOPBACK},
            "slow": {"type": "http", "url": f"http://127.0.0.1:{slow_port}/mcp", "allowAddresses": LOOPBACK},
        }, GIG_MAX_MESSAGE_BYTES="65536", GIG_CALL_TIMEOUT_SECS="2")
        try:
            wait_state(gw, "slow", "up")
            deadline = time.monotonic() + 30
            while "legacy SSE server cut off" not in gw.logs():
                assert time.monotonic() < deadline, gw.logs()[-3000:]
                time.sleep(0.2)
            assert state(gw, "flood") != "up"
            async with connect(gw) as session:
                with pytest.raises(MCPError, match="did not answer within 2s"):
                    await session.call_tool("slow_trigger-long-running-operation", {"duration": 5, "steps": 2})
                # The gateway and the server are still fine afterwards.
                assert "Echo: still" in text(await session.call_tool("slow_echo", {"message": "still"}))
            assert gw.proc.poll() is None
        finally:
            stop(gw.proc)
    finally:
        stop(flood)
        stop(slow)


@pytest.mark.anyio
async def test_a_remote_server_from_the_signed_index_installs_and_gets_its_key_from_the_vault(
        tmp_path, sandbox_bins):
    """An index entry may be a remote server: `registryctl add --remote` signs its URL and a
    header naming a vault credential; `gigmcp install` records it (nothing to pull); the running
    gateway connects within seconds and the upstream sees the vault's key and nothing else."""
    from test_install import Index, cli_env, run, world_reachable

    tls = make_tls(tmp_path, names=("127.0.0.1",))
    token = "index-remote-key-" + secrets.token_hex(12)
    seen = tmp_path / "seen.txt"
    port = free_port()
    server = upstream("bearer", str(port), str(tls["cert"]), str(tls["key"]), token, str(seen))
    index = Index(tmp_path)
    try:
        # The index may not open the operator's internal network: allowAddresses is refused.
        refused = run(TARGET / "registryctl", "add", "--index", index.file, "--name", "keyed",
                      "--version", "1.0.0", "--remote", f"https://127.0.0.1:{port}/mcp",
                      "--header", "Authorization=Bearer sk-literal", "--egress", "x.example", check=False)
        assert refused.returncode != 0 and "--egress" in refused.stderr, refused.stderr
        run(TARGET / "registryctl", "add", "--index", index.file, "--name", "keyed", "--version", "1.0.0",
            "--remote", f"https://127.0.0.1:{port}/mcp",
            "--header", "Authorization=Bearer ${credential:api-token}", "--description", "a keyed remote")
        entry = json.loads(index.file.read_text())["servers"]["keyed"]["versions"]["1.0.0"]
        assert entry == {"remote": {"url": f"https://127.0.0.1:{port}/mcp",
                                    "headers": {"Authorization": "Bearer ${credential:api-token}"}},
                         "description": "a keyed remote"}, entry
        index.sign()
        shown = run(TARGET / "registryctl", "show", "--signed", index.signed).stdout
        assert f"https://127.0.0.1:{port}/mcp" in shown and "vault api-token" in shown, shown

        home = world_reachable(tmp_path / "gw")
        master_key = secrets.token_hex(32)
        gw = start_gateway(home, {}, GIG_MASTER_KEY=master_key, GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
                           GIG_EGRESS_ALLOW_ADDRESSES="127.0.0.1/32", GIG_EGRESS_EXTRA_ROOTS=str(tls["ca"]),
                           **index.env())
        try:
            env = cli_env(home / "data", master_key, index)
            out = run(TARGET / "gigmcp", "install", "keyed", env=env).stdout
            assert "installed keyed 1.0.0 (remote" in out and "gigmcp secret set keyed api-token" in out, out
            assert "keyed\t1.0.0\tinstalled\tremote" in run(TARGET / "gigmcp", "list", env=env).stdout
            # Installed but its credential not set: down, saying which one.
            wait_state(gw, "keyed", "down")
            assert "credential api-token is not set" in gw.logs()
            set_secret({"GIG_MASTER_KEY": master_key, "GIG_DATA_DIR": str(home / "data")},
                       "keyed", "api-token", token)
            # The key is read at each (re)connection: the restart after the failure picks it up.
            wait_state(gw, "keyed", "up")
            async with connect(gw) as session:
                assert text(await session.call_tool("keyed_add", {"a": 20, "b": 22})) == "42"
            assert set(seen.read_text().splitlines()) == {f"Bearer {token}"}
            assert gw.token not in seen.read_text(), "the client's token never reaches an upstream"
            assert token not in gw.logs()

            run(TARGET / "gigmcp", "uninstall", "keyed", env=env)
            deadline = time.monotonic() + 30
            while "keyed" in requests.get(f"{gw.base}/readyz", timeout=10).json()["backends"]:
                assert time.monotonic() < deadline, "keyed still running after uninstall"
                time.sleep(0.3)
        finally:
            stop(gw.proc)
    finally:
        stop(server)

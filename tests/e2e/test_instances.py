"""Per-user and per-session instances of a sandboxed server, end to end: real sandboxes
(bubblewrap + veth + nftables), the real OIDC provider for three users, profile tokens on /mcp,
and an HTTPS upstream that records what each request carried.

- Each user's calls run in that user's own sandbox, whose egress proxy injects that user's key:
  the upstream sees carol's key on carol's calls and dave's on dave's, also when their calls
  interleave. No sandbox ever holds a real key (environment and the server's own view).
- A user who has not set their key, the operator's static token, a stateless request to a
  per-session server, and a caller past the instance caps each get a clear error.
- Idle instances stop; a per-session instance stops when its session ends.

Needs root, bubblewrap, nft and ip: skipped with a message otherwise, failed on CI or with
GIG_REQUIRE_SANDBOX=1.
"""

import json
import secrets
import shutil
import time

import pytest
import requests

from conftest import csrf_headers, signed_in, start_control_plane, stop
from loadgen import Session, answer, stateless_tool_call
from netlab import egress_env
# The egress tests' module fixtures: an HTTPS upstream with its own test CA.
from test_egress import sandboxed_pids, tls, upstream  # noqa: F401
from test_install import FETCH_CREDENTIAL, Index, push_image, registry, world_reachable  # noqa: F401
from test_profiles import make_profile, make_token, unique

PER_USER = "fetch"
PER_SESSION = "scratch"
IDLE_SECONDS = 8


def sandbox_block(port: int, instances: dict) -> dict:
    return {
        "egress": [f"api.example.test:{port}"],
        "allowAddresses": ["127.0.0.1/32"],
        "credentials": [{
            "env": "API_KEY",
            "secret": "api-key",
            "hosts": ["api.example.test"],
            "inject": {"type": "header", "name": "Authorization", "template": "Bearer {}"},
        }],
        **instances,
    }


@pytest.fixture
def gateway(tmp_path, sandbox_bins, tls, upstream):
    """fetch-mcp twice: `fetch` one instance per user (at most 2), `scratch` one per session (at
    most 2 per user), `fetch` stopped after 8 s idle. Each runs from its own copy of the program,
    so its sandboxes can be counted."""
    tmp_path.chmod(0o711)
    session_copy = sandbox_bins["fetch-mcp"].with_name("fetch-mcp-sessions")
    shutil.copy(sandbox_bins["fetch-mcp"], session_copy)
    programs = {PER_USER: sandbox_bins["fetch-mcp"], PER_SESSION: session_copy}
    servers = {
        PER_USER: {"command": str(programs[PER_USER]), "sandbox": sandbox_block(upstream.port, {
            "instances": "per-user", "maxInstances": 2, "idleSeconds": IDLE_SECONDS})},
        PER_SESSION: {"command": str(programs[PER_SESSION]), "sandbox": sandbox_block(upstream.port, {
            "instances": "per-session", "maxInstancesPerUser": 2, "idleSeconds": 60})},
    }
    idp, gw = start_control_plane(
        tmp_path, servers,
        GIG_MASTER_KEY=secrets.token_hex(32),
        GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
        GIG_SANDBOX_POOL="198.19.203.0/24",
        **egress_env(tls),
    )
    gw.programs = programs
    yield gw
    stop(gw.proc)
    idp.stop()


class User:
    """A signed-in user with a profile token for the servers' tools."""

    def __init__(self, gw, name: str, tools: tuple = ("fetch/*", "scratch/*")):
        self.gw = gw
        self.http = signed_in(gw, name)
        self.id = self.http.get(f"{gw.base}/api/me").json()["user"]["id"]
        profile = make_profile(gw, self.http, {"name": unique(name), "tools": list(tools)})
        self.token = make_token(gw, self.http, profile["id"])["token"]
        self.key = f"sk-{name}-" + secrets.token_hex(16)

    def set_key(self, server: str, value: str | None = None) -> requests.Response:
        return self.http.put(f"{self.gw.base}/api/me/credentials/{server}/api-key",
                             json={"value": value or self.key}, headers=csrf_headers(self.gw, self.http))

    def call(self, tool: str, arguments: dict) -> dict:
        """A stateless (2026-07-28) call; the JSON-RPC message."""
        return answer(stateless_tool_call(self.gw.url, self.token, tool, arguments))


def fetched(message: dict) -> dict:
    assert "result" in message, message
    return message["result"]["structuredContent"]


def error_text(message: dict) -> str:
    if "error" in message:
        return message["error"]["message"]
    assert message["result"].get("isError"), message
    return json.dumps(message["result"]["content"])


def wait_for_count(program, want: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(sandboxed_pids(program)) != want:
        assert time.monotonic() < deadline, f"{len(sandboxed_pids(program))} sandboxes of {program.name}, want {want}"
        time.sleep(0.25)


def test_each_user_gets_their_own_instance_with_their_own_key(gateway, upstream):
    gw = gateway
    carol, dave, alice = User(gw, "carol"), User(gw, "dave"), User(gw, "alice")
    api = f"https://api.example.test:{upstream.port}"
    program = gw.programs[PER_USER]
    wait_for_count(program, 1)  # the listing instance, which serves nobody's call

    # Without her own key: a clear error saying where to set it, and no instance started.
    refused = carol.call("fetch_fetch", {"url": f"{api}/carol/0"})
    assert "/api/me/credentials/fetch/api-key" in error_text(refused), refused
    assert len(sandboxed_pids(program)) == 1
    # The operator's token has no user: refused by name, not served from a shared instance.
    operator = answer(stateless_tool_call(gw.url, gw.token, "fetch_fetch", {"url": f"{api}/op"}))
    assert "call it with a user's token" in error_text(operator), operator
    # The server's shared scope is not where its users' keys go.
    shared = alice.http.put(f"{gw.base}/api/servers/fetch/credentials/api-key", json={"value": "x" * 20},
                            headers=csrf_headers(gw, alice.http))
    assert shared.status_code == 400 and "each user sets theirs" in shared.text, shared.text

    for user in (carol, dave):
        assert user.set_key(PER_USER).status_code == 204
    listed = carol.http.get(f"{gw.base}/api/me/credentials/fetch").json()["credentials"]
    assert [c["name"] for c in listed] == ["api-key"] and "value" not in listed[0]

    # Interleaved calls: every request reaches the upstream with its caller's own key.
    placeholders = {}
    for round_ in range(3):
        for user in (carol, dave):
            env = fetched(user.call("fetch_env", {}))["env"]
            placeholders.setdefault(user.id, env["API_KEY"])
            assert env["API_KEY"].startswith("gigph_")
            out = fetched(user.call("fetch_fetch", {
                "url": f"{api}/{user.id}/{round_}",
                "headers": {"Authorization": f"Bearer {env['API_KEY']}"}}))
            assert out["status"] == 200, out
            # The upstream echoed the key; the server got its placeholder back.
            assert user.key not in json.dumps(out)
    assert placeholders[carol.id] != placeholders[dave.id]
    seen = [r for r in upstream.requests if r["path"].split("/")[1] in (str(carol.id), str(dave.id))]
    assert len(seen) == 6, seen
    for request in seen:
        owner = carol if request["path"].startswith(f"/{carol.id}/") else dave
        assert request["headers"]["authorization"] == f"Bearer {owner.key}", request

    # Two instances besides the listing one, none of which holds a real key.
    wait_for_count(program, 3)
    for pid in sandboxed_pids(program):
        environ = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
        assert carol.key not in environ and dave.key not in environ

    # A third user is past maxInstances (2) while both are in use.
    assert alice.set_key(PER_USER).status_code == 204
    for user in (carol, dave):
        fetched(user.call("fetch_env", {}))
    capped = alice.call("fetch_env", {})
    assert "maximum of 2 instances" in error_text(capped), capped

    # Idle for 8 s: both stop; the next call starts a fresh one, still with the caller's key.
    wait_for_count(program, 1, timeout=IDLE_SECONDS + 30)
    out = fetched(alice.call("fetch_fetch", {"url": f"{api}/{alice.id}/after",
                                             "headers": {"Authorization": "Bearer "
                                                         + fetched(alice.call("fetch_env", {}))["env"]["API_KEY"]}}))
    assert out["status"] == 200
    assert upstream.requests[-1]["headers"]["authorization"] == f"Bearer {alice.key}"

    # The egress audit names the user whose instance made each request, never a key.
    records = alice.http.get(f"{gw.base}/api/audit", params={"kind": "egress", "limit": 1000}).json()["records"]
    users = {r["detail"].get("user") for r in records if r["detail"].get("path", "").startswith(f"/{carol.id}/")}
    assert users == {carol.id}, records
    dump = json.dumps(records)
    assert carol.key not in dump and dave.key not in dump and alice.key not in dump


def test_per_session_instances_follow_their_sessions(gateway, upstream):
    gw = gateway
    carol = User(gw, "carol")
    program = gw.programs[PER_SESSION]
    wait_for_count(program, 1)
    assert carol.set_key(PER_SESSION).status_code == 204

    # Stateless requests have no session to own an instance.
    stateless = carol.call("scratch_env", {})
    assert "one instance per MCP session" in error_text(stateless), stateless

    def env_of(session: Session) -> dict:
        message = answer(session.request("tools/call", {"name": "scratch_env", "arguments": {}}))
        return fetched(message)["env"]

    first, second = Session(gw.url, carol.token), Session(gw.url, carol.token)
    try:
        a, b = env_of(first)["API_KEY"], env_of(second)["API_KEY"]
        assert a != b, "two sessions shared one instance"
        assert env_of(first)["API_KEY"] == a, "a session's calls moved to another instance"
        wait_for_count(program, 3)
        third = Session(gw.url, carol.token)
        try:
            capped = answer(third.request("tools/call", {"name": "scratch_env", "arguments": {}}))
            assert "the most one user may" in error_text(capped), capped
        finally:
            third.close()
    finally:
        first.close()
    # Its session ended: the first instance stops well before its 60 s idle time.
    wait_for_count(program, 2, timeout=30)
    second.close()
    wait_for_count(program, 1, timeout=30)


def test_an_installed_server_runs_an_instance_per_user_when_its_index_entry_says_so(
        tmp_path, sandbox_bins, registry, tls, upstream):
    """The signed index's `instances` keys (registryctl --instances) reach an installed server:
    each user sets their own key and their calls carry it; the shared scope takes none."""
    push_image(tmp_path, registry, "fetch")
    index = Index(tmp_path)
    index.add("mine", f"{registry}/fetch-mcp:0.1.0", "--egress", f"api.example.test:{upstream.port}",
              "--credential", json.dumps(FETCH_CREDENTIAL),
              "--instances", json.dumps({"instances": "per-user", "maxInstances": 2}), program="fetch-mcp")
    index.sign()
    home = world_reachable(tmp_path / "gw")
    idp, gw = start_control_plane(home, {}, GIG_MASTER_KEY=secrets.token_hex(32),
                                  GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
                                  GIG_SANDBOX_POOL="198.19.211.0/24", **egress_env(tls),
                                  **index.env(install="mine"))
    try:
        carol, alice = User(gw, "carol", ("mine/*",)), User(gw, "alice", ("mine/*",))
        listed = {s["name"]: s for s in alice.http.get(f"{gw.base}/api/servers").json()["servers"]}
        assert listed["mine"]["source"] == "installed", listed
        assert listed["mine"]["instances"]["mode"] == "per-user", listed["mine"]
        assert listed["mine"]["instances"]["max_instances"] == 2
        shared = alice.http.put(f"{gw.base}/api/servers/mine/credentials/api-key", json={"value": "x" * 20},
                                headers=csrf_headers(gw, alice.http))
        assert shared.status_code == 400 and "each user sets theirs" in shared.text, shared.text
        api = f"https://api.example.test:{upstream.port}"
        refused = carol.call("mine_fetch", {"url": f"{api}/carol-installed/0"})
        assert "/api/me/credentials/mine/api-key" in error_text(refused), refused
        assert carol.set_key("mine").status_code == 204
        env = fetched(carol.call("mine_env", {}))["env"]
        out = fetched(carol.call("mine_fetch", {"url": f"{api}/carol-installed/1",
                                                "headers": {"Authorization": f"Bearer {env['API_KEY']}"}}))
        assert out["status"] == 200, out
        seen = [r for r in upstream.requests if r["path"] == "/carol-installed/1"]
        assert [r["headers"]["authorization"] for r in seen] == [f"Bearer {carol.key}"], seen
    finally:
        stop(gw.proc)
        idp.stop()

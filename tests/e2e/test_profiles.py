"""Profiles and profile tokens end to end: made over /api by a signed-in member, used on /mcp by
the official Python SDK and the official TypeScript SDK (npm @modelcontextprotocol/sdk)."""

import json
import shutil
import subprocess
import time
import uuid

import httpx2
import pytest
import requests
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

from conftest import REPO, csrf_headers, signed_in

NODE = REPO / ".peers" / "bin" / "node22"
NODE_MODULES_DIR = REPO / ".peers" / "node"


def make_profile(gw, http, body: dict) -> dict:
    response = http.post(f"{gw.base}/api/profiles", json=body, headers=csrf_headers(gw, http))
    assert response.status_code == 201, response.text
    return response.json()


def make_token(gw, http, profile_id: int, **extra) -> dict:
    response = http.post(f"{gw.base}/api/profiles/{profile_id}/tokens",
                         json={"name": "laptop", **extra}, headers=csrf_headers(gw, http))
    assert response.status_code == 201, response.text
    return response.json()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def text_of(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


@pytest.mark.anyio
async def test_python_sdk_sees_only_the_profile_under_its_names(control_plane):
    _, gw = control_plane
    http = signed_in(gw, "carol")
    profile = make_profile(gw, http, {
        "name": unique("research"),
        "tools": ["echo_echo", "time/*"],
        "overrides": {"echo_echo": {"name": "say", "description": "Repeat a message"}},
    })
    token = make_token(gw, http, profile["id"])
    assert token["token"].startswith("gigp_")
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token['token']}"}, timeout=30) as client:
        async with streamable_http_client(gw.url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {t.name: t for t in (await session.list_tools()).tools}
                assert set(tools) == {"say", "time_get_current_time", "time_convert_time"}
                assert tools["say"].description == "Repeat a message"
                said = await session.call_tool("say", {"message": "through a profile"})
                assert text_of(said) == "through a profile"
                # Outside the profile (and the old name of a renamed tool): refused by name.
                for name in ("echo_echo", "echo_fail"):
                    with pytest.raises(MCPError) as refused:
                        await session.call_tool(name, {"message": "x"})
                    assert "is not in this profile" in str(refused.value)
                # Prompts and resources of servers outside the profile are not shown.
                prompts = {p.name for p in (await session.list_prompts()).prompts}
                assert "echo_repeat" not in prompts
    # The call is audited with the user, the profile and the tool; not its arguments.
    admin = signed_in(gw, "alice")
    records = admin.get(f"{gw.base}/api/audit").json()["records"]
    calls = [r for r in records if r["action"] == "tool.call" and r["detail"].get("tool") == "say"]
    assert calls and calls[0]["target"] == "echo/echo"
    assert calls[0]["detail"]["profile"] == profile["id"]
    assert "carol@example.test" in calls[0]["actor"]
    assert "through a profile" not in json.dumps(records)


def run_ts_client(gw, token: str, tool: str, args: dict) -> dict:
    assert NODE.exists(), "run tests/peers/install-peers.sh (make peers)"
    # ESM resolves packages from the script's own directory: run a copy beside node_modules.
    script = NODE_MODULES_DIR / f"gig-e2e-{uuid.uuid4().hex}.mjs"
    shutil.copy(REPO / "tests" / "e2e" / "sdk_client.mjs", script)
    try:
        out = subprocess.run([str(NODE), str(script), gw.url, token, tool, json.dumps(args)],
                             capture_output=True, text=True, timeout=60)
    finally:
        script.unlink()
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_typescript_sdk_with_an_unprefixed_profile_and_a_revoked_token(control_plane):
    _, gw = control_plane
    http = signed_in(gw, "carol")
    profile = make_profile(gw, http, {"name": unique("echo-only"), "tools": ["echo/*"], "unprefixed": True})
    token = make_token(gw, http, profile["id"])
    seen = run_ts_client(gw, token["token"], "echo", {"message": "from typescript"})
    assert "connect_error" not in seen, seen
    names = {t["name"] for t in seen["tools"]}
    assert "echo" in names and not any(n.startswith("echo_") or n.startswith("time") for n in names), names
    assert seen["call"] == {"isError": False, "text": "from typescript"}
    refused = run_ts_client(gw, token["token"], "time_get_current_time", {"timezone": "UTC"})
    assert "is not in this profile" in refused["call"]["error"], refused

    # Revoked: refused (401) within the cache's re-check interval, also for a live session.
    listed = http.get(f"{gw.base}/api/profiles/{profile['id']}/tokens").json()["tokens"]
    assert [t["id"] for t in listed] == [token["id"]] and listed[0]["active"]
    assert "token" not in listed[0], "a token's value is shown only once"
    gone = http.delete(f"{gw.base}/api/profiles/{profile['id']}/tokens/{token['id']}",
                       headers=csrf_headers(gw, http))
    assert gone.status_code == 204
    time.sleep(2.2)
    after = run_ts_client(gw, token["token"], "echo", {"message": "x"})
    # The gateway's 401 body, as the SDK reports it.
    assert "missing or invalid bearer token" in after.get("connect_error", ""), after


def test_profile_tokens_are_refused_when_malformed_expired_or_of_a_deleted_profile(control_plane):
    _, gw = control_plane
    http = signed_in(gw, "carol")
    profile = make_profile(gw, http, {"name": unique("short"), "tools": ["echo/*"]})
    token = make_token(gw, http, profile["id"])
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream"}

    def status(tok: str) -> int:
        return requests.post(gw.url, json=body, headers={**headers, "Authorization": f"Bearer {tok}"}).status_code

    assert status(token["token"]) == 200
    for bad in ("gigp_" + "0" * 64, token["token"][:-1], token["token"] + "0", "gigp_", "x" * 300):
        assert status(bad) == 401, bad
    assert http.delete(f"{gw.base}/api/profiles/{profile['id']}", headers=csrf_headers(gw, http)).status_code == 204
    time.sleep(2.2)
    assert status(token["token"]) == 401
    # Lifetimes are bounded.
    other = make_profile(gw, http, {"name": unique("bounded"), "tools": ["echo/*"]})
    for expires_in in (0, 59, 10**9):
        r = http.post(f"{gw.base}/api/profiles/{other['id']}/tokens", json={"name": "t", "expires_in": expires_in},
                      headers=csrf_headers(gw, http))
        assert r.status_code == 400, expires_in


def test_profiles_are_private_to_their_owner_and_validated(control_plane):
    _, gw = control_plane
    carol, alice, bob = signed_in(gw, "carol"), signed_in(gw, "alice"), signed_in(gw, "bob")
    mine = make_profile(gw, carol, {"name": unique("mine"), "tools": ["echo/*"]})
    # Another user (even an admin) gets 404 for it, and cannot mint a token for it.
    assert alice.get(f"{gw.base}/api/profiles/{mine['id']}").status_code == 404
    r = alice.post(f"{gw.base}/api/profiles/{mine['id']}/tokens", json={"name": "steal"},
                   headers=csrf_headers(gw, alice))
    assert r.status_code == 404
    # Viewers look but do not use.
    r = bob.post(f"{gw.base}/api/profiles", json={"name": "v", "tools": ["echo/*"]}, headers=csrf_headers(gw, bob))
    assert r.status_code == 403
    for bad in ({"name": "", "tools": []}, {"name": "x", "tools": ["*"]}, {"name": "x", "tools": "echo/*"},
                {"name": "x", "tools": ["echo/*", "time/*"], "unprefixed": True},
                {"name": "x", "tools": ["a"], "overrides": {"a": {"name": "bad name!"}}},
                {"name": "x", "tools": [], "surprise": 1}):
        r = carol.post(f"{gw.base}/api/profiles", json=bad, headers=csrf_headers(gw, carol))
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["code"] == "bad_request"
    r = carol.post(f"{gw.base}/api/profiles", json={"name": mine["name"], "tools": []}, headers=csrf_headers(gw, carol))
    assert r.status_code == 409
    renamed = carol.put(f"{gw.base}/api/profiles/{mine['id']}", json={"name": unique("renamed"), "tools": ["time/*"]},
                        headers=csrf_headers(gw, carol))
    assert renamed.status_code == 200 and renamed.json()["tools"] == ["time/*"]


def test_a_demoted_users_profile_tokens_stop_within_a_second(control_plane):
    _, gw = control_plane
    carol = signed_in(gw, "carol")
    profile = make_profile(gw, carol, {"name": unique("demoted"), "tools": ["echo/*"]})
    token = make_token(gw, carol, profile["id"])["token"]
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}"}
    assert requests.post(gw.url, json=body, headers=headers).status_code == 200
    admin = signed_in(gw, "alice")
    carol_id = carol.get(f"{gw.base}/api/me").json()["user"]["id"]
    try:
        assert admin.put(f"{gw.base}/api/users/{carol_id}/role", json={"role": "viewer"},
                         headers=csrf_headers(gw, admin)).status_code == 200
        time.sleep(2.2)
        assert requests.post(gw.url, json=body, headers=headers).status_code == 401
    finally:
        signed_in(gw, "carol")  # her next sign-in maps her (no) groups back to member

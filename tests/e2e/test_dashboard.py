"""The console at `/`, in a real browser: Debian's Chromium driven by playwright-core
(tests/e2e/dashboard_browser.mjs), against a gateway with the control plane on, a real OpenID
Provider, a real registry and a signed index.

Covered: the signed-out page's Sign in button; sign-in through the provider's own login and
consent forms; installs from the catalog with progress arriving live over server-sent events;
a credential set on a server's page (the value never shown again); a profile and a token made
and copied once — and that token then working on /mcp; impersonation with the banner on every
page; the audit log filtered; axe-core on every page at laptop and phone widths with no serious
or critical violation; a CSP listener that stays silent (and a control that proves it hears);
no request to any other origin; no layout shift while the overview refreshes; screenshots at
both widths in $CARGO_TARGET_DIR/dashboard-screenshots/."""

import asyncio
import json
import os
import subprocess

import requests

from conftest import PEERS, TARGET, csrf_headers, signed_in, start_control_plane, stop
from oauth_flow import consent_in_browser
from test_oauth import authorize_url, pkce
from test_api_servers import wait_state
from test_install import echo_and_fetch_index, registry, world_reachable  # noqa: F401 (fixture)

SCRIPT = os.path.join(os.path.dirname(__file__), "dashboard_browser.mjs")
SHOTS = TARGET.parent / "dashboard-screenshots"
SECRET = "sk-dashboard-never-shown-0123456789"
HEADERS = {"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"}


def browse(gw, issuer: str, **extra) -> dict:
    config = {
        "base": gw.base,
        "issuer": issuer,
        "peers_node": str(PEERS.parent / "node"),
        "shots": str(SHOTS),
        "login": "alice",
        "impersonate": "carol@example.test",
        "secret": SECRET,
        **extra,
    }
    done = subprocess.run([str(PEERS / "node22"), SCRIPT, json.dumps(config)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"browser run failed:\n{done.stderr[-6000:]}\n{gw.logs()[-3000:]}"
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["fatal"] is None, f"{found['fatal']}\npage errors: {found['page_errors']}\n" \
        f"console: {found['console_errors']}\n{done.stderr[-3000:]}\n{gw.logs()[-3000:]}"
    return found


async def tools_with(url: str, token: str) -> list[str]:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return [t.name for t in (await session.list_tools()).tools]


def test_the_console_in_a_real_browser(tmp_path, sandbox_bins, registry):
    index = echo_and_fetch_index(tmp_path, registry)
    home = world_reachable(tmp_path / "gw")
    idp, gw = start_control_plane(home, {}, GIG_MASTER_KEY=os.urandom(32).hex(),
                                  GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
                                  GIG_SANDBOX_POOL="198.19.205.0/24", **index.env())
    try:
        # The pages are data-free shells with the security headers, for anyone.
        for path in ("/", "/catalog", "/servers", "/servers/echo", "/credentials", "/profiles", "/users", "/audit"):
            r = requests.get(gw.base + path, timeout=10)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
            assert all(h in r.headers for h in HEADERS), path
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert "unsafe" not in r.headers["Content-Security-Policy"]
        signed_in(gw, "carol")  # a second user to act as
        # An MCP client alice let in with OAuth, for the console to list.
        alice = signed_in(gw, "alice")
        made = alice.post(f"{gw.base}/api/profiles", json={"name": "oauth-shown", "tools": []},
                          headers=csrf_headers(gw, alice))
        assert made.status_code == 201, made.text
        client_id = requests.post(f"{gw.base}/oauth/register", timeout=10, json={
            "client_name": "Dashboard test client", "redirect_uris": ["http://127.0.0.1:9/callback"]}).json()["client_id"]
        landed = consent_in_browser(alice, authorize_url(gw, client_id, pkce()[1]), gw.base, "alice", "oauth-shown")
        assert "code=" in landed, landed

        found = browse(gw, idp.issuer)
        (SHOTS / "findings.json").write_text(json.dumps(found, indent=1))

        assert found["signed_out"]["sign_in_visible"]
        assert found["keyboard"] == {"first_tab": "Skip to content", "after_skip": "main"}
        assert "Alice" in found["signed_in_as"] and "admin" in found["signed_in_as"]

        for server in ("echo", "fetch"):
            install = found["install"][server]
            assert install["status"].startswith(f"Installed {server}"), install
            assert any("signed index" in line for line in install["lines"]), install
            assert len(install["lines"]) >= 2, install
        admin = signed_in(gw, "alice")
        wait_state(gw, admin, "echo", "up")

        assert found["credential"]["state"].startswith("Set"), found["credential"]
        assert found["credential"]["input_after"] == ""
        assert not found["credential"]["secret_in_page"] and not found["credential"]["secret_in_credentials_page"]
        listed = admin.get(f"{gw.base}/api/servers/fetch/credentials").json()["credentials"]
        assert [c["name"] for c in listed] == ["api-key"]
        assert SECRET not in gw.logs()

        assert "Dashboard test client" in found["oauth_grants"] and "Revoke" in found["oauth_grants"], \
            found["oauth_grants"]

        token = found["token"]
        assert token and token.startswith("gigp_"), token
        labels = [c["label"] for c in found["configs"]]
        assert any("Claude" in label for label in labels) and any("VS Code" in label for label in labels) \
            and any("Cursor" in label for label in labels), labels
        assert all(token in c["text"] and f"{gw.base}/mcp" in c["text"] for c in found["configs"])
        assert asyncio.run(tools_with(gw.url, token)) == ["echo_echo"]

        serious = [v for v in found["axe"] if v.get("impact") in ("serious", "critical")]
        assert not serious, json.dumps(serious, indent=1)
        checked = {v["page"] for v in found["axe"] if v.get("checked")}
        assert {"signed-out", "overview", "catalog", "servers", "server-fetch", "credentials", "profiles", "users",
                "audit", "overview@phone", "audit@phone", "overview-impersonating"} <= checked, checked

        assert found["csp"] == [], found["csp"]
        control = found["csp_control"]
        assert not control["ran"] and control["heard"] and control["heard"][0]["directive"].startswith("script-src")
        assert found["third_party"] == [], found["third_party"]
        assert found["page_errors"] == [], found["page_errors"]
        assert found["live"], "the overview received the servers' state over server-sent events"
        assert found["layout_shift"] is not None and found["layout_shift"] < 0.01, found["layout_shift"]

        assert found["audit"]["rows"] >= 1 and "kind=credential" in found["audit"]["export_href"]

        assert all(found["banner"][page] and "Carol" in found["banner"][page] for page in found["banner"]), \
            found["banner"]
        assert len(found["banner"]) == 8 and not found["banner_after_stop"]
        actions = [json.loads(line)["action"] for line in admin.get(f"{gw.base}/api/audit/export").text.splitlines()]
        for action in ("server.installed", "credential.set", "profile_token.created", "impersonation.started"):
            assert action in actions, action

        shots = found["screenshots"]
        assert len(shots) >= 20 and all(os.path.getsize(s) > 5000 for s in shots)
        assert any(s.endswith("-phone.png") for s in shots) and any(s.endswith("-laptop.png") for s in shots)
    finally:
        stop(gw.proc)
        idp.stop()


def test_without_the_control_plane_the_console_says_how_to_turn_it_on(tmp_path):
    from conftest import start_gateway

    gw = start_gateway(tmp_path, {})
    try:
        r = requests.get(gw.base + "/", timeout=10)
        assert r.status_code == 200 and "Content-Security-Policy" in r.headers
        me = requests.get(gw.base + "/api/me", timeout=10)
        assert me.status_code == 503 and me.json()["error"]["code"] == "control_plane_disabled"
        found = browse(gw, gw.base, mode="disabled")
        assert "control plane is turned off" in found["disabled"]["message"], found["disabled"]
        assert "GIG_OIDC_ISSUER" in found["disabled"]["message"]
        assert not found["disabled"]["sign_in_visible"]
        assert not [v for v in found["axe"] if v.get("impact") in ("serious", "critical")], found["axe"]
        assert found["csp"] == [] and found["third_party"] == [] and found["page_errors"] == []
    finally:
        stop(gw.proc)

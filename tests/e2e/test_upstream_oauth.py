"""Per-user OAuth toward a remote MCP server, end to end (decision 70): the real npm
`oidc-provider` over TLS as the upstream's authorization server (dynamic registration, PKCE,
rotating refresh tokens, introspection, revocation), the official Python SDK's server as the
protected resource (it verifies every bearer by introspection and records it), and the gateway
signing users in with a second, separate provider.

- A user connects their account over /api, or from the dashboard in Chromium; their calls reach the upstream with their own token,
  another user's with theirs, and a user who has not connected gets an error naming where to
  connect (a URLElicitationRequiredError with the page, to a client that takes URL-mode
  elicitation). No token reaches the client, the gateway's log or the audit trail.
- Access tokens live 8 s: calls across several lifetimes keep working (refresh).
- Disconnecting revokes at the authorization server (the last token is inactive there) and the
  user's next call gets the "connect" error again.
- A grant the user revoked at the authorization server makes the next refresh fail with
  invalid_grant: the connection is marked broken, with the reason, and the user is told to
  connect again.
- A server-to-server entry uses the client-credentials grant with a secret from the vault, and
  gets a new token before the old one expires.
- Behind an https front (HAProxy terminating TLS), the gateway is known to an authorization
  server that takes client ID metadata documents by its own document: the user's tokens are
  issued to the document's URL, with no registration.
"""

import asyncio
import contextlib
import json
import secrets
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from mcp import MCPError

from conftest import PEERS, Gateway, csrf_headers, free_port, signed_in, start_control_plane, stop
from loadgen import answer, stateless_tool_call
from netlab import make_tls
from oidc import OidcProvider, authorize_until_callback, login, user
from test_profiles import make_profile, make_token, unique
from test_remote import LOOPBACK, upstream

BROWSER = Path(__file__).with_name("connect_browser.mjs")
RS_CLIENT, RS_SECRET = "upstream-rs", "rs-" + secrets.token_hex(12)
SERVICE_CLIENT, SERVICE_SECRET = "gig-service", "svc-" + secrets.token_hex(12)
TOKEN_TTL = 8


class Account:
    """A gateway user with a profile token for the `acct` server."""

    def __init__(self, gw, name: str, ca: Path):
        self.gw, self.name = gw, name
        self.http = signed_in(gw, name)
        # The upstream's authorization server is trusted through the test CA only (and not
        # through REQUESTS_CA_BUNDLE, which would take precedence).
        self.http.trust_env = False
        self.http.verify = str(ca)
        profile = make_profile(gw, self.http, {"name": unique(name), "tools": ["acct/*"]})
        self.token = make_token(gw, self.http, profile["id"])["token"]

    def connect(self) -> requests.Response:
        started = self.http.post(f"{self.gw.base}/api/me/connections/acct",
                                 headers=csrf_headers(self.gw, self.http))
        assert started.status_code == 200, started.text
        callback = authorize_until_callback(self.http, started.json()["authorization_url"], self.name)
        return self.http.get(callback, allow_redirects=False, timeout=30)

    def connections(self) -> dict:
        listed = self.http.get(f"{self.gw.base}/api/me/connections").json()["connections"]
        return {c["server"]: c for c in listed}

    def whoami(self) -> dict:
        return answer(stateless_tool_call(self.gw.url, self.token, "acct_whoami", {}))

    def resources(self) -> list[str]:
        """The resource URIs /mcp lists to this user (a 2026-07-28 request)."""
        meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
                "io.modelcontextprotocol/clientCapabilities": {}}
        listed = answer(requests.post(self.gw.url, timeout=30, json={
            "jsonrpc": "2.0", "id": 1, "method": "resources/list", "params": {"_meta": meta}},
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json, text/event-stream",
                     "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "resources/list"}))
        assert "result" in listed, listed
        return [r["uri"] for r in listed["result"]["resources"]]


def connect_in_browser(gw, account: "Account", issuer: str) -> dict:
    """Chromium on the server's dashboard page, signed in as `account`: clicks Connect and goes
    through the authorization server's pages. The findings of connect_browser.mjs."""
    config = {"base": gw.base, "peers_node": str(PEERS.parent / "node"), "server": "acct",
              "session": account.http.cookies.get("gig_session"), "issuer": issuer, "login": account.name}
    done = subprocess.run([str(PEERS / "node22"), str(BROWSER), json.dumps(config)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["fatal"] is None, f"{found}\n{done.stderr[-3000:]}\n{gw.logs()[-3000:]}"
    return found


def said(message: dict) -> str:
    if "error" in message:
        return message["error"]["message"]
    return "".join(c.get("text", "") for c in message["result"]["content"])


async def refusal_to_url_eliciting_client(gw, token: str) -> MCPError:
    """The error the official SDK's client gets for acct_whoami when it declares URL-mode
    elicitation (an initialize-era session with an elicitation callback)."""
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def no_elicitation_requests(context, params):
        raise AssertionError("the gateway answers with an error, it does not ask")

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        async with streamable_http_client(gw.url, http_client=client) as (read, write):
            async with ClientSession(read, write, elicitation_callback=no_elicitation_requests) as session:
                await session.initialize()
                with pytest.raises(MCPError) as raised:
                    await session.call_tool("acct_whoami", {})
                return raised.value


def introspect(idp: OidcProvider, ca: Path, token: str) -> dict:
    """What the authorization server says of a token (as the resource server may ask)."""
    answered = requests.post(f"{idp.issuer}/token/introspection", data={"token": token},
                             auth=(RS_CLIENT, RS_SECRET), verify=str(ca), timeout=10)
    return answered.json()


def protected_upstream(cleanup: contextlib.ExitStack, tmp_path: Path, tls: dict, clients: list[dict],
                       users: dict, **upstream_options) -> tuple[OidcProvider, dict, Path]:
    """The upstream's authorization server (oidc-provider over TLS, knowing the resource server
    and `clients`) and the protected MCP server checking every bearer with it: the provider,
    the servers-file entry for a per-user connection to it, and the file recording the bearers
    it saw. Both are stopped by `cleanup`."""
    rs = {"client_id": RS_CLIENT, "client_secret": RS_SECRET, "redirect_uris": [],
          "grant_types": ["client_credentials"]}
    idp = OidcProvider.start(clients=[rs, *clients], users=users, tls=tls, upstream=upstream_options)
    cleanup.callback(idp.stop)
    seen = tmp_path / "seen.txt"
    seen.touch()
    port = str(free_port())
    server = upstream("oauth", port, str(tls["cert"]), str(tls["key"]), idp.issuer, str(tls["ca"]),
                      RS_CLIENT, RS_SECRET, str(seen))
    cleanup.callback(stop, server)
    remote = {"type": "http", "url": f"https://127.0.0.1:{port}/mcp", "allowAddresses": LOOPBACK,
              "oauth": {"grant": "authorization_code", "scopes": ["mcp"]}}
    return idp, remote, seen


def test_users_connect_their_own_accounts_and_calls_carry_their_own_tokens(tmp_path):
    tls = make_tls(tmp_path, names=("127.0.0.1",))
    svc = {"client_id": SERVICE_CLIENT, "client_secret": SERVICE_SECRET, "redirect_uris": [],
           "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"}
    with contextlib.ExitStack() as cleanup:  # every peer stopped, by PID, whatever fails
        idp, remote, seen = protected_upstream(cleanup, tmp_path, tls, [svc],
                                               {"carol": user("up-carol"), "dave": user("up-dave")},
                                               accessTokenTtl=TOKEN_TTL)
        service = {**remote, "oauth": {"grant": "client_credentials", "clientId": SERVICE_CLIENT,
                                       "clientSecret": "${credential:service-secret}", "scopes": ["mcp"]}}
        signin_idp, gw = start_control_plane(tmp_path, {"acct": remote, "svc": service},
                                             GIG_MASTER_KEY=secrets.token_hex(32),
                                             GIG_EGRESS_EXTRA_ROOTS=str(tls["ca"]))
        cleanup.callback(signin_idp.stop)
        cleanup.callback(stop, gw.proc)
        carol, dave = Account(gw, "carol", tls["ca"]), Account(gw, "dave", tls["ca"])
        assert carol.connections()["acct"]["state"] == "not_connected"
        # Over plain http no metadata document is offered (authorization servers fetch only
        # https ones): the gateway registers dynamically instead.
        offered = requests.get(f"{gw.base}/api/connections/client-metadata.json", timeout=10)
        assert offered.status_code == 404 and "not https" in offered.text, offered.text

        connected = carol.connect()
        assert connected.status_code == 302, connected.text
        assert connected.headers["location"] == "/servers/acct?connected=1"
        assert carol.connections()["acct"]["state"] == "connected"
        # The server's tools become known through the first connected account.
        deadline = time.monotonic() + 60
        while "error" in (mine := carol.whoami()):
            assert time.monotonic() < deadline, said(mine)
            time.sleep(0.5)
        assert said(mine) == "up-carol", mine

        # The catalog is listed through carol's account, so it takes only the tools from it:
        # her resources (her own data at the upstream) are not shown to anyone.
        assert carol.resources() == [] and dave.resources() == []

        # Dave has not connected: a clear error naming where to, and nothing reaches the upstream
        # under his name.
        refused = said(dave.whoami())
        assert "connect your account to acct first" in refused, refused
        assert f"{gw.base}/servers/acct" in refused, refused
        # A client that takes URL-mode elicitation is handed the page to open instead.
        elicited = asyncio.run(refusal_to_url_eliciting_client(gw, dave.token))
        assert elicited.error.code == -32042, elicited.error
        [page] = elicited.error.data["elicitations"]
        assert page["mode"] == "url" and page["url"] == f"{gw.base}/servers/acct", page
        # Dave connects from the dashboard, in a real browser.
        browsed = connect_in_browser(gw, dave, idp.issuer)
        assert browsed["before"] == "not_connected" and browsed["after"] == "connected", browsed
        assert browsed["left_for"] == idp.issuer and browsed["status"] == "Connected.", browsed
        assert browsed["axe"] == [] and browsed["page_errors"] == [], browsed
        assert said(dave.whoami()) == "up-dave"
        assert said(carol.whoami()) == "up-carol"

        # Across several token lifetimes the calls keep working: the gateway refreshes.
        tokens_before = set(seen.read_text().split())
        end = time.monotonic() + 2.5 * TOKEN_TTL
        while time.monotonic() < end:
            assert said(carol.whoami()) == "up-carol"
            time.sleep(1)
        assert len(set(seen.read_text().split()) - tokens_before) >= 2, "fresh tokens were used"

        # Dave's grant is revoked at the authorization server: the next refresh is refused,
        # his connection is marked broken with the reason, and he is told to reconnect.
        forgot = requests.post(f"{idp.issuer}/__test/forget", json={"sub": "up-dave"}, verify=str(tls["ca"]),
                               timeout=10)
        assert forgot.json()["forgot"] >= 1, forgot.text
        deadline = time.monotonic() + 4 * TOKEN_TTL
        while dave.connections()["acct"]["state"] != "broken":
            assert time.monotonic() < deadline, (dave.connections(), [
                line for line in gw.logs().splitlines() if "acct" in line or "refresh" in line.lower()][-25:])
            said(dave.whoami())
            time.sleep(1)
        assert "connect again" in dave.connections()["acct"]["reason"]
        # His own connection to the server is restarting on the refused token; then it stays
        # down, and every call says why.
        deadline = time.monotonic() + 60
        while "connect again" not in (why := said(dave.whoami())):
            assert time.monotonic() < deadline, why
            time.sleep(0.5)

        # Connecting again mends it.
        assert dave.connect().status_code == 302
        assert dave.connections()["acct"]["state"] == "connected"
        deadline = time.monotonic() + 60
        while (mine := said(dave.whoami())) != "up-dave":
            assert time.monotonic() < deadline, mine
            time.sleep(0.5)

        # No token anywhere the client, the log or the audit trail can see.
        tokens = set(seen.read_text().split())
        audit = requests.get(f"{gw.base}/api/audit", cookies=carol.http.cookies).text
        logs = gw.logs()
        for token in tokens:
            assert token not in logs and token not in audit
        assert not any(token in json.dumps(carol.connections()) for token in tokens)

        # Disconnecting revokes: the last token carol's calls carried is dead at the server.
        assert said(carol.whoami()) == "up-carol"
        last = next(t for t in reversed(seen.read_text().split())
                    if introspect(idp, tls["ca"], t).get("sub") == "up-carol")
        gone = carol.http.delete(f"{gw.base}/api/me/connections/acct", headers=csrf_headers(gw, carol.http))
        assert gone.status_code == 204, gone.text
        assert not introspect(idp, tls["ca"], last)["active"]
        assert carol.connections()["acct"]["state"] == "not_connected"
        assert "connect your account to acct first" in said(carol.whoami())
        assert said(dave.whoami()) == "up-dave", "the other user's connection is untouched"
        # Nothing left to forget, or not a server name at all: said so, nothing changes.
        again = carol.http.delete(f"{gw.base}/api/me/connections/acct", headers=csrf_headers(gw, carol.http))
        assert again.status_code == 404, again.text
        for bad in ("my%20server", ".hidden", "a%00b", "x" * 129):
            for method in (carol.http.post, carol.http.delete):
                refused = method(f"{gw.base}/api/me/connections/{bad}", headers=csrf_headers(gw, carol.http))
                assert refused.status_code == 400 and "[A-Za-z0-9._-]" in refused.text, (bad, refused.text)
                assert bad not in refused.text, "the refusal echoes the input"

        # The server-to-server entry: its secret set over /api, then its own token, renewed.
        admin = signed_in(gw, "alice")
        stored = admin.put(f"{gw.base}/api/servers/svc/credentials/service-secret",
                           json={"value": SERVICE_SECRET}, headers=csrf_headers(gw, admin))
        assert stored.status_code == 204, stored.text
        assert admin.post(f"{gw.base}/api/servers/svc/restart", headers=csrf_headers(gw, admin)).status_code < 300
        deadline = time.monotonic() + 60
        while "error" in (ours := answer(stateless_tool_call(gw.url, gw.token, "svc_whoami", {}))):
            assert time.monotonic() < deadline, said(ours)
            time.sleep(0.5)
        assert said(ours) == f"client:{SERVICE_CLIENT}"
        before = set(seen.read_text().split())
        end = time.monotonic() + 2.5 * TOKEN_TTL
        while time.monotonic() < end:
            assert said(answer(stateless_tool_call(gw.url, gw.token, "svc_whoami", {}))) == f"client:{SERVICE_CLIENT}"
            time.sleep(1)
        assert len(set(seen.read_text().split()) - before) >= 2, "the service token was renewed"
        assert SERVICE_SECRET not in gw.logs()

        # A callback nobody began, or someone else's, changes nothing.
        stray = carol.http.get(f"{gw.base}/api/connections/callback",
                               params={"code": "x", "state": "not-a-flow"}, allow_redirects=False)
        assert stray.status_code == 400 and "start again" in stray.text
        assert carol.connections()["acct"]["state"] == "not_connected"


def tls_front(tmp_path: Path, tls: dict, front: int, backend: int) -> subprocess.Popen:
    """HAProxy terminating TLS (the test CA's leaf for 127.0.0.1) on `front` before the gateway
    on `backend`, as a deployment puts its gateway behind https."""
    from test_scale_out import run_haproxy

    pem = tmp_path / "front.pem"
    pem.write_bytes(Path(tls["cert"]).read_bytes() + Path(tls["key"]).read_bytes())
    config = tmp_path / "front.cfg"
    config.write_text(f"""global
    maxconn 64
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend gateway
    bind 127.0.0.1:{front} ssl crt {pem}
    default_backend gateway
backend gateway
    server gw 127.0.0.1:{backend}
""")
    return run_haproxy(config, front, tmp_path / "front.log")


def test_behind_https_the_gateway_is_known_by_its_client_metadata_document(tmp_path):
    """With an https public URL the gateway offers a client ID metadata document, and an
    authorization server that takes them (oidc-provider's clientIdMetadataDocument) learns the
    gateway from it: no registration, the client id is the document's URL, and the user's
    tokens are issued to it. Served over https only; the document names only the callback."""
    tls = make_tls(tmp_path, names=("127.0.0.1",))
    with contextlib.ExitStack() as cleanup:
        idp, remote, seen = protected_upstream(cleanup, tmp_path, tls, [], {"erin": user("up-erin")},
                                               accessTokenTtl=60, metadataDocuments=True)
        discovery = requests.get(f"{idp.issuer}/.well-known/openid-configuration", verify=str(tls["ca"]),
                                 timeout=10).json()
        assert discovery["client_id_metadata_document_supported"] is True
        front, backend = free_port(), free_port()
        public = f"https://127.0.0.1:{front}"
        cleanup.callback(stop, tls_front(tmp_path, tls, front, backend))
        signin_idp, gw = start_control_plane(tmp_path, {"acct": remote}, port=backend, public=public,
                                             GIG_MASTER_KEY=secrets.token_hex(32),
                                             GIG_EGRESS_EXTRA_ROOTS=str(tls["ca"]))
        cleanup.callback(signin_idp.stop)
        cleanup.callback(stop, gw.proc)

        document_url = f"{public}/api/connections/client-metadata.json"
        document = requests.get(document_url, verify=str(tls["ca"]), timeout=10).json()
        assert document == {
            "client_id": document_url, "client_name": document["client_name"],
            "redirect_uris": [f"{public}/api/connections/callback"],
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "token_endpoint_auth_method": "none", "application_type": "web"}, document

        http = requests.Session()
        http.trust_env, http.verify = False, str(tls["ca"])
        signed = login(http, f"{public}/api/auth/login", "carol")
        assert signed.status_code == 302, signed.text
        front_gw = Gateway(f"{public}/mcp", public, gw.token, gw.proc, gw.log)
        started = http.post(f"{public}/api/me/connections/acct", headers=csrf_headers(front_gw, http))
        assert started.status_code == 200, started.text
        authorization = started.json()["authorization_url"]
        assert f"client_id={quote(document_url, safe='')}" in authorization, authorization
        callback = authorize_until_callback(http, authorization, "erin")
        assert callback.startswith(f"{public}/api/connections/callback?"), callback
        assert http.get(callback, allow_redirects=False, timeout=30).status_code == 302
        profile = make_profile(front_gw, http, {"name": unique("erin"), "tools": ["acct/*"]})
        token = make_token(front_gw, http, profile["id"])["token"]
        deadline = time.monotonic() + 60
        while "error" in (mine := answer(stateless_tool_call(gw.url, token, "acct_whoami", {}))):
            assert time.monotonic() < deadline, said(mine)
            time.sleep(0.5)
        assert said(mine) == "up-erin"
        [upstream_token, *_] = seen.read_text().split()
        assert introspect(idp, tls["ca"], upstream_token)["client_id"] == document_url
        assert upstream_token not in gw.logs()

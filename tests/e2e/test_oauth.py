"""OAuth on /mcp end to end: the gateway as authorization server in front of the real
oidc-provider, with the official Python SDK's OAuth client (mcp.client.auth) and the official
TypeScript SDK's, by dynamic registration and by client metadata document; then every way in that
must stay shut (each refused, changing nothing)."""

import base64
import hashlib
import json
import re
import secrets
import shutil
import subprocess
import time
import uuid
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx2
import pytest
import requests
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

from conftest import REPO, csrf_headers, echo_server, signed_in, start_control_plane, stop
from oauth_flow import DocumentServer, consent_form, consent_in_browser, consent_page

NODE = REPO / ".peers" / "bin" / "node22"
NODE_MODULES_DIR = REPO / ".peers" / "node"
# Never fetched: the browser step stops at the redirect and hands its URL to the client.
REDIRECT = "http://127.0.0.1:9/callback"


@pytest.fixture(scope="module")
def docs():
    with DocumentServer() as server:
        yield server


@pytest.fixture(scope="module")
def oauth_gw(tmp_path_factory, docs):
    """The control plane with the gateway trusting the document server's CA, and 127.0.0.1 (only)
    allowed for its own requests, as an operator would allow an internal address."""
    tmp = tmp_path_factory.mktemp("oauth")
    # A proxy in the environment must be ignored (it would connect past the address check):
    # they point at a closed port, so any document fetched through one would fail. (Only the
    # https ones: the identity provider here is plain http, and may use a proxy.)
    dead = "http://127.0.0.1:9"
    idp, gw = start_control_plane(tmp, {"echo": echo_server()},
                                  GIG_EGRESS_EXTRA_ROOTS=str(docs.ca_file),
                                  GIG_EGRESS_ALLOW_ADDRESSES="127.0.0.1/32",
                                  HTTPS_PROXY=dead, https_proxy=dead)
    yield gw
    stop(gw.proc)
    idp.stop()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def make_profile(gw, http, name: str, tools: list[str]) -> int:
    r = http.post(f"{gw.base}/api/profiles", json={"name": name, "tools": tools},
                  headers=csrf_headers(gw, http))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register(gw, redirect_uris=(REDIRECT,), **extra) -> requests.Response:
    return requests.post(f"{gw.base}/oauth/register",
                         json={"client_name": "e2e raw", "redirect_uris": list(redirect_uris), **extra}, timeout=30)


def authorize_url(gw, client_id: str, challenge: str | None, **params) -> str:
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
             "state": "st-1", "scope": "mcp", "resource": gw.url,
             **({"code_challenge": challenge, "code_challenge_method": "S256"} if challenge else {}), **params}
    return f"{gw.base}/oauth/authorize?{urlencode({k: v for k, v in query.items() if v is not None})}"


def query_of(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def token(gw, auth=None, **form) -> requests.Response:
    return requests.post(f"{gw.base}/oauth/token", data=form, auth=auth, timeout=30)


def code_for(gw, http, client_id: str, profile: str, **params) -> tuple[str, str]:
    verifier, challenge = pkce()
    landed = consent_in_browser(http, authorize_url(gw, client_id, challenge, **params), gw.base, "carol", profile)
    q = query_of(landed)
    assert "code" in q, landed
    return q["code"], verifier


def tokens_for(gw, http, client_id: str, profile: str, **params) -> dict:
    code, verifier = code_for(gw, http, client_id, profile, **params)
    r = token(gw, grant_type="authorization_code", code=code, code_verifier=verifier,
              redirect_uri=REDIRECT, client_id=client_id, resource=gw.url)
    assert r.status_code == 200, r.text
    return r.json()


def mcp_post(gw, bearer: str) -> requests.Response:
    return requests.post(gw.url, timeout=30, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}},
        headers={"Authorization": f"Bearer {bearer}", "Accept": "application/json, text/event-stream"})


def eventually(check, timeout: float = 10.0) -> None:
    """Revocations are seen within the resolver's 1.5 s; poll rather than sleep a guess."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def grants(gw, http) -> list[dict]:
    r = http.get(f"{gw.base}/api/oauth/grants")
    assert r.status_code == 200, r.text
    return r.json()["grants"]


class Memory(TokenStorage):
    def __init__(self):
        self.tokens, self.client, self.history = None, None, []

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens
        self.history.append(tokens)

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, info):
        self.client = info


@asynccontextmanager
async def python_sdk(gw, http, profile: str, storage: Memory, metadata_url: str | None = None):
    """An initialized SDK session signed in by OAuth: the SDK runs discovery, registration,
    authorization (the browser step answered as carol, choosing `profile`) and the exchange."""
    landed = {}

    async def redirect_handler(url: str) -> None:
        landed["url"] = await anyio.to_thread.run_sync(
            lambda: consent_in_browser(http, url, gw.base, "carol", profile))

    async def callback_handler() -> AuthorizationCodeResult:
        q = query_of(landed["url"])
        return AuthorizationCodeResult(code=q["code"], state=q.get("state"), iss=q.get("iss"))

    provider = OAuthClientProvider(
        server_url=gw.url,
        client_metadata=OAuthClientMetadata(client_name="gig e2e python", redirect_uris=[REDIRECT],
                                            grant_types=["authorization_code", "refresh_token"],
                                            response_types=["code"], token_endpoint_auth_method="none"),
        storage=storage, redirect_handler=redirect_handler, callback_handler=callback_handler,
        client_metadata_url=metadata_url)
    async with httpx2.AsyncClient(auth=provider, timeout=30) as client:
        async with streamable_http_client(gw.url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def test_a_401_leads_a_client_to_the_authorization_server(oauth_gw):
    gw = oauth_gw
    anonymous = requests.post(gw.url, json={}, headers={"Accept": "application/json, text/event-stream"})
    assert anonymous.status_code == 401
    challenge = anonymous.headers["WWW-Authenticate"]
    prm_url = f"{gw.base}/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{prm_url}"' in challenge and 'scope="mcp"' in challenge, challenge
    wrong = mcp_post(gw, "gigo_" + "0" * 64)
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]

    for url in (prm_url, f"{gw.base}/.well-known/oauth-protected-resource"):
        prm = requests.get(url)
        assert prm.status_code == 200 and prm.headers["Access-Control-Allow-Origin"] == "*"
        assert prm.json()["resource"] == gw.url
        assert prm.json()["authorization_servers"] == [gw.base]
    for path in ("oauth-authorization-server", "openid-configuration"):
        meta = requests.get(f"{gw.base}/.well-known/{path}").json()
        assert meta["issuer"] == gw.base
        assert meta["code_challenge_methods_supported"] == ["S256"]
        assert meta["client_id_metadata_document_supported"] is True
        assert meta["authorization_response_iss_parameter_supported"] is True
        assert meta["registration_endpoint"] == f"{gw.base}/oauth/register"
    preflight = requests.options(f"{gw.base}/oauth/token", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.anyio
async def test_python_sdk_by_dynamic_registration_then_the_user_revokes(oauth_gw):
    gw = oauth_gw
    http = signed_in(gw, "carol")
    profile = unique("py-dcr")
    make_profile(gw, http, profile, ["echo_echo"])
    storage = Memory()
    async with python_sdk(gw, http, profile, storage) as session:
        names = [t.name for t in (await session.list_tools()).tools]
        assert names == ["echo_echo"], names
        said = await session.call_tool("echo_echo", {"message": "via oauth"})
        assert "via oauth" in said.content[0].text
        client_id = storage.client.client_id
        assert client_id.startswith("gigd_"), client_id
        access = storage.tokens.access_token
        assert access.startswith("gigo_") and storage.tokens.refresh_token.startswith("gigr_")

        mine = [g for g in grants(gw, http) if g["client_id"] == client_id]
        assert len(mine) == 1 and mine[0]["client_name"] == "gig e2e python", mine

        # The audit row names the user and the client.
        admin = signed_in(gw, "alice")
        calls = admin.get(f"{gw.base}/api/audit", params={"kind": "tool.call", "limit": 50}).json()["records"]
        ours = [c for c in calls if f"client:{client_id}" in c["actor"]]
        assert ours and ours[0]["actor"].startswith("user:") and ours[0]["detail"]["client"] == client_id, calls[:3]

        # The user takes the grant back: the token stops working.
        revoked = http.delete(f"{gw.base}/api/oauth/grants/{mine[0]['id']}", headers=csrf_headers(gw, http))
        assert revoked.status_code == 204, revoked.text
        eventually(lambda: mcp_post(gw, access).status_code == 401)
        assert not [g for g in grants(gw, http) if g["client_id"] == client_id]
        again = http.delete(f"{gw.base}/api/oauth/grants/{mine[0]['id']}", headers=csrf_headers(gw, http))
        assert again.status_code == 404

    # Never written down in clear: not in the log, not in the database.
    assert access not in gw.logs() and storage.tokens.refresh_token not in gw.logs()
    for db in (gw.log.parent / "data").glob("*.db*"):
        assert access.encode() not in db.read_bytes()


@pytest.mark.anyio
async def test_python_sdk_by_metadata_document(oauth_gw, docs):
    gw = oauth_gw
    path = f"/{unique('py-client')}.json"
    url = docs.url(path)
    docs.documents[path] = {"client_id": url, "client_name": "Doc-identified Python",
                            "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    http = signed_in(gw, "carol")
    profile = unique("py-cimd")
    make_profile(gw, http, profile, ["echo/*"])

    # The consent page says who vouches for the client.
    verifier, challenge = pkce()
    _, page = consent_page(http, authorize_url(gw, url, challenge), gw.base, "carol")
    assert "Doc-identified Python" in page.text and "published by <strong>127.0.0.1</strong>" in page.text
    assert "Unverified" not in page.text

    storage = Memory()
    async with python_sdk(gw, http, profile, storage, metadata_url=url) as session:
        assert storage.client.client_id == url
        names = [t.name for t in (await session.list_tools()).tools]
        assert "echo_echo" in names
    assert docs.fetched.count(path) == 1, "the document is fetched once, then cached"


def run_typescript(gw, http, profile: str, metadata_url: str | None) -> dict:
    assert NODE.exists(), "run tests/peers/install-peers.sh (make peers)"
    script = NODE_MODULES_DIR / f"gig-e2e-oauth-{uuid.uuid4().hex}.mjs"
    shutil.copy(REPO / "tests" / "e2e" / "oauth_client.mjs", script)
    args = [str(NODE), str(script), gw.url, REDIRECT, "echo_echo"] + ([metadata_url] if metadata_url else [])
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("AUTHORIZE "), first + proc.stderr.read()
        landed = consent_in_browser(http, first.split(" ", 1)[1].strip(), gw.base, "carol", profile)
        out, err = proc.communicate(landed + "\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        script.unlink()
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("registration", ["dynamic", "metadata-document"])
def test_typescript_sdk(oauth_gw, docs, registration):
    gw = oauth_gw
    http = signed_in(gw, "carol")
    profile = unique("ts")
    make_profile(gw, http, profile, ["echo_echo"])
    metadata_url = None
    if registration == "metadata-document":
        path = f"/{unique('ts-client')}.json"
        metadata_url = docs.url(path)
        docs.documents[path] = {"client_id": metadata_url, "client_name": "TS doc client",
                                "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    out = run_typescript(gw, http, profile, metadata_url)
    assert "error" not in out, out
    assert out["tools"] == ["echo_echo"] and "hi from ts" in out["call"], out
    assert out["iss"] == gw.base
    assert out["client_id"] == (metadata_url or out["client_id"]) and out["client_id"]


@pytest.mark.anyio
async def test_expiry_refresh_rotation_and_replay(tmp_path):
    """Short-lived access tokens: one expires (refused), the SDK refreshes and gets a new refresh
    token; the old one presented again revokes the grant, so the new access token dies too."""
    idp, gw = start_control_plane(tmp_path, {"echo": echo_server()}, GIG_OAUTH_ACCESS_TOKEN_TTL_SECS="3")
    try:
        http = signed_in(gw, "carol")
        profile = unique("short")
        make_profile(gw, http, profile, ["echo_echo"])
        storage = Memory()
        async with python_sdk(gw, http, profile, storage) as session:
            first = storage.tokens
            assert first.expires_in == 3
            await anyio.to_thread.run_sync(lambda: eventually(lambda: mcp_post(gw, first.access_token).status_code == 401))
            # The SDK sees its token has expired and refreshes before the next request.
            assert (await session.list_tools()).tools
            second = storage.tokens
            assert second.access_token != first.access_token
            assert second.refresh_token != first.refresh_token, "refresh tokens rotate on use"
            assert mcp_post(gw, second.access_token).status_code == 200
            replay = token(gw, grant_type="refresh_token", refresh_token=first.refresh_token,
                           client_id=storage.client.client_id)
            assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
            await anyio.to_thread.run_sync(lambda: eventually(lambda: mcp_post(gw, second.access_token).status_code == 401))
            after = token(gw, grant_type="refresh_token", refresh_token=second.refresh_token,
                          client_id=storage.client.client_id)
            assert after.status_code == 400, "the whole grant went with the replay"
            assert grants(gw, http) == []
    finally:
        stop(gw.proc)
        idp.stop()


# -- what must stay shut ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def carol(oauth_gw):
    gw = oauth_gw
    http = signed_in(gw, "carol")
    name = unique("neg")
    make_profile(gw, http, name, ["echo_echo"])
    return http, name


@pytest.fixture(scope="module")
def client_id(oauth_gw):
    r = register(oauth_gw)
    assert r.status_code == 201, r.text
    assert "client_secret" not in r.json()
    return r.json()["client_id"]


def assert_page_refusal(r: requests.Response, text: str) -> None:
    assert r.status_code in (400, 403) and "Location" not in r.headers, (r.status_code, r.headers)
    assert text in r.text, r.text
    assert r.headers["X-Frame-Options"] == "DENY"


def test_client_and_redirect_refusals_never_redirect(oauth_gw, carol, client_id):
    gw, (http, _) = oauth_gw, carol
    before = grants(gw, http)
    _, challenge = pkce()
    for url, why in [
        (authorize_url(gw, "gigd_" + "0" * 64, challenge), "unknown client"),
        (authorize_url(gw, client_id, challenge, redirect_uri="https://evil.example/cb"), "not one the client registered"),
        (authorize_url(gw, client_id, challenge, redirect_uri=REDIRECT + "/extra"), "not one the client registered"),
    ]:
        _, page = consent_page(http, url, gw.base, "carol")
        assert_page_refusal(page, why)
    for bad in (["http://evil.example/cb"], ["javascript:alert(1)"], [], ["https://ok.example/cb#frag"]):
        r = register(gw, redirect_uris=bad)
        assert r.status_code == 400 and r.json()["error"] == "invalid_redirect_uri", (bad, r.text)
    assert register(gw, token_endpoint_auth_method="private_key_jwt").status_code == 400
    # After sign-in the browser returns to a path on this gateway only.
    fresh = requests.Session()
    from oidc import authorize_until_callback
    callback = authorize_until_callback(fresh, f"{gw.base}/api/auth/login?return_to=//evil.example/x", "carol")
    assert fresh.get(callback, allow_redirects=False).headers["Location"] == "/"
    assert grants(gw, http) == before


def test_bad_requests_are_shown_not_redirected(oauth_gw, carol, client_id):
    """Anyone can register any redirect URI, so a bad request never sends the browser there."""
    gw, (http, _) = oauth_gw, carol
    before = grants(gw, http)
    _, challenge = pkce()
    for params, error in [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"resource": "https://other.example/mcp"}, "invalid_target"),
        ({"scope": "mcp admin"}, "invalid_scope"),
        ({"state": "s" * 513}, "invalid_request"),
    ]:
        _, r = consent_page(http, authorize_url(gw, client_id, challenge, **params), gw.base, "carol")
        assert_page_refusal(r, error)
    assert grants(gw, http) == before


def test_a_real_browser_consents(oauth_gw, carol, client_id):
    """Chromium sends the consent form as browsers do (its own Origin under the page's referrer
    policy); the page passes axe-core and its CSP."""
    gw, (_, profile) = oauth_gw, carol
    _, challenge = pkce()
    config = {"peers_node": str(NODE_MODULES_DIR), "authorize_url": authorize_url(gw, client_id, challenge),
              "base": gw.base, "login": "carol", "profile": profile, "redirect": REDIRECT}
    done = subprocess.run([str(NODE), str(REPO / "tests" / "e2e" / "oauth_browser.mjs"), json.dumps(config)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["fatal"] is None, f"{found['fatal']}\n{done.stderr[-3000:]}"
    q = query_of(found["landed"])
    assert q["state"] == "st-1" and q["iss"] == gw.base and q["code"].startswith("gigc_"), found
    assert found["axe"] == [], found["axe"]
    assert found["csp"] == [], found["csp"]


def test_the_consent_form_answers_only_its_own_session(oauth_gw, carol, client_id):
    gw, (http, profile) = oauth_gw, carol
    before = grants(gw, http)
    _, challenge = pkce()
    _, page = consent_page(http, authorize_url(gw, client_id, challenge), gw.base, "carol")
    assert "Unverified client" in page.text, "a self-registered client is flagged"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    hidden, profiles = consent_form(page)
    form = {**hidden, "profile": profiles[profile], "decision": "allow"}
    url = f"{gw.base}/oauth/authorize"
    assert_page_refusal(http.post(url, data=form, allow_redirects=False), "own page")
    assert_page_refusal(http.post(url, data=form, headers={"Origin": "https://evil.example"}, allow_redirects=False), "own page")
    assert_page_refusal(http.post(url, data={**form, "csrf": "0" * 64}, headers={"Origin": gw.base}, allow_redirects=False), "not valid for your session")
    dave = signed_in(gw, "dave")
    assert_page_refusal(dave.post(url, data=form, headers={"Origin": gw.base}, allow_redirects=False), "not valid for your session")
    # Another of carol's sessions cannot answer it either.
    other = signed_in(gw, "carol")
    other_form = {**form, "csrf": csrf_headers(gw, other)["X-CSRF-Token"]}
    assert_page_refusal(other.post(url, data=other_form, headers={"Origin": gw.base}, allow_redirects=False), "not valid for your session")
    denied = http.post(url, data={**form, "decision": "deny"}, headers={"Origin": gw.base}, allow_redirects=False)
    assert denied.status_code == 303 and query_of(denied.headers["Location"])["error"] == "access_denied"
    assert grants(gw, http) == before
    # A form is answered once: the same form again (allow, this time) is refused.
    again = http.post(url, data=form, headers={"Origin": gw.base}, allow_redirects=False)
    assert_page_refusal(again, "used")
    assert grants(gw, http) == before


def test_code_exchange_refusals(oauth_gw, carol, client_id):
    gw, (http, profile) = oauth_gw, carol
    other = register(gw).json()["client_id"]
    form = dict(grant_type="authorization_code", redirect_uri=REDIRECT, client_id=client_id)
    before = grants(gw, http)

    code, verifier = code_for(gw, http, client_id, profile)
    assert token(gw, **{**form, "code": code}).json()["error"] == "invalid_request", "no verifier"
    r = token(gw, **form, code=code, code_verifier=pkce()[0])
    assert r.json()["error"] == "invalid_grant", "wrong verifier"
    r = token(gw, **form, code=code, code_verifier=verifier)
    assert r.json()["error"] == "invalid_grant", "a code gets one try"

    code, verifier = code_for(gw, http, client_id, profile)
    r = token(gw, **{**form, "client_id": other}, code=code, code_verifier=verifier)
    assert r.json()["error"] == "invalid_grant", "another client's code"

    code, verifier = code_for(gw, http, client_id, profile)
    r = token(gw, **{**form, "redirect_uri": "http://127.0.0.1:9/elsewhere"}, code=code, code_verifier=verifier)
    assert r.json()["error"] == "invalid_grant", "redirect_uri mismatch"

    code, verifier = code_for(gw, http, client_id, profile)
    r = token(gw, **form, code=code, code_verifier=verifier, resource="https://other.example/mcp")
    assert r.json()["error"] == "invalid_target", "another audience"

    # Replay: the second exchange fails and takes the first one's tokens with it.
    code, verifier = code_for(gw, http, client_id, profile)
    first = token(gw, **form, code=code, code_verifier=verifier)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    assert mcp_post(gw, first.json()["access_token"]).status_code == 200
    replay = token(gw, **form, code=code, code_verifier=verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    eventually(lambda: mcp_post(gw, first.json()["access_token"]).status_code == 401)

    # Nothing above left a live grant behind.
    assert grants(gw, http) == before


def test_token_use_refusals(oauth_gw, carol, client_id):
    gw, (http, profile) = oauth_gw, carol
    other = register(gw).json()["client_id"]
    issued = tokens_for(gw, http, client_id, profile)
    assert mcp_post(gw, issued["access_token"]).status_code == 200

    # Another client's refresh token: refused (and, leaked, it is spent).
    r = token(gw, grant_type="refresh_token", refresh_token=issued["refresh_token"], client_id=other)
    assert r.json()["error"] == "invalid_grant"

    # An /api token on /mcp, and an OAuth token on /api.
    made = http.post(f"{gw.base}/api/tokens", json={"name": unique("api")}, headers=csrf_headers(gw, http))
    assert made.status_code == 201, made.text
    assert mcp_post(gw, made.json()["token"]).status_code == 401
    fresh = tokens_for(gw, http, client_id, profile)
    assert requests.get(f"{gw.base}/api/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}).status_code == 401

    # A token without the mcp scope: 403 insufficient_scope, naming the scope.
    narrow = tokens_for(gw, http, client_id, profile, scope="offline_access")
    r = mcp_post(gw, narrow["access_token"])
    assert r.status_code == 403, r.text
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"] and 'scope="mcp"' in r.headers["WWW-Authenticate"]

    # Revocation (RFC 7009): by another client changes nothing; by the owner ends the token.
    r = requests.post(f"{gw.base}/oauth/revoke", data={"token": fresh["access_token"], "client_id": other})
    assert r.status_code == 200
    assert mcp_post(gw, fresh["access_token"]).status_code == 200
    r = requests.post(f"{gw.base}/oauth/revoke", data={"token": fresh["access_token"], "client_id": client_id})
    assert r.status_code == 200
    eventually(lambda: mcp_post(gw, fresh["access_token"]).status_code == 401)
    r = requests.post(f"{gw.base}/oauth/revoke", data={"token": fresh["refresh_token"], "client_id": client_id})
    assert r.status_code == 200
    refreshed = token(gw, grant_type="refresh_token", refresh_token=fresh["refresh_token"], client_id=client_id)
    assert refreshed.json()["error"] == "invalid_grant"


def test_confidential_clients_must_authenticate(oauth_gw, carol):
    gw, (http, profile) = oauth_gw, carol
    made = register(gw, token_endpoint_auth_method="client_secret_basic")
    assert made.status_code == 201, made.text
    cid, secret = made.json()["client_id"], made.json()["client_secret"]
    code, verifier = code_for(gw, http, cid, profile)
    form = dict(grant_type="authorization_code", code=code, code_verifier=verifier, redirect_uri=REDIRECT)
    r = token(gw, **form, client_id=cid)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = token(gw, auth=(cid, "wrong"), **form)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    r = token(gw, auth=(cid, secret), **form)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("where, why", [
    ("loopback", "loopback"),
    ("private", "private"),
    ("metadata", "link-local"),
    ("too-large", "larger than"),
    ("slow", "did not answer in time"),
    ("misnamed", "not the URL it was fetched from"),
])
def test_metadata_documents_the_gateway_will_not_use(oauth_gw, carol, docs, where, why):
    gw, (http, _) = oauth_gw, carol
    url = {
        "loopback": docs.url("/loopback.json", host="127.0.0.2"),
        "private": "https://10.255.255.1/client.json",
        "metadata": "https://169.254.169.254/latest/client.json",
        "too-large": docs.url("/big.json"),
        "slow": docs.url("/slow.json"),
        "misnamed": docs.url("/misnamed.json"),
    }[where]
    docs.documents["/loopback.json"] = {"client_id": url, "redirect_uris": [REDIRECT]}
    docs.documents["/misnamed.json"] = {"client_id": "https://someone-else.example/c.json", "redirect_uris": [REDIRECT]}
    before = grants(gw, http)
    _, challenge = pkce()
    _, page = consent_page(http, authorize_url(gw, url, challenge), gw.base, "carol")
    assert_page_refusal(page, why)
    assert grants(gw, http) == before


def test_anonymous_requests_never_fetch_a_document(oauth_gw, docs):
    gw = oauth_gw
    path = f"/{unique('anon')}.json"
    _, challenge = pkce()
    r = requests.get(authorize_url(gw, docs.url(path), challenge), allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith("/api/auth/login?return_to=")
    assert path not in docs.fetched

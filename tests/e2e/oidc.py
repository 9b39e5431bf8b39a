"""A real OpenID Provider as a test peer, and a scripted browser for its login pages.

The provider is npm `oidc-provider` 9.x run by tests/peers/oidc-provider.mjs (installed by
tests/peers/install-peers.sh into .peers/node next to node_modules, run with .peers/bin/node22):
issuer http://127.0.0.1:PORT, static clients, users with `groups`, PKCE S256 required, the ID
token carries email/name/groups, devInteractions login + consent pages, RP-initiated logout, and
test-only hostile ID-token modes (`set_hostile`). Plain helpers, no fixtures:

    with OidcProvider.start(clients=[client("http://127.0.0.1:8080/api/auth/callback")],
                            users={"alice": user("u-alice", groups=["admins"])}) as idp:
        http = requests.Session()
        resp = login(http, gateway_base + "/api/auth/login", "alice")   # the callback's response
        cb = authorize_until_callback(http, gateway_base + "/api/auth/login", "alice")  # not fetched
        idp.set_hostile("aud")   # next token response carries an ID token with aud="someone-else"
        logout_at_idp(http, end_session_url)  # confirms the IdP's logout page, returns the redirect

A missing peer raises (tests fail, never skip): run `tests/peers/install-peers.sh .peers`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

REPO = Path(__file__).resolve().parents[2]
PEERS_DIR = REPO / ".peers"
NODE = PEERS_DIR / "bin" / "node22"
SCRIPT = PEERS_DIR / "node" / "oidc-provider.mjs"

HOSTILE_MODES = (None, "aud", "iss", "nonce", "expired", "signature")


def client(
    *redirect_uris: str,
    client_id: str = "gig-gateway",
    client_secret: str = "gig-test-secret",
    post_logout_redirect_uris: list[str] | None = None,
    token_endpoint_auth_method: str = "client_secret_basic",
) -> dict:
    """One entry of the provider's `clients` list."""
    return {
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uris": list(redirect_uris),
        "post_logout_redirect_uris": post_logout_redirect_uris or [],
        "token_endpoint_auth_method": token_endpoint_auth_method,
    }


def user(sub: str, email: str | None = None, name: str | None = None, groups: list[str] | None = None) -> dict:
    """One value of the provider's `users` map (keyed by login name)."""
    return {"sub": sub, "email": email or f"{sub}@example.test", "name": name or sub, "groups": groups or []}


class OidcProvider:
    """A running tests/peers/oidc-provider.mjs. Stop it with stop() (by PID) or use `with`."""

    def __init__(self, proc: subprocess.Popen, issuer: str, port: int, log: Path):
        self.proc = proc
        self.issuer = issuer
        self.port = port
        self.log = log

    @classmethod
    def start(
        cls,
        node_path: Path | str = NODE,
        script_path: Path | str = SCRIPT,
        clients: list[dict] | None = None,
        users: dict[str, dict] | None = None,
        *,
        log_path: Path | str | None = None,
        timeout: float = 30.0,
        tls: dict | None = None,
        upstream: dict | None = None,
    ) -> "OidcProvider":
        for p in (node_path, script_path):
            if not Path(p).exists():
                raise FileNotFoundError(f"{p} missing: run tests/peers/install-peers.sh {PEERS_DIR}")
        config = {"port": 0, "clients": clients or [], "users": users or {}}
        if tls:
            config["tls"] = {"cert": str(tls["cert"]), "key": str(tls["key"])}
        if upstream is not None:
            config["upstream"] = upstream
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="oidc-provider-", suffix=".log")
            os.close(fd)
        log = Path(log_path)
        proc = subprocess.Popen(
            [str(node_path), str(script_path), json.dumps(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            cwd=str(Path(script_path).parent),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
                 # The provider's own fetches (client metadata documents) trust the test CA.
                 **({"NODE_EXTRA_CA_CERTS": str(tls["ca"])} if tls and "ca" in tls else {})},
        )
        line = b""
        deadline = time.monotonic() + timeout
        try:
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no listening line within {timeout}s")
                ready, _, _ = select.select([proc.stdout], [], [], left)
                if ready:
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        raise RuntimeError(f"exited with {proc.wait()}")
                    line += chunk
            info = json.loads(line)
        except Exception as e:
            _stop(proc)
            raise AssertionError(f"oidc-provider did not start ({e}):\n{log.read_text(errors='replace')}") from e
        return cls(proc, info["issuer"], int(info["listening"]), log)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def discovery(self) -> dict:
        resp = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
        resp.raise_for_status()
        return resp.json()

    def jwks(self) -> dict:
        resp = requests.get(self.discovery()["jwks_uri"], timeout=10)
        resp.raise_for_status()
        return resp.json()

    def set_hostile(self, mode: str | None) -> None:
        """From now on the token endpoint's id_token has `mode` wrong (None: honest again)."""
        if mode not in HOSTILE_MODES:
            raise ValueError(f"unknown hostile mode {mode!r}")
        resp = requests.post(f"{self.issuer}/__test/hostile", json={"mode": mode}, timeout=10)
        resp.raise_for_status()
        assert resp.json() == {"mode": mode}, resp.text

    def hostile(self) -> str | None:
        resp = requests.get(f"{self.issuer}/__test/hostile", timeout=10)
        resp.raise_for_status()
        return resp.json()["mode"]

    def stop(self) -> None:
        _stop(self.proc)

    def __enter__(self) -> "OidcProvider":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


class _Forms(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "method": (a.get("method") or "get").lower(), "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""


def _origin(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}"


def _is_authorization_request(url: str) -> bool:
    q = parse_qs(urlsplit(url).query)
    return "response_type" in q and "client_id" in q


def authorize_until_callback(
    http: requests.Session, start_url: str, username: str, *, password: str = "any-password", max_steps: int = 20
) -> str:
    """Drive the code flow from `start_url` (e.g. the gateway's /api/auth/login, or the IdP's
    authorization URL itself) through the IdP's login and consent pages, following redirects by
    hand, and return the absolute callback URL (the first redirect leaving the IdP's origin)
    WITHOUT requesting it. The IdP's origin is the one the authorization request (response_type +
    client_id in the query) is sent to. An unknown `username` yields a callback URL carrying
    error=access_denied. Cookies of the RP and the IdP stay in `http`."""
    url, method, data = start_url, "get", None
    idp = _origin(start_url) if _is_authorization_request(start_url) else None
    for _ in range(max_steps):
        resp = http.request(method, url, data=data, allow_redirects=False, timeout=15)
        method, data = "get", None
        if resp.is_redirect:
            nxt = urljoin(url, resp.headers["Location"])
            if idp is not None and _origin(nxt) != idp:
                return nxt
            if idp is None and _is_authorization_request(nxt):
                idp = _origin(nxt)
            url = nxt
            continue
        if resp.status_code != 200:
            raise AssertionError(f"{resp.request.method} {url} -> {resp.status_code}: {resp.text[:2000]}")
        parser = _Forms()
        parser.feed(resp.text)
        form = next((f for f in parser.forms if "prompt" in f["fields"]), None)
        if form is None:
            raise AssertionError(f"no login/consent form at {url}: {resp.text[:2000]}")
        idp = idp or _origin(url)
        data = dict(form["fields"])
        if data["prompt"] == "login":
            data.update(login=username, password=password)
        url, method = urljoin(url, form["action"]), form["method"]
    raise AssertionError(f"no callback after {max_steps} steps (last: {url})")


def login(http: requests.Session, start_url: str, username: str, **kw) -> requests.Response:
    """authorize_until_callback, then GET the callback (allow_redirects=False) and return that
    response: for the gateway, a 302 to / that sets the `gig_session` cookie."""
    callback = authorize_until_callback(http, start_url, username, **kw)
    return http.get(callback, allow_redirects=False, timeout=30)


def logout_at_idp(http: requests.Session, end_session_url: str, *, confirm: bool = True, max_steps: int = 10) -> str:
    """Open an RP-initiated logout URL (the IdP's end_session_endpoint with id_token_hint,
    post_logout_redirect_uri, state, ...), answer the IdP's "sign me out?" form (yes, or no when
    `confirm` is false) and return the first redirect leaving the IdP's origin (the
    post_logout_redirect_uri with its state) WITHOUT requesting it; when there is none, the URL of
    the IdP page the flow ended on."""
    idp = _origin(end_session_url)
    url, method, data = end_session_url, "get", None
    for _ in range(max_steps):
        resp = http.request(method, url, data=data, allow_redirects=False, timeout=15)
        method, data = "get", None
        if resp.is_redirect:
            nxt = urljoin(url, resp.headers["Location"])
            if _origin(nxt) != idp:
                return nxt
            url = nxt
            continue
        if resp.status_code != 200:
            raise AssertionError(f"{resp.request.method} {url} -> {resp.status_code}: {resp.text[:2000]}")
        parser = _Forms()
        parser.feed(resp.text)
        form = next((f for f in parser.forms if "xsrf" in f["fields"]), None)
        if form is None:
            return url
        data = dict(form["fields"], **({"logout": "yes"} if confirm else {}))
        url, method = urljoin(url, form["action"]), form["method"]
    raise AssertionError(f"logout did not finish after {max_steps} steps (last: {url})")

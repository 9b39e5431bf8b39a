"""The gateway as an OAuth authorization server, driven the way a person's browser does it, plus
a small HTTPS server for client metadata documents.

    callback = consent_in_browser(http, authorization_url, gw.base, "carol", profile="work")
    # -> the client's redirect URI with code, state and iss (not fetched)

`http` is a requests.Session (the browser's cookie jar). If it is not signed in to the gateway,
the gateway sends it to /api/auth/login and the real oidc-provider's login and consent pages are
answered (oidc.authorize_until_callback); back at the gateway, its consent page is answered.

    with DocumentServer(documents={"/client.json": {...}}) as docs:
        docs.url("/client.json")   # https://127.0.0.1:PORT/client.json, CA in docs.ca_file

The document server is plain Python (ssl + http.server) with a throwaway CA (netlab.make_tls); it also serves `/big.json` (over 64 KiB) and `/slow.json` (answers after 8 s), and
listens on 127.0.0.1 and 127.0.0.2 (the latter to test loopback addresses the gateway must refuse).
"""

from __future__ import annotations

import html
import json
import re
import ssl
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin

import requests

from netlab import make_tls
from oidc import authorize_until_callback

_PROFILE = re.compile(r'<input type="radio" name="profile" value="(\d+)"[^>]*> ([^<]*)</label>')
_HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


def consent_page(http: requests.Session, authorization_url: str, base: str, username: str,
                 max_steps: int = 10) -> tuple[str, requests.Response]:
    """Follows the authorization request until the gateway answers with a page (its consent page
    or an error page), signing in as `username` on the way if needed. Returns (url, response);
    when the gateway redirects away (to the client), the response is that redirect."""
    url = authorization_url
    for _ in range(max_steps):
        r = http.get(url, allow_redirects=False, timeout=30)
        if not r.is_redirect:
            return url, r
        nxt = urljoin(url, r.headers["Location"])
        if nxt.startswith(f"{base}/api/auth/login"):
            callback = authorize_until_callback(http, nxt, username)
            signed = http.get(callback, allow_redirects=False, timeout=30)
            assert signed.status_code == 302, signed.text
            url = urljoin(callback, signed.headers["Location"])
            continue
        if not nxt.startswith(base + "/"):
            return url, r
        url = nxt
    raise AssertionError(f"no page after {max_steps} steps (last: {url})")


def consent_form(page: requests.Response) -> tuple[dict, dict[str, str]]:
    """The consent page's hidden fields and its profiles (name -> id)."""
    assert page.status_code == 200, page.text
    hidden = {k: html.unescape(v) for k, v in _HIDDEN.findall(page.text)}
    profiles = {html.unescape(name): pid for pid, name in _PROFILE.findall(page.text)}
    assert "request" in hidden and "csrf" in hidden, page.text
    return hidden, profiles


def consent_in_browser(http: requests.Session, authorization_url: str, base: str, username: str,
                       profile: str, decision: str = "allow") -> str:
    """Signs in if needed, answers the consent page with `profile` and `decision`, and returns
    the URL the gateway sends the browser to (the client's redirect URI), not fetched."""
    url, page = consent_page(http, authorization_url, base, username)
    assert not page.is_redirect, f"no consent page: redirected to {page.headers.get('Location')}"
    hidden, profiles = consent_form(page)
    assert profile in profiles, (profile, profiles)
    answer = http.post(f"{base}/oauth/authorize",
                       data={**hidden, "profile": profiles[profile], "decision": decision},
                       headers={"Origin": base}, allow_redirects=False, timeout=30)
    assert answer.status_code == 303, answer.text
    return answer.headers["Location"]


class DocumentServer:
    """HTTPS on 127.0.0.1 and 127.0.0.2 serving JSON documents, with its own CA."""

    def __init__(self, documents: dict[str, dict] | None = None):
        self.documents = dict(documents or {})
        self.dir = Path(tempfile.mkdtemp(prefix="gig-docs-"))
        tls = make_tls(self.dir, names=("127.0.0.1", "127.0.0.2"))
        self.ca_file = tls["ca"]
        cert_file, key_file = tls["cert"], tls["key"]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.fetched: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                outer.fetched.append(self.path)
                if self.path == "/slow.json":
                    time.sleep(8)
                if self.path == "/big.json":
                    body = json.dumps({"padding": "x" * (100 * 1024)}).encode()
                elif self.path in outer.documents or self.path == "/slow.json":
                    body = json.dumps(outer.documents.get(self.path, {})).encode()
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.servers = []
        self.port = 0
        for host in ("127.0.0.1", "127.0.0.2"):
            server = ThreadingHTTPServer((host, self.port), Handler)
            server.daemon_threads = True
            server.socket = context.wrap_socket(server.socket, server_side=True)
            self.port = server.server_address[1]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> "DocumentServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

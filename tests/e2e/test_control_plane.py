"""The control plane's sign-in against a real OpenID Provider (npm oidc-provider), end to end.

Every test drives the real `gigmcp` binary and the real provider over loopback: the browser is
a `requests.Session` that fills in the provider's login and consent pages. The hostile cases
use the provider's test modes, which re-sign the ID token with one claim wrong (or with another
key), so each refusal is for exactly the check it names.
"""

import socket
import threading
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import pytest
import requests

from conftest import csrf_headers, echo_server, signed_in, start_gateway
from oidc import authorize_until_callback, login

def test_two_users_in_different_groups_get_different_roles(control_plane):
    _, gw = control_plane
    alice, bob, carol = (signed_in(gw, n) for n in ("alice", "bob", "carol"))
    roles = {n: s.get(f"{gw.base}/api/me").json() for n, s in [("alice", alice), ("bob", bob), ("carol", carol)]}
    assert roles["alice"]["role"] == "admin"
    assert roles["bob"]["role"] == "viewer"
    assert roles["carol"]["role"] == "member", "no mapped group: member"
    assert roles["alice"]["user"]["email"] == "alice@example.test"
    assert roles["alice"]["impersonating"] is None
    # Roles decide: a viewer sees servers but not the user list; an admin sees both.
    assert bob.get(f"{gw.base}/api/servers").status_code == 200
    assert bob.get(f"{gw.base}/api/users").status_code == 403
    listed = alice.get(f"{gw.base}/api/users").json()["users"]
    assert {u["email"]: u["role"] for u in listed}["bob@example.test"] == "viewer"


def test_the_session_cookie_is_httponly_samesite_and_rotated_at_login(control_plane):
    _, gw = control_plane
    http = requests.Session()
    response = login(http, f"{gw.base}/api/auth/login", "carol")
    cookies = [c for c in response.raw.headers.getlist("Set-Cookie") if c.startswith("gig_session=")]
    assert len(cookies) == 1
    assert "HttpOnly" in cookies[0] and "SameSite=Lax" in cookies[0]
    assert "Secure" not in cookies[0], "the public URL is http here"
    first = http.cookies.get("gig_session", domain="127.0.0.1")
    # Signing in again in the same browser ends the old session.
    login(http, f"{gw.base}/api/auth/login", "carol")
    second = http.cookies.get("gig_session", domain="127.0.0.1")
    assert first != second
    stale = requests.get(f"{gw.base}/api/me", cookies={"gig_session": first})
    assert stale.status_code == 401
    assert requests.get(f"{gw.base}/api/me", cookies={"gig_session": second}).status_code == 200


def test_logout_ends_the_session_in_the_store_and_names_the_idp_logout(control_plane):
    idp, gw = control_plane
    http = signed_in(gw, "carol")
    token = http.cookies.get("gig_session", domain="127.0.0.1")
    response = http.post(f"{gw.base}/api/auth/logout", headers=csrf_headers(gw, http))
    assert response.status_code == 200, response.text
    assert response.json()["end_session_url"].startswith(idp.issuer)
    assert requests.get(f"{gw.base}/api/me", cookies={"gig_session": token}).status_code == 401


def test_changes_need_the_csrf_token_and_the_gateways_origin(control_plane):
    _, gw = control_plane
    http = signed_in(gw, "alice")
    bob_id = next(u["id"] for u in http.get(f"{gw.base}/api/users").json()["users"] if u["email"] == "bob@example.test")
    url = f"{gw.base}/api/users/{bob_id}/role"
    good = csrf_headers(gw, http)
    for headers in ({}, {"Origin": gw.base}, {"X-CSRF-Token": good["X-CSRF-Token"]},
                    {**good, "Origin": "http://evil.example.test"}, {**good, "X-CSRF-Token": "0" * 64}):
        refused = http.put(url, json={"role": "operator"}, headers=headers)
        assert refused.status_code == 403, (headers, refused.text)
        assert refused.json()["error"]["code"] == "csrf"
    listed = http.get(f"{gw.base}/api/users").json()["users"]
    assert {u["id"]: u["role"] for u in listed}[bob_id] == "viewer", "nothing changed"
    assert http.put(url, json={"role": "bogus"}, headers=good).status_code == 400
    assert http.put(url, json={"role": "operator"}, headers=good).status_code == 200
    # The change is audited with the admin as actor.
    records = http.get(f"{gw.base}/api/audit").json()["records"]
    assert any(r["action"] == "user.role_changed" and "alice@example.test" in r["actor"] for r in records)


def test_a_non_admin_cannot_change_roles_even_with_a_valid_csrf_token(control_plane):
    _, gw = control_plane
    http = signed_in(gw, "carol")
    me = http.get(f"{gw.base}/api/me").json()
    response = http.put(f"{gw.base}/api/users/{me['user']['id']}/role", json={"role": "admin"},
                        headers=csrf_headers(gw, http))
    assert response.status_code == 403
    assert http.get(f"{gw.base}/api/me").json()["role"] == "member"


def test_tampered_or_unknown_cookies_are_not_sessions(control_plane):
    _, gw = control_plane
    http = signed_in(gw, "carol")
    token = http.cookies.get("gig_session", domain="127.0.0.1")
    flipped = ("0" if token[0] != "0" else "1") + token[1:]
    for value in (flipped, "", "x" * 64, token + "00", "../../etc/passwd"):
        response = requests.get(f"{gw.base}/api/me", cookies={"gig_session": value})
        assert response.status_code == 401, value
        body = response.json()["error"]
        assert body["code"] == "unauthenticated" and body["request_id"]


def test_the_session_cookie_is_never_accepted_on_mcp(control_plane):
    _, gw = control_plane
    http = signed_in(gw, "alice")
    response = http.post(gw.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                         headers={"Accept": "application/json, text/event-stream"})
    assert response.status_code == 401


def test_a_wrong_state_or_another_browser_cannot_finish_a_sign_in(control_plane):
    _, gw = control_plane
    http = requests.Session()
    callback = authorize_until_callback(http, f"{gw.base}/api/auth/login", "carol")
    parts = urlparse(callback)
    query = parse_qs(parts.query)
    query["state"] = ["forged-state"]
    forged = urlunparse(parts._replace(query=urlencode(query, doseq=True)))
    assert http.get(forged, allow_redirects=False).status_code == 400
    # The real callback from a browser without the sign-in cookie is refused too, and uses up
    # the state: the original browser cannot complete it afterwards either.
    other = requests.get(callback, allow_redirects=False)
    assert other.status_code == 400
    assert "gig_session" not in other.cookies


def test_a_replayed_code_is_refused(control_plane):
    _, gw = control_plane
    http = requests.Session()
    callback = authorize_until_callback(http, f"{gw.base}/api/auth/login", "carol")
    first = http.get(callback, allow_redirects=False)
    assert first.status_code == 302
    again = requests.Session()
    again.cookies.update(http.cookies)
    replay = again.get(callback, allow_redirects=False)
    assert replay.status_code == 400
    assert replay.json()["error"]["code"] == "sign_in_failed"


@pytest.mark.parametrize("mode", ["aud", "iss", "nonce", "expired", "signature"])
def test_a_hostile_id_token_is_refused(control_plane, mode):
    idp, gw = control_plane
    idp.set_hostile(mode)
    try:
        http = requests.Session()
        callback = authorize_until_callback(http, f"{gw.base}/api/auth/login", "alice")
        response = http.get(callback, allow_redirects=False)
    finally:
        idp.set_hostile(None)
    assert response.status_code == 400, (mode, response.text)
    assert "gig_session" not in response.cookies
    # The cause is logged, never sent.
    assert "verification" not in response.text
    assert "ID token failed verification" in gw.logs()


def test_api_is_503_with_the_fix_when_the_control_plane_is_off(gateway):
    response = requests.get(f"{gateway.base}/api/me")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "control_plane_disabled"
    assert "GIG_OIDC_ISSUER" in error["message"]


def test_an_unreachable_issuer_stops_the_gateway_after_the_discovery_timeout(tmp_path):
    # A listener that accepts and never answers: discovery can only time out.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    stop_accepting = threading.Event()

    def accept():
        silent.settimeout(0.2)
        while not stop_accepting.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    issuer = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        with pytest.raises(AssertionError) as failed:
            start_gateway(tmp_path, {"echo": echo_server()}, GIG_OIDC_ISSUER=issuer,
                          GIG_OIDC_CLIENT_ID="gig", GIG_OIDC_CLIENT_SECRET="s",
                          GIG_OIDC_DISCOVERY_TIMEOUT_SECS="1")
        assert f"GIG_OIDC_ISSUER {issuer}: no discovery document within 1 s" in str(failed.value)
    finally:
        stop_accepting.set()
        thread.join()
        for conn in held:
            conn.close()
        silent.close()

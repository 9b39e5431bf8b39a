"""The control plane's sign-in against a real OpenID Provider (npm oidc-provider), end to end.

Every test drives the real `gigmcp` binary and the real provider over loopback: the browser is
a `requests.Session` that fills in the provider's login and consent pages. The hostile cases
use the provider's test modes, which re-sign the ID token with one claim wrong (or with another
key), so each refusal is for exactly the check it names.
"""

import json
import signal
import socket
import threading
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import pytest
import requests

import requests  # noqa: F811

from conftest import csrf_headers, echo_server, signed_in, start_control_plane, start_gateway, stop
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


def user_id(gw, admin, email: str) -> int:
    return next(u["id"] for u in admin.get(f"{gw.base}/api/users").json()["users"] if u["email"] == email)


def test_impersonation_gives_exactly_the_targets_permissions_and_is_audited_with_both(control_plane):
    _, gw = control_plane
    bob = signed_in(gw, "bob")  # make sure bob exists (viewer)
    bob.get(f"{gw.base}/api/me")
    admin = signed_in(gw, "alice")
    bob_id = user_id(gw, admin, "bob@example.test")
    started = admin.post(f"{gw.base}/api/impersonation", json={"user": bob_id}, headers=csrf_headers(gw, admin))
    assert started.status_code == 200, started.text
    me = admin.get(f"{gw.base}/api/me")
    assert me.headers["X-Gig-Impersonating"] == str(bob_id)
    body = me.json()
    assert body["user"]["email"] == "bob@example.test" and body["role"] == "viewer"
    assert body["impersonating"]["real_user"]["email"] == "alice@example.test"
    # Exactly bob's permissions: no user list, no audit, no role changes, no profiles.
    for method, path, payload in (("GET", "/api/users", None), ("GET", "/api/audit", None),
                                  ("PUT", f"/api/users/{bob_id}/role", {"role": "admin"}),
                                  ("POST", "/api/profiles", {"name": "x", "tools": []})):
        r = admin.request(method, f"{gw.base}{path}", json=payload, headers=csrf_headers(gw, admin))
        assert r.status_code == 403, (method, path, r.text)
        assert r.headers["X-Gig-Impersonating"] == str(bob_id)
    # Cannot impersonate while impersonating (bob's role has no Impersonate permission).
    again = admin.post(f"{gw.base}/api/impersonation", json={"user": bob_id}, headers=csrf_headers(gw, admin))
    assert again.status_code == 403
    # Back to herself.
    stopped = admin.delete(f"{gw.base}/api/impersonation", headers=csrf_headers(gw, admin))
    assert stopped.status_code == 204
    me = admin.get(f"{gw.base}/api/me")
    assert "X-Gig-Impersonating" not in me.headers and me.json()["role"] == "admin"
    records = admin.get(f"{gw.base}/api/audit", params={"kind": "impersonation"}).json()["records"]
    actors = {r["action"]: r["actor"] for r in records}
    for action in ("impersonation.started", "impersonation.stopped"):
        assert "alice@example.test" in actors[action] and "bob@example.test" in actors[action], actors


def test_impersonating_an_admin_still_cannot_nest_and_non_admins_cannot_start(control_plane):
    _, gw = control_plane
    carol = signed_in(gw, "carol")
    carol_id = carol.get(f"{gw.base}/api/me").json()["user"]["id"]
    r = carol.post(f"{gw.base}/api/impersonation", json={"user": carol_id + 1}, headers=csrf_headers(gw, carol))
    assert r.status_code == 403
    admin = signed_in(gw, "alice")
    alice_id = admin.get(f"{gw.base}/api/me").json()["user"]["id"]
    r = admin.post(f"{gw.base}/api/impersonation", json={"user": alice_id}, headers=csrf_headers(gw, admin))
    assert r.status_code == 400, "not oneself"
    r = admin.post(f"{gw.base}/api/impersonation", json={"user": 10**9}, headers=csrf_headers(gw, admin))
    assert r.status_code == 404
    assert admin.delete(f"{gw.base}/api/impersonation", headers=csrf_headers(gw, admin)).status_code == 409


def test_api_tokens_act_with_at_most_their_owners_role(control_plane):
    _, gw = control_plane
    dave = signed_in(gw, "dave")  # operator
    too_much = dave.post(f"{gw.base}/api/tokens", json={"name": "ci", "role": "admin"}, headers=csrf_headers(gw, dave))
    assert too_much.status_code == 403
    made = dave.post(f"{gw.base}/api/tokens", json={"name": "ci", "role": "viewer", "expires_in": 3600},
                     headers=csrf_headers(gw, dave))
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("giga_")
    bearer = {"Authorization": f"Bearer {token}"}
    # A viewer token of an operator: servers yes, audit no; and no CSRF needed (no cookie).
    assert requests.get(f"{gw.base}/api/servers", headers=bearer).status_code == 200
    assert requests.get(f"{gw.base}/api/audit", headers=bearer).status_code == 403
    assert requests.get(f"{gw.base}/api/me", headers=bearer).json()["role"] == "viewer"
    # Never accepted on /mcp.
    r = requests.post(gw.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                      headers={**bearer, "Accept": "application/json, text/event-stream"})
    assert r.status_code == 401
    listed = dave.get(f"{gw.base}/api/tokens").json()["tokens"]
    assert [t["id"] for t in listed] == [made.json()["id"]] and "token" not in listed[0]
    gone = dave.delete(f"{gw.base}/api/tokens/{made.json()['id']}", headers=csrf_headers(gw, dave))
    assert gone.status_code == 204
    assert requests.get(f"{gw.base}/api/me", headers=bearer).status_code == 401
    for bad in ("giga_" + "0" * 64, token[:-2], "giga_", "Bearer"):
        assert requests.get(f"{gw.base}/api/me", headers={"Authorization": f"Bearer {bad}"}).status_code == 401


def test_audit_filters_page_and_export(control_plane):
    _, gw = control_plane
    admin = signed_in(gw, "alice")
    for _ in range(3):
        signed_in(gw, "carol")
    logins = admin.get(f"{gw.base}/api/audit", params={"kind": "auth.login", "limit": 2}).json()
    assert len(logins["records"]) == 2 and logins["next_cursor"]
    assert all(r["action"] == "auth.login" for r in logins["records"])
    page2 = admin.get(f"{gw.base}/api/audit",
                      params={"kind": "auth.login", "limit": 2, "cursor": logins["next_cursor"]}).json()
    assert page2["records"] and page2["records"][0]["id"] < logins["records"][-1]["id"]
    carol_actor = next(r["actor"] for r in logins["records"] + page2["records"] if "carol" in r["actor"])
    only = admin.get(f"{gw.base}/api/audit", params={"actor": carol_actor}).json()["records"]
    assert only and all(r["actor"] == carol_actor for r in only)
    future = admin.get(f"{gw.base}/api/audit", params={"since": 4102444800}).json()["records"]
    assert future == []
    assert admin.get(f"{gw.base}/api/audit", params={"since": "yesterday"}).status_code == 400
    exported = admin.get(f"{gw.base}/api/audit/export", params={"kind": "auth.login"})
    assert exported.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert len(lines) >= 4 and all(r["action"] == "auth.login" for r in lines)


def test_a_demoted_admin_loses_the_impersonation_at_once(control_plane):
    _, gw = control_plane
    # An admin of her own (a second admin demotes her; she is never demoted by herself here).
    eve_admin = signed_in(gw, "alice")
    dave = signed_in(gw, "dave")
    dave_id = dave.get(f"{gw.base}/api/me").json()["user"]["id"]
    other_admin = requests.Session()
    token = eve_admin.post(f"{gw.base}/api/tokens", json={"name": "demote", "expires_in": 600},
                           headers=csrf_headers(gw, eve_admin)).json()["token"]
    other_admin.headers["Authorization"] = f"Bearer {token}"
    alice_id = eve_admin.get(f"{gw.base}/api/me").json()["user"]["id"]
    assert eve_admin.post(f"{gw.base}/api/impersonation", json={"user": dave_id},
                          headers=csrf_headers(gw, eve_admin)).status_code == 200
    assert eve_admin.get(f"{gw.base}/api/audit").status_code == 200, "as the operator dave"
    try:
        # Alice is made a viewer (through her own admin token, acting as herself).
        r = other_admin.put(f"{gw.base}/api/users/{alice_id}/role", json={"role": "viewer"})
        assert r.status_code == 200, r.text
        # The session is hers again, with her new role: no operator's audit log any more.
        r = eve_admin.get(f"{gw.base}/api/audit")
        assert r.status_code == 403 and "X-Gig-Impersonating" not in r.headers
        me = eve_admin.get(f"{gw.base}/api/me").json()
        assert (me["user"]["id"], me["role"], me["impersonating"]) == (alice_id, "viewer", None)
    finally:
        restore = signed_in(gw, "alice")  # signing in maps her group to admin again
        assert restore.get(f"{gw.base}/api/me").json()["role"] == "admin"


def test_credentials_are_minted_only_from_a_session_as_oneself(control_plane):
    _, gw = control_plane
    carol = signed_in(gw, "carol")
    made = carol.post(f"{gw.base}/api/tokens", json={"name": "parent", "expires_in": 600},
                      headers=csrf_headers(gw, carol)).json()
    bearer = {"Authorization": f"Bearer {made['token']}"}
    # With a token: no child API token, no profile, no profile token.
    assert requests.post(f"{gw.base}/api/tokens", json={"name": "child"}, headers=bearer).status_code == 403
    assert requests.post(f"{gw.base}/api/profiles", json={"name": "p", "tools": []}, headers=bearer).status_code == 403
    # While impersonating: the same.
    admin = signed_in(gw, "alice")
    carol_id = carol.get(f"{gw.base}/api/me").json()["user"]["id"]
    admin.post(f"{gw.base}/api/impersonation", json={"user": carol_id}, headers=csrf_headers(gw, admin))
    try:
        r = admin.post(f"{gw.base}/api/profiles", json={"name": "as-carol", "tools": ["echo/*"]},
                       headers=csrf_headers(gw, admin))
        assert r.status_code == 403 and "impersonating" in r.json()["error"]["message"]
    finally:
        admin.delete(f"{gw.base}/api/impersonation", headers=csrf_headers(gw, admin))


def server_events(http, base: str):
    """The `servers` events of GET /api/events/servers, parsed, as they arrive."""
    response = http.get(f"{base}/api/events/servers", stream=True, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    event = None
    for raw in response.iter_lines(decode_unicode=True):
        if raw.startswith("event:"):
            event = raw.split(":", 1)[1].strip()
        elif raw.startswith("data:") and event == "servers":
            yield {s["name"]: s for s in json.loads(raw.split(":", 1)[1])["servers"]}


def test_server_state_arrives_live_and_an_open_stream_does_not_hold_up_a_shutdown(tmp_path):
    """The overview's feed: the whole list at once, then a new event whenever something changes
    (here a server that keeps exiting: its restart count grows), nothing polled by the client.
    Draining ends the stream, so the gateway stops long before its 60 s grace (that bound is on
    a hang, not a speed)."""
    crashing = {"command": "/bin/sh", "args": ["-c", "exit 3"]}
    idp, gw = start_control_plane(tmp_path, {"echo": echo_server(), "crashing": crashing},
                                  GIG_SHUTDOWN_GRACE_SECS="60")
    try:
        assert requests.get(f"{gw.base}/api/events/servers", timeout=10).status_code == 401
        feed = server_events(signed_in(gw, "bob"), gw.base)
        first = next(feed)
        assert set(first) == {"echo", "crashing"}, first
        seen = [first]
        while len(seen) < 6 and (seen[-1]["crashing"].get("restarts") or 0) < 2:
            seen.append(next(feed))
        assert seen[-1]["crashing"]["state"] == "down" and seen[-1]["crashing"]["restarts"] >= 2, seen
        assert all(a != b for a, b in zip(seen, seen[1:])), "an event only when something changed"
        gw.proc.send_signal(signal.SIGTERM)
        gw.proc.wait(timeout=40)
        assert all(s["crashing"]["state"] in ("down", "starting") for s in feed), "the stream ended"
    finally:
        stop(gw.proc)
        idp.stop()

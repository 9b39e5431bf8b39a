"""Servers over /api against a real registry and a signed index: the catalog, installs
followed over server-sent events, live state, credentials a server declares (values never
returned), and uninstalls."""

import json
import os
import time

import requests

from conftest import csrf_headers, signed_in, start_control_plane, stop
from test_install import echo_and_fetch_index, registry, world_reachable  # noqa: F401 (fixture)


def follow(gw, http, events_url: str) -> list[tuple[str, str]]:
    """Reads an install's event stream to its end: [(event, data)]."""
    events, current = [], None
    with http.get(f"{gw.base}{events_url}", stream=True, timeout=120) as response:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        for raw in response.iter_lines(decode_unicode=True):
            if raw.startswith("event:"):
                current = raw.split(":", 1)[1].strip()
            elif raw.startswith("data:") and current:
                events.append((current, raw.split(":", 1)[1].strip()))
                if current in ("done", "failed"):
                    return events
    return events


def install(gw, http, ref: str) -> list[tuple[str, str]]:
    started = http.post(f"{gw.base}/api/servers", json={"ref": ref}, headers=csrf_headers(gw, http))
    assert started.status_code == 202, started.text
    return follow(gw, http, started.json()["events_url"])


def server(gw, http, name: str) -> dict | None:
    return next((s for s in http.get(f"{gw.base}/api/servers").json()["servers"] if s["name"] == name), None)


def wait_state(gw, http, name: str, want: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = server(gw, http, name)
        if (s and s["state"] == want) or (want == "gone" and s is None):
            return s
        time.sleep(0.3)
    raise AssertionError(f"{name} never became {want}: {server(gw, http, name)}\n{gw.logs()[-3000:]}")


def test_install_follow_credentials_and_uninstall_over_the_api(tmp_path, sandbox_bins, registry):
    index = echo_and_fetch_index(tmp_path, registry)
    home = world_reachable(tmp_path / "gw")
    idp, gw = start_control_plane(home, {}, GIG_MASTER_KEY=os.urandom(32).hex(),
                                  GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
                                  GIG_SANDBOX_POOL="198.19.207.0/24", **index.env())
    try:
        admin = signed_in(gw, "alice")
        catalog = {e["name"]: e for e in admin.get(f"{gw.base}/api/catalog").json()["entries"]}
        assert set(catalog) == {"echo", "fetch"} and catalog["echo"]["installed"] is None

        events = install(gw, admin, "echo")
        assert events[-1][0] == "done", events
        assert any(e == "progress" and "signed index" in json.loads(d)["progress"][0] for e, d in events), events
        done = json.loads(events[-1][1])
        assert (done["server"], done["version"]) == ("echo", "0.1.0")
        echo = wait_state(gw, admin, "echo", "up")
        assert echo["source"] == "installed" and echo["tools"] >= 1

        failed = install(gw, admin, "no-such-server")
        assert failed[-1][0] == "failed" and "no-such-server" in failed[-1][1], failed
        for bad in ("", "../etc", "echo@../../x", "a" * 300):
            r = admin.post(f"{gw.base}/api/servers", json={"ref": bad}, headers=csrf_headers(gw, admin))
            assert r.status_code == 400, bad

        # Credentials: only the ones a server declares; the value never comes back.
        url = f"{gw.base}/api/servers/fetch/credentials/api-key"
        secret = "sk-live-never-shown-0123456789"
        r = admin.put(url, json={"value": secret}, headers=csrf_headers(gw, admin))
        assert r.status_code == 404, "fetch is not installed yet"
        assert install(gw, admin, "fetch")[-1][0] == "done"
        fetch = wait_state(gw, admin, "fetch", "up")
        assert fetch["credentials"] == [{"name": "api-key", "env": "API_KEY", "hosts": ["api.example.test"]}]
        r = admin.put(f"{gw.base}/api/servers/fetch/credentials/other", json={"value": "x"},
                      headers=csrf_headers(gw, admin))
        assert r.status_code == 400 and "api-key" in r.json()["error"]["message"]
        assert admin.put(url, json={"value": secret}, headers=csrf_headers(gw, admin)).status_code == 204
        listed = admin.get(f"{gw.base}/api/servers/fetch/credentials").json()["credentials"]
        assert [c["name"] for c in listed] == ["api-key"] and listed[0]["key_id"]
        everything = json.dumps(listed) + admin.get(f"{gw.base}/api/audit/export").text + gw.logs()
        assert secret not in everything
        assert admin.delete(url, headers=csrf_headers(gw, admin)).status_code == 204
        assert admin.delete(url, headers=csrf_headers(gw, admin)).status_code == 404

        # An operator may manage servers; a member may not.
        member = signed_in(gw, "carol")
        r = member.post(f"{gw.base}/api/servers", json={"ref": "echo"}, headers=csrf_headers(gw, member))
        assert r.status_code == 403
        assert admin.delete(f"{gw.base}/api/servers/echo", headers=csrf_headers(gw, admin)).status_code == 204
        wait_state(gw, admin, "echo", "gone")
        assert admin.delete(f"{gw.base}/api/servers/echo", headers=csrf_headers(gw, admin)).status_code == 404
        actions = [json.loads(line)["action"] for line in admin.get(f"{gw.base}/api/audit/export").text.splitlines()]
        for action in ("server.installed", "server.install_failed", "credential.set", "credential.deleted",
                       "server.uninstalled"):
            assert action in actions, action
    finally:
        stop(gw.proc)
        idp.stop()

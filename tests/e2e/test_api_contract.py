"""/api as a contract: the RBAC matrix over every documented route and every role, and
property-based testing of the OpenAPI document with schemathesis (no 5xx, every response
matching the schema)."""

import re
import subprocess

import pytest
import requests

from conftest import REPO, csrf_headers, signed_in

# The reviewed permission table (crates/api/src/rbac.rs), restated: a change there must be
# mirrored here on purpose.
LEAST_ROLE = {
    "ViewServers": "viewer",
    "ViewUsers": "operator",
    "ManageUsers": "admin",
    "ViewAudit": "operator",
    "UseProfiles": "member",
    "Impersonate": "admin",
    "ManageServers": "operator",
    "ManageCredentials": "operator",
    "ApproveTools": "operator",
}
RANK = {"viewer": 0, "member": 1, "operator": 2, "admin": 3}
ROLES = {"alice": "admin", "dave": "operator", "carol": "member", "bob": "viewer"}


def operations(gw):
    doc = requests.get(f"{gw.base}/api/openapi.json").json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "delete"):
                yield method.upper(), path, op["x-gig-access"]


def concrete(path: str) -> str:
    # Ids that exist nowhere: the guard decides before any handler looks them up.
    return re.sub(r"\{[a-z_]+\}", "999999999", path)


def allowed(access: str, role: str) -> bool:
    if access in ("public", "signed-in"):
        return True
    return RANK[role] >= RANK[LEAST_ROLE[access]]


def test_every_route_times_every_role(control_plane):
    _, gw = control_plane
    sessions = {name: signed_in(gw, name) for name in ROLES}
    ops = list(operations(gw))
    assert len(ops) >= 20
    for method, path, access in ops:
        if access == "public":
            continue
        url = f"{gw.base}{concrete(path)}"
        anonymous = requests.request(method, url, json={}, headers={"Origin": gw.base})
        assert anonymous.status_code == 401, (method, path)
        for name, role in ROLES.items():
            if (method, path) == ("POST", "/api/auth/logout"):
                continue  # ends the session; covered in test_control_plane.py
            http = sessions[name]
            # A body no handler accepts: an allowed call stops at validation, changing nothing.
            # Streamed: an event stream (GET /api/events/servers) answers and never ends.
            with http.request(method, url, json={"__not_a_field__": True}, headers=csrf_headers(gw, http),
                              stream=True) as r:
                if allowed(access, role):
                    assert r.status_code not in (401, 403), (method, path, role, r.status_code)
                else:
                    assert r.status_code == 403, (method, path, role, r.status_code, r.text)
                    assert r.json()["error"]["code"] == "forbidden"


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(control_plane, tmp_path):
    _, gw = control_plane
    admin = signed_in(gw, "alice")
    made = admin.post(f"{gw.base}/api/tokens", json={"name": "schemathesis", "expires_in": 3600},
                      headers=csrf_headers(gw, admin))
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    schemathesis = REPO / ".peers" / "venv" / "bin" / "schemathesis"
    assert schemathesis.exists(), "run tests/peers/install-peers.sh (make peers)"
    out = subprocess.run(
        [str(schemathesis), "run", f"{gw.base}/api/openapi.json",
         "--url", gw.base,
         "-H", f"Authorization: Bearer {token}",
         "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
         "--max-examples", "25",
         "--exclude-path", "/api/auth/logout",
         "--exclude-path", "/api/auth/login",
         "--exclude-path", "/api/auth/callback",
         "--exclude-path", "/api/tokens/{id}",
         # An event stream never ends; test_control_plane.py reads it.
         "--exclude-path", "/api/events/servers",
         "--seed", "1",
         "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]

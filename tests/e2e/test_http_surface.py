"""The HTTP surface without an SDK in between: auth challenges, DNS-rebinding protection,
unknown sessions, health endpoints."""

import json
import urllib.error
import urllib.request

import requests

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}


def post(gw, body, headers=None, token=True):
    h = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    if token:
        h["Authorization"] = f"Bearer {gw.token}"
    h.update(headers or {})
    req = urllib.request.Request(gw.url, data=json.dumps(body).encode(), headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def test_missing_token_gets_401_with_challenge(gateway):
    status, headers, _ = post(gateway, INIT, token=False)
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")


def test_wrong_token_gets_401_invalid_token(gateway):
    status, headers, _ = post(gateway, INIT, token=False, headers={"Authorization": "Bearer nope-nope-nope-nope"})
    assert status == 401
    assert 'error="invalid_token"' in headers["www-authenticate"]


def test_foreign_host_is_refused(gateway):
    status, _, _ = post(gateway, INIT, headers={"Host": "evil.example.com"})
    assert status == 403


def test_foreign_origin_is_refused(gateway):
    status, _, _ = post(gateway, INIT, headers={"Origin": "http://evil.example.com"})
    assert status == 403


def test_loopback_origin_is_accepted(gateway):
    status, _, _ = post(gateway, INIT, headers={"Origin": "http://localhost:3000"})
    assert status == 200


def test_unknown_session_gets_404(gateway):
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    status, _, _ = post(gateway, body, headers={"Mcp-Session-Id": "no-such-session", "MCP-Protocol-Version": "2025-06-18"})
    assert status == 404


def test_health_endpoints(gateway):
    with urllib.request.urlopen(f"{gateway.base}/healthz") as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"{gateway.base}/readyz") as resp:
        body = json.load(resp)
    assert body["ready"] is True
    assert body["backends"]["echo"]["state"] == "up"
    assert body["backends"]["time"]["state"] == "up"


def test_gateway_refuses_to_start_without_a_token(tmp_path):
    import subprocess

    from conftest import TARGET

    result = subprocess.run(
        [str(TARGET / "gigmcp")],
        env={"PATH": "/usr/bin:/bin", "GIG_DATA_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    assert "GIG_BEARER_TOKEN is not set" in result.stderr


def test_json_logs_name_the_request_and_its_principal(tmp_path):
    import json as _json

    from conftest import echo_server, start_gateway, stop

    gw = start_gateway(tmp_path, {"echo": echo_server()}, GIG_LOG_FORMAT="json",
                       GIG_LOG="info,gig_gateway=debug")
    try:
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "t", "version": "0"}}}
        headers = {"Authorization": f"Bearer {gw.token}", "Accept": "application/json, text/event-stream",
                   "X-Request-Id": "trace-0123"}
        r = requests.post(gw.url, json=body, headers=headers, timeout=30)
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-0123"
        # A client's id that is not short and plain is replaced, never echoed.
        for odd in ("x" * 100, "a b;c", "<script>"):
            r = requests.post(gw.url, json=body, headers={**headers, "X-Request-Id": odd}, timeout=30)
            assert r.headers["x-request-id"] != odd and len(r.headers["x-request-id"]) == 16
        lines = [_json.loads(line) for line in gw.logs().splitlines() if line.startswith("{")]
        traced = [line for line in lines if "trace-0123" in _json.dumps(line)]
        assert traced, gw.logs()[-2000:]
        assert any("operator" in _json.dumps(line) for line in traced)
        assert gw.token not in gw.logs()
    finally:
        stop(gw.proc)


def test_ending_a_session_answers_204_as_the_sdks_expect(gateway):
    """The Python SDK logs any answer but 200/204 to its DELETE as a failure to end the session."""
    status, headers, _ = post(gateway, INIT)
    assert status == 200
    session = {"Authorization": f"Bearer {gateway.token}", "Mcp-Session-Id": headers["mcp-session-id"],
               "MCP-Protocol-Version": "2025-06-18"}
    ended = requests.delete(gateway.url, headers=session, timeout=10)
    assert ended.status_code == 204, (ended.status_code, ended.text)
    after, _, _ = post(gateway, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=session)
    assert after == 404, "an ended session is gone"


def test_a_malformed_body_is_a_json_rpc_parse_error(gateway):
    """Not 415: the specification and the SDKs expect HTTP 400 with JSON-RPC error -32700."""
    h = {"Authorization": f"Bearer {gateway.token}", "Content-Type": "application/json",
         "Accept": "application/json, text/event-stream"}
    r = requests.post(gateway.url, data=b'{"jsonrpc": "2.0", "id": 1, "method": ', headers=h, timeout=10)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["error"]["code"] == -32700, r.text


def test_json_that_is_no_request_is_invalid_request(gateway):
    h = {"Authorization": f"Bearer {gateway.token}", "Content-Type": "application/json",
         "Accept": "application/json, text/event-stream"}
    r = requests.post(gateway.url, json={"hello": "world"}, headers=h, timeout=10)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["error"]["code"] == -32600, r.text
    wrong_type = requests.post(gateway.url, data="x", headers={**h, "Content-Type": "text/plain"}, timeout=10)
    assert wrong_type.status_code == 415, "a wrong media type is still 415"


def open_listen_stream(gw) -> requests.Response:
    """A 2026-07-28 `subscriptions/listen` stream for tool list changes, held open."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    return requests.post(gw.url, stream=True, timeout=30, json={
        "jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
        "params": {"notifications": {"toolsListChanged": True}, "_meta": meta}},
        headers={"Authorization": f"Bearer {gw.token}", "Accept": "application/json, text/event-stream",
                 "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "subscriptions/listen"})


def test_listen_streams_count_against_the_session_cap_and_closing_one_is_no_error(tmp_path):
    """A listen stream holds a session slot for as long as it is open (so streams cannot get
    round GIG_MAX_SESSIONS), gives it back when the client closes it, and a closed stream is
    the client leaving: no ERROR in the gateway's log."""
    import time

    from conftest import start_gateway, stop

    gw = start_gateway(tmp_path, {}, GIG_MAX_SESSIONS="2", GIG_LOG="info")
    streams = []
    try:
        for _ in range(2):
            stream = open_listen_stream(gw)
            assert stream.status_code == 200, stream.text[:300]
            assert stream.headers["content-type"].startswith("text/event-stream")
            streams.append(stream)
        refused = open_listen_stream(gw)
        assert refused.status_code == 503, (refused.status_code, refused.text[:300])
        refused.close()
        streams.pop(0).close()
        deadline = time.monotonic() + 10
        while (again := open_listen_stream(gw)).status_code != 200:
            again.close()
            assert time.monotonic() < deadline, "a closed stream's slot was not given back"
            time.sleep(0.2)
        streams.append(again)
        for stream in streams:
            stream.close()
        time.sleep(1)
    finally:
        for stream in streams:
            stream.close()
        stop(gw.proc)
    logs = gw.logs()
    assert "ERROR" not in logs, logs[-3000:]

"""Prometheus metrics end to end: a real Prometheus server (Debian's 2.42) scrapes the gateway's
GIG_METRICS_LISTEN listener and every check goes through Prometheus's HTTP query API.

- The scrape listener is its own port: no client token, and `/mcp`'s port has no `/metrics`.
- A sandboxed fetch-mcp with a credential (test_egress's setup): sandboxes running, backend
  state, egress requests allowed and refused, credential injections, vault reads.
- Tool calls (`mcp_server_operation_duration_seconds`, OpenTelemetry's mcp.server.operation.
  duration with mcp_method_name / gen_ai_tool_name / server / error_type), counted from the same
  recorder hook as the audit log.
"""

import functools
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import requests

import test_egress
from conftest import TARGET, connect, echo_server, free_port, start_gateway, stop, wait_http
from netlab import require_sandbox_net
from test_egress import tls, upstream  # noqa: F401 - fixtures


class Prometheus:
    """`prometheus` on a loopback port scraping one target every second; stopped by PID."""

    def __init__(self, tmp: Path, target: str):
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed (tests/peers/install-peers.sh installs it)")
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: gigmcp\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.log = tmp / "prometheus.log"
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http(f"http://127.0.0.1:{self.port}/-/ready", timeout=60)
        except Exception:
            self.stop()
            raise

    def query(self, expr: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str, want, timeout: float = 30.0) -> float:
        """The query's single value once `want(value)` holds (scrapes are asynchronous)."""
        deadline = time.monotonic() + timeout
        result: list[dict] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if len(result) == 1 and want(float(result[0]["value"][1])):
                return float(result[0]["value"][1])
            time.sleep(0.5)
        raise AssertionError(f"{expr}: {result}\n{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        stop(self.proc)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        return resp.read().decode()


def status_of(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.anyio
async def test_prometheus_scrapes_sandboxes_egress_and_vault(
    tmp_path, sandbox_bins, tls, upstream, monkeypatch
):
    require_sandbox_net()
    metrics_port = free_port()
    monkeypatch.setattr(
        test_egress, "start_gateway", functools.partial(start_gateway, GIG_METRICS_LISTEN=f"127.0.0.1:{metrics_port}")
    )
    setup = test_egress.CredentialSetup(tmp_path, sandbox_bins, tls, upstream)
    gw = setup.gw
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    prom = None
    try:
        # Its own listener, no token; /mcp's port serves no metrics, the metrics port no /mcp.
        assert "gig_build_info" in scrape(metrics_port)
        assert status_of(f"{gw.base}/metrics") in (401, 404)
        assert status_of(f"http://127.0.0.1:{metrics_port}/mcp", {"Authorization": f"Bearer {gw.token}"}) == 404
        assert f"127.0.0.1:{metrics_port}" in gw.logs()

        port = upstream.port
        async with connect(gw) as session:
            env = (await session.call_tool("fetch_env", {})).structured_content["env"]
            placeholder = env["API_KEY"]
            allowed = await session.call_tool(
                "fetch_fetch",
                {"url": f"https://api.example.test:{port}/v1/echo", "headers": {"Authorization": f"Bearer {placeholder}"}},
            )
            assert not allowed.is_error
            refused = await session.call_tool("fetch_fetch", {"url": f"https://denied.test:{port}/"})
            assert refused.is_error or refused.structured_content["status"] == 403

        prom = Prometheus(prom_dir, f"127.0.0.1:{metrics_port}")
        prom.value('up{job="gigmcp"}', lambda v: v == 1)
        prom.value('gig_build_info{job="gigmcp"}', lambda v: v == 1)
        prom.value("gig_sandboxes_running", lambda v: v == 1)
        prom.value('gig_backend_up{server="fetch",state="up"}', lambda v: v == 1)
        prom.value('gig_egress_requests_total{server="fetch",decision="allowed"}', lambda v: v >= 1)
        prom.value('gig_egress_requests_total{server="fetch",decision="refused"}', lambda v: v >= 1)
        prom.value('gig_egress_credential_injections_total{server="fetch"}', lambda v: v >= 1)
        prom.value('gig_vault_operations_total{operation="read",outcome="ok"}', lambda v: v >= 1)
        # Labels never carry hosts, paths or secrets.
        text = scrape(metrics_port)
        assert "denied.test" not in text and "api.example.test" not in text
        assert not setup.leaked(text) and placeholder not in text
    finally:
        if prom:
            prom.stop()
        stop(gw.proc)


@pytest.mark.anyio
async def test_prometheus_sees_tool_call_counts_and_latency(tmp_path):
    metrics_port = free_port()
    gw = start_gateway(tmp_path, {"echo": echo_server()}, GIG_METRICS_LISTEN=f"127.0.0.1:{metrics_port}")
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    prom = None
    try:
        async with connect(gw) as session:
            for i in range(5):
                result = await session.call_tool("echo_echo", {"message": f"m{i}"})
                assert not result.is_error
        text = scrape(metrics_port)
        assert "mcp_server_operation_duration_seconds_count{" in text, text[:2000]
        assert "gig_backend_up" in text
        prom = Prometheus(prom_dir, f"127.0.0.1:{metrics_port}")
        series = (
            'mcp_server_operation_duration_seconds_count{mcp_method_name="tools/call",'
            'gen_ai_tool_name="echo",server="echo",error_type=""}'
        )
        prom.value(series, lambda v: v == 5)
        prom.value(
            'mcp_server_operation_duration_seconds_bucket{gen_ai_tool_name="echo",le="+Inf"}', lambda v: v == 5
        )
        # The histogram answers latency questions; the p99 of a local echo is under a second.
        prom.value(
            "histogram_quantile(0.99, sum by (le) (mcp_server_operation_duration_seconds_bucket))",
            lambda v: 0 < v <= 1,
        )
        # Unsandboxed: up, but not counted as a running sandbox.
        prom.value('gig_backend_up{server="echo",state="up"}', lambda v: v == 1)
        prom.value("gig_sandboxes_running", lambda v: v == 0)
        # Refusals by reason (never the token), and the sessions open now.
        for bearer, times in ((None, 2), ("wrong-token-0123456789", 3)):
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
            for _ in range(times):
                assert requests.post(gw.url, json={}, headers=headers, timeout=10).status_code == 401
        prom.value('gig_auth_failures_total{surface="mcp",reason="missing"}', lambda v: v == 2)
        prom.value('gig_auth_failures_total{surface="mcp",reason="invalid_token"}', lambda v: v == 3)
        async with connect(gw), connect(gw):
            prom.value("gig_mcp_sessions", lambda v: v >= 2)
    finally:
        if prom:
            prom.stop()
        stop(gw.proc)


def test_metrics_listener_is_off_by_default_and_refuses_the_mcp_port(tmp_path):
    gw = start_gateway(tmp_path, {"echo": echo_server()})
    try:
        assert "metrics listening" not in gw.logs()
        assert status_of(f"{gw.base}/metrics") in (401, 404)
        # stderr is a file here, not a terminal: no colour codes in the text log.
        assert "gateway listening" in gw.logs()
        assert "\x1b[" not in gw.logs(), gw.logs()[:500]
    finally:
        stop(gw.proc)
    # Sharing /mcp's port is refused at start, before anything listens.
    port = free_port()
    done = subprocess.run(
        [str(TARGET / "gigmcp")],
        env={
            "PATH": "/usr/bin:/bin",
            "GIG_BEARER_TOKEN": "t" * 32,
            "GIG_MASTER_KEY": __import__("secrets").token_hex(32),
            "GIG_DATA_DIR": str(tmp_path / "shared"),
            "GIG_LISTEN": f"127.0.0.1:{port}",
            "GIG_METRICS_LISTEN": f"0.0.0.0:{port}",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "GIG_METRICS_LISTEN" in done.stderr and "port of their own" in done.stderr, done.stderr

"""OpenTelemetry traces over OTLP/HTTP, opt-in with the standard OTEL_* variables, decoded with
the official `opentelemetry-proto` definitions: a span per MCP request named per the
conventions, inside the HTTP request's span and around the backend call, continuing the W3C
trace context a client sends (the `traceparent` header, or `_meta.traceparent` from a 2026-07-28
client)."""

import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import connect, echo_server, free_port, start_gateway, stop
from netlab import require_sandbox_net
from test_egress import CredentialSetup, tls, upstream  # noqa: F401 (fixtures)


class Collector:
    """An OTLP/HTTP receiver on loopback keeping every span it is sent."""

    def __init__(self):
        self.spans: list[dict] = []
        self.services: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    for attr in resource_spans.resource.attributes:
                        if attr.key == "service.name":
                            outer.services.add(attr.value.string_value)
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            outer.spans.append({
                                "name": span.name, "trace": span.trace_id.hex(), "id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "attrs": {a.key: a.value.string_value for a in span.attributes},
                            })
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def named(self, name: str, trace: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [s for s in self.spans if s["name"] == name and s["trace"] == trace]
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no span {name!r} in trace {trace}: {[(s['name'], s['trace']) for s in self.spans]}")

    def parent_of(self, span: dict, timeout: float = 20.0) -> dict:
        """The span's parent, waiting for it: a child ends first, so the batch exporter may send
        it a batch ahead of its parent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [s for s in self.spans if s["id"] == span["parent"]]
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no parent of {span['name']!r}: {[s['name'] for s in self.spans]}")

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_spans_continue_the_clients_trace(tmp_path):
    collector = Collector()
    gw = start_gateway(tmp_path, {"echo": echo_server()},
                       OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
                       OTEL_SERVICE_NAME="gig-e2e", OTEL_BSP_SCHEDULE_DELAY="200")
    try:
        trace, client_span = secrets.token_hex(16), secrets.token_hex(8)
        # Flags 00: the client did not sample; the gateway records its own spans anyway.
        headers = {"Authorization": f"Bearer {gw.token}", "Accept": "application/json, text/event-stream",
                   "traceparent": f"00-{trace}-{client_span}-00"}
        init = requests.post(gw.url, headers=headers, timeout=10, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
        assert init.status_code == 200
        session = {**headers, "Mcp-Session-Id": init.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-06-18"}
        requests.post(gw.url, headers=session, timeout=10,
                      json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        called = requests.post(gw.url, headers=session, timeout=10, json={
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo_echo", "arguments": {"message": "traced"}}})
        assert called.status_code == 200 and "traced" in called.text

        mcp = collector.named("tools/call echo_echo", trace)
        assert mcp["attrs"]["mcp.method.name"] == "tools/call"
        assert mcp["attrs"]["gen_ai.tool.name"] == "echo_echo"
        http = collector.parent_of(mcp)
        assert http["name"] == "POST /mcp" and http["parent"] == client_span, http
        backend = collector.named("tools/call echo", trace)
        assert backend["parent"] == mcp["id"] and backend["attrs"]["server"] == "echo"
        assert collector.services == {"gig-e2e"}

        # A 2026-07-28 client carries its trace context in _meta.
        stateless_trace = secrets.token_hex(16)
        meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
                "io.modelcontextprotocol/clientCapabilities": {},
                "traceparent": f"00-{stateless_trace}-{secrets.token_hex(8)}-01"}
        stateless = requests.post(gw.url, timeout=10, json={
            "jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "echo_echo", "arguments": {"message": "modern"}, "_meta": meta}},
            headers={"Authorization": f"Bearer {gw.token}", "Accept": "application/json, text/event-stream",
                     "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "echo_echo"})
        assert stateless.status_code == 200, stateless.text
        collector.named("tools/call echo_echo", stateless_trace)

        # No span carries the token.
        assert not any(gw.token in v for s in collector.spans for v in s["attrs"].values())
    finally:
        stop(gw.proc)
        collector.stop()


@pytest.mark.anyio
async def test_egress_requests_are_children_of_the_call_that_caused_them(tmp_path, sandbox_bins, tls, upstream):
    """A sandboxed server's request through the egress proxy is a span inside its tool call,
    named by method and host, and carries no secret."""
    require_sandbox_net()
    collector = Collector()
    setup = CredentialSetup(tmp_path, sandbox_bins, tls, upstream,
                            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
                            OTEL_BSP_SCHEDULE_DELAY="200")
    try:
        async with connect(setup.gw) as session:
            result = await session.call_tool("fetch_fetch", {"url": f"https://api.example.test:{upstream.port}/echo"})
            assert not result.is_error, result
        deadline = time.monotonic() + 20
        while not [s for s in collector.spans if s["name"] == "GET api.example.test"]:
            assert time.monotonic() < deadline, [s["name"] for s in collector.spans]
            time.sleep(0.2)
        egress = next(s for s in collector.spans if s["name"] == "GET api.example.test")
        backend = collector.parent_of(egress)
        assert backend["name"] == "tools/call fetch" and backend["trace"] == egress["trace"], backend
        call = collector.parent_of(backend)
        assert call["name"] == "tools/call fetch_fetch"
        assert egress["attrs"]["server.address"] == "api.example.test"
        assert not any(setup.leaked(v) for s in collector.spans for v in s["attrs"].values())
    finally:
        stop(setup.gw.proc)
        collector.stop()


def test_traces_are_off_without_an_endpoint(tmp_path):
    gw = start_gateway(tmp_path, {"echo": echo_server()})
    try:
        assert "exporting traces" not in gw.logs()
    finally:
        stop(gw.proc)

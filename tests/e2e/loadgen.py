"""A bounded mixed workload against a running gateway, loopback only: idle sessions held open,
and worker threads doing lists, calls, slow calls, cancellations, reconnects and stateless
2026-07-28 calls against many backends, every answer checked. Samples the gateway's RSS, file
descriptors, threads and sandboxes as it goes.

Used by tests/e2e/test_load.py (short) and scripts/soak.sh (`make soak`, an hour, plotted)."""

import json
import os
import random
import threading
import time
from dataclasses import dataclass, field

import requests

INIT_ERA = "2025-06-18"
STATELESS_ERA = "2026-07-28"


def stateless_tool_call(url: str, token: str, tool: str, arguments: dict) -> requests.Response:
    """One 2026-07-28 `tools/call`: no session, the era's metadata in `_meta` and headers."""
    meta = {"io.modelcontextprotocol/protocolVersion": STATELESS_ERA,
            "io.modelcontextprotocol/clientInfo": {"name": "loadgen", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    return requests.post(url, timeout=60, json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": meta}},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
                 "MCP-Protocol-Version": STATELESS_ERA, "Mcp-Method": "tools/call", "Mcp-Name": tool})


def answer(response: requests.Response) -> dict:
    """The JSON-RPC message of a POST answer, JSON or one SSE event."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        data = [d for d in data if d]
        return json.loads(data[-1])
    return response.json()


class Session:
    """One initialize-era session over its own keep-alive connection."""

    def __init__(self, url: str, token: str):
        self.url = url
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {token}",
                                  "Accept": "application/json, text/event-stream"})
        self.next_id = 0
        opened = self.http.post(url, timeout=60, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": INIT_ERA, "capabilities": {},
                       "clientInfo": {"name": "loadgen", "version": "0"}}})
        if opened.status_code != 200:
            raise AssertionError(f"initialize: {opened.status_code} {opened.text[:200]}")
        self.http.headers.update({"Mcp-Session-Id": opened.headers["mcp-session-id"],
                                  "MCP-Protocol-Version": INIT_ERA})
        done = self.http.post(url, timeout=60, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        if done.status_code != 202:
            raise AssertionError(f"initialized: {done.status_code} {done.text[:200]}")

    def request(self, method: str, params: dict, **options) -> requests.Response:
        self.next_id += 1
        return self.http.post(self.url, timeout=options.pop("timeout", 60),
                              json={"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params},
                              **options)

    def close(self):
        self.http.delete(self.url, timeout=30)
        self.http.close()


@dataclass
class Tally:
    ops: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, kind: str):
        with self.lock:
            self.ops[kind] = self.ops.get(kind, 0) + 1

    def fail(self, kind: str, what: str):
        with self.lock:
            self.errors.append(f"{kind}: {what[:300]}")


def expect_result(kind: str, response: requests.Response, check) -> str | None:
    if response.status_code != 200:
        return f"{kind}: HTTP {response.status_code} {response.text[:200]}"
    message = answer(response)
    if "result" not in message or not check(message["result"]):
        return f"{kind}: {json.dumps(message)[:300]}"
    return None


def worker(url: str, token: str, servers: list[str], tally: Tally, stop: threading.Event, seed: int):
    rng = random.Random(seed)
    session = Session(url, token)
    try:
        while not stop.is_set():
            kind = rng.choices(["list", "call", "slow", "cancel", "reconnect", "stateless"],
                               weights=[25, 40, 10, 5, 5, 15])[0]
            server = rng.choice(servers)
            try:
                failure = one_operation(kind, server, session, url, token, rng)
                if kind == "reconnect":
                    session.close()
                    session = Session(url, token)
            except Exception as e:  # noqa: BLE001 - every failure is counted, none is fatal
                failure = f"{kind}: {type(e).__name__}: {e}"
            if failure:
                tally.fail(kind, failure)
            else:
                tally.ok(kind)
    finally:
        session.close()


def one_operation(kind, server, session, url, token, rng) -> str | None:
    text = f"{kind}-{rng.random()}"
    if kind == "list":
        return expect_result(kind, session.request("tools/list", {}),
                             lambda r: any(t["name"] == f"{server}_echo" for t in r["tools"]))
    if kind == "call":
        return expect_result(kind, session.request("tools/call", {"name": f"{server}_echo", "arguments": {"message": text}}),
                             lambda r: r["content"][0]["text"] == text)
    if kind == "slow":
        return expect_result(kind, session.request("tools/call", {"name": f"{server}_sleep", "arguments": {"milliseconds": 150}}),
                             lambda r: r["content"][0]["text"] == "slept 150 ms")
    if kind == "cancel":
        return cancel_one(session, server)
    if kind == "reconnect":
        return None
    response = stateless_tool_call(url, token, f"{server}_echo", {"message": text})
    return expect_result(kind, response, lambda r: r["content"][0]["text"] == text)


def cancel_one(session: Session, server: str) -> str | None:
    """A 30 s call cancelled once the gateway has begun answering it (its event stream is open,
    as a real client waiting on a call sees it): the cancellation is accepted and the call's
    stream ends without a result (well before the 30 s). A cancellation sent before the request
    itself has arrived may be ignored (the specification allows it), so the client must not
    race its own request, and this one does not."""
    outcome = {}
    request_id = session.next_id + 1
    answering = threading.Event()

    def slow():
        try:
            response = session.request(
                "tools/call", {"name": f"{server}_sleep", "arguments": {"milliseconds": 30_000}},
                timeout=90, stream=True)
            answering.set()
            response.content  # noqa: B018 - reads the stream to its end
            outcome["response"] = response
        except Exception as e:  # noqa: BLE001
            outcome["error"] = e
        finally:
            answering.set()

    caller = threading.Thread(target=slow)
    caller.start()
    answering.wait(timeout=60)
    with requests.Session() as other:
        other.headers.update({k: v for k, v in session.http.headers.items()})
        cancelled = other.post(session.url, timeout=30, json={
            "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": "loadgen"}})
    caller.join(timeout=60)
    if cancelled.status_code != 202:
        return f"cancel notification: HTTP {cancelled.status_code} {cancelled.text[:200]}"
    if caller.is_alive():
        return "the cancelled call was still running after 60 s"
    if "error" in outcome:
        return f"cancelled call: {outcome['error']}"
    response = outcome["response"]
    if response.status_code != 200 or "slept" in response.text:
        return f"cancelled call answered anyway: {response.status_code} {response.text[:200]}"
    return None


def process_sample(pid: int, sandbox_marker: str) -> dict:
    """The gateway's RSS, fds and threads, and how many processes run `sandbox_marker` (the
    sandboxed servers' binary)."""
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    sandboxes = 0
    for other in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{other}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0]
            sandboxes += argv0 == sandbox_marker.encode()
        except OSError:
            pass
    return {"t": time.time(), "rss_kib": int(status["VmRSS"].split()[0]),
            "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": int(status["Threads"]),
            "sandboxes": sandboxes}


def hold_sessions(url: str, token: str, count: int, threads: int = 16) -> list[Session]:
    held, errors = [], []
    lock = threading.Lock()

    def open_some(n):
        for _ in range(n):
            try:
                s = Session(url, token)
                # Idle: the session lives in the gateway, the connection need not.
                s.http.close()
                with lock:
                    held.append(s)
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))

    pool = [threading.Thread(target=open_some, args=(count // threads + (i < count % threads),)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise AssertionError(f"{len(errors)} of {count} sessions failed to open: {errors[:3]}")
    return held


def run_mixed(url: str, token: str, servers: list[str], seconds: float, workers: int, pid: int,
              sandbox_marker: str, sample_every: float, on_sample=None) -> tuple[Tally, list[dict]]:
    tally, stop = Tally(), threading.Event()
    threads = [threading.Thread(target=worker, args=(url, token, servers, tally, stop, i)) for i in range(workers)]
    samples = [process_sample(pid, sandbox_marker)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(min(sample_every, max(0.0, deadline - time.monotonic())))
            samples.append(process_sample(pid, sandbox_marker))
            if on_sample:
                on_sample(samples[-1], tally)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    samples.append(process_sample(pid, sandbox_marker))
    return tally, samples

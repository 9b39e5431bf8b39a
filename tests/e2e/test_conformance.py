"""The official conformance suite (npm @modelcontextprotocol/conformance, server scenarios),
run in the same test against server-everything directly and through the gateway fronting it.

Every scenario that passes directly must pass through the gateway, except the ones that
address the reference server's items by their exact names, which a prefixing gateway renames
by design (listed below, and checked to fail for exactly that reason). The gateway must also
pass `dns-rebinding-protection`, which server-everything itself fails.
"""

import json
import os
import re
import subprocess
from pathlib import Path

from conftest import PEERS, free_port, start_gateway, stop, wait_port

# Scenarios that call a tool / subscribe to a resource by its un-prefixed name.
NAME_DEPENDENT = {
    "tools-call-simple-text": "unknown tool",
    "tools-call-error": "unknown tool",
    "resources-subscribe": "unknown resource",
    "resources-unsubscribe": "unknown resource",
}


def run_suite(url: str, outdir: Path, token: str | None) -> dict[str, dict]:
    env = dict(os.environ)
    env.pop("GIG_TEST_TOKEN", None)
    if token:
        env["GIG_TEST_TOKEN"] = token
    subprocess.run(
        [str(PEERS / "conformance"), "server", "--url", url, "-o", str(outdir)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    verdicts = {}
    for d in sorted(outdir.glob("server-*")):
        name = re.sub(r"^server-|-\d{4}-\d\d-\d\dT.*$", "", d.name)
        checks = json.loads((d / "checks.json").read_text())
        failed = [c for c in checks if c["status"] in ("FAILURE", "WARNING")]
        verdicts[name] = {"passed": not failed and any(c["status"] == "SUCCESS" for c in checks), "failed": failed}
    assert verdicts, f"conformance produced no results in {outdir}"
    return verdicts


def test_gateway_passes_every_scenario_the_reference_server_passes(tmp_path):
    port = free_port()
    everything = subprocess.Popen(
        [str(PEERS / "server-everything"), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        gw = start_gateway(tmp_path, {"everything": {"command": str(PEERS / "server-everything"), "args": ["stdio"]}})
    except BaseException:
        stop(everything)
        raise
    try:
        direct = run_suite(f"http://127.0.0.1:{port}/mcp", tmp_path / "direct", None)
        through = run_suite(gw.url, tmp_path / "gateway", gw.token)
    finally:
        stop(gw.proc)
        stop(everything)

    direct_pass = {n for n, v in direct.items() if v["passed"]}
    gateway_pass = {n for n, v in through.items() if v["passed"]}
    print(f"\nconformance: server-everything directly: {len(direct_pass)}/{len(direct)} scenarios pass")
    print(f"conformance: through the gateway:        {len(gateway_pass)}/{len(through)} scenarios pass")
    print(f"  direct:  {sorted(direct_pass)}")
    print(f"  gateway: {sorted(gateway_pass)}")

    expected = (direct_pass - NAME_DEPENDENT.keys()) | {"dns-rebinding-protection"}
    missing = expected - gateway_pass
    assert not missing, {n: through[n]["failed"] for n in missing}
    for name, reason in NAME_DEPENDENT.items():
        if name in direct_pass and name not in gateway_pass:
            messages = " ".join(c.get("errorMessage", "") for c in through[name]["failed"])
            assert reason in messages, f"{name} failed for another reason: {messages}"

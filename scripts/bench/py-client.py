"""py-client.py URL TOOL ARGUMENT_NAME [N] — the official Python SDK (`mcp` 2.x:
streamable_http_client + ClientSession, initialize handshake) as a real client: connect, a few
warm-up calls, then N sequential tools/call of TOOL with {ARGUMENT_NAME: "bench"}, each result
checked to contain "bench". Prints one JSON line:
{"client":"py-sdk","n":N,"p50_ms":..,"mean_ms":..,"p99_ms":..,"slow":..,"connect_ms":..,"bad":..}
(slow: calls that took 30 ms or more — the signature of a delayed-ACK stall).
Env: TOKEN (sent as Authorization: Bearer), WARMUP (default 20). Run with the peers' venv python.
"""

import asyncio
import json
import math
import os
import statistics
import sys
import time

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, tool: str, arg: str, n: int) -> dict:
    warmup = int(os.environ.get("WARMUP", "20"))
    headers = {"Authorization": f"Bearer {os.environ['TOKEN']}"} if os.environ.get("TOKEN") else {}
    bad = 0
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        t0 = time.perf_counter()
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                connect_ms = (time.perf_counter() - t0) * 1e3

                async def call() -> None:
                    nonlocal bad
                    r = await session.call_tool(tool, {arg: "bench"})
                    text = getattr(r.content[0], "text", "") if r.content else ""
                    bad += bool(r.is_error) or "bench" not in text

                for _ in range(warmup):
                    await call()
                ms = []
                for _ in range(n):
                    s = time.perf_counter()
                    await call()
                    ms.append((time.perf_counter() - s) * 1e3)
    ms.sort()
    pct = lambda p: ms[min(len(ms) - 1, max(0, math.ceil(p / 100 * len(ms)) - 1))]
    return {
        "client": "py-sdk",
        "protocol": init.protocol_version,
        "n": n,
        "p50_ms": round(pct(50), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "p99_ms": round(pct(99), 3),
        "slow": sum(x >= 30 for x in ms),
        "connect_ms": round(connect_ms, 3),
        "bad": bad,
    }


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: py-client.py URL TOOL ARGUMENT_NAME [N]")
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], n))))

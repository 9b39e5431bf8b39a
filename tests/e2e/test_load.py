"""Load, bounded and on loopback: 5,000 idle initialize-era sessions held and 100 sandboxed
servers running, under a mixed workload (lists, calls, slow calls, cancellations, reconnects,
stateless calls) for LOAD_SECONDS (60 by default; `make soak` runs the same for an hour).
Every answer is checked; the gateway logs no error; its memory stays bounded; every sandbox
stays up. Figures are printed, not asserted as times.

`make soak` sets LOAD_SECONDS=3600, LOAD_SAMPLE_SECONDS=60 and SOAK_OUT (a directory): the
samples are written there as CSV and plotted to soak.png, and after a 10-minute warm-up the
RSS, descriptors and threads must not grow."""

import csv
import os
from pathlib import Path

from conftest import start_gateway, stop
from loadgen import hold_sessions, run_mixed

SERVERS = 100
SESSIONS = 5_000


def test_5000_sessions_and_100_sandboxed_servers_under_a_mixed_workload(tmp_path, sandbox_bins):
    echo = str(sandbox_bins["echo-mcp"])
    servers = {f"s{i:03}": {"command": echo, "args": ["--fault-tools"], "sandbox": {}} for i in range(SERVERS)}
    gw = start_gateway(tmp_path, servers, GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
                       GIG_MAX_SESSIONS=str(SESSIONS + 200), GIG_LOG="warn")
    held = []
    try:
        from loadgen import process_sample

        start = process_sample(gw.proc.pid, echo)
        assert start["sandboxes"] == SERVERS, start
        held = hold_sessions(gw.url, gw.token, SESSIONS)
        with_sessions = process_sample(gw.proc.pid, echo)
        seconds = float(os.environ.get("LOAD_SECONDS", "60"))
        every = float(os.environ.get("LOAD_SAMPLE_SECONDS", "5"))
        tally, samples = run_mixed(gw.url, gw.token, sorted(servers), seconds, workers=12,
                                   pid=gw.proc.pid, sandbox_marker=echo, sample_every=every)
        if os.environ.get("SOAK_OUT"):
            soak_report(Path(os.environ["SOAK_OUT"]), samples)
        total = sum(tally.ops.values())
        print(f"\n[load] {SERVERS} sandboxed servers, {SESSIONS} idle sessions held, {seconds:.0f} s mixed: "
              f"{total} operations {dict(sorted(tally.ops.items()))}, {len(tally.errors)} errors; "
              f"RSS {start['rss_kib'] // 1024} MiB idle -> {with_sessions['rss_kib'] // 1024} MiB with sessions "
              f"-> max {max(s['rss_kib'] for s in samples) // 1024} MiB under load; "
              f"fds {with_sessions['fds']} -> max {max(s['fds'] for s in samples)}; "
              f"threads max {max(s['threads'] for s in samples)}")
        assert not tally.errors, tally.errors[:10]
        assert all(tally.ops.get(kind) for kind in ("list", "call", "slow", "cancel", "reconnect", "stateless")), tally.ops
        assert all(s["sandboxes"] == SERVERS for s in samples), [s["sandboxes"] for s in samples]
        # Bounded: the workload adds no more than a quarter to what the held sessions take,
        # and opens no descriptors it does not give back (a margin for in-flight connections).
        assert samples[-1]["rss_kib"] <= with_sessions["rss_kib"] * 1.25, (with_sessions, samples[-1])
        assert samples[-1]["fds"] <= with_sessions["fds"] + 64, (with_sessions, samples[-1])
        errors = [line for line in gw.logs().splitlines() if " ERROR " in line]
        assert not errors, errors[:10]
    finally:
        for session in held:
            session.http.close()
        stop(gw.proc)


def soak_report(out: Path, samples: list[dict]) -> None:
    """The series as CSV and a PNG; then no growth after the warm-up (10 minutes): the last
    sample within 10 % of the first after warm-up (descriptors and threads: a small margin)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = samples[0]["t"]
    with open(out / "soak.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["minute", "rss_kib", "fds", "threads", "sandboxes"])
        writer.writeheader()
        for s in samples:
            writer.writerow({"minute": round((s["t"] - t0) / 60, 2), **{k: s[k] for k in writer.fieldnames[1:]}})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [(s["t"] - t0) / 60 for s in samples]
    figure, axes = plt.subplots(4, 1, sharex=True, figsize=(8, 9))
    for axis, (key, label) in zip(axes, [("rss_kib", "RSS (MiB)"), ("fds", "open fds"),
                                         ("threads", "threads"), ("sandboxes", "sandboxes")]):
        axis.plot(minutes, [s[key] / (1024 if key == "rss_kib" else 1) for s in samples])
        axis.set_ylabel(label)
    axes[-1].set_xlabel("minutes")
    figure.suptitle("gigmcp soak: 5,000 idle sessions, 100 sandboxed servers, mixed workload")
    figure.savefig(out / "soak.png", dpi=100)
    warm = [s for s in samples if s["t"] - t0 >= 600]
    if len(warm) >= 2:
        first, last = warm[0], warm[-1]
        assert last["rss_kib"] <= first["rss_kib"] * 1.10, ("RSS grew after warm-up", first, last)
        assert last["fds"] <= first["fds"] + 32, ("descriptors grew after warm-up", first, last)
        assert last["threads"] <= first["threads"] + 4, ("threads grew after warm-up", first, last)

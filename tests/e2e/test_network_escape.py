"""The network half of the escape matrix: `escape-probe --net` in exactly a server's sandbox
(`gigmcp sandbox exec --allow-host`, with its veth, firewall and proxy) tries to reach everything
around it and to change its own network; every attempt must fail for the right reason (a firewall
drop times out, a refusal of the kernel is EPERM...) while its own proxy stays reachable.

Targets are all made by this test: an "outside" host in its own netns on 203.0.113.0/24 routed
from the host, 198.51.100.10 as a second host address, listeners on 127.0.0.1 and 0.0.0.0 (so on the host
side of the sandbox's link too), and another sandbox (a gateway-sandboxed fetch-mcp listening in
its own netns). Forwarding is switched on for the sandbox's host-side link only, so the firewall,
not a host default, is what keeps packets from being routed on. Everything is removed in `finally`.
"""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import connect, start_gateway, stop
from netlab import egress_env, exec_argv, exec_env, ip_tool, make_tls, nft_tool, require_sandbox_net, sh

OUTSIDE = "203.0.113.10"
OUTSIDE_GW = "203.0.113.1"
DUMMY = "198.51.100.10"  # a second host address, on the outside link's host side
SIBLING_PORT = 7070
SIBLING_POOL = "198.19.202.0/24"

# The egress proxy's port on every sandbox's host side (GIG_EGRESS_PORT's default).
PROXY_PORT = 1023

# Runs inside the outside netns: TCP listeners that count accepts, UDP sockets that count and
# echo datagrams (an escaped probe would see the echo). Prints the counts when stdin closes.
OUTSIDE_LISTENER = r"""
import json, socket, sys, threading
tcp_ports, udp_ports = json.loads(sys.argv[1]), json.loads(sys.argv[2])
counts = {}

def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, peer = s.accept(); k = f"tcp/{port} from {peer[0]}"; counts[k] = counts.get(k, 0) + 1; c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(2048); k = f"udp/{port} from {peer[0]}"; counts[k] = counts.get(k, 0) + 1
        s.sendto(data, peer)
for p in tcp_ports: threading.Thread(target=tcp, args=(p,), daemon=True).start()
for p in udp_ports: threading.Thread(target=udp, args=(p,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
print(json.dumps(counts), flush=True)
"""


class HostListeners:
    """TCP and UDP listeners in the host's netns; any accept or datagram is an escape."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.socks = []
        self.tcp_lo = self._tcp("127.0.0.1", 0)
        self.tcp_any = self._tcp("0.0.0.0", 0)
        self.udp_any = self._udp("0.0.0.0", 0)
        # DNS on the host side, where the port is free (a host resolver may hold it).
        self.dns = []
        for make in (self._tcp, self._udp):
            try:
                self.dns.append(make("0.0.0.0", 53))
            except OSError as e:
                print(f"note: cannot listen on port 53 on the host ({e}); DNS rows rely on errno only")

    def _count(self, key):
        self.counts[key] = self.counts.get(key, 0) + 1

    def _tcp(self, addr, port):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(64)
        key = f"tcp {addr}:{s.getsockname()[1]}"

        def loop():
            while True:
                try:
                    c, _ = s.accept()
                except OSError:
                    return
                self._count(key)
                c.close()

        threading.Thread(target=loop, daemon=True).start()
        self.socks.append(s)
        return s.getsockname()[1]

    def _udp(self, addr, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, port))
        key = f"udp {addr}:{s.getsockname()[1]}"

        def loop():
            while True:
                try:
                    data, peer = s.recvfrom(2048)
                except OSError:
                    return
                if peer is None:  # woken by close()
                    return
                self._count(key)
                s.sendto(data, peer)

        threading.Thread(target=loop, daemon=True).start()
        self.socks.append(s)
        return s.getsockname()[1]

    def close(self):
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class Outside:
    """An "outside" host: netns + veth (203.0.113.1 host side, .10 inside), routed from the host;
    the host side also carries 198.51.100.10/32 (another host address). `setup` records what it
    made as it goes, so `close` removes exactly that, also after a failure half-way."""

    def __init__(self):
        n = os.getpid() % 100000
        self.ns = f"gigt-out-{n}"
        self.veth = f"gto{n}"
        self.peer = f"gti{n}"
        self.listener = None
        self.made = []

    def setup(self):
        ip = ip_tool()
        sh(ip, "netns", "add", self.ns)
        self.made.append(("netns", self.ns))
        sh(ip, "link", "add", self.veth, "type", "veth", "peer", "name", self.peer, "netns", self.ns)
        self.made.append(("link", self.veth))
        sh(ip, "addr", "add", f"{OUTSIDE_GW}/24", "dev", self.veth)
        sh(ip, "addr", "add", f"{DUMMY}/32", "dev", self.veth)
        sh(ip, "link", "set", self.veth, "up")
        for cmd in (
            ["addr", "add", f"{OUTSIDE}/24", "dev", self.peer],
            ["link", "set", self.peer, "up"],
            ["link", "set", "lo", "up"],
            ["route", "add", "default", "via", OUTSIDE_GW],
        ):
            sh(ip, "-n", self.ns, *cmd)
        # Counts every IPv4 packet reaching the outside host from anywhere but the host itself.
        subprocess.run(
            [ip, "netns", "exec", self.ns, nft_tool(), "-f", "-"],
            input="table ip obs {\n counter foreign {}\n chain input {\n"
            "  type filter hook prerouting priority -400; policy accept;\n"
            f"  ip saddr != {OUTSIDE_GW} counter name foreign\n }}\n}}\n",
            text=True, check=True, capture_output=True, timeout=30,
        )
        self.tcp_ports = [80, 53, 3128, 8080]
        self.udp_ports = [53, 5353]
        self.listener = subprocess.Popen(
            [ip, "netns", "exec", self.ns, sys.executable, "-c", OUTSIDE_LISTENER,
             json.dumps(self.tcp_ports), json.dumps(self.udp_ports)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.listener.stdout.readline().strip() == "ready"

    def foreign_packets(self) -> int:
        out = sh(ip_tool(), "netns", "exec", self.ns, nft_tool(), "-j", "list", "counter", "ip", "obs", "foreign").stdout
        return next(o["counter"]["packets"] for o in json.loads(out)["nftables"] if "counter" in o)

    def listener_counts(self) -> dict:
        self.listener.stdin.close()
        out = self.listener.stdout.readline()
        self.listener.wait(timeout=10)
        return json.loads(out)

    def close(self):
        if self.listener and self.listener.poll() is None:
            self.listener.kill()
            self.listener.wait()
        for kind, name in reversed(self.made):
            if kind == "netns":
                sh(ip_tool(), "netns", "del", name, check=False)
            else:
                sh(ip_tool(), "link", "del", name, check=False)


def wait_link(prefix: str, proc: subprocess.Popen, timeout: float = 30.0) -> tuple[str, str]:
    """The host-side link `prefix*` of a starting sandbox and its address."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for link in json.loads(sh(ip_tool(), "-j", "addr", "show").stdout):
            if link["ifname"].startswith(prefix):
                v4 = [a["local"] for a in link.get("addr_info", []) if a.get("family") == "inet"]
                if v4:
                    return link["ifname"], v4[0]
        if proc.poll() is not None:
            raise AssertionError(f"sandbox exec ended before its link appeared: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"no link {prefix}* appeared")


def plus_one(addr: str) -> str:
    a = list(map(int, addr.split(".")))
    a[3] += 1
    return ".".join(map(str, a))


# Rows that are not escape attempts: what must keep working.
MUST_WORK = ("TCP to the own proxy", "CONNECT allowed.test")

# Why each attempt must fail: the errnos that mean "blocked for the right reason".
DROPPED = {"ETIMEDOUT"}  # the host firewall drops silently; ECONNREFUSED would mean it arrived
EXPECTED = [
    (r"^TCP to the own proxy", None),
    (r"^CONNECT allowed\.test:\d+ through the own proxy", None),
    (r"^CONNECT .* through the own proxy$", "403"),
    (r"^TCP to own loopback", {"ECONNREFUSED"}),  # the sandbox's own lo: nothing listens there
    (r"^TCP to IPv6", {"EADDRNOTAVAIL", "ENETUNREACH"}),  # IPv6 is off inside
    # Without IP_TRANSPARENT the kernel finds no route from an address the sandbox does not own.
    (r"^TCP from spoofed", {"ENETUNREACH", "EADDRNOTAVAIL", "EINVAL"} | DROPPED),
    (r"^IP_TRANSPARENT", {"EPERM"}),
    (r"^(TCP|UDP) to ", DROPPED),
    (r"^ICMP echo .* over a ping socket", {"EACCES", "EPERM"} | DROPPED),
    (r"^ICMP echo .* over a raw socket", {"EPERM"}),
    (r"^resolve ", {"EAI"}),
    (r"^raw IPv[46] socket", {"EPERM"}),
    (r"^AF_PACKET", {"EAFNOSUPPORT", "EPERM"}),
    (r"\(netlink RTM_", {"EPERM"}),
    (r"^write .* to /proc/sys/", {"EACCES", "EROFS", "EPERM"}),
]


def judge(row: dict) -> str | None:
    """None when the row is as it must be, else why not."""
    for pattern, want in EXPECTED:
        if not re.search(pattern, row["attempt"]):
            continue
        if want is None:
            return None if row["outcome"] == "reachable" else "must stay reachable"
        if row["outcome"] != "blocked":
            return "not blocked"
        if want == "403":
            return None if row["detail"].startswith("HTTP/1.1 403") else "the proxy did not refuse it"
        return None if row["errno"] in want else f"blocked, but by {row['errno']}, expected one of {sorted(want)}"
    return "no expectation for this attempt"


@pytest.mark.anyio
async def test_network_escape_matrix(tmp_path, sandbox_bins):
    require_sandbox_net()
    tmp_path.chmod(0o711)  # the gateway's CA is bound into its sandbox from under here
    tls = make_tls(tmp_path)
    outside = host = gw = probe = None
    obs_table = f"gigt_obs_{os.getpid()}"
    forwarding = None
    try:
        outside = Outside()
        outside.setup()
        host = HostListeners()
        # Positive control: the outside host is reachable from the host, so a packet that got
        # past the sandbox's firewall would arrive (counted once, from the host's address).
        socket.create_connection((OUTSIDE, 8080), timeout=5).close()
        control = {f"tcp/8080 from {OUTSIDE_GW}": 1}

        # Another sandbox: a gateway-sandboxed server listening on a port in its own netns.
        gw = start_gateway(
            tmp_path,
            {"sib": {"command": str(sandbox_bins["fetch-mcp"]), "args": ["--listen", f"0.0.0.0:{SIBLING_PORT}"],
                     "sandbox": {"egress": ["allowed.test:443"]}}},
            GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
            GIG_SANDBOX_POOL=SIBLING_POOL,
            **egress_env(tls),
        )
        async with connect(gw) as session:
            env = (await session.call_tool("sib_env", {})).structured_content["env"]
            sibling_host = env["HTTPS_PROXY"].removeprefix("http://").rsplit(":", 1)[0]
            sibling = plus_one(sibling_host)

            # The probe, held until the test has its observers in place.
            probe = subprocess.Popen(
                exec_argv([str(sandbox_bins["escape-probe"]), "--net"], allow=["allowed.test:443"]),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env=exec_env(sandbox_bins["bootstrap"], egress_env(tls)),
            )
            link, host_side = wait_link(f"gx{probe.pid}x", probe)
            forwarding = Path(f"/proc/sys/net/ipv4/conf/{link}/forwarding")
            forwarding.write_text("1")
            subprocess.run(
                [nft_tool(), "-f", "-"], check=True, capture_output=True, text=True, timeout=30,
                input=f"table inet {obs_table} {{\n counter proxy {{}}\n counter other {{}}\n"
                " chain prerouting {\n  type filter hook prerouting priority -400; policy accept;\n"
                f'  iifname "{link}" ip daddr {host_side} tcp dport {PROXY_PORT} counter name proxy\n'
                f'  iifname "{link}" counter name other\n }}\n}}\n',
            )
            specs = net_specs(host_side, sibling_host, sibling, host)
            out, err = probe.communicate("\n".join(specs) + "\n", timeout=90)
            assert probe.returncode == 0, f"probe failed: {err}"
            accepted = (await session.call_tool("sib_accepted", {})).structured_content["accepted"]

        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        counters = {
            o["counter"]["name"]: o["counter"]["packets"]
            for o in json.loads(sh(nft_tool(), "-j", "list", "counters", "table", "inet", obs_table).stdout)["nftables"]
            if "counter" in o
        }
        foreign = outside.foreign_packets()
        outside_counts = outside.listener_counts()
    finally:
        if probe and probe.poll() is None:
            probe.kill()
            probe.wait()
        if gw:
            stop(gw.proc)
        sh(nft_tool(), "delete", "table", "inet", obs_table, check=False)
        if host:
            host.close()
        if outside:
            outside.close()

    verdicts = [(r, judge(r)) for r in rows]
    print(f"\nip_forward={Path('/proc/sys/net/ipv4/ip_forward').read_text().strip()} "
          f"(forwarding on the sandbox's host link: 1)")
    print(f"{'attempt':<72} {'outcome':<11} {'errno':<14} detail")
    for r, verdict in verdicts:
        mark = "" if verdict is None else f"   <-- {verdict}"
        print(f"{r['attempt']:<72} {r['outcome']:<11} {r['errno']:<14} {r['detail']}{mark}")
    attempts = [(r, v) for r, v in verdicts if not r["attempt"].startswith(MUST_WORK)]
    print(f"packets from the sandbox seen on the host: {counters.get('proxy')} to its proxy, "
          f"{counters.get('other')} elsewhere (all dropped); reached the outside host: {foreign}; "
          f"outside listeners: {outside_counts} (the control); host listeners: {host.counts}; "
          f"the other sandbox accepted: {accepted}")
    print(f"network escape matrix: {len(attempts)} tried, "
          f"{sum(1 for r, v in attempts if r['outcome'] == 'blocked')} blocked "
          f"({sum(1 for r, v in attempts if v is None)} for the right reason)")

    assert len(rows) >= 40, f"only {len(rows)} attempts ran"
    wrong = [(r["attempt"], v) for r, v in verdicts if v is not None]
    assert not wrong, wrong
    # Nothing arrived anywhere, though the attempts did leave the sandbox and hit the host.
    assert host.counts == {} and outside_counts == control and accepted == 0
    assert foreign == 0, f"{foreign} packets from the sandbox reached the outside host"
    assert counters["proxy"] > 0 and counters["other"] > 0, counters


def net_specs(host_side: str, sibling_host: str, sibling: str, host: HostListeners) -> list[str]:
    any_port, lo_port, udp_port = host.tcp_any, host.tcp_lo, host.udp_any
    return [
        f"proxy={host_side}:{PROXY_PORT}",
        "connect-ok=allowed.test:443",
        # Through the own proxy to what the policy does not allow.
        "connect-refused=denied.test:443",
        f"connect-refused={OUTSIDE}:8080",
        f"connect-refused=127.0.0.1:{lo_port}",
        f"connect-refused={DUMMY}:{any_port}",
        f"connect-refused={sibling}:{SIBLING_PORT}",
        f"connect-refused=[::1]:{any_port}",
        # Direct, past the proxy.
        f"tcp=the outside host@{OUTSIDE}:8080",
        f"tcp=the outside host, port 80@{OUTSIDE}:80",
        f"tcp=the outside host's DNS@{OUTSIDE}:53",
        f"tcp=own loopback (the host's 127.0.0.1 listener port)@127.0.0.1:{lo_port}",
        f"tcp=the host's second address@{DUMMY}:{any_port}",
        f"tcp=the host's outside-link address@{OUTSIDE_GW}:{any_port}",
        f"tcp=the host side of the own link, another port@{host_side}:{any_port}",
        f"tcp=the host side, the loopback listener's port@{host_side}:{lo_port}",
        f"tcp=the host side's DNS@{host_side}:53",
        f"tcp=another sandbox@{sibling}:{SIBLING_PORT}",
        f"tcp=another sandbox's proxy@{sibling_host}:{PROXY_PORT}",
        f"tcp=IPv6 loopback@[::1]:{any_port}",
        f"tcp=IPv6 link-local on eth0@[fe80::1%eth0]:{any_port}",
        f"tcp=the outside host as an IPv4-mapped IPv6 address@[::ffff:{OUTSIDE}]:8080",
        f"udp=the outside host's DNS@{OUTSIDE}:53",
        f"udp=the outside host, port 5353@{OUTSIDE}:5353",
        f"udp=the host side's DNS@{host_side}:53",
        f"udp=the host's outside-link DNS@{OUTSIDE_GW}:53",
        f"udp=the host side, another port@{host_side}:{udp_port}",
        f"udp=the host's second address@{DUMMY}:{udp_port}",
        f"udp=another sandbox@{sibling}:{SIBLING_PORT}",
        f"icmp=the outside host@{OUTSIDE}",
        f"icmp=the host side@{host_side}",
        f"icmp=another sandbox@{sibling}",
        f"spoof=another sandbox's address@{sibling}>{host_side}:{PROXY_PORT}",
        f"spoof=the host side's address@{host_side}>{OUTSIDE}:8080",
        "resolve=allowed.test",
    ]


def test_two_sandbox_execs_with_network_at_once(sandbox_bins, tmp_path):
    """Two `sandbox exec --allow-host` at the same time (a debugging session while another runs).
    When this passes, extend it: the second must not reach the first (the matrix above does this
    for a gateway sandbox)."""
    require_sandbox_net()
    tls = make_tls(tmp_path)
    env = exec_env(sandbox_bins["bootstrap"], egress_env(tls))
    first = subprocess.Popen(exec_argv(["/bin/cat"], allow=["allowed.test:443"]), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_link(f"gx{first.pid}x", first)
        second = subprocess.run(exec_argv(["/bin/true"], allow=["allowed.test:443"]),
                                capture_output=True, text=True, env=env, timeout=60)
        assert second.returncode == 0, second.stderr
    finally:
        first.communicate("", timeout=30)

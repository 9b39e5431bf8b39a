"""The Dockerfile, built and run without a Docker daemon or an image registry (podman 4.3):

1. the base image is made from Debian's packages with mmdebstrap (bubblewrap, nftables and CA
   roots in it) and imported with podman — cached under .data/container/ after the first run;
2. `podman build` with BASE=<that image> and BINARIES=prebuilt: the gateway, bootstrap and
   echo-mcp built on the host by `cargo build` (same Debian release, so glibc matches);
3. `gigmcp doctor` inside the image passes with the seed's security options and, without
   `unmask=/proc/*`, fails on /proc masking with the fix;
4. the gateway boots in the image; a real MCP client (the Python SDK) calls echo-mcp, which runs
   in a bubblewrap sandbox inside the container, as a host uid of its own (GIG_SANDBOX_IDS).

Minutes the first time (mmdebstrap ≈ 1.5 min on 2 cores), well under one after. Needs root,
podman and mmdebstrap: skipped otherwise, failed with GIG_REQUIRE_CONTAINER=1.
"""

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, TARGET, Gateway, connect, free_port, wait_http

BASE_IMAGE = "localhost/gigmcp-base:bookworm"
IMAGE = "localhost/gigmcp:e2e"
CACHE = REPO / ".data" / "container"
PACKAGES = "bubblewrap,nftables,ca-certificates"
# podman 4.3 on this kind of host: crun refuses hybrid cgroups, and the default rlimits are too
# low for the build; these are peers.md's options.
PODMAN_RUNTIME = ["--runtime", "runc", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]
SANDBOX_OPTS = [
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--security-opt", "unmask=/proc/*",
    "--cap-add", "NET_ADMIN",
]


def require_container_tools():
    missing = [t for t in ("podman", "mmdebstrap") if shutil.which(t) is None]
    if os.geteuid() != 0:
        missing.append("root")
    if missing:
        if os.environ.get("GIG_REQUIRE_CONTAINER"):
            pytest.fail(f"missing: {missing}")
        pytest.fail(f"needs {', '.join(missing)} (tests/peers/install-peers.sh installs podman and mmdebstrap)")


def run(*argv, timeout=300, check=True, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and done.returncode != 0:
        raise AssertionError(f"{argv}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    require_container_tools()
    if run("podman", "image", "exists", BASE_IMAGE, check=False).returncode != 0:
        CACHE.mkdir(parents=True, exist_ok=True)
        tar = CACHE / f"bookworm-{PACKAGES.replace(',', '-')}.tar"
        if not tar.exists():
            partial = tar.with_suffix(".partial")
            run("mmdebstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(partial), timeout=600)
            partial.rename(tar)
        run("podman", "import", str(tar), BASE_IMAGE)
    context = tmp_path_factory.mktemp("image-context")
    shutil.copy(REPO / "Dockerfile", context / "Dockerfile")
    dist = context / "dist"
    dist.mkdir()
    for name in ("gigmcp", "bootstrap", "echo-mcp"):
        # Debug info is most of a debug build's size.
        run("objcopy", "--strip-debug", str(TARGET / name), str(dist / name))
    run(
        "podman", "build", *PODMAN_RUNTIME,
        "--build-arg", f"BASE={BASE_IMAGE}", "--build-arg", "BINARIES=prebuilt",
        "-t", IMAGE, str(context),
        timeout=600,
    )
    yield IMAGE
    run("podman", "rmi", "-f", IMAGE, check=False)


def doctor_in(image: str, options: list[str]) -> subprocess.CompletedProcess:
    return run(
        "podman", "run", "--rm", *PODMAN_RUNTIME, *options,
        "-e", f"GIG_MASTER_KEY={secrets.token_hex(32)}", "-e", "GIG_LOG=warn",
        image, "doctor",
        check=False, timeout=120,
    )


def test_doctor_in_the_image_passes_with_the_sandbox_options_and_names_the_missing_one(image):
    done = doctor_in(image, SANDBOX_OPTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   sandbox start" in done.stdout, done.stdout
    # The same options without unmask=/proc/*: podman masks /proc, bubblewrap cannot mount one.
    without_unmask = SANDBOX_OPTS[:4] + SANDBOX_OPTS[6:]
    assert "unmask=/proc/*" not in without_unmask and "NET_ADMIN" in without_unmask
    masked = doctor_in(image, without_unmask)
    assert masked.returncode == 1, masked.stdout
    line = next(l for l in masked.stdout.splitlines() if "/proc masking" in l)
    assert line.startswith("fail") and "fix: run the container with --security-opt unmask=/proc/*" in line


def sandboxed_uids(program: str) -> list[int]:
    """Uids of host processes running `program` (the container's processes are visible here)."""
    uids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes().split(b"\0")[0] != program.encode():
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue
        uids.append(int(next(l for l in status.splitlines() if l.startswith("Uid:")).split()[1]))
    return uids


@pytest.mark.anyio
async def test_a_real_client_calls_a_sandboxed_server_inside_the_image(image, tmp_path):
    token = secrets.token_hex(24)
    port = free_port()
    servers = tmp_path / "servers.json"
    echo = "/usr/local/lib/gigmcp/echo-mcp"
    servers.write_text(json.dumps({"mcpServers": {"echo": {"command": echo, "sandbox": {}}}}))
    servers.chmod(0o644)
    name = f"gigmcp-e2e-{secrets.token_hex(4)}"
    run(
        "podman", "run", "-d", "--name", name, *PODMAN_RUNTIME, *SANDBOX_OPTS,
        "-p", f"127.0.0.1:{port}:8080",
        "-e", f"GIG_BEARER_TOKEN={token}", "-e", f"GIG_MASTER_KEY={secrets.token_hex(32)}",
        "-e", "GIG_SERVERS_FILE=/etc/gigmcp/servers.json",
        "-v", f"{servers}:/etc/gigmcp/servers.json:ro",
        image,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/readyz", timeout=60)
        except Exception:
            raise AssertionError(run("podman", "logs", name, check=False).stderr)
        gw = Gateway(f"{base}/mcp", base, token, None, tmp_path / "unused.log")
        async with connect(gw) as session:
            names = {t.name for t in (await session.list_tools()).tools}
            assert "echo_echo" in names
            result = await session.call_tool("echo_echo", {"message": "from a container"})
            assert not result.is_error
            assert "from a container" in json.dumps(result.model_dump(mode="json"))
            # echo-mcp runs sandboxed, as a host uid of its own from the default GIG_SANDBOX_IDS.
            uids = sandboxed_uids(echo)
            assert uids and all(0x7000_0000 <= uid <= 0x7000_FFFF for uid in uids), uids
        logs = run("podman", "logs", name, check=False)
        assert "gateway listening" in logs.stdout + logs.stderr
    finally:
        started = time.monotonic()
        run("podman", "stop", "-t", "20", name, check=False, timeout=60)
        run("podman", "rm", "-f", name, check=False)
        assert time.monotonic() - started < 60


# ---------------------------------------------------------------- deployment files


def test_the_compose_file_is_valid():
    if shutil.which("docker-compose") is None:
        pytest.fail("needs docker-compose (Debian's 1.29)")
    secrets_env = {"PATH": os.environ["PATH"], "GIG_BEARER_TOKEN": "t", "GIG_MASTER_KEY": "k",
                   "POSTGRES_PASSWORD": "p"}
    done = run("docker-compose", "-f", str(REPO / "deploy" / "docker-compose.yml"), "config", env=secrets_env)
    assert "unmask=/proc/*" in done.stdout and "NET_ADMIN" in done.stdout
    assert "GIG_METRICS_LISTEN: 0.0.0.0:9464" in done.stdout
    assert "GIG_DATABASE_URL: postgres://gigmcp:p@postgres:5432/gigmcp" in done.stdout
    assert "pg_isready" in done.stdout, "the gateway waits for a healthy database"
    # With the development sign-in provider, which shares the gateway's network namespace.
    dev = run("docker-compose", "-f", str(REPO / "deploy" / "docker-compose.yml"),
              "-f", str(REPO / "deploy" / "docker-compose.dev.yml"), "config", env=secrets_env)
    assert "GIG_OIDC_ISSUER: http://127.0.0.1:9000" in dev.stdout
    assert "network_mode: service:gigmcp" in dev.stdout
    # Without the secrets in the environment it refuses, naming them.
    refused = run("docker-compose", "-f", str(REPO / "deploy" / "docker-compose.yml"), "config",
                  env={"PATH": os.environ["PATH"]}, check=False)
    assert refused.returncode != 0 and "GIG_BEARER_TOKEN" in refused.stderr


def test_the_kubernetes_manifests_are_valid():
    validate = shutil.which("kubernetes-validate") or str(Path(os.sys.executable).parent / "kubernetes-validate")
    if not Path(validate).exists():
        pytest.fail("needs kubernetes-validate (tests/peers/requirements.txt)")
    manifests = sorted(str(p) for p in (REPO / "deploy" / "kubernetes").glob("*.yaml"))
    done = run(validate, "--strict", "-k", "1.33.0", *manifests)
    said = done.stdout + done.stderr
    for resource in ("deployment/gigmcp", "poddisruptionbudget/gigmcp", "service/gigmcp"):
        assert f"passed for resource {resource}" in said, said
    import yaml
    docs = {d["kind"]: d for d in yaml.safe_load_all(Path(manifests[0]).read_text()) if d}
    assert docs["Deployment"]["spec"]["replicas"] >= 2
    env = {e["name"]: e for e in docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    for secret in ("GIG_BEARER_TOKEN", "GIG_MASTER_KEY", "GIG_DATABASE_URL"):
        assert "secretKeyRef" in env[secret]["valueFrom"], secret + " must come from a Secret"

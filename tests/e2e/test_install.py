"""Installs end to end, as the seed's walking skeleton describes: a real OCI registry (Debian's
`docker-registry`) on loopback, images pushed without Docker, an index signed with `registryctl`,
and the real gateway booting with GIG_INSTALL: signed index -> pull by digest -> verify ->
extract -> record -> start in the sandbox -> `echo_echo` on /mcp. Installing and uninstalling while
the gateway runs changes what clients see; a tampered index installs nothing."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from conftest import TARGET, connect, free_port, start_gateway, stop, wait_port

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def required() -> bool:
    return os.environ.get("CI") is not None or os.environ.get("GIG_REQUIRE_SANDBOX") == "1"


@pytest.fixture
def registry(tmp_path):
    if not Path(REGISTRY_BIN).exists():
        if required():
            pytest.fail("docker-registry is required (apt-get install docker-registry)")
        pytest.skip("docker-registry not installed")
    port = free_port()
    storage = tmp_path / "registry"
    storage.mkdir()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {storage}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


def world_reachable(path: Path) -> Path:
    """bubblewrap runs as an unprivileged user when the tests run as root: the data directory's public part
    (extracted images) must be reachable through every parent."""
    path.mkdir(parents=True, exist_ok=True)
    for p in [path, *path.parents]:
        if str(p) in ("/", "/tmp"):
            break
        p.chmod(p.stat().st_mode | 0o711)
    return path


def run(*args, env=None, check=True, input=None):
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, input=input, timeout=120)
    if check and out.returncode != 0:
        raise AssertionError(f"{args} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def push_image(tmp_path: Path, registry: str, server: str) -> str:
    stripped = tmp_path / f"{server}-mcp"
    run("objcopy", "--strip-debug", TARGET / f"{server}-mcp", stripped)
    out = run(TARGET / "gig-devimage", "--file", stripped, "--name", f"{server}-mcp",
              "--push", f"{registry}/{server}-mcp:0.1.0")
    return out.stdout.strip()


class Index:
    """An index file signed with a fresh key; `add` resolves tags against the real registry."""

    def __init__(self, tmp_path: Path):
        self.dir = tmp_path / "index"
        self.dir.mkdir()
        self.key = self.dir / "index.key"
        line = run(TARGET / "registryctl", "keygen", "--out", self.key).stdout
        self.pubkey = next(w for w in line.split() if w.startswith("ed25519:"))
        self.file = self.dir / "index.json"
        self.signed = self.dir / "index.signed.json"

    def add(self, name: str, image: str, *extra: str, program: str = ""):
        """`program`: the image's binary when it is not `<name>-mcp`."""
        run(TARGET / "registryctl", "add", "--index", self.file, "--name", name, "--version", "0.1.0",
            "--image", image, "--entrypoint", f"/srv/{program or name + '-mcp'}", "--insecure-registry", *extra)

    def sign(self):
        run(TARGET / "registryctl", "sign", "--index", self.file, "--key", self.key,
            "--expires-in", "1d", "--out", self.signed)

    def env(self, install: str = "") -> dict:
        return {
            "GIG_INDEX_URL": f"file://{self.signed}",
            "GIG_INDEX_PUBKEYS": self.pubkey,
            "GIG_INSTALL": install,
            "GIG_REGISTRY_PLAIN_HTTP": "1",
        }


FETCH_CREDENTIAL = {"env": "API_KEY", "secret": "api-key", "hosts": ["api.example.test"],
                    "inject": {"type": "header", "name": "Authorization", "template": "Bearer {}"}}


def echo_and_fetch_index(tmp_path: Path, registry: str, egress: str = "api.example.test") -> Index:
    """echo and fetch pushed to the registry and signed into an index; fetch declares the
    `api-key` credential for api.example.test and may reach `egress`."""
    push_image(tmp_path, registry, "echo")
    push_image(tmp_path, registry, "fetch")
    index = Index(tmp_path)
    index.add("echo", f"{registry}/echo-mcp:0.1.0")
    index.add("fetch", f"{registry}/fetch-mcp:0.1.0", "--egress", egress,
              "--credential", json.dumps(FETCH_CREDENTIAL))
    index.sign()
    return index


def cli_env(data: Path, master_key: str, index: Index) -> dict:
    return {"PATH": os.environ["PATH"], "GIG_DATA_DIR": str(data), "GIG_MASTER_KEY": master_key,
            "GIG_LOG": "warn", **index.env()}


async def tool_names(gw) -> set:
    async with connect(gw) as session:
        return {t.name for t in (await session.list_tools()).tools}


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def names(gw) -> set:
    return anyio.run(tool_names, gw)


async def call_echo(gw, text: str) -> str:
    async with connect(gw) as session:
        result = await session.call_tool("echo_echo", {"message": text})
        return result.content[0].text


def test_gig_install_boots_echo_from_a_signed_index_and_runtime_installs_follow(tmp_path, sandbox_bins, registry):
    echo_digest = push_image(tmp_path, registry, "echo")
    push_image(tmp_path, registry, "fetch")
    index = Index(tmp_path)
    index.add("echo", f"{registry}/echo-mcp:0.1.0")
    index.add("fetch", f"{registry}/fetch-mcp:0.1.0")
    index.sign()
    pinned = json.loads(index.file.read_text())["servers"]["echo"]["versions"]["0.1.0"]["image"]
    assert pinned.endswith("@" + echo_digest), f"registryctl pinned {pinned}, pushed {echo_digest}"

    home = world_reachable(tmp_path / "gw")
    master_key = os.urandom(32).hex()
    gw = start_gateway(home, {}, GIG_MASTER_KEY=master_key, GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
                       **index.env(install="echo"))
    try:
        assert "echo_echo" in names(gw), gw.logs()
        assert "fetch_fetch" not in names(gw)
        assert "through the signed index" in anyio.run(call_echo, gw, "through the signed index")
        logs = gw.logs()
        assert "installed" in logs and echo_digest in logs

        data = home / "data"
        env = cli_env(data, master_key, index)
        out = run(TARGET / "gigmcp", "install", "fetch", env=env)
        assert "installed fetch 0.1.0" in out.stdout, out.stdout + out.stderr
        # Not a terminal: one plain progress line per step, no escape codes.
        assert "\x1b" not in out.stderr and "\r" not in out.stderr, repr(out.stderr[:300])
        assert "verifying the signed index\n" in out.stderr, out.stderr
        wait_for(lambda: "fetch_fetch" in names(gw), "fetch_fetch to appear after `gigmcp install fetch`")
        listed = run(TARGET / "gigmcp", "list", env=env).stdout
        assert "echo\t0.1.0\tinstalled" in listed and "fetch\t0.1.0\tinstalled" in listed, listed

        run(TARGET / "gigmcp", "uninstall", "fetch", env=env)
        wait_for(lambda: "fetch_fetch" not in names(gw), "fetch_fetch to go after `gigmcp uninstall`")
        assert "echo_echo" in names(gw)
        # The installed server ran in the sandbox, not as the gateway's user.
        assert "backend up" in gw.logs()
    finally:
        stop(gw.proc)


def test_a_tampered_index_stops_the_boot_and_installs_nothing(tmp_path, sandbox_bins, registry):
    push_image(tmp_path, registry, "echo")
    index = Index(tmp_path)
    index.add("echo", f"{registry}/echo-mcp:0.1.0")
    index.sign()
    signed = json.loads(index.signed.read_text())
    signed["signed"]["servers"]["echo"]["versions"]["0.1.0"]["args"] = ["--evil"]
    index.signed.write_text(json.dumps(signed))

    home = world_reachable(tmp_path / "gw")
    master_key = os.urandom(32).hex()
    with pytest.raises(AssertionError) as failed:
        start_gateway(home, {}, GIG_MASTER_KEY=master_key, GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
                      **index.env(install="echo"))
    assert "signature" in str(failed.value), str(failed.value)
    env = cli_env(home / "data", master_key, index)
    assert "no servers installed" in run(TARGET / "gigmcp", "list", env=env).stdout


def test_gig_install_echo_and_fetch_with_a_credential_the_server_never_sees(tmp_path, sandbox_bins, registry):
    """The issue's end to end: GIG_INSTALL=echo,fetch from a signed index on a real registry;
    the index entry declares fetch's credential (hosts, injection) and egress; the real key is
    in the vault; the upstream gets it, the installed server and the client see a placeholder."""
    import secrets as pysecrets

    from netlab import TlsUpstream, egress_env, make_tls, require_sandbox_net

    require_sandbox_net()
    tls = make_tls(world_reachable(tmp_path / "tls"))
    upstream = TlsUpstream(tls)
    push_image(tmp_path, registry, "echo")
    push_image(tmp_path, registry, "fetch")
    index = Index(tmp_path)
    index.add("echo", f"{registry}/echo-mcp:0.1.0")
    credential = {"env": "API_KEY", "secret": "api-key", "hosts": ["api.example.test"],
                  "inject": {"type": "header", "name": "Authorization", "template": "Bearer {}"}}
    index.add("fetch", f"{registry}/fetch-mcp:0.1.0", "--egress", f"api.example.test:{upstream.port}",
              "--credential", json.dumps(credential))
    index.sign()

    home = world_reachable(tmp_path / "gw")
    master_key = os.urandom(32).hex()
    real = "sk-live-" + pysecrets.token_hex(20)
    data = home / "data"
    run(TARGET / "gigmcp", "secret", "set", "fetch", "api-key", input=real,
        env=cli_env(data, master_key, index))
    gw = start_gateway(home, {}, GIG_MASTER_KEY=master_key, GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
                       GIG_SANDBOX_POOL="198.19.203.0/24", **egress_env(tls), **index.env(install="echo,fetch"))

    async def scenario():
        async with connect(gw) as session:
            names = {t.name for t in (await session.list_tools()).tools}
            assert {"echo_echo", "fetch_fetch"} <= names, gw.logs()
            env = (await session.call_tool("fetch_env", {})).structured_content["env"]
            placeholder = env["API_KEY"]
            assert placeholder.startswith("gigph_") and real not in json.dumps(env)
            before = upstream.count()
            result = await session.call_tool("fetch_fetch", {
                "url": f"https://api.example.test:{upstream.port}/v1/echo",
                "headers": {"Authorization": f"Bearer {placeholder}"},
            })
            assert not result.is_error, result
            assert upstream.count() == before + 1
            assert upstream.requests[-1]["headers"]["authorization"] == f"Bearer {real}"
            assert real not in json.dumps(result.structured_content), "the key reached the client"

    try:
        anyio.run(scenario)
        assert real not in gw.logs()
    finally:
        stop(gw.proc)
        upstream.stop()


def test_a_whole_image_root_runs_without_the_host_runtime(tmp_path, sandbox_bins, registry):
    """`extract: rootfs`: the image's root filesystem becomes the sandbox's root, so a server
    that needs its own runtime (here: echo-mcp and the shared libraries it links) runs from the
    image alone. A control image without the libraries does not start: nothing of the host's
    /usr leaks in."""
    stripped = tmp_path / "echo-mcp"
    run("objcopy", "--strip-debug", TARGET / "echo-mcp", stripped)
    libs = [line.split()[-2] if "=>" in line else line.split()[0]
            for line in run("ldd", stripped).stdout.splitlines() if "/" in line]
    adds = []
    for lib in libs:
        adds += ["--add", f"{lib}:{lib}"]
    with_libs = run(TARGET / "gig-devimage", "--file", stripped, "--name", "echo-mcp",
                    "--push", f"{registry}/echo-root:1", *adds).stdout.strip()
    run(TARGET / "gig-devimage", "--file", stripped, "--name", "bare-mcp", "--push", f"{registry}/echo-bare:1")
    index = Index(tmp_path)
    index.add("echo", f"{registry}/echo-root:1", "--extract", "rootfs")
    index.add("bare", f"{registry}/echo-bare:1", "--extract", "rootfs")
    index.sign()
    assert with_libs in index.file.read_text()

    home = world_reachable(tmp_path / "gw")
    gw = start_gateway(home, {}, GIG_MASTER_KEY=os.urandom(32).hex(), GIG_BOOTSTRAP=str(sandbox_bins["bootstrap"]),
                       **index.env(install="echo,bare"))
    try:
        assert "through the image root" in anyio.run(call_echo, gw, "through the image root"), gw.logs()
        tools = names(gw)
        assert not any(t.startswith("bare_") for t in tools), tools
        logs = gw.logs()
        assert "backend down" in logs and "bare" in logs, logs
    finally:
        stop(gw.proc)


def test_cli_install_says_how_to_reach_a_dev_index_images(tmp_path):
    """`make run`'s dev index names images that live in a local OCI layout; without
    GIG_OCI_LAYOUT the registry named cannot be reached, and the CLI says what to set."""
    key, pub = tmp_path / "index.key", tmp_path / "index.pub"
    pub.write_text(run(TARGET / "registryctl", "keygen", "--out", key).stdout.strip())
    unsigned, signed = tmp_path / "index.json", tmp_path / "index.signed.json"
    run(TARGET / "registryctl", "add", "--index", unsigned, "--name", "fetch", "--version", "0.1.0",
        "--image", "127.0.0.1:9/gigmcp/fetch-mcp@sha256:" + "0" * 64, "--entrypoint", "/srv/fetch-mcp")
    run(TARGET / "registryctl", "sign", "--index", unsigned, "--key", key, "--expires-in", "1d", "--out", signed)
    env = {"PATH": os.environ["PATH"], "GIG_DATA_DIR": str(tmp_path / "data"), "GIG_MASTER_KEY": os.urandom(32).hex(),
           "GIG_INDEX_URL": f"file://{signed}", "GIG_INDEX_PUBKEYS": pub.read_text(), "GIG_REGISTRY_PLAIN_HTTP": "1"}
    failed = run(TARGET / "gigmcp", "install", "fetch", env=env, check=False)
    assert failed.returncode != 0
    assert "set GIG_OCI_LAYOUT" in failed.stderr, failed.stderr

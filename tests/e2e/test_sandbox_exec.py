"""`gigmcp sandbox exec`: a command runs in the real sandbox (bubblewrap + bootstrap + seccomp)
with stdio passed through and its exit status returned, and sees nothing of the host it was
not given — not the gateway's environment, not unbound files."""

import subprocess

import pytest

from conftest import TARGET

SECRET = "sk-gateway-env-MARKER-0123456789"


BOOTSTRAP = None


@pytest.fixture(autouse=True)
def _bootstrap(sandbox_bins):
    global BOOTSTRAP
    BOOTSTRAP = str(sandbox_bins["bootstrap"])


def sandbox(*command, stdin=None, binds=()):
    args = [str(TARGET / "gigmcp"), "sandbox", "exec"]
    for b in binds:
        args += ["--bind-ro", str(b)]
    env = {"PATH": "/usr/bin:/bin", "GIG_MASTER_KEY": SECRET, "GIG_BEARER_TOKEN": SECRET, "GIG_LOG": "warn", "GIG_BOOTSTRAP": BOOTSTRAP}
    return subprocess.run([*args, "--", *command], input=stdin, capture_output=True, text=True, env=env, timeout=60)


def test_stdio_and_exit_status_pass_through():
    echoed = sandbox("/bin/cat", stdin="through the sandbox\n")
    assert echoed.returncode == 0, echoed.stderr
    assert echoed.stdout == "through the sandbox\n"
    assert sandbox("/bin/sh", "-c", "exit 7").returncode == 7


def test_the_command_sees_no_host_secrets_or_files():
    env = sandbox("/usr/bin/env")
    assert env.returncode == 0, env.stderr
    assert SECRET not in env.stdout
    assert "GIG_" not in env.stdout

    ident = sandbox("/usr/bin/id", "-u")
    assert ident.stdout.strip() == "65534"

    # Somewhere any user (bubblewrap runs unprivileged when the tests run as root) can reach.
    import tempfile
    from pathlib import Path

    tmp_path = Path(tempfile.mkdtemp(prefix="gig-sandbox-exec-"))
    tmp_path.chmod(0o755)
    hidden = tmp_path / "host-only.txt"
    hidden.write_text("host data")
    hidden.chmod(0o644)
    assert sandbox("/bin/cat", str(hidden)).returncode != 0
    shown = sandbox("/bin/cat", str(hidden), binds=[tmp_path])
    assert shown.stdout == "host data"
    assert sandbox("/bin/sh", "-c", f"echo x > {hidden}", binds=[tmp_path]).returncode != 0, "bind must be read-only"


def test_invalid_allow_host_is_refused_before_anything_runs():
    # (Egress itself is covered by test_egress.py and test_network_escape.py.)
    for bad, why in (
        ("not a host!", "invalid host pattern"),
        ("api.example.com:99999", "ports are numbers from 1 to 65535"),
        ("*", "'*' is only allowed as the whole first label"),
    ):
        result = subprocess.run(
            [str(TARGET / "gigmcp"), "sandbox", "exec", "--allow-host", bad, "--", "/bin/sh", "-c", "echo ran"],
            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "GIG_BOOTSTRAP": BOOTSTRAP}, timeout=60,
        )
        assert result.returncode != 0 and result.stdout == "", result
        assert f"--allow-host {bad}" in result.stderr and why in result.stderr, result.stderr


def test_memory_and_tmp_are_bounded():
    # `tail` keeps a line in memory until a newline that /dev/zero never sends: the default
    # 512 MiB limit (a cgroup here, RLIMIT_DATA on hosts without one) stops it.
    hog = sandbox("/bin/sh", "-c", "head -c 2G /dev/zero | tail -n 1 > /dev/null")
    assert hog.returncode != 0, "a 2 GiB hog finished inside a 512 MiB sandbox"
    # /tmp is a sized tmpfs (64 MiB), not a way around the memory limit.
    fill = sandbox("/bin/sh", "-c", "head -c 100M /dev/zero > /tmp/fill")
    assert fill.returncode != 0 and "No space left" in fill.stderr, fill.stderr

"""`gigmcp doctor` end to end: on this host (root, bubblewrap, nftables) every check passes and a
real sandbox starts; with broken settings each failing check names the fix and the exit code is 1.
"""

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from conftest import TARGET

LINE = re.compile(r"^(ok  |warn|fail) (.{18}) (.*)$")
CHECKS = {
    "bubblewrap",
    "user namespaces",
    "/proc masking",
    "cgroup delegation",
    "CAP_NET_ADMIN+nft",
    "bootstrap",
    "sandbox start",
    "master key",
    "database",
    "vault",
    "signed index",
}


def doctor(env: dict) -> tuple[int, dict[str, tuple[str, str]], str]:
    done = subprocess.run(
        [str(TARGET / "gigmcp"), "doctor"],
        env={"PATH": os.environ["PATH"], "GIG_LOG": "warn", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"\d+ checks: \d+ failed, \d+ warnings", lines[-1]), done.stdout
    checks = {}
    for line in lines[:-1]:
        m = LINE.match(line)
        assert m, f"not a check line: {line!r}\n{done.stdout}"
        checks[m.group(2).strip()] = (m.group(1).strip(), m.group(3))
    return done.returncode, checks, done.stdout


def require_root_sandbox():
    if os.geteuid() != 0 or not Path("/usr/bin/bwrap").exists():
        if os.environ.get("CI") or os.environ.get("GIG_REQUIRE_SANDBOX"):
            pytest.fail("doctor's healthy run needs root and bubblewrap")
        pytest.fail("needs root and bubblewrap")


@pytest.fixture
def healthy_env(tmp_path, sandbox_bins):
    tmp_path.chmod(0o711)
    return {
        "GIG_DATA_DIR": str(tmp_path / "data"),
        "GIG_MASTER_KEY": secrets.token_hex(32),
        "GIG_BOOTSTRAP": str(sandbox_bins["bootstrap"]),
    }


def test_doctor_passes_on_a_healthy_host_and_starts_a_real_sandbox(healthy_env):
    require_root_sandbox()
    code, checks, out = doctor(healthy_env)
    assert code == 0, out
    assert set(checks) == CHECKS, out
    assert all(level in ("ok", "warn") for level, _ in checks.values()), out
    for required in ("bubblewrap", "user namespaces", "/proc masking", "sandbox start", "master key", "database", "vault"):
        assert checks[required][0] == "ok", out
    assert "ran `true`" in checks["sandbox start"][1]
    assert checks["signed index"] == ("ok", "installs off (GIG_INDEX_URL unset)")
    # Warnings still name their fix.
    assert all("— fix: " in detail for level, detail in checks.values() if level == "warn"), out


def test_doctor_names_the_fix_for_a_bad_master_key_and_an_unusable_data_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, checks, out = doctor(
        {"GIG_DATA_DIR": str(blocker / "data"), "GIG_MASTER_KEY": "not-hex", "GIG_BOOTSTRAP": str(tmp_path / "missing")}
    )
    assert code == 1, out
    level, detail = checks["master key"]
    assert level == "fail" and "64 hex" in detail and "fix: set GIG_MASTER_KEY to 64 hex digits (openssl rand -hex 32)" in detail
    assert "not-hex" not in out, "the key's value must never be printed"
    level, detail = checks["database"]
    assert level == "fail" and "Not a directory" in detail and "fix: make GIG_DATA_DIR a writable directory" in detail
    level, detail = checks["bootstrap"]
    assert level == "fail" and "fix: `make bootstrap`" in detail
    assert checks["sandbox start"][0] == "fail"


def test_doctor_refuses_a_master_key_other_than_the_stores(healthy_env):
    require_root_sandbox()
    code, _, out = doctor(healthy_env)
    assert code == 0, out
    code, checks, out = doctor({**healthy_env, "GIG_MASTER_KEY": secrets.token_hex(32)})
    assert code == 1, out
    assert checks["master key"][0] == "ok"
    level, detail = checks["vault"]
    assert level == "fail" and "fix: use the master key this store was created with" in detail, out


def test_doctor_fetches_and_verifies_the_signed_index(healthy_env, tmp_path):
    require_root_sandbox()
    key = tmp_path / "index.key"
    keygen = subprocess.run(
        [str(TARGET / "registryctl"), "keygen", "--out", str(key)], capture_output=True, text=True, check=True
    )
    pubkey = re.search(r"ed25519:[A-Za-z0-9+/=]+", keygen.stdout + keygen.stderr).group(0)
    missing = {**healthy_env, "GIG_INDEX_URL": f"file://{tmp_path}/nowhere.json", "GIG_INDEX_PUBKEYS": pubkey}
    code, checks, out = doctor(missing)
    assert code == 1, out
    level, detail = checks["signed index"]
    assert level == "fail" and "fix: check GIG_INDEX_URL is reachable" in detail, out

    index = tmp_path / "index.json"
    subprocess.run(
        [str(TARGET / "registryctl"), "add", "--index", str(index), "--name", "echo", "--version", "0.1.0",
         "--image", "localhost/echo@sha256:" + "a" * 64, "--entrypoint", "/srv/echo-mcp"],
        capture_output=True, check=True,
    )
    signed = tmp_path / "index.signed.json"
    subprocess.run(
        [str(TARGET / "registryctl"), "sign", "--index", str(index), "--key", str(key), "--expires-in", "1d",
         "--out", str(signed)],
        capture_output=True, check=True,
    )
    code, checks, out = doctor({**missing, "GIG_INDEX_URL": f"file://{signed}"})
    assert code == 0, out
    assert checks["signed index"][0] == "ok" and "verified" in checks["signed index"][1], out

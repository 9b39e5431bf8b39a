#!/usr/bin/env python3
"""make docs-check: runs every command block marked runnable in README.md and docs/*.md.

A runnable block is a ```sh fence whose previous non-empty line is `<!-- runnable -->`. Each
runs with bash -euo pipefail in a fresh temporary directory, with the built binaries
(target/debug) first on PATH and nothing of the caller's GIG_* settings, bounded to 120 s.
Any failure fails the check, naming the document and line."""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug"


def blocks(path: Path):
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "<!-- runnable -->":
            continue
        start = next((j for j in range(i + 1, len(lines)) if lines[j].strip()), None)
        if start is None or not re.match(r"^```(sh|bash)\s*$", lines[start]):
            raise SystemExit(f"{path}:{i + 1}: a runnable marker must precede a ```sh block")
        end = next(j for j in range(start + 1, len(lines)) if lines[j].startswith("```"))
        yield start + 1, "\n".join(lines[start + 1:end])


def main() -> int:
    docs = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIG_")}
    env["PATH"] = f"{TARGET}:{env.get('PATH', '/usr/bin:/bin')}"
    failed = ran = 0
    for doc in docs:
        for line, script in blocks(doc):
            ran += 1
            where = f"{doc.relative_to(REPO)}:{line}"
            with tempfile.TemporaryDirectory(prefix="gig-docs-") as cwd:
                done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                                      capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                print(f"ok      {where}")
            else:
                failed += 1
                print(f"FAILED  {where} (exit {done.returncode})\n{done.stdout}{done.stderr}")
    print(f"docs-check: {ran - failed}/{ran} runnable blocks pass")
    return 1 if failed or not ran else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Regenerates the variable table in docs/configuration.md from crates/config/src/lib.rs.

The unit test `configuration_doc_matches_the_code` fails when the two drift; run this to fix.
"""
import re
from pathlib import Path

root = Path(__file__).resolve().parents[1]
src = (root / "crates/config/src/lib.rs").read_text()
pattern = r'VarDoc \{\s*name: "([^"]+)",\s*default: "([^"]*)",\s*meaning: "((?:[^"\\]|\\.)*)",\s*\}'
rows = "\n".join(f"| `{n}` | `{d}` | {m} |" for n, d, m in re.findall(pattern, src))
doc_path = root / "docs/configuration.md"
doc = doc_path.read_text()
start, end = doc.index("| Variable |"), doc.index("## The servers file")
doc_path.write_text(doc[:start] + "| Variable | Default | Meaning |\n|---|---|---|\n" + rows + "\n\n" + doc[end:])

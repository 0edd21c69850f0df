"""Code, tests, benchmarks, examples, notebooks and docs cite only what is in the repository.

The design notes the project started from (a protocol spec, a decisions log, notes on
reactivex) are not shipped, so "spec 6.5.3", "DECISIONS 4" or "REACTIVE-NOTES 0.3" point a
reader nowhere. Protocol sections are cited as ``docs/protocol.md §N.N`` (which keeps the
spec's numbering, checked by ``test_protocol_refs.py``); a decision or a measured trap is said
in a few words where it matters.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHERE = ("iii_rx", "tests", "benchmarks", "examples", "notebooks", "docs", "constraints")
FILES = ("README.md", "Makefile", "mkdocs.yml", "pyproject.toml")
SKIP_DIRS = {"node_modules", "__pycache__", ".ipynb_checkpoints"}
TEXT = {".py", ".md", ".ipynb", ".txt", ".toml", ".yml", ".yaml", ".json", ".cfg", ".ini", ".sh",
        ".js", ".mjs", ".html", ".css", ""}

OUTSIDE = re.compile(
    r"(?i:spec) (?:sections? )?[0-9]"  # "spec 6.5.3", "Spec 2.10", "spec section 7"
    r"|\((?i:spec) [^)/][^)]*\)"  # "(spec 11 #4)", not the path ``(spec / "kernel.json")``
    r"|DECISIONS|REACTIVE-NOTES|BENCHMARKING\.md|DESIGN\.md|PROTOCOL\.md"
    r"|protocol spec"
    r"|\.\./shared"
)


def files() -> list[Path]:
    found = [ROOT / name for name in FILES if (ROOT / name).is_file()]
    for top in WHERE:
        for path in sorted((ROOT / top).rglob("*")):
            if SKIP_DIRS.isdisjoint(path.relative_to(ROOT).parts) and path.is_file() \
                    and path.suffix in TEXT and path != Path(__file__).resolve():
                found.append(path)
    return found


def test_the_scan_sees_the_tree() -> None:
    scanned = {p.relative_to(ROOT).as_posix() for p in files()}
    assert {"README.md", "docs/protocol.md", "iii_rx/client.py", "benchmarks/README.md"} <= scanned
    assert "tests/docs/test_no_outside_refs.py" not in scanned


def test_the_pattern_finds_outside_references() -> None:
    cited = ["see spec 6.5.3", "(spec 11 #4)", "spec section 7", "Spec 2.10:", "DECISIONS 4",
             "REACTIVE-NOTES 0.3", "the project's protocol spec", "../shared/tools"]
    assert all(OUTSIDE.search(text) for text in cited)
    ours = ['(spec / "kernel.json")', "docs/protocol.md §6.5.3", "FunctionSpec(spec.id)"]
    assert not any(OUTSIDE.search(text) for text in ours)


def test_no_reference_to_documents_outside_the_repository() -> None:
    hits = []
    for path in files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not hits, ("cite docs/protocol.md §N.N, or say the reason in a few words:\n"
                      + "\n".join(hits))

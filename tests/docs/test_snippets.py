"""Every ```python block of README.md and docs/**/*.md runs, against the embedded engine.

Conventions, for whoever writes docs:

- A ```python block runs on its own in a fresh interpreter, in an empty temporary directory,
  with ``III_URL`` unset (so ``iii_rx.connect()`` starts an embedded engine) and
  ``OTEL_ENABLED=false``, in asyncio's debug mode (a loop method called from a thread other
  than the loop's raises, as a reader's program may race there). It must finish within
  ``TIMEOUT_S`` seconds without raising.
- Top-level ``await``, ``async with`` and ``async for`` are allowed, as in a notebook cell; such
  a block runs on an event loop the runner makes.
- ``<!-- norun: reason -->`` on the line above a block (blank lines may sit between) skips it;
  the reason is required (a block that needs a real engine, runs forever, or shows a fragment).
  A skipped block does not break a chain: a ``continue`` block after it joins the block before.
- ``<!-- continue -->`` on the line above a block joins it to the previous ```python block of
  the same page: the chain runs as one program, in one namespace (and one event loop), so a
  later block can use what an earlier one defined. The chain is one test, named after its first
  block; a failure names the file and line where it happened.
- ``ws://127.0.0.1:49134`` in a block (the address ``iii-rx engine`` listens on) is pointed at an
  embedded engine the runner starts for the chain.
- Other fences (```sh, ```json, ```text, ...) are not run.

All chains run when the first test asks for a result: one interpreter imports iii_rx, then
forks a process per chain, a few at a time (run_snippets.py), so no chain pays for the imports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().with_name("run_snippets.py")
TIMEOUT_S = 30
PARALLEL = 3

FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
NORUN = re.compile(r"^\s*<!--\s*norun(?::\s*(?P<reason>.*?))?\s*-->\s*$")
CONTINUE = re.compile(r"^\s*<!--\s*continue\s*-->\s*$")


@dataclass
class Block:
    path: str  # relative to the repository root
    line: int  # 1-based line of the block's first code line
    source: str
    marker: str | None = None  # the comment line above it, if any


@dataclass
class Chain:
    blocks: list[Block] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.blocks[0].path}:{self.blocks[0].line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks_of(path: Path) -> Iterator[Block]:
    """Every fenced block of one page with its language, start line and the marker above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(ROOT).as_posix()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, lang = match.group(1), match.group(2)
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if lang == "python":
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = lines[k] if k >= 0 and lines[k].strip().startswith("<!--") else None
            body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : j]]
            yield Block(rel, i + 2, "\n".join(body) + "\n", marker)
        i = j + 1


def collect() -> tuple[list[Chain], list[str]]:
    """The chains to run, and the problems with markers (a norun without a reason, ...)."""
    chains: list[Chain] = []
    problems: list[str] = []
    for path in doc_files():
        last: Chain | None = None
        for block in blocks_of(path):
            where = f"{block.path}:{block.line}"
            norun = NORUN.match(block.marker or "")
            if norun:
                if not (norun.group("reason") or "").strip():
                    problems.append(f"{where}: <!-- norun --> needs a reason: <!-- norun: why -->")
                continue
            if block.marker and CONTINUE.match(block.marker):
                if last is None:
                    problems.append(f"{where}: <!-- continue --> with no runnable block before it")
                    continue
                last.blocks.append(block)
                continue
            last = Chain([block])
            chains.append(last)
    return chains, problems


CHAINS, PROBLEMS = collect()


_RESULTS: dict[str, tuple[int | None, str]] = {}


def run_all() -> dict[str, tuple[int | None, str]]:
    """Run every chain once (forked from one interpreter that imported iii_rx): name -> result."""
    if _RESULTS:
        return _RESULTS
    env = {k: v for k, v in os.environ.items() if k not in ("III_URL", "III_TOKEN")}
    env["OTEL_ENABLED"] = "false"
    env["PYTHONASYNCIODEBUG"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="iii-rx-snippets-") as tmp:
        files = {}
        for n, chain in enumerate(CHAINS):
            name = f"chain{n:03d}.json"
            Path(tmp, name).write_text(json.dumps([vars(b) for b in chain.blocks]), "utf-8")
            files[chain.name] = name
        subprocess.run(
            [sys.executable, str(RUNNER), "--fork", tmp, str(PARALLEL), str(TIMEOUT_S)],
            cwd=tmp, env=env, check=True,
            timeout=TIMEOUT_S * (len(CHAINS) // PARALLEL + 2),
        )
        codes = json.loads(Path(tmp, "results.json").read_text("utf-8"))
        for chain_name, name in files.items():
            output = Path(tmp, name + ".out").read_text("utf-8", errors="replace")
            _RESULTS[chain_name] = (codes[name], output)
    return _RESULTS


def test_markers_are_well_formed() -> None:
    assert not PROBLEMS, "\n".join(PROBLEMS)


def test_there_are_snippets() -> None:
    # The collector must find the README's first worker at least: an empty run proves nothing.
    assert any(c.blocks[0].path == "README.md" for c in CHAINS)


@pytest.mark.timeout(TIMEOUT_S * (len(CHAINS) // PARALLEL + 2))
@pytest.mark.parametrize("chain", CHAINS, ids=[c.name for c in CHAINS])
def test_snippet_runs(chain: Chain) -> None:
    code, output = run_all()[chain.name]
    lines = ", ".join(f"{b.path}:{b.line}" for b in chain.blocks)
    if code is None:
        pytest.fail(f"{lines}: did not finish within {TIMEOUT_S} s (a hang?)\n{output}")
    assert code == 0, f"{lines}: exited with {code}\n{output}"

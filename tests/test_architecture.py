"""The shape of the package: no import cycle, the layers of docs/architecture.md, small modules.

The import graph is grimp's, built from the source: every import counts, those under
``TYPE_CHECKING`` and inside functions included. To see it yourself::

    .venv/bin/python -m tests.importgraph            # every module and what it imports
    .venv/bin/python -m tests.importgraph --cycles   # the cycles (none, if this test passes)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.importgraph import build, cycles

PACKAGE = Path(__file__).resolve().parent.parent / "iii_rx"
MAX_LINES = 600

WIRE = {"iii_rx.protocol", "iii_rx.errors", "iii_rx.http", "iii_rx.frame_text", "iii_rx.wslane",
        "iii_rx.logsafe"}
"""What both the client and the engine stand on; imports nothing above it."""
AIO = {"iii_rx.aio"}
ENTRY_POINTS = {"iii_rx.connect", "iii_rx.cli"}
"""The only client-side modules that may start an engine."""


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return build()


def _layer(module: str) -> str:
    if module in WIRE:
        return "wire"
    if module in AIO:
        return "aio"
    if module == "iii_rx.engine" or module.startswith("iii_rx.engine."):
        return "engine"
    return "client"


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_wire_and_aio_stand_alone(graph: dict[str, set[str]]) -> None:
    bad = [(m, i) for m, imports in graph.items() if _layer(m) in ("wire", "aio")
           for i in imports if _layer(i) not in ("wire",) and not (m in AIO and i in AIO)]
    assert not bad, f"wire/aio modules import higher layers: {bad}"


def test_engine_never_imports_the_client_side(graph: dict[str, set[str]]) -> None:
    bad = [(m, i) for m, imports in graph.items() if _layer(m) == "engine"
           for i in imports if _layer(i) == "client"]
    assert not bad, f"engine modules import the client side: {bad}"


def test_only_the_entry_points_start_an_engine(graph: dict[str, set[str]]) -> None:
    bad = [(m, i) for m, imports in graph.items() if _layer(m) == "client"
           and m not in ENTRY_POINTS for i in imports if _layer(i) == "engine"]
    assert not bad, f"client-side modules import the engine: {bad}"


def test_nothing_imports_the_engine_object_module(graph: dict[str, set[str]]) -> None:
    """Engine parts get what they use from ``Engine.__init__``; none reaches back for it."""
    importers = sorted(m for m, imports in graph.items() if "iii_rx.engine.engine" in imports
                       and m != "iii_rx.engine")
    assert not importers, f"modules importing iii_rx.engine.engine: {importers}"


def test_channels_and_operators_do_not_import_the_client(graph: dict[str, set[str]]) -> None:
    client_faces = {"iii_rx.client", "iii_rx.connect", "iii_rx"}
    bad = [(m, i) for m, imports in graph.items()
           if m.startswith(("iii_rx.channels", "iii_rx.operators"))
           for i in imports if i in client_faces or i.startswith("iii_rx.compat")]
    assert not bad, f"channels/operators import the client or compat: {bad}"


def test_the_reactive_api_does_not_import_compat(graph: dict[str, set[str]]) -> None:
    bad = [(m, i) for m, imports in graph.items() if not m.startswith("iii_rx.compat")
           and m != "iii_rx.cli" for i in imports if i.startswith("iii_rx.compat")]
    assert not bad, f"the reactive API imports compat: {bad}"


def test_modules_are_small() -> None:
    big = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by concept): {big}"


def test_timeouts_of_asyncio_are_caught_by_their_310_name() -> None:
    """On Python 3.10 ``asyncio.wait_for`` raises ``asyncio.TimeoutError``, a class apart from
    the builtin ``TimeoutError`` (one class from 3.11): catching the builtin alone let a
    queue's retry wait crash its consumer there, and CI runs 3.11. Where a timeout is caught
    or tested (``except``, ``suppress``, ``isinstance``), ``asyncio.TimeoutError`` is named."""
    import ast

    def names(node: ast.expr | None) -> list[ast.expr]:
        return list(node.elts) if isinstance(node, ast.Tuple) else [] if node is None else [node]

    bare = []
    tests = Path(__file__).resolve().parent  # a test catching the builtin breaks on 3.10 too
    for path in [*PACKAGE.rglob("*.py"), *tests.rglob("*.py")]:
        # A test may check that an error of ours *is* the builtin (isinstance), on purpose.
        checks = ("suppress",) if path.is_relative_to(tests) else ("suppress", "isinstance")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ExceptHandler):
                caught = names(node.type)
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(
                    node.func, "id", None)) in checks:
                caught = [a for arg in node.args for a in names(arg)]
            else:
                continue
            builtin = any(isinstance(n, ast.Name) and n.id == "TimeoutError" for n in caught)
            asyncio_one = any(isinstance(n, ast.Attribute) and n.attr == "TimeoutError"
                              for n in caught)
            if builtin and not asyncio_one:
                bare.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not bare, f"the builtin TimeoutError alone (add asyncio.TimeoutError): {bare}"

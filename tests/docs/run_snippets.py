"""Run a chain of documentation code blocks in this process, one after the other.

``python run_snippets.py CHAIN.json`` runs one chain; the file holds a list of
``{"path", "line", "source"}``. ``python run_snippets.py --fork DIR PARALLEL TIMEOUT`` is what
``test_snippets.py`` uses: it imports iii_rx once, then forks one child per ``DIR/*.json`` chain
(at most PARALLEL at a time, each killed after TIMEOUT seconds), so no chain pays for the
imports; each child runs in its own process, in the chain's own directory, with its output in
``chain.out``, and ``DIR/results.json`` maps every chain file to its exit code (null: killed).

Every block runs in one shared namespace (a ``continue`` block sees the names of the block
before). A block may use top-level ``await`` / ``async with``
/ ``async for``, as in a notebook cell: it then runs on one event loop kept for the whole chain.
Tracebacks name the markdown file and its line numbers, because each block is compiled under
the page's path with its source shifted down to the line where the block starts.

``ws://127.0.0.1:49134`` (where ``iii-rx engine`` listens by default) in a block is replaced by
the address of an embedded engine started for the chain, so examples may show the usual address.
"""

from __future__ import annotations

import ast
import asyncio
import glob
import inspect
import json
import os
import signal
import sys
import time
import traceback
from typing import Any

WELL_KNOWN = "ws://127.0.0.1:49134"


def run_chain(blocks: list[dict[str, Any]]) -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    loop: asyncio.AbstractEventLoop | None = None
    engine = None
    try:
        if any(WELL_KNOWN in block["source"] for block in blocks):
            from iii_rx.engine import Engine

            engine = Engine.start_in_thread()
        for block in blocks:
            source = block["source"]
            if engine is not None:
                source = source.replace(WELL_KNOWN, engine.url)
            padded = "\n" * (block["line"] - 1) + source
            code = compile(padded, block["path"], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            if code.co_flags & inspect.CO_COROUTINE:
                if loop is None:
                    loop = asyncio.new_event_loop()
                loop.run_until_complete(eval(code, namespace))
            else:
                exec(code, namespace)
    finally:
        if loop is not None:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        if engine is not None:
            engine.stop()


def _child(chain_path: str) -> None:
    """In a forked child: run one chain with its output in ``<chain>.out``; never returns."""
    code = 0
    try:
        out = os.open(chain_path + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(out, 2)
        workdir = chain_path + ".d"
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
        with open(chain_path, encoding="utf-8") as chain_file:
            run_chain(json.load(chain_file))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def fork_all(directory: str, parallel: int, timeout: float) -> None:
    """Run every chain of ``directory`` in a forked child; write ``results.json``."""
    import iii_rx
    import iii_rx.engine  # noqa: F401

    todo = sorted(glob.glob(os.path.join(directory, "*.json")))
    running: dict[int, tuple[str, float]] = {}
    results: dict[str, int | None] = {}
    while todo or running:
        while todo and len(running) < parallel:
            chain_path = todo.pop(0)
            pid = os.fork()
            if pid == 0:
                _child(chain_path)
            running[pid] = (chain_path, time.monotonic() + timeout)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            chain_path, _ = running.pop(pid)
            results[os.path.basename(chain_path)] = os.waitstatus_to_exitcode(status)
            continue
        now = time.monotonic()
        for pid, (chain_path, deadline) in list(running.items()):
            if now > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                running.pop(pid)
                results[os.path.basename(chain_path)] = None
        time.sleep(0.02)
    with open(os.path.join(directory, "results.json"), "w", encoding="utf-8") as out:
        json.dump(results, out)


if __name__ == "__main__":
    if sys.argv[1] == "--fork":
        fork_all(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        with open(sys.argv[1], encoding="utf-8") as chain_file:
            run_chain(json.load(chain_file))

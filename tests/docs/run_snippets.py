"""Run a chain of documentation code blocks in this process, one after the other.

Invoked by ``test_snippets.py`` as ``python run_snippets.py CHAIN.json``; the file holds a list
of ``{"path", "line", "source"}``. Every block runs in one shared namespace (a ``continue``
block sees the names of the block before). A block may use top-level ``await`` / ``async with``
/ ``async for``, as in a notebook cell: it then runs on one event loop kept for the whole chain.
Tracebacks name the markdown file and its line numbers, because each block is compiled under
the page's path with its source shifted down to the line where the block starts.

``ws://127.0.0.1:49134`` (where ``iii-rx engine`` listens by default) in a block is replaced by
the address of an embedded engine started for the chain, so examples may show the usual address.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import sys
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


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as chain_file:
        run_chain(json.load(chain_file))

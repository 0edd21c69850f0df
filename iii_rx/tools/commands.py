"""``iii-rx ls``, ``iii-rx call`` and ``iii-rx watch``: the engine from a shell or a script.

``ls`` reads one snapshot (``TopologyStream.fetch``: four discovery calls, nothing
registered), ``call`` triggers one function, ``watch`` prints each topology change as one JSON
line. Each connects as a short-lived worker and leaves its own connection out of what it
shows. Output meant for scripts (``--json``, ``watch``) is plain JSON on stdout; messages
go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from typing import Any

from reactivex import abc

from iii_rx.client import Client
from iii_rx.errors import IIIError, IIITimeoutError
from iii_rx.state import ConnectionState, ReconnectConfig
from iii_rx.tools.args import KINDS
from iii_rx.tools.common import (
    EXIT_USAGE,
    ToolError,
    one_line,
    open_client,
    run,
)
from iii_rx.tools.rows import (
    FUNCTION_TOTAL_COLUMNS,
    TRIGGER_COLUMNS,
    WORKER_TOTAL_COLUMNS,
    Rows,
    build_rows,
    format_table,
    without_workers,
)
from iii_rx.tools.source import worker_pid
from iii_rx.topology import Topology, TopologyStream, WorkerInfo, diff

__all__ = ["call", "ls", "watch"]

_FOREVER = ReconnectConfig(initial_delay_ms=200, max_delay_ms=2000, max_retries=-1)
"""``watch`` outlives engine restarts: it reports them as connection lines."""


# ---------------------------------------------------------------------------------------- ls

def ls(args: argparse.Namespace) -> int:
    """``iii-rx ls [workers|functions|triggers] [--json]``."""
    return run(_ls(args), verbose=args.verbose)


async def _ls(args: argparse.Namespace) -> int:
    async with open_client(args, "ls") as iii:
        snapshot = await TopologyStream(iii, include_internal=args.internal).fetch()
        hidden = frozenset({iii.worker_id} if iii.worker_id else ())
        pids = await _pids(iii, [w for w in snapshot.workers if w.id not in hidden
                                 and (args.kind in (None, "workers"))])
    rows = build_rows(snapshot, namespace=args.namespace, hide_workers=hidden, pids=pids)
    kinds = (args.kind,) if args.kind else KINDS
    if args.json:
        out = {kind: _json_rows(rows, kind) for kind in kinds}
        _print(json.dumps(out[args.kind] if args.kind else out, indent=2, ensure_ascii=False))
        return 0
    sections = [_text_rows(rows, kind) for kind in kinds]
    _print("\n\n".join(sections) if args.kind else "\n\n".join(
        f"{kind.upper()}\n{section}" for kind, section in zip(kinds, sections, strict=True)))
    return 0


async def _pids(iii: Client, workers: list[WorkerInfo]) -> dict[str, int]:
    """Each socket worker's pid (one ``workers::info`` call each, at once); a worker that
    left in between, or an engine that does not tell, leaves the cell blank."""
    found = await asyncio.gather(*(worker_pid(iii, w) for w in workers), return_exceptions=True)
    return {w.id: pid for w, pid in zip(workers, found, strict=True) if isinstance(pid, int)}


def _json_rows(rows: Rows, kind: str) -> list[dict[str, Any]]:
    if kind == "workers":
        return [{**r.worker.to_dict(), **({"pid": r.pid} if r.pid is not None else {})}
                for r in rows.workers]
    if kind == "functions":
        return [r.function.to_dict() for r in rows.functions]
    return [r.trigger.to_dict() for r in rows.triggers]


def _text_rows(rows: Rows, kind: str) -> str:
    if kind == "workers":
        # One snapshot has no rate: CALLS is the engine's counter (blank without metrics).
        return format_table(WORKER_TOTAL_COLUMNS, [r.cells(totals=True) for r in rows.workers])
    if kind == "functions":
        return format_table(FUNCTION_TOTAL_COLUMNS,
                            [r.cells(totals=True) for r in rows.functions])
    return format_table(TRIGGER_COLUMNS, [r.cells() for r in rows.triggers])


# -------------------------------------------------------------------------------------- call

def call(args: argparse.Namespace) -> int:
    """``iii-rx call FUNCTION_ID [JSON] [--timeout MS] [--wait S]``."""
    text = sys.stdin.read() if args.payload == "-" else args.payload
    try:
        payload = parse_payload(text)
    except ValueError as exc:
        print(f"iii-rx: the payload is not JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.timeout <= 0:
        print("iii-rx: --timeout must be positive", file=sys.stderr)
        return EXIT_USAGE
    return run(_call(args, payload), verbose=args.verbose)


def parse_payload(text: str) -> Any:
    """``text`` as strict JSON: Python's ``json`` also takes ``NaN``, ``Infinity``, numbers
    beyond a double (``1e999``) and lone surrogates (``"\\ud800"``), none of which the wire
    can carry (the client refuses them at the call), and raises ``RecursionError`` on deep
    nesting; ``ValueError`` names the culprit."""
    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    def finite(number: str) -> float:
        value = float(number)
        if math.isinf(value):
            raise ValueError(f"{number} is beyond a double's range")
        return value

    try:
        payload = json.loads(text, parse_constant=constant, parse_float=finite)
    except RecursionError:  # a traceback, not the one-line refusal, before
        raise ValueError("it is nested deeper than the JSON parser goes") from None
    try:
        json.dumps(payload, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate, which UTF-8 cannot encode") from None
    return payload


async def _call(args: argparse.Namespace, payload: Any) -> int:
    async with open_client(args, "call", namespace=args.namespace) as iii:
        if args.wait is not None:
            await iii.wait_for_function(args.function_id, timeout=args.wait)
        try:
            result = await iii.trigger(args.function_id, payload, timeout_ms=args.timeout)
        except IIITimeoutError:
            raise ToolError(f"{args.function_id}: no result within {args.timeout} ms") from None
        except IIIError as exc:
            raise ToolError(f"{args.function_id}: {one_line(exc)}") from None
        except ValueError as exc:  # refused before sending: nothing the engine saw
            raise ToolError(f"{args.function_id}: {one_line(exc)}", EXIT_USAGE) from None
    _print(json.dumps(result, indent=2, ensure_ascii=False, default=repr))
    return 0


# ------------------------------------------------------------------------------------- watch

def watch(args: argparse.Namespace) -> int:
    """``iii-rx watch [--current]``: topology changes as JSON lines until interrupted."""
    return run(_watch(args), verbose=args.verbose)


async def _watch(args: argparse.Namespace) -> int:
    async with open_client(args, "watch", reconnect=_FOREVER) as iii:
        stream = TopologyStream(iii, poll_interval=args.poll, include_internal=args.internal)
        return await _follow(iii, stream, current=args.current)


async def _follow(iii: Client, stream: TopologyStream, *, current: bool) -> int:
    """Print diffs between successive snapshots (latest wins, so a slow reader sees merged
    changes, never an overflow) and connection states, in the order they happened."""
    queue: asyncio.Queue[Topology | ConnectionState | None] = asyncio.Queue()
    hidden = {iii.worker_id}
    subscriptions: list[abc.DisposableBase] = [
        stream.snapshots.subscribe(on_next=queue.put_nowait,
                                   on_completed=lambda: queue.put_nowait(None),
                                   on_error=lambda _: queue.put_nowait(None)),
        iii.state.subscribe(on_next=queue.put_nowait),
    ]
    previous: Topology | None = None
    state: ConnectionState | None = None
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, ConnectionState):
                if previous is not None and item is not state:
                    _emit({"event": "connection", "state": item.value})
                state = item
                continue
            hidden.add(iii.worker_id)  # after a reconnect: this watcher's new connection
            snapshot = without_workers(item, hidden)
            if previous is None:
                _emit({"event": "connection", "state": "connected", "url": iii.url})
                events = diff(None, snapshot) if current else []
            else:
                events = diff(previous, snapshot)
            for event in events:
                _emit(event.to_dict())
            previous = snapshot
    finally:
        for subscription in subscriptions:
            subscription.dispose()
    raise ToolError("the client closed")


def _emit(line: dict[str, Any]) -> None:
    _print(json.dumps(line, ensure_ascii=False, default=repr, separators=(",", ":")))


def _print(text: str) -> None:
    """Print to stdout; a reader that went away (``| head``) ends the command quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Point stdout at /dev/null so that the interpreter's last flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None


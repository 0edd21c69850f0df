"""What tracing adds to a call and to an invocation, in CPU instructions (valgrind's callgrind).

Throughput ratios on a shared machine move by ten points from one run to the next; an
instruction count does not. This runs the telemetry hooks of one client in one process (no I/O:
``Tracing.on_call`` with a call answered at once, and ``Tracing.on_invoke`` + the answer that
ends the span) under ``valgrind --tool=callgrind``, once with no span and once with ``--spans``
of each, and prints the difference per span. The spans go to an SDK pipeline whose processor
keeps the last 512 (no export thread: the count is the same from run to run).

    .venv/bin/python benchmarks/span_instructions.py            # needs valgrind on PATH
    .venv/bin/python benchmarks/span_instructions.py --spans 10000

Not part of ``make bench`` (``report.py`` leaves it out): valgrind runs Python ~50x slower,
and not every machine has it. For scale: an untraced round trip costs an iii_rx worker
~140,000 instructions (callgrind over the running worker).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def hooks(kind: str, count: int) -> None:
    """Run ``count`` traced calls or invocations in this process (the measured role)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

    from iii_rx.aio import LoopBridge
    from iii_rx.calls import Calls
    from iii_rx.context import Invocation
    from iii_rx.telemetry.config import OtelConfig
    from iii_rx.telemetry.tracing import Tracing

    class Keep(SpanProcessor):
        """Keeps the last spans, as a batch processor's queue would, without its thread."""

        def __init__(self) -> None:
            self.kept: list[ReadableSpan] = []

        def on_end(self, span: ReadableSpan) -> None:
            self.kept.append(span)
            if len(self.kept) >= 512:
                self.kept.clear()

    provider = TracerProvider()
    provider.add_span_processor(Keep())
    trace.set_tracer_provider(provider)
    gc.disable()  # a collection lands on different spans from run to run

    async def main() -> None:
        bridge = LoopBridge.current()
        tracing = Tracing(OtelConfig(enabled=True), bridge, "bench", provider, None)
        if kind == "call":
            call = Calls(bridge, outbox=None).call(  # type: ignore[arg-type]
                "bench::echo", {"a": 1}, timeout_ms=1000)

            def send(sent: Any, target: Any) -> Any:
                target({"a": 1}, None)
                return lambda: None

            for _ in range(count):
                tracing.on_call(call, lambda value, error: None, send)
        else:
            for _ in range(count):
                invocation = Invocation(None, "bench::echo", "iid", {"a": 1}, None, TRACEPARENT)
                tracing.on_invoke(invocation)
                invocation.trace.end({"a": 1}, None)

    asyncio.run(main())


def instructions(kind: str, count: int) -> int:
    """Instructions callgrind counts for a whole run of :func:`hooks`."""
    with tempfile.TemporaryDirectory() as scratch:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch}/cg.out",
             sys.executable, __file__, "--hooks", kind, "--spans", str(count)],
            capture_output=True, text=True, timeout=1800, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OTEL_ENABLED": "false"})
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed ({out.returncode}): {out.stderr[-800:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=4000)
    parser.add_argument("--hooks", choices=("call", "invocation"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hooks is not None:
        hooks(args.hooks, args.spans)
        return
    if shutil.which("valgrind") is None:
        sys.exit("span_instructions.py needs valgrind (apt install valgrind)")
    print(f"Instructions the telemetry hooks add per span (callgrind, {args.spans:,} spans, "
          "spans on, metrics off, payload events on):")
    for kind, label in (("call", "call (CLIENT span)"), ("invocation", "invocation (SERVER span)")):
        added = instructions(kind, args.spans) - instructions(kind, 0)
        print(f"  {label:<28} {added / args.spans:>10,.0f} instructions")


if __name__ == "__main__":
    main()

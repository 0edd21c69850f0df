"""Frame encoding: the one hot-path encoder (``iii_rx.frame_text``) against the ones it replaces.

The ``invokefunction`` and ``invocationresult`` frames are built once per call on each side, so
their encoding is measured alone, in this process, as CPU time per frame (``thread_time``, so a
busy machine slows every contender alike rather than adding its own waits). Contenders:

* ``_fastjson`` — the client's ``call_frame`` / ``result_frame`` (stdlib ``json``), falling back
  to the model path when ``json`` cannot write the payload, as ``client.py`` does;
* ``engine.wire`` — the engine's ``invoke_text`` / ``result_text`` (stdlib ``json``);
* ``model`` — :func:`iii_rx.protocol.encode` of a frame model, plus ``find_non_finite`` of the
  payload in client mode (that is the client's path for what ``json`` cannot write);
* ``frame_text`` — ``invoke_text`` / ``result_text`` with ``allow_nan=False`` (client) or
  ``True`` (engine).

Two modes: **client** (NaN/Infinity refused) and **engine** (relayed). A contender that does not
do what the mode needs is still timed, for reference, and marked: ``engine.wire`` and the bare
model path do not refuse NaN, ``_fastjson`` cannot relay it. Payloads: one object of 64 bytes,
about 1 KiB of records, 64 records, and 1 MiB of records; a record has capitalised names, a
float, a nested list and a null, so the client's check takes its slow branches (see the
"refusal cost" table for a payload without ``null``, ``N`` or ``I``). Every contender's text is
compared with ``frame_text``'s before timing.

    .venv/bin/python benchmarks/encode_frames.py
    .venv/bin/python benchmarks/encode_frames.py --rounds 7 --round-ms 40 --sizes 64B,64rec
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import median, spread  # noqa: E402

from iii_rx import frame_text  # noqa: E402
from iii_rx.protocol import InvocationResult, InvokeFunction, encode  # noqa: E402

try:  # the two encoders this one replaces; gone once the callers have switched
    from iii_rx import _fastjson
except ImportError:  # pragma: no cover
    _fastjson = None  # type: ignore[assignment]
try:
    from iii_rx.engine import wire
except ImportError:  # pragma: no cover
    wire = None  # type: ignore[assignment]

FUNCTION = "orders::summarise"
IID = "0b3d5b8e-6a55-4d36-9f0c-1f2a3b4c5d6e"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
NAMES = ("Ada Lovelace", "Nadia Ivanova", "Grace Hopper", "Alan Turing")
SIZES = {"64B": 64, "1KiB": 1024, "64rec": 0, "1MiB": 1 << 20}
CONTENDERS = ("_fastjson", "engine.wire", "model", "frame_text")
Encoder = Callable[[Any], str]


def record(i: int, rng: random.Random, plain: bool) -> dict[str, Any]:
    if plain:  # nothing that sends the client's check down a slow branch
        return {"id": i, "name": f"user {i}", "email": f"user{i}@example.com",
                "score": round(rng.random() * 100, 3), "active": i % 2 == 0,
                "tags": ["alpha", "beta"]}
    return {"id": i, "name": NAMES[i % 4], "email": f"user{i}@example.com",
            "score": round(rng.random() * 100, 3), "active": i % 2 == 0,
            "tags": ["alpha", "beta"], "manager": None}


def payload(size: str, plain: bool = False) -> Any:
    rng = random.Random(7)
    if size == "64B":
        return ({"user": "ada", "count": 42, "ratio": 0.75, "ok": True, "tag": "x" * 6}
                if plain else
                {"user": "Ada Lovelace", "count": 42, "ratio": 0.75, "ok": True, "tag": None})
    if size == "64rec":
        return [record(i, rng, plain) for i in range(64)]
    records: list[dict[str, Any]] = []
    length = 1  # of the JSON array, counted record by record
    while length < SIZES[size]:
        records.append(record(len(records), rng, plain))
        length += len(json.dumps(records[-1], separators=(",", ":"))) + 1
    return records


# ------------------------------------------------------------------ contenders


def find_non_finite(value: Any) -> bool:
    if _fastjson is not None:
        return _fastjson.find_non_finite(value)
    return frame_text._holds_non_finite(value)


def _model_invoke(data: Any, check: bool) -> str:
    text = encode(InvokeFunction(function_id=FUNCTION, data=data, invocation_id=IID,
                                 traceparent=TRACEPARENT))
    if check and find_non_finite(data):
        raise ValueError(frame_text.NON_FINITE)
    return text


def _model_result(result: Any, check: bool) -> str:
    text = encode(InvocationResult(invocation_id=IID, function_id=FUNCTION, result=result,
                                   traceparent=TRACEPARENT))
    if check and find_non_finite(result):
        raise ValueError(frame_text.NON_FINITE)
    return text


def contenders(frame: str, mode: str) -> dict[str, Encoder | None]:
    """The encoders of ``frame`` in ``mode``, each a function of the payload."""
    client = mode == "client"
    found: dict[str, Encoder | None] = dict.fromkeys(CONTENDERS)
    if frame == "invoke":
        if _fastjson is not None:
            fj = _fastjson

            def fastjson(data: Any) -> str:
                text = fj.call_frame(FUNCTION, data, IID, None, TRACEPARENT, None, None)
                return text if text is not None else _model_invoke(data, True)

            found["_fastjson"] = fastjson
        if wire is not None:
            w = wire
            found["engine.wire"] = lambda data: w.invoke_text(IID, FUNCTION, data, None,
                                                              TRACEPARENT)
        found["model"] = lambda data: _model_invoke(data, client)
        found["frame_text"] = lambda data: frame_text.invoke_text(
            FUNCTION, data, invocation_id=IID, traceparent=TRACEPARENT, allow_nan=not client)
    else:
        if _fastjson is not None:
            fj = _fastjson

            def fastjson_result(result: Any) -> str:
                text = fj.result_frame(IID, FUNCTION, result, TRACEPARENT)
                return text if text is not None else _model_result(result, True)

            found["_fastjson"] = fastjson_result
        if wire is not None:
            w = wire
            found["engine.wire"] = lambda result: w.result_text(IID, FUNCTION, result, None,
                                                                TRACEPARENT)
        found["model"] = lambda result: _model_result(result, client)
        found["frame_text"] = lambda result: frame_text.result_text(
            IID, FUNCTION, result, traceparent=TRACEPARENT, null_result=client,
            allow_nan=not client)
    return found


def unfit(name: str, mode: str) -> bool:
    """Whether ``name`` does not do what ``mode`` needs (timed for reference only)."""
    if mode == "client":
        return name == "engine.wire"
    return name == "_fastjson"


# ------------------------------------------------------------------ timing


def per_call_us(encoder: Encoder, value: Any, calls: int) -> float:
    start = time.thread_time()
    for _ in range(calls):
        encoder(value)
    return (time.thread_time() - start) / calls * 1e6


def calibrate(encoder: Encoder, value: Any, round_ms: float) -> int:
    calls = 1
    while True:
        start = time.thread_time()
        for _ in range(calls):
            encoder(value)
        spent = time.thread_time() - start
        if spent >= 0.005:
            return max(1, int(calls * round_ms / 1000 / spent))
        calls *= 4


def same_text(encoders: dict[str, Encoder | None], value: Any) -> dict[str, str]:
    """How each contender's text compares with ``frame_text``'s: ``same``, ``same JSON`` or
    ``differs``."""
    ours = encoders["frame_text"]
    assert ours is not None
    reference = ours(value)
    verdict: dict[str, str] = {}
    for name, encoder in encoders.items():
        if encoder is None or name == "frame_text":
            continue
        text = encoder(value)
        verdict[name] = ("same" if text == reference else
                         "same JSON" if json.loads(text) == json.loads(reference) else "differs")
    return verdict


def measure(sizes: list[str], rounds: int, round_ms: float, plain: bool
            ) -> dict[tuple[str, str, str, str], list[float]]:
    """``(mode, frame, size, contender) -> µs per frame`` of each round, rounds interleaved."""
    jobs: list[tuple[tuple[str, str, str, str], Encoder, Any, int]] = []
    for mode in ("client", "engine"):
        for frame in ("invoke", "result"):
            encoders = contenders(frame, mode)
            for size in sizes:
                value = payload(size, plain)
                verdict = same_text(encoders, value)
                bad = {name: v for name, v in verdict.items() if v == "differs"}
                if bad:
                    raise SystemExit(f"{mode}/{frame}/{size}: text differs from frame_text: {bad}")
                for name, encoder in encoders.items():
                    if encoder is not None:
                        calls = calibrate(encoder, value, round_ms)
                        jobs.append(((mode, frame, size, name), encoder, value, calls))
    figures: dict[tuple[str, str, str, str], list[float]] = {job[0]: [] for job in jobs}
    for turn in range(rounds):
        shift = turn % len(jobs)
        for key, encoder, value, calls in jobs[shift:] + jobs[:shift]:
            gc.collect()  # no contender pays for another's garbage
            figures[key].append(per_call_us(encoder, value, calls))
    return figures


# ------------------------------------------------------------------ report


def fmt_us(values: list[float]) -> str:
    if not values:
        return "-"
    fmt = ".2f" if median(values) < 100 else ".0f"
    return spread(values, fmt)


def report(figures: dict[tuple[str, str, str, str], list[float]], sizes: list[str]) -> None:
    for mode, title in (("client", "client mode: NaN/Infinity refused"),
                        ("engine", "engine mode: NaN/Infinity relayed as the SDK writes them")):
        print(f"\n{title} - CPU microseconds per frame, median [min-max] of the rounds")
        header = f"{'frame':<7}{'size':<7}" + "".join(
            f"{name + ('*' if unfit(name, mode) else ''):>26}" for name in CONTENDERS)
        print(header + f"{'best other / frame_text':>26}")
        for frame in ("invoke", "result"):
            for size in sizes:
                row = f"{frame:<7}{size:<7}"
                ours = figures.get((mode, frame, size, "frame_text"), [])
                best_ratio: list[float] = []
                others = [name for name in CONTENDERS if name != "frame_text"
                          and (mode, frame, size, name) in figures]
                for name in CONTENDERS:
                    row += f"{fmt_us(figures.get((mode, frame, size, name), [])):>26}"
                # per round: the fastest contender that does the job, over ours (>1: we win)
                for turn, mine in enumerate(ours):
                    fit = [figures[(mode, frame, size, name)][turn] for name in others
                           if not unfit(name, mode)]
                    if fit:
                        best_ratio.append(min(fit) / mine)
                row += f"{spread(best_ratio, '.2f') + 'x':>26}"
                print(row)
        note = ("engine.wire does not refuse NaN (reference only); model = protocol.encode + "
                "find_non_finite" if mode == "client" else
                "_fastjson cannot relay NaN (reference only); model = protocol.encode alone, "
                "which would write NaN as null")
        print(f"* {note}")


def refusal_cost(sizes: list[str], rounds: int, round_ms: float) -> None:
    """What ``allow_nan=False`` adds to ``invoke_text``, for both payload kinds."""
    print("\nrefusal cost: invoke_text allow_nan=False minus allow_nan=True, CPU us per frame "
          "(median of rounds) and share of the encode")
    print(f"{'size':<7}{'payload':<44}{'encode':>12}{'check':>12}{'share':>9}")
    for plain, label in ((True, "no null, N or I in the text"),
                         (False, "names with N and I, a null, a nested list")):
        for size in sizes:
            value = payload(size, plain)

            def relay(data: Any = value) -> str:
                return frame_text.invoke_text(FUNCTION, data, invocation_id=IID)

            def refuse(data: Any = value) -> str:
                return frame_text.invoke_text(FUNCTION, data, invocation_id=IID,
                                              allow_nan=False)

            calls = calibrate(relay, value, round_ms)
            base: list[float] = []
            diff: list[float] = []
            for _ in range(rounds):
                a = per_call_us(relay, value, calls)
                b = per_call_us(refuse, value, calls)
                base.append(a)
                diff.append(b - a)
            share = median(diff) / median(base) * 100
            print(f"{size:<7}{label:<44}{median(base):>12.2f}{median(diff):>12.2f}"
                  f"{share:>8.0f}%")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help="of " + ",".join(SIZES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-ms", type=float, default=25.0,
                        help="CPU milliseconds per contender and round")
    args = parser.parse_args(argv)
    sizes = [size for size in args.sizes.split(",") if size]
    unknown = set(sizes) - set(SIZES)
    if unknown:
        parser.error(f"unknown sizes {sorted(unknown)}")
    for size in sizes:
        print(f"payload {size}: {len(frame_text.dumps(payload(size)))} bytes of JSON")
    figures = measure(sizes, args.rounds, args.round_ms, plain=False)
    report(figures, sizes)
    refusal_cost(sizes, args.rounds, args.round_ms)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""A long fuzz run over iii_rx's decoders, the engine's frame handler, its REST parser and the
client: hypothesis at scale, every failure shrunk and kept in ``tests/fuzz/corpus/``.

Usage (from the repository root)::

    OTEL_ENABLED=false .venv/bin/python tests/fuzz/run_fuzz.py --seconds 600
    .venv/bin/python tests/fuzz/run_fuzz.py --seconds 120 --targets engine_frames,rest_requests
    .venv/bin/python tests/fuzz/run_fuzz.py --seconds 60 --include-known   # known defects too

It cycles through the targets (``--targets``, default all: protocol_decode, cbor_sequence,
json_lines, engine_frames, worker_port, http_responses, rest_requests, rest_envelopes,
client_frames, client_handshake), running rounds of
``--batch`` fresh random examples each, until ``--seconds`` have passed. A failing example is
shrunk by hypothesis, checked again (a failure that does not reproduce is reported as flaky,
not kept), and written to ``corpus/<target>/<hash>.json``; ``test_fuzz_corpus.py`` replays
every file there as a regression test. The checks are the ones the pytest properties use
(``fuzz_targets.py``), on one embedded engine and one fake-engine client for the whole run.

Everything stays on 127.0.0.1: the loopback guard refuses (and counts as a failure) any other
connection or name lookup, and fuzzed HTTP-invoked function URLs are loopback by construction.
With ``--include-known`` the inputs of defects already reported are generated and tolerated
nowhere; what it keeps is marked ``"strict": true`` (replayed without tolerances). A kept
input fails the suite's replay until its defect is fixed, or until it is marked with
``"xfail": "<defect>"`` once reported (see test_known_defects.py).
Exit status: 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0,
                        help="how long to fuzz (default 300)")
    parser.add_argument("--targets", default="all",
                        help="comma-separated targets, or 'all' (default)")
    parser.add_argument("--batch", type=int, default=200,
                        help="examples per round of one target (default 200)")
    parser.add_argument("--include-known", action="store_true",
                        help="also generate inputs of defects already reported")
    parser.add_argument("--no-save", action="store_true",
                        help="report failures without writing them to the corpus")
    parser.add_argument("--no-shrink", action="store_true",
                        help="keep failing inputs as found (shrinking a slow target's "
                             "failure can take minutes)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed")
    return parser.parse_args(argv)


def make_property(target: str, check: Callable[[list[Any]], None], counts: dict[str, int],
                  last: list[list[Any]]) -> Callable[[list[Any]], None]:
    """The property of one round: run ``check``, remember the input that failed last (after
    shrinking, hypothesis replays the minimal failing example last)."""

    def prop(msgs: list[Any]) -> None:
        counts[target] += 1
        try:
            check(msgs)
        except BaseException:
            last[:] = [msgs]
            raise

    return prop


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OTEL_ENABLED", "false")
    if args.include_known:
        os.environ["III_FUZZ_INCLUDE_KNOWN"] = "1"
    # Imported after the environment is set: the strategies read it at import time.
    import fuzz_strategies as fs
    from fuzz_support import LoopbackGuard, LoopThread, Msg, save_corpus_input
    from fuzz_targets import (
        CLIENT_CHECKS,
        ENGINE_CHECKS,
        LOOP_CHECKS,
        PURE_CHECKS,
        TARGETS,
        ClientEnv,
        EngineEnv,
        envelope_messages,
    )
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis import strategies as st
    from hypothesis.errors import HypothesisWarning, InvalidArgument

    # The engine and client run on another thread while examples are drawn; their use of
    # ``random`` (reconnect jitter) is not the strategies', and big reprs are expected here.
    warnings.simplefilter("ignore", HypothesisWarning)

    targets = list(TARGETS) if args.targets == "all" else args.targets.split(",")
    unknown = set(targets) - set(TARGETS)
    if unknown:
        print(f"unknown target(s): {sorted(unknown)}; known: {', '.join(TARGETS)}")
        return 2

    def chunked(pair: tuple[bytes, list[int]]) -> list[Msg]:
        from fuzz_support import iter_chunks

        return [Msg(c) for c in iter_chunks(pair[0], pair[1])]

    def frames(strategy: Any) -> Any:
        return strategy.map(lambda fl: [Msg(fs.dumps(f)) for f in fl])

    strategies: dict[str, Any] = {
        "protocol_decode": st.lists(fs.messages, min_size=1, max_size=4),
        "cbor_sequence": st.tuples(fs.cbor_streams, fs.cuts).map(chunked),
        "json_lines": st.tuples(fs.jsonl_streams, fs.cuts).map(chunked),
        "engine_frames": st.one_of(
            fs.message_batches,
            frames(st.lists(fs.frame_dicts(), min_size=1, max_size=10)
                   .map(lambda fl: [fs.REGISTER_WORKER, *fl])),
            frames(fs.http_function_batches()),
        ),
        "worker_port": fs.worker_port_requests().map(lambda r: [Msg(r)]),
        "http_responses": fs.http_responses().map(lambda r: [Msg(r)]),
        "client_handshake": fs.message_batches,
        "rest_requests": fs.http_requests().map(lambda r: [Msg(r)]),
        "rest_envelopes": st.tuples(fs.envelopes, st.sampled_from(["GET", "POST", "HEAD"]))
        .map(lambda pair: envelope_messages(*pair)),
        "client_frames": st.one_of(fs.message_batches, frames(st.lists(
            fs.frame_dicts(["invokefunction", "invocationresult", "registertrigger",
                            "unregistertrigger", "triggerregistrationresult",
                            "registrationrejected", "error", "ping"]),
            min_size=1, max_size=8))),
    }

    guard = LoopbackGuard()
    guard.install()
    logging.getLogger().setLevel(logging.WARNING)
    # A root handler, so Python's last-resort handler does not print every dropped frame.
    logging.getLogger().addHandler(logging.NullHandler())
    loop = LoopThread()
    engine_env: EngineEnv | None = None
    client_env: ClientEnv | None = None

    def runner(target: str) -> Callable[[list[Msg]], None]:
        nonlocal engine_env, client_env
        if target in PURE_CHECKS:
            return PURE_CHECKS[target]
        if target in LOOP_CHECKS:
            return lambda msgs: loop.run(LOOP_CHECKS[target](msgs), 60)
        if target in ENGINE_CHECKS:
            if engine_env is None:
                engine_env = loop.run(EngineEnv().start(), 60)
            env_e = engine_env
            return lambda msgs: loop.run(ENGINE_CHECKS[target](env_e, msgs), 60)
        if client_env is None:
            client_env = loop.run(ClientEnv().start(), 60)
        env_c = client_env
        return lambda msgs: loop.run(CLIENT_CHECKS[target](env_c, msgs), 60)

    def guarded(check: Callable[[list[Msg]], None]) -> Callable[[list[Msg]], None]:
        def run(msgs: list[Msg]) -> None:
            before = len(guard.violations)
            check(msgs)
            assert len(guard.violations) == before, \
                f"non-loopback attempt: {guard.violations[before:]}"
        return run

    deadline = time.monotonic() + args.seconds
    counts = dict.fromkeys(targets, 0)
    saved: list[Path] = []
    flaky: list[str] = []
    failed = False
    round_no = 0
    try:
        while time.monotonic() < deadline:
            target = targets[round_no % len(targets)]
            round_no += 1
            check = guarded(runner(target))
            last: list[list[Msg]] = []
            prop = make_property(target, check, counts, last)
            test = settings(max_examples=args.batch, deadline=None, database=None,
                            derandomize=False, suppress_health_check=list(HealthCheck),
                            phases=[Phase.generate] if args.no_shrink
                            else [Phase.generate, Phase.shrink], report_multiple_bugs=False,
                            print_blob=False)(given(strategies[target])(prop))
            if args.seed is not None:
                test = seed(args.seed + round_no)(test)
            try:
                test()
            except InvalidArgument:
                raise
            except Exception as exc:
                failed = True
                minimal = last[0] if last else None
                summary = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                print(f"[{target}] FAILED: {summary}")
                if minimal is None:
                    traceback.print_exc()
                    continue
                try:
                    check(minimal)
                except BaseException as again:
                    note = f"{type(again).__name__}: {again}"[:500]
                    if args.no_save:
                        print(f"  input: {minimal!r:.600}")
                    else:
                        path, new = save_corpus_input(target, minimal, note=note,
                                                      strict=args.include_known)
                        if new:
                            saved.append(path)
                        print(f"  {'kept' if new else 'already in'} "
                              f"{path.relative_to(HERE.parent.parent)}")
                else:
                    flaky.append(f"{target}: {summary}")
                    print(f"  did not reproduce (flaky), not kept: {minimal!r:.300}")
            remaining = deadline - time.monotonic()
            print(f"round {round_no} {target}: {counts[target]} examples so far, "
                  f"{max(0, remaining):.0f} s left", flush=True)
    finally:
        if engine_env is not None:
            loop.run(engine_env.stop(), 60)
        if client_env is not None:
            loop.run(client_env.stop(), 60)
        loop.close()
        guard.uninstall()
    print("\nexamples per target:", ", ".join(f"{t} {n}" for t, n in counts.items()))
    print(f"kept {len(saved)} failing input(s)" + (":" if saved else ""))
    for path in saved:
        print(f"  {path}")
    if flaky:
        print("flaky (not kept):", *flaky, sep="\n  ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

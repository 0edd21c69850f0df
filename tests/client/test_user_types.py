"""The public API as a user's type checker sees it: user code, checked with ``mypy --strict``.

One mypy run checks ``USER_CODE``: a line ending in ``# E: text`` must get an error holding
``text`` (wrong code a precise type catches), a line ending in ``# R: type`` must reveal
``type``, and no other line may get an error (correct code, as the docs write it, checks).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

USER_CODE = '''\
import math
from collections.abc import AsyncIterator
from typing import Any

from reactivex import Observable
from reactivex import operators as ops

import iii_rx
import iii_rx.compat
from iii_rx.operators import retry_backoff, retrying


async def piping(iii: iii_rx.Client) -> None:
    doubled = await iii.trigger("math::add", {"a": 1}).pipe(ops.map(lambda r: r["sum"] * 2))
    print(doubled)
    iii.trigger("math::add").pipe(ops.retry(2), ops.timeout(5.0), ops.default_if_empty(0))
    iii.trigger("math::add").pipe(lambda source: 42)  # E: incompatible type
    reveal_type(iii.trigger("math::add").pipe(ops.take(1)))  # R: iii_rx.single.Single[Any]
    await iii.trigger("flaky::call").pipe(retry_backoff(max_attempts=math.inf))


async def pages() -> AsyncIterator[int]:
    yield 1


def retried() -> None:
    forever = retrying(pages, max_attempts=math.inf)
    reveal_type(forever)  # R: iii_rx.operators.aio.AsyncStream[int]


def calling(iii: iii_rx.Client, request: iii_rx.compat.TriggerRequest) -> None:
    iii.trigger({"function_id": "math::add", "payload": {"a": 1}}).result()
    iii.trigger(request).result()
    iii.trigger(42).result()  # E: incompatible type "int"


def binding(iii: iii_rx.Client, given: iii_rx.compat.RegisterTriggerInput) -> None:
    iii.register_trigger({"type": "http", "function_id": "a::b", "config": {}})
    iii.register_trigger(type="cron", function_id="a::b", config={"expression": "* * * * *"})
    iii.register_trigger(given)
    iii.register_trigger("http")  # E: incompatible type "str"


def registering(iii: iii_rx.Client) -> None:
    iii.register_function("a::sync", lambda data: data)
    iii.register_function("a::meta", lambda data, metadata: (data, metadata))
    iii.register_function("a::http", iii_rx.HttpInvocationConfig("https://pay.example/charge"))
    iii.register_function("a::dict", {"url": "https://pay.example/charge"})
    iii.register_function("a::typo", "a::sync")  # E: incompatible type "str"


def answering(iii: iii_rx.Client) -> None:
    iii.function("text::upper").subscribe(lambda inv: inv.reply(inv.data["text"].upper()))
    iii.function("text::upper").subscribe(lambda inv: inv.fail("no"), print, lambda: None)
    iii.function("text::upper").subscribe(lambda inv: inv.data.nope, scheduler=None)
    iii.function("text::upper").subscribe(lambda inv: inv.nope)  # E: has no attribute "nope"
    iii.invocations.subscribe(lambda inv: inv.abandon())
    iii.topology_changes.subscribe(lambda change: change.kind == "x" and print(change))


def forwarding(iii: iii_rx.Client, inv: iii_rx.Invocation) -> None:
    iii.trigger("a::b", inv.data).subscribe(inv.reply, inv.fail, lambda: print("done"))
    iii.trigger("a::b", inv.data).subscribe(inv.reply, lambda: None)  # E: incompatible type


async def traced() -> None:
    async with iii_rx.connect(otel=True) as iii:
        iii.spans.subscribe(lambda span: print(span.name, span.status.status_code))
        reveal_type(iii.spans)  # R: iii_rx.streams.HotStream[opentelemetry.sdk.trace.ReadableSpan]
'''


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    """mypy's messages on ``USER_CODE``, by line."""
    path = tmp_path_factory.mktemp("user-types") / "user_code.py"
    path.write_text(USER_CODE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file", "",
         "--hide-error-context", "--no-error-summary", str(path)],
        capture_output=True, text=True, env=env, cwd=path.parent, timeout=300)
    messages: dict[int, list[str]] = {}
    for line in run.stdout.splitlines():
        found = re.match(r".*?:(\d+): (.*)", line)
        assert found, f"unexpected mypy output: {line}\n{run.stdout}{run.stderr}"
        messages.setdefault(int(found.group(1)), []).append(found.group(2))
    return messages


def _marked(marker: str) -> list[tuple[int, str]]:
    return [(n, line.split(marker, 1)[1].strip())
            for n, line in enumerate(USER_CODE.splitlines(), start=1) if marker in line]


def test_correct_user_code_checks(checked: dict[int, list[str]]) -> None:
    expected = {n for n, _ in _marked("# E:") + _marked("# R:")}
    wrong = {n: m for n, m in checked.items() if n not in expected}
    lines = USER_CODE.splitlines()
    assert not wrong, "\n".join(f"{lines[n - 1].strip()}\n    {m}" for n, m in wrong.items())


@pytest.mark.parametrize(("line", "text"), _marked("# E:"))
def test_wrong_user_code_fails(checked: dict[int, list[str]], line: int, text: str) -> None:
    errors = [m for m in checked.get(line, []) if m.startswith("error:")]
    assert any(text in m for m in errors), f"{USER_CODE.splitlines()[line - 1]}\n{errors}"


@pytest.mark.parametrize(("line", "text"), _marked("# R:"))
def test_types_are_revealed(checked: dict[int, list[str]], line: int, text: str) -> None:
    notes = [m for m in checked.get(line, []) if m.startswith("note: Revealed type")]
    assert notes == [f'note: Revealed type is "{text}"'], USER_CODE.splitlines()[line - 1]

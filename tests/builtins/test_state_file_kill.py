"""State in the sqlite file survives a SIGKILL of the engine process (``--state-file``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from builtins_helpers import WAIT, EngineProcess, unique

import iii_rx
from iii_rx.kv import KV, Op

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def processes() -> Iterator[list[EngineProcess]]:
    started: list[EngineProcess] = []
    yield started
    for process in started:
        process.stop()


def test_answered_writes_survive_a_kill(tmp_path: Path, processes: list[EngineProcess]) -> None:
    from iii import InitOptions, register_worker

    state_file = tmp_path / "data" / "state.db"
    first = EngineProcess(state_file.parent, "--state-file", str(state_file))
    processes.append(first)
    writer: Any = register_worker(first.url, InitOptions(
        worker_name=unique("writer"), otel={"enabled": False}, enable_metrics_reporting=False))
    try:
        for i in range(50):
            writer.trigger({"function_id": "state::set",
                            "payload": {"scope": "orders", "key": f"o{i}", "value": {"n": i}}})
        writer.trigger({"function_id": "state::delete", "payload": {"scope": "orders",
                                                                    "key": "o0"}})
        last = writer.trigger({"function_id": "state::update", "payload": {
            "scope": "counters", "key": "hits",
            "ops": [{"type": "increment", "path": "total", "by": 7}]}})
        assert last["new_value"] == {"total": 7}
        first.kill()  # right after the last answer: nothing may be lost
    finally:
        writer.shutdown()

    second = EngineProcess(state_file.parent, "--state-file", str(state_file))
    processes.append(second)
    with iii_rx.connect_sync(second.url, name=unique("reader")) as reader:
        kv = KV(reader)  # iii.kv once the client exposes it
        assert kv.values("orders").result(WAIT) == [{"n": i} for i in range(1, 50)]
        assert kv.get("counters", "hits").result(WAIT) == {"total": 7}
        assert kv.update("counters", "hits", Op.increment("total")).result(WAIT)[
            "new_value"] == {"total": 8}
        assert sorted(kv.scopes().result(WAIT)) == ["counters", "orders"]

"""The state adapters' contract, for the in-memory one and the sqlite file."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from iii_rx.engine.workers import MemoryStateAdapter, SqliteStateAdapter, StateAdapter
from iii_rx.engine.workers._common import MISSING


@pytest.fixture(params=["memory", "sqlite"])
async def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateAdapter]:
    store: StateAdapter = (MemoryStateAdapter() if request.param == "memory"
                           else SqliteStateAdapter(tmp_path / "sub" / "state.db"))
    await store.open()
    yield store
    await store.close()


async def test_set_get_delete_tell_absent_from_null(adapter: StateAdapter) -> None:
    assert await adapter.get("s", "k") is MISSING
    assert await adapter.set("s", "k", None) is MISSING
    assert await adapter.get("s", "k") is None
    assert await adapter.set("s", "k", {"a": [1, "é", None]}) is None
    assert await adapter.get("s", "k") == {"a": [1, "é", None]}
    assert await adapter.delete("s", "k") == {"a": [1, "é", None]}
    assert await adapter.delete("s", "k") is MISSING
    assert await adapter.get("s", "k") is MISSING


async def test_scopes_are_isolated_and_keep_first_write_order(adapter: StateAdapter) -> None:
    for key in ("b", "a", "c"):
        await adapter.set("one", key, key.upper())
    await adapter.set("two", "a", 1)
    await adapter.set("one", "b", "B2")  # rewriting keeps the place
    await adapter.delete("one", "a")
    await adapter.set("one", "a", "A2")  # deleted and written again: last
    assert await adapter.values("one") == ["B2", "C", "A2"]
    assert await adapter.values("two") == [1]
    assert await adapter.values("none") == []
    assert sorted(await adapter.list_groups()) == ["one", "two"]
    await adapter.delete("two", "a")
    assert await adapter.list_groups() == ["one"]


async def test_update_reads_mutates_and_writes_once(adapter: StateAdapter) -> None:
    seen: list[Any] = []

    def bump(old: Any) -> Any:
        seen.append(old)
        return {"n": (0 if old is MISSING else old["n"]) + 1}

    assert await adapter.update("s", "k", bump) == (MISSING, {"n": 1})
    assert await adapter.update("s", "k", bump) == ({"n": 1}, {"n": 2})
    assert seen == [MISSING, {"n": 1}]
    assert await adapter.get("s", "k") == {"n": 2}


async def test_stored_values_cannot_be_changed_from_outside(adapter: StateAdapter) -> None:
    value = {"list": [1]}
    await adapter.set("s", "k", value)
    value["list"].append(2)
    got = await adapter.get("s", "k")
    got["list"].append(3)
    assert await adapter.get("s", "k") == {"list": [1]}


async def test_odd_json_round_trips(adapter: StateAdapter) -> None:
    await adapter.set("s", "nan", math.inf)
    await adapter.set("s", "lone", "\ud800 surrogate")
    await adapter.set("s", "big", 2**70)
    assert await adapter.get("s", "nan") == math.inf
    assert await adapter.get("s", "lone") == "\ud800 surrogate"
    assert await adapter.get("s", "big") == 2**70


async def test_sqlite_file_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SqliteStateAdapter(path)
    await first.open()
    await first.set("s", "k", {"v": 1})
    await first.update("s", "j", lambda old: [old is MISSING])
    await first.close()
    second = SqliteStateAdapter(path, synchronous="FULL")
    await second.open()
    assert await second.values("s") == [{"v": 1}, [True]]
    await second.close()


def test_sqlite_refuses_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteStateAdapter(tmp_path / "x.db", table="state; drop")
    with pytest.raises(ValueError):
        SqliteStateAdapter(tmp_path / "x.db", synchronous="OFF")  # type: ignore[arg-type]

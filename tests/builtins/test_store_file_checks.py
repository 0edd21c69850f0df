"""What the state, stream and queue files refuse at open: a file they could open but not use
stops the engine at start with a :class:`StoreFileError` naming it, instead of an engine that
starts and then fails calls (or answers from a part of the data)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from iii_rx.engine.workers import SqliteQueueAdapter, SqliteStateAdapter, SqliteStreamAdapter
from iii_rx.engine.workers.queues_store import Message
from iii_rx.engine.workers.sqlite_common import StoreFileError

Adapter = SqliteStateAdapter | SqliteStreamAdapter | SqliteQueueAdapter
Kind = type[Adapter]
ADAPTERS: list[Kind] = [SqliteStateAdapter, SqliteStreamAdapter, SqliteQueueAdapter]


async def fill(adapter: Adapter, rows: int) -> None:
    """``rows`` rows of about 200 bytes in the adapter's table."""
    pad = "x" * 200
    for i in range(rows):
        if isinstance(adapter, SqliteStateAdapter):
            await adapter.set("scope", f"k{i}", pad)
        elif isinstance(adapter, SqliteStreamAdapter):
            await adapter.set("stream", "group", f"k{i}", pad)
        else:
            adapter.push("q", Message("f", "default", pad), 10**6)


@pytest.mark.parametrize("kind", ADAPTERS, ids=lambda kind: kind.what)
async def test_a_damaged_page_stops_the_open(tmp_path: Path, kind: Kind) -> None:
    """One page of the file overwritten (a bad disk, a partial copy): sqlite opens the file
    and fails only the calls that read that page, so the engine started and answered part
    of the data."""
    path = tmp_path / "data.db"
    adapter = kind(path)
    await adapter.open()
    await fill(adapter, 400)
    await adapter.close()
    pages = path.stat().st_size // 4096
    assert pages > 10
    with path.open("r+b") as f:  # a leaf page in the middle of the table
        f.seek(4096 * (pages // 2))
        f.write(bytes(range(256)) * 16)
    damaged = kind(path)
    with pytest.raises(StoreFileError, match=f"^{path}: .*damaged") as refused:
        await damaged.open()
    assert "\n" not in str(refused.value)  # the command's error is one line


@pytest.mark.parametrize("kind", ADAPTERS, ids=lambda kind: kind.what)
async def test_a_table_of_other_columns_stops_the_open(tmp_path: Path, kind: Kind) -> None:
    """A file whose table of our name has other columns (another program's file, another
    version's layout): ``CREATE TABLE IF NOT EXISTS`` kept it, the engine started and every
    call failed with "no such column" (the queue file: a traceback at start)."""
    path = tmp_path / "other.db"
    table = kind(path).table
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, payload BLOB)")
    db.execute(f"INSERT INTO {table} (payload) VALUES (x'00ff')")
    db.commit()
    db.close()
    with pytest.raises(StoreFileError, match=f"^{path}: its table {table} has the columns "
                       r"\(id INTEGER, payload BLOB\), not the ones"):
        await kind(path).open()
    assert sqlite3.connect(path).execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (1,)


def unprivileged(fn: Callable[[], str]) -> str:
    """``fn()`` as a user without root's right to write any file: in a forked child as
    ``nobody`` when the tests run as root, else here."""
    if os.geteuid() != 0:
        return fn()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return to pytest from here
        status = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, fn().encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    assert os.waitpid(pid, 0)[1] == 0, text
    return text


def test_a_file_the_engine_may_not_write_stops_the_open() -> None:
    """A file of ours made read-only (or on a read-only mount): sqlite opens it read-only
    without an error, so the engine started and failed every write with "attempt to write a
    readonly database"."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        home.chmod(0o777)  # nobody may create the -wal and -shm files: only the file is read-only
        path = home / "state.db"

        async def make() -> None:
            adapter = SqliteStateAdapter(path)
            await adapter.open()
            await adapter.set("scope", "k", 1)
            await adapter.close()

        async def reopen() -> str:
            try:
                await SqliteStateAdapter(path).open()
            except StoreFileError as exc:
                return str(exc)
            return "opened"

        asyncio.run(make())
        path.chmod(0o444)
        refused = unprivileged(lambda: asyncio.run(reopen()))
        assert refused.startswith(f"{path}: ") and "readonly" in refused, refused


@pytest.mark.parametrize("kind", ADAPTERS, ids=lambda kind: kind.what)
async def test_a_directory_is_named_as_one(tmp_path: Path, kind: Kind) -> None:
    """The Rust engine's ``file_based`` kv adapter keeps a directory at ``file_path``: a
    config file both engines ran with pointed ours at that directory, and sqlite's "unable
    to open database file" did not say what was wrong."""
    rust_store = tmp_path / "state_store"
    rust_store.mkdir()
    (rust_store / "orders.bin").write_bytes(b"\x00rkyv")
    with pytest.raises(StoreFileError, match=f"^{rust_store}: a directory, not a file"):
        await kind(rust_store).open()

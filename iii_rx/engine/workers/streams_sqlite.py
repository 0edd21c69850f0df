"""A stream adapter in one sqlite file: stream items survive restarts and kills.

``Engine(stream_file="streams.db")`` / ``iii-rx engine --stream-file streams.db`` select it
(the Rust engine's ``kv`` adapter with ``store_method: file_based``). Every write is committed
before the function answers (:mod:`~iii_rx.engine.workers.sqlite_common`); items are JSON text
in a table ``streams (stream, grp, item, value)`` whose rowid keeps a group's first-write order.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from iii_rx.engine.workers._common import MISSING
from iii_rx.engine.workers.sqlite_common import (
    SqliteFile,
    Synchronous,
    dump,
    transaction,
)
from iii_rx.engine.workers.streams_store import Mutate

__all__ = ["SqliteStreamAdapter"]

log = logging.getLogger("iii_rx.engine.workers")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    stream TEXT NOT NULL,
    grp TEXT NOT NULL,
    item TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (stream, grp, item)
);
"""


class SqliteStreamAdapter(SqliteFile):
    """Stream items in the sqlite file ``path`` (created with its directory if missing)."""

    what = "stream"

    def __init__(self, path: str | os.PathLike[str], *, table: str = "streams",
                 synchronous: Synchronous = "NORMAL", busy_timeout_ms: int = 5000) -> None:
        super().__init__(path, table=table, synchronous=synchronous,
                         busy_timeout_ms=busy_timeout_ms)

    async def open(self) -> None:
        if self._open_file(_SCHEMA):
            log.info("stream items are kept in %s", self.path)

    def _read(self, stream: str, group: str, item: str) -> Any:
        row = self._conn.execute(
            f"SELECT value FROM {self.table} WHERE stream = ? AND grp = ? AND item = ?",
            (stream, group, item)).fetchone()
        return MISSING if row is None else json.loads(row[0])

    def _write(self, stream: str, group: str, item: str, text: str) -> None:
        self._conn.execute(
            f"INSERT INTO {self.table} (stream, grp, item, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (stream, grp, item) DO UPDATE SET value = excluded.value",
            (stream, group, item, text))

    async def get(self, stream: str, group: str, item: str) -> Any:
        return self._read(stream, group, item)

    async def set(self, stream: str, group: str, item: str, value: Any) -> Any:
        text = dump(value)
        with transaction(self._conn, self.path):
            old = self._read(stream, group, item)
            self._write(stream, group, item, text)
        return old

    async def delete(self, stream: str, group: str, item: str) -> Any:
        with transaction(self._conn, self.path):
            old = self._read(stream, group, item)
            if old is not MISSING:
                self._conn.execute(
                    f"DELETE FROM {self.table} WHERE stream = ? AND grp = ? AND item = ?",
                    (stream, group, item))
        return old

    async def update(self, stream: str, group: str, item: str,
                     mutate: Mutate) -> tuple[Any, Any]:
        with transaction(self._conn, self.path):
            old = self._read(stream, group, item)
            new = mutate(old)
            self._write(stream, group, item, dump(new))
        return old, new

    async def items(self, stream: str, group: str) -> list[Any]:
        rows = self._conn.execute(
            f"SELECT value FROM {self.table} WHERE stream = ? AND grp = ? ORDER BY rowid",
            (stream, group))
        return [json.loads(text) for (text,) in rows]

    async def groups(self, stream: str) -> list[str]:
        rows = self._conn.execute(
            f"SELECT grp FROM {self.table} WHERE stream = ? GROUP BY grp ORDER BY MIN(rowid)",
            (stream,))
        return [group for (group,) in rows]

    async def streams(self) -> dict[str, list[str]]:
        rows = self._conn.execute(
            f"SELECT stream, grp FROM {self.table} GROUP BY stream, grp ORDER BY MIN(rowid)")
        found: dict[str, list[str]] = {}
        for stream, group in rows:
            found.setdefault(stream, []).append(group)
        return found

"""A state adapter in one sqlite file (standard library ``sqlite3``): survives restarts and kills.

``Engine(state_file="state.db")`` / ``iii-rx engine --state-file state.db`` select it. Every
write is committed before the function answers (durability and ``synchronous``:
:mod:`~iii_rx.engine.workers.sqlite_common`). Several engines may open the same file:
:meth:`update` holds the write lock from its read to its write.

Values are stored as JSON text (``NaN`` and lone surrogates included, escaped), in a table
``state (scope, key, value)`` whose rowid keeps the first-write order of a scope's keys.
Calls are synchronous on the engine's loop; each is a few tens of microseconds on a local
disk, so the adapter is ``inline``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, ClassVar

from iii_rx.engine.workers._common import MISSING
from iii_rx.engine.workers.sqlite_common import (
    SqliteFile,
    Synchronous,
    dump,
    transaction,
)
from iii_rx.engine.workers.state_store import Mutate

__all__ = ["SqliteStateAdapter"]

log = logging.getLogger("iii_rx.engine.workers")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (scope, key)
)
"""


class SqliteStateAdapter(SqliteFile):
    """State in the sqlite file ``path`` (created with its directory if missing).

    ``table`` lets another worker keep its own values in the same file.
    """

    inline: ClassVar[bool] = True
    what = "state"

    def __init__(self, path: str | os.PathLike[str], *, table: str = "state",
                 synchronous: Synchronous = "NORMAL", busy_timeout_ms: int = 5000) -> None:
        super().__init__(path, table=table, synchronous=synchronous,
                         busy_timeout_ms=busy_timeout_ms)

    async def open(self) -> None:
        if self._open_file(_SCHEMA):
            log.info("state is kept in %s", self.path)

    def _read(self, scope: str, key: str) -> Any:
        row = self._conn.execute(f"SELECT value FROM {self.table} WHERE scope = ? AND key = ?",
                                 (scope, key)).fetchone()
        return MISSING if row is None else json.loads(row[0])

    def _write(self, scope: str, key: str, text: str) -> None:
        self._conn.execute(
            f"INSERT INTO {self.table} (scope, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value",
            (scope, key, text))

    async def get(self, scope: str, key: str) -> Any:
        return self._read(scope, key)

    async def set(self, scope: str, key: str, value: Any) -> Any:
        text = dump(value)  # before the transaction: a value that cannot be stored fails here
        with transaction(self._conn, self.path):
            old = self._read(scope, key)
            self._write(scope, key, text)
        return old

    async def delete(self, scope: str, key: str) -> Any:
        with transaction(self._conn, self.path):
            old = self._read(scope, key)
            if old is not MISSING:
                self._conn.execute(f"DELETE FROM {self.table} WHERE scope = ? AND key = ?",
                                   (scope, key))
        return old

    async def update(self, scope: str, key: str, mutate: Mutate) -> tuple[Any, Any]:
        with transaction(self._conn, self.path):
            old = self._read(scope, key)
            new = mutate(old)
            self._write(scope, key, dump(new))
        return old, new

    async def values(self, scope: str) -> list[Any]:
        rows = self._conn.execute(
            f"SELECT value FROM {self.table} WHERE scope = ? ORDER BY rowid", (scope,))
        return [json.loads(text) for (text,) in rows]

    async def list_groups(self) -> list[str]:
        rows = self._conn.execute(f"SELECT DISTINCT scope FROM {self.table}")
        return [scope for (scope,) in rows]


"""What the sqlite adapters of the built-in workers share (standard library ``sqlite3``).

Each adapter (state, streams, queues) keeps its rows in one file, opened by :func:`open_db`
in WAL mode with every write its own committed transaction (:class:`transaction`) before the
function answers: a write that was answered is in the file even if the engine process is
killed right after (``SIGKILL`` included). ``synchronous="NORMAL"`` (the default) leaves the
last transactions to the operating system's cache, so a power cut may lose them; ``"FULL"``
syncs every commit to disk (slower). Values are JSON text (:func:`dump`).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Literal

__all__ = ["Synchronous", "check_options", "dump", "open_db", "transaction"]

Synchronous = Literal["NORMAL", "FULL"]


def check_options(table: str, synchronous: str) -> None:
    """Refuse a table name that is not an identifier and an unknown ``synchronous``."""
    if not table.isidentifier():
        raise ValueError(f"invalid table name {table!r}")
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError("synchronous must be 'NORMAL' or 'FULL'")


def open_db(path: Path, schema: str, *, synchronous: Synchronous,
            busy_timeout_ms: int) -> sqlite3.Connection:
    """The file ``path`` (created with its directory if missing) with ``schema`` applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db


def dump(value: Any) -> str:
    """``value`` as compact JSON text (``NaN`` and lone surrogates included, escaped)."""
    return json.dumps(value, separators=(",", ":"))


class transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): one write, all or nothing."""

    __slots__ = ("db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

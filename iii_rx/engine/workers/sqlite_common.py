"""What the sqlite adapters of the built-in workers share (standard library ``sqlite3``).

Each adapter (state, streams, queues) keeps its rows in one file, opened by :func:`open_db`
in WAL mode with every write its own committed transaction (:class:`transaction`) before the
function answers: a write that was answered is in the file even if the engine process is
killed right after (``SIGKILL`` included). ``synchronous="NORMAL"`` (the default) leaves the
last transactions to the operating system's cache, so a power cut may lose them; ``"FULL"``
syncs every commit to disk (slower). A damaged file (a page sqlite cannot read) is refused at
open, which reads every page once, and so is a table of our name with other columns and a
file the engine may not write. Values are JSON text (:func:`dump`). :class:`SqliteFile` is
the file handling the adapters share: the options, open, close and the open connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, Literal

from iii_rx.engine.logsafe import RateLimitedLog

__all__ = ["SqliteFile", "StoreFileError", "Synchronous", "check_options", "dump", "open_db",
           "transaction"]

Synchronous = Literal["NORMAL", "FULL"]

_failures = RateLimitedLog(logging.getLogger("iii_rx.engine.workers"))
"""The lines of writes a file refuses (a caller can make one per call while the disk is full)."""


def check_options(table: str, synchronous: str) -> None:
    """Refuse a table name that is not an identifier and an unknown ``synchronous``."""
    if not table.isidentifier():
        raise ValueError(f"invalid table name {table!r}")
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError("synchronous must be 'NORMAL' or 'FULL'")


class StoreFileError(OSError):
    """A state, stream or queue file that cannot be opened as an sqlite database (a
    directory, another kind of file, a damaged one, a path that cannot be created): the
    message names it, where sqlite's own error ("unable to open database file") does not."""


def open_db(path: Path, schema: str, *, synchronous: Synchronous,
            busy_timeout_ms: int, exclusive: bool = False) -> sqlite3.Connection:
    """The file ``path`` (created with its directory if missing) with ``schema`` applied;
    :class:`StoreFileError` if it cannot be. ``exclusive``: this connection keeps the file
    locked until it closes, so that a second engine (or any other program) cannot open it."""
    if path.is_dir():
        raise StoreFileError(f"{path}: a directory, not a file (the Rust engine's file_based kv "
                             "adapter keeps a directory of its own format at file_path); give "
                             "this engine the path of an sqlite file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise StoreFileError(f"{path}: cannot open it as an sqlite file: {exc}") from exc
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        if exclusive:  # held from the first write below (the schema's) until close
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
        # sqlite reads a page only when a call needs it: a damaged one would fail those calls
        # (and answer the others) in an engine that started; a read of every page refuses it.
        problem = " ".join(str(db.execute("PRAGMA quick_check(1)").fetchone()[0]).split())
        if problem != "ok":
            raise StoreFileError(f"{path}: the sqlite file is damaged ({problem}); restore it "
                                 "from a backup or salvage its rows with sqlite3's .recover")
        _check_columns(db, path, schema)
        db.executescript(schema)
        # sqlite opens a file it may not write read-only, without an error, and every write
        # would fail in an engine that started: rewriting the header's user_version (as it
        # is) asks for write access now.
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        db.execute(f"PRAGMA user_version = {version}")
    except sqlite3.Error as exc:
        db.close()
        if exclusive and "database is locked" in str(exc):  # SQLITE_BUSY (3.10 has no code)
            raise StoreFileError(f"{path}: another program holds it (another engine started "
                                 "on the same file?); one engine at a time may use it") from exc
        raise StoreFileError(f"{path}: cannot use it as an sqlite file: {exc}") from exc
    except BaseException:
        db.close()
        raise
    return db


def _columns(db: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    return [(name, kind) for _cid, name, kind, *_rest in db.execute(f"PRAGMA table_info({table})")]


def _check_columns(db: sqlite3.Connection, path: Path, schema: str) -> None:
    """Refuse a file with a table of a name ``schema`` creates but other columns: ``CREATE
    TABLE IF NOT EXISTS`` would keep it, and every call would fail with "no such column" in
    an engine that started (a file of another program, or of another version)."""
    expected = sqlite3.connect(":memory:")
    try:
        expected.executescript(schema)
        tables = [name for (name,) in expected.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            want, have = _columns(expected, table), _columns(db, table)
            if have and have != want:  # no columns: no such table yet
                raise StoreFileError(
                    f"{path}: its table {table} has the columns "
                    f"({', '.join(f'{n} {k}'.strip() for n, k in have)}), not the ones this "
                    f"iii_rx keeps there ({', '.join(f'{n} {k}' for n, k in want)}): a file of "
                    "another program or version; point the engine at another path")
    finally:
        expected.close()


def dump(value: Any) -> str:
    """``value`` as compact JSON text (``NaN`` and lone surrogates included, escaped)."""
    return json.dumps(value, separators=(",", ":"))


class transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): one write, all or nothing.

    A write the file ``path`` refuses (a full disk, an I/O error, a lock held too long) is
    logged and raised as :class:`StoreFileError` naming the file: sqlite's own message ("disk
    I/O error") names none, and the caller's error was the only trace of it."""

    __slots__ = ("db", "path")

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db = db
        self.path = path

    def __enter__(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._refused(exc) from exc

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 *rest: object) -> None:
        try:
            if exc_type is None:
                self.db.execute("COMMIT")
            elif self.db.in_transaction:  # sqlite rolls back by itself after some errors
                self.db.execute("ROLLBACK")
        except sqlite3.Error as failed:
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            raise self._refused(failed) from failed
        if isinstance(exc, sqlite3.Error):
            raise self._refused(exc) from exc

    def _refused(self, exc: sqlite3.Error) -> StoreFileError:
        _failures.log(logging.ERROR, "write", "%s: cannot write it: %s", self.path, exc)
        return StoreFileError(f"{self.path}: cannot write it: {exc}")


class SqliteFile:
    """The sqlite file of one adapter: ``table`` in ``path`` (created with its directory if
    missing), opened by :meth:`_open_file` and closed by :meth:`close`."""

    what = "sqlite"
    """What the adapter keeps, for the error of a use before :meth:`open`."""
    exclusive = False
    """Whether the file is locked while open (see :func:`open_db`)."""

    def __init__(self, path: str | os.PathLike[str], *, table: str, synchronous: Synchronous,
                 busy_timeout_ms: int) -> None:
        check_options(table, synchronous)
        self.path = Path(path)
        self.table = table
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._db: sqlite3.Connection | None = None

    def _open_file(self, schema: str) -> bool:
        """Open the file with ``schema`` (``{table}`` filled in); ``False`` if already open."""
        if self._db is not None:
            return False
        self._db = open_db(self.path, schema.format(table=self.table),
                           synchronous=self.synchronous, busy_timeout_ms=self.busy_timeout_ms,
                           exclusive=self.exclusive)
        return True

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"the sqlite {self.what} adapter is not open")
        return self._db

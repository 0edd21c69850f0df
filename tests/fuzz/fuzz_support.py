"""Plumbing of the fuzz tests: a loop thread, the loopback guard, a log watch, the corpus.

Shared by the pytest modules of ``tests/fuzz`` and by ``run_fuzz.py`` (which imports this
directory by path), so nothing here depends on pytest.

* :class:`LoopThread` runs the engines, fake engines, clients and raw sockets of a test module
  on one asyncio loop in a daemon thread; a check is ``loop.run(coro, timeout)``, and a check
  that does not finish within its bound is a hang (an ``AssertionError``).
* :class:`LoopbackGuard` refuses every connection and name lookup beyond 127.0.0.1 in every
  thread, and remembers each attempt so that a test fails even when the code that tried it
  swallowed the error (the engine turns a failed HTTP call into an error result).
* :class:`LogWatch` collects log records; a record that carries a traceback is a defect.
* :class:`Msg` is one websocket message (text or binary) or one chunk of bytes; corpus files
  store lists of them as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import errno
import hashlib
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

HERE = Path(__file__).resolve().parent
CORPUS_DIR = HERE / "corpus"

LOOPBACK = "127.0.0.1"

RUN_TIMEOUT = 60.0
"""Bound of one example's check on the loop thread (a hang fails the example)."""


# ----------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Msg:
    """One websocket message (``text`` or ``binary``), or one chunk of a byte stream."""

    data: str | bytes

    @property
    def is_text(self) -> bool:
        return isinstance(self.data, str)

    def to_json(self) -> dict[str, str]:
        if isinstance(self.data, str):
            return {"text": self.data}
        return {"binary": base64.b64encode(self.data).decode("ascii")}

    @classmethod
    def from_json(cls, value: dict[str, str]) -> Msg:
        if "text" in value:
            return cls(value["text"])
        return cls(base64.b64decode(value["binary"]))

    def as_bytes(self) -> bytes:
        return self.data.encode("utf-8", "surrogatepass") if isinstance(self.data, str) \
            else self.data

    def __repr__(self) -> str:
        kind = "text" if self.is_text else "binary"
        shown = self.data if len(self.data) <= 200 else self.data[:200]
        more = "" if len(self.data) <= 200 else f"...(+{len(self.data) - 200})"
        return f"Msg.{kind}({shown!r}{more})"


def text(value: str) -> Msg:
    return Msg(value)


def binary(value: bytes) -> Msg:
    return Msg(bytes(value))


# ----------------------------------------------------------------------------- corpus


def corpus_files(target: str | None = None) -> list[Path]:
    """Every kept input (of ``target``, or of all targets), in a stable order."""
    root = CORPUS_DIR if target is None else CORPUS_DIR / target
    if not root.exists():
        return []
    return sorted(root.rglob("*.json"))


def load_corpus_file(path: Path) -> dict[str, Any]:
    entry = json.loads(path.read_text(encoding="utf-8"))
    entry["messages"] = [Msg.from_json(m) for m in entry["messages"]]
    entry.setdefault("target", path.parent.name)
    return entry


def save_corpus_input(target: str, messages: Iterable[Msg], *, note: str,
                      xfail: str | None = None, strict: bool = False) -> tuple[Path, bool]:
    """Keep a failing input as ``corpus/<target>/<hash>.json``.

    Returns the path and whether the file is new. ``strict``: the input fails only when the
    checks tolerate no known defect (found with ``--include-known``); ``xfail``: the defect
    it shows is reported and not fixed yet (the replay expects it to fail).
    """
    encoded = [m.to_json() for m in messages]
    digest = hashlib.sha256(json.dumps(encoded, sort_keys=True).encode()).hexdigest()[:16]
    directory = CORPUS_DIR / target
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{digest}.json"
    entry: dict[str, Any] = {"target": target, "note": note}
    if xfail:
        entry["xfail"] = xfail
    if strict:
        entry["strict"] = True
    entry["messages"] = encoded
    if path.exists():
        return path, False
    path.write_text(json.dumps(entry, indent=1, ensure_ascii=True) + "\n", encoding="utf-8")
    return path, True


# ----------------------------------------------------------------------------- loop thread


class LoopThread:
    """An asyncio loop in a daemon thread; ``run(coro, timeout)`` from any other thread."""

    def __init__(self, name: str = "iii-fuzz-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the loop; a run longer than ``timeout`` seconds is a hang."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise AssertionError(f"hang: no outcome within {timeout} s") from None

    def close(self) -> None:
        async def cancel_rest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        if self.loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(cancel_rest(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self.loop.close()


# ----------------------------------------------------------------------------- loopback guard


def is_loopback_literal(host: Any) -> bool:
    """Whether ``host`` is a literal address in 127.0.0.0/8 (or ::1 / mapped 127.x)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class LoopbackGuard:
    """Refuse (and record) every connection or lookup that is not to a loopback address.

    Patches ``socket.socket.connect``/``connect_ex``, ``socket.create_connection`` and
    ``socket.getaddrinfo``: asyncio's ``create_connection``/``sock_connect`` and aiohttp's
    resolver go through them, in every thread. ``install()``/``uninstall()`` or ``with``.
    """

    def __init__(self) -> None:
        self.violations: list[str] = []
        self._saved: list[tuple[Any, str, Any]] = []

    def _refuse(self, what: str) -> None:
        self.violations.append(what)

    def install(self) -> None:
        if self._saved:
            return
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex
        real_getaddrinfo = socket.getaddrinfo
        real_create_connection = socket.create_connection
        guard = self

        def check(address: Any) -> None:
            if isinstance(address, tuple) and not is_loopback_literal(address[0]):
                guard._refuse(f"connect to {address!r}")
                raise OSError(errno.ENETUNREACH, f"fuzz guard: {address[0]} is not loopback")

        def connect(self: socket.socket, address: Any) -> None:
            check(address)
            real_connect(self, address)

        def connect_ex(self: socket.socket, address: Any) -> int:
            check(address)
            return real_connect_ex(self, address)

        def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
            check(address)
            return real_create_connection(address, *args, **kwargs)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            # ``None`` is a passive (bind) lookup; servers here bind 127.0.0.1 anyway.
            if host is not None and not is_loopback_literal(host):
                guard._refuse(f"name lookup of {host!r}")
                raise socket.gaierror(socket.EAI_NONAME, f"fuzz guard: no lookup of {host!r}")
            return real_getaddrinfo(host, *args, **kwargs)

        for owner, name, new in ((socket.socket, "connect", connect),
                                 (socket.socket, "connect_ex", connect_ex),
                                 (socket, "create_connection", create_connection),
                                 (socket, "getaddrinfo", getaddrinfo)):
            self._saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, new)

    def uninstall(self) -> None:
        saved, self._saved = self._saved, []
        for owner, name, old in reversed(saved):
            setattr(owner, name, old)

    def __enter__(self) -> LoopbackGuard:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


# ----------------------------------------------------------------------------- log watch


class LogWatch(logging.Handler):
    """Collects every record that reaches the root logger while installed.

    A record with a traceback (``exc_info``) means an exception reached a catch-all handler:
    the input was not handled as bad input but crashed some code path.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.records.append(record)

    def __enter__(self) -> LogWatch:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)

    def tracebacks(self, known: Callable[[logging.LogRecord], bool] | None = None) -> list[str]:
        """Records that carry a traceback, except those ``known`` says are known defects."""
        with self._lock2:
            records = list(self.records)
        found = []
        for record in records:
            if known is not None and known(record):
                continue
            if record.exc_info or record.stack_info or "Traceback" in record.getMessage():
                error = record.exc_info[1] if record.exc_info else None
                found.append(f"{record.name}: {record.getMessage()[:300]} "
                             f"[{type(error).__name__ if error else ''}: {error}]")
        return found

    def assert_no_tracebacks(self, what: str = "",
                             known: Callable[[logging.LogRecord], bool] | None = None) -> None:
        found = self.tracebacks(known)
        assert not found, f"traceback(s) logged{' ' + what if what else ''}: {found}"


def iter_chunks(data: bytes, cuts: Iterable[int]) -> Iterator[bytes]:
    """``data`` cut at the given offsets (sorted, deduplicated, clipped)."""
    start = 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}):
        yield data[start:cut]
        start = cut
    yield data[start:]

"""What changes inside a Jupyter (IPython) kernel: cells are run again.

A notebook user re-runs a cell expecting what the cell does to replace what its previous run
did, as redefining a Python function does. Two calls would otherwise keep the previous run's
effect alive: ``connect_sync()`` (a second client, and a second embedded engine, next to the
first one's loop thread, which nothing references any more) and ``register_function`` (the id
is taken). This module tells the client which cell is running, so that :mod:`iii_rx.connect`
can close the client an earlier run of the same cell opened, and so that
:class:`~iii_rx.registrations.Registrations` lets a handler replace the one an earlier run of
the same cell registered under its id. Outside IPython every function here returns
``None``/``False`` at the cost of a ``sys.modules`` lookup.

:class:`LiveView` is a display any thread can update in place: the client's streams emit on
its loop thread, in the context of the cell that subscribed, and an update sent in that
context belongs to that (long finished) cell for the kernel, so front ends that follow the
messages of the running cell only (nbclient, nbconvert) drop it.
"""

from __future__ import annotations

import contextvars
import importlib
import sys
import threading
import warnings
import weakref
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

__all__ = ["Cell", "CellClients", "LiveView", "cell_clients", "current_cell", "in_kernel"]


def _shell() -> Any:
    """The running IPython shell, or ``None`` (IPython not imported, or no shell)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        return ipython.get_ipython()
    except Exception:
        return None


def in_kernel() -> bool:
    """Whether this process is an IPython shell (a Jupyter kernel, or IPython in a terminal)
    and the caller runs on the thread that runs its cells."""
    return _shell() is not None and threading.current_thread() is threading.main_thread()


@dataclass(frozen=True)
class Cell:
    """The notebook cell a call came from, and which run of it."""

    key: str
    """The cell's id when the front end sends one (JupyterLab, Notebook 7), else the file name
    IPython compiled the cell under (derived from its text: an unchanged cell keeps it)."""
    execution: int
    """The shell's execution count: one value per run of a cell."""


def current_cell(depth: int = 2) -> Cell | None:
    """The cell the caller's code runs in (looking ``depth`` frames up and further), or
    ``None`` outside a kernel's cell (a script, another thread, a background task)."""
    shell = _shell()
    if shell is None or threading.current_thread() is not threading.main_thread():
        return None
    user_ns = getattr(shell, "user_ns", None)
    frame: FrameType | None = sys._getframe(depth)
    while frame is not None and not (frame.f_globals is user_ns
                                     and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return None
    key = _cell_id(shell) or frame.f_code.co_filename
    return Cell(key, int(getattr(shell, "execution_count", 0)))


def _cell_id(shell: Any) -> str | None:
    try:
        cell_id = shell.kernel.get_parent()["metadata"].get("cellId")
    except Exception:
        return None
    return cell_id if isinstance(cell_id, str) and cell_id else None


class Closable(Protocol):
    @property
    def closed(self) -> bool: ...

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str: ...


class CellClients:
    """The open clients of this process by the cell that connected them (weakly held)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_cell: dict[str, tuple[int, weakref.ref[Any]]] = {}

    def previous(self, cell: Cell) -> Any | None:
        """The open client an *earlier run* of ``cell`` connected, forgotten from now on
        (``None`` if none: a loop in one run may open several clients on purpose)."""
        with self._lock:
            entry = self._by_cell.get(cell.key)
            if entry is None or entry[0] == cell.execution:
                return None
            del self._by_cell[cell.key]
        client = entry[1]()
        if client is None or client.closed:
            return None
        return client

    def remember(self, cell: Cell, client: Closable) -> None:
        """``client`` was connected by ``cell``."""
        with self._lock:
            self._by_cell[cell.key] = (cell.execution, weakref.ref(client))

    @staticmethod
    def warn_replacing(client: Closable, how: str) -> None:
        warnings.warn(
            f"{how} ran again in this cell: closing the client its earlier run opened (worker "
            f"{client.name!r} at {client.url}) so that no engine or loop thread is left "
            "behind. To keep one client across re-runs, connect in a cell you run once.",
            UserWarning, stacklevel=3)


cell_clients = CellClients()
"""The registry of this process (used by ``connect_sync()`` and ``await connect()``)."""


class LiveView:
    """A notebook display that any thread may update in place (IPython display handles).

    ``view = LiveView(HTML("..."))`` shows the content where the cell runs;
    ``view.update(obj)`` replaces it, from any thread (an Rx subscriber on the client's loop,
    a worker thread). The update is sent outside the subscriber's context, so the kernel
    attributes it to the cell running now, as front ends that record only that cell's
    messages need. Outside IPython, the content is printed instead.
    """

    def __init__(self, content: Any = "") -> None:
        self._handle: Any = None
        if _shell() is None:
            print(content)
            return
        display: Any = importlib.import_module("IPython.display").display
        self._handle = display(content, display_id=True)

    def update(self, content: Any) -> None:
        """Show ``content`` in place of what the view shows now."""
        if self._handle is None:
            print(content)
            return
        contextvars.Context().run(self._handle.update, content)

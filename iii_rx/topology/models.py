"""Immutable rows of the engine's topology and the :class:`Topology` snapshot holding them.

Each row is one entry of a discovery function's answer (``docs/topology.md`` lists them):
:class:`WorkerInfo` (``engine::workers::list``), :class:`FunctionInfo`
(``engine::functions::list``), :class:`TriggerTypeInfo` (``engine::triggers::list``) and
:class:`RegisteredTrigger` (``engine::registered-triggers::list``). Fields docs/protocol.md names
are attributes; anything else an engine adds (metrics, a namespace on binding rows, ...) is kept in
``extra`` so that nothing the engine says is lost and nothing breaks when it says less.
Rows are parsed leniently: the Rust engine and ours differ in what they omit, and a row that
cannot be read at all is dropped with a warning rather than failing the whole snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, ClassVar, TypeVar

from iii_rx.topology._frozen import FrozenDict, freeze, freeze_mapping, thaw

__all__ = [
    "DEFAULT_NAMESPACE",
    "FunctionInfo",
    "RegisteredTrigger",
    "RowCache",
    "Topology",
    "TriggerTypeInfo",
    "WorkerInfo",
]

log = logging.getLogger("iii_rx.topology")

DEFAULT_NAMESPACE = "default"
_EMPTY = FrozenDict()


def _no_extra() -> FrozenDict:
    """The default ``extra``: one shared empty mapping. A factory, not ``default=``: Python
    3.10's dataclasses refuse any ``dict`` instance as a default (3.11+ only unhashable ones),
    and iii_rx did not import there."""
    return _EMPTY


def _str(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    return value if isinstance(value, str) else None


def _int(row: Mapping[str, Any], key: str) -> int:
    value = row.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _extra(row: Mapping[str, Any], known: Iterable[str]) -> FrozenDict:
    names = set(known)
    rest = {k: v for k, v in row.items() if k not in names}
    return freeze_mapping(rest) if rest else _EMPTY


R = TypeVar("R", bound="_Row")


class RowCache:
    """The rows parsed from a stream's last answers, by their raw rows: a raw row equal to
    one parsed last time gives that parsed row again. A stream polls every row each period,
    most of them unchanged; parsed again, each would be a new, equal object that every later
    comparison (the stream's, a dashboard's) has to walk. Call :meth:`done` after each
    answer set: rows that left are forgotten."""

    __slots__ = ("_next", "_rows")

    def __init__(self) -> None:
        self._rows: dict[tuple[Any, ...], tuple[Mapping[str, Any], Any]] = {}
        self._next: dict[tuple[Any, ...], tuple[Mapping[str, Any], Any]] = {}

    def parse(self, cls: type[R], row: Mapping[str, Any]) -> R | None:
        key = (cls, *(v if isinstance(v, str) else None
                      for v in (row.get("id"), row.get("function_id"), row.get("namespace"))))
        old = self._rows.get(key)
        parsed: R | None
        if old is not None and old[0] == row:
            parsed = old[1]
        else:
            parsed = cls.from_row(row)
        if parsed is not None:
            self._next[key] = (row, parsed)
        return parsed

    def done(self) -> None:
        self._rows, self._next = self._next, {}


@dataclass(frozen=True)
class _Row:
    """What every row shares: ``extra`` and a JSON form."""

    _wire: ClassVar[tuple[str, ...]] = ()
    """The protocol's field names, in the order ``to_dict`` writes them."""

    @property
    def key(self) -> Any:  # pragma: no cover - each row defines it
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The row as plain JSON, the engine's field names first, then ``extra``."""
        out = {name: thaw(getattr(self, name)) for name in self._wire}
        extra: FrozenDict = getattr(self, "extra")  # noqa: B009 - every row has it
        out.update(thaw(extra))
        return out

    @classmethod
    def parse_all(cls: type[R], rows: Any, what: str, cache: RowCache | None = None) -> list[R]:
        """Rows of an answer list; unreadable entries are logged and skipped. With ``cache``,
        a row equal to one parsed last time is that row again."""
        out: list[R] = []
        if not isinstance(rows, list):
            log.warning("discovery answer without a %s list: %r", what, type(rows).__name__)
            return out
        for row in rows:
            parsed = (None if not isinstance(row, Mapping) else cls.from_row(row)
                      if cache is None else cache.parse(cls, row))
            if parsed is None:
                log.warning("skipped an unreadable %s row: %r", what, row)
            else:
                out.append(parsed)
        return out

    @classmethod
    def from_row(cls: type[R], row: Mapping[str, Any]) -> R | None:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class WorkerInfo(_Row):
    """A connected worker (a row of ``engine::workers::list``).

    ``id`` is the engine's worker id (a UUID for socket workers, the name for the engine's
    in-process workers). ``function_count`` and ``active_invocations`` are counters read at the
    time of the snapshot, and ``connected_at_ms`` of an in-process worker changes with each
    engine restart; they change the snapshot but never make a ``WorkerUpdated``.
    """

    id: str
    name: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    runtime: str | None = None
    version: str | None = None
    os: str | None = None
    description: str | None = None
    status: str | None = None
    isolation: str | None = None
    ip_address: str | None = None
    connected_at_ms: int = 0
    function_count: int = 0
    active_invocations: int = 0
    extra: FrozenDict = field(default_factory=_no_extra, repr=False)

    _wire: ClassVar[tuple[str, ...]] = (
        "id", "name", "namespace", "runtime", "version", "os", "description", "status",
        "isolation", "ip_address", "connected_at_ms", "function_count", "active_invocations")
    VOLATILE: ClassVar[frozenset[str]] = frozenset(
        {"function_count", "active_invocations", "connected_at_ms"})
    """Fields that move with load, other rows or engine restarts; ignored when deciding
    ``WorkerUpdated``."""

    @property
    def key(self) -> str:
        return self.id

    @property
    def builtin(self) -> bool:
        """One of the engine's in-process workers (``runtime == "engine"``)."""
        return self.runtime == "engine"

    def changed_fields(self, other: WorkerInfo) -> tuple[str, ...]:
        """Descriptive fields (not :attr:`VOLATILE`, not ``extra``) that differ from
        ``other``."""
        return tuple(name for name in self._wire if name not in self.VOLATILE
                     and getattr(self, name) != getattr(other, name))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WorkerInfo | None:
        worker_id = _str(row, "id") or _str(row, "name")
        if worker_id is None:
            return None
        return cls(
            id=worker_id,
            name=_str(row, "name"),
            namespace=_str(row, "namespace") or DEFAULT_NAMESPACE,
            runtime=_str(row, "runtime"),
            version=_str(row, "version"),
            os=_str(row, "os"),
            description=_str(row, "description"),
            status=_str(row, "status"),
            isolation=_str(row, "isolation"),
            ip_address=_str(row, "ip_address"),
            connected_at_ms=_int(row, "connected_at_ms"),
            function_count=_int(row, "function_count"),
            active_invocations=_int(row, "active_invocations"),
            extra=_extra(row, cls._wire),
        )


@dataclass(frozen=True)
class FunctionInfo(_Row):
    """A registered function (a row of ``engine::functions::list``), keyed by
    ``(namespace, function_id)``; ``worker_name`` is its owner."""

    function_id: str
    namespace: str = DEFAULT_NAMESPACE
    worker_name: str | None = None
    description: str | None = None
    metadata: Any = None
    extra: FrozenDict = field(default_factory=_no_extra, repr=False)

    _wire: ClassVar[tuple[str, ...]] = (
        "function_id", "namespace", "worker_name", "description", "metadata")
    VOLATILE_EXTRA: ClassVar[frozenset[str]] = frozenset({"metrics"})
    """Keys of ``extra`` that move with load (the engine's call counters); ignored when
    deciding whether a function changed."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.function_id)

    def same_function(self, other: FunctionInfo) -> bool:
        """Whether ``other`` describes the same function: every field but the volatile
        ``extra`` keys is equal (so calls alone never remove and re-add a function)."""
        if any(getattr(self, name) != getattr(other, name) for name in self._wire):
            return False
        if self.extra == other.extra:
            return True
        mine = {k: v for k, v in self.extra.items() if k not in self.VOLATILE_EXTRA}
        theirs = {k: v for k, v in other.extra.items() if k not in self.VOLATILE_EXTRA}
        return mine == theirs

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FunctionInfo | None:
        function_id = _str(row, "function_id")
        if function_id is None:
            return None
        return cls(
            function_id=function_id,
            namespace=_str(row, "namespace") or DEFAULT_NAMESPACE,
            worker_name=_str(row, "worker_name"),
            description=_str(row, "description"),
            metadata=freeze(row.get("metadata")),
            extra=_extra(row, cls._wire),
        )


@dataclass(frozen=True)
class TriggerTypeInfo(_Row):
    """A trigger type someone provides (a row of ``engine::triggers::list``), keyed by
    ``(namespace, id)``; ``worker_name`` is the provider."""

    id: str
    namespace: str = DEFAULT_NAMESPACE
    worker_name: str | None = None
    description: str | None = None
    extra: FrozenDict = field(default_factory=_no_extra, repr=False)

    _wire: ClassVar[tuple[str, ...]] = ("id", "namespace", "worker_name", "description")

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.id)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TriggerTypeInfo | None:
        type_id = _str(row, "id")
        if type_id is None:
            return None
        return cls(
            id=type_id,
            namespace=_str(row, "namespace") or DEFAULT_NAMESPACE,
            worker_name=_str(row, "worker_name"),
            description=_str(row, "description"),
            extra=_extra(row, cls._wire),
        )


@dataclass(frozen=True)
class RegisteredTrigger(_Row):
    """A binding of a function to a trigger type (a row of
    ``engine::registered-triggers::list``), keyed by its ``id``.

    The protocol's row has no namespace; ``namespace`` is the engine's when it sends one, else
    ``None``. ``worker_name`` (the target's owner) and ``config_summary`` are derived by the
    engine; only ``trigger_type``, ``function_id`` and ``config`` identify the binding.
    """

    id: str
    trigger_type: str
    function_id: str
    worker_name: str | None = None
    config: Any = None
    config_summary: str | None = None
    namespace: str | None = None
    extra: FrozenDict = field(default_factory=_no_extra, repr=False)

    _wire: ClassVar[tuple[str, ...]] = (
        "id", "trigger_type", "function_id", "worker_name", "config", "config_summary",
        "namespace")

    @property
    def key(self) -> str:
        return self.id

    def same_binding(self, other: RegisteredTrigger) -> bool:
        """Whether ``other`` is this binding, whatever the engine derived around it."""
        return (self.trigger_type, self.function_id, self.config) == (
            other.trigger_type, other.function_id, other.config)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RegisteredTrigger | None:
        binding_id = _str(row, "id")
        trigger_type = _str(row, "trigger_type")
        function_id = _str(row, "function_id")
        if binding_id is None or trigger_type is None or function_id is None:
            return None
        return cls(
            id=binding_id,
            trigger_type=trigger_type,
            function_id=function_id,
            worker_name=_str(row, "worker_name"),
            config=freeze(row.get("config")),
            config_summary=_str(row, "config_summary"),
            namespace=_str(row, "namespace"),
            extra=_extra(row, cls._wire),
        )


@dataclass(frozen=True)
class Topology:
    """One immutable snapshot of the engine: who is connected and what they provide.

    Rows are sorted (workers by name then id, the others by key), so two snapshots of the same
    engine state are equal. ``revision`` counts the snapshots a stream emitted and ``taken_at``
    is the ``time.time()`` of the answers; neither takes part in ``==``.
    """

    workers: tuple[WorkerInfo, ...] = ()
    functions: tuple[FunctionInfo, ...] = ()
    trigger_types: tuple[TriggerTypeInfo, ...] = ()
    triggers: tuple[RegisteredTrigger, ...] = ()
    revision: int = field(default=0, compare=False)
    taken_at: float = field(default=0.0, compare=False)

    @classmethod
    def of(
        cls,
        workers: Iterable[WorkerInfo] = (),
        functions: Iterable[FunctionInfo] = (),
        trigger_types: Iterable[TriggerTypeInfo] = (),
        triggers: Iterable[RegisteredTrigger] = (),
        *,
        revision: int = 0,
        taken_at: float = 0.0,
    ) -> Topology:
        """A snapshot of these rows in canonical order (the last of duplicate keys wins)."""
        return cls(
            workers=tuple(sorted({w.key: w for w in workers}.values(),
                                 key=lambda w: (w.name or w.id, w.id))),
            functions=tuple(sorted({f.key: f for f in functions}.values(),
                                   key=lambda f: f.key)),
            trigger_types=tuple(sorted({t.key: t for t in trigger_types}.values(),
                                       key=lambda t: t.key)),
            triggers=tuple(sorted({t.key: t for t in triggers}.values(),
                                  key=lambda t: (t.trigger_type, t.function_id, t.id))),
            revision=revision,
            taken_at=taken_at,
        )

    @classmethod
    def from_answers(
        cls,
        workers: Any,
        functions: Any,
        trigger_types: Any,
        triggers: Any,
        *,
        taken_at: float = 0.0,
        cache: RowCache | None = None,
    ) -> Topology:
        """A snapshot of the four discovery answers (``{"workers": [...]}``, ...); ``cache``
        (a stream's) gives rows equal to last time's as the same objects."""

        def rows(answer: Any, key: str) -> Any:
            return answer.get(key) if isinstance(answer, Mapping) else None

        snapshot = cls.of(
            WorkerInfo.parse_all(rows(workers, "workers"), "worker", cache),
            FunctionInfo.parse_all(rows(functions, "functions"), "function", cache),
            TriggerTypeInfo.parse_all(rows(trigger_types, "triggers"), "trigger type", cache),
            RegisteredTrigger.parse_all(rows(triggers, "registered_triggers"), "trigger", cache),
            taken_at=taken_at,
        )
        if cache is not None:
            cache.done()
        return snapshot

    # ------------------------------------------------------------------ lookups

    @cached_property
    def _functions(self) -> dict[tuple[str, str], FunctionInfo]:
        return {f.key: f for f in self.functions}

    @cached_property
    def _workers(self) -> dict[str, WorkerInfo]:
        return {w.id: w for w in self.workers}

    def function(self, function_id: str, namespace: str | None = None) -> FunctionInfo | None:
        """The row of ``function_id`` in ``namespace`` (``None`` = any namespace, ``default``
        first), or ``None`` when it is not registered."""
        if namespace is not None:
            return self._functions.get((namespace, function_id))
        found = self._functions.get((DEFAULT_NAMESPACE, function_id))
        if found is not None:
            return found
        return next((f for f in self.functions if f.function_id == function_id), None)

    def worker(self, worker_id: str) -> WorkerInfo | None:
        """The worker with this engine id, or ``None``."""
        return self._workers.get(worker_id)

    def functions_of(self, worker: WorkerInfo) -> tuple[FunctionInfo, ...]:
        """The functions ``worker`` owns (by name, in its namespace)."""
        return tuple(f for f in self.functions
                     if f.worker_name == worker.name and f.namespace == worker.namespace)

    def triggers_of(self, function: FunctionInfo) -> tuple[RegisteredTrigger, ...]:
        """The bindings that target ``function`` (by id; binding rows carry no namespace)."""
        return tuple(t for t in self.triggers if t.function_id == function.function_id
                     and t.namespace in (None, function.namespace))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: ``{"revision", "taken_at", "workers": [...], "functions": [...],
        "trigger_types": [...], "triggers": [...]}``."""
        return {
            "revision": self.revision,
            "taken_at": self.taken_at,
            **{f.name: [row.to_dict() for row in getattr(self, f.name)]
               for f in fields(self) if f.compare},
        }

"""The typed changes between two topology snapshots, each carrying the full row.

A consumer keyed by a row's ``key`` stays in step by applying the events in order: removals
come first (bindings, then functions, trigger types, workers), then updates, then additions
(workers, then trigger types, functions, bindings), so a row never refers to one that is not
there yet. A function or trigger type whose row changed under the same key (another owner, a
new description) is reported as removed, then added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from iii_rx.topology.models import FunctionInfo, RegisteredTrigger, TriggerTypeInfo, WorkerInfo

__all__ = [
    "FunctionAdded",
    "FunctionRemoved",
    "TopologyChange",
    "TopologyEvent",
    "TriggerAdded",
    "TriggerRemoved",
    "TriggerTypeAdded",
    "TriggerTypeRemoved",
    "WorkerConnected",
    "WorkerDisconnected",
    "WorkerUpdated",
]


@dataclass(frozen=True)
class TopologyEvent:
    """Base of the change events: ``kind`` names the event in JSON, ``row`` is its row."""

    kind: ClassVar[str] = ""

    @property
    def row(self) -> WorkerInfo | FunctionInfo | TriggerTypeInfo | RegisteredTrigger:
        raise NotImplementedError  # pragma: no cover - each event defines it

    def to_dict(self) -> dict[str, Any]:
        """``{"event": kind, <row name>: row}`` as plain JSON (one line of ``iii-rx watch``)."""
        name = _ROW_NAMES[type(self.row)]
        return {"event": self.kind, name: self.row.to_dict()}


@dataclass(frozen=True)
class WorkerConnected(TopologyEvent):
    """A worker appeared (for socket workers: once it registered, i.e. reported its pid)."""

    worker: WorkerInfo
    kind: ClassVar[str] = "worker_connected"

    @property
    def row(self) -> WorkerInfo:
        return self.worker


@dataclass(frozen=True)
class WorkerDisconnected(TopologyEvent):
    """A worker left; ``worker`` is its last known row."""

    worker: WorkerInfo
    kind: ClassVar[str] = "worker_disconnected"

    @property
    def row(self) -> WorkerInfo:
        return self.worker


@dataclass(frozen=True)
class WorkerUpdated(TopologyEvent):
    """A worker's descriptive fields changed (``changed`` names them; the fields of
    ``WorkerInfo.VOLATILE`` never make one)."""

    worker: WorkerInfo
    previous: WorkerInfo
    changed: tuple[str, ...]
    kind: ClassVar[str] = "worker_updated"

    @property
    def row(self) -> WorkerInfo:
        return self.worker

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "previous": self.previous.to_dict(),
                "changed": list(self.changed)}


@dataclass(frozen=True)
class FunctionAdded(TopologyEvent):
    """A function became callable in ``function.namespace``."""

    function: FunctionInfo
    kind: ClassVar[str] = "function_added"

    @property
    def row(self) -> FunctionInfo:
        return self.function


@dataclass(frozen=True)
class FunctionRemoved(TopologyEvent):
    """A function is no longer registered; ``function`` is its last known row."""

    function: FunctionInfo
    kind: ClassVar[str] = "function_removed"

    @property
    def row(self) -> FunctionInfo:
        return self.function


@dataclass(frozen=True)
class TriggerAdded(TopologyEvent):
    """A function was bound to a trigger type (a registered trigger appeared)."""

    trigger: RegisteredTrigger
    kind: ClassVar[str] = "trigger_added"

    @property
    def row(self) -> RegisteredTrigger:
        return self.trigger


@dataclass(frozen=True)
class TriggerRemoved(TopologyEvent):
    """A registered trigger went away; ``trigger`` is its last known row."""

    trigger: RegisteredTrigger
    kind: ClassVar[str] = "trigger_removed"

    @property
    def row(self) -> RegisteredTrigger:
        return self.trigger


@dataclass(frozen=True)
class TriggerTypeAdded(TopologyEvent):
    """A worker (or the engine) began providing a trigger type."""

    trigger_type: TriggerTypeInfo
    kind: ClassVar[str] = "trigger_type_added"

    @property
    def row(self) -> TriggerTypeInfo:
        return self.trigger_type


@dataclass(frozen=True)
class TriggerTypeRemoved(TopologyEvent):
    """A trigger type is no longer provided; ``trigger_type`` is its last known row."""

    trigger_type: TriggerTypeInfo
    kind: ClassVar[str] = "trigger_type_removed"

    @property
    def row(self) -> TriggerTypeInfo:
        return self.trigger_type


TopologyChange = (
    WorkerConnected | WorkerDisconnected | WorkerUpdated | FunctionAdded | FunctionRemoved
    | TriggerAdded | TriggerRemoved | TriggerTypeAdded | TriggerTypeRemoved
)
"""Any event of ``topology_changes``."""

_ROW_NAMES: dict[type, str] = {
    WorkerInfo: "worker",
    FunctionInfo: "function",
    RegisteredTrigger: "trigger",
    TriggerTypeInfo: "trigger_type",
}

"""The engine's topology as streams: snapshots, typed changes, and ``wait_for_function``.

``TopologyStream(client)`` is the attach point: ``.snapshots`` (immutable :class:`Topology`,
latest replayed), ``.changes`` (:data:`TopologyChange` events), ``await
.wait_for_function(id, timeout)`` and ``.wait_for_function_sync``. See ``docs/topology.md``.
"""

from iii_rx.topology._frozen import FrozenDict, thaw
from iii_rx.topology.diff import diff
from iii_rx.topology.events import (
    FunctionAdded,
    FunctionRemoved,
    TopologyChange,
    TopologyEvent,
    TriggerAdded,
    TriggerRemoved,
    TriggerTypeAdded,
    TriggerTypeRemoved,
    WorkerConnected,
    WorkerDisconnected,
    WorkerUpdated,
)
from iii_rx.topology.models import (
    FunctionInfo,
    RegisteredTrigger,
    Topology,
    TriggerTypeInfo,
    WorkerInfo,
)
from iii_rx.topology.stream import TopologyHost, TopologyStream, TopologyView

__all__ = [
    "FrozenDict",
    "FunctionAdded",
    "FunctionInfo",
    "FunctionRemoved",
    "RegisteredTrigger",
    "Topology",
    "TopologyChange",
    "TopologyEvent",
    "TopologyHost",
    "TopologyStream",
    "TopologyView",
    "TriggerAdded",
    "TriggerRemoved",
    "TriggerTypeAdded",
    "TriggerTypeInfo",
    "TriggerTypeRemoved",
    "WorkerConnected",
    "WorkerDisconnected",
    "WorkerInfo",
    "WorkerUpdated",
    "diff",
    "thaw",
]

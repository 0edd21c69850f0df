"""iii_rx: a reactive, stream-oriented Python client for the iii engine.

The engine connection is a set of observable streams; functions subscribe to their invocation
stream and ``trigger`` returns a single-value observable. ``iii_rx.engine`` holds an embedded
engine so that everything runs on one machine.

This namespace is the reactive API only, and every error of the one tree (:mod:`iii_rx.errors`).
The official SDK's names live in :mod:`iii_rx.compat` alone; no name here means something else
there. Where both APIs have a concept under one name, the reactive object is imported from its
module: ``iii_rx.channels`` (``Channel``, ``ChannelReader``, ``ChannelWriter``),
``iii_rx.context`` (``Logger``, ``current_invocation``), ``iii_rx.triggers`` (``TriggerConfig``).
"""

from __future__ import annotations

from iii_rx.client import Client
from iii_rx.connect import connect, connect_sync
from iii_rx.context import Context, get_context
from iii_rx.errors import (
    CborDecodeError,
    ChannelClosedError,
    ChannelCloseUnconfirmedError,
    ChannelError,
    EmptySingleError,
    IIIConnectionError,
    IIIError,
    IIIForbiddenError,
    IIIInvocationError,
    IIIRegistrationRejectedError,
    IIITimeoutError,
    JsonLinesDecodeError,
    LoopDeadlockError,
    NoResponseChannelError,
    PayloadTooLargeError,
    StreamOverflowError,
    TruncatedStreamError,
)
from iii_rx.functions import FunctionHandle, FunctionStream
from iii_rx.http import ApiRequest, ApiResponse, HttpInvocationConfig
from iii_rx.invocation import Invocation, TriggerAction
from iii_rx.single import Single
from iii_rx.state import ConnectionState, ReconnectConfig
from iii_rx.telemetry import OtelConfig
from iii_rx.topology import (
    FunctionAdded,
    FunctionInfo,
    FunctionRemoved,
    Topology,
    TopologyChange,
    TriggerAdded,
    TriggerRemoved,
    WorkerConnected,
    WorkerDisconnected,
    WorkerInfo,
    WorkerUpdated,
)
from iii_rx.triggers import TriggerHandle, TriggerTypeHandle

__version__ = "0.1.0"

__all__ = [
    "ApiRequest",
    "ApiResponse",
    "CborDecodeError",
    "ChannelClosedError",
    "ChannelCloseUnconfirmedError",
    "ChannelError",
    "Client",
    "ConnectionState",
    "Context",
    "EmptySingleError",
    "FunctionAdded",
    "FunctionHandle",
    "FunctionInfo",
    "FunctionRemoved",
    "FunctionStream",
    "HttpInvocationConfig",
    "IIIConnectionError",
    "IIIError",
    "IIIForbiddenError",
    "IIIInvocationError",
    "IIIRegistrationRejectedError",
    "IIITimeoutError",
    "Invocation",
    "JsonLinesDecodeError",
    "LoopDeadlockError",
    "OtelConfig",
    "NoResponseChannelError",
    "PayloadTooLargeError",
    "ReconnectConfig",
    "Single",
    "StreamOverflowError",
    "Topology",
    "TopologyChange",
    "TriggerAction",
    "TriggerAdded",
    "TriggerHandle",
    "TriggerRemoved",
    "TriggerTypeHandle",
    "TruncatedStreamError",
    "WorkerConnected",
    "WorkerDisconnected",
    "WorkerInfo",
    "WorkerUpdated",
    "__version__",
    "connect",
    "connect_sync",
    "get_context",
]

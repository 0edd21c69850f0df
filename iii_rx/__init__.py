"""iii_rx: a reactive, stream-oriented Python client for the iii engine.

The engine connection is a set of observable streams; functions subscribe to their invocation
stream and ``trigger`` returns a single-value observable. ``iii_rx.engine`` holds an embedded
engine so that everything runs on one machine.
"""

from __future__ import annotations

from iii_rx.channels import (
    Channel,
    ChannelClosedError,
    ChannelError,
    ChannelReader,
    ChannelWriter,
    TruncatedStreamError,
)
from iii_rx.client import Client
from iii_rx.compat import InitOptions, InvocationError, register_worker
from iii_rx.connect import connect, connect_sync
from iii_rx.context import Context, Logger, current_invocation, get_context
from iii_rx.errors import (
    IIIConnectionError,
    IIIError,
    IIIForbiddenError,
    IIIInvocationError,
    IIIRegistrationRejectedError,
    IIITimeoutError,
)
from iii_rx.functions import FunctionHandle, FunctionStream
from iii_rx.http import ApiRequest, ApiResponse, HttpInvocationConfig
from iii_rx.invocation import Invocation, TriggerAction
from iii_rx.single import EmptySingleError, Single
from iii_rx.state import ConnectionState, ReconnectConfig
from iii_rx.triggers import TriggerConfig, TriggerHandle, TriggerTypeHandle

__version__ = "0.1.0"

__all__ = [
    "ApiRequest",
    "ApiResponse",
    "Channel",
    "ChannelClosedError",
    "ChannelError",
    "ChannelReader",
    "ChannelWriter",
    "Client",
    "ConnectionState",
    "Context",
    "EmptySingleError",
    "FunctionHandle",
    "FunctionStream",
    "HttpInvocationConfig",
    "IIIConnectionError",
    "IIIError",
    "IIIForbiddenError",
    "IIIInvocationError",
    "IIIRegistrationRejectedError",
    "IIITimeoutError",
    "InitOptions",
    "Invocation",
    "InvocationError",
    "Logger",
    "ReconnectConfig",
    "Single",
    "TriggerAction",
    "TriggerConfig",
    "TriggerHandle",
    "TriggerTypeHandle",
    "TruncatedStreamError",
    "__version__",
    "connect",
    "connect_sync",
    "current_invocation",
    "get_context",
    "register_worker",
]

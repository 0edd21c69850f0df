"""The conventional ``iii-sdk`` API over the reactive client: switch by changing imports.

Every public name of the official SDK 0.25 that iii_rx supports is importable from here,
whichever module the official SDK keeps it in (``iii``, ``iii.helpers``, ``iii.channel``,
``iii.trigger``, ``iii.iii_types``, ``iii.state``, ``iii.stream``, ``iii_helpers.observability``,
``iii_helpers.http``, ``iii_helpers.stream``), and so
are the spellings of older releases (``get_context``, ``ApiRequest`` / ``ApiResponse``,
``on_connection_state_change``, ``iii.create_channel()`` as a method). So::

    from iii import register_worker, InitOptions        # becomes
    from iii_rx.compat import register_worker, InitOptions

    from iii.helpers import create_channel_async        # becomes
    from iii_rx.compat import create_channel_async

Only the official SDK's names live here, and each means what it means there: ``Channel``,
``ChannelReader``, ``ChannelWriter``, ``Logger``, ``TriggerConfig`` and ``current_invocation``
are the official shapes, different objects from the reactive API's namesakes (which
``iii_rx`` itself does not export, see ``docs/migration.md``). Errors are iii_rx's one tree:
``InvocationError`` *is* :class:`iii_rx.IIIInvocationError`; the typed subclasses are
imported from ``iii_rx``.

What still differs, and why, is in ``docs/migration.md``. The worker object is a thin facade:
``iii.client`` is the :class:`iii_rx.Client` underneath, for the streams and operators.
"""

from __future__ import annotations

from iii_rx.compat.channels import (
    Channel,
    ChannelDirection,
    ChannelItem,
    ChannelReader,
    ChannelWriter,
    StreamChannelRef,
    create_channel,
    create_channel_async,
    extract_channel_refs,
    is_channel_ref,
)
from iii_rx.compat.client import (
    III,
    ConnectionStateCallback,
    TriggerTypeRef,
    register_worker,
    resolve_engine_url,
)
from iii_rx.compat.errors import HandlerExit, InvocationError, RegistrationRejectedError
from iii_rx.compat.handlers import current_invocation
from iii_rx.compat.http import StreamRequest, StreamResponse, http
from iii_rx.compat.logger import Logger
from iii_rx.compat.models import (
    EnqueueResult,
    FunctionRef,
    InvocationContext,
    RegisterFunctionFormat,
    RegisterTriggerInput,
    RegisterTriggerTypeInput,
    Trigger,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerConfig,
    TriggerHandler,
    TriggerRequest,
)
from iii_rx.compat.options import (
    DEFAULT_ENGINE_URL,
    EngineFunctions,
    EngineTriggers,
    IIIConnectionState,
    InitOptions,
    OtelConfig,
    ReconnectionConfig,
    TelemetryOptions,
)
from iii_rx.compat.state import (
    IState,
    StateDeleteInput,
    StateDeleteResult,
    StateEventData,
    StateEventType,
    StateGetInput,
    StateListInput,
    StateSetInput,
    StateSetResult,
    StateUpdateInput,
    StateUpdateResult,
)
from iii_rx.compat.stream import IStream, create_stream
from iii_rx.compat.stream_models import (
    MergePath,
    StreamAuthInput,
    StreamAuthResult,
    StreamChangeEvent,
    StreamChangeEventDetail,
    StreamContext,
    StreamDeleteInput,
    StreamDeleteResult,
    StreamGetInput,
    StreamJoinLeaveEvent,
    StreamJoinLeaveTriggerConfig,
    StreamJoinResult,
    StreamListGroupsInput,
    StreamListInput,
    StreamSetInput,
    StreamSetResult,
    StreamTriggerConfig,
    StreamUpdateInput,
    StreamUpdateResult,
    UpdateAppend,
    UpdateDecrement,
    UpdateIncrement,
    UpdateMerge,
    UpdateOp,
    UpdateOpError,
    UpdateRemove,
    UpdateSet,
)
from iii_rx.context import get_context
from iii_rx.http import (
    ApiRequest,
    ApiResponse,
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthConfig,
    HttpAuthHmac,
    HttpInvocationConfig,
    HttpMethod,
)
from iii_rx.invocation import TriggerAction

IIIClient = III
"""The official SDK's protocol name of the worker client."""
HttpRequest = ApiRequest
"""``iii_helpers.http.HttpRequest``: the payload of an ``http`` trigger."""
HttpResponse = ApiResponse
"""``iii_helpers.http.HttpResponse``: accepts ``statusCode``, sends ``status_code``."""

__all__ = [
    "ApiRequest",
    "ApiResponse",
    "Channel",
    "ChannelDirection",
    "ChannelItem",
    "ChannelReader",
    "ChannelWriter",
    "ConnectionStateCallback",
    "DEFAULT_ENGINE_URL",
    "EngineFunctions",
    "EngineTriggers",
    "EnqueueResult",
    "FunctionRef",
    "HandlerExit",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthConfig",
    "HttpAuthHmac",
    "HttpInvocationConfig",
    "HttpMethod",
    "HttpRequest",
    "HttpResponse",
    "III",
    "IIIClient",
    "IIIConnectionState",
    "IState",
    "IStream",
    "InitOptions",
    "InvocationContext",
    "InvocationError",
    "Logger",
    "MergePath",
    "OtelConfig",
    "ReconnectionConfig",
    "RegisterFunctionFormat",
    "RegisterTriggerInput",
    "RegisterTriggerTypeInput",
    "RegistrationRejectedError",
    "StateDeleteInput",
    "StateDeleteResult",
    "StateEventData",
    "StateEventType",
    "StateGetInput",
    "StateListInput",
    "StateSetInput",
    "StateSetResult",
    "StateUpdateInput",
    "StateUpdateResult",
    "StreamAuthInput",
    "StreamAuthResult",
    "StreamChangeEvent",
    "StreamChangeEventDetail",
    "StreamChannelRef",
    "StreamContext",
    "StreamDeleteInput",
    "StreamDeleteResult",
    "StreamGetInput",
    "StreamJoinLeaveEvent",
    "StreamJoinLeaveTriggerConfig",
    "StreamJoinResult",
    "StreamListGroupsInput",
    "StreamListInput",
    "StreamRequest",
    "StreamResponse",
    "StreamSetInput",
    "StreamSetResult",
    "StreamTriggerConfig",
    "StreamUpdateInput",
    "StreamUpdateResult",
    "TelemetryOptions",
    "Trigger",
    "TriggerAction",
    "TriggerActionEnqueue",
    "TriggerActionVoid",
    "TriggerConfig",
    "TriggerHandler",
    "TriggerRequest",
    "TriggerTypeRef",
    "UpdateAppend",
    "UpdateDecrement",
    "UpdateIncrement",
    "UpdateMerge",
    "UpdateOp",
    "UpdateOpError",
    "UpdateRemove",
    "UpdateSet",
    "create_channel",
    "create_channel_async",
    "create_stream",
    "current_invocation",
    "extract_channel_refs",
    "get_context",
    "http",
    "is_channel_ref",
    "register_worker",
    "resolve_engine_url",
]

"""Wire frames of the iii protocol as pydantic models.

Every protocol message is one JSON object discriminated by ``type``. :func:`decode` turns the
text (or bytes) of a websocket message into one of the frame models below; :func:`encode` turns
a frame back into compact JSON.

Two rules shape these models:

* **Absent and ``null`` differ on the wire.** Encoding writes exactly the fields that were set
  when the frame was built or decoded (pydantic's ``exclude_unset``), so ``Frame(x=None)``
  sends ``"x": null`` and a frame built without ``x`` leaves it out. The ``type`` tag is
  always written. When *acting* on a frame, ``null`` means absent.
* **Decoding is lenient where the official SDKs are sloppy.** Unknown frame types decode to
  :class:`UnknownFrame` instead of raising; unknown fields are kept (and re-encoded);
  ``data`` missing from ``invokefunction`` and ``config`` missing from ``registertrigger``
  read as ``None``. A frame that is not JSON or lacks a required field raises
  :class:`FrameError`, which readers log and drop.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
)

__all__ = [
    "ApiKeyAuth",
    "BearerAuth",
    "EnqueueAction",
    "ErrorBody",
    "ErrorFrame",
    "Frame",
    "FrameError",
    "FunctionRegistered",
    "HmacAuth",
    "HttpAuth",
    "HttpInvocationRef",
    "InvocationResult",
    "InvocationsObserved",
    "InvokeFunction",
    "LocalInvocationStats",
    "Observe",
    "ObserveResult",
    "ObserverAck",
    "ObserverAdded",
    "ObserverRemoved",
    "ObserverStateChanged",
    "Ping",
    "Pong",
    "Reattach",
    "RegisterFunction",
    "RegisterService",
    "RegisterTrigger",
    "RegisterTriggerType",
    "RegistrationRejected",
    "StreamChannelRef",
    "TriggerActionBody",
    "TriggerRegistrationResult",
    "UnknownFrame",
    "UnregisterFunction",
    "UnregisterTrigger",
    "UnregisterTriggerType",
    "Unobserve",
    "VoidAction",
    "WorkerRegistered",
    "AnyFrame",
    "decode",
    "encode",
]


class FrameError(ValueError):
    """A websocket message that is not a valid protocol frame (bad JSON or failed validation)."""


class _WireModel(BaseModel):
    """Base of every wire object: keeps unknown keys and remembers which fields were set."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


# --------------------------------------------------------------------------- shared values


class ErrorBody(_WireModel):
    """``{"code", "message", "stacktrace"?}``: the error of a failed invocation.

    A malformed body (not an object, or ``code``/``message`` not strings) is coerced the way
    the official SDK reads it: code ``UNKNOWN`` and a best-effort message.
    """

    code: str
    message: str
    stacktrace: str | None = None

    @field_validator("code", mode="before")
    @classmethod
    def _code_is_text(cls, value: Any) -> Any:
        return value if isinstance(value, str) else "UNKNOWN"

    @field_validator("message", mode="before")
    @classmethod
    def _message_is_text(cls, value: Any) -> Any:
        return value if isinstance(value, str) else "<no message>"

    @field_validator("stacktrace", mode="before")
    @classmethod
    def _stacktrace_is_text(cls, value: Any) -> Any:
        return value if isinstance(value, str) else None


def _coerce_error_body(value: Any) -> Any:
    """Read any ``error`` value as an :class:`ErrorBody`, the way the official SDK does."""
    if isinstance(value, dict):
        # A missing code or message goes through ErrorBody's coercing validators too.
        return {"code": None, "message": None, **value}
    if value is None or isinstance(value, ErrorBody):
        return value
    return {"code": "UNKNOWN", "message": str(value)}


class VoidAction(_WireModel):
    """Fire and forget: the engine forwards the call and never answers."""

    type: Literal["void"] = "void"

    def model_post_init(self, context: Any, /) -> None:
        self.model_fields_set.add("type")


class EnqueueAction(_WireModel):
    """Hand the call to a queue provider; the caller gets ``{"messageReceiptId": ...}``."""

    type: Literal["enqueue"] = "enqueue"
    queue: str

    def model_post_init(self, context: Any, /) -> None:
        self.model_fields_set.add("type")


TriggerActionBody = Annotated[VoidAction | EnqueueAction, Field(discriminator="type")]


class StreamChannelRef(_WireModel):
    """One end of a channel: whoever holds a ``write`` ref writes, a ``read`` ref reads."""

    channel_id: str
    access_key: str
    direction: Literal["read", "write"]


class HmacAuth(_WireModel):
    """Sign requests with HMAC-SHA256; ``secret_key`` names an env var of the engine."""

    type: Literal["hmac"] = "hmac"
    secret_key: str

    def model_post_init(self, context: Any, /) -> None:
        self.model_fields_set.add("type")


class BearerAuth(_WireModel):
    """``Authorization: Bearer``; ``token_key`` names an env var of the engine."""

    type: Literal["bearer"] = "bearer"
    token_key: str

    def model_post_init(self, context: Any, /) -> None:
        self.model_fields_set.add("type")


class ApiKeyAuth(_WireModel):
    """A custom header; ``value_key`` names an env var of the engine."""

    type: Literal["api_key"] = "api_key"
    header: str
    value_key: str

    def model_post_init(self, context: Any, /) -> None:
        self.model_fields_set.add("type")


HttpAuth = Annotated[HmacAuth | BearerAuth | ApiKeyAuth, Field(discriminator="type")]


class HttpInvocationRef(_WireModel):
    """The ``invocation`` of an HTTP-invoked function: the engine calls ``url`` itself."""

    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] | None = None
    timeout_ms: int | None = Field(default=None, ge=0)
    headers: dict[str, str] | None = None
    auth: HttpAuth | None = None


# --------------------------------------------------------------------------- frames


class Frame(_WireModel):
    """Base of every frame; subclasses pin ``type`` to their tag."""

    type: str


class RegisterFunction(Frame):
    """W→E: register (or re-register) a function under the connection's namespace."""

    type: Literal["registerfunction"] = "registerfunction"
    id: str
    description: str | None = None
    request_format: Any = None
    response_format: Any = None
    metadata: Any = None
    invocation: HttpInvocationRef | None = None
    observe: Any = None


class UnregisterFunction(Frame):
    """W→E: remove a function this connection owns."""

    type: Literal["unregisterfunction"] = "unregisterfunction"
    id: str


class RegisterTriggerType(Frame):
    """W→E: this worker provides trigger type ``id``."""

    type: Literal["registertriggertype"] = "registertriggertype"
    id: str
    description: str | None = None
    trigger_request_format: Any = None
    call_request_format: Any = None
    namespace: str | None = None


class UnregisterTriggerType(Frame):
    """W→E: stop providing trigger type ``id`` (not understood by the 0.23 Rust engine)."""

    type: Literal["unregistertriggertype"] = "unregistertriggertype"
    id: str
    namespace: str | None = None


class RegisterTrigger(Frame):
    """Both ways: bind ``function_id`` to a trigger of ``trigger_type`` (E→W: to its provider)."""

    type: Literal["registertrigger"] = "registertrigger"
    id: str
    trigger_type: str
    function_id: str
    config: Any = None
    metadata: Any = None
    namespace: str | None = None
    trigger_namespace: str | None = None


class UnregisterTrigger(Frame):
    """Both ways: remove binding ``id``."""

    type: Literal["unregistertrigger"] = "unregistertrigger"
    id: str
    trigger_type: str | None = None


class TriggerRegistrationResult(Frame):
    """Both ways: a provider's answer to a delivered binding (``error`` when refused)."""

    type: Literal["triggerregistrationresult"] = "triggerregistrationresult"
    id: str
    trigger_type: str | None = None
    function_id: str | None = None
    error: ErrorBody | None = None

    _error_body = field_validator("error", mode="before")(_coerce_error_body)


class RegisterService(Frame):
    """W→E: grouping metadata, unused by current SDKs."""

    type: Literal["registerservice"] = "registerservice"
    id: str
    name: str | None = None
    description: str | None = None
    parent_service_id: str | None = None


class InvokeFunction(Frame):
    """Both ways: call a function (W→E) or run a handler (E→W).

    ``invocation_id`` is absent for void calls; ``data`` may be absent from the official SDKs'
    frames and then reads as ``None`` (our client always sends it).
    """

    type: Literal["invokefunction"] = "invokefunction"
    function_id: str
    data: Any = None
    invocation_id: str | None = None
    metadata: Any = None
    traceparent: str | None = None
    baggage: str | None = None
    action: TriggerActionBody | None = None
    namespace: str | None = None


class InvocationResult(Frame):
    """Both ways: the outcome of a call; ``error`` present means failure."""

    type: Literal["invocationresult"] = "invocationresult"
    invocation_id: str
    function_id: str
    result: Any = None
    error: ErrorBody | None = None
    traceparent: str | None = None
    baggage: str | None = None

    _error_body = field_validator("error", mode="before")(_coerce_error_body)


class WorkerRegistered(Frame):
    """E→W, first frame: the connection's worker id and secret reattach token."""

    type: Literal["workerregistered"] = "workerregistered"
    worker_id: str
    reattach_token: str | None = None
    features: list[str] | None = None


class RegistrationRejected(Frame):
    """E→W: a function or worker-name conflict (``WORKER_NAMESPACE_CONFLICT`` is fatal)."""

    type: Literal["registrationrejected"] = "registrationrejected"
    code: str
    namespace: str | None = None
    worker_name: str | None = None
    function_id: str | None = None
    owner_worker_id: str | None = None


class Reattach(Frame):
    """W→E, first frame of a reconnect: retire the previous connection."""

    type: Literal["reattach"] = "reattach"
    previous_worker_id: str
    reattach_token: str | None = None


class Ping(Frame):
    """Protocol-level liveness probe; the engine answers :class:`Pong`."""

    type: Literal["ping"] = "ping"


class Pong(Frame):
    """Answer to :class:`Ping`."""

    type: Literal["pong"] = "pong"


class ErrorFrame(Frame):
    """E→W handshake failure (``AUTH_ERROR``), followed by a close."""

    type: Literal["error"] = "error"
    error: ErrorBody

    _error_body = field_validator("error", mode="before")(_coerce_error_body)


# The 0.25 observe family (docs/protocol.md §3.18). Modelled with their main fields; the rest is
# kept as extra keys so that frames round-trip unchanged.


class Observe(Frame):
    """W→E (0.25): attach an observer to a function."""

    type: Literal["observe"] = "observe"
    id: str
    source: Any = None
    target: Any = None


class Unobserve(Frame):
    """W→E (0.25): dispose an observer."""

    type: Literal["unobserve"] = "unobserve"
    id: str


class ObserverAck(Frame):
    """W→E (0.25): an owner's answer to an observer hook."""

    type: Literal["observerack"] = "observerack"
    function_id: str
    id: str
    revision: int | None = None
    namespace: str | None = None
    error: ErrorBody | None = None


class InvocationsObserved(Frame):
    """W→E (0.25): a batch of locally matched invocations."""

    type: Literal["invocationsobserved"] = "invocationsobserved"
    items: list[Any] = Field(default_factory=list)


class LocalInvocationStats(Frame):
    """W→E (0.25): counters of locally dispatched calls."""

    type: Literal["localinvocationstats"] = "localinvocationstats"
    window_ms: int | None = None
    functions: list[Any] | None = None


class ObserveResult(Frame):
    """E→W (0.25): state of an observer after ``observe``."""

    type: Literal["observeresult"] = "observeresult"
    id: str
    state: str | None = None
    error: ErrorBody | None = None


class ObserverStateChanged(Frame):
    """E→W (0.25): an observer changed state."""

    type: Literal["observerstatechanged"] = "observerstatechanged"
    id: str
    state: str | None = None
    fires: int | None = None


class FunctionRegistered(Frame):
    """E→W (0.25): acknowledgement of ``registerfunction``."""

    type: Literal["functionregistered"] = "functionregistered"
    id: str
    namespace: str | None = None
    revision: int | None = None
    local_dispatch: bool | None = None


class ObserverAdded(Frame):
    """E→W (0.25): an observer was attached to one of this worker's functions."""

    type: Literal["observeradded"] = "observeradded"
    function_id: str
    namespace: str | None = None
    revision: int | None = None


class ObserverRemoved(Frame):
    """E→W (0.25): an observer was removed from one of this worker's functions."""

    type: Literal["observerremoved"] = "observerremoved"
    function_id: str
    namespace: str | None = None
    revision: int | None = None
    id: str | None = None


class UnknownFrame(Frame):
    """A frame whose ``type`` this version does not know; kept whole so nothing is lost."""


_KNOWN: tuple[type[Frame], ...] = (
    RegisterFunction,
    UnregisterFunction,
    RegisterTriggerType,
    UnregisterTriggerType,
    RegisterTrigger,
    UnregisterTrigger,
    TriggerRegistrationResult,
    RegisterService,
    InvokeFunction,
    InvocationResult,
    WorkerRegistered,
    RegistrationRejected,
    Reattach,
    Ping,
    Pong,
    ErrorFrame,
    Observe,
    Unobserve,
    ObserverAck,
    InvocationsObserved,
    LocalInvocationStats,
    ObserveResult,
    ObserverStateChanged,
    FunctionRegistered,
    ObserverAdded,
    ObserverRemoved,
)

FRAME_TYPES: dict[str, type[Frame]] = {
    model.model_fields["type"].default: model for model in _KNOWN
}


def _tag_of(value: Any) -> str:
    tag = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return tag if isinstance(tag, str) and tag in FRAME_TYPES else "unknown"


AnyFrame = Annotated[
    Union[  # noqa: UP007 (a long tagged union reads better one member a line)
        Annotated[RegisterFunction, Tag("registerfunction")],
        Annotated[UnregisterFunction, Tag("unregisterfunction")],
        Annotated[RegisterTriggerType, Tag("registertriggertype")],
        Annotated[UnregisterTriggerType, Tag("unregistertriggertype")],
        Annotated[RegisterTrigger, Tag("registertrigger")],
        Annotated[UnregisterTrigger, Tag("unregistertrigger")],
        Annotated[TriggerRegistrationResult, Tag("triggerregistrationresult")],
        Annotated[RegisterService, Tag("registerservice")],
        Annotated[InvokeFunction, Tag("invokefunction")],
        Annotated[InvocationResult, Tag("invocationresult")],
        Annotated[WorkerRegistered, Tag("workerregistered")],
        Annotated[RegistrationRejected, Tag("registrationrejected")],
        Annotated[Reattach, Tag("reattach")],
        Annotated[Ping, Tag("ping")],
        Annotated[Pong, Tag("pong")],
        Annotated[ErrorFrame, Tag("error")],
        Annotated[Observe, Tag("observe")],
        Annotated[Unobserve, Tag("unobserve")],
        Annotated[ObserverAck, Tag("observerack")],
        Annotated[InvocationsObserved, Tag("invocationsobserved")],
        Annotated[LocalInvocationStats, Tag("localinvocationstats")],
        Annotated[ObserveResult, Tag("observeresult")],
        Annotated[ObserverStateChanged, Tag("observerstatechanged")],
        Annotated[FunctionRegistered, Tag("functionregistered")],
        Annotated[ObserverAdded, Tag("observeradded")],
        Annotated[ObserverRemoved, Tag("observerremoved")],
        Annotated[UnknownFrame, Tag("unknown")],
    ],
    Discriminator(_tag_of),
]
"""The discriminated union of every frame; unknown ``type`` values select :class:`UnknownFrame`."""

_FRAME_ADAPTER: TypeAdapter[Frame] = TypeAdapter(AnyFrame)


def decode(message: str | bytes) -> Frame:
    """Parse one websocket message into its frame model.

    Raises :class:`FrameError` for text that is not a JSON object with a string ``type`` or a
    frame that lacks a required field; an unknown ``type`` is not an error.
    """
    try:
        return _FRAME_ADAPTER.validate_json(message)
    except ValidationError as exc:
        raise FrameError(_describe(exc)) from None


def decode_obj(obj: Any) -> Frame:
    """Like :func:`decode` for an already parsed JSON value."""
    try:
        return _FRAME_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise FrameError(_describe(exc)) from None


def encode(frame: Frame) -> str:
    """Compact JSON of ``frame``: the fields that were set, ``type`` always, non-ASCII as is."""
    # A frame built without naming its tag still sends it. Marking it here rather than in a
    # post-init hook keeps that hook off every decoded frame (decoded ones carry the tag).
    frame.model_fields_set.add("type")
    return frame.model_dump_json(exclude_unset=True)


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "frame"
    return f"invalid frame ({exc.error_count()} error(s)); {where}: {first['msg']}"

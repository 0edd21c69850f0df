"""Hypothesis strategies of bad input: frames, JSON, raw HTTP requests, byte streams.

The frame fields below are the protocol's (docs/engine.md, iii_rx/protocol.py), written out
here rather than read from the models so that the strategies do not change when the code
does. Every generated value is one of: a well-formed value, a value of the wrong type, a huge
string, a deeply nested structure, or garbage.

**Loopback only.** A URL is generated only as ``http://127.0.0.1:@PORT@/...``: the placeholder
is replaced by a live loopback port when the message is sent (``fuzz_targets.materialize``),
which also rewrites any HTTP-invoked function URL that is not loopback.

**Known defects are left out of the main properties** (``KNOWN_DEFECT_TRIGGERS``): an input
that triggers a defect already reported would fail those properties every run. Each such
input has its own strict-xfail test in ``test_known_defects.py``; when a defect is fixed, that
test fails (XPASS), and the filter here should be removed with it (the test then moves to
``test_defect_regressions.py``). The filters of the fixed defects D1, D3, D4, D7, D8, D9, D15
and D16 are gone: deep and lone-surrogate JSON bodies and endpoint answers, 1xx handler
statuses, control characters in handler headers and any HTTP-invoked headers are generated
again.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fuzz_support import Msg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

INCLUDE_KNOWN = os.environ.get("III_FUZZ_INCLUDE_KNOWN", "") == "1"
"""Set ``III_FUZZ_INCLUDE_KNOWN=1`` to let the strategies generate known-defect inputs too."""

KNOWN_DEFECT_TRIGGERS: dict[str, str] = {}

RANDOM = os.environ.get("III_FUZZ_RANDOM", "") == "1"
"""The suite's properties are derandomized (the same examples every run, so the suite is
stable); ``III_FUZZ_RANDOM=1`` explores new ones. ``run_fuzz.py`` always explores."""

SCALE = float(os.environ.get("III_FUZZ_SCALE", "1"))
"""Multiplies every property's example count (``III_FUZZ_SCALE=10`` for a longer run)."""


def fuzz_settings(max_examples: int) -> settings:
    """Settings of a fuzz property: no deadline (real sockets), no example database (the
    kept corpus is ``corpus/``), every health check off (inputs are slow and big on purpose)."""
    return settings(max_examples=max(1, int(max_examples * SCALE)), deadline=None,
                    derandomize=not RANDOM, database=None, print_blob=True,
                    suppress_health_check=list(HealthCheck))


PORT_PLACEHOLDER = "@PORT@"
"""Replaced by a live loopback port (the HTTP stub, the REST port, a closed port) at send."""

STUB_PORT_PLACEHOLDER = "@STUB_PORT@"
"""Replaced by the port of the loopback HTTP stub at send (for hand-written corpus inputs)."""

# ----------------------------------------------------------------------------- JSON values

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)

json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=16,
)

HUGE_SIZES = (70_000, 1_100_000, 3_000_000)
huge_strings = st.sampled_from(HUGE_SIZES).map(lambda n: "x" * n)
"""Strings of 70 kB to 3 MB (built, not drawn character by character)."""

any_json = st.one_of(json_values, json_values, json_values, huge_strings)

DEPTHS = (50, 199, 200, 201, 1_000, 100_000)

BODY_DEPTHS = (*DEPTHS, 128, 129)
"""Depths of JSON request bodies and endpoint answers: also either side of the REST API's
128-level limit (docs/http.md: deeper is answered 400 / fails ``invalid_response``)."""


def nested_text(depth: int, kind: str) -> str:
    """JSON text nested ``depth`` levels deep (arrays, or objects under key ``"a"``)."""
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "0" + "}" * depth


nested_json = st.builds(nested_text, st.sampled_from(DEPTHS), st.sampled_from(["array", "object"]))

garbage_text = st.text(max_size=200)
garbage_bytes = st.binary(max_size=200)
invalid_utf8 = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                                b"\xc0\xaf", b"\xe2\x82"])

# ----------------------------------------------------------------------------- frames

FUNCTION_IDS = [
    "fz::a", "fz::b", "fz::http", "fz::missing-owner", "", " ", "a" * 300,
    "missing::nothing-here",
    "engine::functions::list", "engine::functions::info", "engine::workers::list",
    "engine::workers::info", "engine::workers::register", "engine::triggers::list",
    "engine::triggers::info", "engine::registered-triggers::list",
    "engine::registered-triggers::info", "engine::register_trigger",
    "engine::unregister_trigger", "engine::channels::create", "engine::nope",
]
BUILTIN_FUNCTIONS = frozenset(f for f in FUNCTION_IDS if f.startswith("engine::")
                              and f != "engine::nope")
"""Engine functions: a valid sync call of one must always be answered."""

TRIGGER_TYPES = ["http", "fz-type", "engine::functions-available", "engine::workers-available",
                 "durable::subscriber", "", "cron"]
NAMESPACES = ["default", "fz", "", "  ", "x" * 300]
HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "get", "TRACE", ""]
ENV_KEYS = ["III_FUZZ_SECRET", "III_FUZZ_NOT_SET", "PATH"]
"""Auth keys of HTTP-invoked functions: the variable the fixtures set, an allowed one that is
not set, and one outside the engine's secret allowlist (``EngineEnv`` allows ``III_FUZZ_*``
only: refused with ``secret_not_allowed``)."""


def _not_reserved(value: str) -> bool:
    # Names the well-behaved workers use must never come out of the generator.
    return not value.startswith(("good", "missing::"))


ids = st.one_of(st.sampled_from(FUNCTION_IDS), st.text(max_size=30).filter(_not_reserved))
invocation_ids = st.one_of(st.uuids().map(str), st.text(max_size=20), st.sampled_from(["x", ""]))
api_paths = st.one_of(
    st.sampled_from(["fz/a", "/fz/:id", "fz/:id/:id", "/", "", ":x", "fz//b/"]),
    st.text(max_size=30).filter(_not_reserved),
).filter(lambda p: not p.lstrip("/").startswith("good"))

loopback_urls = st.builds(
    lambda path: f"http://127.0.0.1:{PORT_PLACEHOLDER}/{path}",
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/_-.~%", max_size=20),
)


def _maybe_wrong(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the well-formed value, sometimes any JSON value (a wrong type)."""
    return st.one_of(good, good, good, any_json)


auth = st.one_of(
    st.fixed_dictionaries({"type": st.just("hmac"), "secret_key": st.sampled_from(ENV_KEYS)}),
    st.fixed_dictionaries({"type": st.just("bearer"), "token_key": st.sampled_from(ENV_KEYS)}),
    st.fixed_dictionaries({"type": st.just("api_key"),
                           "header": st.one_of(st.just("X-Key"), st.just("Host"),
                                               st.text(max_size=10)),
                           "value_key": st.sampled_from(ENV_KEYS)}),
    json_values,
)

invocation_headers = st.dictionaries(
    st.one_of(st.sampled_from(["X-Fuzz", "Accept", "Host", "Content-Length", "", "a b", "X:Y",
                               "Transfer-Encoding"]), st.text(max_size=10)),
    st.one_of(st.sampled_from(["1", "é", "\x00", "a\r\nX-Injected: 1", "☃", ""]),
              st.text(max_size=10)),
    max_size=3,
)
"""Any names and values: tokens or not, control characters, the framing headers (refused at
registration with ``invalid_header``, docs/http.md)."""

invocations = st.fixed_dictionaries(
    {"url": loopback_urls},
    optional={
        "method": _maybe_wrong(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"])),
        "timeout_ms": _maybe_wrong(st.integers(min_value=-5, max_value=1500)),
        "headers": st.one_of(invocation_headers, invocation_headers, json_values),
        "auth": auth,
    },
)

http_configs = st.fixed_dictionaries(
    {"api_path": _maybe_wrong(api_paths)},
    optional={
        "http_method": _maybe_wrong(st.sampled_from(HTTP_METHODS)),
        "condition_function_id": _maybe_wrong(ids),
        "middleware_function_ids": _maybe_wrong(st.lists(ids, max_size=2)),
    },
)

actions = st.one_of(
    st.just({"type": "void"}),
    st.fixed_dictionaries({"type": st.just("enqueue"), "queue": _maybe_wrong(st.text(max_size=8))}),
    st.fixed_dictionaries({"type": st.text(max_size=8)}),
    json_values,
)

error_bodies = st.one_of(
    st.fixed_dictionaries({"code": _maybe_wrong(st.text(max_size=10)),
                           "message": _maybe_wrong(st.text(max_size=20))},
                          optional={"stacktrace": json_values}),
    json_values,
)

FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "registerfunction": {"id": ids, "description": st.text(max_size=30),
                         "request_format": json_values, "response_format": json_values,
                         "metadata": json_values, "invocation": invocations,
                         "observe": json_values},
    "unregisterfunction": {"id": ids},
    "registertriggertype": {"id": st.sampled_from(TRIGGER_TYPES) | ids,
                            "description": st.text(max_size=20),
                            "trigger_request_format": json_values,
                            "call_request_format": json_values,
                            "namespace": st.sampled_from(NAMESPACES)},
    "unregistertriggertype": {"id": st.sampled_from(TRIGGER_TYPES) | ids,
                              "namespace": st.sampled_from(NAMESPACES)},
    "registertrigger": {"id": ids, "trigger_type": st.sampled_from(TRIGGER_TYPES),
                        "function_id": ids, "config": http_configs | json_values,
                        "metadata": json_values, "namespace": st.sampled_from(NAMESPACES),
                        "trigger_namespace": st.sampled_from(NAMESPACES)},
    "unregistertrigger": {"id": ids, "trigger_type": st.sampled_from(TRIGGER_TYPES)},
    "triggerregistrationresult": {"id": ids, "trigger_type": st.sampled_from(TRIGGER_TYPES),
                                  "function_id": ids, "error": error_bodies},
    "registerservice": {"id": ids, "name": st.text(max_size=10),
                        "description": st.text(max_size=10),
                        "parent_service_id": ids},
    "invokefunction": {"function_id": ids, "data": any_json, "invocation_id": invocation_ids,
                       "metadata": json_values, "traceparent": st.text(max_size=60),
                       "baggage": st.text(max_size=30), "action": actions,
                       "namespace": st.sampled_from(NAMESPACES)},
    "invocationresult": {"invocation_id": invocation_ids, "function_id": ids,
                         "result": any_json, "error": error_bodies,
                         "traceparent": st.text(max_size=60), "baggage": st.text(max_size=30)},
    "workerregistered": {"worker_id": st.uuids().map(str), "reattach_token": st.text(max_size=10),
                         "features": st.lists(st.text(max_size=10), max_size=3)},
    "registrationrejected": {"code": st.sampled_from(["FUNCTION_NAMESPACE_CONFLICT"]),
                             "namespace": st.sampled_from(NAMESPACES),
                             "worker_name": st.text(max_size=10), "function_id": ids,
                             "owner_worker_id": st.text(max_size=10)},
    "reattach": {"previous_worker_id": st.uuids().map(str) | st.text(max_size=10),
                 "reattach_token": st.text(max_size=10)},
    "ping": {},
    "pong": {},
    "error": {"error": error_bodies},
    "observe": {"id": ids, "source": json_values, "target": json_values},
    "unobserve": {"id": ids},
    "observerack": {"function_id": ids, "id": ids, "revision": st.integers(),
                    "namespace": st.sampled_from(NAMESPACES), "error": error_bodies},
    "invocationsobserved": {"items": st.lists(json_values, max_size=3)},
    "localinvocationstats": {"window_ms": st.integers(), "functions": st.lists(json_values,
                                                                               max_size=3)},
    "observeresult": {"id": ids, "state": st.text(max_size=10), "error": error_bodies},
    "observerstatechanged": {"id": ids, "state": st.text(max_size=10), "fires": st.integers()},
    "functionregistered": {"id": ids, "namespace": st.sampled_from(NAMESPACES),
                           "revision": st.integers(), "local_dispatch": st.booleans()},
    "observeradded": {"function_id": ids, "namespace": st.sampled_from(NAMESPACES),
                      "revision": st.integers()},
    "observerremoved": {"function_id": ids, "namespace": st.sampled_from(NAMESPACES),
                        "revision": st.integers(), "id": ids},
}
FRAME_TYPES = sorted(FIELDS)


@st.composite
def frame_dicts(draw: st.DrawFn, types: list[str] | None = None) -> dict[str, Any]:
    """A frame of a known type: each field well-formed, wrong-typed, null or absent."""
    kind = draw(st.sampled_from(types or FRAME_TYPES))
    frame: dict[str, Any] = {"type": kind}
    for name, good in FIELDS[kind].items():
        choice = draw(st.integers(0, 9))
        if choice <= 5:
            frame[name] = draw(good)
        elif choice == 6:
            frame[name] = draw(any_json)
        elif choice == 7:
            frame[name] = None
        # 8, 9: absent
    if draw(st.integers(0, 5)) == 0:
        frame.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
        frame["type"] = kind
    return frame


unknown_frames = st.fixed_dictionaries(
    {"type": st.one_of(st.text(max_size=20).filter(lambda t: t not in FIELDS), json_values)},
    optional={"id": json_values, "data": json_values},
)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


REGISTER_WORKER = {"type": "invokefunction", "function_id": "engine::workers::register",
                   "data": {"name": "fuzz-worker", "runtime": "raw"},
                   "invocation_id": "register-worker"}
"""Fixes the connection's namespace at once, so later registrations apply in order."""

HTTP_FUNCTION_PREFIX = "fz::http-"
"""Ids of HTTP-invoked functions: a valid sync call of one must always be answered."""


@st.composite
def http_function_batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Register an HTTP-invoked function (loopback URL, any options), then call it."""
    function_id = HTTP_FUNCTION_PREFIX + str(draw(st.uuids()))
    register: dict[str, Any] = {"type": "registerfunction", "id": function_id,
                                "invocation": draw(invocations)}
    frames = [REGISTER_WORKER, register]
    for _ in range(draw(st.integers(1, 3))):
        frames.append({"type": "invokefunction", "function_id": function_id,
                       "data": draw(any_json), "invocation_id": str(draw(st.uuids()))})
    if draw(st.booleans()):
        frames.insert(draw(st.integers(2, len(frames))),
                      {"type": "unregisterfunction", "id": function_id})
    return frames


def _deep_frame(depth_kind: tuple[str, str]) -> str:
    nested, where = depth_kind
    if where == "top":
        return nested
    return (f'{{"type":"invokefunction","function_id":"fz::a","invocation_id":"deep",'
            f'"data":{nested}}}')


deep_frames = st.builds(_deep_frame, st.tuples(nested_json, st.sampled_from(["top", "data"])))

huge_frames = st.builds(
    lambda size, kind: dumps({"type": kind, "function_id": "fz::a", "id": "fz::huge",
                              "invocation_id": "huge", "data": "y" * size}),
    st.sampled_from(HUGE_SIZES), st.sampled_from(["invokefunction", "registerfunction"]),
)


def _as_message(value: Any, kind: str) -> Msg:
    text = value if isinstance(value, str) else dumps(value)
    return Msg(text.encode() if kind == "binary" else text)


text_or_binary = st.sampled_from(["text", "text", "text", "binary"])

messages = st.one_of(
    st.builds(_as_message, frame_dicts(), text_or_binary),
    st.builds(_as_message, frame_dicts(), text_or_binary),
    st.builds(_as_message, frame_dicts(), text_or_binary),
    st.builds(_as_message, unknown_frames, text_or_binary),
    st.builds(_as_message, json_values, text_or_binary),
    st.builds(Msg, garbage_text),
    st.builds(Msg, garbage_bytes),
    st.builds(lambda a, b, c: Msg(a + b + c), garbage_bytes, invalid_utf8, garbage_bytes),
    st.builds(lambda b: Msg(b"OTLP" + b), garbage_bytes),
    st.builds(_as_message, deep_frames, text_or_binary),
    st.builds(_as_message, huge_frames, st.just("text")),
)
"""One websocket message of any kind of bad (or good) input."""

message_batches = st.lists(messages, min_size=1, max_size=8)

# ----------------------------------------------------------------------------- HTTP requests

REST_METHODS = [b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS"]


def _http_token(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    """A JSON request body: a value, broken JSON, deep nesting, huge, or not UTF-8."""
    kind = draw(st.integers(0, 7))
    if kind <= 2:
        return dumps(draw(json_values)).encode()
    if kind == 3:
        whole = dumps(draw(json_values)).encode()
        return whole[: draw(st.integers(0, len(whole)))] + draw(garbage_bytes)
    if kind == 4:
        depth = draw(st.sampled_from((10, 100, *BODY_DEPTHS)))
        return nested_text(depth, draw(st.sampled_from(["array", "object"]))).encode()
    if kind == 5:
        return dumps({"big": draw(huge_strings)}).encode()
    if kind == 6:
        escapes = ["\\u0000", "\\n", "\\\\", "\\u00e9", "\\uffff", "\\ud83d\\ude00",
                   "\\ud800", "\\udfff", "\\udfff\\ud800"]
        parts = draw(st.lists(st.sampled_from(escapes), max_size=5))
        return ('"' + "".join(parts) + '"').encode()
    return draw(garbage_bytes) + draw(invalid_utf8)


CONTENT_TYPES = [b"application/json", b"application/json; charset=utf-8",
                 b"text/plain", b"application/octet-stream", b"APPLICATION/JSON",
                 b"multipart/form-data; boundary=x", b"", b"application/json\x00"]

header_names = st.one_of(
    st.sampled_from([b"X-Fuzz", b"Accept", b"Origin", b"Access-Control-Request-Method",
                     b"Authorization", b"Cookie", b"Expect", b"Upgrade", b"Content-Encoding",
                     b"Host", b"Content-Type", b"Content-Length", b"Transfer-Encoding"]),
    st.text(max_size=12).map(_http_token),
)
header_values = st.one_of(
    st.sampled_from([b"*", b"GET", b"gzip", b"100-continue", b"websocket", b"\xff\xfe",
                     b"a" * 9000, b"deflate", b"chunked", b"-1", b"99999999999999999999"]),
    st.text(max_size=30).map(_http_token),
    st.binary(max_size=30),
)
request_targets = st.one_of(
    st.sampled_from([b"/fz/echo", b"/fz/echo?x=1&x=2", b"/fz/items/42", b"/fz/items/%ff%fe",
                     b"/fz/items/%ED%A0%80", b"/", b"/nope", b"*", b"//fz//echo//",
                     b"/fz/echo?%ff=%fe", b"/fz/echo#frag", b"http://127.0.0.1/fz/echo",
                     b"/fz/" + b"a" * 9000, b"/fz/echo?" + b"q=1&" * 2000]),
    st.text(max_size=40).map(lambda t: b"/fz/" + _http_token(t)),
    st.binary(max_size=40),
)


@st.composite
def http_requests(draw: st.DrawFn) -> bytes:
    """One raw HTTP/1.x request to the REST port: malformed in any part, or well-formed."""
    method = draw(st.one_of(st.sampled_from(REST_METHODS), st.sampled_from(REST_METHODS),
                            st.binary(min_size=1, max_size=10)))
    target = draw(request_targets)
    version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x",
                                                        b"http/1.1", b""]))
    headers: list[tuple[bytes, bytes]] = [(b"Host", b"127.0.0.1")]
    is_json = draw(st.booleans())
    if is_json:
        json_types = [*CONTENT_TYPES[:2], CONTENT_TYPES[4]]
        headers.append((b"Content-Type", draw(st.sampled_from(json_types))))
        body = draw(json_bodies())
    else:
        headers.append((b"Content-Type", draw(st.sampled_from(CONTENT_TYPES))))
        body = draw(st.one_of(garbage_bytes, json_bodies(),
                              st.sampled_from([2**16, 2**20]).map(lambda n: b"z" * n)))
    headers += draw(st.lists(st.tuples(header_names, header_values), max_size=4))
    framing = draw(st.sampled_from(["exact", "exact", "exact", "none", "short", "long", "bad",
                                    "two", "chunked", "chunked-bad"]))
    if framing == "exact":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "short":
        headers.append((b"Content-Length", str(max(0, len(body) - 3)).encode()))
    elif framing == "long":
        headers.append((b"Content-Length", str(len(body) + 5).encode()))
    elif framing == "bad":
        headers.append((b"Content-Length", draw(st.sampled_from([b"-1", b"abc", b"1e3", b" 5",
                                                                 b"99999999999999999999"]))))
    elif framing == "two":
        headers += [(b"Content-Length", str(len(body)).encode()), (b"Content-Length", b"0")]
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    elif framing == "chunked-bad":
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = draw(st.sampled_from([b"zz\r\nab\r\n0\r\n\r\n", b"5\r\nab\r\n", b"-1\r\n\r\n",
                                     b"ffffffffffffffffff\r\nx\r\n0\r\n\r\n"])) + body
    headers.append((b"Connection", b"close"))
    head = method + b" " + target + (b" " + version if version else b"") + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"\r\n" + body


ws_paths = st.one_of(
    st.sampled_from([b"/", b"/otel", b"/ws/channels/", b"/ws/channels/x", b"/ws/channels/x?key=k",
                     b"/ws/channels/x?key=k&dir=read", b"/ws/channels/x?key=k&dir=up",
                     b"/ws/channels/%2F?key=&dir=write", b"/ws/channels/a/b?key=k&dir=read",
                     b"/?x=1", b"/nope", b"*", b"/" + b"a" * 9000,
                     b"/ws/channels/x?key=k&dir=read&dir=write&key=j"]),
    st.text(max_size=30).map(lambda t: b"/" + _http_token(t)),
    st.binary(max_size=30),
)


@st.composite
def worker_port_requests(draw: st.DrawFn) -> bytes:
    """Bytes to the websocket port: upgrade requests (well-formed or not) to any path,
    plain HTTP, or garbage."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(http_requests())
    if kind == 1:
        return draw(garbage_bytes) + b"\r\n\r\n"
    headers = [(b"Host", b"127.0.0.1"), (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
               (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
               (b"Sec-WebSocket-Version", b"13")]
    if kind == 3:  # drop, duplicate or garble some of them
        for index in sorted(draw(st.sets(st.integers(0, 4), max_size=3)), reverse=True):
            headers[index] = (headers[index][0], draw(header_values))
        headers += draw(st.lists(st.tuples(header_names, header_values), max_size=3))
    method = draw(st.sampled_from([b"GET", b"GET", b"POST", b"get"]))
    head = method + b" " + draw(ws_paths) + b" HTTP/1.1\r\n"
    return head + b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n"


@st.composite
def http_responses(draw: st.DrawFn) -> bytes:
    """The raw answer of an HTTP-invoked function's endpoint: any status, headers, framing
    and body, or garbage, or nothing."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.one_of(garbage_bytes, st.just(b""), st.just(b"HTTP/1.1 200 OK\r\n")))
    status = draw(st.one_of(st.sampled_from([b"200 OK", b"201 Created", b"204 No Content",
                                             b"301 Moved", b"304 Not Modified", b"400 Bad",
                                             b"404 Not Found", b"500 Oops", b"503 Busy",
                                             b"999 What", b"100 Continue", b"abc", b""]),
                            st.binary(max_size=12)))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"ICY"]))
    body = draw(st.one_of(json_bodies(), garbage_bytes, st.just(b"")))
    headers: list[tuple[bytes, bytes]] = [(b"Content-Type", draw(st.sampled_from(
        [b"application/json", b"application/json; charset=latin-1", b"text/plain", b"",
         b"application/octet-stream"])))]
    headers += draw(st.lists(st.tuples(
        st.one_of(st.sampled_from([b"Location", b"Content-Encoding", b"Set-Cookie",
                                   b"X-A"]), header_names),
        st.one_of(st.sampled_from([b"gzip", b"br", b"deflate", b"http://10.0.0.1/"]),
                  header_values)), max_size=3))
    framing = draw(st.sampled_from(["exact", "exact", "none", "short", "long", "bad", "chunked",
                                    "chunked-bad"]))
    if framing == "exact":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "short":
        headers.append((b"Content-Length", str(max(0, len(body) - 3)).encode()))
    elif framing == "long":
        headers.append((b"Content-Length", str(len(body) + 5).encode()))
    elif framing == "bad":
        headers.append((b"Content-Length", draw(st.sampled_from([b"-1", b"x", b"1e3"]))))
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n") if body \
            else b"0\r\n\r\n"
    elif framing == "chunked-bad":
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = b"zz\r\n" + body
    headers.append((b"Connection", b"close"))
    head = version + b" " + status + b"\r\n"
    return head + b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n" + body


# ----------------------------------------------------------------------------- envelopes


header_maps = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(["Content-Type", "X-A", "content-length",
                                               "Set-Cookie", "Location", "bad name", ""]),
                              st.text(max_size=10)),
                    st.one_of(st.sampled_from(["text/plain", "application/json", "1",
                                               "a\r\nb", "é", "\x7f", "☃", "\x00", "-5",
                                               "\x01", "a\x1fb", "\t"]),
                              st.text(max_size=12), json_values),
                    max_size=3),
    st.lists(st.one_of(st.sampled_from(["X-One: 1", "bad line", "Content-Type: text/html",
                                        "X: é", "X-B: a\x7fb"]), st.text(max_size=12),
                       json_values),
             max_size=3),
    json_values,
)


statuses = st.one_of(st.integers(min_value=-1, max_value=1000), st.sampled_from(
    [100, 101, 103, 199, 200, 204, 299, 304, 404, 500, 599, 600, 999, 1000, True]), json_values)

envelopes = st.one_of(
    st.fixed_dictionaries({}, optional={
        "status_code": statuses, "statusCode": statuses,
        "headers": header_maps, "body": any_json,
    }),
    json_values.filter(lambda v: v is not None),
)
"""A handler's result for an ``http`` trigger: the buffered envelope (docs/protocol.md §6.5.3), or
not one (never ``null``: that means "no response" and is answered 500 ``NO_RESPONSE`` by design)."""

# ----------------------------------------------------------------------------- byte streams


def cbor_items() -> st.SearchStrategy[Any]:
    """Values cbor2 encodes and decodes back to an equal value."""
    scalars = (st.none() | st.booleans() | st.integers() | st.text(max_size=30)
               | st.binary(max_size=30) | st.floats(allow_nan=False))
    return st.recursive(scalars, lambda c: st.lists(c, max_size=4)
                        | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12)


CBOR_SNIPPETS = [
    b"\x81" * 100_000 + b"\x00",                  # 100,000 nested arrays
    b"\x9f" * 1000,                              # open indefinite arrays
    b"\xff", b"\x1f", b"\x3f", b"\xdf\x00",       # breaks and reserved heads
    b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",      # a 16 EiB byte string, announced
    b"\xbb\xff\xff\xff\xff\xff\xff\xff\xff",      # a map of 2^64-1 pairs, announced
    b"\x7f\x41a\xff",                             # indefinite text with a bytes chunk
    b"\xc0\x01", b"\xc1\x61a", b"\xc2\x01", b"\xd8\x1e\x82\x01\x00", b"\xd8\x25\x41a",
    b"\xd8\x23\x61(", b"\xd8\x1d\x05", b"\xd9\x01\x04\x43abc", b"\xd9\x01\x05\x01",
    b"\xc4\x82\x1b\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\xf8\x01", b"\xd8\x19\x01",
    b"\x62\xff\xfe",                              # text that is not UTF-8
    b"\xa1\x80\x01",                              # a map keyed by an array
    b"\xd8\x1c\x81\xd8\x1d\x00",                  # a self-referencing shared value
    b"\xc1\xfb\x7f\xf0\x00\x00\x00\x00\x00\x00",  # epoch datetime of +inf
]

cbor_streams = st.one_of(
    garbage_bytes,
    st.builds(lambda a, b, c: a + b + c, garbage_bytes, st.sampled_from(CBOR_SNIPPETS),
              garbage_bytes),
    st.lists(st.sampled_from(CBOR_SNIPPETS), min_size=1, max_size=3).map(b"".join),
)

JSONL_SNIPPETS = [
    b"{bad\n", b"\xff\n", b"\"\\ud800\"\n", b"1" * 5000 + b"\n", b"\r\n", b"\n\n", b"[1,\n",
    b"NaN\n", b"-Infinity\n", b"{\"a\":1}{\"b\":2}\n", b"\"unterminated",
    nested_text(200, "array").encode() + b"\n", nested_text(100_000, "array").encode() + b"\n",
]

jsonl_streams = st.one_of(
    garbage_bytes,
    st.lists(st.one_of(st.sampled_from(JSONL_SNIPPETS),
                       json_values.map(lambda v: dumps(v).encode() + b"\n"),
                       garbage_bytes), min_size=1, max_size=5).map(b"".join),
)

cuts = st.lists(st.integers(min_value=0, max_value=300_000), max_size=6)

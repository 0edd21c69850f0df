"""Compat ``Logger``: the official SDK's records, side by side with the official ``Logger``.

Always: the same ``iii.logger`` records as the official fallback (message ``"[service] text"``,
``data``), plus the ids. On: also one OpenTelemetry log record per call with the official
attributes and the current span's (or the invocation's) ids.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import iii_helpers.observability as official
import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

from iii_rx.compat import InitOptions, Logger, register_worker
from iii_rx.engine import Engine
from iii_rx.telemetry import ids

try:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as InMemoryLogs
except ImportError:  # an older opentelemetry-sdk
    from opentelemetry.sdk._logs.export import InMemoryLogExporter as InMemoryLogs


def _records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, Any]]:
    return [(r.levelname, r.getMessage(), getattr(r, "data", None))
            for r in caplog.records if r.name == "iii.logger"]


@pytest.fixture
def otel_off() -> Iterator[None]:
    saved, ids.OTEL_LOGS[0] = ids.OTEL_LOGS[0], False
    try:
        yield
    finally:
        ids.OTEL_LOGS[0] = saved


def test_off_the_records_are_the_official_fallbacks(otel_off: None,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="iii.logger")
    for make in (official.Logger, Logger):
        make().info("x")
        make(service_name="billing").warn("careful", {"n": 1})
        make(service_name="billing").error("failed")
        make().debug("quiet", [1, 2])
    ours = _records(caplog)
    half = len(ours) // 2
    assert ours[:half] == ours[half:] == [
        ("INFO", "[] x", None), ("WARNING", "[billing] careful", {"n": 1}),
        ("ERROR", "[billing] failed", None), ("DEBUG", "[] quiet", [1, 2])]


def test_off_a_record_carries_the_ids(otel_off: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="iii.logger")
    Logger(trace_id="ab" * 16, span_id="cd" * 8).info("pinned")
    Logger().info("outside")
    pinned, outside = [r for r in caplog.records if r.name == "iii.logger"]
    assert (pinned.trace_id, pinned.span_id) == ("ab" * 16, "cd" * 8)  # type: ignore[attr-defined]
    assert (outside.trace_id, outside.span_id) == (None, None)  # type: ignore[attr-defined]


def test_off_a_handlers_record_carries_its_invocation(otel_off: None,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="iii.logger")
    with Engine.start_in_thread(namespace_grace_ms=200) as engine:
        iii = register_worker(engine.url, InitOptions(worker_name=f"log-{uuid.uuid4().hex[:6]}"))
        try:
            def handler(data: Any) -> dict[str, Any]:
                from iii_rx.compat import current_span_id, current_trace_id

                Logger(service_name="svc").info("handled", {"n": data["n"]})
                return {"trace": current_trace_id(), "span": current_span_id()}

            iii.register_function("log::handled", handler)
            for _ in range(500):
                listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
                if any(f["function_id"] == "log::handled" for f in listed["functions"]):
                    break
                time.sleep(0.01)
            ids_seen = iii.trigger({"function_id": "log::handled", "payload": {"n": 2}})
        finally:
            iii.shutdown()
    (record,) = [r for r in caplog.records if r.name == "iii.logger"]
    assert record.getMessage() == "[svc] handled" and record.data == {"n": 2}  # type: ignore[attr-defined]
    assert record.trace_id == ids_seen["trace"]  # type: ignore[attr-defined]
    assert record.span_id == ids_seen["span"]  # type: ignore[attr-defined]


@pytest.fixture
def otel_logs(otel_globals: Any) -> Iterator[Any]:
    """OpenTelemetry logs on, into memory, for this test."""
    exporter = InMemoryLogs()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    otel_globals.logger(provider)
    enabled, ids.OTEL_LOGS[0] = ids.OTEL_LOGS[0], True
    try:
        yield exporter
    finally:
        ids.OTEL_LOGS[0] = enabled


def test_on_each_call_is_one_opentelemetry_record(otel_logs: Any,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="iii.logger")
    with TracerProvider().get_tracer("t").start_as_current_span("work") as span:
        Logger(service_name="billing").warn("careful", {"n": 1})
    Logger(trace_id="ab" * 16, span_id="cd" * 8).info("pinned")
    assert _records(caplog) == [("WARNING", "[billing] careful", {"n": 1}),
                                ("INFO", "[] pinned", None)]
    first, second = (getattr(item, "log_record", item) for item in otel_logs.get_finished_logs())
    assert first.body == "careful" and first.severity_number.name == "WARN"
    assert first.attributes["service.name"] == "billing"
    assert first.attributes["log.data"] == {"n": 1}
    assert first.trace_id == span.get_span_context().trace_id
    assert first.span_id == span.get_span_context().span_id
    assert second.body == "pinned" and second.severity_number.name == "INFO"
    assert (second.trace_id, second.span_id) == (int("ab" * 16, 16), int("cd" * 8, 16))

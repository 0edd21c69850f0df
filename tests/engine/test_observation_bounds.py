"""What the engine keeps for observation (log entries, exported metrics) is bounded in bytes
as well as in count: a frame may carry up to 64 MiB, so a count alone lets peers fill memory."""

from __future__ import annotations

import json

from iii_rx.engine.workers.logs import LogsWorker
from iii_rx.engine.workers.otel import OtelWorker
from iii_rx.engine.workers.ring import Ring


def test_a_ring_drops_the_oldest_past_either_bound_and_keeps_the_newest() -> None:
    ring: Ring[int] = Ring(max_items=3, max_bytes=100)
    for i in range(5):
        ring.append(i, 10)
    assert list(ring) == [2, 3, 4] and ring.bytes == 30
    ring.append(5, 85)
    assert list(ring) == [4, 5] and ring.bytes == 95
    ring.append(6, 500)  # larger than the bound alone: kept, alone
    assert list(ring) == [6] and ring.bytes == 500
    ring.clear()
    assert not ring and len(ring) == 0 and ring.bytes == 0


def test_large_log_entries_are_bounded_in_bytes() -> None:
    logs = LogsWorker(max_logs=1000, max_logs_bytes=1_000_000)
    for i in range(20):
        logs.record("info", f"{i}" + "x" * 200_000)
    assert 1 <= len(logs.entries) <= 5
    assert logs.entries.bytes <= 1_000_000
    assert list(logs.entries)[-1]["body"].startswith("19")  # the newest kept


def _metrics_frame(description: str) -> bytes:
    metric = {"name": "big", "description": description,
              "sum": {"dataPoints": [{"asInt": "1", "timeUnixNano": "1"}]}}
    return b"MTRC" + json.dumps({"resourceMetrics": [{
        "resource": {"attributes": []},
        "scopeMetrics": [{"scope": {"name": "s"}, "metrics": [metric]}]}]}).encode()


def test_exported_metrics_are_bounded_in_bytes() -> None:
    otel = OtelWorker(max_metrics_bytes=1_000_000)
    for _ in range(20):
        otel.intake(_metrics_frame("x" * 200_000))
    assert otel.rejected == 0
    assert 1 <= len(otel.metrics) <= 5 and otel.metrics.bytes <= 1_000_000
    assert [m["name"] for m in otel.sdk_metrics({})] == ["big"] * len(otel.metrics)

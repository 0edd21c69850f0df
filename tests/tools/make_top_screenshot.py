"""Make ``docs/img/top.svg``: ``iii-rx top`` against an embedded engine under a small load.

    .venv/bin/python tests/tools/make_top_screenshot.py [OUT.svg]

Workers in two namespaces call their own functions a few at a time (so the ACTIVE column
moves), one worker comes and goes (so the change log has both kinds of lines), and the
dashboard (engine rows hidden, as with its ``e`` key) runs headlessly under textual's pilot
until it shows all of it; then textual exports the screen as SVG. Metric columns are blank
if the engine sends no metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from pathlib import Path
from typing import Any

import iii_rx
from iii_rx.engine import Engine
from iii_rx.tools.source import ClientSource
from iii_rx.tools.top import TopApp
from iii_rx.topology import TopologyStream

OUT = Path(__file__).resolve().parents[2] / "docs" / "img" / "top.svg"
SIZE = (120, 36)


def _handler(low: float, high: float) -> Any:
    async def handle(data: Any) -> dict[str, Any]:
        await asyncio.sleep(random.uniform(low, high))
        return {"ok": True}

    return handle


async def _load(client: iii_rx.Client, function_ids: list[str], stop: asyncio.Event) -> None:
    async def caller() -> None:
        while not stop.is_set():
            with contextlib.suppress(iii_rx.IIIError):
                await client.trigger(random.choice(function_ids), {"n": 1})

    await asyncio.gather(*(caller() for _ in range(3)))


async def make() -> str:
    """The dashboard's screen as SVG, once it shows the whole scene."""
    random.seed(7)
    stop = asyncio.Event()
    async with Engine(port=0, namespace_grace_ms=300, functions_available_poll_ms=50) as engine, \
            iii_rx.connect(engine.url, name="iii-rx top") as viewer:
        app = TopApp(ClientSource(viewer, TopologyStream(viewer, poll_interval=0.5)),
                     hide_engine=True)
        async with app.run_test(size=SIZE) as pilot:
            await app.wait_until(lambda: app.snapshot is not None)
            orders = await iii_rx.connect(engine.url, name="orders")
            orders.register_function("orders::place", _handler(0.05, 0.3),
                                     description="place an order")
            orders.register_function("orders::cancel", _handler(0.01, 0.05))
            orders.register_trigger({"type": "http", "function_id": "orders::place",
                                     "config": {"api_path": "orders", "http_method": "POST"}})
            inventory = await iii_rx.connect(engine.url, name="inventory", namespace="shop")
            inventory.register_function("inventory::reserve", _handler(0.02, 0.2))
            inventory.register_function("inventory::release", _handler(0.01, 0.03))
            mailer = await iii_rx.connect(engine.url, name="mailer")
            mailer.register_function("email::send", _handler(0.1, 0.2))
            mailer.register_trigger({"type": "http", "function_id": "email::send",
                                     "config": {"api_path": "email", "http_method": "POST"}})
            batch = await iii_rx.connect(engine.url, name="nightly-batch")
            batch.register_function("batch::run", _handler(0.01, 0.02))
            for client, ids in ((orders, ["orders::place", "orders::cancel"]),
                                (inventory, ["inventory::reserve", "inventory::release"])):
                for function_id in ids:
                    await client.wait_for_function(function_id, timeout=10)
            load = [asyncio.create_task(_load(orders, ["orders::place", "orders::cancel"], stop)),
                    asyncio.create_task(_load(inventory, ["inventory::reserve"], stop))]
            await app.wait_until(lambda: len(app.table_cells("workers")) >= 4)
            await batch.aclose()
            await app.wait_until(lambda: "- worker nightly-batch" in "\n".join(app.log_lines()))
            await app.wait_until(lambda: sum(int(r[5] or 0) for r in app.table_cells("workers")
                                             if r[0] in ("orders", "inventory")) >= 3)
            await pilot.pause()
            svg = app.export_screenshot(title="iii-rx top")
            stop.set()
            await asyncio.gather(*load)
            for client in (orders, inventory, mailer):
                await client.aclose()
    return svg


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(asyncio.run(make()), encoding="utf-8")
    print(f"wrote {out}")

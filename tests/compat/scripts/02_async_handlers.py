"""Async handlers, trigger_async from the caller's own event loop, concurrent calls."""

import asyncio
import os
import sys
import time

# --- iii imports ---
from iii import InitOptions, register_worker
# --- end iii imports ---

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-async"))


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


async def double(data):
    await asyncio.sleep(0.01 * (data["value"] % 3))
    return {"value": data["value"] * 2}


async def sum_of_doubles(data):
    # An async handler awaits nested calls on the SDK's loop.
    parts = await asyncio.gather(
        *(iii.trigger_async({"function_id": "math::double", "payload": {"value": v}}) for v in data["values"])
    )
    return sum(p["value"] for p in parts)


async def main() -> int:
    results = await asyncio.gather(
        *(iii.trigger_async({"function_id": "math::double", "payload": {"value": i}}) for i in range(25))
    )
    print("doubles:", [r["value"] for r in results])
    total = await iii.trigger_async({"function_id": "math::sum-doubles", "payload": {"values": [1, 2, 3, 4]}})
    print("sum of doubles:", total)
    return 0 if total == 20 else 2


try:
    iii.register_function("math::double", double)
    iii.register_function("math::sum-doubles", sum_of_doubles)
    wait_for_function("math::double")
    wait_for_function("math::sum-doubles")
    code = asyncio.run(main())
    # The blocking call works on the same functions from plain sync code too.
    print("blocking:", iii.trigger({"function_id": "math::double", "payload": {"value": 21}}))
finally:
    iii.shutdown()
sys.exit(code)

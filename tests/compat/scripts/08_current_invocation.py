"""current_invocation(), module-level and as a method: None outside handlers; inside sync and
async handlers it names the function; it survives nested calls (blocking and async)."""

import os
import sys
import time

# --- iii imports ---
import iii
from iii import InitOptions, InvocationContext
# --- end iii imports ---

worker = iii.register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-context"))


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = worker.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


def describe(ctx):
    return {
        "type ok": isinstance(ctx, InvocationContext),
        "function_id": ctx.function_id,
        "has id": isinstance(ctx.invocation_id, str) and len(ctx.invocation_id) > 0,
        "observe_depth": ctx.observe_depth,
        "activation": ctx.activation,
    }


def leaf(data):
    ctx = iii.current_invocation()
    return {"leaf": describe(ctx), "id": ctx.invocation_id}


def sync_parent(data):
    before = worker.current_invocation()
    child = worker.trigger({"function_id": "ctx::leaf", "payload": {}})
    after = iii.current_invocation()
    return {
        "parent": describe(before),
        "child": child["leaf"],
        "distinct ids": child["id"] != before.invocation_id,
        "unchanged after nested call": after == before,
    }


async def async_parent(data):
    before = iii.current_invocation()
    child = await worker.trigger_async({"function_id": "ctx::leaf", "payload": {}})
    after = worker.current_invocation()
    return {
        "parent": describe(before),
        "child": child["leaf"],
        "distinct ids": child["id"] != before.invocation_id,
        "unchanged after nested call": after == before,
    }


try:
    print("outside (module):", iii.current_invocation())
    print("outside (method):", worker.current_invocation())
    worker.register_function("ctx::leaf", leaf)
    worker.register_function("ctx::sync-parent", sync_parent)
    worker.register_function("ctx::async-parent", async_parent)
    for fid in ("ctx::leaf", "ctx::sync-parent", "ctx::async-parent"):
        wait_for_function(fid)
    for fid in ("ctx::sync-parent", "ctx::async-parent"):
        result = worker.trigger({"function_id": fid, "payload": {}})
        for key in sorted(result):
            print(f"{fid} {key}: {result[key]}")
    print("still outside:", iii.current_invocation())
finally:
    worker.shutdown()

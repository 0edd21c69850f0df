"""The blocking API from many threads at once, and the guard against blocking calls on the SDK's
own event loop (async handlers must use trigger_async)."""

import os
import sys
import threading
import time

# --- iii imports ---
from iii import InitOptions, register_worker
# --- end iii imports ---

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-threads"))


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


def square(data):
    time.sleep(0.005)
    return data * data


async def blocking_inside_async(data):
    try:
        iii.trigger({"function_id": "calc::square", "payload": 3})
    except RuntimeError:
        return "RuntimeError raised"
    return "no error"


def sync_nested(data):
    # Sync handlers run on their own thread, so blocking nested calls are fine there.
    return [iii.trigger({"function_id": "calc::square", "payload": n}) for n in data]


try:
    iii.register_function("calc::square", square)
    iii.register_function("calc::blocking-inside-async", blocking_inside_async)
    iii.register_function("calc::sync-nested", sync_nested)
    for fid in ("calc::square", "calc::blocking-inside-async", "calc::sync-nested"):
        wait_for_function(fid)

    results: dict[int, list[int]] = {}

    def worker_thread(n: int) -> None:
        results[n] = [iii.trigger({"function_id": "calc::square", "payload": n * 10 + i}) for i in range(5)]

    threads = [threading.Thread(target=worker_thread, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in sorted(results):
        print(f"thread {n}:", results[n])
    print("async handler:", iii.trigger({"function_id": "calc::blocking-inside-async", "payload": {}}))
    print("sync nested:", iii.trigger({"function_id": "calc::sync-nested", "payload": [1, 2, 3]}))
finally:
    iii.shutdown()

"""Client-side timeouts: per call and from InitOptions; the script ends on an uncaught error
(exit code 1, traceback on stderr) after shutting the worker down."""

import os
import sys
import threading
import time

# --- iii imports ---
from iii import InitOptions, InvocationError, register_worker
# --- end iii imports ---

iii = register_worker(
    os.environ["III_URL"], InitOptions(worker_name="compat-timeouts", invocation_timeout_ms=600)
)
release = threading.Event()


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}, "timeout_ms": 5000})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


def slow(data):
    if data.get("block"):
        release.wait(10)
        return "late"
    return "quick"


try:
    iii.register_function("slow::op", slow)
    wait_for_function("slow::op")
    print("in time:", iii.trigger({"function_id": "slow::op", "payload": {}, "timeout_ms": 5000}))
    try:
        iii.trigger({"function_id": "slow::op", "payload": {"block": True}, "timeout_ms": 150})
    except InvocationError as err:
        print("per-call timeout:", err.code, err.message, err.function_id)
    try:
        iii.trigger({"function_id": "slow::op", "payload": {"block": True}})
    except InvocationError as err:
        print("default timeout:", err.code, err.message)
    release.set()
    print("worker still answers:", iii.trigger({"function_id": "slow::op", "payload": {}, "timeout_ms": 5000}))
    # Not caught: the script must end with exit code 1.
    iii.trigger({"function_id": "slow::missing", "payload": {}, "timeout_ms": 5000})
    print("not reached")
finally:
    release.set()
    iii.shutdown()

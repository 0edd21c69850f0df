"""FunctionRef.unregister() removes a function; registering an id twice or a non-callable fails
locally; a removed id can be registered again."""

import os
import sys
import time

# --- iii imports ---
from iii import InitOptions, InvocationError, register_worker
# --- end iii imports ---

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-unregister"))


def listed(function_id: str) -> bool:
    result = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
    return any(f["function_id"] == function_id for f in result["functions"])


def wait_until(function_id: str, present: bool) -> None:
    for _ in range(1000):
        if listed(function_id) == present:
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never became present={present}")


def v1(data):
    return "v1"


def v2(data):
    return "v2"


try:
    ref = iii.register_function("svc::versioned", v1)
    wait_until("svc::versioned", True)
    print("call:", iii.trigger({"function_id": "svc::versioned", "payload": {}}))

    try:
        iii.register_function("svc::versioned", v2)
    except ValueError as err:
        print("duplicate:", type(err).__name__)
    try:
        iii.register_function("svc::broken", "not a handler")
    except TypeError as err:
        print("not callable:", type(err).__name__)
    try:
        iii.register_function("", v1)
    except ValueError as err:
        print("empty id:", type(err).__name__)

    ref.unregister()
    wait_until("svc::versioned", False)
    try:
        iii.trigger({"function_id": "svc::versioned", "payload": {}})
    except InvocationError as err:
        print("after unregister:", err.code)

    ref2 = iii.register_function("svc::versioned", v2)
    wait_until("svc::versioned", True)
    print("re-registered:", ref2.id, iii.trigger({"function_id": "svc::versioned", "payload": {}}))
finally:
    iii.shutdown()

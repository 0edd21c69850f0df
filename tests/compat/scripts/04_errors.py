"""Handler failures and engine errors surface as InvocationError with code, message, ids and
stacktrace; a handler raising SystemExit cannot stop the worker."""

import os
import sys
import time

# --- iii imports ---
from iii import InitOptions, InvocationError, register_worker
# --- end iii imports ---

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-errors"))


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


class PaymentDeclined(Exception):
    pass


def charge(data):
    if data["amount"] > 100:
        raise PaymentDeclined(f"amount {data['amount']} over limit")
    return {"charged": data["amount"]}


async def validate(data):
    raise ValueError("field 'email' is required")


def stop(data):
    sys.exit(3)


def show(label, err):
    print(f"{label}: code={err.code} message={err.message!r}")
    print(f"{label}: str={str(err)!r} function_id={err.function_id}")
    print(f"{label}: is Exception={isinstance(err, Exception)} has invocation_id={isinstance(err.invocation_id, str)}")


failures = 0
try:
    iii.register_function("billing::charge", charge)
    iii.register_function("billing::validate", validate)
    iii.register_function("billing::stop", stop)
    for fid in ("billing::charge", "billing::validate", "billing::stop"):
        wait_for_function(fid)

    print("ok:", iii.trigger({"function_id": "billing::charge", "payload": {"amount": 5}}))

    try:
        iii.trigger({"function_id": "billing::charge", "payload": {"amount": 500}})
        failures += 1
    except InvocationError as err:
        show("sync handler", err)
        trace = err.stacktrace or ""
        print("sync handler: stacktrace names the exception:", "PaymentDeclined" in trace)
        print("sync handler: stacktrace names the handler:", "in charge" in trace)

    try:
        iii.trigger({"function_id": "billing::validate", "payload": {}})
        failures += 1
    except InvocationError as err:
        show("async handler", err)
        print("async handler: stacktrace names the exception:", "ValueError" in (err.stacktrace or ""))

    try:
        iii.trigger({"function_id": "billing::stop", "payload": {}})
        failures += 1
    except InvocationError as err:
        show("system exit", err)

    try:
        iii.trigger({"function_id": "billing::refund", "payload": {}})
        failures += 1
    except InvocationError as err:
        show("missing function", err)
        print("missing function: stacktrace:", err.stacktrace)

    # The worker survived all of the above.
    print("still serving:", iii.trigger({"function_id": "billing::charge", "payload": {"amount": 7}}))
finally:
    iii.shutdown()
sys.exit(failures)

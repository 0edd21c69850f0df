"""Per-invocation metadata reaches only handlers that declare a parameter named `metadata`;
function metadata and description are visible through discovery."""

import os
import sys
import time

# --- iii imports ---
from iii import InitOptions, register_worker
# --- end iii imports ---

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-metadata"))


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


def positional(data, metadata=None):
    return {"metadata": metadata}


def keyword_only(data, *, metadata=None):
    return {"metadata": metadata}


async def async_positional(data, metadata):
    return {"metadata": metadata}


def data_only(data):
    return {"args": 1}


def unrelated_param(data, extra="default"):
    return {"extra": extra}


def var_keywords(data, **kwargs):
    return {"kwargs": sorted(kwargs)}


class CallableHandler:
    def __call__(self, data, metadata=None):
        return {"metadata": metadata, "callable": True}


handlers = {
    "meta::positional": positional,
    "meta::keyword-only": keyword_only,
    "meta::async-positional": async_positional,
    "meta::data-only": data_only,
    "meta::unrelated-param": unrelated_param,
    "meta::var-keywords": var_keywords,
    "meta::callable": CallableHandler(),
}

try:
    for function_id, handler in handlers.items():
        iii.register_function(
            function_id,
            handler,
            description=f"metadata probe {function_id}",
            metadata={"owner": "compat", "probe": function_id.split("::")[1]},
        )
    for function_id in handlers:
        wait_for_function(function_id)

    for function_id in handlers:
        with_meta = iii.trigger(
            {"function_id": function_id, "payload": {"x": 1}, "metadata": {"tenant": "acme", "attempt": 2}}
        )
        without_meta = iii.trigger({"function_id": function_id, "payload": {"x": 1}})
        print(f"{function_id}: with={with_meta} without={without_meta}")

    listed = iii.trigger({"function_id": "engine::functions::list", "payload": {"prefix": "meta::"}})
    for summary in sorted(listed["functions"], key=lambda f: f["function_id"]):
        print("listed:", summary["function_id"], summary.get("description"), summary.get("metadata"))
finally:
    iii.shutdown()

"""HTTP triggers on the engine's REST port: path and query parameters, JSON bodies, buffered
responses (a status_code dict and the HttpResponse model), a raw request body read from the
request_body channel, and a streamed response through the `http` helper."""

import json
import os
import sys
import time
import urllib.error
import urllib.request

# --- iii imports ---
from iii import InitOptions, register_worker
from iii.types import StreamRequest, StreamResponse
from iii_helpers.http import HttpResponse, http
# --- end iii imports ---

REST = os.environ["COMPAT_REST_URL"]
iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-http-api"))


def create_order(req):
    return {
        "status_code": 201,
        "headers": {"x-order-id": req["path_params"]["id"]},
        "body": {
            "id": req["path_params"]["id"],
            "item": req["body"]["item"],
            "query": req["query_params"],
            "method": req["method"],
            "path": req["path"],
            "content-type": req["headers"].get("content-type"),
        },
    }


def accept_order(req):
    return HttpResponse(statusCode=202, body={"accepted": req["query_params"].get("ref")},
                        headers={"x-kind": "model"})


async def upload(req):
    raw = await req["request_body"].read_all()
    return {"status_code": 200, "body": {"size": len(raw), "head": raw[:5].decode()}}


async def report(req: StreamRequest, res: StreamResponse):
    await res.status(200)
    await res.headers({"content-type": "text/plain", "x-rows": str(req.query_params.get("rows"))})
    for row in range(int(req.query_params.get("rows", "3"))):
        await res.writer.write(f"row {row}\n".encode())
    res.close()
    return None


def call(method: str, path: str, body: bytes | None = None, content_type: str | None = None):
    request = urllib.request.Request(f"{REST}{path}", data=body, method=method)
    if content_type:
        request.add_header("content-type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, payload = response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        status, headers, payload = err.code, err.headers, err.read()
    kind = headers.get("content-type", "")
    shown = json.loads(payload) if "json" in kind else payload
    if isinstance(shown, dict) and "error_id" in shown.get("error", {}):
        shown["error"]["error_id"] = "<id>"
    return status, shown, {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-")}


def routes_active(function_ids) -> bool:
    result = iii.trigger({"function_id": "engine::registered-triggers::list", "payload": {}})
    active = {t["function_id"] for t in result["registered_triggers"]}
    return set(function_ids) <= active


routes = {
    "api::create-order": (create_order, "orders/:id", "POST"),
    "api::accept-order": (accept_order, "orders/:id/accept", "PUT"),
    "api::upload": (upload, "upload", "POST"),
    "api::report": (http(report), "report", "GET"),
}

try:
    for function_id, (handler, path, method) in routes.items():
        iii.register_function(function_id, handler)
        iii.register_trigger(
            {"type": "http", "function_id": function_id, "config": {"api_path": path, "http_method": method}}
        )
    for _ in range(1000):
        if routes_active(routes):
            break
        time.sleep(0.01)
    else:
        sys.exit("routes never became active")

    print("create:", *call("POST", "/orders/42?source=web&x=1", b'{"item": "lamp"}', "application/json"))
    print("accept:", *call("PUT", "/orders/42/accept?ref=r-9"))
    print("upload:", *call("POST", "/upload", b"\x00binary body\xff", "application/octet-stream"))
    print("report:", *call("GET", "/report?rows=4"))
    print("unknown:", *call("GET", "/nothing-here"))
finally:
    iii.shutdown()

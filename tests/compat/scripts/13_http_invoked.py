"""HTTP-invoked functions: the engine calls a local HTTP endpoint (bearer auth from the engine's
environment variable COMPAT_HTTP_TOKEN, extra headers); status codes map to results and errors."""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# --- iii imports ---
from iii import InitOptions, InvocationError, register_worker
from iii_helpers.http import HttpAuthBearer, HttpInvocationConfig
# --- end iii imports ---

seen: list[dict] = []


class Endpoint(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"null")
        if isinstance(body, dict):
            body.pop("_caller_worker_id", None)
        seen.append(
            {
                "method": self.command,
                "path": self.path,
                "content-type": self.headers.get("content-type"),
                "function path": self.headers.get("x-iii-function-path"),
                "has invocation id": bool(self.headers.get("x-iii-invocation-id")),
                "timestamp is digits": (self.headers.get("x-iii-timestamp") or "").isdigit(),
                "authorization": self.headers.get("authorization"),
                "x-team": self.headers.get("x-team"),
                "body": body,
            }
        )
        if self.path == "/quote":
            self.reply(200, {"price": body["qty"] * 3, "currency": "EUR"})
        elif self.path == "/declined":
            self.reply(402, {"error": {"code": "card_declined", "message": "insufficient funds"}})
        elif self.path == "/broken":
            self.reply(503, None)
        else:
            self.reply(204, None)

    do_PUT = do_POST

    def reply(self, status, payload):
        raw = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if raw:
            self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{server.server_address[1]}"

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-http-invoked"))


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


functions = {
    "ext::quote": HttpInvocationConfig(
        url=f"{base}/quote",
        headers={"x-team": "pricing"},
        auth=HttpAuthBearer(token_key="COMPAT_HTTP_TOKEN"),
        timeout_ms=5000,
    ),
    "ext::declined": HttpInvocationConfig(url=f"{base}/declined", method="POST"),
    "ext::broken": HttpInvocationConfig(url=f"{base}/broken"),
    "ext::accepted": HttpInvocationConfig(url=f"{base}/accepted", method="PUT"),
}

try:
    refs = {fid: iii.register_function(fid, config, description=f"remote {fid}") for fid, config in functions.items()}
    for fid in functions:
        wait_for_function(fid)
    print("quote:", iii.trigger({"function_id": "ext::quote", "payload": {"qty": 4}}))
    for fid in ("ext::declined", "ext::broken"):
        try:
            iii.trigger({"function_id": fid, "payload": {"card": "x"}})
        except InvocationError as err:
            print(f"{fid}: {err.code}: {err.message}")
    print("accepted:", iii.trigger({"function_id": "ext::accepted", "payload": {"job": 1}}))
    for request in seen:
        print("endpoint saw:", request)
    refs["ext::quote"].unregister()
finally:
    iii.shutdown()
    server.shutdown()

"""Notebook traps, tried in a real IPython kernel (jupyter_client): re-run cells, interrupts,
and blocking on the kernel's own loop behave as a notebook user expects.

(Here rather than in tests/client: the floors run of tests/client has no Jupyter installed;
tests/client/test_notebook_traps.py has the parts that need no kernel.)"""

from __future__ import annotations

import json
import queue
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

TIMEOUT = 60


@pytest.fixture
def kernel(tmp_path: Path, kernel_name: str) -> Iterator[Kernel]:
    """A fresh kernel running this interpreter, importing this tree."""
    manager = KernelManager(kernel_name=kernel_name)
    manager.start_kernel(cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=TIMEOUT)
        running = Kernel(manager, client)
        running.ok("import sys, threading, warnings, iii_rx\n"
                   "assert sys.executable == " + repr(sys.executable))
        yield running
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


class Kernel:
    """Runs cells and returns what they printed (stdout and stderr) and how they ended."""

    def __init__(self, manager: KernelManager, client: BlockingKernelClient) -> None:
        self.manager = manager
        self.client = client

    def send(self, code: str, cell_id: str | None = None) -> str:
        content = {"code": code, "silent": False, "store_history": True,
                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        msg = self.client.session.msg("execute_request", content,
                                      metadata={"cellId": cell_id} if cell_id else {})
        self.client.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def wait(self, msg_id: str) -> tuple[dict[str, Any], str]:
        while True:
            reply = self.client.get_shell_msg(timeout=TIMEOUT)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        output: list[str] = []
        while True:  # the iopub messages of this cell, up to its idle status
            try:
                msg = self.client.get_iopub_msg(timeout=TIMEOUT)
            except queue.Empty:
                break
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, body = msg["msg_type"], msg["content"]
            if kind == "stream":
                output.append(body["text"])
            elif kind in ("execute_result", "display_data"):
                output.append(body["data"].get("text/plain", "") + "\n")
            elif kind == "status" and body["execution_state"] == "idle":
                break
        return reply["content"], "".join(output)

    def run(self, code: str, cell_id: str | None = None) -> tuple[dict[str, Any], str]:
        return self.wait(self.send(code, cell_id))

    def ok(self, code: str, cell_id: str | None = None) -> str:
        reply, output = self.run(code, cell_id)
        assert reply["status"] == "ok", f"{reply.get('ename')}: {reply.get('evalue')}\n{output}"
        return output

    def value(self, expression: str) -> Any:
        return json.loads(self.ok(f"import json; print(json.dumps({expression}))").strip())


LOOP_THREADS = "sum(t.name.startswith('iii-rx-loop') for t in threading.enumerate())"


def test_running_a_connect_sync_cell_again_replaces_its_client(kernel: Kernel) -> None:
    kernel.ok("opened = []")
    cell = "iii = iii_rx.connect_sync()\nopened.append(iii)"
    assert "ran again" not in kernel.ok(cell)
    assert kernel.value(LOOP_THREADS) == 1
    output = kernel.ok(cell)                   # the same cell, run again
    assert "connect_sync() ran again in this cell: closing the client its earlier run " \
           "opened" in output
    assert kernel.value("[c.closed for c in opened]") == [True, False]
    assert kernel.value(LOOP_THREADS) == 1     # the first loop thread (and engine) are gone
    assert kernel.value("iii.trigger('engine::functions::list', {}).result(timeout=10) "
                        "is not None")

    # JupyterLab sends the cell's id: an edited cell still replaces what it opened.
    kernel.ok("other = iii_rx.connect_sync(name='edited')", cell_id="cell-7")
    output = kernel.ok("other = iii_rx.connect_sync(name='edited', timeout_ms=5000)",
                       cell_id="cell-7")
    assert "worker 'edited'" in output
    assert kernel.value(LOOP_THREADS) == 2     # iii and the new `other`

    # One run opening several clients keeps them all; other cells' clients are not touched.
    kernel.ok("many = [iii_rx.connect_sync() for _ in range(2)]")
    assert kernel.value("[c.closed for c in many] + [iii.closed, other.closed]") == [False] * 4
    kernel.ok("for c in [*many, iii, other]: c.close()")
    assert kernel.value(LOOP_THREADS) == 0


def test_running_a_register_function_cell_again_replaces_the_handler(kernel: Kernel) -> None:
    kernel.ok("iii = iii_rx.connect_sync()")
    kernel.ok("handle = iii.register_function('nb::answer', lambda data: 41)", cell_id="c-1")
    reply, output = kernel.run("handle = iii.register_function('nb::answer', lambda data: 42,\n"
                               "                               description='fixed')",
                               cell_id="c-1")     # the same cell, edited and run again
    assert reply["status"] == "ok", output
    assert kernel.value("iii.trigger('nb::answer').result(timeout=10)") == 42
    assert kernel.value("iii.function_ids") == ["nb::answer"]
    listed = kernel.value("[f['description'] for f in iii.trigger('engine::functions::list', "
                          "{}).result(timeout=10)['functions'] if f['function_id'] == "
                          "'nb::answer']")
    assert listed == ["fixed"]                 # the new registration reached the engine
    kernel.ok("handle.unregister()")
    assert kernel.value("iii.function_ids") == []
    kernel.ok("iii.close()")


def test_another_cell_taking_a_registered_id_is_refused(kernel: Kernel) -> None:
    kernel.ok("iii = iii_rx.connect_sync()")
    first = "first = iii.register_function('nb::taken', lambda data: 1)"
    kernel.ok(first)                           # no cell id: the cell is known by its text
    for code, cell_id in [("second = iii.register_function('nb::taken', lambda data: 2)", None),
                          ("second = iii.register_function('nb::taken', lambda data: 2)", "c-2"),
                          ("for n in (1, 2): iii.register_function('nb::loop', lambda d: n)",
                           None)]:
        reply, output = kernel.run(code, cell_id)
        assert reply["status"] == "error" and reply["ename"] == "ValueError", output
        assert "is already registered by this client: call unregister() on the handle" \
            in reply["evalue"]
    assert kernel.value("iii.trigger('nb::taken').result(timeout=10)") == 1
    kernel.ok(first)                           # the first cell, run again: replaces
    kernel.ok("first.unregister()")
    kernel.ok("second = iii.register_function('nb::taken', lambda data: 2)")
    assert kernel.value("iii.trigger('nb::taken').result(timeout=10)") == 2
    kernel.ok("iii.close()")


def test_interrupting_a_cell_blocked_in_result_withdraws_the_call(kernel: Kernel) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        kernel.ok("import socket\n"
                  "iii = iii_rx.connect_sync()\n"
                  "release = threading.Event()\n"
                  "def slow(data):\n"
                  f"    socket.create_connection(('127.0.0.1', {port})).close()\n"
                  "    release.wait(30)\n"
                  "    return 'late'\n"
                  "iii.register_function('nb::slow', slow)")
        msg_id = kernel.send("iii.trigger('nb::slow').result()")
        server.settimeout(TIMEOUT)
        server.accept()[0].close()             # the handler runs: the call is pending
        assert kernel.manager.is_alive()
        kernel.manager.interrupt_kernel()
        reply, _ = kernel.wait(msg_id)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    assert kernel.value("iii.pending_calls") == 0
    kernel.ok("release.set()")
    assert kernel.value("iii.trigger('engine::functions::list', {}).result(timeout=10) "
                        "is not None")
    kernel.ok("iii.close()")


def test_a_client_on_the_kernel_loop_refuses_to_block_and_awaits(kernel: Kernel) -> None:
    kernel.ok("iii = await iii_rx.connect()\n"
              "iii.register_function('nb::one', lambda data: 1)")
    reply, _ = kernel.run("iii.trigger('nb::one').result(timeout=30)")
    assert reply["status"] == "error" and reply["ename"] == "LoopDeadlockError"
    assert "Use `await` instead" in reply["evalue"]
    assert kernel.value("await iii.trigger('nb::one')") == 1
    assert kernel.value("iii.pending_calls") == 0

    # `iii = await iii_rx.connect()` run again closes its earlier client, too.
    kernel.ok("first = iii")
    output = kernel.ok("iii = await iii_rx.connect()\n"
                       "iii.register_function('nb::one', lambda data: 1)")
    assert "await connect() ran again in this cell" in output
    assert kernel.value("[first.closed, iii.closed]") == [True, False]
    kernel.ok("await iii.aclose()")


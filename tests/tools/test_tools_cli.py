"""``iii-rx ls``, ``call``, ``watch`` and ``engine`` as real subprocesses (``python -m
iii_rx.cli``) against an engine started by the test; several commands run at once to keep
the interpreter starts from adding up."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tools_helpers import ENGINE_TIMERS, ENV, WAIT, Lines, cli, closed_port, run_all, unique_name

import iii_rx
from iii_rx.cli import main
from iii_rx.client import Client
from iii_rx.engine import Engine
from iii_rx.engine.engine import EngineThread
from iii_rx.engine.run import add_engine_arguments


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineThread]:
    with Engine.start_in_thread(**ENGINE_TIMERS) as running:
        yield running


@pytest.fixture(scope="module")
def calc(engine: EngineThread) -> Iterator[Client]:
    """A worker with two functions and an http binding, in this process."""
    worker = iii_rx.connect_sync(engine.url, name=unique_name("calc"))

    async def slow(data: Any) -> Any:
        import asyncio

        await asyncio.sleep(data["s"])
        return {"slept": data["s"]}

    worker.register_function("math::add", lambda d: {"sum": d["a"] + d["b"]},
                             description="adds")
    worker.register_function("math::slow", slow)
    worker.register_function("math::fail", _fail)
    worker.register_trigger({"type": "http", "function_id": "math::add",
                             "config": {"api_path": "add", "http_method": "POST"}})
    worker.wait_for_function_sync("math::fail", timeout=WAIT)
    yield worker
    worker.close()


def _fail(data: Any) -> Any:
    raise ValueError("no luck")


def test_ls_lists_workers_functions_and_triggers(engine: EngineThread, calc: Client) -> None:
    url = engine.url
    text, everything = run_all(cli("ls", "--url", url), cli("ls", "--json", "--url", url))
    for done in (text, everything):
        assert (done.returncode, done.stderr) == (0, ""), done

    lines = text.stdout.splitlines()
    assert lines[0] == "WORKERS"
    assert lines[1].split() == ["WORKER", "NAMESPACE", "RUNTIME", "PID", "FUNCS", "ACTIVE",
                                "CALLS", "ERRORS", "ADDRESS"]
    mine = next(line.split() for line in lines if line.startswith(calc.name))
    # CALLS and ERRORS are the engine's counters (0: nothing called the worker yet)
    assert mine == [calc.name, "default", "python", str(os.getpid()), "3", "0", "0", "0",
                    "127.0.0.1"]
    # The command leaves its own connection out (the other ls, running at once, is listed).
    assert not [line for line in lines if line.startswith(f"iii-rx ls {socket.gethostname()}:"
                                                          f"{text.pid} ")]
    assert any(line.split()[:3] == ["math::add", "default", calc.name] for line in lines)
    assert any(line.split()[:2] == ["http", "math::add"] for line in lines)

    out = json.loads(everything.stdout)
    assert set(out) == {"workers", "functions", "triggers"}
    row = next(r for r in out["workers"] if r["name"] == calc.name)
    assert (row["runtime"], row["pid"], row["function_count"]) == ("python", os.getpid(), 3)
    binding = next(t for t in out["triggers"] if t["function_id"] == "math::add")
    assert (binding["trigger_type"], binding["config"]["api_path"]) == ("http", "add")


def test_ls_kinds(engine: EngineThread, calc: Client,
                  capsys: pytest.CaptureFixture[str]) -> None:
    """The same command in this process (argparse and output, without an interpreter each)."""
    assert main(["ls", "functions", "--json", "--url", engine.url]) == 0
    assert {r["function_id"] for r in json.loads(capsys.readouterr().out)
            if r["worker_name"] == calc.name} == {"math::add", "math::slow", "math::fail"}
    assert main(["ls", "workers", "--url", engine.url, "--namespace", "elsewhere"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []
    assert main(["ls", "triggers", "--url", engine.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TRIGGER", "TYPE", "FUNCTION", "OWNER", "CONFIG"]
    assert lines[1].split()[:3] == ["http", "math::add", calc.name]
    assert main(["ls", "functions", "--internal", "--json", "--url", engine.url]) == 0
    assert "engine::workers::list" in {r["function_id"]
                                       for r in json.loads(capsys.readouterr().out)}


def test_call_prints_the_result_or_one_line_of_error(engine: EngineThread, calc: Client) -> None:
    url = engine.url
    ok, missing, late = run_all(
        cli("call", "math::add", '{"a": 2, "b": 40}', "--url", url),
        cli("call", "nope::nothing", "--url", url),
        cli("call", "math::slow", '{"s": 5}', "--timeout", "300", "--url", url))
    assert (ok.returncode, json.loads(ok.stdout), ok.stderr) == (0, {"sum": 42}, "")
    for done, words in ((missing, "nope::nothing: function_not_found"),
                        (late, "math::slow: no result within 300 ms")):
        assert (done.returncode, done.stdout) == (1, ""), done
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("iii-rx: "), done
        assert words in done.stderr and "Traceback" not in done.stderr, done
    assert late.seconds < WAIT


def test_call_errors_in_process(engine: EngineThread, calc: Client,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "math::fail", "--url", engine.url]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "math::fail: " in err and "no luck" in err
    assert main(["call", "math::add", "{not json", "--url", engine.url]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("iii-rx: the payload is not JSON")
    assert main(["call", "math::add", "--url", engine.url]) == 1  # {} has no "a"
    assert "math::add: " in capsys.readouterr().err


@pytest.mark.parametrize(("payload", "words"), [
    ("NaN", "NaN is not a JSON number"), ("Infinity", "Infinity is not a JSON number"),
    ('{"a": -Infinity}', "-Infinity is not a JSON number"),
    ("[1e999]", "1e999 is beyond a double's range"),
    ('"\\ud800"', "lone surrogate"), ("[" * 100_000, "nested deeper than the JSON parser")])
def test_a_payload_the_wire_cannot_carry_is_one_line_and_exit_2(
        payload: str, words: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Python's json takes these; the client then refused them with a traceback (exit 1).
    No engine needed: the payload is refused before connecting."""
    assert main(["call", "math::add", payload, "--url", f"ws://127.0.0.1:{closed_port()}"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith("iii-rx: the payload is not JSON: ") and words in err, err


@pytest.mark.parametrize("args", [("",), (" ",), ("x::y", "--wait", "-1"),
                                  ("x::y", "--wait", "0")])
def test_call_refuses_an_empty_function_id_and_a_wait_below_zero(
        args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["call", *args, "--url", f"ws://127.0.0.1:{closed_port()}"])
    assert exited.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_call_waits_for_a_function_registered_later(engine: EngineThread) -> None:
    waiting = Lines(cli("call", "late::fn", '{"x": 1}', "--wait", str(WAIT), "--url",
                        engine.url))
    try:
        with iii_rx.connect_sync(engine.url, name=unique_name("late")) as worker:
            worker.register_function("late::fn", lambda d: {"got": d["x"]})
            out = "".join(waiting.next() for _ in range(3))
            assert json.loads(out) == {"got": 1}
            assert waiting.proc.wait(WAIT) == 0
    finally:
        waiting.stop()


def test_watch_prints_rows_then_changes_as_json_lines(engine: EngineThread,
                                                       calc: Client) -> None:
    watch = Lines(cli("watch", "--current", "--url", engine.url, "--poll", "0.2"))
    try:
        first = json.loads(watch.next())
        assert first == {"event": "connection", "state": "connected", "url": engine.url}
        current = []  # --current: every row as an addition, workers before their functions
        while not any(e.get("trigger", {}).get("function_id") == "math::add" for e in current):
            current.append(json.loads(watch.next()))
        kinds = [e["event"] for e in current]
        assert kinds.index("worker_connected") < kinds.index("function_added")
        assert {e["function"]["function_id"] for e in current if "function" in e
                and e["function"]["worker_name"] == calc.name} == {
            "math::add", "math::slow", "math::fail"}

        name = unique_name("watched")
        with iii_rx.connect_sync(engine.url, name=name) as worker:
            worker.register_function("watched::fn", lambda d: d)
            seen = [json.loads(watch.next()) for _ in range(2)]
            assert [e["event"] for e in seen] == ["worker_connected", "function_added"]
            assert seen[0]["worker"]["name"] == name
            assert seen[1]["function"]["function_id"] == "watched::fn"
            assert seen[1]["function"]["worker_name"] == name
        gone = [json.loads(watch.next()) for _ in range(2)]
        assert [e["event"] for e in gone] == ["function_removed", "worker_disconnected"]
        assert gone[1]["worker"]["id"] == seen[0]["worker"]["id"]
        watch.proc.send_signal(signal.SIGINT)
        assert watch.proc.wait(WAIT) == 130
        assert watch.stderr() == ""
    finally:
        watch.stop()


def test_a_wrong_url_is_one_line_and_exit_1_for_every_command() -> None:
    """No engine on the port: one line on stderr naming the URL, exit 1, no traceback, within
    the connect timeout plus an interpreter start; the default URL comes from III_URL."""
    port = closed_port()
    url = f"ws://127.0.0.1:{port}"
    fast = ("--connect-timeout", "1")
    *results, from_env = run_all(
        cli("ls", "--url", url, *fast), cli("call", "x::y", "--url", url, *fast),
        cli("watch", "--url", url, *fast),
        (cli("ls"), {**ENV, "III_URL": url}))  # the default connect timeout (3 s)
    for done in [*results, from_env]:
        assert done.returncode == 1, done
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1, done
        assert done.stderr.startswith("iii-rx: ") and url in done.stderr, done
        assert "Traceback" not in done.stderr
        # Five interpreters start at once on a possibly busy machine; the bound still tells
        # the tools' short connect timeout from the client's default (30 s).
        assert done.seconds < 25, done


def test_top_with_a_wrong_url_is_one_line_and_exit_1(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """As the other commands (given a terminal: without one ``top`` stops at once)."""
    monkeypatch.setattr("iii_rx.tools.top.draws_on_terminal", lambda: True)
    url = f"ws://127.0.0.1:{closed_port()}"
    assert main(["top", "--url", url, "--connect-timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("iii-rx: ") and url in err, err


def test_top_without_a_terminal_is_one_line_and_exit_2() -> None:
    """Under cron, CI or nohup (no terminal on stdin, stdout or stderr) ``top`` ran for ever
    writing escape codes into the log; it now points at the commands meant for scripts."""
    [done] = run_all(cli("top", "--url", f"ws://127.0.0.1:{closed_port()}"))
    assert (done.returncode, done.stdout) == (2, ""), done
    assert done.stderr.count("\n") == 1 and "needs a terminal" in done.stderr, done
    assert "iii-rx ls" in done.stderr and "iii-rx watch" in done.stderr


def test_python_m_cli_runs_the_engine_and_the_client_commands() -> None:
    """``python -m iii_rx.cli engine`` still serves (and stops on Ctrl-C); ``ls`` reaches it."""
    engine = Lines(cli("engine", "--port", "0", "--rest-port", "0", "--log-level", "WARNING"))
    try:
        line = engine.next()
        assert line.startswith("iii engine listening on ws://127.0.0.1:")
        url = line.split()[-1]
        done = run_all(cli("ls", "workers", "--json", "--url", url))[0]
        assert done.returncode == 0, done
        assert {r["name"] for r in json.loads(done.stdout)} >= {"iii-engine-functions"}
        start = time.monotonic()
        engine.proc.send_signal(signal.SIGINT)
        assert engine.proc.wait(WAIT) == 0
        assert time.monotonic() - start < WAIT
    finally:
        engine.stop()


def test_watch_leaves_its_own_new_connection_out_after_an_engine_restart() -> None:
    """After a reconnect the watcher is a new worker: it must not show as connected, then
    disconnected (it did, once per restart)."""
    port = closed_port()
    engine = Engine.start_in_thread(port=port, **ENGINE_TIMERS)
    watch = Lines(cli("watch", "--url", engine.url, "--poll", "0.2"))
    try:
        assert json.loads(watch.next())["event"] == "connection"
        engine.stop()
        assert json.loads(watch.next()) == {"event": "connection", "state": "reconnecting"}
        engine = Engine.start_in_thread(port=port, **ENGINE_TIMERS)
        assert json.loads(watch.next()) == {"event": "connection", "state": "connected"}
        name = unique_name("after")  # a worker to see: the watcher's own rows come before it
        with iii_rx.connect_sync(engine.url, name=name):
            event = json.loads(watch.next())
        assert event["event"] == "worker_connected" and event["worker"]["name"] == name, event
    finally:
        watch.stop()
        engine.stop()


@pytest.mark.parametrize("args", [("engine", "--port", "70000"), ("engine", "--rest-port", "-5"),
                                  ("watch", "--poll", "0"), ("top", "--poll", "-1"),
                                  ("ls", "--connect-timeout", "-1")])
def test_a_bad_number_is_a_usage_error(args: tuple[str, ...],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    assert exited.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("args", [("--host", ""), ("--rest-host", " "), ("--stream-host", ""),
                                  ("--handshake-timeout-ms", "0"),
                                  ("--handshake-timeout-ms", "-5"),
                                  ("--namespace-grace-ms", "-1")])
def test_a_bad_engine_flag_is_a_usage_error(args: tuple[str, ...],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``--host "$UNSET"`` bound every interface while the engine printed 127.0.0.1; a
    handshake deadline of 0 gave a traceback; a negative grace period was taken. (The parser
    alone: before the checks some of these started an engine on the well-known ports.)"""
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(list(args))
    assert exited.value.code == 2
    assert f"argument {args[0]}: " in capsys.readouterr().err


def test_an_unusable_file_or_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A state, stream or queue file that sqlite cannot use, and a grace period in the
    environment that is not a number, stop ``iii-rx engine`` with one line naming them (they
    gave a traceback and exit 1, or for the variable were ignored)."""
    not_db = tmp_path / "not.db"
    not_db.write_text("garbage")
    engine = ("engine", "--port", "0", "--rest-port", "0", "--log-level", "WARNING")
    results = run_all(cli(*engine, "--state-file", str(tmp_path)),
                      cli(*engine, "--stream-file", str(not_db)),
                      cli(*engine, "--queue-file", "/proc/iii-rx-test/q.db"),
                      (cli(*engine), {**ENV, "III_NAMESPACE_GRACE_MS": "abc"}))
    named = [str(tmp_path), str(not_db), "/proc/iii-rx-test/q.db", "III_NAMESPACE_GRACE_MS"]
    for done, name in zip(results, named, strict=True):
        assert done.returncode == 2, done
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done
        assert "ERROR" in done.stderr and name in done.stderr, done


def test_version_prints_the_package_version() -> None:
    [done] = run_all(cli("--version"))
    assert (done.returncode, done.stdout.strip()) == (0, f"iii-rx {iii_rx.__version__}")

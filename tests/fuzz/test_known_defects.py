"""Defects the fuzzing found (or confirmed) and that are still open, each as the test of the
behaviour it should have.

Every test here is ``xfail(strict=True)``: it fails today, so the suite stays green; once the
defect is fixed the test passes, which strict mode reports as a failure: then remove its
marker and move it to ``test_defect_regressions.py`` as a regression test (and remove the
matching filter in ``fuzz_strategies.KNOWN_DEFECT_TRIGGERS`` or ``fuzz_targets``, and the
``"xfail"`` key of its corpus files). Minimal reproductions are in each docstring.

Open: D14 (the worker port). Fixed, now in ``test_defect_regressions.py``: D1-D4, D6-D13,
D15, D16.
"""

from __future__ import annotations

import pytest
from fuzz_support import RUN_TIMEOUT, LogWatch, LoopThread
from fuzz_targets import EngineEnv, raw_http, status_of

# ------------------------------------------------------------------------- worker socket


@pytest.mark.xfail(strict=True, reason="D14: a plain HTTP request with bytes after its head, "
                   "to a path the worker port refuses, trips an AssertionError inside websockets "
                   "(send_eof twice): traceback logged at ERROR, the client gets no response")
@pytest.mark.parametrize("path", ["/nope", "/ws/channels/x?key=k&dir=read", "/ws/channels/x"])
def test_d14_refused_path_with_trailing_bytes(loop: LoopThread, engine_env: EngineEnv,
                                              path: str) -> None:
    """``b"GET /nope HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\nxy"`` to the worker port: today an
    empty reply and "unexpected internal error" (with no bytes after the head, or one, it
    is a clean 404)."""

    async def scenario() -> None:
        with LogWatch() as logs:
            response = await raw_http(engine_env.engine.port,
                                      f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nxy"
                                      .encode())
            assert status_of(response) in (400, 404), response[:200]
        logs.assert_no_tracebacks("for one refused request")

    loop.run(scenario(), RUN_TIMEOUT)

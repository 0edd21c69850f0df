"""Fixtures of the fuzz tests: the loopback guard, one loop thread, the engine and client envs.

The environments are module-scoped: one engine (or fake engine and client) serves every
example of a module's properties, which is what a long-running engine meets, and keeps the
whole directory fast. Examples reach them through ``loop.run(check(...), timeout)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fuzz_support import RUN_TIMEOUT, LogWatch, LoopbackGuard, LoopThread
from fuzz_targets import ClientEnv, EngineEnv


@pytest.fixture(scope="module", autouse=True)
def loopback_guard() -> Iterator[LoopbackGuard]:
    """No connection and no name lookup beyond 127.0.0.1, in any thread, for the module.

    A refused attempt is recorded even when the code that made it swallowed the error (the
    engine turns a failed HTTP call into an error result): the module then fails.
    """
    with LoopbackGuard() as guard:
        yield guard
    assert not guard.violations, f"non-loopback connection attempts: {guard.violations}"


@pytest.fixture(autouse=True)
def no_off_machine_attempt(loopback_guard: LoopbackGuard) -> Iterator[None]:
    """Fail the very test that attempted a non-loopback connection."""
    before = len(loopback_guard.violations)
    yield
    assert loopback_guard.violations[before:] == [], "a non-loopback connection was attempted"


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def engine_env(loop: LoopThread) -> Iterator[EngineEnv]:
    with LogWatch() as logs:
        env = loop.run(EngineEnv().start(), RUN_TIMEOUT)
    logs.assert_no_tracebacks("while starting the engine")
    try:
        yield env
    finally:
        loop.run(env.stop(), RUN_TIMEOUT)


@pytest.fixture(scope="module")
def client_env(loop: LoopThread) -> Iterator[ClientEnv]:
    env = loop.run(ClientEnv().start(), RUN_TIMEOUT)
    try:
        yield env
    finally:
        loop.run(env.stop(), RUN_TIMEOUT)

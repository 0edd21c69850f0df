"""Every script in examples/ runs to its end on its own, against an engine it starts itself.

Each runs in a fresh interpreter with ``III_URL`` unset (so the scripts start their engine),
must exit 0 within ``TIMEOUT_S`` and print what shows it did its job. The scripts are started
together, a few at a time, when the first test asks for a result.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 90

# script -> arguments (short modes where a script has one), lines its output must contain.
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "demo.py": ([], ["demo::add   -> {'sum': 42}", "closed cleanly"]),
    "channel_pipeline.py": (["--count", "20000"],
                            ["producer: {'written': 20000}", "s0: 5000 readings"]),
    "monitor.py": (["--seconds", "3"], ["+ worker   visitor-0", "monitor::ping"]),
    "compat_worker.py": ([], ["math::add -> {'sum': 42}", "missing function -> function_not_found",
                              "reactive, piped -> 6"]),
    "two_workers.py": ([], ["order: {'item': 'pear', 'qty': 5, 'total': 20}",
                            "workers on the engine: orders-worker, prices-worker, shop-client",
                            "engine exit code: 0"]),
}


def run(script: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("III_URL", "III_TOKEN")}
    env["OTEL_ENABLED"] = "false"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    args, _ = EXPECTED[script]
    # Shown, so that a pipe or socket an example leaves open fails it (users copy them).
    return subprocess.run([sys.executable, "-W", "always::ResourceWarning",
                           str(ROOT / "examples" / script), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


_pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="examples")
_runs: dict[str, Future[subprocess.CompletedProcess[str]]] = {}


def result(script: str) -> subprocess.CompletedProcess[str]:
    if not _runs:
        for name in EXPECTED:
            _runs[name] = _pool.submit(run, name)
    return _runs[script].result()


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in (ROOT / "examples").glob("*.py")}
    assert scripts == set(EXPECTED), "add the new example to EXPECTED"


@pytest.mark.timeout(TIMEOUT_S * 3)
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str) -> None:
    done = result(script)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"examples/{script} exited with {done.returncode}\n{output}"
    assert "ResourceWarning" not in done.stderr, f"examples/{script} left something open\n{output}"
    for line in EXPECTED[script][1]:
        assert line in done.stdout, f"examples/{script} did not print {line!r}\n{output}"

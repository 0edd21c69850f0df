"""Run the compatibility corpus: each script once as written (official ``iii-sdk``) and once with
its import lines pointed at ``iii_rx.compat``.

The rewrite is deliberately small and explicit ("runs unchanged" means only import lines
differ):

* ``from iii import X`` / ``from iii.<mod> import X`` / ``from iii_helpers[.<mod>] import X``
  become ``from iii_rx.compat import X``;
* ``import iii`` becomes ``import iii_rx.compat as iii``, ``import iii.x as y`` becomes
  ``import iii_rx.compat as y``.

Every import of ``iii`` must sit between the ``# --- iii imports ---`` and
``# --- end iii imports ---`` markers, and nothing else in a script may change.

By hand, against any engine, e.g. the real Rust engine started with
``COMPAT_HTTP_TOKEN=compat-secret-token python benchmarks/rust_engine.py --port P --rest-port R``
(the HTTP-invoked script needs the token and private addresses, which that launcher allows; an
embedded engine also needs ``--http-secret-env COMPAT_HTTP_TOKEN``)::

    python tests/compat/compat_harness.py --url ws://127.0.0.1:49134 \
        [--rest-url http://127.0.0.1:3111] [--compat] [--stderr] [NAME ...]

and against the embedded engine (``--write-expected`` stores the official SDK's outputs)::

    python tests/compat/compat_harness.py --embedded [--compat] [--write-expected] [NAME ...]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPTS_DIR = HERE / "scripts"
EXPECTED_DIR = HERE / "expected"

BEGIN_MARKER = "# --- iii imports ---"
END_MARKER = "# --- end iii imports ---"

_FROM = re.compile(r"^(?P<indent>\s*)from (?:iii|iii_helpers)(?:\.[\w.]+)? import (?P<names>.+)$")
_IMPORT = re.compile(r"^(?P<indent>\s*)import (?P<module>iii|iii_helpers)(?P<sub>\.[\w.]+)?"
                     r"(?: as (?P<alias>\w+))?\s*$")
_MENTION = re.compile(r"^\s*(?:from|import)\s+(?:iii|iii_helpers)\b")

#: Environment of every script run; the engine's URL is added per run.
BASE_ENV = {"OTEL_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
#: Variables of the caller that would change a script's behaviour (docs/protocol.md §1.4).
SCRUBBED = ("III_URL", "III_TOKEN", "III_NAMESPACE", "III_WORKER_NAME", "III_ISOLATION")
#: Secret an HTTP-invoked function of the corpus names; the *engine* must see it
#: (docs/protocol.md §9.1).
HTTP_TOKEN_ENV = "COMPAT_HTTP_TOKEN"
HTTP_TOKEN_VALUE = "compat-secret-token"
#: Where scripts that make HTTP requests find the engine's REST API (http triggers).
REST_URL_ENV = "COMPAT_REST_URL"


class RewriteError(ValueError):
    """A script's imports are not in the shape the rewrite supports."""


def to_compat(source: str) -> str:
    """The script with its ``iii`` import lines pointed at ``iii_rx.compat``."""
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    inside = False
    changed = 0
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped == BEGIN_MARKER:
            inside = True
        elif stripped == END_MARKER:
            inside = False
        elif _MENTION.match(line):
            if not inside:
                raise RewriteError(f"line {number}: iii import outside the marked block")
            line = _rewrite_line(line, number)
            changed += 1
        out.append(line)
    if inside:
        raise RewriteError("the import block is not closed")
    if changed == 0:
        raise RewriteError("no iii import found")
    return "".join(out)


def _rewrite_line(line: str, number: int) -> str:
    newline = "\n" if line.endswith("\n") else ""
    body = line.rstrip("\n")
    m = _FROM.match(body)
    if m:
        return f"{m['indent']}from iii_rx.compat import {m['names']}{newline}"
    m = _IMPORT.match(body)
    if m:
        if m["sub"] and not m["alias"]:
            raise RewriteError(f"line {number}: 'import {m['module']}{m['sub']}' needs an alias")
        alias = m["alias"] or m["module"]
        return f"{m['indent']}import iii_rx.compat as {alias}{newline}"
    raise RewriteError(f"line {number}: unsupported import form: {body.strip()!r}")


def scripts() -> list[Path]:
    return sorted(SCRIPTS_DIR.glob("[0-9][0-9]_*.py"))


@dataclass(frozen=True)
class Outcome:
    stdout: str
    stderr: str
    returncode: int

    def observable(self) -> str:
        """What must match between the two runs: stdout and the exit code (stderr, with its
        deprecation warnings and log lines, may differ)."""
        return f"{self.stdout}--- exit code: {self.returncode}\n"


def run_script(script: Path, url: str, workdir: Path, *, compat: bool,
               rest_url: str | None = None, timeout: float = 90.0) -> Outcome:
    """Run one script (rewritten when ``compat``) in ``workdir`` against the engine at ``url``
    (its REST API at ``rest_url``, for the scripts that make HTTP requests)."""
    source = script.read_text()
    if compat:
        source = to_compat(source)
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / script.name
    target.write_text(source)
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env.update(BASE_ENV)
    env["III_URL"] = url
    if rest_url is not None:
        env[REST_URL_ENV] = rest_url
    env["HOME"] = str(workdir)  # the official SDK writes a process marker under ~/.iii
    try:
        proc = subprocess.run([sys.executable, str(target)], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        def text(v: bytes | str | None) -> str:
            return v.decode() if isinstance(v, bytes) else (v or "")
        return Outcome(text(exc.stdout), text(exc.stderr) + f"\n[timed out after {timeout}s]",
                       -9)
    return Outcome(proc.stdout, proc.stderr, proc.returncode)


def rest_url_of(handle: Any) -> str:
    """The REST API address of an embedded engine started with ``Engine.start_in_thread()``."""
    return f"http://127.0.0.1:{handle.engine.rest_port}"


def expected_path(script: Path) -> Path:
    return EXPECTED_DIR / f"{script.stem}.out"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="engine address, e.g. ws://127.0.0.1:49134")
    where.add_argument("--embedded", action="store_true",
                       help="start an embedded iii_rx engine per script")
    ap.add_argument("--rest-url", help="the engine's REST API with --url, e.g. http://127.0.0.1:3111")
    ap.add_argument("--compat", action="store_true", help="run the iii_rx.compat rewrite")
    ap.add_argument("--stderr", action="store_true", help="show stderr too")
    ap.add_argument("--write-expected", action="store_true",
                    help="store each run's output as the expected output (use with --embedded)")
    ap.add_argument("names", nargs="*", help="script name prefixes (default: all)")
    args = ap.parse_args(argv)
    chosen = [s for s in scripts()
              if not args.names or any(s.name.startswith(n) for n in args.names)]
    failures = 0
    with tempfile.TemporaryDirectory(prefix="iii-compat-") as tmp:
        for script in chosen:
            if args.embedded:
                from iii_rx.engine import Engine

                os.environ.setdefault(HTTP_TOKEN_ENV, HTTP_TOKEN_VALUE)
                handle = Engine.start_in_thread(http_secret_env_allowlist=(HTTP_TOKEN_ENV,))
                try:
                    outcome = run_script(script, handle.url, Path(tmp) / script.stem,
                                         compat=args.compat, rest_url=rest_url_of(handle))
                finally:
                    handle.stop()
            else:
                outcome = run_script(script, args.url, Path(tmp) / script.stem,
                                     compat=args.compat, rest_url=args.rest_url)
            print(f"===== {script.name}")
            print(outcome.observable(), end="")
            if args.stderr:
                print("----- stderr\n" + outcome.stderr)
            expected = expected_path(script)
            if args.write_expected:
                EXPECTED_DIR.mkdir(exist_ok=True)
                expected.write_text(outcome.observable())
            elif expected.exists() and expected.read_text() != outcome.observable():
                failures += 1
                print("!!!!! differs from", expected.relative_to(HERE))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

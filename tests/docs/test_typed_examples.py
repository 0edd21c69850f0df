"""Examples of the docs that typed code copies pass ``mypy --strict`` (test_snippets.py runs
them; this checks their types). Each is found by a line of it, so that moving it on its page
does not break the check; a prelude declares what the page defined before it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """\
from typing import Any
import iii_rx
iii: iii_rx.Client
def resize(data: Any) -> Any: ...
"""

EXAMPLES = [("docs/client.md", 'iii.function("images::resize")')]
"""(page, a line of the ```python block to check)."""


def _block(page: str, line: str) -> str:
    blocks = (ROOT / page).read_text().split("```python\n")[1:]
    found = [block.split("```", 1)[0] for block in blocks if line in block]
    assert len(found) == 1, f"{page}: {len(found)} python blocks hold {line!r}"
    return found[0]


@pytest.mark.parametrize(("page", "line"), EXAMPLES)
def test_an_example_passes_mypy_strict(page: str, line: str, tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(PRELUDE + _block(page, line))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file", "",
         str(example)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert checked.returncode == 0, f"{page}, block with {line!r}:\n{checked.stdout}"

"""pytest plugin of the floors run (``make floors``): leave out what needs the official iii-sdk.

The floors run installs every dependency at the lowest version ``pyproject.toml`` allows. The
official SDK (``iii``, ``iii_helpers``), the interop peer of some tests, needs newer versions
than some of those floors (``opentelemetry-api>=1.25``), so it is not installed there. Where it
is missing, a test module importing it at the top is not collected, and a test (or fixture)
that imports it is skipped, instead of both failing on the import.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Generator
from pathlib import Path

import pytest

OFFICIAL = frozenset({"iii", "iii_helpers"})
"""The official SDK's packages."""

_MISSING = any(importlib.util.find_spec(name) is None for name in OFFICIAL)
_TOP_LEVEL_IMPORT = re.compile(r"^(?:import|from) (?:iii|iii_helpers)\b", re.MULTILINE)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if _MISSING and collection_path.suffix == ".py" and collection_path.is_file():
        if _TOP_LEVEL_IMPORT.search(collection_path.read_text(encoding="utf-8")):
            return True
    return None


def _skip_without_official() -> Generator[None, None, None]:
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name in OFFICIAL:
            pytest.skip(f"needs the official iii-sdk ({exc.name}), not installed on the floors")
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _skip_without_official())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _skip_without_official())

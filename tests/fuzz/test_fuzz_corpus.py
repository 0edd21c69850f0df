"""Replay every kept input of ``tests/fuzz/corpus/`` through its target's check.

A file is one input that once failed (found by ``run_fuzz.py`` or written by hand for a
reported defect). Its ``"xfail"`` key names a reported, unfixed defect: the replay is then a
strict xfail (it flips to a failure once the defect is fixed; remove the key then). Its
``"strict": true`` key replays it with no tolerance for known defects (it was found with
``--include-known``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz_support import CORPUS_DIR, RUN_TIMEOUT, LoopThread, corpus_files, load_corpus_file
from fuzz_targets import (
    CLIENT_CHECKS,
    ENGINE_CHECKS,
    LOOP_CHECKS,
    PURE_CHECKS,
    TARGETS,
    strict_checks,
)


def _param(path: Path) -> object:
    entry = load_corpus_file(path)
    marks = []
    if entry.get("xfail"):
        marks.append(pytest.mark.xfail(strict=True, reason=str(entry["xfail"])))
    return pytest.param(path, id=f"{path.parent.name}/{path.stem}", marks=marks)


FILES = corpus_files()


def test_the_corpus_is_well_formed() -> None:
    """Every directory is a target, every file names its directory's target and loads."""
    assert FILES, "the kept corpus is empty"
    for directory in CORPUS_DIR.iterdir():
        assert directory.is_dir() and directory.name in TARGETS, directory
    for path in FILES:
        entry = load_corpus_file(path)
        assert entry["target"] == path.parent.name, path
        assert entry["messages"], path
        assert isinstance(entry.get("note"), str), path


@pytest.mark.parametrize("path", [_param(p) for p in FILES])
def test_kept_input_still_passes(path: Path, request: pytest.FixtureRequest,
                                 loop: LoopThread) -> None:
    entry = load_corpus_file(path)
    target, messages = entry["target"], entry["messages"]
    with strict_checks(bool(entry.get("strict"))):
        if target in PURE_CHECKS:
            PURE_CHECKS[target](messages)
        elif target in LOOP_CHECKS:
            loop.run(LOOP_CHECKS[target](messages), RUN_TIMEOUT)
        elif target in ENGINE_CHECKS:
            env = request.getfixturevalue("engine_env")
            loop.run(ENGINE_CHECKS[target](env, messages), RUN_TIMEOUT)
        elif target in CLIENT_CHECKS:
            env = request.getfixturevalue("client_env")
            loop.run(CLIENT_CHECKS[target](env, messages), RUN_TIMEOUT)
        else:
            pytest.fail(f"{path}: unknown target {target!r}")

"""The ``*`` wildcard of RBAC filters and grants: the same answers as an anchored regular
expression, and no backtracking on a long function id a peer sends (the guard runs on the
engine's loop, once per call)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iii_rx.engine.rbac_config import wildcard_matches


def by_regex(pattern: str, value: str) -> bool:
    parts = (".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern))
    return re.fullmatch("".join(parts), value, re.S) is not None


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("orders::*", "orders::create", True),
    ("orders::*", "orders::", True),
    ("orders::*", "order::create", False),
    ("*::internal", "a::b::internal", True),
    ("*::internal", "internal", False),
    ("a*a", "a", False),
    ("a*a", "aa", True),
    ("*::x::*::y::*", "p::x::q::y::r", True),
    ("*::x::*::y::*", "p::y::q::x::r", False),
    ("**", "", True),
    ("a**b", "ab", True),
    ("exact", "exact", True),
    ("exact", "exactly", False),
    ("*\n*", "line\nbreak", True),
])
def test_known_answers(pattern: str, value: str, expected: bool) -> None:
    assert wildcard_matches(pattern, value) is expected
    assert by_regex(pattern, value) is expected


@given(st.text("ab:*", max_size=8), st.text("ab:", max_size=12))
def test_the_same_answers_as_an_anchored_regex(pattern: str, value: str) -> None:
    assert wildcard_matches(pattern, value) is by_regex(pattern, value)


@pytest.mark.timeout(60)
def test_a_long_id_against_a_pattern_of_several_stars_does_not_backtrack() -> None:
    """A regular expression takes hours on this megabyte (it took seconds at 80 KB)."""
    hostile = "::x:" * 250_000
    assert not wildcard_matches("*::x::*::y::*", hostile)
    assert wildcard_matches("*::x::*::y::*", hostile + ":x::y::")

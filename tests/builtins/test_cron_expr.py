"""The cron dialect of the Rust engine (its ``cron`` crate 0.15): parsing and fire times."""

from __future__ import annotations

import datetime as dt

import pytest

from iii_rx.engine.workers.cron import rfc3339
from iii_rx.engine.workers.cron_expr import CronError, parse

UTC = dt.timezone.utc
NOON = dt.datetime(2024, 5, 1, 12, 0, 5, 300_000, tzinfo=UTC)  # a Wednesday


def fires(expression: str, after: dt.datetime = NOON, count: int = 3) -> list[str]:
    schedule, out, t = parse(expression), [], after
    for _ in range(count):
        nxt = schedule.next_after(t)
        assert nxt is not None
        out.append(nxt.strftime("%Y-%m-%d %a %H:%M:%S"))
        t = nxt
    return out


def test_seconds_come_first() -> None:
    assert fires("* * * * * *") == ["2024-05-01 Wed 12:00:06", "2024-05-01 Wed 12:00:07",
                                    "2024-05-01 Wed 12:00:08"]
    assert fires("*/20 * * * * *") == ["2024-05-01 Wed 12:00:20", "2024-05-01 Wed 12:00:40",
                                       "2024-05-01 Wed 12:01:00"]
    assert fires("0 */5 * * * *", count=2) == ["2024-05-01 Wed 12:05:00",
                                               "2024-05-01 Wed 12:10:00"]


def test_day_of_week_counts_from_sunday_as_one() -> None:
    assert fires("0 0 0 * * 1", count=2) == ["2024-05-05 Sun 00:00:00",
                                             "2024-05-12 Sun 00:00:00"]
    assert fires("0 0 9 * * MON-FRI", count=3) == ["2024-05-02 Thu 09:00:00",
                                                   "2024-05-03 Fri 09:00:00",
                                                   "2024-05-06 Mon 09:00:00"]
    assert fires("0 0 0 * * sat", count=1) == ["2024-05-04 Sat 00:00:00"]


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    assert fires("0 0 0 13 * FRI", count=2) == ["2024-09-13 Fri 00:00:00",
                                                "2024-12-13 Fri 00:00:00"]


def test_lists_ranges_steps_names_years_and_shorthands() -> None:
    assert fires("0 30 9,15 1,15 May-Aug * 2024/2", count=3) == [
        "2024-05-01 Wed 15:30:00", "2024-05-15 Wed 09:30:00", "2024-05-15 Wed 15:30:00"]
    assert fires("10-20/5 * * * * *") == ["2024-05-01 Wed 12:00:10", "2024-05-01 Wed 12:00:15",
                                          "2024-05-01 Wed 12:00:20"]
    assert fires("50/5 * * * * *", count=3) == ["2024-05-01 Wed 12:00:50",
                                                "2024-05-01 Wed 12:00:55",
                                                "2024-05-01 Wed 12:01:50"]
    assert fires("0 0 0 ? * ?", count=1) == ["2024-05-02 Thu 00:00:00"]
    assert fires("@weekly", count=1) == ["2024-05-05 Sun 00:00:00"]
    assert fires("@hourly", count=1) == ["2024-05-01 Wed 13:00:00"]
    assert fires("0 0 0 29 2 *", count=2) == ["2028-02-29 Tue 00:00:00",
                                              "2032-02-29 Sun 00:00:00"]
    assert parse("0 0 0 1 1 * 2000").next_after(NOON) is None


@pytest.mark.parametrize(("expression", "reason"), [
    ("* * * * *", "got 5; a five-field crontab line needs a seconds field first"),
    ("0 0 * * * * * *", "got 8"),
    ("", "empty"),
    ("0 0 0 * * 0", "days of week must be between 1 and 7, got 0 (1 = Sunday"),
    ("60 * * * * *", "seconds must be between 0 and 59"),
    ("*/0 * * * * *", "cannot be zero"),
    ("*/60 * * * * *", "between 1 and 59"),
    ("? * * * * *", "cannot read '?'"),
    ("5-1 * * * * *", "backwards"),
    ("0 0 0 L * *", "'L' is not valid"),
    ("0 0 0 * * wed/2", "a step needs"),
    ("0 0 0 * foo *", "'foo' is not valid in the months field"),
    ("1,,2 * * * * *", "empty item"),
    ("* * * * * * 1969", "years must be between 1970 and 2100"),
    ("@often", "unknown shorthand"),
    ("1-x * * * * *", "invalid range"),
    # Past 4300 digits int() raised its own ValueError: the binding failed with a traceback.
    ("0 " + "1" * 5000 + " * * * *", "minutes must be between 0 and 59, got a 5000-digit"),
    ("0 */" + "9" * 5000 + " * * * *", "the step must be between 1 and 59"),
    ("0 1-" + "9" * 5000 + " * * * *", "got a 5000-digit number"),
    ("0 0 0 1 1 * " + "2" * 5000, "years must be between 1970 and 2100"),
])
def test_refused_with_the_reason(expression: str, reason: str) -> None:
    with pytest.raises(CronError) as caught:
        parse(expression)
    assert reason in str(caught.value)


def test_leading_zeros_still_read() -> None:
    assert parse("0 000000000000005 * * * *").minutes == frozenset({5})


def test_rfc3339_like_the_rust_engine() -> None:
    assert rfc3339(dt.datetime(2025, 1, 1, 2, 0, 0, tzinfo=UTC)) == "2025-01-01T02:00:00+00:00"
    assert rfc3339(dt.datetime(2025, 1, 1, 2, 0, 0, 120_000, tzinfo=UTC)) == (
        "2025-01-01T02:00:00.120+00:00")
    assert rfc3339(dt.datetime(2025, 1, 1, 2, 0, 0, 1_234, tzinfo=UTC)) == (
        "2025-01-01T02:00:00.001234+00:00")
    offset = dt.timezone(dt.timedelta(hours=2))
    assert rfc3339(dt.datetime(2025, 1, 1, 4, 0, tzinfo=offset)) == "2025-01-01T02:00:00+00:00"

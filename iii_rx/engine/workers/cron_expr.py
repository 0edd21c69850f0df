"""Cron expressions as the Rust engine reads them (its ``cron`` crate, 0.15), written here.

Why not ``croniter``: it reads the Vixie dialect (five fields, Sunday = 0, day-of-month OR
day-of-week, seconds last or behind a flag) and would need translating; the Rust engine's
dialect is small, and a parser of our own refuses exactly what the Rust engine refuses.

The dialect, always in UTC::

    second minute hour day-of-month month day-of-week [year]
    0-59   0-59   0-23 1-31         1-12  1-7          1970-2100
                                    JAN-DEC SUN-SAT

* six fields, or seven with a year; the first is **seconds** (``0 */5 * * * *`` is every five
  minutes). A five-field crontab line is refused with a hint.
* day of week: ``1`` is Sunday, ``7`` Saturday (``SUN``-``SAT``, any case, full names too);
  ``0`` is refused, as in the Rust engine.
* each field: ``*``, a value, a range ``a-b`` (``MON-FRI``), a list ``a,b,c``, and steps
  ``*/n``, ``a/n`` (from ``a`` to the end), ``a-b/n``; ``?`` means ``*`` in the two day
  fields. The step is 1 to the field's maximum.
* day of month and day of week must **both** match (no Vixie OR).
* ``@yearly``, ``@monthly``, ``@weekly`` (Sunday), ``@daily``, ``@hourly``.

:func:`parse` raises :class:`CronError` with the reason; :meth:`CronSchedule.next_after`
gives the first fire time after an instant (``None`` after 2100).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["CronError", "CronSchedule", "parse"]

UTC = dt.timezone.utc


class CronError(ValueError):
    """An expression the Rust engine would refuse; the message says why."""


@dataclass(frozen=True)
class _Unit:
    name: str
    lo: int
    hi: int
    names: dict[str, int] | None = None
    any_ok: bool = False

    @property
    def full(self) -> frozenset[int]:
        return frozenset(range(self.lo, self.hi + 1))


def _names(*groups: tuple[str, ...]) -> dict[str, int]:
    """``{name: n}`` where ``n`` is the group's position from 1."""
    return {name: index for index, group in enumerate(groups, 1) for name in group}


_MONTHS = _names(("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
                 ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
                 ("sep", "september"), ("oct", "october"), ("nov", "november"),
                 ("dec", "december"))
_DAYS = _names(("sun", "sunday"), ("mon", "monday"), ("tue", "tues", "tuesday"),
               ("wed", "wednesday"), ("thu", "thurs", "thursday"), ("fri", "friday"),
               ("sat", "saturday"))
_UNITS = (
    _Unit("seconds", 0, 59), _Unit("minutes", 0, 59), _Unit("hours", 0, 23),
    _Unit("days of month", 1, 31, any_ok=True), _Unit("months", 1, 12, _MONTHS),
    _Unit("days of week", 1, 7, _DAYS, any_ok=True), _Unit("years", 1970, 2100),
)
_SHORTHANDS = {
    "@yearly": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *", "@weekly": "0 0 0 * * 1",
    "@daily": "0 0 0 * * *", "@hourly": "0 0 * * * *",
}


@dataclass(frozen=True)
class CronSchedule:
    """A parsed expression: the allowed values of each field."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    """1 = Sunday ... 7 = Saturday."""
    years: frozenset[int]

    def matches(self, when: dt.datetime) -> bool:
        """Whether ``when`` (UTC, whole second) is a fire time."""
        return (when.second in self.seconds and when.minute in self.minutes
                and when.hour in self.hours and self._day_ok(when)
                and when.month in self.months and when.year in self.years)

    def _day_ok(self, when: dt.datetime) -> bool:
        return (when.day in self.days_of_month
                and when.isoweekday() % 7 + 1 in self.days_of_week)

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first fire time strictly after ``after`` (aware, or naive UTC), or ``None``."""
        if after.tzinfo is not None:
            after = after.astimezone(UTC).replace(tzinfo=None)
        t = after.replace(microsecond=0) + dt.timedelta(seconds=1)
        last_year = max(self.years)
        while t.year <= last_year:
            if t.year not in self.years:
                t = dt.datetime(t.year + 1, 1, 1)
            elif t.month not in self.months:
                t = _next_month(t)
            elif not self._day_ok(t):
                t = dt.datetime(t.year, t.month, t.day) + dt.timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + dt.timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) + dt.timedelta(minutes=1)
            elif t.second not in self.seconds:
                later = [s for s in self.seconds if s > t.second]
                t = (t.replace(second=min(later)) if later
                     else t.replace(second=0) + dt.timedelta(minutes=1))
            else:
                return t.replace(tzinfo=UTC)
        return None


def _next_month(t: dt.datetime) -> dt.datetime:
    return dt.datetime(t.year + 1, 1, 1) if t.month == 12 else dt.datetime(t.year, t.month + 1, 1)


def parse(expression: str) -> CronSchedule:
    """Parse ``expression``; raises :class:`CronError` saying what is wrong."""
    if not isinstance(expression, str):
        raise CronError("the cron expression must be a string")
    text = expression.strip()
    if not text:
        raise CronError("the cron expression is empty")
    fields = _SHORTHANDS.get(text, text).split()
    if text.startswith("@") and text not in _SHORTHANDS:
        raise CronError(f"unknown shorthand {text!r} (use one of {', '.join(_SHORTHANDS)})")
    if len(fields) not in (6, 7):
        hint = ""
        if len(fields) == 5:
            hint = (f"; a five-field crontab line needs a seconds field first, e.g. "
                    f"'0 {' '.join(fields)}'")
        raise CronError(f"expected 6 or 7 fields (second minute hour day-of-month month "
                        f"day-of-week [year]), got {len(fields)}{hint}")
    if len(fields) == 6:
        fields.append("*")
    sets = [_field(value, unit) for value, unit in zip(fields, _UNITS, strict=True)]
    return CronSchedule(expression, *sets)


def _field(text: str, unit: _Unit) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"empty item in the {unit.name} field {text!r}")
        values |= _part(part, unit)
    return frozenset(values)


def _part(part: str, unit: _Unit) -> set[int]:
    base, slash, step_text = part.partition("/")
    if slash:
        if not _number(step_text):
            raise CronError(f"the step of {part!r} ({unit.name}) must be a number")
        step = _int(step_text, unit, "the step", 1)
        if step == 0:
            raise CronError(f"the step of {part!r} ({unit.name}) cannot be zero")
        if step > unit.hi:
            raise CronError(f"the step of {part!r} must be between 1 and {unit.hi} "
                            f"({unit.name})")
        if _number(base):
            start = _check(_int(base, unit), unit)
            return set(range(start, unit.hi + 1, step))
        if base.isalpha():
            raise CronError(f"a step needs '*', a number or a range before it, not {base!r} "
                            f"({unit.name})")
        return set(sorted(_base(base, unit, part))[::step])
    return _base(base, unit, part)


def _base(base: str, unit: _Unit, part: str) -> set[int]:
    if base == "*" or (base == "?" and unit.any_ok):
        return set(unit.full)
    if _number(base):
        return {_check(_int(base, unit), unit)}
    first, dash, last = base.partition("-")
    if dash:
        both_digits = _number(first) and _number(last)
        if both_digits:
            lo, hi = _check(_int(first, unit), unit), _check(_int(last, unit), unit)
        elif first.isascii() and first.isalpha() and last.isascii() and last.isalpha():
            lo, hi = _name(first, unit), _name(last, unit)
        else:
            raise CronError(f"invalid range {base!r} in the {unit.name} field")
        if lo > hi:
            raise CronError(f"invalid range {base!r} in the {unit.name} field: it runs "
                            "backwards")
        return set(range(lo, hi + 1))
    if base.isascii() and base.isalpha():
        return {_name(base, unit)}
    raise CronError(f"cannot read {part!r} in the {unit.name} field")


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _int(digits: str, unit: _Unit, what: str | None = None, lo: int | None = None) -> int:
    """The number ``digits`` (checked by :func:`_number`) writes. One of more than nine digits
    is out of every field's range, and past 4300 digits ``int()`` raises its own ValueError
    (the binding failed with a traceback): refused here, without converting it."""
    if len(digits.lstrip("0")) > 9:
        where = f" ({unit.name})" if what else ""
        raise CronError(f"{what or unit.name} must be between {unit.lo if lo is None else lo} "
                        f"and {unit.hi}, got a {len(digits)}-digit number{where}")
    return int(digits)


def _check(value: int, unit: _Unit) -> int:
    if value < unit.lo or value > unit.hi:
        extra = " (1 = Sunday ... 7 = Saturday, or SUN-SAT)" if unit.names is _DAYS else ""
        raise CronError(f"{unit.name} must be between {unit.lo} and {unit.hi}, got "
                        f"{value}{extra}")
    return value


def _name(name: str, unit: _Unit) -> int:
    value = unit.names.get(name.lower()) if unit.names else None
    if value is None:
        kind = "names" if unit.names else "no names"
        raise CronError(f"{name!r} is not valid in the {unit.name} field ({unit.name} take "
                        f"{kind})")
    return value

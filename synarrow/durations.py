"""Durations given by users (a resampling step, a retention age) as int microseconds.

Accepted: ``datetime.timedelta`` (and pandas ``Timedelta``, a subclass), ``numpy.timedelta64``
of a fixed unit (weeks down to nanoseconds; years and months have no fixed length), int
microseconds, strings of one or more ``<number><unit>`` parts: ``"10s"``, ``"1min"``,
``"1h30min"``, ``"500ms"``, ``"1.5h"``, ``"30d"``, ``"2w"``, and ISO 8601 durations of days,
hours, minutes and seconds (``"PT1H"``, ``"P1DT12H"``). Units (case-insensitive, except that
``M`` is refused because pandas reads it as a month): ``us`` / ``µs``, ``ms``, ``s`` /
``sec``, ``m`` / ``min``, ``h`` / ``hr``, ``d`` / ``day`` / ``days``, ``w``. A duration must
be a positive whole number of microseconds.

>>> parse_duration("1h30min"), parse_duration("500ms"), parse_duration(2_000_000)
(5400000000, 500000, 2000000)
"""

from __future__ import annotations

import datetime as _dt
import re
from fractions import Fraction
from typing import Any

import numpy as np

from synarrow.errors import InvalidArgumentError

__all__ = ["UNITS", "parse_duration"]

#: Microseconds per unit of a duration string (keys lower case).
UNITS: dict[str, int] = {
    "us": 1,
    "µs": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "sec": 1_000_000,
    "m": 60_000_000,
    "min": 60_000_000,
    "h": 3_600_000_000,
    "hr": 3_600_000_000,
    "d": 86_400_000_000,
    "day": 86_400_000_000,
    "days": 86_400_000_000,
    "w": 604_800_000_000,
}
_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zµ]+)\s*", re.IGNORECASE)
# Microseconds per numpy timedelta64 unit (years and months have no fixed length).
_NUMPY_UNITS = {
    "W": Fraction(604_800_000_000),
    "D": Fraction(86_400_000_000),
    "h": Fraction(3_600_000_000),
    "m": Fraction(60_000_000),
    "s": Fraction(1_000_000),
    "ms": Fraction(1_000),
    "us": Fraction(1),
    "ns": Fraction(1, 1_000),
}
_ISO = re.compile(
    r"P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
_ISO_UNITS = {"d": "d", "h": "h", "m": "min", "s": "s"}
_HINT = "e.g. '10s', '1min', '1h30min', '500ms', '1d', a timedelta or int microseconds"
_INT64_MAX = (1 << 63) - 1


def _check(us: int | Fraction, value: Any, what: str) -> int:
    if us != int(us):
        raise InvalidArgumentError(
            f"{what} {value!r:.60} is not a whole number of microseconds", hint=_HINT
        )
    if us <= 0:
        raise InvalidArgumentError(f"{what} must be a positive duration, got {value!r:.60}")
    if us > _INT64_MAX:
        raise InvalidArgumentError(f"{what} {value!r:.60} is too long (int64 microseconds)")
    return int(us)


def _parse_text(text: str, what: str) -> int:
    total = Fraction(0)
    pos = 0
    stripped = text.strip()
    iso = _ISO.fullmatch(stripped) if stripped[:1] in "Pp" and len(stripped) > 1 else None
    if iso is not None and any(iso.groupdict().values()) and stripped[-1:] not in "Tt":
        for group, unit in _ISO_UNITS.items():
            if iso[group] is not None:
                total += Fraction(iso[group]) * UNITS[unit]
        return _check(total, text, what)
    while pos < len(stripped):
        m = _PART.match(stripped, pos)
        if m is None:
            raise InvalidArgumentError(f"{what} {text!r:.60} is not a duration", hint=_HINT)
        number, unit = m.groups()
        if unit == "M":
            raise InvalidArgumentError(
                f"{what} {text!r:.60}: 'M' is ambiguous (minutes or months)",
                hint="write 'min' for minutes; months have no fixed length",
            )
        scale = UNITS.get(unit.lower())
        if scale is None:
            raise InvalidArgumentError(
                f"{what} {text!r:.60} has an unknown unit {unit!r}",
                hint="units: " + ", ".join(UNITS),
            )
        total += Fraction(number) * scale
        pos = m.end()
    if pos == 0:
        raise InvalidArgumentError(f"{what} {text!r:.60} is not a duration", hint=_HINT)
    return _check(total, text, what)


def parse_duration(value: Any, what: str = "duration") -> int:
    """A positive duration as int microseconds (see the module docstring for the forms).

    ``what`` names the argument in the :class:`~synarrow.errors.InvalidArgumentError` raised
    for anything else (zero, negative, unparseable, a float, a bool, ``NaT``).
    """
    if isinstance(value, str):
        return _parse_text(value, what)
    if isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{what} must be a duration, got {value!r}", hint=_HINT)
    if isinstance(value, np.timedelta64):
        if np.isnat(value):
            raise InvalidArgumentError(f"{what} is NaT")
        unit, step = np.datetime_data(value.dtype)
        scale = _NUMPY_UNITS.get(unit)
        if scale is None:
            raise InvalidArgumentError(
                f"{what} {value!r:.60} is in {unit!r} units, which have no fixed length",
                hint=_HINT,
            )
        return _check(int(value.astype(np.int64)) * step * scale, value, what)
    if isinstance(value, _dt.timedelta):
        if type(value).__name__ == "NaTType":
            raise InvalidArgumentError(f"{what} is NaT")
        us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        nanos = getattr(value, "nanoseconds", 0)  # pandas Timedelta keeps nanoseconds
        return _check(Fraction(us) + Fraction(nanos, 1000), value, what)
    if isinstance(value, (int, np.integer)):
        return _check(int(value), value, what)
    if type(value).__name__ == "NaTType":
        raise InvalidArgumentError(f"{what} is NaT")
    raise InvalidArgumentError(
        f"{what} must be a duration, got {type(value).__name__} {value!r:.60}", hint=_HINT
    )

"""Durations given by users (a retention ``max_age``, a resampling step) as microseconds.

:func:`parse_duration` accepts a ``datetime.timedelta``, a ``numpy.timedelta64`` of any fixed
unit, int microseconds or a string: a number followed by a unit (``"90s"``, ``"10min"``,
``"1.5h"``, ``"30d"``, ``"2w"``), several of them in a row (``"1h30min"``), or an ISO 8601
duration with days, hours, minutes and seconds only (``"PT1H"``, ``"P1DT12H"``). Months and
years have no fixed length and are refused.

>>> parse_duration("1h30min", "every")
5400000000
>>> parse_duration(1_000, "max_age")
1000
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

import numpy as np

from synarrow.errors import InvalidArgumentError

__all__ = ["UNITS", "parse_duration"]

#: Microseconds per unit of a duration string (``us`` and ``µs`` both mean microseconds).
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
_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zµ]+)", re.IGNORECASE)
_ISO = re.compile(
    r"P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
_INT64_MAX = (1 << 63) - 1
_MAX_TEXT = 100


def _from_text(text: str, what: str) -> int:
    original = text
    text = text.strip()
    if len(text) > _MAX_TEXT:
        raise InvalidArgumentError(f"{what}: a duration string of {len(text)} characters")
    iso = _ISO.fullmatch(text) if text[:1] in ("P", "p") and len(text) > 1 else None
    if iso is not None and any(iso.groupdict().values()) and not text.upper().endswith("T"):
        parts = [(iso[g], u) for g, u in (("d", "d"), ("h", "h"), ("m", "min"), ("s", "s"))]
        total = sum(float(n) * UNITS[u] for n, u in parts if n is not None)
        return round(total)
    pos = 0
    total_us = 0.0
    found = False
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            break
        unit = UNITS.get(m.group(2).lower()) if m.group(2) != "M" else None
        if unit is None:
            raise InvalidArgumentError(
                f"{what}: unknown unit {m.group(2)!r} in duration {original!r:.60} "
                f"(units: {', '.join(sorted(set(UNITS) - {'µs'}))})"
            )
        total_us += float(m.group(1)) * unit
        pos = m.end()
        found = True
    if not found or text[pos:].strip():
        raise InvalidArgumentError(
            f"{what}: cannot read {original!r:.60} as a duration (e.g. '90s', '10min', '1h', '30d')"
        )
    return round(total_us)


def parse_duration(value: Any, what: str = "duration") -> int:
    """A duration as int microseconds, greater than zero.

    ``value``: ``timedelta``, ``numpy.timedelta64`` (not in months or years), int
    microseconds (not ``bool``) or a string as described in the module documentation.
    ``what`` names the argument in the error: :class:`~synarrow.errors.InvalidArgumentError`
    for anything unreadable, zero or negative, or beyond the int64 range of microseconds.
    """
    if isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{what} must be a duration, got a bool")
    if isinstance(value, str):
        us = _from_text(value, what)
    elif isinstance(value, np.timedelta64):
        unit = np.datetime_data(value.dtype)[0]
        if np.isnat(value):
            raise InvalidArgumentError(f"{what}: NaT is not a duration")
        if unit in ("Y", "M", "generic"):
            raise InvalidArgumentError(f"{what}: a timedelta64 in {unit!r} has no fixed length")
        us = int(value.astype("timedelta64[us]").astype(np.int64))
    elif isinstance(value, _dt.timedelta):
        us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    elif isinstance(value, (int, np.integer)):
        us = int(value)
    else:
        raise InvalidArgumentError(
            f"{what} must be a timedelta, timedelta64, int microseconds or a string such as "
            f"'10min', got {type(value).__name__}"
        )
    if us <= 0:
        raise InvalidArgumentError(f"{what} must be greater than zero, got {value!r:.60}")
    if us > _INT64_MAX:
        raise InvalidArgumentError(f"{what} {value!r:.60} is beyond the int64 microsecond range")
    return us

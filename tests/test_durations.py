"""``synarrow.durations.parse_duration``: every accepted form, and clear errors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from synarrow.durations import UNITS, parse_duration
from synarrow.errors import InvalidArgumentError

S = 1_000_000


@pytest.mark.parametrize(
    ("value", "us"),
    [
        ("90s", 90 * S),
        ("10min", 600 * S),
        ("10m", 600 * S),
        ("12h", 12 * 3600 * S),
        ("30d", 30 * 86400 * S),
        ("2w", 14 * 86400 * S),
        ("250ms", 250_000),
        ("7us", 7),
        ("1.5h", 5400 * S),
        (" 1h 30min ", 5400 * S),
        ("1H", 3600 * S),
        ("PT1H", 3600 * S),
        ("P1DT12H", 36 * 3600 * S),
        ("PT0.5S", 500_000),
        (dt.timedelta(days=1, microseconds=3), 86400 * S + 3),
        (np.timedelta64(3, "h"), 3 * 3600 * S),
        (np.timedelta64(1500, "ns"), 1),
        (5, 5),
        (np.int64(9), 9),
    ],
)
def test_accepted(value: object, us: int) -> None:
    assert parse_duration(value, "every") == us


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "cannot read"),
        ("10", "cannot read"),
        ("h", "cannot read"),
        ("1h x", "cannot read"),
        ("1mo", "unknown unit"),
        ("1M", "unknown unit"),  # months have no fixed length
        ("P", "cannot read"),
        ("PT", "cannot read"),
        ("P1Y", "cannot read"),
        ("x" * 200, "characters"),
        ("0s", "greater than zero"),
        (0, "greater than zero"),
        (-1, "greater than zero"),
        (dt.timedelta(0), "greater than zero"),
        (True, "bool"),
        (1.5, "must be a timedelta"),
        (None, "must be a timedelta"),
        (np.timedelta64(1, "M"), "no fixed length"),
        (np.timedelta64("NaT"), "NaT"),
        ("99999999999999999d", "int64"),
    ],
)
def test_refused_with_the_argument_named(value: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as info:
        parse_duration(value, "max_age")
    assert "max_age" in str(info.value)


@given(n=st.integers(1, 10**6), unit=st.sampled_from(sorted(UNITS)))
def test_number_and_unit(n: int, unit: str) -> None:
    assert parse_duration(f"{n}{unit}", "d") == n * UNITS[unit]
    assert parse_duration(dt.timedelta(microseconds=n * UNITS[unit]), "d") == n * UNITS[unit]

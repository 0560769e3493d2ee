"""``synarrow.durations.parse_duration``: every accepted form, and clear errors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
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
        (np.timedelta64(2000, "ns"), 2),
        (5, 5),
        (np.int64(9), 9),
    ],
)
def test_accepted(value: object, us: int) -> None:
    assert parse_duration(value, "every") == us


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "not a duration"),
        ("10", "not a duration"),
        ("h", "not a duration"),
        ("1h x", "not a duration"),
        ("1mo", "unknown unit"),
        ("1M", "ambiguous"),  # minutes or months (which have no fixed length)
        ("P", "not a duration"),
        ("PT", "not a duration"),
        ("P1Y", "not a duration"),
        ("x" * 200, "not a duration"),
        ("0s", "positive"),
        (0, "positive"),
        (-1, "positive"),
        (dt.timedelta(0), "positive"),
        (True, "must be a duration"),
        (1.5, "must be a duration"),
        (None, "must be a duration"),
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


# -- forms used for resampling steps --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "us"),
    [
        ("10s", 10_000_000),
        ("1min", 60_000_000),
        ("1m", 60_000_000),
        ("1h", 3_600_000_000),
        ("1H", 3_600_000_000),
        ("1d", 86_400_000_000),
        ("2w", 1_209_600_000_000),
        ("500ms", 500_000),
        ("250us", 250),
        ("1.5h", 5_400_000_000),
        (" 1h 30min ", 5_400_000_000),
        ("1h30m15s", 5_415_000_000),
        (dt.timedelta(minutes=5), 300_000_000),
        (pd.Timedelta("1h"), 3_600_000_000),
        (np.timedelta64(10, "s"), 10_000_000),
        (np.timedelta64(2, "W"), 1_209_600_000_000),
        (np.timedelta64(3000, "ns"), 3),
        (np.timedelta64(1, "10s"), 10_000_000),
        (7, 7),
        (np.int32(9), 9),
    ],
)
def test_accepted_forms_of_resampling_steps(value, us) -> None:
    assert parse_duration(value, "every") == us


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (0, "positive"),
        (-3, "positive"),
        ("0h", "positive"),
        ("-1h", "not a duration"),
        ("h", "not a duration"),
        ("", "not a duration"),
        ("10", "not a duration"),
        ("1x", "unknown unit"),
        ("1M", "ambiguous"),
        ("0.5us", "whole number"),
        (np.timedelta64(1, "ns"), "whole number"),
        (np.timedelta64(1, "M"), "fixed length"),
        (np.timedelta64("NaT"), "NaT"),
        (pd.NaT, "NaT"),
        (True, "duration"),
        (1.5, "float"),
        (None, "duration"),
        (2**63, "too long"),
    ],
)
def test_refused(value, words) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_duration(value, "every")
    assert words in str(info.value) and "every" in str(info.value)


@given(n=st.integers(1, 10**6), unit=st.sampled_from(sorted(UNITS)))
def test_strings_scale_by_their_unit(n, unit) -> None:
    assert parse_duration(f"{n}{unit}") == n * UNITS[unit]
    if unit != "m" and unit.isascii():  # "M" is refused as ambiguous; "µ" has no capital
        assert parse_duration(f"{n} {unit.upper()}") == n * UNITS[unit]

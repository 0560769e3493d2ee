"""Time bounds given by users (synarrow.inputs.to_time_bound / time_range)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from synarrow.errors import InvalidArgumentError
from synarrow.inputs import time_range, to_time_bound

MAY_1 = 1_714_521_600_000_000  # 2024-05-01T00:00:00Z in microseconds


@pytest.mark.parametrize(
    "value",
    [
        MAY_1,
        np.int64(MAY_1),
        "2024-05-01",
        "2024-05-01T00:00:00Z",
        "2024-05-01T02:00:00+02:00",
        " 2024-05-01 00:00:00.000000 ",
        dt.datetime(2024, 5, 1),
        dt.datetime(2024, 5, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.date(2024, 5, 1),
        np.datetime64("2024-05-01T00:00:00", "ns"),
        np.datetime64("2024-05-01", "D"),
    ],
)
def test_every_accepted_form_means_the_same_instant(value):
    assert to_time_bound(value) == MAY_1


@pytest.mark.parametrize(
    "value", ["yesterday", "2024-13-01", 1.5, True, np.datetime64("NaT"), object()]
)
def test_unusable_times_are_refused_naming_the_argument(value):
    with pytest.raises(InvalidArgumentError, match="start"):
        to_time_bound(value, "start")


def test_range_checks_its_order():
    assert time_range(None, None) == (None, None)
    assert time_range("2024-05-01", "2024-05-01") == (MAY_1, MAY_1)  # empty, not an error
    with pytest.raises(InvalidArgumentError, match="after end"):
        time_range("2024-05-02", "2024-05-01")

"""Flight SQL table-name filters: LIKE semantics, matched in linear time, bounded length."""

from __future__ import annotations

import pytest

from synarrow.errors import InvalidArgumentError
from synarrow.flightsql.catalog import like


def test_like_patterns_match_as_sql_like() -> None:
    from synarrow.flightsql import catalog

    names = ["sensor/1", "sensor/12", "Sensor/1", "temp", "a_c", "abc"]
    assert catalog.matching(names, like("sensor/%")) == [True, True, False, False, False, False]
    assert catalog.matching(names, like("sensor/_")) == [True, False, False, False, False, False]
    assert catalog.matching(names, like("%")) == [True] * len(names)
    assert catalog.matching(names, like(None)) == [True] * len(names)
    assert catalog.matching(names, like("a_c")) == [False] * 4 + [True, True]


def test_pathological_pattern_is_answered() -> None:
    """``%_%_...#`` makes a backtracking regex exponential; the LIKE matcher is linear."""
    from synarrow.flightsql import catalog

    key = "sensors/building-a/floor-3/room-12/temperature-probe-0042"
    assert catalog.matching([key] * 100, like("%_" * 40 + "#")) == [False] * 100


def test_overlong_pattern_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="longer than"):
        like("%" * 100_000)

"""What experiment runs and model versions share in their stored records: checked names,
strict JSON, and times as integer microseconds since the epoch (UTC).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Any, overload

from synarrow.errors import InvalidArgumentError, InvalidValueError
from synarrow.inputs import EPOCH, datetime_to_us

__all__ = ["EPOCH", "check_name", "datetime_to_us", "now_us", "to_json", "us_to_datetime"]

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
_US = dt.timedelta(microseconds=1)


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


@overload
def us_to_datetime(us: int) -> dt.datetime: ...
@overload
def us_to_datetime(us: None) -> None: ...
def us_to_datetime(us: int | None) -> dt.datetime | None:
    """Microseconds since the epoch -> an aware UTC datetime (exact, no float rounding).

    >>> us_to_datetime(1_500_000)
    datetime.datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=datetime.timezone.utc)
    """
    if us is None:
        return None
    return EPOCH + us * _US


def check_name(kind: str, name: object, reserved: str) -> str:
    """Validate a model or experiment name used inside keys; returns it.

    Names are 1 to 200 characters of letters, digits, ``_ . -`` and ``/`` between
    non-empty segments; the segment ``reserved`` is refused so keys stay unambiguous.
    """
    if not isinstance(name, str):
        raise InvalidArgumentError(f"{kind} name must be a str, got {type(name).__name__}")
    parts = name.split("/") if isinstance(name, str) else []
    if (
        len(name) > 200
        or not _NAME.match(name)
        or reserved in parts
        or any(set(p) == {"."} for p in parts)
    ):
        raise InvalidArgumentError(
            f"invalid {kind} name {name!r}",
            hint=(
                "use 1-200 characters of letters, digits, '_', '.', '-', and '/' between "
                f"non-empty parts; no part may be {reserved!r}, '.' or '..'"
            ),
        )
    return name


def to_json(what: str, value: Any) -> str:
    """Strict JSON (no NaN / Infinity) or :class:`InvalidValueError` naming ``what``."""
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(
            f"{what} is not JSON-serialisable: {exc}",
            hint="use str, int, float (finite), bool, None, lists and dicts with str keys",
        ) from exc


def _json_default(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item) and type(obj).__module__ == "numpy":
        return item()
    raise TypeError(f"{type(obj).__name__} {obj!r:.60} is not JSON-serialisable")

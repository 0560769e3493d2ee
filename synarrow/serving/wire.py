"""What Flight handlers share: clean errors for clients, request size caps, batch cutting."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from synarrow.errors import (
    InvalidArgumentError,
    InvalidStateError,
    QueryTimeoutError,
    ReadOnlyError,
    SynaError,
)

# Batches of about this size stream fastest on loopback (whole-history messages stall gRPC).
STREAM_BATCH_BYTES = 8 * 1024 * 1024
MAX_REQUEST_BYTES = 1 << 20


def flight_error(exc: BaseException) -> flight.FlightError:
    """A Flight error carrying the message and the synarrow class name (no traceback)."""
    name = type(exc).__name__
    extra = json.dumps({"error": name}).encode()
    if isinstance(exc, ReadOnlyError):
        return flight.FlightUnauthorizedError(str(exc), extra)
    if isinstance(exc, QueryTimeoutError):
        return flight.FlightTimedOutError(str(exc), extra)
    if isinstance(exc, InvalidStateError):
        return flight.FlightUnavailableError(str(exc), extra)
    if isinstance(exc, SynaError):
        return flight.FlightServerError(str(exc), extra)
    if isinstance(exc, (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError)):
        return flight.FlightServerError(
            f"{name}: {exc}", json.dumps({"error": "SynaError"}).encode()
        )
    return flight.FlightInternalError(f"{name}: {exc}", extra)


def guard(fn: Any) -> Any:
    """Turn exceptions of a handler into clean Flight errors."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except flight.FlightError:
            raise
        except Exception as exc:
            raise flight_error(exc) from exc

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def check_size(raw: bytes, what: str, limit: int) -> bytes:
    """``raw`` if it is at most ``limit`` bytes, else a clear refusal."""
    if len(raw) > limit:
        raise InvalidArgumentError(
            f"{what} of {len(raw):,} bytes is over this server's limit of {limit:,} bytes"
        )
    return raw


def rebatch(table: pa.Table, batch_bytes: int = STREAM_BATCH_BYTES) -> pa.Table:
    """The table re-cut into zero-copy slices of about ``batch_bytes``."""
    if table.num_rows == 0:
        return table
    row_bytes = max(1, table.nbytes // table.num_rows)
    rows = max(1024, batch_bytes // row_bytes)
    return pa.Table.from_batches(table.to_batches(max_chunksize=rows), table.schema)


def guarded_batches(batches: Any) -> Any:
    """Batches from a generator, with synarrow errors turned into Flight errors on the way."""
    try:
        yield from batches
    except flight.FlightError:
        raise
    except Exception as exc:
        raise flight_error(exc) from exc


__all__ = [
    "MAX_REQUEST_BYTES",
    "STREAM_BATCH_BYTES",
    "check_size",
    "flight_error",
    "guard",
    "guarded_batches",
    "rebatch",
]

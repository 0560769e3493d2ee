"""What the reading layers (SQL, export, Flight) need of a database, and nothing more.

They read a :class:`~synarrow.engine.snapshot.ReadSnapshot`: every key of one query or one
export comes from the same moment, whatever writers do meanwhile. :class:`SnapshotSource`
is the narrow surface they use (``SynaDB`` has it), so they need not import the database
class, and the database may import them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from synarrow.columnar.schema import history_table
from synarrow.engine.snapshot import KeyView, ReadSnapshot
from synarrow.errors import KeyNotFoundError
from synarrow.inputs import check_key, key_list

__all__ = ["BatchSink", "SnapshotSource", "history", "select_snapshot"]


class SnapshotSource(Protocol):
    """A database as the reading layers see it (:class:`synarrow.SynaDB` is one)."""

    @property
    def path(self) -> Path:
        """The database directory."""

    @property
    def readonly(self) -> bool:
        """Whether the handle refuses writes."""

    @property
    def data_version(self) -> tuple[int, int]:
        """Changes whenever what a snapshot would hold may have changed."""

    def read_snapshot(self, keys: Iterable[str] | None = None) -> ReadSnapshot:
        """The live keys (or ``keys`` only) as of now."""

    def keys(self, pattern: str | None = None) -> list[str]:
        """Live keys in sorted order, those matching a glob if given."""

    def require_open(self) -> None:
        """Raise ``DatabaseClosedError`` if the handle is closed."""

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` when the handle closes (at once if it is closed)."""


class BatchSink(Protocol):
    """Where an import appends (:class:`synarrow.SynaDB` is one)."""

    @property
    def path(self) -> Path:
        """The database directory."""

    def append_batch(self, key: str, values: Any, *, timestamps: Any = None) -> int:
        """Append many values to one key; returns how many."""

    def append_batches(self, items: Iterable[tuple[str, Any, Any]]) -> int:
        """Append ``(key, values, timestamps)`` batches in one all-or-nothing write."""


def history(view: KeyView) -> pa.Table:
    """A key's history table (``ts``, ``value``) as of its snapshot, as ``db.get_history``.

    Columnar slices stay zero-copy views of the mapped files.
    """
    return history_table(view.chunks())


def select_snapshot(
    source: SnapshotSource, keys: Iterable[str] | None = None, pattern: str | None = None
) -> tuple[ReadSnapshot, list[str]]:
    """One snapshot of the keys to read, and those keys in reading order.

    ``keys``: these keys, each once in the order given (``KeyNotFoundError`` names any
    absent or deleted one); else the live keys matching ``pattern`` (a glob), sorted.
    """
    if keys is not None:
        chosen = list(dict.fromkeys(keys))
        snapshot = source.read_snapshot(chosen)
        missing = [k for k in chosen if k not in snapshot]
        if missing:
            raise KeyNotFoundError(f"keys not found: {', '.join(map(repr, missing[:5]))}")
        return snapshot, chosen
    if pattern is None:
        snapshot = source.read_snapshot()
        return snapshot, list(snapshot)
    named = source.keys(pattern)
    snapshot = source.read_snapshot(named)
    return snapshot, [k for k in named if k in snapshot]  # deleted meanwhile: left out


def select_named(
    source: SnapshotSource, keys_or_pattern: Any, what: str = "keys_or_pattern"
) -> tuple[ReadSnapshot, list[str]]:
    """:func:`select_snapshot` for what a user names: one key, a glob pattern (any of
    ``*?[``) or a list of keys. Named keys are validated (``InvalidKeyError``) and must
    exist (``KeyNotFoundError``); anything else is ``InvalidArgumentError`` naming ``what``."""
    if isinstance(keys_or_pattern, str) and any(c in keys_or_pattern for c in "*?["):
        return select_snapshot(source, pattern=keys_or_pattern)
    if isinstance(keys_or_pattern, str):
        keys = [keys_or_pattern]
    else:
        keys = key_list(keys_or_pattern, what)
    for k in keys:
        check_key(k)
    return select_snapshot(source, keys=keys)

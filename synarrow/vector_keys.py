"""The mapping between a vector store's string keys and usearch's uint64 labels.

usearch identifies vectors by uint64 labels. :class:`KeyMap` gives every key a label when it
is first inserted and keeps it while the key lives (a replaced vector keeps its label; a
deleted key's label is never handed out again), so a saved index and a saved map always
agree. Each key also carries a 64-bit fingerprint of its float32 vector, which lets a reopened
store find the keys whose vector changed in the log after the index was saved without
comparing vectors one by one.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

KEYS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.large_string(), nullable=False),
        pa.field("label", pa.uint64(), nullable=False),
        pa.field("fingerprint", pa.uint64(), nullable=False),
        pa.field("inserted", pa.int64(), nullable=False),
    ]
)
# Key maps saved before insert times were kept (their times read as unknown: 0).
KEYS_SCHEMA_1 = pa.schema(list(KEYS_SCHEMA)[:3])

_FP_ROWS = 8192

__all__ = ["KEYS_SCHEMA", "KEYS_SCHEMA_1", "KeyMap", "fingerprints"]


def _splitmix64(n: int) -> np.ndarray:
    """``n`` fixed pseudo-random odd uint64 multipliers (SplitMix64; stable across versions)."""
    with np.errstate(over="ignore"):
        z = (np.arange(1, n + 1, dtype=np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z | np.uint64(1)


_MULTIPLIERS: dict[int, np.ndarray] = {}


def fingerprints(vectors: np.ndarray) -> np.ndarray:
    """A 64-bit fingerprint of each row of a float32 matrix (a multiply-add hash of its bits).

    Equal rows give equal fingerprints; different rows collide with probability about 2**-64.
    """
    n, dims = vectors.shape
    mult = _MULTIPLIERS.get(dims)
    if mult is None:
        mult = _MULTIPLIERS[dims] = _splitmix64(dims)
    bits = np.ascontiguousarray(vectors, dtype=np.float32).view(np.uint32)
    out = np.empty(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for lo in range(0, n, _FP_ROWS):
            block = bits[lo : lo + _FP_ROWS].astype(np.uint64)
            block *= mult
            # uint64 sums wrap around, which is what a hash wants.
            out[lo : lo + _FP_ROWS] = block.sum(axis=1, dtype=np.uint64)
    return out


class KeyMap:
    """Keys <-> uint64 labels, plus each key's vector fingerprint.

    >>> m = KeyMap()
    >>> labels, replaced = m.assign(["a", "b"])
    >>> labels.tolist(), replaced.tolist(), m.key(1)
    ([0, 1], [], 'b')
    """

    def __init__(
        self,
        next_label: int = 0,
        *,
        entries: tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """An empty map whose next new key gets ``next_label``, or one holding ``entries``:
        ``(keys, labels, fingerprints, insert times)`` as saved by :meth:`to_arrow`
        (``ValueError`` if they are inconsistent)."""
        self._label_of: dict[str, int] = {}
        # Indexed by label; None marks a label whose key was deleted or replaced.
        self._key_of: list[str | None] = [None] * next_label
        self._fp = np.zeros(max(16, next_label), dtype=np.uint64)
        # Insert time of each label's vector, microseconds since the epoch (0: unknown).
        self._ts = np.zeros(len(self._fp), dtype=np.int64)
        self._version = 0
        self._sorted: tuple[list[str], np.ndarray] | None = None
        if entries is not None:
            keys, labels, fps, times = entries
            if len(labels) and int(labels.max()) >= next_label:
                raise ValueError("a label is beyond next_label")
            self._label_of = dict(zip(keys, labels.tolist()))
            if len(self._label_of) != len(keys) or len(np.unique(labels)) != len(labels):
                raise ValueError("duplicate keys or labels in the key map")
            for key, label in self._label_of.items():
                self._key_of[label] = key
            self._fp[labels.astype(np.intp)] = fps
            self._ts[labels.astype(np.intp)] = times

    # -- reading ---------------------------------------------------------------------------

    @property
    def next_label(self) -> int:
        """The label the next new key will get."""
        return len(self._key_of)

    @property
    def key_of(self) -> list[str | None]:
        """Label -> key (``None`` for labels no longer in use); read-only by convention."""
        return self._key_of

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, key: object) -> bool:
        return key in self._label_of

    def __iter__(self) -> Iterator[str]:
        return iter(self._label_of)

    def label(self, key: str) -> int | None:
        """The label of ``key``, or ``None``."""
        return self._label_of.get(key)

    def key(self, label: int) -> str | None:
        """The key holding ``label``, or ``None``."""
        return self._key_of[label] if 0 <= label < len(self._key_of) else None

    def fingerprint(self, key: str) -> int | None:
        """The stored fingerprint of ``key``'s vector, or ``None`` for an unknown key."""
        label = self._label_of.get(key)
        return None if label is None else int(self._fp[label])

    def fingerprints_of(self, labels: np.ndarray) -> np.ndarray:
        """The stored fingerprints of ``labels`` (uint64)."""
        return self._fp[np.asarray(labels, dtype=np.intp)]

    def inserted(self, labels: np.ndarray) -> np.ndarray:
        """Insert times (int64 microseconds, 0 when unknown) of ``labels``."""
        return self._ts[np.asarray(labels, dtype=np.intp)]

    def set_inserted(self, labels: np.ndarray, times: np.ndarray | int) -> None:
        """Record the insert times of the vectors just stored under ``labels``."""
        self._ts[np.asarray(labels, dtype=np.intp)] = times

    def unknown_times(self) -> np.ndarray:
        """Live labels whose insert time is unknown (0), ascending."""
        zero = np.flatnonzero(self._ts[: len(self._key_of)] == 0)
        key_of = self._key_of
        return np.array([i for i in zero.tolist() if key_of[i] is not None], dtype=np.int64)

    def latest_time(self) -> int:
        """The latest insert time ever recorded (deleted keys' included), or 0."""
        return int(self._ts.max()) if len(self._ts) else 0

    @property
    def version(self) -> int:
        """Grows whenever a key is added or removed (not when a vector is replaced)."""
        return self._version

    def labels(self) -> np.ndarray:
        """Every live label (uint64), in no particular order."""
        return np.fromiter(self._label_of.values(), dtype=np.uint64, count=len(self._label_of))

    def sorted_keys(self) -> tuple[list[str], np.ndarray]:
        """(keys in sorted order, their labels); cached until the next change."""
        if self._sorted is None:
            keys = sorted(self._label_of)
            get = self._label_of.__getitem__
            labels = np.fromiter((get(k) for k in keys), dtype=np.uint64, count=len(keys))
            self._sorted = (keys, labels)
        return self._sorted

    def prefix_range(self, prefix: str) -> tuple[list[str], np.ndarray]:
        """Keys starting with ``prefix`` (sorted) and their labels."""
        keys, labels = self.sorted_keys()
        if not prefix:
            return keys, labels
        lo = bisect.bisect_left(keys, prefix)
        # Every str starting with prefix sorts below prefix + the highest code point.
        hi = bisect.bisect_left(keys, prefix + "\U0010ffff", lo)
        while hi < len(keys) and keys[hi].startswith(prefix):
            hi += 1
        return keys[lo:hi], labels[lo:hi]

    # -- changing --------------------------------------------------------------------------

    def assign(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Labels for ``keys`` (distinct): existing keys keep theirs, new keys get fresh ones.

        Returns ``(labels, replaced)``: ``replaced`` are the labels already in use, whose old
        vectors the caller must drop from the index before adding the new ones.
        """
        label_of = self._label_of
        key_of = self._key_of
        out = np.empty(len(keys), dtype=np.uint64)
        replaced: list[int] = []
        for i, key in enumerate(keys):
            label = label_of.get(key)
            if label is None:
                label = label_of[key] = len(key_of)
                key_of.append(key)
            else:
                replaced.append(label)
            out[i] = label
        self._grow(len(key_of))
        if len(replaced) < len(keys):
            self._sorted = None
            self._version += 1
        return out, np.array(replaced, dtype=np.uint64)

    def set_fingerprints(self, labels: np.ndarray, fps: np.ndarray) -> None:
        """Record the fingerprints of the vectors just stored under ``labels``."""
        self._fp[labels.astype(np.intp)] = fps

    def remove(self, key: str) -> int | None:
        """Forget ``key``; returns its label, or ``None`` if it was unknown."""
        label = self._label_of.pop(key, None)
        if label is not None:
            self._key_of[label] = None
            self._sorted = None
            self._version += 1
        return label

    def remove_many(self, keys: Iterable[str]) -> np.ndarray:
        """Forget several keys; returns the labels of those that were known."""
        out = [label for label in (self.remove(k) for k in keys) if label is not None]
        return np.array(out, dtype=np.uint64)

    def _grow(self, n: int) -> None:
        if n > len(self._fp):
            bigger = np.zeros(max(n, 2 * len(self._fp)), dtype=np.uint64)
            bigger[: len(self._fp)] = self._fp
            self._fp = bigger
            times = np.zeros(len(bigger), dtype=np.int64)
            times[: len(self._ts)] = self._ts
            self._ts = times

    # -- persistence -----------------------------------------------------------------------

    def to_arrow(self) -> pa.Table:
        """The live mapping as a table (key, label, fingerprint), sorted by label."""
        labels = self.labels()
        labels.sort()
        key_of = self._key_of
        keys = [key_of[i] for i in labels.tolist()]
        return pa.Table.from_arrays(
            [
                pa.array(keys, pa.large_string()),
                pa.array(labels, pa.uint64()),
                pa.array(self._fp[labels.astype(np.intp)], pa.uint64()),
                pa.array(self._ts[labels.astype(np.intp)], pa.int64()),
            ],
            schema=KEYS_SCHEMA,
        )

    @classmethod
    def from_arrow(cls, table: pa.Table, next_label: int) -> KeyMap:
        """Rebuild a map saved by :meth:`to_arrow`; raises ``ValueError`` if it is inconsistent."""
        if table.schema.equals(KEYS_SCHEMA_1):
            unknown = pa.array(np.zeros(table.num_rows, np.int64))
            table = table.append_column(KEYS_SCHEMA.field("inserted"), unknown)
        if not table.schema.equals(KEYS_SCHEMA):
            raise ValueError(f"unexpected key map schema {table.schema}")
        keys = table.column("key").to_pylist()
        labels = table.column("label").to_numpy()
        fps = table.column("fingerprint").to_numpy()
        times = table.column("inserted").to_numpy()
        return cls(next_label, entries=(keys, labels, fps, times))

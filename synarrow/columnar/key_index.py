"""The committed key index kept for lookups: each key's slices, made into refs on demand.

Opening a database reads the key index into arrays (:func:`~synarrow.columnar.index.read_index`)
and keeps them here instead of building a Python object per key: a key's
:class:`~synarrow.columnar.slices.BaseRef` s are made when the key is first used
(:meth:`KeyIndex.find` is a binary search over the sorted keys, a few microseconds), so
opening costs the same for 1,000 keys as for 1,000,000 apart from the vectorised checks of the
index itself. Compaction reads the arrays to carry the slices of unchanged keys into the next
index without touching them one by one.
"""

from __future__ import annotations

import itertools
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synarrow.columnar.index import IndexRows
from synarrow.columnar.ipc import MappedFile, Span
from synarrow.columnar.schema import numeric_array, string_array
from synarrow.columnar.slices import BaseRef
from synarrow.errors import CorruptionError
from synarrow.log.format import Atom

__all__ = ["KeyIndex"]

_ATOMS = {int(a): a for a in Atom}


class KeyIndex:
    """The slices of every key of one committed index, in key order (validated arrays)."""

    def __init__(self, rows: IndexRows | None, files: list[MappedFile]) -> None:
        """Index ``rows`` over the mapped data ``files`` (in manifest order); ``None``: no
        index (a database never compacted)."""
        self.files = files
        if rows is None:
            self.key_array: pa.Array = string_array([])
            self.arrays: dict[str, np.ndarray] = {}
            self.checksummed = True
            self.timed = True
        else:
            self.key_array = rows.key_array
            self.arrays = rows.arrays
            self.checksummed = rows.checksummed
            self.timed = rows.timed
        n = len(self.key_array)
        starts = rows.starts if rows is not None else np.zeros(1, dtype=np.int64)
        self.starts = starts
        """Row of each distinct key's first slice, then the number of rows."""
        offsets = self.key_array.buffers()[1]
        data = self.key_array.buffers()[2]
        base = self.key_array.offset
        off = np.frombuffer(offsets, dtype=np.int64, count=base + n + 1)[base:] if n else None
        self._data = b"" if data is None else data.to_pybytes()
        # memoryviews of the offsets (their items are Python ints): no copy at open
        self._lo: Sequence[int] = array("q")
        self._hi: Sequence[int] = array("q")
        if off is not None:
            distinct = len(starts) == n + 1  # one slice per key: no gather needed
            self._lo = (off[:-1] if distinct else off[starts[:-1]]).data
            self._hi = (off[1:] if distinct else off[starts[:-1] + 1]).data
        self._range = range(len(starts) - 1)

    def __len__(self) -> int:
        """Distinct keys."""
        return len(self.starts) - 1

    @property
    def rows(self) -> int:
        """Slices (index rows) of all keys."""
        return len(self.key_array)

    def find(self, key_bytes: bytes) -> int:
        """The position of a key among the distinct keys, or -1 if the index lacks it."""
        data, lo, hi = self._data, self._lo, self._hi
        i = bisect_left(self._range, key_bytes, key=lambda j: data[lo[j] : hi[j]])
        if i < len(lo) and data[lo[i] : hi[i]] == key_bytes:
            return i
        return -1

    def row_range(self, position: int) -> tuple[int, int]:
        """Rows ``[first, end)`` of the key at ``position``."""
        return int(self.starts[position]), int(self.starts[position + 1])

    def refs(self, position: int) -> list[BaseRef]:
        """The slices of the key at ``position``, oldest first (:class:`CorruptionError`
        if two of them name the same rows: a crafted index would double its history)."""
        lo, hi = self.row_range(position)
        refs = self.refs_of_rows(lo, hi)
        if len(refs) > 1:
            _check_disjoint(self.key_at(position), refs)
        return refs

    def refs_of_rows(self, lo: int, hi: int) -> list[BaseRef]:
        """Refs for index rows ``[lo, hi)``."""
        a = self.arrays
        out = []
        for i in range(lo, hi):
            span = None
            if self.checksummed:
                span = Span(int(a["offset"][i]), int(a["length"][i]), int(a["xxh3"][i]))
            t0 = t1 = None
            if self.timed:
                t0, t1 = int(a["first_ts"][i]), int(a["last_ts"][i])
            atom = int(a["atom"][i])
            out.append(
                BaseRef(
                    self.files[int(a["file"][i])],
                    int(a["batch"][i]),
                    int(a["row"][i]),
                    int(a["count"][i]),
                    _ATOMS.get(atom),
                    _ATOMS[int(a["last_atom"][i])],
                    span,
                    t0,
                    t1,
                )
            )
        return out

    def key_at(self, position: int) -> str:
        """The key at ``position`` among the distinct keys."""
        return bytes(self._data[self._lo[position] : self._hi[position]]).decode("utf-8")

    def names(self, positions: np.ndarray | None = None) -> list[str]:
        """The distinct keys in order (or those at ``positions``)."""
        firsts = self.starts[:-1] if positions is None else self.starts[positions]
        names: list[str] = self.key_array.take(numeric_array(firsts, pa.int64())).to_pylist()
        return names

    def positions_of(self, keys: list[str]) -> np.ndarray:
        """Whether each distinct key is one of ``keys``, as a boolean array."""
        if not len(self) or not keys:
            return np.zeros(len(self), dtype=bool)
        firsts = self.key_array.take(numeric_array(self.starts[:-1], pa.int64()))
        hit = pc.is_in(firsts, value_set=string_array(keys))
        return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)

    def items(self) -> Iterator[tuple[str, list[BaseRef]]]:
        """Every key with its slices, in key order (in bulk: a few microseconds a key)."""
        if not self.rows:
            return
        a = self.arrays
        cols = {name: a[name].tolist() for name in a}
        spans: Iterator[Span | None] = itertools.repeat(None)
        if self.checksummed:
            # tuple.__new__(Span, (o, n, h)) builds the named tuples in C
            fields = zip(cols["offset"], cols["length"], cols["xxh3"])
            spans = map(tuple.__new__, itertools.repeat(Span), fields)
        no_ts = itertools.repeat(None)
        firsts = cols["first_ts"] if self.timed else no_ts
        lasts = cols["last_ts"] if self.timed else no_ts
        files = self.files
        atoms = _ATOMS
        rows = zip(
            cols["file"],
            cols["batch"],
            cols["row"],
            cols["count"],
            cols["atom"],
            cols["last_atom"],
            spans,
            firsts,
            lasts,
        )
        starts = self.starts.tolist()
        for key, lo, hi in zip(self.names(), starts, starts[1:]):
            refs = [
                BaseRef(files[f], b, r, n, atoms.get(at), atoms[la], span, t0, t1)
                for f, b, r, n, at, la, span, t0, t1 in itertools.islice(rows, hi - lo)
            ]
            if len(refs) > 1:
                _check_disjoint(key, refs)
            yield key, refs

    def counts(self) -> np.ndarray:
        """Entries of each distinct key."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        return np.add.reduceat(self.arrays["count"], self.starts[:-1])

    def verify_all(self) -> None:
        """Hash every slice's record batch now (``verify="open"``)."""
        if not self.checksummed:
            return
        a = self.arrays
        for f, b, o, n, h in zip(a["file"], a["batch"], a["offset"], a["length"], a["xxh3"]):
            self.files[int(f)].verify_batch(int(b), Span(int(o), int(n), int(h)))

    def check_bounds(self) -> None:
        """Every slice names an existing record batch and a byte range before the footer."""
        cols = self.arrays
        if not self.rows:
            return
        f = cols["file"]
        files = self.files
        batches = np.array([mf.num_batches for mf in files], dtype=np.int64)
        # the bound over all files first (exact for one file): per slice only if it fails
        if int(cols["batch"].max()) >= int(batches.min()):
            num_batches = batches[f]
            bad = np.flatnonzero(cols["batch"] >= num_batches)
            if len(bad):
                i = int(bad[0])
                raise CorruptionError(
                    f"columnar index names record batch {int(cols['batch'][i])} of "
                    f"{files[int(f[i])].path}, which has {int(num_batches[i])}"
                )
        if "offset" not in cols:
            return
        ends = np.array([mf.data_end for mf in files], dtype=np.int64)
        # offsets and lengths are non-negative (read_index), so the sum cannot wrap
        stops = cols["offset"] + cols["length"]
        if int(stops.max()) <= int(ends.min()):
            return
        bad = np.flatnonzero(stops > ends[f])
        if len(bad):
            i = int(bad[0])
            raise CorruptionError(
                f"columnar index: bytes {int(cols['offset'][i])}..{int(stops[i])} are outside "
                f"the record batches of {files[int(f[i])].path}"
            )


def _check_disjoint(key: str, refs: list[BaseRef]) -> None:
    """Refuse slices of one key that share rows of a record batch."""
    spans = sorted((id(r.file), r.batch, r.row, r.row + r.count) for r in refs)
    for (f0, b0, _, end), (f1, b1, start, _) in zip(spans, spans[1:]):
        if f0 == f1 and b0 == b1 and start < end:
            raise CorruptionError(
                f"columnar index: two slices of key {key!r} name the same rows of a record batch"
            )

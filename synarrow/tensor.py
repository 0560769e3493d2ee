"""``TensorEngine``: numpy / PyTorch tensors stored in a synarrow database.

Key semantics follow the reference system: ``put_tensor("train/", X)`` makes the rows of ``X``
the keys ``train/0``, ``train/1`` ... (zero-padded to the digits of the last row index, as
synadb pads), and ``get_tensor("train/*")`` gathers the keys a glob pattern selects, in key
order. The storage is the Arrow way: a tensor written in one call is **one** record, not one
entry per row, so reading it back is one zero-copy view of the memory-mapped history.

Layout of a stored tensor with prefix ``P``:

* ``P#tensor`` (the *data key*): the raw bytes of the tensor as ``fixed_size_list<float32>``
  vector rows, written with :meth:`SynaDB.append_batch`. A stored row holds ``pack`` tensor
  rows (``pack`` is 1 unless a row is not a multiple of 4 bytes), zero-padded at the very end.
  The bytes are reinterpreted, never converted, so every dtype round-trips bit for bit
  (NaN payloads included). For float32 tensors the vectors are the real values (DuckDB can
  read them); for other dtypes read them through this class.
* ``P#tensor-meta`` (the *meta key*): a JSON text value with shape, dtype and layout. It is
  written after the data, so a tensor exists only once it is complete: a crash half way
  through ``put_tensor`` leaves the previous state or nothing, never a torn tensor.

Keys written one by one with ``db.append`` (floats, ints or vectors) are gathered too:
``get_tensor("sensor/*")`` stacks the latest value of each matching key, in key order. A
stored tensor takes its place in that order at its first row key (its rows are not
interleaved with single keys). Keys ending in ``#tensor`` / ``#tensor-meta`` are reserved.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeAlias, Union

import numpy as np
import pyarrow as pa

from synarrow.db import SynaDB
from synarrow.errors import (
    CorruptionError,
    InvalidArgumentError,
    InvalidValueError,
    KeyNotFoundError,
    TypeMismatchError,
)
from synarrow.handle import Handle
from synarrow.interop import (
    BFLOAT16,
    NUMPY_DTYPES,
    SUPPORTED_DTYPES,
    DTypeLike,
    bf16_to_f32,
    cast_checked,
    dtype_name,
    fixed_size_list_numpy,
    numpy_dtype,
    storage_dtype,
    torch_view,
)
from synarrow.optional import progress, require

__all__ = ["DATA_SUFFIX", "META_SUFFIX", "RawTensor", "TensorEngine", "TensorInfo"]

DATA_SUFFIX = "#tensor"
META_SUFFIX = "#tensor-meta"
_FORMAT = 1
_CHUNK_BYTES = 64 * 1024 * 1024
# -- stored tensor description -------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """A tensor stored by :meth:`TensorEngine.put_tensor`: its prefix, shape, dtype, layout.

    ``pack`` tensor rows make one stored vector row of ``width`` float32 words;
    ``stored_rows`` such vector rows hold the data, written in ``chunks`` batch writes.
    """

    prefix: str
    shape: tuple[int, ...]
    dtype: str
    pack: int = 1
    width: int = 0
    stored_rows: int = 0
    chunks: int = 0

    @property
    def rows(self) -> int:
        """Number of rows (keys): ``shape[0]``, or 1 for a 0-d tensor."""
        return self.shape[0] if self.shape else 1

    @property
    def row_shape(self) -> tuple[int, ...]:
        """Shape of one row."""
        return self.shape[1:]

    @property
    def row_bytes(self) -> int:
        """Bytes of one row."""
        return storage_dtype(self.dtype).itemsize * math.prod(self.row_shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the whole tensor."""
        return self.rows * self.row_bytes

    @property
    def digits(self) -> int:
        """Zero-padding of row keys: the digits of the last row index (as synadb pads)."""
        return len(str(self.rows - 1)) if self.rows > 0 else 1

    @property
    def data_key(self) -> str:
        """The database key holding the tensor's bytes."""
        return self.prefix + DATA_SUFFIX

    @property
    def meta_key(self) -> str:
        """The database key holding the tensor's JSON description."""
        return self.prefix + META_SUFFIX

    def row_key(self, i: int) -> str:
        """The key of row ``i`` (``prefix`` + zero-padded index)."""
        return f"{self.prefix}{i:0{self.digits}d}"

    def to_json(self) -> str:
        """The JSON stored under :attr:`meta_key`."""
        return json.dumps(
            {
                "synarrow_tensor": _FORMAT,
                "shape": list(self.shape),
                "dtype": self.dtype,
                "pack": self.pack,
                "width": self.width,
                "stored_rows": self.stored_rows,
                "chunks": self.chunks,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, prefix: str, text: str) -> TensorInfo:
        """Parse the JSON of :meth:`to_json`; :class:`CorruptionError` if it is not one."""
        try:
            d = json.loads(text)
            if d.get("synarrow_tensor") != _FORMAT:
                raise ValueError("not a synarrow tensor description")
            return cls(
                prefix,
                tuple(int(s) for s in d["shape"]),
                dtype_name(d["dtype"]),
                int(d["pack"]),
                int(d["width"]),
                int(d["stored_rows"]),
                int(d["chunks"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptionError(
                f"tensor description under {prefix + META_SUFFIX!r} is damaged: {exc}"
            ) from exc


def _layout(shape: tuple[int, ...], name: str) -> tuple[int, int]:
    """(pack, width): tensor rows per stored row and float32 words per stored row."""
    row_bytes = storage_dtype(name).itemsize * math.prod(shape[1:])
    if row_bytes == 0:
        return 1, 0
    pack = 4 // math.gcd(row_bytes, 4)
    return pack, pack * row_bytes // 4


# -- user input -----------------------------------------------------------------------------


class _Rows:
    """A tensor given to ``put_tensor``, read a range of rows at a time (native byte order)."""

    def __init__(self, tensor: Any) -> None:
        self._torch = None
        if type(tensor).__module__.startswith("torch") and hasattr(tensor, "detach"):
            self._torch = tensor.detach()
            self.shape = tuple(int(s) for s in self._torch.shape)
            self.dtype = dtype_name(self._torch.dtype)
            self._np: np.ndarray | None = None
            return
        arr = tensor if isinstance(tensor, np.ndarray) else _as_numpy(tensor)
        if arr.dtype.name == BFLOAT16:  # ml_dtypes.bfloat16
            arr = arr.view(np.uint16)
            self.dtype = BFLOAT16
        elif arr.dtype.kind not in "biufc" or arr.dtype.name not in NUMPY_DTYPES:
            raise InvalidValueError(
                f"tensors must hold numbers; got dtype {arr.dtype}",
                hint=f"supported dtypes: {', '.join(SUPPORTED_DTYPES)}",
            )
        else:
            self.dtype = arr.dtype.name
        self._np = arr
        self.shape = tuple(arr.shape)

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` as a C-contiguous native-order array (a view when possible)."""
        if self._torch is not None:
            t = self._torch if not self.shape else self._torch[lo:hi]
            t = t.cpu().contiguous()
            if self.dtype == BFLOAT16:
                torch = require("torch")
                return t.view(torch.int16).numpy().view(np.uint16)
            return t.numpy()
        assert self._np is not None
        part = self._np if not self.shape else self._np[lo:hi]
        if not part.dtype.isnative:
            part = part.astype(part.dtype.newbyteorder("="))
        return np.ascontiguousarray(part)


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        t = value.type
        if pa.types.is_fixed_size_list(t):
            return fixed_size_list_numpy(value)
        return value.to_numpy(zero_copy_only=False)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InvalidValueError(
            f"cannot make a tensor of {type(value).__name__}: {exc}",
            hint="rows of a tensor must all have the same shape",
        ) from exc
    return arr


# -- what a pattern selects -----------------------------------------------------------------


@dataclass
class _Stored:
    """The rows ``lo:hi`` (or the rows ``index``) of a stored tensor."""

    info: TensorInfo
    lo: int
    hi: int
    index: np.ndarray | None = None

    @property
    def count(self) -> int:
        return len(self.index) if self.index is not None else self.hi - self.lo

    @property
    def first_key(self) -> str:
        if self.count == 0:
            return self.info.prefix
        return self.info.row_key(int(self.index[0]) if self.index is not None else self.lo)


@dataclass
class _Keys:
    """Single keys (latest value of each), consecutive in key order."""

    keys: list[str]

    @property
    def count(self) -> int:
        return len(self.keys)


_Source: TypeAlias = Union[_Stored, _Keys]  # noqa: UP007


def _select_rows(info: TensorInfo, pattern: str) -> tuple[int, int, np.ndarray | None] | None:
    """Which row keys of a stored tensor match ``pattern``: (lo, hi, index) or None."""
    prefix = info.prefix
    if pattern.endswith("*") and fnmatch.fnmatchcase(prefix, pattern):
        # The trailing star can take any row number: every row matches (the common case).
        return 0, info.rows, None
    if info.rows == 0:
        return None
    literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    if not (prefix.startswith(literal) or literal.startswith(prefix)):
        return None
    if literal == pattern:
        rest = pattern[len(prefix) :] if pattern.startswith(prefix) else ""
        if len(rest) == info.digits and rest.isascii() and rest.isdigit():
            i = int(rest)
            if i < info.rows:
                return i, i + 1, None
        return None
    rest = pattern[len(prefix) : -1] if pattern.startswith(prefix) else ""
    if pattern.endswith("*") and rest.isascii() and rest.isdigit() and len(rest) < info.digits:
        # prefix + leading digits + "*": a range of row numbers, no need to list the keys
        scale = 10 ** (info.digits - len(rest))
        lo, hi = int(rest) * scale, min((int(rest) + 1) * scale, info.rows)
        return (lo, hi, None) if lo < hi else None
    match = re.compile(fnmatch.translate(pattern)).match
    d = info.digits
    idx = np.fromiter((i for i in range(info.rows) if match(f"{prefix}{i:0{d}d}")), dtype=np.int64)
    if not len(idx):
        return None
    lo, hi = int(idx[0]), int(idx[-1]) + 1
    if hi - lo == len(idx):
        return lo, hi, None
    return lo, hi, idx


def _is_reserved(key: str) -> bool:
    return key.endswith(DATA_SUFFIX) or key.endswith(META_SUFFIX)


class RawTensor(NamedTuple):
    """What :meth:`TensorEngine.gather` returns: the selected rows as stored, unconverted.

    Attributes:
        data: the rows in the storage dtype (``bfloat16`` as its raw ``uint16`` bits); a
            read-only zero-copy view after compaction when one stored tensor is selected.
        dtype: the dtype name of the values (``"float32"``, ``"bfloat16"`` ...).
        scalar: whether the selection is one 0-d tensor (``data`` then has shape ``(1,)``;
            ``data.reshape(())`` gives the scalar).
    """

    data: np.ndarray
    dtype: str
    scalar: bool


class TensorEngine(Handle):
    """Store and load numpy / PyTorch tensors in a synarrow database.

    >>> import numpy as np, synarrow, tempfile
    >>> engine = synarrow.TensorEngine(tempfile.mkdtemp() + "/t.db")
    >>> engine.put_tensor("train/", np.arange(6, dtype=np.int32).reshape(3, 2))
    3
    >>> engine.get_tensor("train/*").tolist()
    [[0, 1], [2, 3], [4, 5]]
    >>> engine.close()

    Args:
        db: an open :class:`~synarrow.SynaDB` (shared, not closed by this engine) or the path
            of a database (opened here, closed by :meth:`close`).
        readonly: with a path, open the database read-only.
        snapshot: with a path, read the tensors as they were when ``db.snapshot(tag)`` made
            this tag (read-only; see :class:`~synarrow.SynaDB`). To share one snapshot
            handle, pass ``SynaDB(path, snapshot=tag)`` as ``db`` instead.

    Reads after ``db.compact()`` are zero-copy views of the memory-mapped columnar files;
    those views are read-only (numpy enforces it; see :meth:`get_tensor_torch` for torch).

    Closing an engine that was given a ``SynaDB`` leaves that database open (its owner
    closes it); the engine itself is closed either way, and its calls then raise
    :class:`~synarrow.errors.DatabaseClosedError`. An engine over a read-only database is
    read-only.
    """

    kind: ClassVar[str] = "tensor engine"

    def __init__(
        self, db: SynaDB | Any, *, readonly: bool = False, snapshot: str | None = None
    ) -> None:
        if isinstance(db, SynaDB):
            if snapshot is not None:
                raise InvalidArgumentError(
                    "snapshot= needs a path; a SynaDB reads its own version",
                    hint="pass SynaDB(path, snapshot=tag), or the path with snapshot=tag",
                )
            owned, database = False, db
        elif snapshot is not None:
            owned, database = True, SynaDB(db, snapshot=snapshot)
        else:
            owned, database = True, SynaDB(db, readonly=readonly)
        super().__init__(database.path, readonly=database.readonly)
        self._db = database
        self._owned = owned
        self._lock = threading.RLock()
        self._meta_cache: dict[str, tuple[str, TensorInfo]] = {}
        self.mark_open()

    @property
    def db(self) -> SynaDB:
        """The database this engine reads and writes."""
        return self._db

    @property
    def tag(self) -> str | None:
        """The snapshot this engine reads (``snapshot=``), or ``None``."""
        return self._db.tag

    def describe(self) -> str:
        """``tensor engine PATH``, and the tag it reads."""
        db = getattr(self, "_db", None)
        tag = None if db is None else db.tag
        return super().describe() + ("" if tag is None else f" at snapshot {tag!r}")

    @property  # type: ignore[override]
    def path(self) -> str:
        """The database directory (a str, as before handles shared one base class)."""
        return str(self._path)

    @path.setter
    def path(self, value: Path) -> None:
        self._path = value

    # -- writing ---------------------------------------------------------------------------

    def put_tensor(self, prefix: str, tensor: Any) -> int:
        """Store ``tensor`` as the rows ``prefix0..``; returns the number of rows (keys).

        ``tensor``: a numpy array, a torch tensor (any device; bfloat16 too), or anything
        numpy can turn into a numeric array. The whole tensor becomes one record (see the
        module docstring); a tensor stored before under the same prefix is replaced.
        """
        rows = _Rows(tensor)
        self._write(prefix, rows, chunk_rows=max(rows.rows, 1), show=False)
        return rows.rows

    def put_tensor_chunked(
        self,
        prefix: str,
        tensor: Any,
        chunk_size: int | None = None,
        *,
        show_progress: bool | None = None,
    ) -> int:
        """Store a large tensor ``chunk_size`` rows at a time; returns the number of chunks.

        Same result as :meth:`put_tensor` (one tensor, rows ``prefix0..``), but the input
        is read, converted and written one chunk at a time, so a ``numpy.memmap`` or a GPU
        tensor larger than free memory can be stored. ``chunk_size`` counts rows (synadb
        counts elements); the default makes chunks of about 64 MiB. A progress bar shows on
        a terminal (``show_progress`` forces it on or off).

        With ``auto_compact``, a background compaction may fold the first chunks while later
        ones are still being written; the tensor then spans several columnar slices and
        reads join them (a copy) until ``db.compact(full=True)`` makes it one record again.
        """
        rows = _Rows(tensor)
        if chunk_size is None:
            row_bytes = max(1, storage_dtype(rows.dtype).itemsize * math.prod(rows.shape[1:]))
            chunk_size = max(1, _CHUNK_BYTES // row_bytes)
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise InvalidArgumentError(f"chunk_size must be a positive int, got {chunk_size!r}")
        return self._write(prefix, rows, chunk_rows=chunk_size, show=show_progress)

    def _write(self, prefix: str, rows: _Rows, *, chunk_rows: int, show: bool | None) -> int:
        self.require_writable()
        if not isinstance(prefix, str):
            raise InvalidArgumentError(f"prefix must be a str, got {type(prefix).__name__}")
        shape = rows.shape
        pack, width = _layout(shape, rows.dtype)
        n = rows.rows if width else 0
        chunk_rows = -(-chunk_rows // pack) * pack  # whole stored rows per chunk
        starts = list(range(0, n, chunk_rows))
        info = TensorInfo(
            prefix, shape, rows.dtype, pack, width, -(-n // pack) if width else 0, len(starts)
        )
        db = self._db
        with self._lock:
            # Remove the old version first, and describe the new one only once its data is
            # written: a crash in between leaves no tensor or the old one, never a torn one.
            db.delete(info.data_key)
            db.delete(info.meta_key)
            self._meta_cache.pop(info.meta_key, None)
            bar = progress(total=len(starts), desc=f"put {prefix}", enabled=show)
            try:
                for lo in starts:
                    hi = min(n, lo + chunk_rows)
                    raw = rows.read(lo, hi).reshape(-1).view(np.uint8)
                    stored = -(-(hi - lo) // pack)
                    if raw.nbytes != stored * width * 4:
                        padded = np.zeros(stored * width * 4, dtype=np.uint8)
                        padded[: raw.nbytes] = raw
                        raw = padded
                    db.append_batch(info.data_key, raw.view(np.float32).reshape(stored, width))
                    bar.update(1)
            finally:
                bar.close()
            db.append(info.meta_key, info.to_json())
        return len(starts)

    def delete(self, pattern: str) -> int:
        """Delete what ``pattern`` selects; returns the number of row keys deleted.

        Stored tensors are deleted whole: a pattern that selects only some rows of one
        raises :class:`InvalidArgumentError`.
        """
        self.require_writable()
        with self._lock:
            plan = self._plan(pattern, required=False)
            for src in plan:
                if isinstance(src, _Stored) and src.count != src.info.rows:
                    raise InvalidArgumentError(
                        f"{pattern!r} selects {src.count} of the {src.info.rows} rows of the "
                        f"tensor {src.info.prefix!r}; stored tensors are deleted whole",
                        hint=f"delete({src.info.prefix + '*'!r})",
                    )
            count = 0
            for src in plan:
                if isinstance(src, _Stored):
                    self._db.delete(src.info.data_key)
                    self._db.delete(src.info.meta_key)
                    self._meta_cache.pop(src.info.meta_key, None)
                    count += src.count
                else:
                    count += sum(self._db.delete(k) for k in src.keys)
            return count

    # -- describing ------------------------------------------------------------------------

    def _info(self, meta_key: str) -> TensorInfo | None:
        text = self._db.get(meta_key)
        if not isinstance(text, str):
            return None
        cached = self._meta_cache.get(meta_key)
        if cached is not None and cached[0] == text:
            return cached[1]
        info = TensorInfo.from_json(meta_key[: -len(META_SUFFIX)], text)
        self._meta_cache[meta_key] = (text, info)
        return info

    def tensors(self) -> list[TensorInfo]:
        """Every stored tensor, by prefix."""
        self.require_open()
        infos = (self._info(k) for k in self._db.keys("*" + META_SUFFIX))
        return [i for i in infos if i is not None]

    def info(self, prefix: str) -> TensorInfo:
        """The description of the tensor stored under ``prefix``."""
        self.require_open()
        info = self._info(prefix + META_SUFFIX)
        if info is None:
            raise KeyNotFoundError(f"no tensor is stored under the prefix {prefix!r}")
        return info

    def keys(self, pattern: str = "*") -> list[str]:
        """The keys ``pattern`` selects, sorted: single keys and the row keys of tensors."""
        out: list[str] = []
        for src in self._plan(pattern, required=False):
            if isinstance(src, _Keys):
                out.extend(src.keys)
            else:
                rows = src.index if src.index is not None else range(src.lo, src.hi)
                out.extend(src.info.row_key(int(i)) for i in rows)
        return sorted(out)

    def _plan(self, pattern: str, *, required: bool = True) -> list[_Source]:
        """The stored tensors and single keys ``pattern`` selects, in key order."""
        self.require_open()
        if not isinstance(pattern, str) or not pattern:
            raise InvalidArgumentError(f"pattern must be a non-empty str, got {pattern!r}")
        units: list[tuple[str, _Source]] = []
        for meta_key in self._db.keys("*" + META_SUFFIX):
            info = self._info(meta_key)
            if info is None:
                continue
            sel = _select_rows(info, pattern)
            if sel is not None:
                src = _Stored(info, *sel)
                units.append((src.first_key, src))
        for key in self._db.keys(pattern):
            if not _is_reserved(key):
                units.append((key, _Keys([key])))
        if not units and required:
            raise KeyNotFoundError(
                f"no key or stored tensor matches {pattern!r}",
                hint="check the pattern against engine.keys() / db.keys(); "
                "patterns are globs such as 'train/*'",
            )
        units.sort(key=lambda u: u[0])
        plan: list[_Source] = []
        for _, unit in units:
            if isinstance(unit, _Keys) and plan and isinstance(plan[-1], _Keys):
                plan[-1].keys.extend(unit.keys)
            else:
                plan.append(unit)
        return plan

    def _describe(self, plan: list[_Source], pattern: str) -> tuple[tuple[int, ...], str]:
        """The common row shape and dtype name; raises on unequal shapes or non-numbers."""
        shape: tuple[int, ...] | None = None
        first = ""
        names: set[str] = set()
        for src in plan:
            if isinstance(src, _Stored):
                items: Iterator[tuple[str, tuple[int, ...], str]] = iter(
                    [(src.first_key, src.info.row_shape, src.info.dtype)]
                )
            else:
                items = (self._key_kind(k) for k in src.keys)
            for key, row_shape, name in items:
                if shape is None:
                    shape, first = row_shape, key
                elif row_shape != shape:
                    raise InvalidValueError(
                        f"rows selected by {pattern!r} differ in shape: {first!r} has "
                        f"{shape}, {key!r} has {row_shape}",
                        hint="select keys whose values have one shape",
                    )
                names.add(name)
        assert shape is not None
        if len(names) == 1:
            return shape, names.pop()
        np_names = {"float32" if n == BFLOAT16 else n for n in names}
        return shape, np.result_type(*(np.dtype(n) for n in np_names)).name

    def _key_kind(self, key: str) -> tuple[str, tuple[int, ...], str]:
        value = self._db.get(key)
        if isinstance(value, float):
            return key, (), "float64"
        if isinstance(value, int) and not isinstance(value, bool):
            return key, (), "int64"
        if isinstance(value, np.ndarray):
            return key, tuple(value.shape), value.dtype.name
        kind = "None" if value is None else type(value).__name__
        raise TypeMismatchError(
            f"key {key!r} holds a {kind} value, not a number or a vector",
            hint="tensors gather float, int and vector values; narrow the pattern",
        )

    # -- reading ---------------------------------------------------------------------------

    def _segments(self, info: TensorInfo) -> list[tuple[int, np.ndarray]]:
        """(first row, raw rows) per Arrow chunk of a stored tensor: zero-copy views."""
        sdt = storage_dtype(info.dtype)
        if info.stored_rows == 0:
            return [(0, np.zeros((info.rows, *info.row_shape), dtype=sdt))]
        try:
            col = self._db.get_history(info.data_key).column("value")
        except KeyNotFoundError as exc:
            raise CorruptionError(
                f"the data of tensor {info.prefix!r} ({info.data_key!r}) is missing"
            ) from exc
        t = col.type
        if (
            not pa.types.is_fixed_size_list(t)
            or t.value_type != pa.float32()
            or t.list_size != info.width
            or col.null_count
        ):
            raise CorruptionError(
                f"the data of tensor {info.prefix!r} has type {t}, "
                f"not fixed_size_list<float32>[{info.width}]"
            )
        extra = len(col) - info.stored_rows  # older entries of the key, if any, come first
        if extra < 0:
            raise CorruptionError(
                f"tensor {info.prefix!r} should have {info.stored_rows} stored rows, "
                f"its data key has {len(col)}"
            )
        out = []
        pos = 0
        row_bytes = info.row_bytes
        for chunk in col.chunks:
            n = len(chunk)
            skip = max(extra - pos, 0)
            if skip < n:
                part = chunk.slice(skip) if skip else chunk
                flat = part.flatten().to_numpy(zero_copy_only=False).view(np.uint8)
                first = (pos + skip - extra) * info.pack
                count = min(len(part) * info.pack, info.rows - first)
                raw = flat[: count * row_bytes].view(sdt).reshape((count, *info.row_shape))
                out.append((first, raw))
            pos += n
        return out

    def _stored_pieces(self, src: _Stored, batch: int | None) -> Iterator[np.ndarray]:
        """The selected rows of a stored tensor, as consecutive raw arrays."""
        segs = self._segments(src.info)
        if src.index is not None:
            whole = segs[0][1] if len(segs) == 1 else np.concatenate([s for _, s in segs])
            step = batch or len(src.index)
            for i in range(0, len(src.index), max(step, 1)):
                yield whole[src.index[i : i + step]]
            return
        for first, raw in segs:
            a, b = max(src.lo, first), min(src.hi, first + len(raw))
            if a < b or (src.hi == src.lo == 0 and first == 0):
                yield raw[a - first : b - first]

    def _keys_pieces(self, src: _Keys, name: str, batch: int | None) -> Iterator[np.ndarray]:
        step = batch or len(src.keys)
        dt = storage_dtype(name)
        for i in range(0, len(src.keys), max(step, 1)):
            values = [self._db.get(k) for k in src.keys[i : i + step]]
            for k, v in zip(src.keys[i : i + step], values):
                if v is None or isinstance(v, (str, bytes)):
                    self._key_kind(k)  # raises with the key named
            if name == BFLOAT16:  # only when every key is bfloat16, which single keys never are
                raise TypeMismatchError("single keys cannot hold bfloat16 values")
            if isinstance(values[0], np.ndarray):
                yield cast_checked(np.stack(values), dt, f"keys from {src.keys[i]!r}")
            else:
                yield cast_checked(
                    np.array(values, dtype=np.result_type(*values)), dt, f"key {src.keys[i]!r}"
                )

    def _pieces(self, plan: list[_Source], name: str, batch: int | None) -> Iterator[np.ndarray]:
        """Raw pieces of the gathered tensor in order, each in the storage dtype of ``name``."""
        for src in plan:
            if isinstance(src, _Keys):
                yield from self._keys_pieces(src, name, batch)
                continue
            for piece in self._stored_pieces(src, batch):
                if src.info.dtype != name:
                    if src.info.dtype == BFLOAT16:
                        piece = bf16_to_f32(piece)
                    piece = cast_checked(piece, storage_dtype(name), f"tensor {src.info.prefix!r}")
                yield piece

    def gather(self, pattern: str) -> RawTensor:
        """The rows ``pattern`` selects as stored, without any dtype conversion.

        What :meth:`get_tensor` builds on, for callers that move the bytes on themselves
        (to a GPU, into a DataLoader): ``RawTensor(data, dtype, scalar)``, see
        :class:`RawTensor`. Same errors as :meth:`get_tensor`.

        >>> import numpy as np, synarrow, tempfile
        >>> with synarrow.TensorEngine(tempfile.mkdtemp() + "/g.db") as engine:
        ...     _ = engine.put_tensor("w/", np.ones((2, 3), np.float32))
        ...     raw = engine.gather("w/*")
        ...     raw.data.shape, raw.dtype, raw.scalar
        ((2, 3), 'float32', False)
        """
        plan = self._plan(pattern)
        row_shape, name = self._describe(plan, pattern)
        pieces = list(self._pieces(plan, name, None))
        if len(pieces) == 1:
            raw = pieces[0]
        else:
            raw = (
                np.concatenate(pieces)
                if pieces
                else np.empty((0, *row_shape), dtype=storage_dtype(name))
            )
        scalar = (
            len(plan) == 1
            and isinstance(plan[0], _Stored)
            and plan[0].info.shape == ()
            and plan[0].count == 1
        )
        return RawTensor(raw, name, scalar)

    def get_tensor(
        self,
        pattern: str,
        dtype: DTypeLike | None = None,
        shape: Sequence[int] | None = None,
    ) -> np.ndarray:
        """The rows ``pattern`` selects, stacked in key order, as one numpy array.

        A whole stored tensor comes back with its shape and dtype; after ``db.compact()`` it
        is a read-only zero-copy view of the memory-mapped file (``np.array(x)`` for a
        writable copy). Single keys give one row each (their latest value).

        Args:
            pattern: a key glob such as ``"train/*"`` (or one exact key).
            dtype: convert to this dtype (a copy); values it cannot hold raise
                :class:`InvalidValueError` instead of wrapping or truncating.
            shape: reshape (one dimension may be -1); :class:`InvalidArgumentError` if the
                number of elements differs.

        Raises:
            KeyNotFoundError: nothing matches ``pattern``.
            TypeMismatchError: a matching key holds text, bytes or None.
            InvalidValueError: rows of different shapes, or values ``dtype`` cannot hold.
        """
        raw, name, scalar = self.gather(pattern)
        if scalar:
            raw = raw.reshape(())
        out = self._to_dtype(raw, name, dtype, pattern)
        return _reshape(out, shape, pattern)

    def get_tensor_chunked(
        self,
        pattern: str,
        dtype: DTypeLike | None = None,
        shape: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Load a tensor written by :meth:`put_tensor_chunked`: same as :meth:`get_tensor`.

        Chunks of one tensor are one record after ``db.compact()``, so the result is then a
        zero-copy view; before, the chunks are joined into one array. To go through a large
        tensor without holding it all in memory use :meth:`stream`.
        """
        return self.get_tensor(pattern, dtype=dtype, shape=shape)

    def _to_dtype(
        self, raw: np.ndarray, name: str, dtype: DTypeLike | None, pattern: str
    ) -> np.ndarray:
        if dtype is None:
            return raw.view(numpy_dtype(name)) if name == BFLOAT16 else raw
        target = dtype_name(dtype)
        if target == name:
            return raw.view(numpy_dtype(name)) if name == BFLOAT16 else raw
        if name == BFLOAT16:
            raw = bf16_to_f32(raw)
        what = f"the tensor selected by {pattern!r}"
        if target == BFLOAT16:
            return cast_checked(raw, np.dtype(np.float32), what).astype(numpy_dtype(target))
        return cast_checked(raw, np.dtype(target), what)

    def stream(
        self, pattern: str, batch_size: int = 32, *, dtype: DTypeLike | None = None
    ) -> Iterator[np.ndarray]:
        """Yield the rows of ``get_tensor(pattern)`` in batches of ``batch_size`` rows.

        Only one batch is in memory at a time: batches inside one stored chunk are
        zero-copy views (read-only after compaction); a batch that spans chunks or single
        keys is a new array. The last batch may be shorter. Shapes and value types are
        checked before the first batch; whether ``dtype`` can hold the values is checked
        batch by batch.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be a positive int, got {batch_size!r}")
        plan = self._plan(pattern)
        _, name = self._describe(plan, pattern)
        if dtype is not None:
            dtype_name(dtype)  # fail before the first batch
        pending: list[np.ndarray] = []
        have = 0
        for piece in self._pieces(plan, name, batch_size):
            while len(piece):
                take = min(batch_size - have, len(piece))
                if not pending and take == batch_size:
                    yield self._to_dtype(piece[:take], name, dtype, pattern)
                else:
                    pending.append(piece[:take])
                    have += take
                    if have == batch_size:
                        yield self._to_dtype(np.concatenate(pending), name, dtype, pattern)
                        pending, have = [], 0
                piece = piece[take:]
        if pending:
            yield self._to_dtype(np.concatenate(pending), name, dtype, pattern)

    def get_tensor_torch(
        self,
        pattern: str,
        device: str | Any = "cpu",
        *,
        dtype: DTypeLike | None = None,
        shape: Sequence[int] | None = None,
        copy: bool = False,
    ) -> Any:
        """The tensor ``pattern`` selects as a ``torch.Tensor`` on ``device``.

        On the CPU, when no conversion is needed, the tensor shares memory with the
        database: after compaction that is the read-only memory-mapped file. **torch cannot
        mark a tensor read-only, and writing into such a tensor kills the process
        (SIGSEGV).** Pass ``copy=True`` for a tensor you may modify. bfloat16 tensors come
        back as ``torch.bfloat16``. On a CUDA device the data takes one host-to-device copy
        through a pinned staging ring (:mod:`synarrow.gpu`); without a GPU that raises
        :class:`~synarrow.errors.GPUUnavailableError`.
        """
        torch = require("torch")
        raw, name, scalar = self.gather(pattern)
        target = name if dtype is None else dtype_name(dtype)
        if target != name:
            if target == BFLOAT16:
                raw, name = self._to_dtype(raw, name, "float32", pattern), "float32"
            else:
                raw, name = self._to_dtype(raw, name, target, pattern), target
        if scalar:
            raw = raw.reshape(())
        raw = _reshape(raw, shape, pattern)
        dev = torch.device(device)
        if dev.type != "cpu":
            from synarrow.device import to_device

            out = to_device(raw, dev, backend="torch", dtype=name).torch()
        else:
            if copy and not raw.flags.writeable:
                raw = raw.copy()
            out = torch_view(raw, name)
        if target != name:  # only float32 -> bfloat16 remains
            out = out.to(getattr(torch, target))
        return out

    # -- life cycle --------------------------------------------------------------------------

    def release(self) -> None:
        """Close the database if this engine opened it (a shared ``SynaDB`` stays open)."""
        if self._owned:
            self._db.close()


def _reshape(arr: np.ndarray, shape: Sequence[int] | None, pattern: str) -> np.ndarray:
    if shape is None:
        return arr
    try:
        shape_t = tuple(int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"shape must be a sequence of ints, got {shape!r}") from exc
    try:
        return arr.reshape(shape_t)
    except ValueError as exc:
        raise InvalidArgumentError(
            f"the tensor selected by {pattern!r} has shape {arr.shape} ({arr.size} elements), "
            f"which does not fit shape {shape_t}"
        ) from exc

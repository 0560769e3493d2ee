"""PyTorch datasets over a synarrow database, safe in ``DataLoader`` worker processes.

* :class:`KeyDataset`: map-style, one sample per key a glob pattern selects (the rows of
  ``TensorEngine.get_tensor(pattern)``: stored tensors and single keys), optionally paired
  with labels selected by a second pattern.
* :class:`WindowDataset`: sliding windows over one time series (a key's history or a stored
  tensor): ``window`` steps of input, every ``stride`` steps, and optionally the ``horizon``
  steps that follow as the target.

>>> import numpy as np, synarrow, torch
>>> with synarrow.SynaDB("metrics.db") as db:
...     _ = db.append_batch("temperature", np.arange(100.0))
>>> ds = WindowDataset("metrics.db", "temperature", window=64, horizon=8)
>>> len(ds)
29
>>> loader = torch.utils.data.DataLoader(ds, batch_size=256, num_workers=2)

Fork safety: a dataset keeps the database *path*, never an open handle. Each process (the
main one and every worker, forked or spawned) opens the database read-only on its first
sample, takes its arrays and closes it again. After ``db.compact()`` those arrays are views
of the memory-mapped columnar files, shared by all workers through the page cache, so a
worker costs no copy of the data; before compaction each worker holds its own copy of the
log tail. A dataset sees the data as it was when the process opened it.

Samples are new (writable) tensors: a window is copied out of the read-only mapping, which
is also what ``DataLoader``'s collation would do. :func:`batch_loader` fetches a whole batch
with one vectorised gather instead of one call per sample.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synarrow.db import SynaDB
from synarrow.errors import InvalidArgumentError
from synarrow.interop import dtype_name, torch_view
from synarrow.optional import require
from synarrow.tensor import TensorEngine

torch = require("torch")
_data = require("torch.utils.data")

Source = Any  # a SynaDB, a path, or (WindowDataset.from_array) a numpy array


def _path_of(source: Source) -> Path:
    if isinstance(source, SynaDB):
        if not source.closed and not source.readonly:
            source.flush()  # so a read-only open in a worker sees what was written
        return source.path
    if isinstance(source, (str, os.PathLike)):
        return Path(source)
    raise InvalidArgumentError(
        f"a dataset reads from a SynaDB or a database path, got {type(source).__name__}"
    )


def _positive(name: str, value: object, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class _ProcessLocal(_data.Dataset, metaclass=abc.ABCMeta):  # type: ignore[misc, name-defined]
    """Loads its arrays once per process, from a read-only handle opened in that process."""

    def __init__(self, source: Source) -> None:
        self._path: Path | None = None
        self._arrays: Any = None
        self._pid = -1
        if isinstance(source, np.ndarray):
            self._arrays = self._from_memory(source)
            self._pid = os.getpid()
        else:
            self._path = _path_of(source)

    def _from_memory(self, array: np.ndarray) -> Any:
        """The dataset's arrays built from an in-memory array (datasets that allow one)."""
        raise InvalidArgumentError(
            f"{type(self).__name__} reads a database; pass a SynaDB or its path, not an array"
        )

    @abc.abstractmethod
    def _load(self, db: SynaDB) -> Any:
        """The dataset's arrays read from ``db`` (a read-only handle of this process)."""

    def arrays(self) -> Any:
        """This process's arrays, loaded on first use (and again after a fork)."""
        if self._path is None:
            return self._arrays
        if self._pid != os.getpid():
            db = SynaDB(self._path, readonly=True)
            try:
                self._arrays = self._load(db)
            finally:
                db.close()  # views of the mapped files stay valid
            self._pid = os.getpid()
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._path is not None:  # a spawned worker loads its own
            state["_arrays"] = None
            state["_pid"] = -1
        return state

    def _index(self, i: Any) -> int:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        return i

    def _indices(self, idx: Any) -> np.ndarray:
        arr = np.asarray(idx, dtype=np.int64).reshape(-1)
        n = len(self)
        arr = np.where(arr < 0, arr + n, arr)
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise IndexError(f"indices out of range for {n} samples")
        return arr

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of samples."""

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """Samples for ``DataLoader``'s default collation, fetched with one gather."""
        batch = self[list(indices)]
        if isinstance(batch, tuple):
            return list(zip(*(list(b.unbind(0)) for b in batch)))
        return list(batch.unbind(0))


def _to_torch(arr: np.ndarray, name: str, dtype: str | None) -> Any:
    """A writable tensor from a (fresh) numpy array in the storage dtype of ``name``."""
    t = torch_view(arr, name)
    if dtype is not None and dtype != name:
        t = t.to(getattr(torch, dtype))
    return t


class KeyDataset(_ProcessLocal):
    """One sample per key that ``pattern`` selects, in key order (map-style).

    The samples are the rows of ``TensorEngine(db).get_tensor(pattern)``: the rows of stored
    tensors, and the latest value of keys written one by one.

    Args:
        source: a :class:`~synarrow.SynaDB` or a database path.
        pattern: key glob of the inputs, e.g. ``"train/x/*"``.
        labels: optional key glob of the targets (same number of rows); samples are then
            ``(x, y)`` pairs.
        dtype: convert samples to this dtype (numpy / torch / name; a plain cast).
        transform: applied to each input sample (a tensor); ``target_transform`` likewise.
    """

    def __init__(
        self,
        source: Source,
        pattern: str,
        *,
        labels: str | None = None,
        dtype: Any = None,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if isinstance(source, np.ndarray):
            raise InvalidArgumentError("KeyDataset reads keys; use a SynaDB or a path")
        super().__init__(source)
        self.pattern = pattern
        self.labels = labels
        self.dtype = None if dtype is None else dtype_name(dtype)
        self.transform = transform
        self.target_transform = target_transform
        x, _, y, _ = self.arrays()  # check the patterns now, in the creating process
        self._len = len(x)
        if y is not None and len(y) != len(x):
            raise InvalidArgumentError(
                f"{pattern!r} selects {len(x)} rows but labels {labels!r} select {len(y)}"
            )

    def _load(self, db: SynaDB) -> Any:
        engine = TensorEngine(db)
        x, x_name, _ = engine.gather(self.pattern)
        if self.labels is None:
            return x, x_name, None, None
        y, y_name, _ = engine.gather(self.labels)
        return x, x_name, y, y_name

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, idx: Any) -> Any:
        """Sample ``idx`` (an int), or a batch (a sequence / array of ints) stacked."""
        x, x_name, y, y_name = self.arrays()
        if isinstance(idx, (int, np.integer)):
            i = self._index(idx)
            xs = _to_torch(np.array(x[i]), x_name, self.dtype)
            if self.transform is not None:
                xs = self.transform(xs)
            if y is None:
                return xs
            ys = _to_torch(np.array(y[i]), y_name, None)
            if self.target_transform is not None:
                ys = self.target_transform(ys)
            return xs, ys
        if self.transform is not None or self.target_transform is not None:
            items = [self[int(i)] for i in self._indices(idx)]
            if y is None:
                return torch.stack(items)
            return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
        rows = self._indices(idx)
        xb = _to_torch(x[rows], x_name, self.dtype)
        if y is None:
            return xb
        return xb, _to_torch(y[rows], y_name, None)


class WindowDataset(_ProcessLocal):
    """Sliding windows over one series: sample ``i`` starts at step ``i * stride``.

    A sample is ``x = series[s : s + window]``, or with ``horizon > 0`` the pair ``(x, y)``
    with ``y = series[s + window : s + window + horizon]``. The series is the history of
    ``key`` (1-D for numbers, ``(n, dim)`` for vectors, so windows are ``(window, dim)``),
    or with ``pattern=`` the tensor ``TensorEngine.get_tensor(pattern)`` (first axis = time).

    Args:
        source: a :class:`~synarrow.SynaDB` or a database path.
        key: the key whose history is the series (or give ``pattern``).
        window: input steps per sample.
        stride: steps between the starts of consecutive samples.
        horizon: target steps after each window (0: no target).
        dtype: convert samples to this dtype (numpy / torch / name; a plain cast).
        transform: applied to each input window (a tensor).
    """

    def __init__(
        self,
        source: Source,
        key: str | None = None,
        *,
        window: int,
        stride: int = 1,
        horizon: int = 0,
        pattern: str | None = None,
        dtype: Any = None,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if (key is None) == (pattern is None) and not isinstance(source, np.ndarray):
            raise InvalidArgumentError("give exactly one of key= and pattern=")
        self.key = key
        self.pattern = pattern
        self.window = _positive("window", window)
        self.stride = _positive("stride", stride)
        self.horizon = _positive("horizon", horizon, 0)
        self.dtype = None if dtype is None else dtype_name(dtype)
        self.transform = transform
        super().__init__(source)
        series, _ = self.arrays()
        span = self.window + self.horizon
        self._len = 0 if len(series) < span else (len(series) - span) // self.stride + 1
        self._steps = np.arange(self.window, dtype=np.int64)
        self._target_steps = np.arange(self.window, span, dtype=np.int64)

    @classmethod
    def from_array(
        cls,
        series: Any,
        *,
        window: int,
        stride: int = 1,
        horizon: int = 0,
        dtype: Any = None,
        transform: Callable[[Any], Any] | None = None,
    ) -> WindowDataset:
        """The same windows over an in-memory array (a baseline, or data not in a database)."""
        return cls(
            np.asarray(series),
            window=window,
            stride=stride,
            horizon=horizon,
            dtype=dtype,
            transform=transform,
        )

    def _from_memory(self, array: np.ndarray) -> Any:
        return array, dtype_name(array.dtype)

    def _load(self, db: SynaDB) -> Any:
        if self.pattern is not None:
            raw, name, _ = TensorEngine(db).gather(self.pattern)
            return raw, name
        series = db.get_history_tensor(self.key)  # type: ignore[arg-type]
        return series, series.dtype.name

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, idx: Any) -> Any:
        """Sample ``idx`` (an int), or a batch (a sequence / array of ints) stacked."""
        series, name = self.arrays()
        if isinstance(idx, (int, np.integer)):
            s = self._index(idx) * self.stride
            x = _to_torch(np.array(series[s : s + self.window]), name, self.dtype)
            if self.transform is not None:
                x = self.transform(x)
            if not self.horizon:
                return x
            e = s + self.window
            return x, _to_torch(np.array(series[e : e + self.horizon]), name, self.dtype)
        if self.transform is not None:
            items = [self[int(i)] for i in self._indices(idx)]
            if not self.horizon:
                return torch.stack(items)
            return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
        starts = self._indices(idx) * self.stride
        x = _to_torch(series[starts[:, None] + self._steps], name, self.dtype)
        if not self.horizon:
            return x
        return x, _to_torch(series[starts[:, None] + self._target_steps], name, self.dtype)


def batch_loader(
    dataset: Any,
    batch_size: int,
    *,
    shuffle: bool = False,
    drop_last: bool = False,
    generator: Any = None,
    **loader_kwargs: Any,
) -> Any:
    """A ``DataLoader`` that fetches each batch with one ``dataset[list_of_indices]`` call.

    Same batches as ``DataLoader(dataset, batch_size, shuffle=...)``, without one Python call
    and one small tensor per sample. Other keyword arguments (``num_workers``,
    ``pin_memory``, ``persistent_workers`` ...) go to the ``DataLoader``.
    """
    _positive("batch_size", batch_size)
    if shuffle:
        sampler = _data.RandomSampler(dataset, generator=generator)
    else:
        sampler = _data.SequentialSampler(dataset)
    batches = _data.BatchSampler(sampler, batch_size, drop_last)
    return _data.DataLoader(dataset, batch_size=None, sampler=batches, **loader_kwargs)


__all__ = ["KeyDataset", "WindowDataset", "batch_loader"]

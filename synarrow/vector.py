"""``VectorStore``: durable embeddings in a synarrow database, searched through usearch.

Every vector is a Vector atom in the database log under its own key, so it is durable the
moment ``insert`` returns, readable with ``get``, as Arrow with :meth:`VectorStore.to_arrow`,
and in DuckDB SQL (``store.sql(...)``, or the ``latest`` / ``history`` views of
``store.db.sql(...)``). Documents may carry metadata records (:mod:`synarrow.vector_meta`),
kept in the same log, which searches filter with SQL predicates (``where=``), insert time
windows (``start=`` / ``end=``) and BM25 text queries (``text=``, hybrid search). A usearch
HNSW index over them lives in ``<path>/vector_index/``. It
is a cache of the log: saved (with the log position it covers) by :meth:`VectorStore.flush`
and :meth:`VectorStore.close`, loaded on open, caught up from the log when the log moved on
since (after a crash, for example), and rebuilt from the log when it is missing or damaged.

Scores are **distances: lower is closer**, best first:

=============  ==================================  ========================
metric         score                               range
=============  ==================================  ========================
``cosine``     ``1 - cos(q, v)``                   0 (same direction) .. 2
``euclidean``  ``||q - v||`` (not squared)         0 ..
``dot``        ``1 - q . v``                       any; equals the cosine
                                                   score on unit vectors
=============  ==================================  ========================

What survives a crash: with the database's ``sync_on_write=True`` (the default) every
``insert``, ``insert_batch``, ``delete`` and ``delete_batch`` is fsynced once before it
returns, so an acknowledged change survives power loss; with ``sync_on_write=False`` it is
handed to the OS before returning and survives a crash of the process. The index itself
is only a cache; after a crash the next open adds what the log holds beyond the last saved
index (a progress bar shows long rebuilds when tqdm is installed).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, cast, overload

import numpy as np
import pyarrow as pa
from usearch.index import BatchMatches, Index
from usearch.index import search as _brute_force

from synarrow import vector_files as files
from synarrow.config import DbConfig, read_stored
from synarrow.db import SynaDB, check_key
from synarrow.errors import (
    CompactionError,
    ConfigError,
    CorruptionError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidValueError,
)
from synarrow.handle import Handle
from synarrow.inputs import time_range
from synarrow.optional import progress, require
from synarrow.vector_check import check_matrix, check_vector
from synarrow.vector_filter import MetadataFilter
from synarrow.vector_keys import KeyMap, fingerprints
from synarrow.vector_meta import (
    DAMAGED_LOG_HINT,
    LOG_KEY,
    MetadataColumns,
    decode_entry,
    encode_entry,
    normalize,
)
from synarrow.vector_text import TextIndex, query_terms, reciprocal_rank_fusion

if TYPE_CHECKING:
    import os

__all__ = ["SearchPlan", "SearchResult", "VectorStore"]

_log = logging.getLogger("synarrow.vector")
_new_tuple = tuple.__new__

# Candidate sets (the documents a filter admits) up to this size are searched exactly:
# cheaper than over-fetching from the graph, and recall is 1.
_EXACT_SUBSET = 4096
# Larger candidate sets are searched exactly too when the graph search would have to fetch
# more than this many neighbours per query to find k admitted ones (a rare filter).
_PLAN_FETCH = 1024
# Over-fetching from the graph for a filter stops at this many candidates per query; the
# queries still short of k results then get an exact search over the allowed vectors.
_MAX_FETCH = 2048
# The automatic compaction starts once dead index entries outnumber live ones and are at
# least this many.
_AUTO_COMPACT_MIN = 1000
# Hybrid search fuses this many candidates (at least k) of each ranking.
_FUSE_CANDIDATES = 50
# Reciprocal rank fusion's constant (the 60 of Cormack et al.).
_RRF_CONSTANT = 60
_OUTPUTS = ("list", "arrow", "polars")
# Rows read from the log per step of a rebuild or catch-up.
_CATCH_UP_ROWS = 16384
# Rebuilds of at least this many keys show a progress bar (when stderr is a terminal).
_PROGRESS_MIN = 20000


class SearchResult(NamedTuple):
    """One search hit: the key, its distance to the query (``score``, lower is closer) and
    its metadata record when the search asked for it (``with_metadata=True``).

    >>> SearchResult("doc1", 0.125)
    SearchResult(key='doc1', score=0.125, metadata=None)
    """

    key: str
    score: float
    metadata: dict[str, Any] | None = None


_new_result = partial(_new_tuple, SearchResult)


class SearchPlan(NamedTuple):
    """How a search would run (:meth:`VectorStore.plan`).

    ``strategy``: ``"hnsw"`` (the graph), ``"exact"`` (brute force over every vector),
    ``"exact-subset"`` (brute force over the documents the filters admit),
    ``"filtered-hnsw"`` (the graph, over-fetching and dropping what the filters refuse,
    then an exact search for queries still short of ``k``) or ``"empty"`` (no document
    admitted). ``candidates``: documents the filters admit (with a ``filter`` callable:
    before it is asked); ``total``: documents in the store.
    """

    strategy: str
    candidates: int
    total: int


class VectorStore(Handle):
    """Durable vectors with approximate (HNSW, usearch) and exact nearest-neighbour search.

    >>> import numpy as np, synarrow, tempfile
    >>> with synarrow.VectorStore(tempfile.mkdtemp() + "/v.db", dimensions=3) as store:
    ...     store.insert("a", np.array([1.0, 0.0, 0.0], np.float32))
    ...     store.insert_batch(["b", "c"], np.array([[0, 1, 0], [1, 1, 0]], np.float32))
    ...     [r.key for r in store.search([1.0, 0.1, 0.0], k=2)]
    2
    ['a', 'c']

    Args:
        path: the database directory (created if missing). Keys whose latest value is a
            vector are the store's documents; other keys may sit beside them and are ignored.
        dimensions: vector length, 2 to 8192. Required to create a store; when opening an
            existing one it may be left out, and another value raises ``ConfigError``.
        metric: ``"cosine"`` (default for a new store), ``"euclidean"`` or ``"dot"``;
            fixed when the store is created (see the module docs for the scores).
        precision: how the index holds vectors: ``"f32"`` (default, lossless), ``"f16"``,
            ``"bf16"`` or ``"i8"`` (for cosine on normalised embeddings) to save memory. The
            log always keeps float32, so ``get`` is exact whatever the precision.
        connectivity: HNSW graph degree (default 16).
        expansion_add: HNSW candidate list size while adding (default 128).
        expansion_search: HNSW candidate list size while searching (default 96: recall@10
            above 0.99 on 100k clustered 128-d vectors, where usearch's 64 gives about 0.985
            for 10% more speed); may differ from the creation value on every open, and be
            changed through :attr:`expansion_search`.
        config: settings of the underlying :class:`~synarrow.SynaDB` (``sync_on_write``
            decides whether each call is fsynced, see the module docs). A new database
            gets the defaults without LZ4 compression, which float vectors do not repay.
        readonly: open without the writer lock (other processes may read the same store);
            the saved index is memory-mapped when it is up to date with the log.
        snapshot: read the vectors as they were when ``db.snapshot(tag)`` made this tag
            (read-only, whatever ``readonly`` says; see :class:`~synarrow.SynaDB`):
            ``search``, ``get``, ``len``, ``keys`` answer for the tag while writers go on.
            Cost of the open: the saved index (a cache of the current state) is loaded
            into memory when usable and caught up *in memory* against the tag, by
            comparing the fingerprint of every vector the tag holds (one read of each) and
            re-adding only those that differ (removing those the tag lacks); without a
            usable saved index it is built in memory from the tag's vectors. Nothing is
            written. :class:`~synarrow.errors.SnapshotNotFoundError` for an unknown tag.
        threads: usearch worker threads for adds and batch searches (0: every core).
        text_field: the metadata field that ``search(..., text=...)`` ranks with BM25
            (default ``"text"``); may differ on every open, as the text index is built in
            memory on the first text search and kept up to date after.
        auto_compact: compact in a background thread once deleted and replaced vectors
            outnumber the live ones (see :meth:`compact`); default ``True``.

    Settings other than ``expansion_search`` are fixed at creation: passing a different
    value when reopening raises :class:`~synarrow.errors.ConfigError`.
    """

    kind: ClassVar[str] = "vector store"

    def __init__(
        self,
        path: str | os.PathLike[str],
        dimensions: int | None = None,
        metric: str | None = None,
        *,
        precision: str | None = None,
        connectivity: int | None = None,
        expansion_add: int | None = None,
        expansion_search: int | None = None,
        config: DbConfig | None = None,
        readonly: bool = False,
        threads: int = 0,
        snapshot: str | None = None,
        text_field: str = "text",
        auto_compact: bool = True,
    ) -> None:
        readonly = readonly or snapshot is not None
        super().__init__(Path(path), readonly=readonly)
        if not isinstance(text_field, str) or not text_field:
            raise InvalidArgumentError(f"text_field must be a non-empty str, got {text_field!r}")
        self._tag = snapshot
        self._text_field = text_field
        self._meta = MetadataColumns()
        self._filter = MetadataFilter()
        self._text: TextIndex | None = None
        self._dead = 0
        self._changes = 0
        self._last_ts: int | None = None  # the store's clock, read on first use (_next_ts)
        self._documents: tuple[int, pa.Table] | None = None
        if not isinstance(auto_compact, bool):
            raise InvalidArgumentError(f"auto_compact must be a bool, got {auto_compact!r}")
        self._auto_compact = auto_compact and snapshot is None and not readonly
        self._journal: list[tuple[np.ndarray, np.ndarray | None]] | None = None
        self._background: threading.Thread | None = None
        self._cancel: threading.Event | None = None
        self._background_error: BaseException | None = None
        self._threads = _check_threads(threads)
        self._lock = threading.RLock()
        self._dir = self.path / files.DIRNAME
        requested: dict[str, Any] = {
            "dimensions": dimensions,
            "metric": metric,
            "precision": precision,
            "connectivity": connectivity,
            "expansion_add": expansion_add,
            "expansion_search": expansion_search,
        }
        if not (self._dir / files.CONFIG_NAME).exists():
            # Refuse bad settings before a database directory is created for them.
            if dimensions is None:
                raise ConfigError(
                    f"{self.path} holds no vector store yet", hint="pass dimensions= to create one"
                )
            files.StoreConfig(**{k: v for k, v in requested.items() if v is not None})
        if config is None and not readonly and not (self.path / "config.json").exists():
            # Embeddings do not compress: LZ4 would only cost CPU on every insert.
            config = DbConfig(compression=None)
        # The store syncs once per call itself; a per-vector fsync inside a batch would cost
        # 100x. The override is this handle's only: config.json keeps the user's setting.
        if snapshot is not None:
            self._db = SynaDB(self.path, config, snapshot=snapshot)
        else:
            # One writer at a time: the index cache (vector_index/) is kept by the writer.
            self._db = SynaDB(
                self.path,
                config,
                readonly=readonly,
                sync_on_write=None if readonly else False,
                writers=None if readonly else "single",
            )
        try:
            self._durable = (read_stored(self.path) or self._db.config).sync_on_write
            self._config, created = self._resolve_config(requested)
            self._euclidean = self._config.metric == "euclidean"
            self._checkpoint: files.Checkpoint | None = None
            self._open_index(created)
        except BaseException:
            self._db.close()
            raise
        self.mark_open()
        # A compaction that a close (or a crash) cut short is taken up again.
        with self._lock:
            self._maybe_compact_in_background()

    # -- opening ---------------------------------------------------------------------------

    def _resolve_config(self, requested: dict[str, Any]) -> tuple[files.StoreConfig, bool]:
        """The store's settings, and whether the store is new (settings not saved yet)."""
        stored = files.read_config(self._dir)
        given = {k: v for k, v in requested.items() if v is not None}
        if stored is None:
            if "dimensions" not in given:
                raise ConfigError(
                    f"{self.path} holds no vector store yet",
                    hint="pass dimensions= to create one",
                )
            return files.StoreConfig(**given), True
        cfg = files.StoreConfig(**{**asdict(stored), **given})
        for name in ("dimensions", "metric", "precision", "connectivity", "expansion_add"):
            if getattr(cfg, name) != getattr(stored, name):
                raise ConfigError(
                    f"vector store {self.path} was created with {name}="
                    f"{getattr(stored, name)!r}, not {getattr(cfg, name)!r}",
                    hint=f"leave {name} out (or pass {getattr(stored, name)!r}) to open it; "
                    "use another path for a store with other settings",
                )
        return cfg, False

    def _new_index(self) -> Index:
        c = self._config
        return Index(
            ndim=c.dimensions,
            metric=c.usearch_metric,
            dtype=c.precision,
            connectivity=c.connectivity,
            expansion_add=c.expansion_add,
            expansion_search=c.expansion_search,
        )

    def _position(self) -> int:
        return self._db.next_sequence

    def _open_index(self, created: bool) -> None:
        position = self._position()
        loaded = None if created else self._load_checkpoint(position)
        if loaded is None:
            self._index, self._keys = self._new_index(), KeyMap()
        else:
            self._index, self._keys, self._meta, self._checkpoint = loaded
            self._dead = self._checkpoint.dead
        self._saved_position = -1 if self._checkpoint is None else self._checkpoint.position
        if self._saved_position != position or self._tag is not None:
            # A tag is always caught up: the saved index is of the current state, and the
            # log position says nothing about which version a tag holds.
            self._catch_up(strict=created)
            self._fold_metadata()
        self._fill_insert_times()
        # The log position the index reflects; it moves with every entry this store writes,
        # so a save can tell whether someone else wrote through store.db meanwhile.
        self._indexed_position = position
        if created and not self.readonly:
            # Only once the log agreed with these settings (catch-up checks dimensions).
            files.write_config(self._dir, self._config)
        if self._saved_position != position and not self.readonly:
            self._save()
        elif not self.readonly:
            files.remove_leftovers(self._dir, self._checkpoint)

    def _load_checkpoint(
        self, position: int
    ) -> tuple[Index, KeyMap, MetadataColumns, files.Checkpoint] | None:
        if not (self._dir / files.STATE_NAME).exists():
            return None
        c = self._config
        try:
            state = files.read_checkpoint(self._dir)
            keys = files.read_keymap(self._dir, state)
            meta = files.read_metadata(self._dir, state)
            if any(keys.key(label) is None for label in meta.labels().tolist()):
                raise ValueError("the metadata names labels the key map does not hold")
            # A mapped index cannot take adds: map it only when nothing needs catching up.
            view = self.readonly and self._tag is None and state.position == position
            path = self._dir / state.index_file
            with files.checked_file(
                self._dir, state.index_file, state.index_bytes, state.index_crc
            ) as checked:
                index = Index.restore(checked, view=view)
            if index is None:
                raise ValueError(f"{path} is not a usearch index")
            if (
                index.ndim != c.dimensions
                or getattr(index.metric, "name", "").lower() != c.usearch_metric
                or index.dtype.name.lower() != c.precision
                or len(index) != state.count
            ):
                raise ValueError(f"{path} does not match the store settings")
        except (ValueError, RuntimeError) as exc:  # damaged: rebuild (CorruptionError: refuse)
            _log.warning(
                "vector index of %s is unusable (%s); rebuilding it from the log", self.path, exc
            )
            return None
        index.expansion_search = c.expansion_search  # type: ignore[misc]  # has a setter
        return index, keys, meta, state

    def _catch_up(self, *, strict: bool = False) -> None:
        """Make the index match the log: add new or changed vectors, drop deleted ones.

        Changed vectors are found by comparing fingerprints, so only they are re-added.
        Vectors of another length are skipped with a warning, or refused when ``strict``
        (a store being created over existing data of other dimensions).
        """
        db = self._db
        dims = self._config.dimensions
        live = db.keys()
        unseen = set(self._keys)
        enabled = None if len(live) >= _PROGRESS_MIN else False
        with progress(total=len(live), desc="indexing vectors", enabled=enabled) as bar:
            for lo in range(0, len(live), _CATCH_UP_ROWS):
                keys: list[str] = []
                rows: list[np.ndarray] = []
                for key in live[lo : lo + _CATCH_UP_ROWS]:
                    if key == LOG_KEY:
                        continue  # the metadata log is never a document
                    value = db.get(key)
                    if not isinstance(value, np.ndarray):
                        continue
                    if value.shape != (dims,):
                        message = (
                            f"key {key!r} holds a vector of {value.size} dimensions, but "
                            f"the vector store at {self.path} has {dims}"
                        )
                        if strict:
                            raise ConfigError(message, hint="pass the data's dimensions")
                        _log.warning("not indexing: %s", message)
                        continue
                    keys.append(key)
                    rows.append(value)
                bar.update(min(_CATCH_UP_ROWS, len(live) - lo))
                if not keys:
                    continue
                matrix = np.stack(rows)
                finite = np.isfinite(matrix).all(axis=1)
                if not finite.all():
                    bad = [k for k, ok in zip(keys, finite.tolist()) if not ok]
                    _log.warning(
                        "not indexing %d vectors holding NaN or inf: %r", len(bad), bad[:5]
                    )
                    keys = [k for k, ok in zip(keys, finite.tolist()) if ok]
                    matrix = matrix[finite]
                unseen.difference_update(keys)
                fps = fingerprints(matrix)
                fp_of = self._keys.fingerprint
                changed = [i for i, (k, fp) in enumerate(zip(keys, fps.tolist())) if fp_of(k) != fp]
                if changed:
                    self._add_to_index([keys[i] for i in changed], matrix[changed], fps[changed])
        gone = self._keys.remove_many(unseen)
        if gone.size:
            self._index.remove(gone)
            self._meta.remove(gone)
            self._dead += int(gone.size)
            if self._journal is not None:
                self._journal.append((gone, None))
        self._changes += 1

    def _add_to_index(self, keys: list[str], matrix: np.ndarray, fps: np.ndarray) -> None:
        labels, replaced = self._keys.assign(keys)
        if replaced.size:
            self._index.remove(replaced)
            self._dead += int(replaced.size)
        self._index.add(labels, matrix, threads=self._threads)
        self._keys.set_fingerprints(labels, fps)
        self._keys.set_inserted(labels, 0)  # read from the log by _fill_insert_times
        if self._journal is not None:  # a compaction is building a new index meanwhile
            self._journal.append((labels, matrix.copy()))

    def _fill_insert_times(self) -> None:
        """Read the insert time of every vector whose time is unknown (0) from the log."""
        for label in self._keys.unknown_times().tolist():
            key = self._keys.key(label)
            ts = self._db.get_history(cast(str, key), last=1).column("ts")
            if len(ts):
                self._keys.set_inserted(np.array([label]), int(ts.cast(pa.int64())[0].as_py()))

    def _next_ts(self) -> int:
        """The timestamp of the next write: now, or just after every time the store used
        (the caller holds the lock)."""
        if self._last_ts is None:
            latest = self._keys.latest_time()
            if self._db.exists(LOG_KEY):
                # New entries must sort after every earlier one (the fold goes by timestamp),
                # whatever pushed their times ahead (a clock set back, explicit timestamps).
                last = self._db.get_history(LOG_KEY, last=1).column("ts").cast(pa.int64())
                if len(last):
                    latest = max(latest, int(last[0].as_py()))
            self._last_ts = latest
        self._last_ts = max(time.time_ns() // 1000, self._last_ts + 1)
        return self._last_ts

    def _fold_metadata(self) -> None:
        """Rebuild the metadata records from the log (after the log moved on)."""
        if not self._db.exists(LOG_KEY):
            if self._meta.active:
                self._meta.clear()
            return
        history = self._db.get_history(LOG_KEY)
        values = history.column("value").combine_chunks()
        stamps = history.column("ts").cast(pa.int64()).to_numpy()
        if pa.types.is_struct(values.type):
            # Entries of other types written to the key through store.db: not the store's.
            names = [values.type.field(i).name for i in range(values.type.num_fields)]
            blobs = values.field(names.index("bytes")) if "bytes" in names else None
            foreign = len(values) - (0 if blobs is None else len(blobs) - blobs.null_count)
            _log.warning(
                "key %r of %s holds %d entries that are not metadata; they are skipped",
                LOG_KEY,
                self.path,
                foreign,
            )
            datas = [] if blobs is None else blobs.to_pylist()
        elif pa.types.is_large_binary(values.type) or pa.types.is_binary(values.type):
            datas = values.to_pylist()
        else:
            raise CorruptionError(
                f"key {LOG_KEY!r} of {self.path} holds {values.type} values, not the store's "
                "metadata entries",
                hint=DAMAGED_LOG_HINT,
            )
        entries = []
        times: list[int] = []
        row_times: list[np.ndarray | None] = []
        for i, data in enumerate(datas):
            if data is not None:
                keys_, fps_, fields, own = decode_entry(
                    data, f"{i} of key {LOG_KEY!r} in {self.path}"
                )
                entries.append((keys_, fps_, fields))
                times.append(int(stamps[i]))
                row_times.append(own)
        current = {}
        labels = self._keys.labels()
        fps = self._keys.fingerprints_of(labels).tolist()
        for label, fp in zip(labels.tolist(), fps):
            current[self._keys.key(label)] = (label, fp)
        labels, which, rows = self._meta.fold(entries, current)
        if len(labels):
            # A row is written with its vectors, at their timestamp: the insert time of the
            # key's current vector (also when the vector itself did not change); rows of a
            # consolidated entry carry their own.
            found = [
                times[e] if row_times[e] is None else int(row_times[e][r])  # type: ignore[index]
                for e, r in zip(which.tolist(), rows.tolist())
            ]
            self._keys.set_inserted(labels, np.array(found, np.int64))
        self._text = None
        self._changes += 1

    # -- properties ------------------------------------------------------------------------

    @property
    def db(self) -> SynaDB:
        """The underlying database (for SQL, metadata keys, compaction).

        Vectors written through it reach the index at the next :meth:`flush`,
        :meth:`close` or open. Its ``config.sync_on_write`` reads ``False`` while the store
        is open: the store syncs once per call itself.
        """
        return self._db

    @property
    def dimensions(self) -> int:
        """The vector length."""
        return self._config.dimensions

    @property
    def metric(self) -> str:
        """``"cosine"``, ``"euclidean"`` or ``"dot"``."""
        return self._config.metric

    @property
    def precision(self) -> str:
        """How the index holds vectors (``"f32"``, ``"f16"``, ``"bf16"`` or ``"i8"``)."""
        return self._config.precision

    @property
    def expansion_search(self) -> int:
        """HNSW candidate list size for searches: higher is slower with better recall."""
        return self._config.expansion_search

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        self._config = replace(self._config, expansion_search=value)
        self._index.expansion_search = self._config.expansion_search  # type: ignore[misc]

    def __len__(self) -> int:
        self.require_open()
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and not self.closed and key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self, prefix: str | None = None) -> list[str]:
        """The keys in the store, sorted; only those starting with ``prefix`` if given."""
        self.require_open()
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidArgumentError(f"prefix must be a str, got {type(prefix).__name__}")
        with self._lock:
            keys, _ = self._keys.prefix_range(prefix or "")
            return list(keys)

    # -- writing ---------------------------------------------------------------------------

    def insert(self, key: str, vector: Any, metadata: Mapping[str, Any] | None = None) -> None:
        """Store ``vector`` under ``key``, replacing the key's previous vector and metadata.

        ``vector``: any 1-D sequence of ``dimensions`` finite numbers (stored as float32).
        ``metadata``: a flat dict of fields (see :meth:`insert_batch`), or ``None``.
        """
        check_key(key)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidValueError(
                f"metadata must be a dict of fields, got {type(metadata).__name__}"
            )
        self.insert_batch(
            [key],
            check_vector(vector, self._config.dimensions, "vector")[None, :],
            None if metadata is None else [metadata],
        )

    def insert_batch(
        self, keys: Sequence[str] | pa.Array, vectors: Any, metadata: Any = None
    ) -> int:
        """Store one vector per key (rows of ``vectors``); returns how many were stored.

        ``vectors``: a 2-D array-like of shape ``(len(keys), dimensions)`` (numpy, lists,
        an Arrow ``fixed_size_list`` array). ``metadata``: one record per key, as a list of
        flat dicts (``None`` for a key without one), a pandas or polars DataFrame, an Arrow
        table or a dict of columns. Fields hold numbers, strings, booleans, timestamps,
        dates or lists of strings, one type per field across the store (see
        :mod:`synarrow.vector_meta`). A key's record is replaced with its vector: a key
        inserted without metadata has none afterwards.

        A key given twice keeps its last row. Nothing is written unless every key, row and
        record is valid. Costs one fsync (with ``sync_on_write``), however many rows.
        """
        keys = _key_list(keys)
        matrix = check_matrix(vectors, self._config.dimensions, rows=len(keys))
        table = normalize(metadata, len(keys))
        with self._lock:
            self.require_writable()
            if not keys:
                return 0
            keys, rows = _last_wins(keys)
            if rows is not None:
                matrix = matrix[rows]
                table = None if table is None else table.take(pa.array(rows))
            if table is not None:
                table, _ = self._meta.conform(table)  # refuse a type clash before writing
            fps = fingerprints(matrix)
            ts = self._next_ts()
            labels, replaced = self._keys.assign(keys)
            try:
                if replaced.size:
                    self._index.remove(replaced)
                    self._dead += int(replaced.size)
                # usearch's add takes the GIL back for every vector, so a Python thread busy
                # at the same time (an automatic compaction the log writes started) slows it
                # down several times: let a running compaction finish first, and add to the
                # graph before the log writes that may start the next one. Nothing is
                # acknowledged before every step is done.
                self._wait_for_compaction()
                self._index.add(labels, matrix, threads=self._threads)
                # Every insert records its rows (an empty record without metadata): they
                # bind records to vectors and keep the insert time of a vector re-inserted
                # unchanged, which the vector's fingerprint cannot tell.
                self._db.append(LOG_KEY, encode_entry(keys, fps, table), timestamp=ts)
                self._indexed_position += 1
                self._append_rows(keys, matrix, ts)
            except BaseException:
                self._resync(keys)
                raise
            self._keys.set_fingerprints(labels, fps)
            self._keys.set_inserted(labels, ts)
            self._meta.set(labels, table)
            if self._text is not None:
                self._text.set(labels, self._texts_of(labels))
            if self._journal is not None:
                self._journal.append((labels, matrix.copy()))
            self._changes += 1
            self._maybe_compact_in_background()
        return len(keys)

    def _wait_for_compaction(self) -> None:
        try:
            self._db.wait_for_compaction()
        except CompactionError as exc:  # not this insert's failure: report, carry on
            _log.warning("automatic compaction of %s failed: %s", self.path, exc)

    def _append_rows(self, keys: list[str], matrix: np.ndarray, ts: int) -> None:
        self._db.put_vectors(keys, matrix, timestamp=ts)  # all or nothing
        self._indexed_position += len(keys)
        self._commit()

    def _commit(self) -> None:
        if self._durable:
            self._db.sync()
        else:
            self._db.flush()

    def _resync(self, keys: Iterable[str]) -> None:
        """After a failed write, make the index agree with the log for ``keys`` again."""
        keys = list(keys)
        gone = self._keys.remove_many(keys)
        if gone.size:
            self._index.remove(gone)
        if self._db.closed:
            return
        dims = self._config.dimensions
        found = [(k, v) for k in keys if isinstance(v := self._db.get(k), np.ndarray)]
        found = [(k, v) for k, v in found if v.shape == (dims,) and np.isfinite(v).all()]
        if found:
            matrix = np.stack([v for _, v in found])
            self._add_to_index([k for k, _ in found], matrix, fingerprints(matrix))
            self._fill_insert_times()
        self._fold_metadata()

    def delete(self, key: str) -> bool:
        """Remove ``key``'s vector; returns whether it was in the store.

        It leaves search results at once; its space in the index comes back with
        :meth:`rebuild`, and in the log with ``store.db.compact()``.
        """
        check_key(key)
        return self.delete_batch([key]) == 1

    def delete_batch(self, keys: Iterable[str]) -> int:
        """Remove several keys (one sync for all); returns how many were in the store."""
        keys = _key_list(keys)
        with self._lock:
            self.require_writable()
            present = [k for k in dict.fromkeys(keys) if k in self._keys]
            if not present:
                return 0
            try:
                for key in present:
                    if self._db.delete(key):
                        self._indexed_position += 1
                self._commit()
            except BaseException:
                self._resync(present)
                raise
            labels = self._keys.remove_many(present)
            self._index.remove(labels)
            self._meta.remove(labels)
            if self._text is not None:
                self._text.remove(labels)
            if self._journal is not None:
                self._journal.append((labels, None))
            self._dead += int(labels.size)
            self._changes += 1
            self._maybe_compact_in_background()
        return len(present)

    # -- reading ---------------------------------------------------------------------------

    @overload
    def get(self, key: str, with_metadata: Literal[False] = False) -> np.ndarray | None: ...
    @overload
    def get(
        self, key: str, with_metadata: Literal[True]
    ) -> tuple[np.ndarray, dict[str, Any]] | None: ...
    def get(
        self, key: str, with_metadata: bool = False
    ) -> np.ndarray | tuple[np.ndarray, dict[str, Any]] | None:
        """The stored float32 vector of ``key`` (a copy, read from the log), or ``None``.

        ``with_metadata=True``: ``(vector, record)`` instead, the record a dict of the
        key's metadata fields (``{}`` when it has none; null fields are left out).
        """
        check_key(key)
        self.require_open()
        with self._lock:
            label = self._keys.label(key)
            if label is None:
                return None
            value = self._db.get(key)
            if not isinstance(value, np.ndarray):
                return None
            if not with_metadata:
                return value
            return value, self._meta.records(np.array([label]))[0]

    def metadata(self, key: str) -> dict[str, Any] | None:
        """The metadata record of ``key`` (``{}``: none), or ``None`` if it is not stored."""
        found = self.get(key, with_metadata=True)
        return None if found is None else found[1]

    @property
    def metadata_schema(self) -> pa.Schema:
        """The metadata fields documents hold, with their Arrow storage types."""
        return self._meta.schema

    def plan(
        self,
        k: int = 10,
        *,
        exact: bool = False,
        where: str | None = None,
        start: Any = None,
        end: Any = None,
        prefix: str | None = None,
        filter: Callable[[str], bool] | None = None,
    ) -> SearchPlan:
        """How :meth:`search` with these arguments would run (nothing is searched).

        The rule: without filters the graph (or brute force with ``exact``). With filters,
        ``m`` documents admitted of ``n`` in the store: none, ``"empty"``; ``exact``, or
        ``m <= 4096``, or ``4 * k * n / m > 1024`` (the graph would have to fetch over 1024
        neighbours per query to expect ``4 * k`` admitted ones), ``"exact-subset"``;
        otherwise ``"filtered-hnsw"``.
        """
        k = _check_k(k)
        self.require_open()
        with self._lock:
            allowed = self._candidates(where, start, end, prefix)
            return self._plan(k, exact, allowed, filter is not None)

    def _plan(self, k: int, exact: bool, allowed: np.ndarray | None, predicate: bool) -> SearchPlan:
        total = len(self._keys)
        if allowed is None and not predicate:
            return SearchPlan("exact" if exact else "hnsw", total, total)
        m = total if allowed is None else len(allowed)
        if not m:
            return SearchPlan("empty", 0, total)
        if exact or m <= _EXACT_SUBSET or 4 * k * total > _PLAN_FETCH * m:
            return SearchPlan("exact-subset", m, total)
        return SearchPlan("filtered-hnsw", m, total)

    def search(
        self,
        query: Any,
        k: int = 10,
        *,
        exact: bool = False,
        prefix: str | None = None,
        filter: Callable[[str], bool] | None = None,
        where: str | None = None,
        start: Any = None,
        end: Any = None,
        text: str | None = None,
        text_weight: float = 0.5,
        with_metadata: bool = False,
        output: str = "list",
    ) -> Any:
        """The ``k`` nearest stored vectors to ``query``, closest first.

        Args:
            query: a 1-D array-like of ``dimensions`` finite numbers.
            k: how many results at most (fewer when the store, or the filters, have fewer).
            exact: brute force over every vector (as the index holds them) instead of the
                HNSW graph: recall 1, cost linear in the store size.
            prefix: only keys starting with this string.
            filter: only keys for which ``filter(key)`` is true.
            where: only documents whose metadata satisfy this SQL predicate, e.g.
                ``"category = 'news' AND year >= 2024"`` (DuckDB SQL over ``key``,
                ``inserted_at`` and the metadata fields; see :mod:`synarrow.vector_filter`).
                Documents without a field see it as NULL.
            start, end: only vectors inserted in ``[start, end)`` (datetimes, naive
                meaning UTC; ISO strings; int microseconds): the insert times are the
                entries' timestamps in the log.
            text: a hybrid search: rank the admitted documents by BM25 on the metadata
                field ``text_field`` as well, and fuse both rankings by reciprocal rank
                (see below).
            text_weight: the text ranking's weight in the fusion, 0 to 1 (the vector
                ranking gets ``1 - text_weight``); default 0.5, equal weights.
            with_metadata: give each result its metadata record.
            output: ``"list"`` (default: a list of :class:`SearchResult`), ``"arrow"`` (a
                table ``key``, ``score`` and, with ``with_metadata``, the fields) or
                ``"polars"`` (the same as a polars DataFrame).

        Filters combine with AND. :meth:`plan` tells how a filtered search runs: the
        admitted documents are searched exactly when few, else the graph is over-fetched
        and what the filters refuse is dropped; queries still short of ``k`` hits then get
        an exact search over the admitted vectors, so filters do not cost recall.

        Hybrid search: the best ``max(k, 50)`` admitted documents by vector distance and
        the best ``max(k, 50)`` by BM25 each give every document a rank ``r`` (1 = best);
        a document's fused score is ``(1 - text_weight) / (60 + r_vector) + text_weight /
        (60 + r_text)``, a ranking it is missing from adding 0, and results come in fused
        order (ties: the better single rank, then the smaller label). ``score`` stays the
        vector distance of each result, so in a hybrid search results are not sorted by
        it. An empty store returns ``[]``.
        """
        q = check_vector(query, self._config.dimensions, "query")
        k = _check_k(k)
        self.require_open()
        if (
            prefix is None
            and filter is None
            and where is None
            and start is None
            and end is None
            and text is None
            and text_weight == 0.5
            and not with_metadata
            and output == "list"
        ):
            if not len(self._keys):
                return []
            m = self._index.search(q, k, exact=exact)
            return self._results(m.keys, m.distances)
        hits = self._search_many(
            q[None, :],
            k,
            exact,
            prefix,
            filter,
            where,
            start,
            end,
            None if text is None else [text],
            text_weight,
            1,
        )
        return self._output(hits, with_metadata, output)[0]

    def search_batch(
        self,
        queries: Any,
        k: int = 10,
        *,
        exact: bool = False,
        prefix: str | None = None,
        filter: Callable[[str], bool] | None = None,
        where: str | None = None,
        start: Any = None,
        end: Any = None,
        text: str | Sequence[str] | None = None,
        text_weight: float = 0.5,
        with_metadata: bool = False,
        output: str = "list",
        threads: int | None = None,
    ) -> Any:
        """:meth:`search` for each row of ``queries`` (2-D), on several threads at once.

        ``threads``: usearch worker threads (default: the store's ``threads``; 0 = every
        core). ``text``: one text query for all, or one per query. Returns one result list
        per query, in order; with ``output="arrow"`` / ``"polars"`` one table whose
        ``query`` column is the row number of the query.
        """
        matrix = check_matrix(queries, self._config.dimensions, what="queries")
        k = _check_k(k)
        nthreads = self._threads if threads is None else _check_threads(threads)
        self.require_open()
        texts: list[str] | None = None
        if text is not None:
            texts = [text] * len(matrix) if isinstance(text, str) else list(text)
            if len(texts) != len(matrix):
                raise InvalidArgumentError(
                    f"got {len(texts)} text queries for {len(matrix)} vector queries"
                )
        hits = self._search_many(
            matrix, k, exact, prefix, filter, where, start, end, texts, text_weight, nthreads
        )
        if output == "list" and not with_metadata:
            return hits
        return self._output(hits, with_metadata, output, batch=True)

    def _search_many(
        self,
        queries: np.ndarray,
        k: int,
        exact: bool,
        prefix: str | None,
        predicate: Callable[[str], bool] | None,
        where: str | None,
        start: Any,
        end: Any,
        texts: list[str] | None,
        text_weight: float,
        threads: int,
    ) -> list[list[SearchResult]]:
        if predicate is not None and not callable(predicate):
            raise InvalidArgumentError(f"filter must be callable, got {type(predicate).__name__}")
        weight = _check_weight(text_weight)
        if texts is not None:
            for t in texts:
                query_terms(t)  # refuse a bad text query before any work
        nq = len(queries)
        wide = k if texts is None else max(k, _FUSE_CANDIDATES)
        with self._lock:
            allowed = self._candidates(where, start, end, prefix)
            plan = self._plan(wide, exact, allowed, predicate is not None)
            if texts is not None:
                text_index = self._text_index()
        if not nq or plan.strategy == "empty" or not len(self._keys):
            return [[] for _ in range(nq)]
        mask = None if allowed is None else self._mask(allowed)
        if texts is None:
            return self._vector_hits(queries, k, plan, allowed, mask, predicate, threads)
        vector_hits = self._vector_hits(queries, wide, plan, allowed, mask, predicate, threads)
        text_mask = mask
        if predicate is not None:
            text_mask = self._predicate_mask(mask, predicate)
        out = []
        for qi, (hits, t) in enumerate(zip(vector_hits, texts)):
            vec_labels = np.array([self._keys.label(h.key) for h in hits], np.uint64)
            text_labels, _ = text_index.search(t, wide, allowed=text_mask)
            fused, _ = reciprocal_rank_fusion(
                [vec_labels, text_labels], [1.0 - weight, weight], k, constant=_RRF_CONSTANT
            )
            out.append(self._scored(queries[qi], fused, threads))
        return out

    def _vector_hits(
        self,
        queries: np.ndarray,
        k: int,
        plan: SearchPlan,
        allowed: np.ndarray | None,
        mask: np.ndarray | None,
        predicate: Callable[[str], bool] | None,
        threads: int,
    ) -> list[list[SearchResult]]:
        if plan.strategy in ("hnsw", "exact"):
            keys, dists, counts = _batch(
                self._index.search(queries, k, threads=threads, exact=plan.strategy == "exact")
            )
            return [self._results(keys[i, :c], dists[i, :c]) for i, c in enumerate(counts.tolist())]
        if plan.strategy == "exact-subset":
            labels = self._keys.labels() if allowed is None else allowed
            if predicate is not None:
                labels = self._apply_predicate(labels, predicate)
            return self._exact_subset(queries, k, labels, threads)
        return self._overfetch(queries, k, plan, allowed, mask, predicate, threads)

    def _candidates(
        self, where: str | None, start: Any, end: Any, prefix: str | None
    ) -> np.ndarray | None:
        """The labels (uint64, ascending) the filters admit; ``None``: no filter given."""
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidArgumentError(f"prefix must be a str, got {type(prefix).__name__}")
        lo, hi = time_range(start, end)
        allowed: np.ndarray | None = None
        if prefix:
            allowed = np.sort(self._keys.prefix_range(prefix)[1])
        if where is not None:
            found = self._filter.matching(self._documents_table(), where, self._changes)
            found = np.sort(found)
            allowed = found if allowed is None else np.intersect1d(allowed, found, True)
        if lo is not None or hi is not None:
            base = np.sort(self._keys.labels()) if allowed is None else allowed
            times = self._keys.inserted(base)
            keep = np.ones(len(base), bool)
            if lo is not None:
                keep &= times >= lo
            if hi is not None:
                keep &= times < hi
            allowed = base[keep]
        return allowed

    def _mask(self, labels: np.ndarray) -> np.ndarray:
        mask = np.zeros(self._keys.next_label, bool)
        mask[labels.astype(np.intp)] = True
        return mask

    def _apply_predicate(self, labels: np.ndarray, predicate: Callable[[str], bool]) -> np.ndarray:
        key_of = self._keys.key_of
        keep = [
            (key := key_of[label]) is not None and bool(predicate(key)) for label in labels.tolist()
        ]
        return labels[np.array(keep, bool)] if len(labels) else labels

    def _predicate_mask(
        self, mask: np.ndarray | None, predicate: Callable[[str], bool]
    ) -> np.ndarray:
        labels = self._keys.labels() if mask is None else np.flatnonzero(mask).astype(np.uint64)
        return self._mask(self._apply_predicate(labels, predicate))

    def _documents_table(self) -> pa.Table:
        """One row per document (``key``, ``inserted_at``, the fields, ``__label``), with
        naive UTC timestamps, as predicates see it; cached until the next change."""
        cached = self._documents
        if cached is not None and cached[0] == self._changes:
            return cached[1]
        keys, labels = self._keys.sorted_keys()
        columns = [pa.array(keys, pa.string()), _naive_ts(self._keys.inserted(labels))]
        names = ["key", "inserted_at"]
        if self._meta.active:
            rows = self._meta.rows(labels)
            for name, column in zip(rows.column_names, rows.columns):
                names.append(name)
                columns.append(_naive(column))
        names.append("__label")
        columns.append(pa.array(labels, pa.uint64()))
        table = pa.Table.from_arrays(columns, names=names)
        self._documents = (self._changes, table)
        return table

    def _text_index(self) -> TextIndex:
        """The BM25 index of ``text_field``, built from the metadata on first use."""
        if self._text_field not in self._meta.schema.names:
            raise InvalidArgumentError(
                f"no document has a metadata field {self._text_field!r} for text= to rank",
                hint="insert texts in that field, or open the store with text_field= naming "
                "the field that holds them",
            )
        if self._text is None:
            index = TextIndex()
            labels = self._meta.labels()
            if len(labels):
                index.set(labels.astype(np.uint64), self._texts_of(labels))
            self._text = index
        return self._text

    def _texts_of(self, labels: np.ndarray) -> list[str | None]:
        field = self._text_field
        schema = self._meta.schema
        if field not in schema.names:
            return [None] * len(labels)
        kind = schema.field(field).type
        if not pa.types.is_string(kind) and not pa.types.is_null(kind):
            raise InvalidArgumentError(
                f"text field {field!r} holds {kind} values, not strings",
                hint="pass text_field= naming a string field when opening the store",
            )
        return self._meta.rows(labels).column(field).to_pylist()

    def _results(self, labels: np.ndarray, dists: np.ndarray) -> list[SearchResult]:
        if self._euclidean:
            dists = np.sqrt(np.maximum(dists, 0))
        # The hot path: map() keeps the loop in C, and tuple.__new__ skips the namedtuple's
        # Python-level __new__.
        keys = list(map(self._keys.key_of.__getitem__, labels.tolist()))
        out = list(map(_new_result, zip(keys, dists.tolist(), repeat(None))))
        if None in keys:  # a key deleted by another thread during the search
            return [h for h in out if h[0] is not None]
        return out

    def _scored(self, query: np.ndarray, labels: np.ndarray, threads: int) -> list[SearchResult]:
        """Results for ``labels`` in this order, with their exact distances to ``query``."""
        labels, vectors = self._gather(labels)
        if not len(labels):
            return []
        return self._results(labels, _distances(self._config.metric, vectors, query))

    def _gather(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The labels the index still holds and their vectors (as it holds them, float32)."""
        if not labels.size:
            return labels, np.empty((0, self._config.dimensions), np.float32)
        with self._lock:
            got = cast("tuple[np.ndarray | None, ...]", self._index.get(labels, dtype="f32"))
        present = [i for i, v in enumerate(got) if v is not None]
        if not present:
            return labels[:0], np.empty((0, self._config.dimensions), np.float32)
        return labels[present], np.stack([cast(np.ndarray, got[i]) for i in present])

    def _overfetch(
        self,
        queries: np.ndarray,
        k: int,
        plan: SearchPlan,
        allowed: np.ndarray | None,
        mask: np.ndarray | None,
        predicate: Callable[[str], bool] | None,
        threads: int,
    ) -> list[list[SearchResult]]:
        nq = len(queries)
        total = plan.total
        memo: dict[str, bool] = {}

        def passes(key: str) -> bool:
            ok = memo.get(key)
            if ok is None:
                ok = memo[key] = predicate is None or bool(predicate(key))
            return ok

        results: list[list[SearchResult] | None] = [None] * nq
        pending = np.arange(nq)
        # Expect a share m/total of graph hits to pass; fetch 4x what k needs, as the
        # graph's ranks past the first few dozen are less exact.
        fetch = min(total, max(4 * k, math.ceil(4 * k * total / plan.candidates)))
        while pending.size and fetch <= max(_MAX_FETCH, 4 * k):
            keys, dists, counts = _batch(
                self._index.search(queries[pending], fetch, threads=threads)
            )
            still = []
            seen = passed = 0
            for j, qi in enumerate(pending.tolist()):
                row = keys[j, : counts[j]]
                if mask is not None:
                    inside = row < len(mask)
                    ok = np.zeros(len(row), bool)
                    ok[inside] = mask[row[inside].astype(np.intp)]
                    chosen = np.flatnonzero(ok)
                else:
                    chosen = np.arange(len(row))
                found = self._results(row[chosen], dists[j, chosen])
                if predicate is not None:
                    found = [r for r in found if passes(r.key)]
                seen += int(counts[j])
                passed += len(found)
                if len(found) >= k:
                    results[qi] = found[:k]
                else:
                    still.append(qi)
            pending = np.array(still, dtype=np.intp)
            if fetch >= total:
                break
            # Re-estimate the filters' pass rate; a rate too low sends the rest to the
            # exact search at once rather than through ever larger graph searches.
            rate = max(passed / max(seen, 1), 1 / (2 * fetch))
            fetch = min(total, max(2 * fetch, math.ceil(4 * k / rate)))
        if pending.size:
            labels = self._keys.labels() if allowed is None else allowed
            if predicate is not None:
                labels = self._apply_predicate(labels, predicate)
            exact_hits = self._exact_subset(queries[pending], k, labels, threads)
            for qi, hits in zip(pending.tolist(), exact_hits):
                results[qi] = hits
        return [r if r is not None else [] for r in results]

    def _exact_subset(
        self, queries: np.ndarray, k: int, labels: np.ndarray, threads: int
    ) -> list[list[SearchResult]]:
        """Brute force over the vectors of ``labels`` (as the index holds them)."""
        labels, vectors = self._gather(labels)
        if not len(labels):
            return [[] for _ in range(len(queries))]
        m = _brute_force(
            vectors,
            queries,
            min(k, len(vectors)),
            self._config.usearch_metric,
            exact=True,
            threads=threads,
        )
        rows, dists, counts = _batch(m)
        return [
            self._results(labels[rows[i, :c].astype(np.intp)], dists[i, :c])
            for i, c in enumerate(counts.tolist())
        ]

    # -- Arrow and SQL ---------------------------------------------------------------------

    def _output(
        self,
        hits: list[list[SearchResult]],
        with_metadata: bool,
        output: str,
        *,
        batch: bool = False,
    ) -> Any:
        """Search results in the form asked for: per query (list or table), or one table."""
        if output not in _OUTPUTS:
            raise InvalidArgumentError(
                f"output must be one of {', '.join(map(repr, _OUTPUTS))}, got {output!r}"
            )
        if output == "list":
            if with_metadata:
                with self._lock:
                    for row in hits:
                        records = self._meta.records(self._labels_of(row))
                        row[:] = [SearchResult(h.key, h.score, r) for h, r in zip(row, records)]
            return hits
        tables = []
        for qi, row in enumerate(hits):
            columns: dict[str, Any] = {}
            if batch:
                columns["query"] = pa.array(np.full(len(row), qi, np.int32))
            columns["key"] = pa.array([h.key for h in row], pa.string())
            columns["score"] = pa.array([h.score for h in row], pa.float64())
            table = pa.table(columns)
            if with_metadata and self._meta.active:
                with self._lock:
                    fields = self._meta.rows(self._labels_of(row))
                for name, column in zip(fields.column_names, fields.columns):
                    table = table.append_column(name, column)
            tables.append(table)
        if batch:
            tables = (
                [pa.concat_tables(tables, promote_options="default")]
                if tables
                else [
                    pa.table(
                        {
                            "query": pa.array([], pa.int32()),
                            "key": pa.array([], pa.string()),
                            "score": pa.array([], pa.float64()),
                        }
                    )
                ]
            )
        if output == "polars":
            polars = require("polars")
            tables = [polars.from_arrow(t) for t in tables]
        return tables[0] if batch else tables

    def _labels_of(self, hits: list[SearchResult]) -> np.ndarray:
        """The labels of the hits' keys (-1 for a key deleted since: no record)."""
        label = self._keys.label
        return np.array([-1 if (x := label(h.key)) is None else x for h in hits], np.int64)

    def to_arrow(self, prefix: str | None = None, *, with_metadata: bool = False) -> pa.Table:
        """The stored vectors as a table: ``key`` (string), ``vector``
        (``fixed_size_list<float32>[dimensions]``), sorted by key; with ``with_metadata``
        also ``inserted_at`` (``timestamp[us, UTC]``) and every metadata field.

        DuckDB reads ``vector`` as ``FLOAT[dimensions]``, so ``array_cosine_similarity`` and
        friends work on it directly.
        """
        self.require_open()
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidArgumentError(f"prefix must be a str, got {type(prefix).__name__}")
        dims = self._config.dimensions
        get = self._db.get
        with self._lock:
            keys, labels = self._keys.prefix_range(prefix or "")
            out_keys: list[str] = []
            out_labels: list[int] = []
            rows: list[np.ndarray] = []
            for key, label in zip(keys, labels.tolist()):
                value = get(key)
                if isinstance(value, np.ndarray) and value.shape == (dims,):
                    out_keys.append(key)
                    out_labels.append(label)
                    rows.append(value)
            flat = np.stack(rows).reshape(-1) if rows else np.empty(0, np.float32)
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dims)
            table = pa.table({"key": pa.array(out_keys, pa.string()), "vector": vectors})
            if not with_metadata:
                return table
            chosen = np.array(out_labels, np.int64)
            times = self._keys.inserted(chosen)
            table = table.append_column(
                "inserted_at", pa.array(times).cast(pa.int64()).view(pa.timestamp("us", tz="UTC"))
            )
            if self._meta.active:
                fields = self._meta.rows(chosen)
                for name, column in zip(fields.column_names, fields.columns):
                    table = table.append_column(name, column)
            return table

    def sql(self, query: str, params: Iterable[Any] | None = None) -> pa.Table:
        """Run DuckDB SQL (sandboxed) with two views added to the database's ``history``
        and ``latest``: ``vectors(key, vector FLOAT[dimensions], inserted_at, <fields>)``
        and ``metadata(key, inserted_at, <fields>)`` (timestamps as UTC ``TIMESTAMP``);
        returns an Arrow table. Join them to time series in ``history`` by key or time.

        >>> store.sql("SELECT key, array_cosine_similarity(vector, $q::FLOAT[3]) AS sim "
        ...           "FROM vectors ORDER BY sim DESC LIMIT 1", {"q": [1, 0, 0]}).to_pylist()
        [{'key': 'a', 'sim': 1.0}]
        """
        from synarrow.duck import DuckSession
        from synarrow.sql import register

        self.require_open()
        vectors = _naive_table(self.to_arrow(with_metadata=True))
        with self._lock:
            documents = self._documents_table().drop_columns(["__label"])

        def prepare(con: Any) -> None:
            register(con, self._db)
            con.register("vectors", vectors)
            con.register("metadata", documents)

        with DuckSession() as session:
            return session.query(query, params, prepare=prepare)

    # -- life cycle ------------------------------------------------------------------------

    def flush(self) -> None:
        """Make every change durable and save the index, so the next open loads it as is."""
        with self._lock:
            self.require_writable()
            self._save()

    def rebuild(self) -> None:
        """Build the index afresh from the log (reclaims the space of deleted vectors)."""
        self._wait_for_background()
        with self._lock:
            self.require_open()
            self._index, self._keys = self._new_index(), KeyMap()
            self._meta, self._text, self._dead = MetadataColumns(), None, 0
            self._catch_up()
            self._fold_metadata()
            self._fill_insert_times()
            self._indexed_position = self._position()
            if not self.readonly:
                self._save(force=True)

    @property
    def dead(self) -> int:
        """Deleted or replaced vectors whose space the index still holds (until
        :meth:`compact`, or the automatic compaction, rebuilds it)."""
        return self._dead

    def compact(self) -> dict[str, Any]:
        """Give back the space of deleted and replaced vectors; returns what was done.

        1. The index is rebuilt from the live vectors when it holds dead entries (searches
           go on meanwhile on the old one; changes made during the rebuild are replayed
           onto the new one before it replaces the old).
        2. The log keeps only the current vector of each key (older versions of replaced
           vectors are range-deleted) and one consolidated metadata entry.
        3. The database is compacted (``store.db.compact()``), so the log's dead entries
           leave the disk, and the index is saved.

        If an automatic compaction failed since the last call, this raises
        :class:`~synarrow.errors.CompactionError` about it first (once).

        Snapshots (``store.db.snapshot``) keep what they pin until they are dropped. The
        store also runs this in a background thread by itself once the dead entries
        outnumber the live vectors (and are at least 1000), checked after each insert or
        delete and on open (a compaction that ``close()`` cut short, or a crash, is taken up
        again); ``auto_compact=False`` when opening turns that off. Each step is safe to
        interrupt: a crash leaves the previous index checkpoint and a log that reads the same.
        """
        self._wait_for_background()
        with self._lock:
            self.require_writable()
            failed, self._background_error = self._background_error, None
        if failed is not None:
            # Reported once, like the database's own automatic compaction; the next call
            # compacts.
            raise CompactionError(
                f"the automatic compaction of vector store {self.path} failed: {failed}",
                hint="call compact() again; the log and the saved index are as before it",
            ) from failed
        return self._compact(cancel=None)

    def _compact(self, cancel: threading.Event | None) -> dict[str, Any]:
        out: dict[str, Any] = {"index_rebuilt": False, "dead_dropped": 0}
        with self._lock:
            if not self.closed and self._position() != self._indexed_position:
                self._save()  # take in what was written through store.db first
        if self._dead:
            dropped = self._rebuild_live(cancel)
            if dropped is None:
                return out
            out.update(index_rebuilt=True, dead_dropped=dropped)
        out["versions_dropped"] = self._drop_old_versions(cancel)
        if cancel is not None and cancel.is_set():
            return out
        with self._lock:
            self.require_writable()
            self._consolidate_metadata_log()
        out["log"] = self._db.compact()
        with self._lock:
            if not self.closed:
                self._save(force=True)
        return out

    def _rebuild_live(self, cancel: threading.Event | None) -> int | None:
        """A new index of the live vectors replaces the old one; returns the dead entries
        dropped (``None`` when cancelled). Only short steps hold the store's lock."""
        with self._lock:
            labels = self._keys.labels()
            dead_before = self._dead
            journal: list[tuple[np.ndarray, np.ndarray | None]] = []
            self._journal = journal
        try:
            index = self._new_index()
            dims = self._config.dimensions
            for lo in range(0, len(labels), _CATCH_UP_ROWS):
                if cancel is not None and cancel.is_set():
                    return None
                with self._lock:
                    chunk, rows = [], []
                    for label in labels[lo : lo + _CATCH_UP_ROWS].tolist():
                        key = self._keys.key(label)
                        value = None if key is None else self._db.get(key)
                        if isinstance(value, np.ndarray) and value.shape == (dims,):
                            chunk.append(label)
                            rows.append(value)
                if chunk:
                    index.add(np.array(chunk, np.uint64), np.stack(rows), threads=self._threads)
            with self._lock:
                # Changes made meanwhile, in order: an add replaces what the label held.
                for added, matrix in journal:
                    present = added[np.asarray(index.contains(added), bool)]
                    if present.size:
                        index.remove(present)
                    if matrix is not None:
                        index.add(added, matrix, threads=self._threads)
                index.expansion_search = self._config.expansion_search  # type: ignore[misc]
                self._index = index
                dropped = dead_before
                self._dead = max(0, self._dead - dead_before)
                return dropped
        finally:
            with self._lock:
                self._journal = None

    def _drop_old_versions(self, cancel: threading.Event | None) -> int:
        """Range-delete the older vectors of every key that was replaced; returns how many
        keys had some. Snapshots keep theirs."""
        with self._lock:
            keys = list(self._keys.sorted_keys()[0])
        views = self._db.read_snapshot(keys).keys
        dropped = 0
        for key in keys:
            view = views.get(key)
            if view is None or len(view) < 2:
                continue
            last = view.last()
            if not len(last):
                continue
            ts = last.last_ts()  # the current entry's time, as the log orders it
            if cancel is not None and cancel.is_set():
                break
            with self._lock:
                if self.closed:
                    break
                # Entries before the current vector's time: the current one (at ts) stays,
                # and so does anything inserted since.
                if self._db.delete_range(key, None, ts):
                    self._indexed_position += 1
                    dropped += 1
        return dropped

    def _consolidate_metadata_log(self) -> None:
        """Replace the metadata log by one entry of the live records (caller holds the
        lock). Written before the old entries are range-deleted, so a crash between the two
        reads the same."""
        if not self._db.exists(LOG_KEY):
            return
        if len(self._db.get_history(LOG_KEY, last=2)) < 2 and not self._dead:
            return
        ts = self._next_ts()
        labels = self._meta.labels()
        if len(labels):
            keys = [cast(str, self._keys.key(label)) for label in labels.tolist()]
            fps = self._keys.fingerprints_of(labels)
            entry = encode_entry(keys, fps, self._meta.rows(labels), self._keys.inserted(labels))
            self._db.append(LOG_KEY, entry, timestamp=ts)
            self._indexed_position += 1
            if self._db.delete_range(LOG_KEY, None, ts):
                self._indexed_position += 1
        elif self._db.delete(LOG_KEY):
            self._indexed_position += 1
        self._commit()

    def _maybe_compact_in_background(self) -> None:
        """Start the automatic compaction when dead entries outnumber the live ones."""
        if (
            not self._auto_compact
            or self._dead < _AUTO_COMPACT_MIN
            or self._dead < len(self._keys)
            or (self._background is not None and self._background.is_alive())
        ):
            return
        cancel = threading.Event()

        def run() -> None:
            try:
                self._compact(cancel)
            except Exception as exc:  # a background failure must not go unseen
                self._background_error = exc
                _log.warning("automatic compaction of vector store %s failed: %s", self.path, exc)

        self._cancel = cancel
        self._background = threading.Thread(
            target=run, name=f"synarrow-vector-compact-{self.path.name}", daemon=True
        )
        self._background.start()

    def _wait_for_background(self, *, cancel: bool = False) -> None:
        thread = self._background
        if thread is None:
            return
        if cancel and self._cancel is not None:
            self._cancel.set()
        thread.join()
        self._background = None

    def _save(self, *, force: bool = False) -> None:
        self._db.sync()
        position = self._position()
        if self._checkpoint is not None and self._saved_position == position and not force:
            return
        if position != self._indexed_position:
            self._catch_up()  # entries written through store.db since the index last saw it
            self._fold_metadata()
            self._fill_insert_times()
            self._indexed_position = position
        self._checkpoint = files.write_checkpoint(
            self._dir,
            self._index,
            self._keys,
            position,
            self._checkpoint,
            metadata=self._meta,
            dead=self._dead,
        )
        self._saved_position = position

    def release(self) -> None:
        """Stop a background compaction, save the index (when writable) and close the
        database."""
        self._wait_for_background(cancel=True)
        with self._lock:
            try:
                if not self.readonly:
                    self._save()
            finally:
                self._filter.close()
                self._db.close()

    @property
    def tag(self) -> str | None:
        """The snapshot this store reads (``VectorStore(path, snapshot=...)``), or ``None``."""
        return self._tag

    def describe(self) -> str:
        """``vector store PATH``, and the tag it reads."""
        tag = getattr(self, "_tag", None)
        return super().describe() + ("" if tag is None else f" at snapshot {tag!r}")

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._keys)} vectors"
        if self.readonly and not self.closed:
            state += ", read-only"
        c = self._config
        return (
            f"<synarrow.VectorStore {str(self.path)!r} {c.dimensions}d {c.metric} "
            f"{c.precision}, {state}>"
        )


def _key_list(keys: Any) -> list[str]:
    if isinstance(keys, (pa.Array, pa.ChunkedArray)):
        keys = keys.to_pylist()
    elif isinstance(keys, str):
        raise InvalidKeyError("keys must be a sequence of str, got a single str")
    keys = list(keys)
    for key in keys:
        check_key(key)
        if key == LOG_KEY:
            raise InvalidKeyError(f"key {LOG_KEY!r} holds the store's metadata log")
    return keys


def _last_wins(keys: list[str]) -> tuple[list[str], np.ndarray | None]:
    """The distinct keys (each at its last position) and the rows kept (None: all)."""
    if len(set(keys)) == len(keys):
        return keys, None
    last = {key: i for i, key in enumerate(keys)}
    rows = np.array(sorted(last.values()), dtype=np.intp)
    return [keys[i] for i in rows.tolist()], rows


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InvalidArgumentError(f"k must be a positive int, got {k!r}")
    return int(k)


def _check_threads(threads: Any) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise InvalidArgumentError(f"threads must be an int >= 0, got {threads!r}")
    return int(threads)


def _batch(m: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, distances, counts) as 2-D arrays from usearch Matches or BatchMatches."""
    if isinstance(m, BatchMatches):
        return m.keys, m.distances, m.counts
    return m.keys[None, :], m.distances[None, :], np.array([len(m.keys)])


def _check_weight(weight: Any) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating)):
        raise InvalidArgumentError(f"text_weight must be a number from 0 to 1, got {weight!r}")
    if not 0.0 <= float(weight) <= 1.0:
        raise InvalidArgumentError(f"text_weight must be from 0 to 1, got {weight!r}")
    return float(weight)


def _distances(metric: str, vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Distances as usearch reports them (squared for euclidean, see ``_results``)."""
    v = vectors.astype(np.float64)
    q = query.astype(np.float64)
    if metric == "euclidean":
        return ((v - q) ** 2).sum(axis=1)
    dots = v @ q
    if metric == "dot":
        return 1.0 - dots
    norms = np.linalg.norm(v, axis=1) * np.linalg.norm(q)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return 1.0 - cos


def _naive_ts(micros: np.ndarray) -> pa.Array:
    """int64 microseconds as a naive (UTC) timestamp array, as SQL views show times."""
    return pa.array(np.asarray(micros, np.int64)).view(pa.timestamp("us"))


def _naive(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        return column.cast(pa.timestamp(column.type.unit))
    return column


def _naive_table(table: pa.Table) -> pa.Table:
    return pa.Table.from_arrays([_naive(c) for c in table.columns], names=table.column_names)

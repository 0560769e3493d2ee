"""``VectorStore``: durable embeddings in a synarrow database, searched through usearch.

Every vector is a Vector atom in the database log under its own key, so it is durable the
moment ``insert`` returns, readable with ``get``, as Arrow with :meth:`VectorStore.to_arrow`,
and in DuckDB SQL (``store.sql(...)``, or the ``latest`` / ``history`` views of
``store.db.sql(...)``). A usearch HNSW index over them lives in ``<path>/vector_index/``. It
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, cast

import numpy as np
import pyarrow as pa
from usearch.index import BatchMatches, Index
from usearch.index import search as _brute_force

from synarrow import vector_files as files
from synarrow.config import DbConfig, read_stored
from synarrow.db import SynaDB, check_key
from synarrow.errors import (
    ConfigError,
    InvalidArgumentError,
    InvalidKeyError,
)
from synarrow.handle import Handle
from synarrow.optional import progress
from synarrow.vector_check import check_matrix, check_vector
from synarrow.vector_keys import KeyMap, fingerprints

if TYPE_CHECKING:
    import os

__all__ = ["SearchResult", "VectorStore"]

_log = logging.getLogger("synarrow.vector")
_new_tuple = tuple.__new__

# Candidate sets (a key prefix's keys) up to this size are searched exactly: cheaper than
# over-fetching from the graph, and recall is 1.
_EXACT_SUBSET = 4096
# Over-fetching from the graph for a filter stops at this many candidates per query; the
# queries still short of k results then get an exact search over the allowed vectors.
_MAX_FETCH = 2048
# Rows read from the log per step of a rebuild or catch-up.
_CATCH_UP_ROWS = 16384
# Rebuilds of at least this many keys show a progress bar (when stderr is a terminal).
_PROGRESS_MIN = 20000


class SearchResult(NamedTuple):
    """One search hit: the key and its distance to the query (``score``, lower is closer).

    >>> SearchResult("doc1", 0.125)
    SearchResult(key='doc1', score=0.125)
    """

    key: str
    score: float


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
    ) -> None:
        readonly = readonly or snapshot is not None
        super().__init__(Path(path), readonly=readonly)
        self._tag = snapshot
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
            self._db = SynaDB(
                self.path, config, readonly=readonly, sync_on_write=None if readonly else False
            )
        try:
            self._durable = (read_stored(self.path) or self._db.config).sync_on_write
            self._config, created = self._resolve_config(requested)
            self._checkpoint: files.Checkpoint | None = None
            self._open_index(created)
        except BaseException:
            self._db.close()
            raise
        self.mark_open()

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
            self._index, self._keys, self._checkpoint = loaded
        self._saved_position = -1 if self._checkpoint is None else self._checkpoint.position
        if self._saved_position != position or self._tag is not None:
            # A tag is always caught up: the saved index is of the current state, and the
            # log position says nothing about which version a tag holds.
            self._catch_up(strict=created)
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

    def _load_checkpoint(self, position: int) -> tuple[Index, KeyMap, files.Checkpoint] | None:
        if not (self._dir / files.STATE_NAME).exists():
            return None
        c = self._config
        try:
            state = files.read_checkpoint(self._dir)
            keys = files.read_keymap(self._dir, state)
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
        return index, keys, state

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

    def _add_to_index(self, keys: list[str], matrix: np.ndarray, fps: np.ndarray) -> None:
        labels, replaced = self._keys.assign(keys)
        if replaced.size:
            self._index.remove(replaced)
        self._index.add(labels, matrix, threads=self._threads)
        self._keys.set_fingerprints(labels, fps)

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

    def insert(self, key: str, vector: Any) -> None:
        """Store ``vector`` under ``key``, replacing the key's previous vector.

        ``vector``: any 1-D sequence of ``dimensions`` finite numbers (stored as float32).
        """
        check_key(key)
        self.insert_batch([key], check_vector(vector, self._config.dimensions, "vector")[None, :])

    def insert_batch(self, keys: Sequence[str] | pa.Array, vectors: Any) -> int:
        """Store one vector per key (rows of ``vectors``); returns how many were stored.

        ``vectors``: a 2-D array-like of shape ``(len(keys), dimensions)`` (numpy, lists,
        an Arrow ``fixed_size_list`` array). A key given twice keeps its last row. Nothing
        is written unless every key and row is valid. Costs one fsync (with
        ``sync_on_write``), however many rows.
        """
        keys = _key_list(keys)
        matrix = check_matrix(vectors, self._config.dimensions, rows=len(keys))
        with self._lock:
            self.require_writable()
            if not keys:
                return 0
            keys, matrix = _last_wins(keys, matrix)
            fps = fingerprints(matrix)
            labels, replaced = self._keys.assign(keys)
            try:
                if replaced.size:
                    self._index.remove(replaced)
                self._write_and_add(keys, matrix, labels)
            except BaseException:
                self._resync(keys)
                raise
            self._keys.set_fingerprints(labels, fps)
        return len(keys)

    def _write_and_add(self, keys: list[str], matrix: np.ndarray, labels: np.ndarray) -> None:
        # The graph first: usearch's add takes the GIL back for every vector, so a Python
        # thread busy at the same time (such as an automatic compaction the log writes may
        # start) slows it down 50x. Nothing is acknowledged before both steps are done.
        self._index.add(labels, matrix, threads=self._threads)
        self._append_rows(keys, matrix)

    def _append_rows(self, keys: list[str], matrix: np.ndarray) -> None:
        append = self._db.append
        written = 0
        try:
            for key, row in zip(keys, matrix):
                append(key, row)
                written += 1
        finally:
            self._indexed_position += written
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
        return len(present)

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str) -> np.ndarray | None:
        """The stored float32 vector of ``key`` (a copy, read from the log), or ``None``."""
        check_key(key)
        self.require_open()
        if key not in self._keys:
            return None
        value = self._db.get(key)
        return value if isinstance(value, np.ndarray) else None

    def search(
        self,
        query: Any,
        k: int = 10,
        *,
        exact: bool = False,
        prefix: str | None = None,
        filter: Callable[[str], bool] | None = None,
    ) -> list[SearchResult]:
        """The ``k`` nearest stored vectors to ``query``, closest first.

        Args:
            query: a 1-D array-like of ``dimensions`` finite numbers.
            k: how many results at most (fewer when the store, or the filter, has fewer).
            exact: brute force over every vector (as the index holds them) instead of the
                HNSW graph: recall 1, cost linear in the store size.
            prefix: only keys starting with this string.
            filter: only keys for which ``filter(key)`` is true.

        Filtered searches over-fetch from the graph and drop what fails the filter; when
        that leaves fewer than ``k`` hits, or the allowed keys are few (a narrow prefix),
        they search the allowed vectors exactly, so filters do not cost recall.
        An empty store returns ``[]``.
        """
        q = check_vector(query, self._config.dimensions, "query")
        k = _check_k(k)
        self.require_open()
        if prefix is not None or filter is not None:
            return self._filtered(q[None, :], k, exact, prefix, filter, 1)[0]
        if not len(self._keys):
            return []
        m = self._index.search(q, k, exact=exact)
        return self._results(m.keys, m.distances)

    def search_batch(
        self,
        queries: Any,
        k: int = 10,
        *,
        exact: bool = False,
        prefix: str | None = None,
        filter: Callable[[str], bool] | None = None,
        threads: int | None = None,
    ) -> list[list[SearchResult]]:
        """:meth:`search` for each row of ``queries`` (2-D), on several threads at once.

        ``threads``: usearch worker threads (default: the store's ``threads``; 0 = every
        core). Returns one result list per query, in order.
        """
        matrix = check_matrix(queries, self._config.dimensions, what="queries")
        k = _check_k(k)
        nthreads = self._threads if threads is None else _check_threads(threads)
        self.require_open()
        if prefix is not None or filter is not None:
            return self._filtered(matrix, k, exact, prefix, filter, nthreads)
        if not len(matrix) or not len(self._keys):
            return [[] for _ in range(len(matrix))]
        keys, dists, counts = _batch(self._index.search(matrix, k, threads=nthreads, exact=exact))
        return [self._results(keys[i, :c], dists[i, :c]) for i, c in enumerate(counts.tolist())]

    def _results(self, labels: np.ndarray, dists: np.ndarray) -> list[SearchResult]:
        if self._config.metric == "euclidean":
            dists = np.sqrt(np.maximum(dists, 0))
        key_of = self._keys.key_of
        keys = [key_of[label] for label in labels.tolist()]
        pairs: Iterable[tuple[str | None, float]] = zip(keys, dists.tolist())
        if None in keys:  # a key deleted by another thread during the search
            pairs = [p for p in pairs if p[0] is not None]
        # tuple.__new__ skips the namedtuple's Python-level __new__: this is the hot path.
        return [_new_tuple(SearchResult, p) for p in pairs]

    def _filtered(
        self,
        queries: np.ndarray,
        k: int,
        exact: bool,
        prefix: str | None,
        predicate: Callable[[str], bool] | None,
        threads: int,
    ) -> list[list[SearchResult]]:
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidArgumentError(f"prefix must be a str, got {type(prefix).__name__}")
        if predicate is not None and not callable(predicate):
            raise InvalidArgumentError(f"filter must be callable, got {type(predicate).__name__}")
        nq = len(queries)
        with self._lock:
            cand_keys, cand_labels = self._keys.prefix_range(prefix or "")
        total = len(self._keys)
        if not nq or not len(cand_keys):
            return [[] for _ in range(nq)]
        memo: dict[str, bool] = {}

        def allowed(key: str) -> bool:
            ok = memo.get(key)
            if ok is None:
                ok = memo[key] = key.startswith(prefix or "") and (
                    predicate is None or bool(predicate(key))
                )
            return ok

        def allowed_labels() -> np.ndarray:
            if predicate is None:
                return cand_labels
            mask = np.fromiter((allowed(key) for key in cand_keys), bool, len(cand_keys))
            return cand_labels[mask]

        if exact or len(cand_keys) <= _EXACT_SUBSET:
            return self._exact_subset(queries, k, allowed_labels(), threads)
        results: list[list[SearchResult] | None] = [None] * nq
        pending = np.arange(nq)
        # Expect a share len(cand)/total of graph hits to pass; fetch 4x what k needs, as
        # the graph's ranks past the first few dozen are less exact.
        fetch = min(total, max(4 * k, math.ceil(4 * k * total / len(cand_keys))))
        while pending.size and fetch <= max(_MAX_FETCH, 4 * k):
            keys, dists, counts = _batch(
                self._index.search(queries[pending], fetch, threads=threads)
            )
            still = []
            seen = passed = 0
            for j, qi in enumerate(pending.tolist()):
                found = self._results(keys[j, : counts[j]], dists[j, : counts[j]])
                hits = [r for r in found if allowed(r.key)]
                seen += len(found)
                passed += len(hits)
                if len(hits) >= k:
                    results[qi] = hits[:k]
                else:
                    still.append(qi)
            pending = np.array(still, dtype=np.intp)
            if fetch >= total:
                break
            # Re-estimate the filter's pass rate; a rate too low sends the rest to the
            # exact search at once rather than through ever larger graph searches.
            rate = max(passed / max(seen, 1), 1 / (2 * fetch))
            fetch = min(total, max(2 * fetch, math.ceil(4 * k / rate)))
        if pending.size:
            exact_hits = self._exact_subset(queries[pending], k, allowed_labels(), threads)
            for qi, hits in zip(pending.tolist(), exact_hits):
                results[qi] = hits
        return [r if r is not None else [] for r in results]

    def _exact_subset(
        self, queries: np.ndarray, k: int, labels: np.ndarray, threads: int
    ) -> list[list[SearchResult]]:
        """Brute force over the vectors of ``labels`` (as the index holds them)."""
        nq = len(queries)
        if not labels.size:
            return [[] for _ in range(nq)]
        with self._lock:
            got = cast("tuple[np.ndarray | None, ...]", self._index.get(labels, dtype="f32"))
        present = [i for i, v in enumerate(got) if v is not None]
        if not present:
            return [[] for _ in range(nq)]
        vectors = np.stack([cast(np.ndarray, got[i]) for i in present])
        labels = labels[present]
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

    def to_arrow(self, prefix: str | None = None) -> pa.Table:
        """The stored vectors as a table: ``key`` (string), ``vector``
        (``fixed_size_list<float32>[dimensions]``), sorted by key.

        DuckDB reads ``vector`` as ``FLOAT[dimensions]``, so ``array_cosine_similarity`` and
        friends work on it directly.
        """
        keys = self.keys(prefix)
        dims = self._config.dimensions
        get = self._db.get
        out_keys: list[str] = []
        rows: list[np.ndarray] = []
        for key in keys:
            value = get(key)
            if isinstance(value, np.ndarray) and value.shape == (dims,):
                out_keys.append(key)
                rows.append(value)
        flat = np.stack(rows).reshape(-1) if rows else np.empty(0, np.float32)
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dims)
        return pa.table({"key": pa.array(out_keys, pa.string()), "vector": vectors})

    def sql(self, query: str, params: Iterable[Any] | None = None) -> pa.Table:
        """Run DuckDB SQL with a ``vectors(key, vector FLOAT[dimensions])`` view added to
        the database's ``history`` and ``latest`` views; returns an Arrow table.

        >>> store.sql("SELECT key, array_cosine_similarity(vector, $q::FLOAT[3]) AS sim "
        ...           "FROM vectors ORDER BY sim DESC LIMIT 1", {"q": [1, 0, 0]}).to_pylist()
        [{'key': 'a', 'sim': 1.0}]
        """
        from synarrow.duck import DuckSession
        from synarrow.sql import register

        self.require_open()

        def prepare(con: Any) -> None:
            register(con, self._db)
            con.register("vectors", self.to_arrow())

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
        with self._lock:
            self.require_open()
            self._index, self._keys = self._new_index(), KeyMap()
            self._catch_up()
            self._indexed_position = self._position()
            if not self.readonly:
                self._save()

    def _save(self) -> None:
        self._db.sync()
        position = self._position()
        if self._checkpoint is not None and self._saved_position == position:
            return
        if position != self._indexed_position:
            self._catch_up()  # entries written through store.db since the index last saw it
            self._indexed_position = position
        self._checkpoint = files.write_checkpoint(
            self._dir, self._index, self._keys, position, self._checkpoint
        )
        self._saved_position = position

    def release(self) -> None:
        """Save the index (when writable) and close the database."""
        with self._lock:
            try:
                if not self.readonly:
                    self._save()
            finally:
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
    return keys


def _last_wins(keys: list[str], matrix: np.ndarray) -> tuple[list[str], np.ndarray]:
    if len(set(keys)) == len(keys):
        return keys, matrix
    last = {key: i for i, key in enumerate(keys)}
    rows = np.array(sorted(last.values()), dtype=np.intp)
    return [keys[i] for i in rows.tolist()], matrix[rows]


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

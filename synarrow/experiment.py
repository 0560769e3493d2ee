"""``Experiment`` and ``Run``: experiment tracking on a SynaDB, queryable with SQL.

>>> import synarrow
>>> exp = synarrow.Experiment("mnist", "experiments.db")
>>> with exp.start_run(tags=["baseline"]) as run:
...     run.log_params({"lr": 1e-3})
...     for epoch in range(10):
...         run.log_metrics({"loss": 1 / (epoch + 1)}, step=epoch)
>>> [r.status for r in exp.query(filter={"status": "completed"}, sort_by="loss")]
['completed']
>>> exp.sql("SELECT min(value) AS best FROM metrics WHERE metric = 'loss'").column("best").to_pylist()
[0.1]
>>> exp.close()

Storage (keys of the SynaDB at ``path``; ``<id>`` is a 32-character hex run id)::

    exp/<name>/runs/<id>/meta             JSON: name, tags, status, start/end time (latest wins)
    exp/<name>/runs/<id>/params/<p>       JSON text of the parameter value (latest wins)
    exp/<name>/runs/<id>/metrics/<m>      float64 time series: the metric's values
    exp/<name>/runs/<id>/steps/<m>        int64 time series: the step of each value
    exp/<name>/runs/<id>/artifacts/<a>    JSON: SHA-256 and size of the bytes in artifacts/
    exp/<name>/runs/<id>/inputs/<d>       JSON: a data snapshot the run read (Run.log_input)

A metric value and its step are written with the same timestamp, and timestamps of one
metric strictly increase (a value logged within the same microsecond as the previous one gets
the next microsecond), so ``(metric, ts)`` identifies a point and the two series line up.
:meth:`Experiment.get_metric_tensor` is ``db.get_history_floats`` of the values key: a
read-only zero-copy view of the memory-mapped file after :meth:`Experiment.compact`, a
copy before.

Lineage. :meth:`Run.log_input` records which tagged snapshot of which database a run read
(``db.snapshot(tag)`` first: the current state of a database is never recorded, since it
changes with every write); :attr:`Run.inputs` reads them back, checked against the databases
as they are now. :func:`find_run` finds a run by id in the experiments open in this process
or in a store given by path, for ``ModelRegistry.save_model(..., run_id=...)``.

Non-finite metric values (NaN, ±inf: a diverged loss) are stored as they are. Sorting in
:meth:`Experiment.query` skips NaN (such runs sort last); in SQL, DuckDB orders NaN above
every number, so ``max(value)`` of a series holding NaN is NaN.

Durability. Run metadata, parameters and artifacts are durable (fsynced) when the call
returns. Metric values are buffered in the process and written to the store every
``flush_every`` values, at least every ``flush_interval`` seconds (by a background thread),
before anything reads metrics through this process, and when the run ends; a run that has
ended (``with`` block left, :meth:`Run.end`) is durable as a whole. A crash loses at most the
metrics of the last ``flush_interval`` seconds; a power loss at most those since the last
flush that was followed by a sync (a run end or any parameter write).

Several processes. A store has one writer process at a time (SynaDB's writer lock).
Several processes may log to one store at once (parallel trials of a sweep, DataLoader
workers): the database takes their writes in turns (``DbConfig(writers="many")``, the
default; see docs/FORMAT.md). A store whose database was set to ``writers="single"`` keeps
one writer process: opening it for writing while another process writes it raises
:class:`~synarrow.DatabaseLockedError`, at once or after waiting up to ``timeout`` seconds.
``Experiment(..., readonly=True)`` reads a store while others write it (a snapshot as of
opening; :meth:`Experiment.refresh` takes a new one). Experiments and registries on one path
inside one process share a single writer handle.

Each run records the process logging it. Runs left ``running`` by a process that no longer
runs are marked ``killed`` when a writer next opens the store (a run of another live process
is left alone). Runs still open when the interpreter exits are ended as ``killed`` and their
metrics written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from synarrow.blobs import ARTIFACTS_DIR, BlobStore, Source, parse_blob_ref
from synarrow.columnar.schema import TS_TYPE
from synarrow.db import SynaDB
from synarrow.errors import (
    CorruptionError,
    InvalidArgumentError,
    InvalidStateError,
    InvalidValueError,
    NotFoundError,
)
from synarrow.handle import Handle
from synarrow.lineage import RUN_ID_PATTERN, DataInput, RunInfo, snapshot_input
from synarrow.processes import owner_alive, owner_token
from synarrow.records import check_name, to_json, us_to_datetime
from synarrow.shared_writer import SharedWriter, at_exit, open_shared, release_shared

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

    from synarrow.duck import DuckSession

RUNNING, COMPLETED, FAILED, KILLED = "running", "completed", "failed", "killed"
RUN_STATUSES = (RUNNING, COMPLETED, FAILED, KILLED)
SORT_VALUES = ("last", "best", "min", "max", "first")
_RUN_ID_LEN = 32
_time_ns = time.time_ns
_monotonic = time.monotonic


def _check_label(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 250:
        raise InvalidArgumentError(
            f"{kind} name must be a non-empty str of at most 250 characters, got {name!r:.80}"
        )
    if any(ord(c) < 32 for c in name):
        raise InvalidArgumentError(f"{kind} name {name!r} contains control characters")
    return name


def _check_tags(tags: object) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, Iterable):
        raise InvalidArgumentError(f"tags must be a list of str, got {type(tags).__name__}")
    out: list[str] = []
    for t in tags:
        _check_label("tag", t)
        if t not in out:
            out.append(t)
    return out


def _metric_value(name: str, value: object) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise InvalidValueError(
            f"metric {name!r} needs a number, got {type(value).__name__} {value!r:.60}",
            hint="metrics are floats; log text or objects as params or artifacts",
        )
    return float(value)


def _step_value(step: object) -> int:
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise InvalidArgumentError(f"step must be an int, got {type(step).__name__} {step!r:.60}")
    step = int(step)
    if not -(2**63) <= step < 2**63:
        raise InvalidArgumentError(f"step {step} does not fit in int64")
    return step


@dataclass(frozen=True)
class Artifact:
    """A file stored with a run: its name, SHA-256 (hex), size and time of logging (UTC)."""

    name: str
    checksum: str
    size_bytes: int
    created_at: dt.datetime


class _MetricBuffer:
    """Values logged since the last flush, and the state needed to continue the series."""

    __slots__ = ("last_step", "last_ts", "steps", "ts", "values")

    def __init__(self, last_step: int, last_ts: int) -> None:
        self.values: list[float] = []
        self.steps: list[int] = []
        self.ts: list[int] = []
        self.last_step = last_step
        self.last_ts = last_ts


class Run:
    """One execution of an experiment: its parameters, metric series, artifacts and status.

    Made by :meth:`Experiment.start_run` (a context manager: ``completed`` when the block
    ends, ``failed`` on an exception, ``killed`` on ``KeyboardInterrupt`` or ``SystemExit``)
    or read back by :meth:`Experiment.get_run`.

    Attributes:
        id: 32 hex characters, unique.
        name: a readable name (default: the first 8 characters of the id).
        experiment: the experiment's name.
        tags: list of str.
        status: ``"running"``, ``"completed"``, ``"failed"`` or ``"killed"``.
        start_time, end_time: UTC datetimes (``end_time`` is ``None`` while running).
        params: the logged parameters (a copy; latest value per name).
        inputs: the data snapshots it read (:meth:`log_input`), checked on each access.

    Logging to a run that has ended raises :class:`~synarrow.InvalidStateError`.
    """

    def __init__(
        self,
        exp: Experiment,
        meta: dict[str, Any],
        params: dict[str, Any],
        *,
        live: bool = False,
    ) -> None:
        self._exp = exp
        self.id: str = meta["id"]
        self.name: str = meta["name"]
        self.experiment: str = exp.name
        self.tags: list[str] = list(meta.get("tags", []))
        self.status: str = meta["status"]
        self._start_us: int = meta["start_us"]
        self._end_us: int | None = meta.get("end_us")
        self._owner: object = meta.get("owner")
        self.params: dict[str, Any] = params
        self._lock = threading.RLock()
        self._buffers: dict[str, _MetricBuffer] = {}
        self._pending = 0
        self._last_flush = _monotonic()
        self._flush_error: BaseException | None = None
        self._live = live  # true while this process may log to it

    # -- properties -----------------------------------------------------------------------

    @property
    def start_time(self) -> dt.datetime:
        """When the run started (UTC)."""
        return us_to_datetime(self._start_us)

    @property
    def end_time(self) -> dt.datetime | None:
        """When the run ended (UTC), or ``None`` while it runs."""
        return us_to_datetime(self._end_us)

    @property
    def pending(self) -> int:
        """Metric values logged but not yet written to the store."""
        return self._pending

    @property
    def is_active(self) -> bool:
        """Whether this process can still log to the run."""
        return self._live

    def _meta(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "tags": self.tags,
            "status": self.status,
            "start_us": self._start_us,
            "end_us": self._end_us,
            "owner": self._owner,
        }

    def _key(self, kind: str, name: str) -> str:
        return f"{self._exp._prefix}{self.id}/{kind}/{name}"

    @property
    def path(self) -> Path:
        """The experiment store's directory."""
        return self._exp.path

    @property
    def inputs(self) -> tuple[DataInput, ...]:
        """The data snapshots the run read (:meth:`log_input`), in the order first logged,
        each checked now: :attr:`DataInput.verified <synarrow.lineage.DataInput.verified>`
        is false for a snapshot that has been dropped (or taken again) since."""
        return tuple(i.checked() for i in self._exp._inputs_of(self.id))

    def info(self) -> RunInfo:
        """The run as lineage names it: id, experiment, store path, name and status."""
        return RunInfo(self.id, self.experiment, str(self.path.resolve()), self.name, self.status)

    def _writable(self) -> SynaDB:
        if not self._live:
            raise InvalidStateError(
                f"run {self.id} ({self.name}) is {self.status}; it cannot be logged to",
                hint="start a new run with Experiment.start_run()",
            )
        if self._flush_error is not None:
            err, self._flush_error = self._flush_error, None
            raise err
        return self._exp._writer_db()

    # -- logging --------------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        """Record a parameter (any JSON-serialisable value); durable on return.

        Logging a parameter again replaces its value (the key's history keeps the old ones).
        """
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record several parameters at once (one fsync); see :meth:`log_param`."""
        if not isinstance(params, Mapping):
            raise InvalidArgumentError(f"params must be a dict, got {type(params).__name__}")
        with self._lock:
            db = self._writable()
            encoded = {
                _check_label("param", k): to_json(f"param {k!r}", v) for k, v in params.items()
            }
            for k, text in encoded.items():
                db.append(self._key("params", k), text)
                self.params[k] = json.loads(text)
            db.sync()

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Append ``value`` to the metric's series, at ``step`` (default: previous step + 1,
        starting at 0) and the current time.

        ``value``: an int or float (numpy numbers too; NaN and ±inf are stored as they are).
        Buffered: see the module documentation for when values reach the disk.
        """
        with self._lock:
            if not self._live or self._flush_error is not None:
                self._writable()
            buf = self._buffers.get(name)
            if buf is None:
                buf = self._new_buffer(name)
            if type(value) is not float:
                value = _metric_value(name, value)
            ts = _time_ns() // 1000
            if ts <= buf.last_ts:
                ts = buf.last_ts + 1
            buf.last_ts = ts
            if step is None:
                step = buf.last_step + 1
            elif type(step) is not int or not -(2**63) <= step < 2**63:
                step = _step_value(step)
            buf.last_step = step
            buf.values.append(value)
            buf.steps.append(step)
            buf.ts.append(ts)
            self._pending += 1
            if self._pending >= self._exp.flush_every:
                self._flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log several metrics at the same ``step``; see :meth:`log_metric`."""
        if not isinstance(metrics, Mapping):
            raise InvalidArgumentError(f"metrics must be a dict, got {type(metrics).__name__}")
        with self._lock:
            for k, v in metrics.items():
                self.log_metric(k, v, step)

    def _new_buffer(self, name: str) -> _MetricBuffer:
        _check_label("metric", name)
        db = self._exp._exp_db
        steps_key = self._key("steps", name)
        last_step, last_ts = -1, 0
        if db.exists(steps_key):  # a run resumed after a flush: continue its series
            hist = db.get_history(steps_key)
            last_step = int(hist.column("value")[-1].as_py())
            last_ts = int(hist.column("ts").cast(pa.int64())[-1].as_py())
        buf = self._buffers[name] = _MetricBuffer(last_step, last_ts)
        return buf

    def log_artifact(self, name: str, data: Source) -> Artifact:
        """Store a file with the run: ``data`` is bytes-like, a path, or a binary file object.

        Files are streamed in chunks (never read whole into memory) and stored once per
        distinct content in ``<path>/artifacts/``; the bytes are durable on return. Read
        them back with :meth:`Experiment.load_artifact`.
        """
        with self._lock:
            self._writable()
            _check_label("artifact", name)
        # Outside the lock: an upload of gigabytes must not stall metric logging.
        checksum, size = self._exp._artifacts.put(data, f"artifact {name!r}")
        with self._lock:
            db = self._writable()
            now = _time_ns() // 1000
            art = Artifact(name, checksum, size, us_to_datetime(now))
            db.append(
                self._key("artifacts", name),
                json.dumps({"checksum": checksum, "size_bytes": size, "created_us": now}),
            )
            db.sync()
        return art

    def log_input(
        self,
        db_or_path: SynaDB | str | os.PathLike[str],
        snapshot: str | None = None,
        *,
        name: str | None = None,
    ) -> DataInput:
        """Record that the run read snapshot ``snapshot`` of a database; durable on return.

        ``db_or_path``: a :class:`~synarrow.SynaDB` (writer, read-only or snapshot handle) or
        the database's directory. ``snapshot``: the tag (``db.snapshot(tag)``); it may be left
        out only for a handle opened with ``SynaDB(path, snapshot=tag)``, whose tag is used.
        The current state of a database is never recorded (every later write would change
        what the lineage points at): :class:`~synarrow.InvalidArgumentError`.
        :class:`~synarrow.SnapshotNotFoundError` for an unknown tag. ``name``: a label
        (``"train"``, ``"eval"``).

        Stored: the absolute path, the tag, the snapshot's time, keys, entries and
        fingerprint. The same snapshot logged twice is recorded once (a new ``name``
        replaces the old); a tag dropped and taken again in between is another snapshot and
        is recorded as well. Returns the :class:`~synarrow.lineage.DataInput`.

        >>> _ = db.snapshot("train-v1")
        >>> with exp.start_run("fit") as run:
        ...     inp = run.log_input(db, snapshot="train-v1", name="train")
        >>> [(i.tag, i.name, i.entries, i.verified) for i in run.inputs]
        [('train-v1', 'train', 4, True)]
        """
        with self._lock:
            self._writable()
            if name is not None:
                _check_label("input", name)
        found = snapshot_input(db_or_path, snapshot, name=name)
        with self._lock:
            db = self._writable()
            key = self._key("inputs", found.digest)
            old_text = db.get(key)
            if isinstance(old_text, str):
                old = DataInput.from_dict(json.loads(old_text), f"run {self.id}")
                if old.name == found.name:
                    return dataclasses.replace(old, verified=True)
                logged = old.logged_at
            else:
                logged = us_to_datetime(_time_ns() // 1000)
            found = dataclasses.replace(found, logged_at=logged)
            db.append(key, json.dumps(found.to_dict(), sort_keys=True))
            db.sync()
        return found

    def add_tags(self, *tags: str) -> None:
        """Add tags to the run (durable on return)."""
        with self._lock:
            db = self._writable()
            for t in _check_tags(list(tags)):
                if t not in self.tags:
                    self.tags.append(t)
            db.append(self._exp._meta_key(self.id), json.dumps(self._meta()))
            db.sync()

    # -- flushing and ending --------------------------------------------------------------

    def flush(self) -> None:
        """Write buffered metric values to the store (handed to the OS, not fsynced)."""
        with self._lock:
            if self._flush_error is not None:
                err, self._flush_error = self._flush_error, None
                raise err
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            db = self._exp._writer_db()
            for name, buf in self._buffers.items():
                if not buf.values:
                    continue
                ts = np.array(buf.ts, dtype=np.int64)
                db.append_batch(
                    self._key("metrics", name), np.array(buf.values, np.float64), timestamps=ts
                )
                db.append_batch(
                    self._key("steps", name), np.array(buf.steps, np.int64), timestamps=ts
                )
                buf.values, buf.steps, buf.ts = [], [], []
            self._pending = 0
            db.flush()
        self._last_flush = _monotonic()

    def _flush_if_due(self, now: float, interval: float) -> None:
        if not self._pending or now - self._last_flush < interval:
            return
        if not self._lock.acquire(blocking=False):
            return  # the owner is logging; it will be due again next time
        try:
            if self._live:
                self._flush()
        except BaseException as exc:  # reported to the run's owner on its next call
            self._flush_error = exc
        finally:
            self._lock.release()

    def end(self, status: str = COMPLETED) -> None:
        """End the run as ``"completed"``, ``"failed"`` or ``"killed"``; everything it
        logged is durable on return. Ending a run twice raises InvalidStateError."""
        if status not in (COMPLETED, FAILED, KILLED):
            raise InvalidValueError(
                f"invalid end status {status!r}", hint="use 'completed', 'failed' or 'killed'"
            )
        with self._lock:
            if not self._live:
                self._writable()  # raises InvalidStateError
            db = self._exp._writer_db()
            # A failed background flush left its values in the buffers: this retries them.
            self._flush_error = None
            try:
                self._flush()
            finally:
                self.status = status
                self._end_us = _time_ns() // 1000
                self._live = False
                self._exp._forget(self)
                db.append(self._exp._meta_key(self.id), json.dumps(self._meta()))
                db.sync()

    def get_metric_tensor(self, name: str) -> np.ndarray:
        """The values of a metric; see :meth:`Experiment.get_metric_tensor`."""
        return self._exp.get_metric_tensor(self.id, name)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        if not self._live:
            return
        if exc_type is None:
            self.end(COMPLETED)
        elif issubclass(exc_type, Exception):
            self.end(FAILED)
        else:  # KeyboardInterrupt, SystemExit, GeneratorExit
            self.end(KILLED)

    def __repr__(self) -> str:
        return f"<synarrow.Run {self.id} name={self.name!r} status={self.status}>"


# -- a background thread that flushes metric buffers -------------------------------------------

_LIVE_EXPERIMENTS: weakref.WeakSet[Experiment] = weakref.WeakSet()
# Every open experiment of this process, read-only ones too: where find_run looks.
_OPEN_EXPERIMENTS: weakref.WeakSet[Experiment] = weakref.WeakSet()
_FLUSHER: dict[str, Any] = {"thread": None, "pid": None, "stop": threading.Event()}
_FLUSHER_LOCK = threading.Lock()


def _flusher_loop(stop: threading.Event) -> None:
    while not stop.wait(0.2):
        _flush_due(_monotonic())


def _flush_due(now: float) -> None:
    # A function of its own, so no experiment stays referenced from the loop's frame while it
    # waits: the last reference to a store must never be dropped by this thread during
    # interpreter shutdown (releasing mapped Arrow buffers then aborts the process).
    with _FLUSHER_LOCK:
        exps = list(_LIVE_EXPERIMENTS)
    for exp in exps:
        try:
            for run in exp._live_runs():
                run._flush_if_due(now, exp.flush_interval)
        except Exception:  # keep flushing the others; a run's own error is kept on it
            continue


def _ensure_flusher() -> None:
    with _FLUSHER_LOCK:
        thread = _FLUSHER["thread"]
        if thread is not None and thread.is_alive() and _FLUSHER["pid"] == os.getpid():
            return
        stop = _FLUSHER["stop"] = threading.Event()
        thread = threading.Thread(
            target=_flusher_loop, args=(stop,), name="synarrow-metric-flusher", daemon=True
        )
        _FLUSHER["thread"], _FLUSHER["pid"] = thread, os.getpid()
        thread.start()


def _end_runs_at_exit() -> None:
    _FLUSHER["stop"].set()
    thread = _FLUSHER["thread"]
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=5.0)  # done before the interpreter starts tearing down
    with _FLUSHER_LOCK:
        exps = list(_LIVE_EXPERIMENTS)
    for exp in exps:
        if exp._shared_writer is not None and exp._shared_writer.in_this_process:
            exp.close()


at_exit(_end_runs_at_exit)


# -- the experiment ----------------------------------------------------------------------------

_VIEWS_HINT = (
    "views: metrics(run_id, metric, step, ts, value), runs(run_id, name, status, "
    "start_time, end_time, tags), params(run_id, param, value), inputs(run_id, name, "
    "path, tag, created, keys, entries, fingerprint)"
)


class Experiment(Handle):
    """A named set of runs in a store: log with :meth:`start_run`, read with :meth:`query`,
    :meth:`get_metric_tensor`, :meth:`compare_runs` and :meth:`sql`.

    Args:
        name: the experiment's name (letters, digits, ``_ . -``, and ``/`` between parts).
        path: the store directory (a SynaDB, created if missing); many experiments may share
            one store.
        readonly: read a store that another process may be writing (a snapshot).
        timeout: seconds to wait for another process's writer lock before
            :class:`~synarrow.DatabaseLockedError` (default: fail at once).
        flush_every: buffered metric values per run that trigger a write to the store.
        flush_interval: the longest time (seconds) a logged metric stays only in memory.

    See the module documentation for the storage layout, durability and multi-process rules.
    """

    kind: ClassVar[str] = "experiment"

    def __init__(
        self,
        name: str,
        path: str | os.PathLike[str] = "experiments.db",
        *,
        readonly: bool = False,
        timeout: float = 0.0,
        flush_every: int = 10_000,
        flush_interval: float = 1.0,
    ) -> None:
        self.name = check_name("experiment", name, "runs")
        if not isinstance(flush_every, int) or isinstance(flush_every, bool) or flush_every < 1:
            raise InvalidArgumentError(f"flush_every must be an int >= 1, got {flush_every!r}")
        if not isinstance(flush_interval, (int, float)) or not flush_interval > 0:
            raise InvalidArgumentError(
                f"flush_interval must be > 0 seconds, got {flush_interval!r}"
            )
        super().__init__(Path(path), readonly=readonly)
        self.flush_every = flush_every
        self.flush_interval = float(flush_interval)
        self._prefix = f"exp/{self.name}/runs/"
        self._artifacts = BlobStore(self.path / ARTIFACTS_DIR)
        self._shared_writer: SharedWriter | None = None
        self._sql_lock = threading.Lock()
        self._session: DuckSession | None = None
        if readonly:
            self._exp_db = SynaDB(self.path, readonly=True)
        else:
            self._shared_writer = open_shared(self.path, timeout=timeout, what="experiment")
            self._exp_db = self._shared_writer.db
            try:
                if self._shared_writer.refs == 1:  # first user in this process: no upload under way
                    self._artifacts.remove_temporaries()
                self._mark_orphans()
            except BaseException:
                release_shared(self._shared_writer)
                raise
            with _FLUSHER_LOCK:
                _LIVE_EXPERIMENTS.add(self)
        with _FLUSHER_LOCK:
            _OPEN_EXPERIMENTS.add(self)
        self.mark_open()

    # -- internals --------------------------------------------------------------------------

    def _meta_key(self, run_id: str) -> str:
        return f"{self._prefix}{run_id}/meta"

    def describe(self) -> str:
        """``experiment 'name' (path)``: how error messages name the experiment."""
        return f"experiment {self.name!r} ({self.path})"

    def require_writable(self) -> None:
        """As :meth:`Handle.require_writable`, and refuse a forked child of the opener
        (:class:`~synarrow.errors.InvalidStateError`)."""
        super().require_writable()
        if self._shared_writer is not None and not self._shared_writer.in_this_process:
            raise InvalidStateError(
                f"experiment {self.name!r} was opened in process {self._shared_writer.pid} "
                "(this is a forked child)",
                hint="open a new Experiment in this process (and give it its own path)",
            )

    def _writer_db(self) -> SynaDB:
        self.require_writable()
        return self._exp_db

    def _live_runs(self) -> list[Run]:
        h = self._shared_writer
        if h is None:
            return []
        return [r for r in list(h.runs.values()) if r._exp is self and r.is_active]

    def _forget(self, run: Run) -> None:
        if self._shared_writer is not None:
            self._shared_writer.runs.pop(run.id, None)

    def _mark_orphans(self) -> None:
        """Runs ``running`` in the store whose process is gone (not live in this process,
        and not owned by another process that still runs) belong to a dead writer."""
        assert self._shared_writer is not None
        changed = False
        me = owner_token()
        for meta in self._all_meta():
            owner = meta.get("owner")
            if (
                meta["status"] == RUNNING
                and meta["id"] not in self._shared_writer.runs
                and (owner == me or not owner_alive(owner))
            ):
                meta["status"] = KILLED
                meta["end_us"] = _time_ns() // 1000
                meta["note"] = "the process logging this run ended without ending it"
                self._exp_db.append(self._meta_key(meta["id"]), json.dumps(meta))
                changed = True
        if changed:
            self._exp_db.sync()

    def _all_meta(self) -> list[dict[str, Any]]:
        out = []
        for key in self._exp_db.keys(self._prefix + "*/meta"):
            run_id = key[len(self._prefix) : -len("/meta")]
            if len(run_id) == _RUN_ID_LEN:
                text = self._exp_db.get(key)
                if isinstance(text, str):
                    out.append(json.loads(text))
        out.sort(key=lambda m: (m["start_us"], m["id"]))
        return out

    def _inputs_of(self, run_id: str) -> list[DataInput]:
        return _inputs_in(self._exp_db, self._prefix, run_id)

    def _all_inputs(self) -> list[tuple[str, DataInput]]:
        """(run id, input) of every run, from one pass over the keys."""
        out = []
        start = len(self._prefix) + _RUN_ID_LEN
        for key in self._exp_db.keys(self._prefix + "*/inputs/*"):
            if key[start : start + 8] == "/inputs/":
                run_id = key[len(self._prefix) : start]
                found = _parse_input(self._exp_db, key, run_id)
                if found is not None:
                    out.append((run_id, found))
        return out

    def _params_of(self, run_id: str) -> dict[str, Any]:
        prefix = f"{self._prefix}{run_id}/params/"
        return {
            k[len(prefix) :]: json.loads(self._exp_db.get(k))
            for k in self._exp_db.keys(prefix + "*")
        }

    def _all_params(self) -> dict[str, dict[str, Any]]:
        """Parameters of every run, from one pass over the keys."""
        out: dict[str, dict[str, Any]] = {}
        start = len(self._prefix) + _RUN_ID_LEN
        for key in self._exp_db.keys(self._prefix + "*/params/*"):
            if key[start : start + 8] == "/params/":
                run_id = key[len(self._prefix) : start]
                out.setdefault(run_id, {})[key[start + 8 :]] = json.loads(self._exp_db.get(key))
        return out

    def _load_run(self, meta: dict[str, Any], params: dict[str, Any] | None = None) -> Run:
        if self._shared_writer is not None:
            live = self._shared_writer.runs.get(meta["id"])
            if live is not None:
                return live  # type: ignore[no-any-return]
        return Run(self, meta, self._params_of(meta["id"]) if params is None else params)

    def _flush_live(self) -> None:
        if self._shared_writer is None:
            return
        for run in list(self._shared_writer.runs.values()):
            if run.pending:
                run.flush()

    def _require_run(self, run_id: str) -> dict[str, Any]:
        self.require_open()
        if not isinstance(run_id, str) or len(run_id) != _RUN_ID_LEN:
            raise NotFoundError(f"run {run_id!r} not found in experiment {self.name!r}")
        text = self._exp_db.get(self._meta_key(run_id))
        if not isinstance(text, str):
            raise NotFoundError(
                f"run {run_id!r} not found in experiment {self.name!r}",
                hint="list the runs with Experiment.query()",
            )
        return json.loads(text)  # type: ignore[no-any-return]

    def _metric_key(self, run_id: str, name: str, kind: str = "metrics") -> str:
        self._require_run(run_id)
        _check_label("metric", name)
        self._flush_live()
        key = f"{self._prefix}{run_id}/{kind}/{name}"
        if not self._exp_db.exists(key):
            raise NotFoundError(
                f"run {run_id} has no metric {name!r}",
                hint="list a run's metrics with Experiment.list_metrics(run_id)",
            )
        return key

    # -- runs -------------------------------------------------------------------------------

    def start_run(self, name: str | None = None, *, tags: Iterable[str] | None = None) -> Run:
        """Start a run (status ``running``); use it as a context manager, or call
        :meth:`Run.end`.

        >>> with exp.start_run("lr-1e-3", tags=["baseline"]) as run:
        ...     run.log_metric("loss", 0.3, step=1)
        >>> run.status
        'completed'
        """
        db = self._writer_db()
        run_id = uuid.uuid4().hex
        meta = {
            "id": run_id,
            "name": _check_label("run", name) if name is not None else run_id[:8],
            "tags": _check_tags(tags),
            "status": RUNNING,
            "start_us": _time_ns() // 1000,
            "end_us": None,
            "owner": owner_token(),
        }
        run = Run(self, meta, {}, live=True)
        db.append(self._meta_key(run_id), json.dumps(meta))
        db.sync()
        assert self._shared_writer is not None
        self._shared_writer.runs[run_id] = run
        _ensure_flusher()
        return run

    def get_run(self, run_id: str) -> Run:
        """The run with this id (the live object if this process is logging to it)."""
        return self._load_run(self._require_run(run_id))

    def list_runs(self) -> list[Run]:
        """All runs of the experiment, oldest first."""
        self.require_open()
        params = self._all_params()
        return [self._load_run(m, params.get(m["id"], {})) for m in self._all_meta()]

    def query(
        self,
        filter: Mapping[str, Any] | None = None,
        sort_by: str | None = None,
        ascending: bool = True,
        *,
        sort_value: str = "last",
        limit: int | None = None,
    ) -> list[Run]:
        """Runs matching ``filter``, sorted by a metric or a field.

        ``filter`` keys:
            ``"status"``: a status or a list of statuses;
            ``"tags"``: a tag or list of tags the run must all have;
            ``"params"``: ``{name: value}`` the run's parameters must equal;
            ``"name"``: the run's name.
        ``sort_by``: a metric name (runs without it come last), or ``"start_time"``,
        ``"end_time"``, ``"name"``, ``"status"``; ``"params.<p>"`` and ``"metrics.<m>"``
        are explicit. ``sort_value`` picks the number per run for a metric: ``"last"``
        (default, the final value), ``"best"`` (the maximum when ``ascending=False``, the
        minimum otherwise), ``"min"``, ``"max"`` or ``"first"``; NaN values are ignored.

        >>> runs = exp.query({"status": "completed"}, sort_by="accuracy", ascending=False)
        >>> runs[0].name  # the best; runs without the metric come last
        'first'
        """
        self.require_open()
        filt = dict(filter or {})
        unknown = set(filt) - {"status", "tags", "params", "name"}
        if unknown:
            raise InvalidArgumentError(
                f"unknown filter keys {sorted(unknown)}", hint="use status, tags, params, name"
            )
        if sort_value not in SORT_VALUES:
            raise InvalidArgumentError(f"sort_value must be one of {SORT_VALUES}")
        statuses = filt.get("status")
        if isinstance(statuses, str):
            statuses = [statuses]
        if statuses is not None:
            bad = [s for s in statuses if s not in RUN_STATUSES]
            if bad:
                raise InvalidValueError(f"unknown statuses {bad}; use one of {RUN_STATUSES}")
        want_tags = _check_tags(filt.get("tags"))
        want_params = filt.get("params") or {}
        if not isinstance(want_params, Mapping):
            raise InvalidArgumentError("filter['params'] must be a dict")
        runs = []
        all_params = self._all_params()
        for meta in self._all_meta():
            if statuses is not None and meta["status"] not in statuses:
                continue
            if "name" in filt and meta["name"] != filt["name"]:
                continue
            if not set(want_tags) <= set(meta.get("tags", [])):
                continue
            run = self._load_run(meta, all_params.get(meta["id"], {}))
            if any(k not in run.params or run.params[k] != v for k, v in want_params.items()):
                continue
            runs.append(run)
        if sort_by is not None:
            runs = self._sorted(runs, sort_by, ascending, sort_value)
        return runs[:limit] if limit is not None else runs

    def _sorted(self, runs: list[Run], sort_by: str, ascending: bool, how: str) -> list[Run]:
        fields = {"start_time", "end_time", "name", "status"}
        if sort_by in fields:
            keyed = [(getattr(r, sort_by), r) for r in runs]
        elif sort_by.startswith("params."):
            p = sort_by[len("params.") :]
            keyed = [(r.params.get(p), r) for r in runs]
        else:
            metric = sort_by[len("metrics.") :] if sort_by.startswith("metrics.") else sort_by
            self._flush_live()
            keyed = [(self._metric_summary(r.id, metric, how, ascending), r) for r in runs]
        present = [(k, r) for k, r in keyed if k is not None]
        missing = [r for k, r in keyed if k is None]
        try:
            present.sort(key=lambda kr: kr[0], reverse=not ascending)
        except TypeError as exc:
            raise InvalidArgumentError(f"values of {sort_by!r} cannot be compared: {exc}") from exc
        return [r for _, r in present] + missing

    def _metric_summary(self, run_id: str, metric: str, how: str, ascending: bool) -> float | None:
        key = f"{self._prefix}{run_id}/metrics/{metric}"
        if not self._exp_db.exists(key):
            return None
        if how == "last":
            v = self._exp_db.get(key)
            return None if v is None or math.isnan(v) else float(v)
        arr = self._exp_db.get_history_floats(key)
        arr = arr[~np.isnan(arr)]
        if not len(arr):
            return None
        if how == "first":
            return float(arr[0])
        if how == "best":
            how = "min" if ascending else "max"
        return float(arr.min() if how == "min" else arr.max())

    # -- metrics ----------------------------------------------------------------------------

    def list_metrics(self, run_id: str) -> list[str]:
        """Names of the metrics a run has logged, sorted."""
        self._require_run(run_id)
        self._flush_live()
        prefix = f"{self._prefix}{run_id}/metrics/"
        return [k[len(prefix) :] for k in self._exp_db.keys(prefix + "*")]

    def get_metric_tensor(self, run_id: str, name: str) -> np.ndarray:
        """A metric's values as a float64 numpy array, in logging order.

        A read-only zero-copy view of the memory-mapped store after :meth:`compact`;
        before compaction a copy. :class:`~synarrow.NotFoundError` for an unknown run or
        metric.
        """
        return self._exp_db.get_history_floats(self._metric_key(run_id, name))

    def get_metric_steps(self, run_id: str, name: str) -> np.ndarray:
        """The step of each value of a metric (int64), aligned with :meth:`get_metric_tensor`."""
        self._metric_key(run_id, name)  # validates the run and the metric
        return self._exp_db.get_history_tensor(f"{self._prefix}{run_id}/steps/{name}")

    def get_metric_history(self, run_id: str, name: str) -> pa.Table:
        """A metric as an Arrow table: ``step`` (int64), ``ts`` (timestamp UTC), ``value``."""
        values = self._exp_db.get_history(self._metric_key(run_id, name))
        steps = self._exp_db.get_history(f"{self._prefix}{run_id}/steps/{name}")
        return pa.table(
            {
                "step": steps.column("value"),
                "ts": values.column("ts"),
                "value": values.column("value"),
            }
        )

    def _last_metrics(self, run_id: str) -> dict[str, float]:
        prefix = f"{self._prefix}{run_id}/metrics/"
        return {k[len(prefix) :]: self._exp_db.get(k) for k in self._exp_db.keys(prefix + "*")}

    def compare_runs(self, run_ids: Sequence[str]) -> Any:
        """A pandas DataFrame with one row per run (index: run id): ``name``, ``status``,
        then ``params.<p>`` and ``metrics.<m>`` (the final value) columns side by side.

        Use ``.T`` for runs as columns. Needs pandas.
        """
        from synarrow.optional import require

        pd = require("pandas")
        if isinstance(run_ids, str):
            run_ids = [run_ids]
        self._flush_live()
        rows = []
        for rid in run_ids:
            run = self.get_run(rid)
            row: dict[str, Any] = {"name": run.name, "status": run.status}
            row.update({f"params.{k}": v for k, v in sorted(run.params.items())})
            row.update({f"metrics.{k}": v for k, v in self._last_metrics(rid).items()})
            rows.append(row)
        columns = ["name", "status"]
        for prefix in ("params.", "metrics."):
            seen = sorted({c for r in rows for c in r if c.startswith(prefix)})
            columns += seen
        df = pd.DataFrame(rows, index=pd.Index(list(run_ids), name="run_id"), columns=columns)
        return df

    def plot_metrics(
        self,
        run_ids: str | Sequence[str],
        names: str | Sequence[str],
        *,
        x: str = "step",
        ax: Any = None,
    ) -> Any:
        """Plot metrics of runs with matplotlib (optional extra); returns the Figure.

        One subplot per metric name (or everything on ``ax`` when given), one line per run.
        ``x``: ``"step"`` or ``"time"``.
        """
        from synarrow.optional import require

        require("matplotlib")
        if x not in ("step", "time"):
            raise InvalidArgumentError(f"x must be 'step' or 'time', got {x!r}")
        run_ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        names = [names] if isinstance(names, str) else list(names)
        if ax is None:
            import matplotlib.pyplot as plt

            fig, axes = plt.subplots(
                len(names), 1, figsize=(7, 3 * len(names)), squeeze=False, sharex=True
            )
            axes_list = [a[0] for a in axes]
        else:
            fig = ax.figure
            axes_list = [ax] * len(names)
        for metric, axis in zip(names, axes_list):
            for rid in run_ids:
                run = self.get_run(rid)
                try:
                    table = self.get_metric_history(rid, metric)
                except NotFoundError:
                    continue
                xs = table.column("step" if x == "step" else "ts").to_numpy()
                label = run.name if len(names) == 1 or ax is None else f"{run.name} {metric}"
                axis.plot(xs, table.column("value").to_numpy(), label=label)
            axis.set_ylabel(metric)
            axis.legend(loc="best", fontsize="small")
        axes_list[-1].set_xlabel(x)
        return fig

    # -- artifacts --------------------------------------------------------------------------

    def list_artifacts(self, run_id: str) -> list[Artifact]:
        """The artifacts of a run, by name."""
        self._require_run(run_id)
        prefix = f"{self._prefix}{run_id}/artifacts/"
        out = []
        for key in self._exp_db.keys(prefix + "*"):
            checksum, size, created = parse_blob_ref(self._exp_db.get(key), f"artifact {key!r}")
            out.append(
                Artifact(
                    key[len(prefix) :],
                    checksum,
                    size,
                    us_to_datetime(created) if created is not None else None,  # type: ignore[arg-type]
                )
            )
        return out

    def load_artifact(
        self, run_id: str, name: str, *, path: str | os.PathLike[str] | None = None
    ) -> Any:
        """An artifact's bytes, verified against their SHA-256 (ChecksumError otherwise);
        with ``path``, streamed to that file, and its Path returned."""
        self._require_run(run_id)
        text = self._exp_db.get(
            f"{self._prefix}{run_id}/artifacts/{_check_label('artifact', name)}"
        )
        if not isinstance(text, str):
            raise NotFoundError(f"run {run_id} has no artifact {name!r}")
        what = f"artifact {name!r} of run {run_id}"
        checksum, size, _ = parse_blob_ref(text, what)
        if path is None:
            return self._artifacts.read(checksum, size, what)
        return self._artifacts.copy_to(checksum, size, Path(path), what)

    # -- SQL --------------------------------------------------------------------------------

    def duckdb(self) -> DuckDBPyConnection:
        """A new DuckDB connection with the views ``metrics``, ``runs``, ``params`` and
        ``inputs`` of this experiment (and the store's ``history`` and ``latest``), as of
        this call.

        ``metrics(run_id, metric, step, ts, value)``: every logged point;
        ``runs(run_id, name, status, start_time, end_time, tags)``;
        ``params(run_id, param, value)``: value as text (JSON for non-strings);
        ``inputs(run_id, name, path, tag, created, keys, entries, fingerprint)``: the data
        snapshots runs read (:meth:`Run.log_input`), as recorded (not checked).
        """
        from synarrow.sandbox import new_connection

        con = new_connection()
        self._register_views(con)
        return con

    def _register_views(self, con: DuckDBPyConnection) -> None:
        from synarrow.sql import register

        self.require_open()
        self._flush_live()
        register(con, self._exp_db)  # history and latest, over the store as it is now
        metas = self._all_meta()
        utc = TS_TYPE
        runs = pa.table(
            {
                "run_id": pa.array([m["id"] for m in metas], pa.string()),
                "name": pa.array([m["name"] for m in metas], pa.string()),
                "status": pa.array([m["status"] for m in metas], pa.string()),
                "start_time": pa.array([m["start_us"] for m in metas], utc),
                "end_time": pa.array([m["end_us"] for m in metas], utc),
                "tags": pa.array([m.get("tags", []) for m in metas], pa.list_(pa.string())),
            }
        )
        rows: list[tuple[str, str, str]] = []
        all_params = self._all_params()
        for m in metas:
            for k, v in all_params.get(m["id"], {}).items():
                rows.append((m["id"], k, v if isinstance(v, str) else json.dumps(v)))
        params = pa.table(
            {
                "run_id": pa.array([r[0] for r in rows], pa.string()),
                "param": pa.array([r[1] for r in rows], pa.string()),
                "value": pa.array([r[2] for r in rows], pa.string()),
            }
        )
        found = self._all_inputs()
        inputs = pa.table(
            {
                "run_id": pa.array([rid for rid, _ in found], pa.string()),
                "name": pa.array([i.name for _, i in found], pa.string()),
                "path": pa.array([i.path for _, i in found], pa.string()),
                "tag": pa.array([i.tag for _, i in found], pa.string()),
                "created": pa.array([i.created for _, i in found], utc),
                "keys": pa.array([i.keys for _, i in found], pa.int64()),
                "entries": pa.array([i.entries for _, i in found], pa.int64()),
                "fingerprint": pa.array([i.fingerprint for _, i in found], pa.string()),
            }
        )
        con.register("_synarrow_exp_runs", runs)
        con.register("_synarrow_exp_params", params)
        con.register("_synarrow_exp_inputs", inputs)
        con.execute(
            "CREATE OR REPLACE TEMP VIEW runs AS SELECT * FROM _synarrow_exp_runs;"
            "CREATE OR REPLACE TEMP VIEW params AS SELECT * FROM _synarrow_exp_params;"
            "CREATE OR REPLACE TEMP VIEW inputs AS SELECT * FROM _synarrow_exp_inputs;"
            + metrics_view_sql(self._prefix)
        )

    def sql(self, query: str, params: Iterable[Any] | None = None) -> pa.Table:
        """Run a DuckDB query over ``metrics``, ``runs``, ``params`` (see :meth:`duckdb`);
        returns an Arrow table. Metric values still buffered in this process are written
        first, so queries see everything logged so far.

        >>> exp.sql("SELECT run_id, max(value) AS best FROM metrics "
        ...         "WHERE metric = 'accuracy' GROUP BY run_id").column("best").to_pylist()
        [0.9]
        """
        from synarrow.duck import DuckSession

        with self._sql_lock:
            self.require_open()
            if self._session is None:
                self._session = DuckSession(hint=_VIEWS_HINT)
                self.on_close(self._close_sql)
            session = self._session
        return session.query(query, params, prepare=self._register_views)

    # -- life cycle -------------------------------------------------------------------------

    @property
    def db(self) -> SynaDB:
        """The underlying :class:`~synarrow.SynaDB`."""
        return self._exp_db

    def flush(self) -> None:
        """Write every run's buffered metric values to the store and fsync it."""
        self.require_open()
        self._flush_live()
        if self._shared_writer is not None:
            self._exp_db.sync()

    def compact(self) -> dict[str, Any]:
        """Flush, then fold the store's log into Arrow files, so metric tensors become
        zero-copy views; returns what ``SynaDB.compact`` did."""
        self._flush_live()
        return self._writer_db().compact()

    def refresh(self) -> None:
        """Read-only experiments: reopen the store to see what the writer has added since."""
        self.require_open()
        if self._shared_writer is None:
            old, self._exp_db = self._exp_db, SynaDB(self.path, readonly=True)
            old.close()

    def close(self) -> None:
        """End this object's live runs as ``killed``, write everything, and release the
        store (closed with its last user in the process). Idempotent."""
        if self.closed:
            return
        try:
            if self._shared_writer is None or self._shared_writer.in_this_process:
                for run in self._live_runs():
                    run.end(KILLED)
        finally:
            super().close()

    def _close_sql(self) -> None:
        with self._sql_lock:
            session, self._session = self._session, None
        if session is not None:
            with session.lock:
                session.close()

    def release(self) -> None:
        """Release the store: the shared writer closes with its last user in the process."""
        with _FLUSHER_LOCK:
            _LIVE_EXPERIMENTS.discard(self)
            _OPEN_EXPERIMENTS.discard(self)
        if self._shared_writer is not None:
            release_shared(self._shared_writer)
        else:
            self._exp_db.close()

    def __repr__(self) -> str:
        return f"<synarrow.Experiment {self.name!r} {str(self.path)!r} {self.state}>"


def _parse_input(db: SynaDB, key: str, run_id: str) -> DataInput | None:
    text = db.get(key)
    if not isinstance(text, str):
        return None
    try:
        d = json.loads(text)
    except ValueError as exc:
        raise CorruptionError(f"data input {key!r} is damaged: {exc}") from exc
    return DataInput.from_dict(d, f"run {run_id} ({key})")


def _inputs_in(db: SynaDB, prefix: str, run_id: str) -> list[DataInput]:
    """The inputs stored for a run under ``prefix`` (``exp/<name>/runs/``), first logged first."""
    out = []
    for key in db.keys(f"{prefix}{run_id}/inputs/*"):
        found = _parse_input(db, key, run_id)
        if found is not None:
            out.append(found)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    out.sort(key=lambda i: (i.logged_at or epoch, i.path, i.tag))
    return out


def _lookup(db: SynaDB, run_id: str, path: Path) -> tuple[RunInfo, tuple[DataInput, ...]] | None:
    """The run ``run_id`` in the store ``db`` (any experiment of it), or ``None``."""
    suffix = f"/runs/{run_id}/meta"
    for key in db.keys(f"exp/*{suffix}"):
        text = db.get(key)
        if not isinstance(text, str):
            continue
        name = key[len("exp/") : -len(suffix)]
        try:
            meta = json.loads(text)
            info = RunInfo(run_id, name, str(path.resolve()), meta.get("name"), meta["status"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptionError(f"run record {key!r} in {path} is damaged: {exc}") from exc
        return info, tuple(_inputs_in(db, f"exp/{name}/runs/", run_id))
    return None


def find_run(
    run: str | Run, experiments: Experiment | str | os.PathLike[str] | None = None
) -> tuple[RunInfo, tuple[DataInput, ...]]:
    """Find a run by id: its :class:`~synarrow.lineage.RunInfo` (status as stored now) and
    the data inputs it recorded (as stored, not checked).

    ``run``: a run id or a :class:`Run`. ``experiments``: where to look: an
    :class:`Experiment` (its whole store: every experiment in it), or a store's path; by
    default every experiment open in this process (read-only ones too), which finds the
    runs of ``with exp.start_run() as run:`` blocks that have ended.
    :class:`~synarrow.NotFoundError` if the run is not there.
    """
    if isinstance(run, Run):
        if experiments is None:
            experiments = run._exp if not run._exp.closed else run.path
        run = run.id
    if not isinstance(run, str) or RUN_ID_PATTERN.fullmatch(run) is None:
        raise InvalidArgumentError(
            f"a run id is 32 lowercase hex digits (Run.id), got {run!r:.80}",
        )
    if isinstance(experiments, Experiment):
        experiments.require_open()
        found = _lookup(experiments._exp_db, run, experiments.path)
        where = f"experiment store {experiments.path}"
    elif experiments is None:
        with _FLUSHER_LOCK:
            open_now = [e for e in _OPEN_EXPERIMENTS if not e.closed]
        found, seen = None, set()
        for exp in open_now:
            if id(exp._exp_db) in seen:
                continue
            seen.add(id(exp._exp_db))
            found = _lookup(exp._exp_db, run, exp.path)
            if found is not None:
                break
        where = "any experiment open in this process"
    elif isinstance(experiments, (str, os.PathLike)):
        path = Path(experiments)
        where = f"experiment store {path}"
        with _FLUSHER_LOCK:
            mine = [
                e for e in _OPEN_EXPERIMENTS if not e.closed and e.path.resolve() == path.resolve()
            ]
        if mine:
            found = _lookup(mine[0]._exp_db, run, path)
        else:
            with SynaDB(path, readonly=True) as db:
                found = _lookup(db, run, path)
    else:
        raise InvalidArgumentError(
            f"experiments must be an Experiment or a store path, got {type(experiments).__name__}"
        )
    if found is None:
        raise NotFoundError(
            f"run {run} not found in {where}",
            hint="pass the Run object itself, or experiments=<the Experiment or its store path>",
        )
    return found


def metrics_view_sql(prefix: str) -> str:
    """SQL creating the ``metrics`` view for the runs under ``prefix`` (``exp/<name>/runs/``).

    A value and its step share the key suffix and the timestamp, so they are joined on both.
    """
    if "'" in prefix:
        raise InvalidArgumentError(f"prefix {prefix!r} may not contain quotes")
    n = len(prefix)
    rid_end = n + _RUN_ID_LEN
    metric_start = rid_end + len("/metrics/") + 1
    return f"""
CREATE OR REPLACE TEMP VIEW metrics AS
WITH m AS (
    SELECT key, ts, value FROM history
    WHERE starts_with(key, '{prefix}') AND substr(key, {rid_end + 1}, 9) = '/metrics/'
), s AS (
    SELECT key, ts, int_value FROM history
    WHERE starts_with(key, '{prefix}') AND substr(key, {rid_end + 1}, 7) = '/steps/'
)
SELECT substr(m.key, {n + 1}, {_RUN_ID_LEN}) AS run_id,
       substr(m.key, {metric_start}) AS metric,
       s.int_value AS step,
       m.ts AS ts,
       m.value AS value
FROM m LEFT JOIN s
  ON s.key = substr(m.key, 1, {rid_end}) || '/steps/' || substr(m.key, {metric_start})
 AND s.ts = m.ts
"""


__all__ = ["RUN_STATUSES", "Artifact", "Experiment", "Run", "find_run"]

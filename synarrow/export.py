"""Scale-out: a database as a Hive-partitioned dataset that other engines read as is, and back.

:func:`export_dataset` writes one file per key under ``key=<key>/``::

    out/key=sensor%2F1/part-0.parquet       columns key, ts, value, int_value, text, ...
    out/key=Zürich/part-0.parquet

Every file holds the key as a column too, so an engine gets each key back exactly whatever it
makes of directory names (Spark, pyarrow, polars, Dask, Ray and DuckDB were checked: they all
read the file's column). Directory names use Hive's escaping (see
:mod:`synarrow.layout`), which Spark decodes the same way as pyarrow and DuckDB.

The columns are the same for every database (see :class:`Layout`): ``key``, ``ts``
(``timestamp[us, UTC]``), ``value`` (float64: floats, and ints as doubles), ``int_value``
(exact int64), ``text``, ``bytes``, ``vector`` (``fixed_size_list<float32>[d]`` when all
vectors have dimension ``d``) and ``type`` (the atom type of the row). :func:`export_file`
writes the same columns to one file (Parquet, Arrow IPC, CSV or JSON lines);
:func:`import_dataset` reads either back into a database. CSV and JSON lines carry bytes as
base64 text and vectors as JSON arrays; only Parquet and Arrow round-trip them exactly.

An export is staged, then moved into place: a failed export leaves no partial target, and
``overwrite=True`` only ever replaces an earlier export (see :mod:`synarrow.export_target`).

``snapshot=tag`` exports the state of that tag (``db.snapshot(tag)``) instead of the current
one. ``format="delta"`` commits a tag as one version of a Delta Lake table, incrementally
(only the keys that changed since the tag exported before; see :mod:`synarrow.export_delta`
for the table schema and when a full overwrite is committed instead), and
:func:`delta_versions` maps each tag to its table version, which Spark (``versionAsOf``),
Trino, DuckDB (``delta_scan``), polars (``read_delta(uri, version=v)``), Ray and Dask read::

    db.snapshot("v1"); db.export_dataset("lake/", format="delta", snapshot="v1")
    polars.read_delta("lake/", version=delta_versions("lake/")["v1"])
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from synarrow.columnar.schema import TS_TYPE
from synarrow.columnar.tags import check_tag
from synarrow.engine.snapshot import ReadSnapshot
from synarrow.errors import ExportError, InvalidArgumentError, InvalidValueError, SynaError
from synarrow.export_delta import delta_versions, export_delta
from synarrow.export_target import DatasetTarget, FileTarget
from synarrow.layout import (
    EXPORT_LAYOUT_VERSION,
    EXPORT_METADATA_KEY,
    NAIVE_TS_TYPE,
    TYPE_NAMES,
    VALUE_COLUMNS,
    Layout,
    conform,
    key_array,
    parquet_options,
    partition_dir,
    plan_layout,
)
from synarrow.reading import BatchSink, SnapshotSource, history, select_snapshot
from synarrow.text_format import json_lines, json_value, text_schema, to_text_table

DATASET_FORMATS = ("parquet", "arrow")
#: What :func:`export_dataset` writes: the Hive dataset formats and a Delta Lake table.
EXPORT_FORMATS = (*DATASET_FORMATS, "delta")
FILE_FORMATS = ("parquet", "arrow", "csv", "jsonl")
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_FORMAT_ALIASES = {"feather": "arrow", "ipc": "arrow", "json": "jsonl", "ndjson": "jsonl"}


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    For ``format="delta"``, :attr:`rows` and :attr:`files` count what the new commit wrote,
    :attr:`keys` the keys the table holds at :attr:`version`, and the fields after
    :attr:`seconds` say what the commit was.
    """

    uri: str
    format: str
    keys: int
    rows: int
    files: int
    seconds: float
    snapshot: str | None = None
    """The tag exported (``None``: the current state)."""
    version: int | None = None
    """Delta only: the table version that holds the tag."""
    mode: str | None = None
    """Delta only: ``"full"``, ``"incremental"`` or ``"unchanged"`` (the table already held
    the tag, nothing was committed)."""
    reason: str | None = None
    """Delta only: why a full overwrite replaced an existing table's rows."""
    keys_written: int | None = None
    """Delta only: keys whose rows the commit wrote (the added and changed ones when
    incremental)."""
    keys_removed: int | None = None
    """Delta only: keys the commit removed without writing them again."""
    previous: str | None = None
    """Delta only: the tag the table held before the commit."""


@dataclass(frozen=True)
class ImportResult:
    """What an import appended."""

    keys: int
    rows: int
    skipped_nulls: int
    seconds: float


# -- formats and file systems --------------------------------------------------------------


def normalize_format(fmt: str, allowed: Sequence[str] = FILE_FORMATS) -> str:
    """``"feather"`` -> ``"arrow"``, ``"json"`` -> ``"jsonl"``; refuses unknown formats."""
    if not isinstance(fmt, str):
        raise InvalidArgumentError(f"format must be a str, got {type(fmt).__name__}")
    name = _FORMAT_ALIASES.get(fmt.lower(), fmt.lower())
    if name not in allowed:
        raise InvalidArgumentError(f"unknown format {fmt!r}; expected one of {', '.join(allowed)}")
    return name


def format_from_suffix(path: str | os.PathLike[str]) -> str | None:
    """The format a file name's suffix names (``.parquet``, ``.csv`` ...), or ``None``."""
    return _SUFFIXES.get(Path(str(path)).suffix.lower())


def _is_uri(uri: str) -> bool:
    scheme, sep, _ = uri.partition("://")
    return bool(sep) and scheme.isidentifier() and len(scheme) > 1


def resolve_filesystem(uri: str | os.PathLike[str], filesystem: Any = None) -> tuple[Any, str]:
    """A pyarrow ``FileSystem`` and the path on it for a local path or a URI.

    Local paths use ``pyarrow.fs.LocalFileSystem``. URIs (``s3://``, ``gs://``,
    ``memory://`` ...) go through fsspec when it is installed (any fsspec protocol works),
    else through pyarrow's own file systems. ``filesystem`` may be a pyarrow or fsspec file
    system, in which case ``uri`` is a path on it.
    """
    text = os.fspath(uri)
    if filesystem is not None:
        if isinstance(filesystem, pafs.FileSystem):
            return filesystem, text
        return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), text
    if not _is_uri(text) or text.startswith("file://"):
        local = text[len("file://") :] if text.startswith("file://") else text
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(local))
    try:
        import fsspec.core
    except ImportError:
        try:
            return pafs.FileSystem.from_uri(text)  # type: ignore[no-any-return]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise ExportError(
                f"cannot open {text!r} without fsspec: {exc}", hint="pip install fsspec"
            ) from exc
    try:
        fs, path = fsspec.core.url_to_fs(text)
    except (ImportError, ValueError) as exc:
        raise ExportError(f"cannot open {text!r}: {exc}") from exc
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


# -- exporting -----------------------------------------------------------------------------


def _layout_of(snapshot: ReadSnapshot, keys: Sequence[str]) -> Layout:
    return plan_layout(history(snapshot.keys[k]).schema.field("value").type for k in keys)


def _bar(enabled: bool | None, total: int, desc: str) -> Any:
    from synarrow.optional import progress

    return progress(total=total, desc=desc, enabled=enabled)


def _protected(db: SnapshotSource) -> list[str]:
    path = getattr(db, "path", None)
    return [os.fspath(path)] if path is not None else []


class _Staged:
    """Runs the writing of an export; on any failure removes what it wrote.

    Errors other than synarrow's own (pyarrow's, the file system's) become
    :class:`ExportError`; ``KeyboardInterrupt`` cleans up and propagates unchanged.
    """

    def __init__(self, target: DatasetTarget | FileTarget, uri: str) -> None:
        self.target = target
        self.uri = uri

    def __enter__(self) -> _Staged:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is None:
            return
        self.target.abort()
        if isinstance(exc, SynaError) or not isinstance(exc, Exception):
            return  # re-raised as it is
        raise ExportError(f"exporting to {self.uri} failed, nothing was written: {exc}") from exc


def export_dataset(
    db: SnapshotSource,
    uri: str | os.PathLike[str],
    format: str = "parquet",
    partition_by: str | None = "key",
    *,
    keys: Iterable[str] | None = None,
    pattern: str | None = None,
    compression: str | None = "snappy",
    overwrite: bool = False,
    filesystem: Any = None,
    progress: bool | None = None,
    snapshot: str | None = None,
) -> ExportResult:
    """Write the database as a Hive-partitioned Parquet (or Arrow IPC) dataset, or commit a
    tag as a version of a Delta Lake table.

    >>> export_dataset(db, "out/").rows
    4
    >>> import duckdb
    >>> duckdb.sql("SELECT key, count(*) AS n FROM read_parquet('out/**/*.parquet', "
    ...            "hive_partitioning=true) GROUP BY key ORDER BY key").fetchall()
    [('sensor/1', 1), ('temperature', 3)]

    Args:
        db: an open database (read-only handles work).
        uri: a local directory, or a URI any fsspec (or pyarrow) file system opens.
        format: ``"parquet"`` (what every engine reads) or ``"arrow"`` (Arrow IPC files,
            also called feather: read by pyarrow, polars and Arrow JS only).
        partition_by: ``"key"`` for one ``key=<key>/part-0.<ext>`` file per key, or ``None``
            for one ``part-0.<ext>`` file.
        keys / pattern: export only these keys, or the keys matching a glob.
        compression: Parquet codec (``"snappy"``, ``"zstd"``, ``None`` ...), or the Arrow
            IPC buffer codec (``"lz4"``, ``"zstd"``; ``None`` keeps files memory-mappable
            and readable by Arrow JS, which has no codecs). The default ``"snappy"`` means
            uncompressed for ``format="arrow"``.
        overwrite: replace an earlier export in ``uri`` (a directory holding nothing but
            files an export wrote, recognised by their ``synarrow.export`` schema metadata);
            anything else is refused and nothing is deleted.
        filesystem: a pyarrow or fsspec file system for ``uri``.
        progress: show a progress bar (default: when stderr is a terminal).
        snapshot: export this tag's state. Here it must be the tag ``db`` reads
            (``SynaDB(path, snapshot=tag)``); ``db.export_dataset(..., snapshot=tag)`` opens
            it for any tag.

    ``format="delta"`` (see :mod:`synarrow.export_delta`) commits the tag as one new version
    of the Delta table at ``uri`` (a local directory): only the keys changed since the tag
    exported last, or a full overwrite when that cannot be told (the result's ``mode`` and
    ``reason`` say which). It needs a tag and takes ``partition_by``, ``compression`` (the
    Parquet codec) and ``progress`` only; ``keys``, ``pattern``, ``overwrite`` and
    ``filesystem`` are refused.

    Raises:
        ExportError: the target is refused (a database, inside one, not empty, not an
            earlier export) or writing failed; the target is then left as it was.
        SnapshotNotFoundError: no such tag.
    """
    fmt = normalize_format(format, EXPORT_FORMATS)
    if partition_by not in ("key", None):
        raise InvalidArgumentError(f"partition_by must be 'key' or None, got {partition_by!r}")
    tag = _export_tag(db, snapshot)
    if fmt == "delta":
        refused = {
            "keys": keys is not None,
            "pattern": pattern is not None,
            "overwrite": overwrite,
            "filesystem": filesystem is not None,
        }
        named = [name for name, given in refused.items() if given]
        if named:
            raise InvalidArgumentError(
                f"{', '.join(named)} do not apply to a Delta export",
                hint="a table version holds a whole tag, and every export commits a version",
            )
        return _export_delta(db, uri, partition_by, compression, tag, progress)
    started = time.perf_counter()
    fs, base = resolve_filesystem(uri, filesystem)
    # Every key as of one moment: a write during the export is not in it.
    snapshot, chosen = select_snapshot(db, keys, pattern)
    # Keys too long for a directory name are refused before anything is written.
    dirs = {key: partition_dir(key) for key in chosen} if partition_by == "key" else {}
    layout = _layout_of(snapshot, chosen)
    codec = _codec(fmt, compression)
    ext = "parquet" if fmt == "parquet" else "arrow"
    target = DatasetTarget(fs, base, overwrite=overwrite, protect=_protected(db))
    with _Staged(target, os.fspath(uri)):
        staging = target.open()
        if partition_by is None:
            rows = _write_file(
                snapshot,
                chosen,
                layout,
                fs,
                f"{staging}/part-0.{ext}",
                fmt,
                codec,
                progress=progress,
            )
        else:
            rows = _write_partitions(
                snapshot, chosen, dirs, layout, fs, staging, fmt, codec, progress
            )
        target.commit()
    files = 1 if partition_by is None else len(chosen)
    return ExportResult(
        os.fspath(uri), fmt, len(chosen), rows, files, time.perf_counter() - started, tag
    )


def _export_tag(db: SnapshotSource, snapshot: str | None) -> str | None:
    """The tag an export reads: ``snapshot``, which must be the one ``db`` reads."""
    reads = getattr(db, "tag", None)
    if snapshot is None:
        return reads
    check_tag(snapshot)
    if snapshot != reads:
        where = f"snapshot {reads!r}" if reads else "the current state"
        raise InvalidArgumentError(
            f"this handle reads {where}, not snapshot {snapshot!r}",
            hint="use db.export_dataset(uri, snapshot=tag), or open "
            "SynaDB(path, snapshot=tag) and export that",
        )
    return snapshot


def _export_delta(
    db: SnapshotSource,
    uri: Any,
    partition_by: str | None,
    compression: str | None,
    tag: Any,
    progress: bool | None,
) -> ExportResult:
    started = time.perf_counter()
    if tag is None:
        raise InvalidArgumentError(
            "format='delta' needs a snapshot tag: a table version maps to an immutable tag",
            hint="db.snapshot('v1'), then db.export_dataset(uri, format='delta', snapshot='v1')",
        )
    source: Any = db  # a snapshot handle: it has tag, snapshots() and diff_snapshots()
    commit = export_delta(
        source, uri, partition_by=partition_by, compression=compression, show_progress=progress
    )
    return ExportResult(
        os.fspath(uri),
        "delta",
        commit.keys,
        commit.rows,
        commit.files,
        time.perf_counter() - started,
        tag,
        commit.version,
        commit.mode,
        commit.reason,
        commit.keys_written,
        commit.keys_removed,
        commit.previous,
    )


def _write_partitions(
    snapshot: ReadSnapshot,
    chosen: Sequence[str],
    dirs: dict[str, str],
    layout: Layout,
    fs: Any,
    base: str,
    fmt: str,
    codec: str | None,
    progress: bool | None,
) -> int:
    """One file per key, ``base/key=<escaped key>/part-0.<ext>``, each holding its key column.

    Histories are read on this thread (in key order) and written by a few writer threads:
    Parquet and IPC encoding release the GIL, so files are encoded in parallel, and at most
    two histories per thread are held in memory at once.
    """
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    ext = "parquet" if fmt == "parquet" else "arrow"
    threads = max(2, min(4, os.cpu_count() or 1))
    rows = 0
    bar = _bar(progress, len(chosen), "export")
    pending: set[Future[int]] = set()

    def collect(block: bool) -> None:
        nonlocal rows, pending
        done, pending = wait(pending, return_when=FIRST_COMPLETED) if block else (set(), pending)
        for future in done:
            rows += future.result()  # re-raises a writer's error here
            bar.update(1)

    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="synarrow-export") as pool:
            try:
                for key in chosen:
                    table = history(snapshot.keys[key])
                    folder = f"{base}/{dirs[key]}"
                    path = f"{folder}/part-0.{ext}"
                    pending.add(
                        pool.submit(
                            _write_key_file, fs, folder, path, fmt, codec, layout, key, table
                        )
                    )
                    while len(pending) >= 2 * threads:
                        collect(block=True)
                while pending:
                    collect(block=True)
            finally:
                for future in pending:
                    future.cancel()
    finally:
        bar.close()
    return rows


#: Rows encoded per slice (and per Parquet row group): bounds the memory of a huge key.
_SLICE_ROWS = 1 << 20


def _write_key_file(
    fs: Any,
    folder: str,
    path: str,
    fmt: str,
    codec: str | None,
    layout: Layout,
    key: str,
    history: pa.Table,
) -> int:
    """Write one key's history (in slices of ``_SLICE_ROWS`` rows) to one file."""
    schema = layout.schema(with_key=True)
    fs.create_dir(folder, recursive=True)
    n = history.num_rows
    with fs.open_output_stream(path) as stream:
        writer = _open_writer(stream, fmt, schema, codec)
        try:
            for lo in range(0, n, _SLICE_ROWS):
                part = conform(history.slice(lo, _SLICE_ROWS), layout)
                if part.column(0).num_chunks > 8:
                    part = part.combine_chunks()  # one batch, not many tiny ones
                table = part.add_column(0, schema.field("key"), key_array(key, part.num_rows))
                if fmt == "parquet":
                    writer.write_table(table, row_group_size=_SLICE_ROWS)
                else:
                    writer.write_table(table)
        finally:
            writer.close()
    return n


def _open_writer(stream: Any, fmt: str, schema: pa.Schema, codec: str | None) -> Any:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(stream, schema, **parquet_options(codec))
    import pyarrow.ipc as ipc

    options = ipc.IpcWriteOptions(compression=codec) if codec else None
    return ipc.new_file(stream, schema, options=options)


def _codec(fmt: str, compression: str | None) -> str | None:
    if fmt == "arrow":
        return compression if compression in ("lz4", "zstd") else None
    return compression or "none"


def iter_export_tables(
    snapshot: ReadSnapshot, keys: Sequence[str], layout: Layout, *, with_key: bool = True
) -> Iterator[tuple[str, pa.Table]]:
    """Each key's history (as of ``snapshot``) in the export layout, ``key`` column first
    if asked."""
    schema = layout.schema(with_key=with_key)
    for key in keys:
        table = conform(history(snapshot.keys[key]), layout)
        if with_key:
            table = table.add_column(0, "key", key_array(key, table.num_rows))
        yield key, table.cast(schema)


def _write_file(
    snapshot: ReadSnapshot,
    keys: Sequence[str],
    layout: Layout,
    fs: Any,
    path: str,
    fmt: str,
    codec: str | None,
    *,
    progress: bool | None,
) -> int:
    schema = layout.schema(with_key=True)
    rows = 0
    bar = _bar(progress, len(keys), "export")
    try:
        with _FileSink(fs, path, fmt, schema, codec) as sink:
            for _, table in iter_export_tables(snapshot, keys, layout):
                sink.write(table)
                rows += table.num_rows
                bar.update(1)
    finally:
        bar.close()
    return rows


class _FileSink:
    """Streams tables into one file, batching small tables into ~1M-row row groups."""

    ROWS = 1 << 20

    def __init__(self, fs: Any, path: str, fmt: str, schema: pa.Schema, codec: Any) -> None:
        self.fmt = fmt
        self.schema = schema
        self._pending: list[pa.Table] = []
        self._rows = 0
        self._stream = fs.open_output_stream(path)
        self._writer: Any = None
        if fmt in DATASET_FORMATS:
            self._writer = _open_writer(self._stream, fmt, schema, codec)
        elif fmt == "csv":
            import pyarrow.csv as pcsv

            self._writer = pcsv.CSVWriter(self._stream, text_schema(schema))

    def write(self, table: pa.Table) -> None:
        """Queue a table; written once ~1M rows are pending."""
        self._pending.append(table)
        self._rows += table.num_rows
        if self._rows >= self.ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._rows = [], 0
        if self.fmt == "parquet":
            self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        elif self.fmt == "arrow":
            self._writer.write_table(table)
        elif self.fmt == "csv":
            self._writer.write_table(to_text_table(table))
        else:
            self._stream.write("".join(json_lines(table)).encode("utf-8"))

    def __enter__(self) -> _FileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self._flush()
            if self._writer is not None:
                self._writer.close()
        finally:
            self._stream.close()


def export_file(
    db: SnapshotSource,
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    keys: Iterable[str] | None = None,
    pattern: str | None = None,
    compression: str | None = "snappy",
    overwrite: bool = False,
    filesystem: Any = None,
    progress: bool | None = None,
) -> ExportResult:
    """Write the database (or some keys) to one file with the export columns (key first).

    ``format`` is ``"parquet"``, ``"arrow"``, ``"csv"`` or ``"jsonl"``; by default it comes
    from the file name's suffix. The layout is what ``pandas.read_parquet`` /
    ``read_csv`` / ``read_json(lines=True)`` turn into a long DataFrame. The file is written
    under a temporary name and moved into place, so a failure leaves no partial file.

    >>> export_file(db, "all.parquet").rows
    4
    """
    fmt = normalize_format(format) if format else format_from_suffix(path)
    if fmt is None:
        raise InvalidArgumentError(
            f"cannot tell the format of {os.fspath(path)!r} from its suffix",
            hint="pass format= (parquet, arrow, csv or jsonl)",
        )
    started = time.perf_counter()
    fs, dest = resolve_filesystem(path, filesystem)
    snapshot, chosen = select_snapshot(db, keys, pattern)
    layout = _layout_of(snapshot, chosen)
    codec = _codec(fmt, compression) if fmt in DATASET_FORMATS else None
    target = FileTarget(fs, dest, overwrite=overwrite, protect=_protected(db))
    with _Staged(target, os.fspath(path)):
        temp = target.open()
        rows = _write_file(snapshot, chosen, layout, fs, temp, fmt, codec, progress=progress)
        target.commit()
    return ExportResult(os.fspath(path), fmt, len(chosen), rows, 1, time.perf_counter() - started)


# -- importing -----------------------------------------------------------------------------


def to_ts_column(col: pa.ChunkedArray | pa.Array, ts_unit: str) -> pa.Array:
    """Any timestamp-like column as ``timestamp[us, UTC]`` (naive values are taken as UTC)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if pa.types.is_timestamp(t):
        if t.tz is None:
            col = col.cast(pa.timestamp(t.unit)).cast(pa.int64()).cast(pa.timestamp(t.unit, "UTC"))
        return col.cast(TS_TYPE)
    if pa.types.is_date(t):
        return col.cast(NAIVE_TS_TYPE).cast(pa.int64()).cast(TS_TYPE)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        scale = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}[ts_unit]
        us = np.asarray(
            col.to_numpy(zero_copy_only=False), dtype=np.float64 if scale != 1 else None
        )
        return pa.array((us * scale).astype(np.int64) if scale != 1 else us, pa.int64()).cast(
            TS_TYPE
        )
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            return col.cast(TS_TYPE)
        except pa.ArrowInvalid:
            naive = col.cast(NAIVE_TS_TYPE)
            return naive.cast(pa.int64()).cast(TS_TYPE)
    raise InvalidValueError(f"cannot read timestamps of type {t}")


def _open_source(source: str, fmt: str | None, fs: Any) -> tuple[Any, str]:
    import pyarrow.dataset as ds

    info = fs.get_file_info(source)
    if info.type == pafs.FileType.NotFound:
        raise ExportError(f"{source} does not exist", hint="check the path or URI")
    if fmt is None:
        if info.type == pafs.FileType.File:
            fmt = format_from_suffix(source)
        else:
            found = fs.get_file_info(pafs.FileSelector(source, recursive=True))
            # Engines skip names starting with "_" or "." (staging leftovers, _SUCCESS ...).
            suffixes = {
                format_from_suffix(f.path)
                for f in found
                if f.type == pafs.FileType.File
                and not any(p[:1] in "_." for p in f.path[len(source) :].split("/") if p)
            }
            suffixes.discard(None)
            fmt = suffixes.pop() if len(suffixes) == 1 else None
        if fmt is None:
            raise InvalidArgumentError(
                f"cannot tell the format of {source!r}", hint="pass format= (parquet, csv ...)"
            )
    fmt = normalize_format(fmt)
    ds_format: Any = {"parquet": "parquet", "arrow": "ipc", "csv": "csv", "jsonl": "json"}[fmt]
    partitioning = None
    if info.type == pafs.FileType.Directory:
        partitioning = ds.partitioning(pa.schema([("key", pa.string())]), flavor="hive")
    try:
        dataset = ds.dataset(source, format=ds_format, filesystem=fs, partitioning=partitioning)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ExportError(f"cannot read {source} as {fmt}: {exc}") from exc
    return dataset, fmt


def _runs(kinds: np.ndarray) -> Iterator[tuple[int, int]]:
    if not len(kinds):
        return
    cuts = np.flatnonzero(kinds[1:] != kinds[:-1]) + 1
    bounds = [0, *cuts.tolist(), len(kinds)]
    yield from zip(bounds[:-1], bounds[1:])


def _value_runs(table: pa.Table) -> Iterator[tuple[pa.Array | None, int, int]]:
    """Runs of rows with one value type: (values or None for nulls, start, end)."""
    names = set(table.schema.names)
    wide = [c for c in VALUE_COLUMNS[1:] if c in names] + (["value"] if "value" in names else [])
    if not wide:
        raise InvalidValueError(
            f"no value column in {table.schema.names}",
            hint="columns must be key, ts, value (or the wide layout of an export)",
        )
    if wide == ["value"]:
        col = table.column("value").combine_chunks()
        if not col.null_count:
            yield col, 0, len(col)
            return
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        for lo, hi in _runs(valid):
            yield (col.slice(lo, hi - lo) if valid[lo] else None), lo, hi
        return
    cols = {c: table.column(c).combine_chunks() for c in wide}
    if "type" in names:
        # The layout names each row's type: trust it over which cells happen to be set
        # (CSV reads empty text cells as "" rather than null).
        by_type = {name: col for col, name in TYPE_NAMES.items()}
        kinds = table.column("type").cast(pa.string()).combine_chunks()
        kinds = kinds.to_numpy(zero_copy_only=False)
        for lo, hi in _runs(kinds):
            col = by_type.get(str(kinds[lo]))
            if col is None or col not in cols:
                yield None, lo, hi
                continue
            values = cols[col].slice(lo, hi - lo)
            yield _from_text(values, col), lo, hi
        return
    # No type column: the first column set in each row (exact int before its double copy).
    which = np.full(table.num_rows, -1, dtype=np.int64)
    for i, c in reversed(list(enumerate(wide))):
        valid = cols[c].is_valid().to_numpy(zero_copy_only=False)
        which[valid] = i
    for lo, hi in _runs(which):
        k = int(which[lo])
        yield (cols[wide[k]].slice(lo, hi - lo) if k >= 0 else None), lo, hi


def _from_text(values: pa.Array, col: str) -> pa.Array:
    """Bytes and vectors that a CSV / JSON export carried as base64 and JSON text."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return values
    if col == "bytes":
        return pa.array([base64.b64decode(v) for v in values.to_pylist()], pa.large_binary())
    if col == "vector":
        return pa.array([json.loads(v) for v in values.to_pylist()], pa.list_(pa.float32()))
    return values


def _stage_table(
    staged: list[tuple[str, Any, Any]], key: str, table: pa.Table, ts_unit: str
) -> int:
    """Add one key's rows to ``staged`` as ``(key, values, timestamps)`` batches (null
    values left out); returns how many nulls were left out."""
    ts = None
    if "ts" in table.schema.names:
        column = table.column("ts")
        if column.null_count:
            raise InvalidValueError(
                f"the ts column of key {key!r} holds {column.null_count} nulls",
                hint="every row needs a time (or leave the ts column out for 'now')",
            )
        ts = to_ts_column(column, ts_unit)
    nulls = 0
    for values, lo, hi in _value_runs(table):
        if values is None:
            nulls += hi - lo
            continue
        staged.append((key, values, None if ts is None else ts.slice(lo, hi - lo)))
    return nulls


def split_by_key(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """``(key, rows without the key column)`` for each key of a table, rows in table order."""
    keys = table.column("key")
    if keys.null_count:
        raise InvalidValueError(f"the key column holds {keys.null_count} nulls")
    encoded = keys.cast(pa.string()).combine_chunks().dictionary_encode()
    idx = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    rest = table.drop_columns(["key"])
    contiguous = bool((order == np.arange(len(order))).all())
    if not contiguous:
        rest = rest.take(pa.array(order))
    for lo, hi in _runs(sorted_idx):
        yield encoded.dictionary[int(sorted_idx[lo])].as_py(), rest.slice(lo, hi - lo)


def import_dataset(
    db: BatchSink,
    source: str | os.PathLike[str],
    format: str | None = None,
    *,
    key: str | None = None,
    ts_unit: str = "us",
    filesystem: Any = None,
    progress: bool | None = None,
) -> ImportResult:
    """Append the rows of a file or a (Hive-partitioned) dataset to ``db``.

    The source has columns ``key``, ``ts``, ``value`` (the key may come from ``key=...``
    directories, or from ``key=`` when a file holds one series), or the wide layout that
    :func:`export_dataset` writes for mixed types. The rows are read first and then appended
    in one all-or-nothing call (``append_batches``: bad input writes nothing), per key in file
    order with their timestamps; ``ts`` may be timestamps, ISO 8601 strings or numbers in
    ``ts_unit`` (``"s"``, ``"ms"``, ``"us"``, ``"ns"``) since the epoch, and is optional.
    Null values are skipped and counted (batch appends cannot carry them).

    >>> import synarrow
    >>> export_dataset(db, "copy-source/").rows
    4
    >>> with synarrow.SynaDB("copy.db") as fresh:
    ...     import_dataset(fresh, "copy-source/").rows
    4
    """
    if ts_unit not in ("s", "ms", "us", "ns"):
        raise InvalidArgumentError(f"ts_unit must be s, ms, us or ns, got {ts_unit!r}")
    started = time.perf_counter()
    fs, path = resolve_filesystem(source, filesystem)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory and not any(
        f.type == pafs.FileType.File
        for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
    ):
        return ImportResult(0, 0, 0, time.perf_counter() - started)  # an empty export
    dataset, _ = _open_source(path, format, fs)
    fragments = list(dataset.get_fragments())
    import pyarrow.dataset as ds

    seen: set[str] = set()
    nulls = 0
    staged: list[tuple[str, Any, Any]] = []
    bar = _bar(progress, len(fragments), "import")
    try:
        for fragment in fragments:
            table = fragment.to_table(schema=None)
            part_key = ds.get_partition_keys(fragment.partition_expression).get("key")
            groups: Iterable[tuple[str, pa.Table]]
            if "key" in table.schema.names:
                groups = split_by_key(table)
            elif part_key is not None or key is not None:
                groups = [(str(part_key if part_key is not None else key), table)]
            else:
                raise InvalidValueError(
                    f"{fragment.path} has no key column", hint="name the key with key=..."
                )
            for k, part in groups:
                nulls += _stage_table(staged, k, part, ts_unit)
                seen.add(k)
            bar.update(1)
        # One all-or-nothing write: every batch is checked before any is written.
        rows = db.append_batches(staged)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ExportError(f"cannot import {os.fspath(source)}: {exc}") from exc
    finally:
        bar.close()
    return ImportResult(len(seen), rows, nulls, time.perf_counter() - started)


def read_dataset(
    uri: str | os.PathLike[str], format: str = "parquet", filesystem: Any = None
) -> Any:
    """A ``pyarrow.dataset.Dataset`` over an export, with ``key`` read as a string.

    >>> export_dataset(db, "read-me/").rows
    4
    >>> import pyarrow.compute as pc
    >>> read_dataset("read-me/").to_table(filter=pc.field("key") == "sensor/1").num_rows
    1
    """
    import pyarrow.dataset as ds

    fmt = normalize_format(format, DATASET_FORMATS)
    fs, path = resolve_filesystem(uri, filesystem)
    return ds.dataset(
        path,
        format="parquet" if fmt == "parquet" else "ipc",
        filesystem=fs,
        partitioning=ds.partitioning(pa.schema([("key", pa.string())]), flavor="hive"),
    )


__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_LAYOUT_VERSION",
    "EXPORT_METADATA_KEY",
    "ExportError",
    "ExportResult",
    "ImportResult",
    "Layout",
    "conform",
    "delta_versions",
    "export_dataset",
    "export_file",
    "format_from_suffix",
    "import_dataset",
    "iter_export_tables",
    "json_lines",
    "json_value",
    "normalize_format",
    "partition_dir",
    "plan_layout",
    "read_dataset",
    "resolve_filesystem",
    "split_by_key",
    "text_schema",
    "to_text_table",
    "to_ts_column",
]

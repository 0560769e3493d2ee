"""Snapshots as versions of a Delta Lake table, written incrementally (the ``deltalake`` package).

``db.export_dataset(uri, format="delta", snapshot=tag)`` commits the tag as ONE new version
of the Delta table at ``uri``, so Spark, Trino, DuckDB, polars, Ray and Dask read each tagged
version by its table version (``versionAsOf``); :func:`delta_versions` maps tags to versions::

    >>> import polars as pl                                             # doctest: +SKIP
    >>> pl.read_delta("lake/", version=delta_versions("lake/")["v1"])   # doctest: +SKIP

Delta Lake rather than Iceberg: ``deltalake`` writes and reads a table from Arrow on its own,
with no catalog service, and a commit carries free-form metadata, which is where the tag lives.

**Table schema** (the export layout of :mod:`synarrow.layout`, cast only where Delta needs it)::

    key        string      (the partition column with partition_by="key")
    ts         timestamp   (microseconds, UTC)
    value      double      floats, and ints as doubles
    int_value  long        exact ints
    text       string
    bytes      binary
    vector     array<float>  (Delta has no fixed-size list: the dimension is not kept)
    type       string      the row's atom type (Arrow: dictionary-encoded when written)

**Incremental**: every commit records, in its commit metadata, ``synarrow.tag``,
``synarrow.database`` (the database's absolute path), ``synarrow.fingerprint`` (the tag's
creation moment, generation and sizes) and ``synarrow.base`` (the table version it read).
The next export finds the last exported tag there, asks :meth:`SynaDB.diff_snapshots` which
keys were added, changed or removed (keys whose stored slices are the same are compared
without reading their data) and commits one version that replaces exactly those keys (an
overwrite with a ``key IN (...)`` predicate: with ``partition_by="key"`` only those keys'
partitions are removed and written; without partitions, delta-rs rewrites the files that
hold any of them). It falls back to a full overwrite commit, saying why in the result, when
the previous tag was dropped (or made again), the last data commit came from another writer
or another database, another writer committed while the last export was written, or more
than half of the keys (or more than :data:`MAX_INCREMENTAL_KEYS`) changed. Data-preserving
commits of other writers (``OPTIMIZE``, ``VACUUM``, table properties) are looked through.
Exporting the tag the table already holds commits nothing. A new table is written in a
hidden directory beside ``uri`` and renamed into place.

A commit is atomic: a failed or killed export leaves the table at its previous version
(uncommitted data files are invisible; ``DeltaTable.vacuum`` removes them). Only local
directories (and ``file://`` URIs) are supported.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from synarrow.engine.snapshot import ReadSnapshot
from synarrow.errors import ExportError, InvalidArgumentError, SnapshotNotFoundError, SynaError
from synarrow.fileio import fsync_directory
from synarrow.layout import EXPORT_LAYOUT_VERSION, TYPE_TYPE, Layout, conform, key_array
from synarrow.optional import progress, require
from synarrow.reading import history

__all__ = [
    "DELTA_SCHEMA",
    "MAX_INCREMENTAL_KEYS",
    "DeltaCommit",
    "TaggedSource",
    "delta_schema",
    "delta_versions",
    "export_delta",
    "full_rewrite_reason",
]

#: Commit metadata keys of a synarrow commit.
TAG_KEY = "synarrow.tag"
DATABASE_KEY = "synarrow.database"
FINGERPRINT_KEY = "synarrow.fingerprint"
LAYOUT_KEY = "synarrow.layout"
MODE_KEY = "synarrow.mode"
#: The table version a commit was based on (``-1``: a new table).
BASE_KEY = "synarrow.base"
# Operations of other writers that keep the table's rows as they are.
_PRESERVING = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES"})
_HISTORY_LOOKBACK = 64
#: Most keys an incremental commit replaces: its predicate names each (delta-rs was checked
#: with 10,000); beyond, a full overwrite is committed.
MAX_INCREMENTAL_KEYS = 10_000
#: In the name of the hidden directory a new table is written in before it is renamed.
STAGING_MARK = ".synarrow-staging-"
# A directory name is at most 255 bytes; Delta percent-escapes every byte but A-Z a-z 0-9 -._~
_MAX_SEGMENT_BYTES = 255
_SLICE_ROWS = 1 << 20
_CODECS = {None: "UNCOMPRESSED", "none": "UNCOMPRESSED", "snappy": "SNAPPY", "gzip": "GZIP"}
_CODECS.update({"zstd": "ZSTD", "lz4": "LZ4_RAW", "brotli": "BROTLI"})


def delta_schema() -> pa.Schema:
    """The Arrow schema of the rows written to a Delta table (see the module docstring)."""
    return pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("ts", pa.timestamp("us", "UTC"), nullable=False),
            pa.field("value", pa.float64()),
            pa.field("int_value", pa.int64()),
            pa.field("text", pa.string()),
            pa.field("bytes", pa.binary()),
            pa.field("vector", pa.list_(pa.float32())),
            pa.field("type", TYPE_TYPE, nullable=False),
        ]
    )


#: :func:`delta_schema`, built once.
DELTA_SCHEMA = delta_schema()


class TaggedSource(Protocol):
    """A snapshot handle (``SynaDB(path, snapshot=tag)``) as the Delta export uses it."""

    @property
    def path(self) -> Path:
        """The database directory."""

    @property
    def tag(self) -> str | None:
        """The tag it reads."""

    def read_snapshot(self) -> ReadSnapshot:
        """Every key as of the tag."""

    def snapshots(self) -> Sequence[Any]:
        """The database's tags (:class:`~synarrow.snapshots.SnapshotInfo`)."""

    def diff_snapshots(self, a: str | None, b: str | None = None) -> Any:
        """What changed from tag ``a`` to tag ``b`` (:class:`~synarrow.snapshots.SnapshotDiff`)."""


@dataclass(frozen=True)
class DeltaCommit:
    """What one Delta export did."""

    version: int
    """The table version that holds the tag (the new one, or the existing one if unchanged)."""
    mode: str
    """``"full"`` (every key written), ``"incremental"`` (only changed keys) or
    ``"unchanged"`` (the table already held this tag: nothing committed)."""
    reason: str | None
    """Why a full overwrite was committed (``None`` for a new table or incremental)."""
    keys: int
    """Keys the table holds at :attr:`version`."""
    keys_written: int
    """Keys whose rows this commit wrote (added or changed ones when incremental)."""
    keys_removed: int
    """Keys whose rows this commit removed without writing them again."""
    rows: int
    """Rows this commit wrote."""
    files: int
    """Data files this commit added."""
    previous: str | None
    """The tag the table held before (``None``: a new table, or not written by synarrow)."""


# -- tags and versions ---------------------------------------------------------------------


def _local_path(uri: str | os.PathLike[str]) -> str:
    text = os.fspath(uri)
    if text.startswith("file://"):
        text = urllib.parse.unquote(text[len("file://") :])
    else:
        scheme, sep, _ = text.partition("://")
        if sep and scheme.isidentifier() and len(scheme) > 1:
            raise InvalidArgumentError(
                f"Delta export writes local directories only, got {text!r}",
                hint="export to a local path (or a file:// URI) and copy the table",
            )
    return os.path.abspath(os.path.expanduser(text))


def _open_table(path: str, version: int | None = None) -> Any:
    deltalake = require("deltalake")
    try:
        return deltalake.DeltaTable(path, version=version)
    except Exception as exc:  # delta-rs raises its own TableNotFoundError / DeltaError
        raise ExportError(f"cannot read the Delta table {path}: {exc}") from exc


def delta_versions(uri: str | os.PathLike[str]) -> dict[str, int]:
    """Tag -> Delta table version of every synarrow export into the table at ``uri``.

    Read a tag with any Delta reader by that version: ``polars.read_delta(uri, version=v)``,
    ``deltalake.DeltaTable(uri, version=v)``, Spark ``.option("versionAsOf", v)``, DuckDB
    ``delta_scan`` ... A tag exported more than once maps to its latest version.
    """
    path = _local_path(uri)
    table = _open_table(path)
    found: dict[str, int] = {}
    for commit in sorted(table.history(), key=lambda c: int(c.get("version", -1))):
        tag = commit.get(TAG_KEY)
        if isinstance(tag, str) and "version" in commit:
            found[tag] = int(commit["version"])
    return found


def _fingerprint(info: Any) -> str:
    """What tells one making of a tag from another of the same name (a dropped and re-made
    tag has another creation moment)."""
    text = f"{info.tag}|{info.created.isoformat()}|{info.generation}|{info.keys}|{info.entries}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Last:
    """The last data commit of a table, as far as synarrow can tell."""

    tag: str | None
    database: str | None
    fingerprint: str | None
    layout: str | None
    version: int
    interleaved: bool = False
    """Whether another writer changed rows between the version this commit was based on
    and the commit itself (a concurrent writer's append survives a predicate overwrite)."""


def _last_commit(table: Any) -> _Last | None:
    """The newest commit that changed rows (others' data-preserving commits skipped)."""
    commits = sorted(table.history(_HISTORY_LOOKBACK), key=lambda c: -int(c.get("version", -1)))
    for i, commit in enumerate(commits):
        if commit.get(TAG_KEY) is None and commit.get("operation") in _PRESERVING:
            continue
        version = int(commit.get("version", table.version()))
        base = commit.get(BASE_KEY)
        older = {int(c.get("version", -1)): c for c in commits[i + 1 :]}
        interleaved = isinstance(base, str) and any(
            older.get(v) is None or older[v].get("operation") not in _PRESERVING
            for v in range(int(base) + 1, version)
        )
        return _Last(
            commit.get(TAG_KEY),
            commit.get(DATABASE_KEY),
            commit.get(FINGERPRINT_KEY),
            commit.get(LAYOUT_KEY),
            version,
            interleaved,
        )
    return None


def full_rewrite_reason(last: Any, tags: Mapping[str, str], database: str) -> str | None:
    """Why the table cannot be updated incrementally from its last commit (``None``: it can).

    ``last``: the last data commit (``tag``, ``database``, ``fingerprint``, ``layout``);
    ``tags``: the database's tags and their fingerprints.
    """
    if last is None or last.tag is None:
        return "the last commit was not written by synarrow"
    if last.interleaved:
        return "another writer committed while the last export was written"
    if last.database != database:
        return f"the last commit came from another database ({last.database})"
    if last.layout != str(EXPORT_LAYOUT_VERSION):
        return f"the last commit has export layout {last.layout}, not {EXPORT_LAYOUT_VERSION}"
    if last.tag not in tags:
        return f"the previous tag {last.tag!r} was dropped"
    if tags[last.tag] != last.fingerprint:
        return f"the previous tag {last.tag!r} was dropped and made again"
    return None


# -- the target ----------------------------------------------------------------------------


def _check_target(path: str, database: Path) -> bool:
    """Whether a Delta table exists at ``path``; refuses anything else that is not empty."""
    deltalake = require("deltalake")
    real, db_real = os.path.realpath(path), os.path.realpath(database)
    if real == db_real or real.startswith(db_real.rstrip("/") + "/"):
        raise ExportError(
            f"{path} is inside the database {database}; an export never writes into it",
            hint="export to a directory outside the database",
        )
    if db_real.startswith(real.rstrip("/") + "/"):
        raise ExportError(f"{path} holds the database {database}", hint="export elsewhere")
    if not os.path.exists(path):
        return False
    if not os.path.isdir(path):
        raise ExportError(f"{path} exists and is not a directory", hint="export elsewhere")
    if deltalake.DeltaTable.is_deltatable(path):
        return True
    if os.listdir(path):
        raise ExportError(
            f"{path} is not empty and holds no Delta table; nothing was written",
            hint="export to a new or empty directory, or to an earlier Delta export",
        )
    return False


def _check_table(table: Any, path: str, partition_by: str | None) -> None:
    deltalake = require("deltalake")
    want = deltalake.Schema.from_arrow(DELTA_SCHEMA)
    have = [(f.name, str(f.type)) for f in table.schema().fields]
    if have != [(f.name, str(f.type)) for f in want.fields]:
        raise ExportError(
            f"the Delta table {path} has columns {[n for n, _ in have]}, not a synarrow "
            "export's; nothing was written",
            hint="export to a new directory",
        )
    parts = list(table.metadata().partition_columns)
    expected = ["key"] if partition_by == "key" else []
    if parts != expected:
        raise ExportError(
            f"the Delta table {path} is partitioned by {parts or 'nothing'}, "
            f"the export asks for partition_by={partition_by!r}",
            hint=f"pass partition_by={'key' if parts == ['key'] else None!r}",
        )


def _check_partition_key(key: str) -> None:
    if key == "__HIVE_DEFAULT_PARTITION__":
        raise InvalidArgumentError(
            f"the key {key!r} is the name Delta readers (polars, Spark) read as a null partition",
            hint="export with partition_by=None (files with a key column)",
        )
    segment = "key=" + urllib.parse.quote(key, safe="")
    if len(segment.encode()) > _MAX_SEGMENT_BYTES:
        raise InvalidArgumentError(
            f"key {key[:40]!r}... is too long for a Delta partition directory once escaped "
            f"({_MAX_SEGMENT_BYTES} bytes at most)",
            hint="export with partition_by=None (files with a key column)",
        )


# -- writing -------------------------------------------------------------------------------


def _batches(
    snapshot: ReadSnapshot, keys: Sequence[str], counts: list[int], bar: Any
) -> Iterator[Any]:
    """Each key's history as record batches of :data:`DELTA_SCHEMA` (rows added to counts)."""
    layout = Layout()  # the variable-size vector: Delta has no fixed-size list
    for key in keys:
        bar.update(1)
        table = history(snapshot.keys[key])
        for lo in range(0, max(table.num_rows, 1), _SLICE_ROWS):
            part = conform(table.slice(lo, _SLICE_ROWS), layout)
            if not part.num_rows:
                continue
            part = part.add_column(0, "key", key_array(key, part.num_rows))
            counts[0] += part.num_rows
            yield from part.cast(DELTA_SCHEMA).combine_chunks().to_batches()


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _predicate(keys: Sequence[str]) -> str:
    return '"key" IN (' + ", ".join(_sql_string(k) for k in keys) + ")"


def _added_files(path: str, version: int) -> int:
    import json

    log = Path(path) / "_delta_log" / f"{version:020d}.json"
    try:
        lines = log.read_text("utf-8").splitlines()
    except OSError:
        return 0
    return sum(1 for line in lines if line.strip() and "add" in json.loads(line))


def export_delta(
    db: TaggedSource,
    uri: str | os.PathLike[str],
    *,
    partition_by: str | None = "key",
    compression: str | None = "snappy",
    show_progress: bool | None = None,
) -> DeltaCommit:
    """Commit the tag ``db`` reads as one new version of the Delta table at ``uri``.

    ``db`` is a snapshot handle (``SynaDB(path, snapshot=tag)``); ``db.export_dataset(uri,
    format="delta", snapshot=tag)`` opens it. See the module docstring for the schema, the
    incremental commits and when they fall back to a full overwrite.

    Raises:
        InvalidArgumentError: no tag, a bad option or a key that cannot be a partition.
        ExportError: ``uri`` is not empty and no Delta table, the table is not a synarrow
            export (other columns or partitioning), or writing failed (the table then stays
            at its previous version).
    """
    deltalake = require("deltalake")
    tag = db.tag
    if tag is None:
        raise InvalidArgumentError(
            "a Delta export needs a snapshot tag: a table version maps to an immutable tag",
            hint="db.snapshot('v1') and export_dataset(uri, format='delta', snapshot='v1')",
        )
    if partition_by not in ("key", None):
        raise InvalidArgumentError(f"partition_by must be 'key' or None, got {partition_by!r}")
    codec = compression.lower() if isinstance(compression, str) else compression
    if codec not in _CODECS:
        raise InvalidArgumentError(
            f"unknown Parquet compression {compression!r} for a Delta export",
            hint=f"one of {', '.join(str(c) for c in _CODECS)}",
        )
    path = _local_path(uri)
    database = os.path.realpath(db.path)
    infos = {i.tag: _fingerprint(i) for i in db.snapshots()}
    if tag not in infos:
        raise SnapshotNotFoundError(f"no snapshot {tag!r} in {db.path}")
    snapshot = db.read_snapshot()
    keys = sorted(snapshot.keys)
    table = _open_table(path) if _check_target(path, db.path) else None
    last: _Last | None = None
    reason: str | None = None
    touched: list[str] = []
    write_keys = keys
    if table is not None:
        _check_table(table, path, partition_by)
        last = _last_commit(table)
        reason = full_rewrite_reason(last, infos, database)
        if reason is None and last is not None and last.tag == tag:
            return DeltaCommit(last.version, "unchanged", None, len(keys), 0, 0, 0, 0, tag)
        if reason is None and last is not None:
            diff = db.diff_snapshots(last.tag, tag)
            touched = sorted(set(diff.added) | set(diff.changed) | set(diff.removed))
            if len(touched) > max(1, len(set(keys) | set(diff.removed)) // 2):
                reason = f"{len(touched)} keys changed, more than half"
            elif len(touched) > MAX_INCREMENTAL_KEYS:
                reason = f"{len(touched)} keys changed, more than {MAX_INCREMENTAL_KEYS}"
            else:
                write_keys = sorted(set(diff.added) | set(diff.changed))
    incremental = table is not None and reason is None
    if partition_by == "key":
        for key in write_keys:  # the others are in the table already
            _check_partition_key(key)
    mode = "incremental" if incremental else "full"
    metadata = {
        TAG_KEY: tag,
        DATABASE_KEY: database,
        FINGERPRINT_KEY: infos[tag],
        LAYOUT_KEY: str(EXPORT_LAYOUT_VERSION),
        MODE_KEY: mode,
        BASE_KEY: str(table.version() if table is not None else -1),
    }
    counts = [0]
    options: dict[str, Any] = {
        "mode": "overwrite",
        "partition_by": ["key"] if partition_by == "key" else None,
        "writer_properties": deltalake.WriterProperties(compression=_CODECS[codec]),
        "commit_properties": deltalake.CommitProperties(custom_metadata=metadata),
    }
    if incremental:
        options["predicate"] = _predicate(touched) if touched else "false"
    bar = progress(total=len(write_keys), desc="export", enabled=show_progress)
    reader = pa.RecordBatchReader.from_batches(
        DELTA_SCHEMA, _batches(snapshot, write_keys, counts, bar)
    )
    try:
        if table is not None:
            deltalake.write_deltalake(table, reader, **options)
        else:
            _create(path, reader, options)
    except SynaError:
        raise
    except Exception as exc:
        raise ExportError(
            f"exporting {tag!r} to the Delta table {path} failed; the table is as it was: {exc}"
        ) from exc
    finally:
        bar.close()
    # write_deltalake moves the table it was given to the new version.
    version = table.version() if table is not None else 0
    return DeltaCommit(
        version=version,
        mode=mode,
        reason=reason if table is not None else None,
        keys=len(keys),
        keys_written=len(write_keys),
        keys_removed=len(set(touched) - set(write_keys)) if incremental else 0,
        rows=counts[0],
        files=_added_files(path, version),
        previous=last.tag if last is not None else None,
    )


def _create(path: str, reader: Any, options: dict[str, Any]) -> None:
    """Write a new table beside ``path`` and rename it into place, so that a failed or
    killed first export leaves no directory at ``path`` (only a hidden staging one beside
    it). A Delta table holds relative paths only: it can be renamed."""
    deltalake = require("deltalake")
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{name}{STAGING_MARK}{secrets.token_hex(8)}")
    try:
        deltalake.write_deltalake(staging, reader, **options)
        os.rename(staging, path)  # over an empty directory too; refused if it filled up
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_directory(parent)

"""The metadata of a vector store's documents: Arrow columns beside the vectors.

Every document (a key holding a vector) may carry a flat record of named fields. The store
keeps them

* durably, in the database log under :data:`LOG_KEY`: each ``insert`` / ``insert_batch``
  appends one entry, an Arrow IPC stream of the batch's rows (``__key``, ``__fp``: the
  fingerprint of the vector the row belongs to, and the fields, if any), at the vectors'
  timestamp.
  A row applies to a key only while the key's vector has that fingerprint, so a vector
  rewritten without metadata (through ``store.db``, or after a crash between the two
  entries) never shows a stale record;
* in memory as :class:`MetadataColumns`, rows by usearch label, which the store saves with
  its index checkpoint and filters with DuckDB.

Field types (the Arrow type each is stored as): booleans (``bool``), integers (``int64``),
floats (``float64``), strings (``string``), timestamps (``timestamp[us, UTC]``; naive
datetimes are taken as UTC, as everywhere in synarrow), dates (``date32``) and lists of
strings (``list<string>``). A field is schema free per row (absent from a row means null) but
has one type across the store: an integer field given floats becomes ``float64``, a field
given another kind of value is refused (:class:`~synarrow.errors.InvalidValueError`).

>>> table = normalize([{"tag": "news", "year": 2024}, None], 2)
>>> table.schema.types
[DataType(string), DataType(int64)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synarrow.errors import CorruptionError, InvalidValueError

__all__ = [
    "DAMAGED_LOG_HINT",
    "LOG_KEY",
    "RESERVED",
    "TS_TYPE",
    "MetadataColumns",
    "decode_entry",
    "encode_entry",
    "normalize",
    "row_dicts",
]

#: The database key whose history holds the metadata entries (its values are bytes, so it
#: is never a document of the store).
LOG_KEY = "__synarrow__/vector_metadata"
#: Names a field may not have (in any case): the columns results and SQL views add.
RESERVED = frozenset({"key", "vector", "score", "inserted_at", "query"})
TS_TYPE = pa.timestamp("us", tz="UTC")
LIST_TYPE = pa.list_(pa.string())
_MAX_NAME = 256
#: What to do about a damaged metadata log entry.
DAMAGED_LOG_HINT = (
    f"restore the database from a backup, or remove the damaged entries of {LOG_KEY!r} with "
    "store.db.delete_range (records of the documents they held are then lost)"
)
_HINT = "use numbers, strings, booleans, timestamps, dates or lists of strings"


# -- input -----------------------------------------------------------------------------------


def normalize(metadata: Any, count: int) -> pa.Table | None:
    """``metadata`` for ``count`` documents as a table of storage types (or ``None``).

    Takes a sequence of ``count`` dicts (``None`` for a document without metadata), a pandas
    or polars DataFrame, an Arrow table or record batch, or a dict of ``count``-long
    columns. Raises :class:`~synarrow.errors.InvalidValueError` naming the problem.
    """
    if metadata is None:
        return None
    table, rows = _as_table(metadata)
    if rows != count:
        raise InvalidValueError(
            f"metadata has {rows} rows for {count} vectors: give one per vector"
        )
    if table is None:
        return None
    seen: dict[str, str] = {}
    columns = []
    names = []
    for name, column in zip(table.column_names, table.columns):
        check_field_name(name)
        folded = name.casefold()
        if folded in seen:
            raise InvalidValueError(
                f"metadata fields {seen[folded]!r} and {name!r} differ only in case "
                "(SQL names are case-insensitive)"
            )
        seen[folded] = name
        names.append(name)
        columns.append(_to_storage(name, column))
    return pa.Table.from_arrays(columns, names=names) if names else None


def check_field_name(name: object) -> str:
    """A metadata field name: a non-empty str, not reserved, not starting with ``__``."""
    if not isinstance(name, str) or not name:
        raise InvalidValueError(f"metadata field names must be non-empty str, got {name!r:.60}")
    if len(name) > _MAX_NAME:
        raise InvalidValueError(f"metadata field name of {len(name)} chars is over {_MAX_NAME}")
    if name.startswith("__") or name.casefold() in RESERVED:
        raise InvalidValueError(
            f"metadata field name {name!r} is reserved",
            hint=f"{', '.join(sorted(RESERVED))} and names starting with '__' are taken",
        )
    if any(ord(c) < 32 for c in name):
        raise InvalidValueError(f"metadata field name {name!r} holds control characters")
    return name


def _as_table(metadata: Any) -> tuple[pa.Table | None, int]:
    """The metadata as a table (``None`` when it names no field) and its row count."""
    table: pa.Table | None = None
    if isinstance(metadata, pa.RecordBatch):
        table = pa.Table.from_batches([metadata])
    elif isinstance(metadata, pa.Table):
        table = metadata
    elif type(metadata).__module__.split(".")[0] == "pandas" and hasattr(metadata, "columns"):
        try:
            table = pa.Table.from_pandas(metadata, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InvalidValueError(f"metadata frame cannot be read as Arrow: {exc}") from exc
    elif type(metadata).__module__.split(".")[0] == "polars" and hasattr(metadata, "to_arrow"):
        table = metadata.to_arrow()
    elif isinstance(metadata, Mapping):
        columns = {}
        for name, values in metadata.items():
            check_field_name(name)
            columns[name] = _column(name, values)
        lengths = {len(c) for c in columns.values()}
        if len(lengths) > 1:
            raise InvalidValueError(f"metadata columns differ in length: {sorted(lengths)}")
        if not columns:
            raise InvalidValueError("metadata as a dict of columns names no column")
        table = pa.table(columns)
    if table is not None:
        return (table if table.num_columns else None), table.num_rows
    if isinstance(metadata, (str, bytes)) or not isinstance(metadata, Sequence):
        raise InvalidValueError(
            f"metadata must be a list of dicts, a DataFrame or an Arrow table, got "
            f"{type(metadata).__name__}"
        )
    rows = list(metadata)
    order: dict[str, None] = {}
    for i, row in enumerate(rows):
        if row is None:
            continue
        if not isinstance(row, Mapping):
            raise InvalidValueError(
                f"metadata row {i} is a {type(row).__name__}, not a dict (or None)"
            )
        for name in row:
            if name not in order:
                check_field_name(name)
                order[name] = None
    columns = {
        name: _column(name, [None if row is None else row.get(name) for row in rows])
        for name in order
    }
    return (pa.table(columns) if columns else None), len(rows)


def _column(name: str, values: Any) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, np.ndarray):
        values = values.tolist() if values.dtype == object else values
    try:
        return pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise InvalidValueError(
            f"metadata field {name!r} holds values of mixed or unsupported types: {exc}",
            hint=_HINT,
        ) from exc


def storage_type(name: str, type_: pa.DataType) -> pa.DataType:
    """The type a field of Arrow type ``type_`` is stored as (or InvalidValueError)."""
    t = type_
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        return pa.null()
    if pa.types.is_boolean(t):
        return pa.bool_()
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_floating(t):
        return pa.float64()
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_timestamp(t):
        return TS_TYPE
    if pa.types.is_date(t):
        return pa.date32()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        inner = t.value_type
        if pa.types.is_null(inner) or storage_type(name, inner) == pa.string():
            return LIST_TYPE
    raise InvalidValueError(
        f"metadata field {name!r} has type {type_}, which a vector store cannot hold",
        hint=_HINT,
    )


def _to_storage(name: str, column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    target = storage_type(name, column.type)
    if column.type == target:
        return column
    try:
        if pa.types.is_timestamp(column.type) and column.type.tz is None:
            column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))
        # Timestamps finer than microseconds are truncated, as the log stores microseconds.
        safe = not pa.types.is_timestamp(target)
        return pc.cast(column, target, safe=safe)
    except (pa.ArrowException, OverflowError) as exc:
        raise InvalidValueError(f"metadata field {name!r} does not fit {target}: {exc}") from exc


# -- the log entries ---------------------------------------------------------------------------


def encode_entry(
    keys: Sequence[str],
    fingerprints: np.ndarray,
    table: pa.Table | None,
    times: np.ndarray | None = None,
) -> bytes:
    """One log entry: the rows of ``table`` (or empty records) for ``keys``, as Arrow IPC.

    ``times``: each row's insert time (int64 microseconds), when it is not the entry's own
    timestamp (a consolidated entry written by ``compact()``).
    """
    arrays = [pa.array(keys, pa.string()), pa.array(fingerprints, pa.uint64())]
    names = ["__key", "__fp"]
    if times is not None:
        arrays.append(pa.array(np.asarray(times, np.int64), pa.int64()))
        names.append("__ts")
    if table is not None:
        arrays.extend(table.columns)
        names.extend(table.column_names)
    batch = pa.Table.from_arrays(arrays, names=names).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_table(batch)
    return sink.getvalue().to_pybytes()


def decode_entry(
    data: bytes, where: str
) -> tuple[list[str], np.ndarray, pa.Table, np.ndarray | None]:
    """``(keys, fingerprints, fields, insert times or None)`` of a log entry;
    CorruptionError if it is not one."""
    try:
        table = pa.ipc.open_stream(pa.BufferReader(data)).read_all()
        table.validate(full=True)
        keys = table.column("__key")
        fps = table.column("__fp")
        if keys.type != pa.string() or fps.type != pa.uint64():
            raise ValueError("bad __key / __fp types")
        if keys.null_count or fps.null_count:
            raise ValueError("null keys or fingerprints")
        times = None
        if "__ts" in table.column_names:
            column = table.column("__ts")
            if column.type != pa.int64() or column.null_count:
                raise ValueError("bad __ts column")
            times = column.to_numpy()
            table = table.drop_columns(["__ts"])
        fields = table.drop_columns(["__key", "__fp"])
        _require_distinct(fields.column_names)
        for name, column in zip(fields.column_names, fields.columns):
            check_field_name(name)
            if storage_type(name, column.type) != column.type:
                raise ValueError(f"field {name!r} has type {column.type}")
    except (pa.ArrowException, ValueError, KeyError, TypeError) as exc:
        raise CorruptionError(
            f"vector metadata entry {where} is damaged: {exc}", hint=DAMAGED_LOG_HINT
        ) from exc
    return keys.to_pylist(), fps.to_numpy(), fields.combine_chunks(), times


# -- in memory ---------------------------------------------------------------------------------


class MetadataColumns:
    """The metadata rows of a store's documents, by label (see the module docs).

    Rows live in appended chunks; ``row_of[label]`` is the global row of a label's current
    record (-1: none). Replaced rows stay in their chunk until the dead rows outnumber the
    live ones, when the chunks are rewritten as one.
    """

    def __init__(self) -> None:
        self._types: dict[str, pa.DataType] = {}
        self._chunks: list[pa.Table] = []
        self._rows = 0
        self._row_of = np.full(0, -1, np.int64)
        self._live = 0
        self._combined: pa.Table | None = None
        self.version = 0
        """Grows with every change (callers cache derived tables by it)."""

    # -- reading ----------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether any field is known."""
        return bool(self._types)

    @property
    def schema(self) -> pa.Schema:
        """The fields and their storage types."""
        return pa.schema([pa.field(n, t) for n, t in self._types.items()])

    def __len__(self) -> int:
        """Documents holding a record."""
        return self._live

    def labels(self) -> np.ndarray:
        """The labels holding a record (int64, ascending)."""
        return np.flatnonzero(self._row_of >= 0)

    def has(self, label: int) -> bool:
        """Whether ``label`` holds a record."""
        return 0 <= label < len(self._row_of) and self._row_of[label] >= 0

    def rows(self, labels: np.ndarray) -> pa.Table:
        """The records of ``labels`` in order, every field (null where absent; a negative
        label has none)."""
        labels = np.asarray(labels, dtype=np.int64)
        idx = np.full(len(labels), -1, np.int64)
        inside = (labels >= 0) & (labels < len(self._row_of))
        idx[inside] = self._row_of[labels[inside]]
        return self._all().take(pa.array(idx, mask=idx < 0))

    def records(self, labels: np.ndarray) -> list[dict[str, Any]]:
        """The records of ``labels`` as dicts without their null fields (``{}``: none)."""
        if not self._types:
            return [{} for _ in range(len(labels))]
        return row_dicts(self.rows(labels))

    def _all(self) -> pa.Table:
        if self._combined is None:
            schema = self.schema
            parts = [_widen(chunk.drop_columns(["__label"]), schema) for chunk in self._chunks]
            self._combined = (
                pa.concat_tables(parts).combine_chunks() if parts else schema.empty_table()
            )
        return self._combined

    # -- changing ---------------------------------------------------------------------------

    def conform(self, table: pa.Table) -> tuple[pa.Table, dict[str, pa.DataType]]:
        """``table`` cast to the store's field types, and the type changes it needs.

        Nothing changes here: :meth:`set` applies both. Raises InvalidValueError when a
        field's values do not fit its type.
        """
        changes: dict[str, pa.DataType] = {}
        columns = []
        folded = {n.casefold(): n for n in self._types}
        for name, column in zip(table.column_names, table.columns):
            other = folded.get(name.casefold())
            if other is not None and other != name:
                raise InvalidValueError(
                    f"metadata field {name!r} differs only in case from the store's {other!r}"
                )
            have = self._types.get(name)
            new = column.type
            if have is None or have == new or pa.types.is_null(have):
                if have is None or pa.types.is_null(have):
                    if not pa.types.is_null(new) or have is None:
                        changes[name] = new
                columns.append(column)
            elif pa.types.is_null(new):
                columns.append(pa.nulls(len(column), have))
            elif have == pa.float64() and new == pa.int64():
                columns.append(_exact_floats(name, column))
            elif have == pa.int64() and new == pa.float64():
                # Every live integer of the field must stay exact as a float64.
                live = self.rows(self.labels()).column(name)
                _exact_floats(name, live, stored=True)
                changes[name] = pa.float64()
                columns.append(column)
            else:
                raise InvalidValueError(
                    f"metadata field {name!r} holds {have} values in this store, got {new}",
                    hint="give the field values of one kind, or use another field name",
                )
        return pa.Table.from_arrays(columns, names=table.column_names), changes

    def set(self, labels: np.ndarray, table: pa.Table | None) -> None:
        """Give ``labels`` the rows of ``table`` (``None``: no record); distinct labels."""
        labels = np.asarray(labels, dtype=np.int64)
        if not len(labels):
            return
        self._grow(int(labels.max()) + 1)
        old = self._row_of[labels]
        self._live -= int(np.count_nonzero(old >= 0))
        if table is None or not table.num_columns:
            self._row_of[labels] = -1
        else:
            table, changes = self.conform(table)
            self._types.update(changes)
            chunk = table.append_column("__label", pa.array(labels.astype(np.uint64)))
            self._chunks.append(chunk)
            self._row_of[labels] = np.arange(self._rows, self._rows + len(labels))
            self._rows += len(labels)
            self._live += len(labels)
        self._changed()

    def remove(self, labels: np.ndarray) -> None:
        """Forget the records of ``labels`` (unknown ones are ignored)."""
        labels = np.asarray(labels, dtype=np.int64)
        labels = labels[labels < len(self._row_of)]
        if not len(labels):
            return
        self._live -= int(np.count_nonzero(self._row_of[labels] >= 0))
        self._row_of[labels] = -1
        self._changed()

    def clear(self) -> None:
        """Forget every record and field."""
        self.__init__()  # type: ignore[misc]

    def _changed(self) -> None:
        self.version += 1
        self._combined = None
        if self._rows > 2 * self._live + 4096:
            self._consolidate()

    def _consolidate(self) -> None:
        live = np.flatnonzero(self._row_of >= 0)
        table = self.rows(live)
        self._chunks = [table.append_column("__label", pa.array(live.astype(np.uint64)))]
        self._row_of[live] = np.arange(len(live))
        self._rows = len(live)
        self._combined = None
        # Fields no live record holds any more are forgotten with their type.
        self._types = {
            n: t for n, t in self._types.items() if table.column(n).null_count < len(live)
        }
        if not self._types:
            self._chunks, self._rows = [], 0
            self._row_of[:] = -1
            self._live = 0

    def _grow(self, n: int) -> None:
        if n > len(self._row_of):
            bigger = np.full(max(n, 2 * len(self._row_of)), -1, np.int64)
            bigger[: len(self._row_of)] = self._row_of
            self._row_of = bigger

    # -- persistence ------------------------------------------------------------------------

    def to_arrow(self) -> pa.Table:
        """The live records with their ``__label`` (uint64), for a checkpoint."""
        live = np.flatnonzero(self._row_of >= 0)
        return self.rows(live).append_column("__label", pa.array(live.astype(np.uint64)))

    @classmethod
    def from_arrow(cls, table: pa.Table) -> MetadataColumns:
        """Records saved by :meth:`to_arrow`; ValueError if the table is not such a table."""
        out = cls()
        labels = table.column("__label")
        if labels.type != pa.uint64() or labels.null_count:
            raise ValueError("bad __label column")
        fields = table.drop_columns(["__label"])
        _require_distinct(fields.column_names)
        for name, column in zip(fields.column_names, fields.columns):
            try:
                check_field_name(name)
                ok = storage_type(name, column.type) == column.type
            except InvalidValueError as exc:
                raise ValueError(str(exc)) from exc
            if not ok:
                raise ValueError(f"field {name!r} has type {column.type}")
        values = labels.to_numpy()
        if len(np.unique(values)) != len(values):
            raise ValueError("duplicate labels")
        out._types = {f.name: f.type for f in fields.schema}
        if len(values) and out._types:
            out.set(values, fields.combine_chunks())
        return out

    def fold(
        self,
        entries: Iterable[tuple[list[str], np.ndarray, pa.Table]],
        current: Mapping[str, tuple[int, int]],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rebuild every record from log entries (oldest first, in the order written).

        ``current``: key -> (label, fingerprint of its vector now). A key's record is its
        newest row whose fingerprint is the vector's; keys without one get none. Returns
        ``(labels, entry numbers, row numbers)`` of the keys that have such a row: where
        each key's current vector was last written.
        """
        self.clear()
        chosen: list[tuple[int, int, int]] = []  # (entry, row, label), newest first
        done: set[str] = set()
        tables = []
        for keys, fps, table in entries:
            tables.append((keys, fps.tolist(), table))
        for e in range(len(tables) - 1, -1, -1):
            keys, fps, _ = tables[e]
            for row in range(len(keys) - 1, -1, -1):
                key = keys[row]
                if key in done:
                    continue
                now = current.get(key)
                if now is not None and now[1] == fps[row]:
                    done.add(key)
                    chosen.append((e, row, now[0]))
        chosen_labels = np.array([label for _, _, label in chosen], np.int64)
        chosen_entries = np.array([e for e, _, _ in chosen], np.int64)
        chosen_rows = np.array([row for _, row, _ in chosen], np.int64)
        by_entry: dict[int, tuple[list[int], list[int]]] = {}
        for e, row, label in chosen:
            rows, labels = by_entry.setdefault(e, ([], []))
            rows.append(row)
            labels.append(label)
        for e in sorted(by_entry):
            rows, labels = by_entry[e]
            table = tables[e][2]
            if not table.num_columns:
                continue
            # Null columns stay: a field given only None keeps its place (type null).
            try:
                self.set(np.array(labels, np.int64), table.take(pa.array(rows, pa.int64())))
            except InvalidValueError as exc:
                raise CorruptionError(
                    f"vector metadata entry {e} disagrees with earlier ones: {exc.message}",
                    hint=DAMAGED_LOG_HINT,
                ) from exc
        return chosen_labels, chosen_entries, chosen_rows


_EXACT = 2**53


def _exact_floats(name: str, column: Any, *, stored: bool = False) -> Any:
    """int64 ``column`` as float64, or InvalidValueError if a value would lose digits."""
    if len(column) - column.null_count:
        extremes = pc.min_max(column)
        low, high = extremes["min"].as_py(), extremes["max"].as_py()
        if low < -_EXACT or high > _EXACT:
            where = "the store holds" if stored else "got"
            raise InvalidValueError(
                f"metadata field {name!r} mixes floats and integers, and {where} integers "
                f"beyond 2**53 that float64 cannot hold exactly",
                hint="keep such a field integer-only, or give its values as floats",
            )
    return column.cast(pa.float64())


def _widen(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with every field of ``schema`` (missing ones null), cast to its type."""
    n = table.num_rows
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            if column.type != field.type:
                # Only null -> T and int64 -> float64 (checked exact by conform) get here.
                column = column.cast(field.type, safe=False)
            columns.append(column)
        else:
            columns.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _require_distinct(names: list[str]) -> None:
    folded = [n.casefold() for n in names]
    if len(set(folded)) != len(folded):
        raise ValueError(f"fields named twice (SQL names are case-insensitive): {names}")


def row_dicts(table: pa.Table) -> list[dict[str, Any]]:
    """The rows of ``table`` as dicts without their null fields (records are schema free)."""
    out = []
    for row in table.to_pylist():
        out.append({k: v for k, v in row.items() if v is not None})
    return out

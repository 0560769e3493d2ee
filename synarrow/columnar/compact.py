"""The fold from log tail to columnar files: one new generation per compaction.

Each key is written ordered by timestamp (:func:`synarrow.engine.timeline.ordered`: equal
timestamps in arrival order, the duplicates policy applied, entries before the key's
retention cutoff dropped), so every slice is sorted and its first and last timestamps go
into the key index.

Policy (generations with per-key rewrite):

* a key with new entries whose columnar part is small (under ``REWRITE_LIMIT_BYTES``) or split
  in ``MAX_SLICES`` slices already is rewritten whole into the new generation, so its history
  is again one contiguous slice (zero-copy reads);
* a key with a large columnar part only gets its new entries written, as one more slice,
  when they are in order, start at or after the columnar part's last timestamp (after it,
  unless duplicates are kept) and none is before the retention cutoff; otherwise the key
  is rewritten;
* a key with no new entries is left where it is, unless it holds entries before its
  retention cutoff or comes from an index without timestamps (then it is rewritten), or the
  file holding it would be mostly dead after this compaction (under half its rows still
  referenced), or is one of more than ``MAX_SMALL_FILES`` small files (under
  ``SMALL_FILE_ROWS`` rows and under an eighth of all rows): then it moves to the new
  generation, so dead space is reclaimed and the small files of many little compactions are
  merged with each other;
* ``full=True`` rewrites every key.

The engine snapshots only the keys with new entries (and, under retention rules, every key);
the index rows of every other key are carried into the new index as arrays (``carry=``),
so a compaction costs about the size of what changed, not the size of the database, in
files written and in index work alike; files of deleted or moved keys are removed once no
key refers to them. Crash safety: new files are written and fsynced first, then the manifest
is switched atomically; files the committed manifest does not name are removed on the next
open.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synarrow.columnar.index import (
    INDEX_SCHEMA,
    IndexRows,
    column_numbers,
    index_table,
    write_index,
)
from synarrow.columnar.ipc import DataFileWriter, MappedFile, Span
from synarrow.columnar.key_index import KeyIndex
from synarrow.columnar.manifest import MANIFEST_FORMAT, DataFile, Manifest, commit_manifest
from synarrow.columnar.schema import history_table, numeric_array, ts_array
from synarrow.columnar.slices import BaseRef
from synarrow.columnar.store import ColumnarStore
from synarrow.engine import timeline
from synarrow.errors import CorruptionError
from synarrow.log.format import ATOM_NAMES, Atom
from synarrow.log.memtable import TailChunk

__all__ = [
    "MAX_SLICES",
    "MAX_SMALL_FILES",
    "REWRITE_LIMIT_BYTES",
    "SMALL_FILE_ROWS",
    "CompactionResult",
    "KeySnapshot",
    "write_generation",
]

REWRITE_LIMIT_BYTES = 64 * 1024 * 1024
MAX_SLICES = 8
# Files under this many rows count as small; more than MAX_SMALL_FILES of them are merged.
SMALL_FILE_ROWS = 1 << 20
MAX_SMALL_FILES = 4
_NAME_TO_ATOM = {name: atom for atom, name in ATOM_NAMES.items()}


@dataclass
class KeySnapshot:
    """What compaction sees of one live key: its columnar slices and its sealed log tail."""

    key: str
    base: list[BaseRef]
    tail: list[TailChunk]
    tail_count: int = -1  # entries in the tail snapshot (computed when not given)
    not_before: int | None = None
    """The key's retention cutoff: entries before it are dropped (``None``: none)."""

    def __post_init__(self) -> None:
        if self.tail_count < 0:
            self.tail_count = sum(len(c) for c in self.tail)


@dataclass
class CompactionResult:
    """The new slices of every key written (those carried unchanged from the previous
    index are not listed) and what the compaction did."""

    refs: dict[str, list[BaseRef]]
    manifest: Manifest
    moved: dict[str, list[BaseRef]] = field(default_factory=dict)
    """Keys without a snapshot that were rewritten (their file was mostly dead or small):
    their slices before, so a caller holding them can tell they are still current."""
    keys_rewritten: int = 0
    keys_appended: int = 0
    entries_written: int = 0
    files_written: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)


def _history_arrays(chunks: list[TailChunk]) -> tuple[pa.Array, pa.Array, tuple[Atom | None, Atom]]:
    """Timestamps and values of a key's history, with (its atom or None for a mixed-type
    struct, the atom of its last entry). One plain chunk, the usual case, is used as is."""
    chunks = [c for c in chunks if len(c)]
    c = chunks[0] if len(chunks) == 1 else None
    if c is not None and c.atom is not None:
        values = c.values
        atom = c.atom
        last = atom if not values.null_count or values[len(values) - 1].is_valid else Atom.NULL
        return ts_array(c.ts), values, (atom, last)
    table = history_table(chunks)
    ts = table.column(0).combine_chunks()
    values = table.column(1).combine_chunks()
    return ts, values, _atom_of(table)


def _atom_of(table: pa.Table) -> tuple[Atom | None, Atom]:
    """(atom of the value column or None for mixed, atom of the last entry)."""
    t = table.schema.field("value").type
    last = table.column("value")[-1]
    if pa.types.is_struct(t):
        name = next((f.name for f, v in zip(t, last.values()) if v.is_valid), "null")
        return None, _NAME_TO_ATOM.get(name, Atom.NULL)
    if pa.types.is_null(t):
        return Atom.NULL, Atom.NULL
    atom = {
        pa.float64(): Atom.FLOAT,
        pa.int64(): Atom.INT,
        pa.large_string(): Atom.TEXT,
        pa.large_binary(): Atom.BYTES,
    }.get(t, Atom.VECTOR)
    return atom, (atom if last.is_valid else Atom.NULL)


def write_generation(
    store: ColumnarStore,
    snapshots: list[KeySnapshot],
    *,
    first_segment: int,
    next_seq: int,
    compression: str | None,
    full: bool = False,
    duplicates: str = "keep_all",
    clock: int = 0,
    carry: np.ndarray | None = None,
) -> CompactionResult:
    """Write a new generation for ``snapshots`` and commit its manifest.

    ``carry``: for each key of the committed index (``store.keys``), whether its slices go
    into the new index unchanged (it has no snapshot: nothing changed); ``None``: none do,
    ``snapshots`` are then every live key. A carried key whose file is to be removed (mostly
    dead, or one of many small files) is rewritten from its slices instead
    (``CompactionResult.moved``). The carried slices' index rows are copied as arrays, so a
    compaction costs what changed, not the number of keys.

    Each key written is ordered by timestamp with the ``duplicates`` policy and its
    snapshot's retention cutoff applied; a key left with no entry gets no slices.

    A database whose manifest is of format 1 (no checksums) is rewritten whole, so after one
    compaction every byte is covered by a checksum. Slices read to be rewritten are always
    verified first, whatever ``DbConfig.verify`` says: damaged data is never given a fresh
    checksum.
    """
    old = store.manifest
    gen = old.generation + 1
    full = full or (old.format < MANIFEST_FORMAT and bool(old.files))
    index = store.keys
    if carry is None or full or not len(index):
        carry = np.zeros(len(index), dtype=bool)
    else:
        carry = carry.copy()
    snapshots = list(snapshots)
    plan = _plan(old, snapshots, full, duplicates, index, carry)
    moved: dict[str, list[BaseRef]] = {}
    for position in np.flatnonzero(carry & _in_files(index, plan.dying)).tolist():
        key, refs = index.key_at(position), index.refs(position)
        snapshots.append(KeySnapshot(key, refs, [], 0))
        plan.actions[key] = "rewrite"
        moved[key] = refs
        carry[position] = False

    writers: dict[pa.DataType, DataFileWriter] = {}
    # (key, slices kept, rows, (atom, last atom), writer, batch, row) per key written
    pending: list[
        tuple[
            str,
            list[BaseRef],
            tuple[int, int, int],
            tuple[Atom | None, Atom],
            DataFileWriter,
            int,
            int,
        ]
    ] = []
    result_refs: dict[str, list[BaseRef]] = {}
    result = CompactionResult(refs=result_refs, manifest=old, moved=moved)

    def writer_for(t: pa.DataType) -> DataFileWriter:
        w = writers.get(t)
        if w is None:
            name = f"g{gen:06d}-{len(writers):03d}.arrow"
            w = writers[t] = DataFileWriter(store.directory / name, t, compression)
        return w

    try:
        for snap in sorted(snapshots, key=lambda s: s.key):
            action = plan.actions[snap.key]
            if action == "rewrite":
                for r in snap.base:
                    r.verify()
                stored = [r.chunk() for r in snap.base] + snap.tail
                kept: list[BaseRef] = []
                result.keys_rewritten += 1
            elif action == "append":
                stored = list(snap.tail)
                kept = list(snap.base)
                result.keys_appended += 1
            else:
                result_refs[snap.key] = list(snap.base)
                continue
            chunks = timeline.ordered(stored, duplicates=duplicates, not_before=snap.not_before)
            if not chunks:
                result_refs[snap.key] = kept  # nothing left to write (all expired)
                continue
            ts, values, atoms = _history_arrays(chunks)
            w = writer_for(values.type)
            batch, row = w.add(snap.key, ts, values)
            bounds = (len(ts), chunks[0].ts[0].item(), chunks[-1].ts[-1].item())
            pending.append((snap.key, kept, bounds, atoms, w, batch, row))
            result.entries_written += len(ts)
        new_files: list[DataFile] = []
        spans: dict[int, list[Span]] = {}
        for w in writers.values():
            info, spans[id(w)] = w.close()
            new_files.append(info)
            result.files_written.append(info.name)
        infos = {f.name: f for f in new_files}
        for key, kept, (count, t0, t1), (atom, last_atom), w, batch, row in pending:
            mf = store.mapped(infos[w.name])
            span = spans[id(w)][batch]
            ref = BaseRef(mf, batch, row, count, atom, last_atom, span, t0, t1)
            result_refs[key] = [*kept, ref]

        index_name = f"g{gen:06d}-index.arrow"
        known = {f.name: f for f in [*old.files, *new_files]}
        carried_rows = np.repeat(carry, np.diff(index.starts)) if len(index) else carry
        carried_files = (
            [
                index.files[i].path.name
                for i in np.flatnonzero(
                    np.bincount(index.arrays["file"][carried_rows], minlength=len(index.files))
                ).tolist()
            ]
            if carried_rows.any()
            else []
        )
        order = sorted(
            {r.file.path.name for refs in result_refs.values() for r in refs} | set(carried_files)
        )
        files = [known[n] for n in order]
        file_ids = {n: i for i, n in enumerate(order)}
        table = _index_table(result_refs, file_ids)
        if carried_rows.any():
            table = _merge_carried(table, index, carried_rows, file_ids)
        index_bytes, index_sum = write_index(store.directory / index_name, table)
        manifest = Manifest(
            generation=gen,
            first_segment=first_segment,
            next_seq=next_seq,
            index=index_name,
            files=files,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            index_bytes=index_bytes,
            index_xxh3=index_sum,
            clock=max(clock, old.clock),
        )
        keys = _key_index(table, [store.mapped(f) for f in files])
        commit_manifest(store.directory, manifest)  # nothing that can fail comes after
    except BaseException:
        for w in writers.values():
            try:
                w.abandon()
            except Exception:
                pass
        store.remove_unreferenced()
        raise
    store.manifest = manifest
    store.keys = keys
    result.manifest = manifest
    result.files_removed = store.remove_unreferenced()
    return result


def _appendable(snap: KeySnapshot, duplicates: str) -> bool:
    """Whether the tail can be written as one more slice after the sorted base: it is in
    order, starts at or after the base's last timestamp (after it, unless duplicates are
    kept), holds no duplicate timestamps to remove and nothing before the cutoff."""
    tail = [c for c in snap.tail if len(c)]
    if not tail or not timeline.follows(tail):
        return False
    first = tail[0].first_ts()
    if snap.not_before is not None and first < snap.not_before:
        return False
    base_last = snap.base[-1].last_ts if snap.base else None
    if snap.base and base_last is None:
        return False
    if duplicates == "keep_all":
        return base_last is None or first >= base_last
    return (base_last is None or first > base_last) and not timeline.has_duplicates(tail)


def _stale(snap: KeySnapshot) -> bool:
    """Whether a key without new entries must be rewritten anyway: its slices come from an
    index without timestamps (maybe unsorted), or some entries are before its cutoff."""
    if any(r.last_ts is None for r in snap.base):
        return True
    cutoff = snap.not_before
    return cutoff is not None and any(
        r.first_ts is not None and r.first_ts < cutoff for r in snap.base
    )


@dataclass
class _Plan:
    actions: dict[str, str]
    """Per snapshot key: "rewrite", "append" or "keep"."""
    dying: set[str]
    """Files to be removed: every key still in one is rewritten."""


def _plan(
    old: Manifest,
    snapshots: list[KeySnapshot],
    full: bool,
    duplicates: str,
    index: KeyIndex,
    carry: np.ndarray,
) -> _Plan:
    """Per key: "rewrite" (whole history into the new generation), "append" (only the
    tail, as one more slice) or "keep" (untouched); and the files that die."""
    plan: dict[str, str] = {}
    for snap in snapshots:
        if full:
            plan[snap.key] = "rewrite"
        elif snap.tail_count:
            small = sum(r.nbytes for r in snap.base) <= REWRITE_LIMIT_BYTES
            append = not small and len(snap.base) < MAX_SLICES and _appendable(snap, duplicates)
            plan[snap.key] = "append" if append else "rewrite"
        else:
            plan[snap.key] = "rewrite" if _stale(snap) else "keep"
    # Rows each existing file keeps after those rewrites: the carried keys' rows, counted as
    # arrays, and those of the snapshots not rewritten.
    remaining: dict[str, int] = defaultdict(int)
    if carry.any():
        rows = np.repeat(carry, np.diff(index.starts))
        per_file = np.bincount(
            index.arrays["file"][rows],
            weights=index.arrays["count"][rows],
            minlength=len(index.files),
        )
        for i in np.flatnonzero(per_file).tolist():
            remaining[index.files[i].path.name] += int(per_file[i])
    for snap in snapshots:
        if plan[snap.key] != "rewrite":
            for ref in snap.base:
                remaining[ref.file.path.name] += ref.count
    dying = {f.name for f in old.files if remaining.get(f.name, 0) < f.rows / 2}
    # Small: under SMALL_FILE_ROWS and under an eighth of all rows, so the files of many
    # little compactions are merged with each other, never into the one big file (which
    # would make every few compactions cost a full one).
    total = sum(f.rows for f in old.files)
    small_files = [
        f.name
        for f in old.files
        if f.name not in dying and f.rows < SMALL_FILE_ROWS and f.rows * 8 < total
    ]
    if len(small_files) > MAX_SMALL_FILES:
        dying.update(small_files)  # merge the small files of many little compactions into one
    for snap in snapshots:
        if plan[snap.key] != "rewrite" and any(r.file.path.name in dying for r in snap.base):
            plan[snap.key] = "rewrite"
    return _Plan(plan, dying)


def _in_files(index: KeyIndex, names: set[str]) -> np.ndarray:
    """For each key of ``index``, whether one of its slices is in a file of ``names``."""
    if not len(index) or not names:
        return np.zeros(len(index), dtype=bool)
    hit_file = np.array([mf.path.name in names for mf in index.files], dtype=bool)
    rows = hit_file[index.arrays["file"]]
    return np.logical_or.reduceat(rows, index.starts[:-1])


def _merge_carried(
    table: pa.Table, index: KeyIndex, rows: np.ndarray, file_ids: dict[str, int]
) -> pa.Table:
    """``table`` (the rows of the keys written) and the carried ``rows`` of ``index`` (with
    their file numbers of the new manifest) as one table in key order; within a key the
    slices keep their order (the sort is stable, and a key is in one part only)."""
    take = np.flatnonzero(rows)
    renumber = np.array([file_ids.get(mf.path.name, -1) for mf in index.files], dtype=np.int32)
    a = index.arrays
    columns: list[pa.Array] = [index.key_array.take(numeric_array(take, pa.int64()))]
    for name in INDEX_SCHEMA.names[1:]:
        values = renumber[a["file"][take]] if name == "file" else a[name][take]
        columns.append(numeric_array(values, INDEX_SCHEMA.field(name).type))
    carried = pa.Table.from_arrays(columns, schema=INDEX_SCHEMA)
    merged = pa.concat_tables([carried, table]) if len(table) else carried
    if not len(table):
        return merged
    order = pc.sort_indices(merged, sort_keys=[("key", "ascending")])
    return merged.take(order)


def _key_index(table: pa.Table, files: list[MappedFile]) -> KeyIndex:
    """The in-memory key index of a table just written."""
    arrays = {name: column_numbers(table.column(name)) for name in INDEX_SCHEMA.names[1:]}
    rows = IndexRows(table.column("key").combine_chunks(), arrays, checksummed=True)
    return KeyIndex(rows, files)


def _index_table(refs: dict[str, list[BaseRef]], file_ids: dict[str, int]) -> pa.Table:
    """The key index rows of ``refs``; ``file_ids`` numbers the manifest's files."""
    keys: list[str] = []
    cols: dict[str, list[int]] = {n: [] for n in INDEX_SCHEMA.names[1:]}
    for key in sorted(refs):
        for r in refs[key]:
            if r.span is None:  # only format-1 slices lack one, and those are all rewritten
                raise CorruptionError(f"slice of key {key!r} in {r.file.path} has no checksum")
            keys.append(key)
            cols["file"].append(file_ids[r.file.path.name])
            cols["batch"].append(r.batch)
            cols["row"].append(r.row)
            cols["count"].append(r.count)
            cols["atom"].append(-1 if r.atom is None else int(r.atom))
            cols["last_atom"].append(int(r.last_atom))
            cols["offset"].append(r.span.offset)
            cols["length"].append(r.span.length)
            cols["xxh3"].append(r.span.xxh3)
            if r.first_ts is None or r.last_ts is None:  # such slices are rewritten, never kept
                raise CorruptionError(f"slice of key {key!r} in {r.file.path} has no timestamps")
            cols["first_ts"].append(r.first_ts)
            cols["last_ts"].append(r.last_ts)
    return index_table(keys, cols)

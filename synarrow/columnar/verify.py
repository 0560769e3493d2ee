"""Full verification of a ``columnar/`` directory, for ``synarrow check``.

Everything a read could touch is verified, and every problem is reported (not just the
first): the manifest's checksum and names, the key index's checksum and fields, each data
file's size and footer checksum, the checksum of every record batch an index entry refers to
(with its byte range), pyarrow's full validation of each of those batches (UTF-8 included),
that each slice fits its batch and matches its key and atom types, and that the directory
holds only plain files with names synarrow writes. Nothing is opened for writing.

:func:`verify_manifest` runs the same checks on the files another manifest names (a
snapshot's); a ``verified`` set shared between the calls lets a record batch that several
manifests refer to be verified once.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from synarrow.columnar.index import IndexRows, read_index
from synarrow.columnar.ipc import MappedFile, Span
from synarrow.columnar.manifest import (
    DATA_NAME,
    INDEX_NAME,
    MANIFEST_NAME,
    DataFile,
    Manifest,
    read_manifest,
)
from synarrow.columnar.slices import BaseRef
from synarrow.columnar.validate import check_batch
from synarrow.errors import CorruptionError
from synarrow.fileio import entry_problem
from synarrow.log.format import Atom

__all__ = ["ColumnarCheck", "Verified", "verify_columnar", "verify_manifest"]

#: Record batches already verified by checksum and full validation: ``(file name, batch,
#: offset, length, xxh3)``. Files are immutable, so one verification holds for every
#: manifest that names the same batch with the same checksum.
Verified = set[tuple[str, int, int, int, int]]


@dataclass
class ColumnarCheck:
    """What :func:`verify_columnar` found."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)
    files: int = 0
    rows: int = 0
    bytes_verified: int = 0
    unverified_files: int = 0  # format-1 files: structure checked, no checksums
    manifest: Manifest | None = None


@dataclass
class _Entry:
    key: str
    batch: int
    row: int
    count: int
    atom: int
    last_atom: int
    span: Span | None


def verify_columnar(
    directory: Path,
    *,
    rel: str = "columnar",
    progress: Callable[[int], None] | None = None,
    pinned: frozenset[str] | set[str] = frozenset(),
    pins_unknown: bool = False,
    verified: Verified | None = None,
) -> ColumnarCheck:
    """Verify ``directory`` (a database's ``columnar/``); ``progress(n)`` gets bytes done.

    ``pinned``: names of files snapshots keep (verified by :func:`verify_manifest`, not
    reported as leftovers here); ``pins_unknown``: a snapshot record could not be read, so
    files outside the manifest may be pinned by it. ``verified`` collects the batches done.
    """
    out = ColumnarCheck()
    done = progress or (lambda n: None)
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return out
    if not stat.S_ISDIR(st.st_mode):
        out.damage.append(f"{rel}: is a symbolic link or not a directory")
        return out
    try:
        manifest = read_manifest(directory)
    except CorruptionError as exc:
        out.damage.append(f"{rel}/{MANIFEST_NAME}: {exc.message}")
        _check_names(directory, None, rel, out, pinned, pins_unknown)
        return out
    out.manifest = manifest
    _check_names(directory, manifest, rel, out, pinned, pins_unknown)
    _verify_manifest(directory, manifest, rel, out, done, verified)
    return out


def verify_manifest(
    directory: Path,
    manifest: Manifest,
    *,
    rel: str = "columnar",
    verified: Verified | None = None,
    progress: Callable[[int], None] | None = None,
) -> ColumnarCheck:
    """Verify the key index and data files ``manifest`` names in ``directory`` (a snapshot's
    pinned files), as :func:`verify_columnar` does for the live manifest; batches already in
    ``verified`` are not verified again (their slices are still checked)."""
    out = ColumnarCheck(manifest=manifest)
    _verify_manifest(directory, manifest, rel, out, progress or (lambda n: None), verified)
    return out


def _verify_manifest(
    directory: Path,
    manifest: Manifest,
    rel: str,
    out: ColumnarCheck,
    done: Callable[[int], None],
    verified: Verified | None,
) -> None:
    if manifest.format < 2 and manifest.files:
        out.warnings.append(
            f"{rel}/: format {manifest.format} files carry no checksums: their structure is "
            "validated, their values are UNVERIFIED; `synarrow compact PATH` rewrites them "
            "in the checksummed format"
        )
    rows: IndexRows | None = None
    if manifest.index:
        try:
            rows = read_index(directory / manifest.index, manifest)
            out.lines.append(
                f"{rel}/{manifest.index}: {len(rows):,} key slices, "
                + ("checksum OK" if rows.checksummed else "no checksum (format 1)")
            )
        except CorruptionError as exc:
            out.damage.append(f"{rel}/{manifest.index}: {exc.message}")
    elif manifest.files:
        out.damage.append(f"{rel}/{MANIFEST_NAME}: lists data files but no key index")
    by_file: dict[int, dict[int, list[_Entry]]] = defaultdict(lambda: defaultdict(list))
    if rows is not None:
        c = rows.columns
        for i, key in enumerate(rows.keys):
            span = Span(c["offset"][i], c["length"][i], c["xxh3"][i]) if rows.checksummed else None
            e = _Entry(
                key,
                c["batch"][i],
                c["row"][i],
                c["count"][i],
                c["atom"][i],
                c["last_atom"][i],
                span,
            )
            by_file[c["file"][i]][e.batch].append(e)
    for fi, df in enumerate(manifest.files):
        _verify_file(directory, rel, df, by_file.get(fi, {}), rows is not None, out, verified)
        done(df.bytes)


def _verify_file(
    directory: Path,
    rel: str,
    df: DataFile,
    batches: dict[int, list[_Entry]],
    have_index: bool,
    out: ColumnarCheck,
    verified: Verified | None = None,
) -> None:
    name = f"{rel}/{df.name}"
    try:
        mf = MappedFile(directory / df.name, df, verify="never")
    except FileNotFoundError:
        out.damage.append(f"{name}: named by the manifest but missing")
        return
    except OSError as exc:
        msg = exc.message if isinstance(exc, CorruptionError) else str(exc)
        out.damage.append(f"{name}: {msg}")
        return
    bad_before = len(out.damage)
    total_rows = 0
    unreferenced = 0
    for i in range(mf.num_batches):
        entries = batches.get(i, [])
        if df.checksummed and not entries:
            unreferenced += 1
            continue
        span = entries[0].span if entries else None
        where = f"bytes {span.offset}..{span.offset + span.length}" if span else f"record batch {i}"
        try:
            done_key = None
            if span is not None:
                if any(e.span != span for e in entries) or len(entries) > 1:
                    raise CorruptionError("several index entries refer to this record batch")
                done_key = (df.name, i, int(span.offset), int(span.length), int(span.xxh3))
                if verified is None or done_key not in verified:
                    mf.verify_batch(i, span)
                    out.bytes_verified += span.length
                else:
                    done_key = None  # verified before: not again
            b = mf.batch(i, span)
            if done_key is not None:
                check_batch(b, f"record batch {i}", within=None, full=True)
                key = mf.key_of(i)
                if key != entries[0].key:
                    raise CorruptionError(
                        f"record batch {i} holds key {key!r}; the index says {entries[0].key!r}"
                    )
            for e in entries:
                atom = None if e.atom < 0 else Atom(e.atom)
                BaseRef(mf, e.batch, e.row, e.count, atom, Atom(e.last_atom), e.span).chunk()
            if done_key is not None and verified is not None:
                verified.add(done_key)
            total_rows += b.num_rows
        except CorruptionError as exc:
            out.damage.append(f"{name}: {where} (record batch {i}): {exc.message}")
    for i in sorted(b for b in batches if not 0 <= b < mf.num_batches):
        out.damage.append(
            f"{name}: the index names record batch {i} of {mf.num_batches} "
            f"(key {batches[i][0].key!r})"
        )
    if df.checksummed and not have_index:
        out.warnings.append(f"{name}: record batches not verified: the key index is damaged")
    elif df.checksummed and unreferenced:
        out.lines.append(
            f"{name}: {unreferenced} record batches no key refers to any more (not read; "
            "dropped when the file is next compacted)"
        )
    elif len(out.damage) == bad_before and total_rows != df.rows:
        out.damage.append(f"{name}: {total_rows:,} rows; the manifest says {df.rows:,}")
    if not df.checksummed:
        out.unverified_files += 1
    if len(out.damage) == bad_before:
        out.files += 1
        out.rows += total_rows
        state = "checksums OK" if df.checksummed else "structure OK, no checksums (format 1)"
        out.lines.append(f"{name}: {mf.num_batches} batches, {total_rows:,} rows, {state}")
    mf.close()


def _check_names(
    directory: Path,
    manifest: Manifest | None,
    rel: str,
    out: ColumnarCheck,
    pinned: frozenset[str] | set[str] = frozenset(),
    pins_unknown: bool = False,
) -> None:
    live = {MANIFEST_NAME} | set(pinned)
    if manifest is not None:
        live |= {f.name for f in manifest.files}
        if manifest.index:
            live.add(manifest.index)
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        name = entry.name
        problem = entry_problem(entry)
        if problem is not None:
            out.damage.append(f"{rel}/{name}: {problem}")
        elif name in live:
            continue
        elif pins_unknown and (DATA_NAME.fullmatch(name) or INDEX_NAME.fullmatch(name)):
            out.warnings.append(
                f"{rel}/{name}: not in the manifest nor in a readable snapshot record (kept "
                "while a snapshot record is damaged: it may be that snapshot's)"
            )
        elif DATA_NAME.fullmatch(name) or INDEX_NAME.fullmatch(name) or ".tmp" in name:
            out.warnings.append(
                f"{rel}/{name}: not in the manifest (left by an interrupted compaction; "
                "removed on the next writable open)"
            )
        else:
            out.damage.append(f"{rel}/{name}: not a file synarrow writes")

"""The ``synarrow`` command: inspect, query, verify, move and serve a database from a shell.

::

    synarrow demo                                  # a sensor time series, end to end
    synarrow info data.db                          # keys, entries, sizes, last compaction
    synarrow keys data.db 'sensor/*'
    synarrow get data.db sensor/1
    synarrow history data.db sensor/1 --tail 10 --format csv
    synarrow sql data.db "SELECT key, avg(value) FROM history GROUP BY key"
    synarrow compact data.db
    synarrow check data.db                         # verify every checksum; exit 3 on damage
    synarrow export data.db out/                   # Hive-partitioned Parquet dataset
    synarrow export data.db all.csv                # one file: key, ts, value
    synarrow import data.db all.csv
    synarrow serve data.db --port 8815             # Arrow Flight (SQL) on 127.0.0.1
    synarrow snapshot data.db v1 --note "train set"   # a named, immutable version
    synarrow snapshots data.db                     # the tags, with time, sizes and note
    synarrow diff data.db v1                       # keys added/removed/changed since v1
    synarrow sql data.db "SELECT count(*) FROM history" --snapshot v1
    synarrow snapshot data.db v1 --drop

Reading commands open the database read-only, so they work while another process writes;
``--snapshot TAG`` makes them read that tag instead (writing commands refuse it).
Exit status: 0 success, 1 error (one line on stderr), 2 bad usage, 3 ``check`` found damage,
130 interrupted. Set ``SYNARROW_DEBUG=1`` to get a traceback instead of the one-line error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import pyarrow as pa

from synarrow.check import check_database  # re-exported (they lived here)
from synarrow.engine.directory import is_database
from synarrow.errors import CliError, InvalidPathError, KeyNotFoundError, SynaError
from synarrow.log.format import ATOM_NAMES, Atom
from synarrow.text_format import human_bytes

if TYPE_CHECKING:
    from synarrow.db import SynaDB

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CORRUPT = 3
EXIT_INTERRUPTED = 130

# -- output helpers ------------------------------------------------------------------------


def _out() -> TextIO:
    return sys.stdout


def _say(text: str = "") -> None:
    print(text, file=_out())


def _one_line(message: str) -> str:
    """A multi-line message (DuckDB errors draw carets) squeezed onto one line."""
    lines = [ln.strip() for ln in str(message).splitlines()]
    lines = [re.sub(r"^\^+\s*", "", ln) for ln in lines]
    kept = [ln for ln in lines if ln and not ln.startswith("LINE ")]
    return " ".join(kept) or type(message).__name__


def _error(message: str) -> None:
    print(f"synarrow: error: {_one_line(message)}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"synarrow: warning: {_one_line(message)}", file=sys.stderr)


def _progress_flag(args: argparse.Namespace) -> bool | None:
    return False if getattr(args, "no_progress", False) else None


# -- the table printer ---------------------------------------------------------------------


# The fields of a mixed-type history value (a struct with one field per atom type).
_ATOM_FIELDS = {name for atom, name in ATOM_NAMES.items() if atom != Atom.NULL}


def format_cell(value: Any, width: int = 40) -> str:
    """One value as table text: ``NULL``, ISO times, short vectors, bytes as ``b'..'``."""
    if value is None:
        text = "NULL"
    elif isinstance(value, float):
        text = repr(value) if math.isfinite(value) else str(value)
    elif isinstance(value, (bytes, bytearray)):
        text = repr(bytes(value))
    elif isinstance(value, list):
        inner = ", ".join(format_cell(v, width) for v in value[:8])
        text = f"[{inner}{', …' if len(value) > 8 else ''}]"
    elif isinstance(value, dict):
        present = [v for v in value.values() if v is not None]
        if set(value) <= _ATOM_FIELDS:  # a mixed-type history value: one field is set
            text = format_cell(present[0], width) if present else "NULL"
        else:
            text = json.dumps(value, default=str)
    elif hasattr(value, "isoformat"):
        text = value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()
    else:
        text = str(value)
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    if not text.isprintable():
        # other controls (ESC ...) would drive the reader's terminal: show them escaped
        text = _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if len(text) <= width else text[: width - 1] + "…"


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def render_table(
    table: pa.Table, *, max_rows: int = 40, max_width: int = 40, unicode: bool | None = None
) -> str:
    """A boxed text table of an Arrow table (no dependencies), like DuckDB's shell prints.

    Tables longer than ``max_rows`` show their first and last rows around a ``…`` row; the
    footer gives the row count. Numbers are right-aligned.

    >>> print(render_table(pa.table({"key": ["a"], "value": [1.5]}), unicode=False))
    +-----+-------+
    | key | value |
    +-----+-------+
    | a   |   1.5 |
    +-----+-------+
    1 row
    """
    if unicode is None:
        encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
        unicode = encoding == "utf8"
    h, v, tl, tm, tr, ml, mm, mr, bl, bm, br = "─│┌┬┐├┼┤└┴┘" if unicode else "-|+++++++++"
    n = table.num_rows
    names = table.schema.names
    if n > max_rows:
        head = max(1, max_rows // 2)
        shown = table.slice(0, head).to_pylist() + table.slice(n - head, head).to_pylist()
        gap_at: int | None = head
    else:
        shown, gap_at = table.to_pylist(), None
    rows = [
        [format_cell(r.get(c) if isinstance(r, dict) else None, max_width) for c in names]
        for r in shown
    ]
    right = [_is_numeric(f.type) for f in table.schema]
    widths = [len(c) for c in names]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

    def line(left: str, mid: str, end: str) -> str:
        return left + mid.join(h * (w + 2) for w in widths) + end

    def cells(values: Sequence[str], align: Sequence[bool]) -> str:
        parts = [(val.rjust(w) if r else val.ljust(w)) for val, w, r in zip(values, widths, align)]
        return v + v.join(f" {p} " for p in parts) + v

    out = [line(tl, tm, tr), cells(names, [False] * len(names)), line(ml, mm, mr)]
    for i, row in enumerate(rows):
        if i == gap_at:
            out.append(cells(["…" if unicode else "..."] * len(names), right))
        out.append(cells(row, right))
    out.append(line(bl, bm, br))
    footer = f"{n:,} row{'s' if n != 1 else ''}"
    if gap_at is not None:
        footer += f" ({len(rows)} shown)"
    out.append(footer)
    return "\n".join(out)


def write_table(
    table: pa.Table, fmt: str, output: str | None = None, *, max_rows: int = 40
) -> None:
    """Print or save a result: ``table`` (boxed), ``csv``, ``json`` (JSON lines) or ``parquet``."""
    if fmt == "parquet":
        if not output:
            raise CliError("--format parquet needs --output FILE")
        import pyarrow.parquet as pq

        pq.write_table(table, output)
        return
    if fmt == "table":
        text = render_table(table, max_rows=max_rows) + "\n"
        if output:
            Path(output).write_text(text, encoding="utf-8")
        else:
            _out().write(text)
        return
    if output:
        with open(output, "w", encoding="utf-8", newline="") as sink:
            _write_text(table, fmt, sink)
    else:
        _write_text(table, fmt, _out())
        _out().flush()


def _write_text(table: pa.Table, fmt: str, sink: TextIO) -> None:
    from synarrow.text_format import json_lines, to_text_table

    if fmt == "csv":
        import pyarrow.csv as pcsv

        text_table = to_text_table(table)
        batches = text_table.to_batches(max_chunksize=65536)
        if not batches:
            batches = [pa.RecordBatch.from_pylist([], schema=text_table.schema)]
        for i, batch in enumerate(batches):
            buf = pa.BufferOutputStream()
            options = pcsv.WriteOptions(include_header=i == 0)
            pcsv.write_csv(pa.Table.from_batches([batch]), buf, write_options=options)
            sink.write(buf.getvalue().to_pybytes().decode("utf-8"))
    elif fmt == "json":
        for ln in json_lines(table):
            sink.write(ln)
    else:
        raise CliError(f"unknown output format {fmt!r}")


# -- opening -------------------------------------------------------------------------------


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CliError(f"{p}: no such database")
    if not is_database(p):
        raise InvalidPathError(f"{p} is not a synarrow database")
    return p


def open_db(
    path: str,
    *,
    write: bool = False,
    create: bool = False,
    repair: bool = False,
    snapshot: str | None = None,
) -> SynaDB:
    """Open for a command: read-only unless ``write``; only ``create`` makes a new database;
    ``snapshot``: read that tag (read-only; refused with ``write``)."""
    from synarrow.db import SynaDB

    if snapshot is not None:
        if write:
            raise CliError(f"--snapshot {snapshot}: a snapshot is read-only; this command writes")
        if repair:
            raise CliError("--repair does not apply to --snapshot (a snapshot has no log)")
        _existing(path)
        return SynaDB(path, snapshot=snapshot)
    if not (write and create):
        _existing(path)
    return SynaDB(path, readonly=not write, repair=repair)


def _read_db(args: argparse.Namespace) -> SynaDB:
    """The database a reading command opens: at ``--snapshot TAG`` when given."""
    return open_db(
        args.path, repair=getattr(args, "repair", False), snapshot=getattr(args, "snapshot", None)
    )


def _refuse_snapshot(args: argparse.Namespace, command: str) -> None:
    """Writing commands take ``--snapshot`` only to refuse it clearly."""
    tag = getattr(args, "snapshot", None)
    if tag is not None:
        raise CliError(
            f"`synarrow {command}` writes, and snapshot {tag!r} is read-only; "
            "run it without --snapshot"
        )


# -- commands ------------------------------------------------------------------------------


def _writers_line(mode: str, pids: list[int] | None, kept: bool = False) -> str:
    """``writers`` in ``info``: who may write, which processes hold writer handles, and
    whether the one writer keeps the append lock."""
    what = "many (writers take turns on one log)" if mode == "many" else "single"
    if pids is None:
        return what
    if not pids:
        return f"{what}; none open now"
    counts: dict[int, int] = {}
    for pid in pids:
        counts[pid] = counts.get(pid, 0) + 1
    shown = ", ".join(f"{p}" + (f" (x{n})" if n > 1 else "") for p, n in sorted(counts.items()))
    line = f"{what}; {len(pids)} open now, in process{'es' * (len(counts) != 1)} {shown}"
    if kept and len(pids) == 1:
        line += (
            "; it keeps the append lock (it is alone: it hands the lock over when another opens)"
        )
    return line


def cmd_info(args: argparse.Namespace) -> int:
    """``synarrow info PATH``: keys, entries, sizes, last compaction."""
    with _read_db(args) as db:
        stats = db.stats()
        rules = db.retention()
        try:
            tags: list[str] | None = [i.tag for i in db.snapshots()]
        except SynaError:  # a damaged record: `synarrow check` names it
            tags = None
    if args.json:
        stats["config"] = dataclasses.asdict(stats["config"])
        stats["retention"] = {p: age.total_seconds() for p, age in rules.items()}
        stats["snapshots"] = tags
        _say(json.dumps(stats, indent=2, default=str))
        return EXIT_OK
    cfg = stats["config"]
    segs = stats["log_segments"]
    files = stats["columnar_files"]
    rows = [
        ("path", stats["path"]),
        ("keys", f"{stats['keys']:,}"),
        ("entries", f"{stats['entries']:,} ({stats['tail_entries']:,} in the log tail)"),
        ("log", f"{human_bytes(stats['log_bytes'])} in {segs} segment{'s' * (segs != 1)}"),
        (
            "columnar",
            f"{human_bytes(stats['columnar_bytes'])} in {files} file{'s' * (files != 1)}",
        ),
        ("last compaction", stats["last_compaction"] or "never"),
        (
            "writers",
            _writers_line(
                cfg.writers, stats.get("writer_processes"), bool(stats.get("append_lock_kept"))
            ),
        ),
        (
            "config",
            " ".join(f"{f.name}={getattr(cfg, f.name)}" for f in dataclasses.fields(cfg)),
        ),
    ]
    if rules:
        rows.append(("retention", "; ".join(f"{p} {age}" for p, age in rules.items())))
    if stats.get("snapshot") is not None:
        rows.insert(1, ("snapshot", f"{stats['snapshot']} (read-only)"))
    if tags is None:
        rows.append(("snapshots", "a snapshot record is damaged (see `synarrow check`)"))
    elif tags:
        shown = ", ".join(tags[:10]) + (f", … ({len(tags) - 10} more)" if len(tags) > 10 else "")
        rows.append(("snapshots", f"{len(tags)}: {shown}"))
    if stats["repaired_ranges"]:
        rows.append(
            ("skipped damage", ", ".join(f"{p} {a}..{b}" for p, a, b in stats["repaired_ranges"]))
        )
    width = max(len(k) for k, _ in rows)
    for k, val in rows:
        _say(f"{k.ljust(width)}  {val}")
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    """``synarrow keys PATH [PATTERN]``: live keys, one per line."""
    pattern = args.pattern or args.glob
    with _read_db(args) as db:
        keys = db.keys(pattern)
    if args.count:
        _say(str(len(keys)))
    else:
        out = _out()
        for k in keys:
            out.write(k + "\n")
    return EXIT_OK


def _plain(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        return json.dumps(value.tolist())
    if isinstance(value, (bytes, bytearray)):
        return repr(bytes(value))
    return repr(value) if isinstance(value, float) else str(value)


def cmd_get(args: argparse.Namespace) -> int:
    """``synarrow get PATH KEY``: the latest value."""
    with _read_db(args) as db:
        if not db.exists(args.key):
            raise KeyNotFoundError(f"key {args.key!r} not found in {args.path}", hint="")
        value = db.get(args.key)
    if args.json:
        from synarrow.text_format import json_value

        if isinstance(value, np.ndarray):
            value = value.tolist()
        _say(json.dumps(json_value(value)))
    else:
        _say(_plain(value))
    return EXIT_OK


def _time_arg(text: str | None) -> str | int | None:
    """A time flag: digits are int microseconds since the epoch, anything else ISO 8601."""
    if text is not None and re.fullmatch(r"-?[0-9]+", text.strip()):
        return int(text)
    return text


def cmd_history(args: argparse.Namespace) -> int:
    """``synarrow history PATH KEY``: the key's history as a table, CSV or JSON lines."""
    if args.tail is not None and args.last is not None:
        raise CliError("--tail is the old name of --last: give one of them")
    last = args.last if args.last is not None else args.tail
    if last is not None and last < 0:
        raise CliError("--last must be >= 0")
    with _read_db(args) as db:
        start, end = _time_arg(args.start), _time_arg(args.end)
        table = db.get_history(args.key, start, end, last=last)
        write_table(table, args.format, args.output, max_rows=args.max_rows)
    return EXIT_OK


def cmd_sql(args: argparse.Namespace) -> int:
    """``synarrow sql PATH QUERY``: run DuckDB SQL over the ``history`` / ``latest`` views."""
    query = sys.stdin.read() if args.query == "-" else args.query
    with _read_db(args) as db:
        started = time.perf_counter()
        table = db.sql(query)
        elapsed = time.perf_counter() - started
        write_table(table, args.format, args.output, max_rows=args.max_rows)
    if args.timer:
        print(f"run time: {elapsed:.3f} s", file=sys.stderr)
    return EXIT_OK


def cmd_resample(args: argparse.Namespace) -> int:
    """``synarrow resample PATH KEY_OR_PATTERN EVERY``: numeric keys aggregated into time
    buckets (``db.resample``) as a table, CSV or JSON lines."""
    agg = args.agg.split(",") if "," in args.agg else args.agg
    fill: Any = args.fill
    if fill is not None and fill not in ("ffill", "linear"):
        try:
            fill = float(fill)
        except ValueError:
            raise CliError(f"--fill must be ffill, linear or a number, got {fill!r}") from None
    start, end = (int(t) if t and t.lstrip("-").isdigit() else t for t in (args.start, args.end))
    with _read_db(args) as db:
        table = db.resample(args.key, args.every, agg, start=start, end=end, fill=fill)
        write_table(table, args.format, args.output, max_rows=args.max_rows)
    return EXIT_OK


def cmd_compact(args: argparse.Namespace) -> int:
    """``synarrow compact PATH``: fold the log into columnar Arrow files."""
    _refuse_snapshot(args, "compact")
    with open_db(args.path, write=True) as db:
        before = db.stats()
        started = time.perf_counter()
        result = db.compact(full=args.full)
        elapsed = time.perf_counter() - started
        after = db.stats()
    if args.json:
        _say(json.dumps({**result, "seconds": elapsed}, default=str))
        return EXIT_OK
    _say(
        f"compacted {result['entries_written']:,} entries of {result['keys']:,} keys in "
        f"{elapsed:.2f} s (generation {result['generation']}: "
        f"{len(result['files_written'])} files written, {len(result['files_removed'])} removed, "
        f"{result['log_segments_removed']} log segments removed)"
    )
    _say(
        f"log {human_bytes(before['log_bytes'])} -> {human_bytes(after['log_bytes'])}, "
        f"columnar {human_bytes(before['columnar_bytes'])} -> "
        f"{human_bytes(after['columnar_bytes'])}"
    )
    return EXIT_OK


# -- snapshots -----------------------------------------------------------------------------


def _snapshot_row(info: Any) -> dict[str, Any]:
    return {
        "tag": info.tag,
        "created": info.created.isoformat(),
        "keys": info.keys,
        "entries": info.entries,
        "bytes": info.bytes,
        "exclusive_bytes": info.exclusive_bytes,
        "generation": info.generation,
        "note": info.note,
    }


def cmd_snapshots(args: argparse.Namespace) -> int:
    """``synarrow snapshots PATH``: the tags, oldest first, with time, sizes and note."""
    with open_db(args.path) as db:
        found = db.snapshots()
    if args.json:
        _say(json.dumps([_snapshot_row(i) for i in found], indent=2))
        return EXIT_OK
    if not found:
        _say(f"no snapshots in {args.path}")
        return EXIT_OK
    table = pa.table(
        {
            "tag": [i.tag for i in found],
            "created": [i.created.isoformat(sep=" ", timespec="seconds") for i in found],
            "keys": pa.array([i.keys for i in found], pa.int64()),
            "entries": pa.array([i.entries for i in found], pa.int64()),
            "bytes": [human_bytes(i.bytes) for i in found],
            "exclusive": [human_bytes(i.exclusive_bytes) for i in found],
            "note": [i.note or "" for i in found],
        }
    )
    _say(render_table(table, max_rows=max(40, len(found))))
    return EXIT_OK


def cmd_snapshot(args: argparse.Namespace) -> int:
    """``synarrow snapshot PATH TAG [--note TEXT]`` makes a tag; ``--drop`` removes one."""
    if args.drop and args.note is not None:
        raise CliError("--note is for making a snapshot, not for --drop")
    with open_db(args.path, write=True) as db:
        if args.drop:
            try:
                before: dict[str, Any] | None = {i.tag: i for i in db.snapshots()}
            except SynaError:  # another tag's record is damaged: this one may still go
                before = None
            db.drop_snapshot(args.tag)
            freed = None if before is None else before[args.tag].exclusive_bytes
            if args.json:
                _say(json.dumps({"dropped": args.tag, "freed_bytes": freed}))
            else:
                how = "" if freed is None else f" ({human_bytes(freed)} freed)"
                _say(f"dropped snapshot {args.tag} of {args.path}{how}")
            return EXIT_OK
        info = db.snapshot(args.tag, note=args.note)
    if args.json:
        _say(json.dumps(_snapshot_row(info)))
    else:
        _say(
            f"snapshot {info.tag} of {args.path}: {info.keys:,} keys, {info.entries:,} entries, "
            f"{human_bytes(info.bytes)} pinned (generation {info.generation})"
        )
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    """``synarrow diff PATH A [B]``: keys added, removed and changed from tag A to tag B
    (B left out: the current state). Exit status 0 whether or not they differ."""
    with open_db(args.path) as db:
        diff = db.diff_snapshots(args.a, args.b)
    b_name = args.b if args.b is not None else "current"
    if args.json:
        body = {
            "a": args.a,
            "b": args.b,
            "added": list(diff.added),
            "removed": list(diff.removed),
            "changed": list(diff.changed),
            "unchanged": diff.unchanged,
            "entries_before": diff.entries_before,
            "entries_after": diff.entries_after,
            "changes": {
                k: {
                    "kind": c.kind,
                    "entries_before": c.entries_before,
                    "entries_after": c.entries_after,
                }
                for k, c in diff.changes.items()
            },
        }
        _say(json.dumps(body, indent=2))
        return EXIT_OK
    mark = {"added": "+", "removed": "-", "changed": "~"}
    if not args.quiet:
        for key in sorted(diff.changes):
            c = diff.changes[key]
            _say(f"{mark[c.kind]} {key}  ({c.entries_before:,} -> {c.entries_after:,} entries)")
    _say(
        f"{args.a} -> {b_name}: {len(diff.added):,} added, {len(diff.removed):,} removed, "
        f"{len(diff.changed):,} changed, {diff.unchanged:,} unchanged; entries of those keys "
        f"{diff.entries_before:,} -> {diff.entries_after:,}"
    )
    return EXIT_OK


# -- check ---------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """``synarrow check PATH``: verify every checksum; exit 3 when damage is found."""
    _existing(args.path)
    report = check_database(args.path, progress=_progress_flag(args))
    if args.json:
        _say(json.dumps({**dataclasses.asdict(report), "path": str(report.path), "ok": report.ok}))
        return EXIT_OK if report.ok else EXIT_CORRUPT
    if not args.quiet:
        for ln in report.lines:
            _say(ln)
    for w in report.warnings:
        _say(f"warning: {w}")
    for d in report.damage:
        _say(f"DAMAGED: {d}")
    summary = (
        f"{report.log_segments} log segment{'s' * (report.log_segments != 1)} "
        f"({report.log_entries:,} entries) and {report.columnar_files} columnar "
        f"file{'s' * (report.columnar_files != 1)} ({report.columnar_rows:,} rows) checked"
    )
    if report.snapshots:
        summary += (
            f"; {report.snapshots} snapshot{'s' * (report.snapshots != 1)} "
            f"({report.snapshot_files} file{'s' * (report.snapshot_files != 1)} only they pin)"
        )
    if report.columnar_unverified_files:
        summary += (
            f"; {report.columnar_unverified_files} columnar file"
            f"{'s' * (report.columnar_unverified_files != 1)} of format 1 UNVERIFIED (no "
            "checksums; `synarrow compact` rewrites them)"
        )
    if report.ok:
        _say(f"OK: {summary}")
        return EXIT_OK
    _say(f"CORRUPT: {len(report.damage)} problem{'s' * (len(report.damage) != 1)}; {summary}")
    print(
        f"synarrow: error: {args.path} is damaged: {report.damage[0]}",
        file=sys.stderr,
    )
    return EXIT_CORRUPT


# -- export / import -----------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    """``synarrow export PATH OUT``: a Parquet/Arrow dataset, or one Parquet/Arrow/CSV/JSON file."""
    from synarrow.export import (
        DATASET_FORMATS,
        export_dataset,
        export_file,
        format_from_suffix,
        normalize_format,
    )

    if args.format == "delta":
        return _export_delta(args)
    suffix_fmt = format_from_suffix(args.out)
    fmt = normalize_format(args.format) if args.format else (suffix_fmt or "parquet")
    partition = args.partition_by
    if partition is None:
        partition = "none" if suffix_fmt is not None else "key"
    compression = None if args.compression == "none" else args.compression
    with _read_db(args) as db:
        if partition == "key":
            if fmt not in DATASET_FORMATS:
                raise CliError(
                    f"a partitioned dataset is Parquet or Arrow, not {fmt}; "
                    "name a file (out.csv) to get one file"
                )
            result = export_dataset(
                db,
                args.out,
                fmt,
                "key",
                pattern=args.pattern,
                compression=compression if fmt == "parquet" or compression else None,
                overwrite=args.overwrite,
                progress=_progress_flag(args),
            )
        else:
            result = export_file(
                db,
                args.out,
                fmt,
                pattern=args.pattern,
                compression=compression,
                overwrite=args.overwrite,
                progress=_progress_flag(args),
            )
    _say(
        f"exported {result.rows:,} rows of {result.keys:,} keys to {result.uri} "
        f"({result.format}, {result.files:,} file{'s' * (result.files != 1)}) "
        f"in {result.seconds:.2f} s"
    )
    return EXIT_OK


def _export_delta(args: argparse.Namespace) -> int:
    """``synarrow export PATH OUT --format delta --snapshot TAG``: commit a tag as one
    version of a Delta Lake table (only the keys changed since the last exported tag)."""
    from synarrow.export import export_dataset

    if args.pattern is not None:
        raise CliError("--pattern does not apply to a Delta export: a table version holds a tag")
    if args.overwrite:
        raise CliError("--overwrite does not apply to a Delta export: every tag is a new version")
    if getattr(args, "snapshot", None) is None:
        raise CliError(
            "a Delta export commits a snapshot: pass --snapshot TAG "
            "(make one with `synarrow snapshot PATH TAG`)"
        )
    compression = None if args.compression == "none" else args.compression
    partition = None if args.partition_by == "none" else "key"
    with _read_db(args) as db:
        result = export_dataset(
            db, args.out, "delta", partition, compression=compression, progress=_progress_flag(args)
        )
    how = {"full": "a full version", "incremental": "an incremental version"}.get(
        result.mode or "", "no new version (the table holds this tag already)"
    )
    _say(
        f"snapshot {result.snapshot!r} is version {result.version} of the Delta table "
        f"{result.uri}: {how}, {result.keys_written or 0:,} keys written, "
        f"{result.keys_removed or 0:,} removed, {result.rows:,} rows in {result.seconds:.2f} s"
        + (f" ({result.reason})" if result.reason else "")
    )
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    """``synarrow import PATH SOURCE``: append rows of a file or dataset (creates PATH)."""
    from synarrow.export import import_dataset

    _refuse_snapshot(args, "import")
    if _frame_import(args):
        return _import_frame(args)
    if args.prefix is not None:
        raise CliError("--prefix needs a frame import (--key-column, --ts-column, --wide ...)")
    with open_db(args.path, write=True, create=True) as db:
        result = import_dataset(
            db,
            args.source,
            args.format,
            key=args.key,
            ts_unit=args.ts_unit,
            progress=_progress_flag(args),
        )
    _say(
        f"imported {result.rows:,} rows into {result.keys:,} keys of {args.path} "
        f"in {result.seconds:.2f} s"
    )
    if result.skipped_nulls:
        _warn(f"skipped {result.skipped_nulls:,} null values (a batch append cannot hold them)")
    return EXIT_OK


def _frame_import(args: argparse.Namespace) -> bool:
    """Whether ``import`` was asked for a frame import (one ``append_table`` call)."""
    named = (args.key_column, args.ts_column, args.value_column)
    return args.wide or any(n is not None for n in named)


def _read_frame(source: str, fmt: str | None, ts_column: str | None, ts_unit: str) -> pa.Table:
    """One CSV / Parquet / Arrow IPC / JSON-lines file (or a directory of them) as a table,
    a numeric ``ts`` column read in ``ts_unit``."""
    import pyarrow.dataset as ds

    from synarrow.export import format_from_suffix, normalize_format

    found = Path(source)
    if not found.exists():
        raise CliError(f"{source} does not exist")
    name = fmt or format_from_suffix(source)
    if name is None:
        raise CliError(f"cannot tell the format of {source!r}; pass --format")
    name = normalize_format(name)
    ds_format = {"parquet": "parquet", "arrow": "ipc", "csv": "csv", "jsonl": "json"}[name]
    try:
        table = ds.dataset(source, format=ds_format).to_table()
    except (pa.ArrowException, OSError) as exc:
        raise CliError(f"cannot read {source} as {name}: {exc}") from exc
    if ts_column is not None and ts_column in table.column_names:
        col = table.column(ts_column)
        if pa.types.is_integer(col.type) and ts_unit != "us":
            i = table.column_names.index(ts_column)
            stamps = col.cast(pa.int64()).cast(pa.timestamp(ts_unit, tz="UTC"))
            table = table.set_column(i, ts_column, stamps)
    return table


def _import_frame(args: argparse.Namespace) -> int:
    """``import`` through ``append_table``: every row of the file in one all-or-nothing call."""
    if args.key is not None:
        raise CliError("--key is for the dataset import; a frame import names --key-column")
    ts = args.ts_column or "ts"
    table = _read_frame(args.source, args.format, ts, args.ts_unit)
    if ts not in table.column_names and args.ts_column is None:
        ts = None  # no ts column at all: the default timestamps of a batch
    started = time.perf_counter()
    with open_db(args.path, write=True, create=True) as db:
        if args.wide:
            if args.key_column is not None or args.value_column is not None:
                raise CliError("--wide takes every column but --ts-column as a key")
            rows = db.append_table(table, key=None, ts=ts, prefix=args.prefix)
            keys = len(table.column_names) - (ts is not None)
        else:
            key = args.key_column or "key"
            rows = db.append_table(
                table, key=key, ts=ts, value=args.value_column or "value", prefix=args.prefix
            )
            keys = len(table.column(key).unique()) if rows else 0
    _say(
        f"imported {rows:,} rows into {keys:,} keys of {args.path} "
        f"in {time.perf_counter() - started:.2f} s"
    )
    return EXIT_OK


# -- serve ---------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    """``synarrow serve PATH``: an Arrow Flight / Flight SQL server until Ctrl-C / SIGTERM."""
    import signal
    import threading

    from synarrow.flight import FlightServer
    from synarrow.serving.auth import check_exposure, read_token

    # Checked before the database is opened or created: a refused server leaves no trace.
    token = read_token(token=args.token, token_file=args.token_file)
    check_exposure(args.host, token=token, insecure=args.insecure)
    if args.snapshot is not None:
        db = open_db(args.path, snapshot=args.snapshot)  # read-only, whatever --readonly says
    else:
        db = open_db(args.path, write=not args.readonly, create=not args.readonly)
    stop = threading.Event()
    started = time.monotonic()
    previous: dict[int, Any] = {}
    hung = False
    try:
        # The server listens from construction on; this thread only waits for a signal.
        server = FlightServer(
            db,
            host=args.host,
            port=args.port,
            readonly=args.readonly or db.readonly,
            token=token,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            query_timeout=args.query_timeout or None,
            insecure=args.insecure,
            max_batch_bytes=args.max_batch_mb << 20,
        )
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda *_: stop.set())
        mode = "read-only" if server.readonly else "read-write"
        if db.tag is not None:
            mode += f" at snapshot {db.tag!r}"
        auth = "token" if token else "no authentication"
        print(
            f"synarrow: serving {args.path} ({mode}, {auth}) on {server.location}; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        if token and not server.tls and not _loopback(args.host):
            _warn("the token travels in clear text without --tls-cert/--tls-key")
        _say(server.location)
        _out().flush()
        while not stop.wait(0.2):
            if args.max_seconds is not None and time.monotonic() - started > args.max_seconds:
                break
        # Running queries are interrupted first, so shutdown does not wait for them; a
        # client that stops reading cannot hold the process past a few seconds either.
        server.queries.stop()
        closer = threading.Thread(target=server.shutdown, name="synarrow-shutdown", daemon=True)
        closer.start()
        closer.join(timeout=3)
        hung = closer.is_alive()
        if not hung:
            server.queries.close()
        print("synarrow: server stopped", file=sys.stderr, flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        db.close()
    if hung:
        # A client that stopped reading holds its stream open and gRPC's shutdown waits for
        # it (so would the interpreter's exit). Every write is durable now: leave.
        _warn("a client stopped reading its stream; exiting without waiting for it")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_OK)
    return EXIT_OK


def _loopback(host: str) -> bool:
    from synarrow.serving.auth import is_loopback

    return is_loopback(host)


# -- demo ----------------------------------------------------------------------------------


def _sensor_series(n: int, seed: int) -> np.ndarray:
    """A 1 Hz temperature-like signal: daily cycle, slow drift, noise, 0.01 resolution."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    daily = 4.0 * np.sin(2 * np.pi * (t / 86_400.0 - 0.25))
    drift = np.cumsum(rng.normal(0, 0.002, n))
    return np.round(20.0 + seed * 0.5 + daily + drift + rng.normal(0, 0.15, n), 2)


def cmd_demo(args: argparse.Namespace) -> int:
    """``synarrow demo [PATH]``: write a sensor time series, read it back, print figures."""
    from synarrow.config import DbConfig
    from synarrow.db import SynaDB

    if args.sensors < 1 or args.hours <= 0:
        raise CliError("--sensors must be >= 1 and --hours > 0")
    temp_dir = None
    if args.path is None:
        temp_dir = tempfile.mkdtemp(prefix="synarrow-demo-")
        path = Path(temp_dir) / "demo.db"
    else:
        path = Path(args.path)
        if path.exists() and any(path.iterdir()):
            raise CliError(f"{path} exists and is not empty; the demo writes a new database")
    points = max(1, int(args.hours * 3600))
    keys = [f"demo/temperature-{i:02d}" for i in range(args.sensors)]
    hour_us = 3_600_000_000
    now_us = time.time_ns() // 1000
    start = (now_us - points * 1_000_000) // hour_us * hour_us  # on the hour: full buckets
    ts = start + np.arange(points, dtype=np.int64) * 1_000_000
    series = [_sensor_series(points, i) for i in range(len(keys))]
    figures: list[tuple[str, str]] = []
    try:
        with SynaDB(path, config=DbConfig(sync_on_write=False, auto_compact=False)) as db:
            from synarrow.optional import progress

            bar = progress(total=len(keys), desc="write", enabled=_progress_flag(args))
            started = time.perf_counter()
            for key, values in zip(keys, series):
                db.append_batch(key, values, timestamps=ts)
                bar.update(1)
            db.append("demo/status", "calibrated")
            db.append("demo/status", "online")
            db.sync()
            write_s = time.perf_counter() - started
            bar.close()
            total = points * len(keys)
            figures.append(
                (
                    "write (append_batch + fsync)",
                    f"{total:,} points in {write_s:.3f} s = {total / write_s / 1e6:,.1f}M values/s",
                )
            )
            db.get_history_floats(keys[-1])  # pyarrow's first-call set-up is not the store's
            started = time.perf_counter()
            tail = db.get_history_floats(keys[0])
            figures.append(
                (
                    "history from the log tail",
                    f"{len(tail):,} floats in {(time.perf_counter() - started) * 1e3:.2f} ms",
                )
            )
            started = time.perf_counter()
            result = db.compact()
            compact_s = time.perf_counter() - started
            stats = db.stats()
            figures.append(
                (
                    "compact()",
                    f"{result['entries_written']:,} entries in {compact_s:.3f} s -> "
                    f"{stats['columnar_files']} Arrow files, {human_bytes(stats['columnar_bytes'])} "
                    f"({stats['columnar_bytes'] / max(1, stats['entries']):.1f} B/entry)",
                )
            )
            first = db.get_history_floats(keys[0])
            started = time.perf_counter()
            again = db.get_history_floats(keys[0])
            read_s = time.perf_counter() - started
            zero_copy = np.shares_memory(first, again)
            figures.append(
                (
                    "history after compact",
                    f"{len(again):,} floats in {read_s * 1e3:.3f} ms "
                    f"(zero-copy view of the mapped file: {'yes' if zero_copy else 'no'})",
                )
            )
            query = (
                "SELECT time_bucket(INTERVAL '1 hour', ts) AS hour, round(avg(value), 2) AS avg, "
                "min(value) AS min, max(value) AS max, count(*) AS n FROM history "
                f"WHERE key = '{keys[0]}' GROUP BY hour ORDER BY hour"
            )
            started = time.perf_counter()
            hourly = db.sql(query)
            first_s = time.perf_counter() - started
            started = time.perf_counter()
            hourly = db.sql(query)
            sql_s = time.perf_counter() - started
            figures.append(
                (
                    "SQL time_bucket (1 hour)",
                    f"{hourly.num_rows:,} rows from {points:,} points in {sql_s * 1e3:.1f} ms "
                    f"(first query, with DuckDB start-up: {first_s * 1e3:.0f} ms)",
                )
            )
            stats = db.stats()
        _say(f"synarrow demo: {len(keys)} sensors x {points:,} points at 1 Hz in {path}")
        _say()
        _say(
            render_table(
                pa.table({"step": [f for f, _ in figures], "result": [r for _, r in figures]}),
                max_width=90,
            ).rsplit("\n", 1)[0]
        )
        _say()
        _say(query)
        _say(render_table(hourly, max_rows=10))
        if temp_dir is None:
            _say()
            _say(f"try: synarrow info {path}")
            _say(
                f'     synarrow sql {path} "SELECT key, count(*), avg(value) FROM history GROUP BY key"'
            )
    finally:
        if temp_dir is not None and not args.keep:
            shutil.rmtree(temp_dir, ignore_errors=True)
        elif temp_dir is not None:
            _say(f"kept {path}")
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``synarrow`` command."""
    from synarrow import __version__ as version

    parser = argparse.ArgumentParser(
        prog="synarrow",
        description="Inspect, query, verify, export and serve synarrow databases.",
        epilog="Exit status: 0 ok, 1 error, 2 usage, 3 damage found by check.",
    )
    parser.add_argument("--version", action="version", version=f"synarrow {version}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=fn)
        return p

    def db_arg(p: argparse.ArgumentParser, *, repair: bool = True) -> None:
        p.add_argument("path", metavar="PATH", help="the database directory")
        if repair:
            p.add_argument(
                "--repair",
                action="store_true",
                help="skip log entries that fail their checksum instead of refusing to open",
            )

    def snapshot_arg(p: argparse.ArgumentParser, *, refused: bool = False) -> None:
        help_ = (
            "refused: a snapshot is read-only and this command writes"
            if refused
            else "read the database as it was at snapshot TAG (read-only)"
        )
        p.add_argument("--snapshot", metavar="TAG", help=help_)

    def progress_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-progress", action="store_true", help="never show a progress bar")

    def output_args(p: argparse.ArgumentParser, formats: Sequence[str]) -> None:
        p.add_argument("--format", "-f", choices=formats, default="table", help="output format")
        p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
        p.add_argument(
            "--max-rows", type=int, default=40, help="rows shown by --format table (default 40)"
        )

    p = add("demo", cmd_demo, "write a realistic sensor time series, read it back, show figures")
    p.add_argument("path", metavar="PATH", nargs="?", help="a new database (default: a temp dir)")
    p.add_argument("--sensors", type=int, default=8, help="number of sensors (default 8)")
    p.add_argument("--hours", type=float, default=24.0, help="hours of 1 Hz data (default 24)")
    p.add_argument("--keep", action="store_true", help="keep the temporary database")
    progress_arg(p)

    p = add("info", cmd_info, "keys, entries, sizes and last compaction")
    db_arg(p)
    snapshot_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("keys", cmd_keys, "list live keys, optionally matching a glob")
    db_arg(p)
    snapshot_arg(p)
    p.add_argument("glob", nargs="?", metavar="PATTERN", help="a glob such as 'sensor/*'")
    p.add_argument("--pattern", help="same as PATTERN")
    p.add_argument("--count", action="store_true", help="print only how many")

    p = add("get", cmd_get, "the latest value of a key")
    db_arg(p)
    snapshot_arg(p)
    p.add_argument("key", metavar="KEY")
    p.add_argument("--json", action="store_true", help="print the value as JSON")

    p = add("history", cmd_history, "the history of a key")
    db_arg(p)
    snapshot_arg(p)
    p.add_argument("key", metavar="KEY")
    p.add_argument("--start", metavar="TIME", help="from TIME on (ISO 8601 or int us)")
    p.add_argument("--end", metavar="TIME", help="before TIME (ISO 8601 or int us)")
    p.add_argument("--last", type=int, metavar="N", help="only the last N entries (of the range)")
    p.add_argument("--tail", type=int, metavar="N", help="the old name of --last")
    output_args(p, ("table", "csv", "json", "parquet"))

    p = add("sql", cmd_sql, "run a DuckDB query over the views history and latest")
    db_arg(p)
    snapshot_arg(p)
    p.add_argument("query", metavar="QUERY", help="the SQL text, or - to read it from stdin")
    output_args(p, ("table", "csv", "json", "parquet"))
    p.add_argument("--timer", action="store_true", help="print the query time on stderr")

    p = add("resample", cmd_resample, "numeric keys aggregated into time buckets")
    db_arg(p)
    snapshot_arg(p)
    p.add_argument("key", metavar="KEY_OR_PATTERN", help="a key or a glob such as 'sensor/*'")
    p.add_argument("every", metavar="EVERY", help="the bucket width: 10s, 1min, 1h, 1d ...")
    p.add_argument(
        "--agg",
        default="mean",
        help="mean, sum, min, max, count, first, last or ohlc; several with commas (default mean)",
    )
    p.add_argument("--start", help="only entries at or after this time (ISO 8601, or int us)")
    p.add_argument("--end", help="only entries before this time (ISO 8601, or int us)")
    p.add_argument("--fill", help="empty buckets: ffill, linear or a number (default: left out)")
    output_args(p, ("table", "csv", "json", "parquet"))

    p = add("compact", cmd_compact, "fold the log into columnar Arrow files")
    db_arg(p, repair=False)
    snapshot_arg(p, refused=True)
    p.add_argument("--full", action="store_true", help="rewrite every key, not just changed ones")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add("check", cmd_check, "verify every checksum and columnar file; exit 3 on damage")
    db_arg(p, repair=False)
    p.add_argument("--quiet", "-q", action="store_true", help="print only problems and a summary")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    progress_arg(p)

    p = add("snapshots", cmd_snapshots, "list the snapshots: tag, time, keys, entries, sizes, note")
    db_arg(p, repair=False)
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = add("snapshot", cmd_snapshot, "make a named, immutable snapshot (or --drop one)")
    db_arg(p, repair=False)
    p.add_argument("tag", metavar="TAG", help="letters, digits, '.', '_', '-' (up to 128)")
    p.add_argument("--note", metavar="TEXT", help="free text kept with the snapshot")
    p.add_argument("--drop", action="store_true", help="remove snapshot TAG instead")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add("diff", cmd_diff, "keys added, removed and changed from snapshot A to B (or now)")
    db_arg(p, repair=False)
    p.add_argument("a", metavar="A", help="the first snapshot tag")
    p.add_argument("b", metavar="B", nargs="?", help="the second tag (default: the current state)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the summary line")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")

    p = add("export", cmd_export, "write a Parquet/Arrow dataset or a Parquet/Arrow/CSV/JSON file")
    db_arg(p)
    snapshot_arg(p)
    p.add_argument(
        "out",
        metavar="OUT",
        help="a directory or URI for a dataset; a file name ending .parquet/.arrow/.csv/.jsonl",
    )
    p.add_argument(
        "--format",
        choices=("parquet", "arrow", "feather", "csv", "jsonl", "json", "delta"),
        help="delta: commit --snapshot TAG as one version of a Delta Lake table at OUT",
    )
    p.add_argument(
        "--partition-by",
        choices=("key", "none"),
        help="key: Hive dataset (default for a directory); none: one file (default for a file)",
    )
    p.add_argument("--pattern", help="export only keys matching this glob")
    p.add_argument(
        "--compression",
        default="snappy",
        help="Parquet codec (snappy, zstd, none ...) or lz4/zstd for Arrow",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier export (never a database or a directory with other files)",
    )
    progress_arg(p)

    p = add("import", cmd_import, "append rows from a Parquet/Arrow/CSV/JSON-lines file or dataset")
    p.add_argument("path", metavar="PATH", help="the database directory (created if missing)")
    p.add_argument("source", metavar="SOURCE", help="a file, or a directory of key=... parts")
    snapshot_arg(p, refused=True)
    p.add_argument("--format", choices=("parquet", "arrow", "feather", "csv", "jsonl", "json"))
    p.add_argument("--key", help="the key of every row, for sources without a key column")
    p.add_argument(
        "--ts-unit", choices=("s", "ms", "us", "ns"), default="us", help="unit of numeric ts"
    )
    p.add_argument("--key-column", metavar="NAME", help="frame import: the key column (key)")
    p.add_argument("--ts-column", metavar="NAME", help="frame import: the time column (ts)")
    p.add_argument("--value-column", metavar="NAME", help="frame import: the value column (value)")
    p.add_argument(
        "--wide", action="store_true", help="frame import: every column but the ts one is a key"
    )
    p.add_argument("--prefix", help="frame import: put PREFIX before every key")
    progress_arg(p)

    p = add("serve", cmd_serve, "serve over Arrow Flight and Flight SQL (loopback by default)")
    p.add_argument("path", metavar="PATH", help="the database directory (created if missing)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8815, help="TCP port (default 8815; 0 = any free)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token", help="clients must send 'authorization: Bearer TOKEN'")
    auth.add_argument("--token-file", metavar="FILE", help="read the token from FILE")
    p.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument(
        "--readonly", action="store_true", help="open read-only (no lock) and refuse writes"
    )
    snapshot_arg(p)
    p.add_argument(
        "--query-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="interrupt a query after S seconds (default 300; 0 = no limit)",
    )
    p.add_argument(
        "--max-batch-mb",
        type=int,
        default=64,
        metavar="N",
        help="refuse put batches over N MiB (default 64)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without a token (anyone who reaches it has full access)",
    )
    p.add_argument(
        "--max-seconds", type=float, help="stop after this many seconds (for scripts and tests)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``synarrow`` command with ``argv`` (default: ``sys.argv[1:]``); the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error (already printed)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    debug = bool(os.environ.get("SYNARROW_DEBUG"))
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("synarrow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (`synarrow keys db | head`): not an error.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except SynaError as exc:
        if debug:
            raise
        _error(str(exc))
        return EXIT_ERROR
    except (OSError, pa.ArrowException, ValueError, TypeError, ImportError) as exc:
        if debug:
            raise
        _error(f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR
    except Exception as exc:
        if debug:
            raise
        _error(f"internal error: {type(exc).__name__}: {exc} (SYNARROW_DEBUG=1 shows a traceback)")
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "EXIT_CORRUPT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "build_parser",
    "check_database",
    "cmd_check",
    "cmd_compact",
    "cmd_demo",
    "cmd_diff",
    "cmd_export",
    "cmd_get",
    "cmd_history",
    "cmd_import",
    "cmd_info",
    "cmd_keys",
    "cmd_resample",
    "cmd_serve",
    "cmd_snapshot",
    "cmd_snapshots",
    "cmd_sql",
    "format_cell",
    "main",
    "open_db",
    "render_table",
    "write_table",
]

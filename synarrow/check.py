"""``synarrow check``: verify everything a read of a database could touch, without writing.

* the log: every segment header and entry CRC32 (damaged ranges named by byte offsets), then
  the decoding of every verified entry (delta chains, LZ4, batch layouts), through the log's
  own replay code, one segment at a time;
* the columnar files (:mod:`synarrow.columnar.verify`): manifest, key index, footers and
  every record batch a key refers to, by checksum and by pyarrow's full validation;
* every snapshot (``snapshots/<tag>.json``): its record's checksum, then the same columnar
  verification of every file its manifest names (a record batch shared with the current
  state or another tag is verified once); a damaged record, or a pinned file that is
  missing or damaged, is reported naming the tag. Files in ``columnar/`` that neither the
  manifest nor any snapshot names are leftovers (a warning);
* model blobs (``blobs/``) and run artifacts (``artifacts/``), named by the SHA-256 of their
  bytes;
* the directory itself: symbolic links anywhere and names synarrow does not write in
  ``log/`` and ``columnar/`` are damage (a database only ever holds plain files it made).

The database is never opened for writing and its lock is not taken, so ``check`` may run
beside a live writer (it then sees a consistent older state, or reports a torn tail).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from pathlib import Path

from synarrow.columnar import tags
from synarrow.columnar.manifest import Manifest
from synarrow.columnar.verify import Verified, verify_columnar, verify_manifest
from synarrow.config import DbConfig
from synarrow.engine.directory import is_database
from synarrow.engine.retention import RETENTION_NAME, load_rules
from synarrow.errors import CorruptionError, InvalidPathError, SynaError
from synarrow.fileio import entry_problem, open_fd, read_bytes, require_directory
from synarrow.log.names import log_name_kind
from synarrow.text_format import human_bytes

__all__ = ["CheckReport", "check_database"]


@dataclasses.dataclass
class CheckReport:
    """What ``synarrow check`` found: per-file lines, warnings and damage."""

    path: Path
    lines: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    damage: list[str] = dataclasses.field(default_factory=list)
    log_entries: int = 0
    log_segments: int = 0
    columnar_rows: int = 0
    columnar_files: int = 0
    columnar_unverified_files: int = 0
    bytes_checked: int = 0
    snapshots: int = 0
    """Snapshots whose record was read (damaged or not in their files)."""
    snapshot_files: int = 0
    """Files pinned only by snapshots (not by the current manifest) that verified."""

    @property
    def ok(self) -> bool:
        """Whether no damage was found (warnings allowed)."""
        return not self.damage


def check_database(path: str | os.PathLike[str], *, progress: bool | None = None) -> CheckReport:
    """Verify a database without opening it for writing (nor taking its lock).

    Returns a :class:`CheckReport`; ``report.ok`` is false when anything is damaged, and
    each damage line names the file and, where it can, the byte range.
    """
    root = Path(os.fspath(path))
    if not is_database(root):
        raise InvalidPathError(f"{root} is not a synarrow database")
    report = CheckReport(root)
    _check_config(root, report)
    _check_retention(root, report)
    _check_root_names(root, report)
    from synarrow.columnar.manifest import read_manifest
    from synarrow.optional import progress as make_bar

    try:
        first_segment = read_manifest(root / "columnar").first_segment
    except SynaError:
        first_segment = 0  # reported by the columnar check below
    segments = _segments(root, report)
    live = [(s, f) for s, f in segments if s >= first_segment]
    for _, f in segments:
        if int(f.stem) < first_segment:
            report.warnings.append(
                f"log/{f.name}: already folded into columnar files (removed on the next open)"
            )
    total = sum(f.stat().st_size for _, f in live) + _tree_bytes(root / "columnar")
    bar = make_bar(total=total, desc="check", enabled=progress)
    try:
        for i, (_, f) in enumerate(live):
            _check_segment(f, report, last=i == len(live) - 1)
            bar.update(f.stat().st_size)
        records, pins_unknown = _read_records(root, report)
        pinned = set().union(*(r.file_names() for r in records)) if records else set()
        verified: Verified = set()
        col = verify_columnar(
            root / "columnar",
            progress=bar.update,
            pinned=pinned,
            pins_unknown=pins_unknown,
            verified=verified,
        )
        report.lines += col.lines
        report.warnings += col.warnings
        report.damage += col.damage
        report.columnar_files = col.files
        report.columnar_rows = col.rows
        report.columnar_unverified_files = col.unverified_files
        report.bytes_checked += col.bytes_verified
        live = set() if col.manifest is None else _names(col.manifest)
        for record in records:
            _check_snapshot(root, record, live, verified, report)
        _check_content_addressed(root, report)
    finally:
        bar.close()
    return report


def _names(manifest: Manifest) -> set[str]:
    names = {f.name for f in manifest.files}
    if manifest.index:
        names.add(manifest.index)
    return names


def _read_records(root: Path, report: CheckReport) -> tuple[list[tags.TagRecord], bool]:
    """The readable snapshot records, and whether some record could not be read (damage,
    reported here, naming the tag)."""
    directory = root / tags.SNAPSHOTS_DIR
    try:
        if not require_directory(directory, what="snapshots directory"):
            return [], False
    except CorruptionError as exc:
        report.damage.append(f"{tags.SNAPSHOTS_DIR}: {exc.message}")
        return [], True
    records: list[tags.TagRecord] = []
    unknown = False
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        name = entry.name
        rel = f"{tags.SNAPSHOTS_DIR}/{name}"
        problem = entry_problem(entry)
        stem = name[:-5] if name.endswith(".json") else None
        if problem is not None:
            report.damage.append(f"{rel}: {problem}")
            unknown = unknown or stem is not None
            continue
        if stem is None or tags.TAG_PATTERN.fullmatch(stem) is None:
            if name.startswith(".") and ".json.tmp-" in name:
                report.warnings.append(
                    f"{rel}: left by an interrupted snapshot (removed on the next writable open)"
                )
            else:
                report.damage.append(f"{rel}: not a file synarrow writes")
            continue
        try:
            records.append(tags.read_record(directory, stem))
        except (CorruptionError, OSError) as exc:
            msg = exc.message if isinstance(exc, SynaError) else str(exc)
            report.damage.append(f"snapshot {stem!r}: {rel}: {msg}")
            unknown = True
    report.snapshots = len(records)
    return sorted(records, key=lambda r: (r.created_us, r.tag)), unknown


def _check_snapshot(
    root: Path, record: tags.TagRecord, live: set[str], verified: Verified, report: CheckReport
) -> None:
    """Verify the files ``record`` pins (batches the live check did are not redone)."""
    col = verify_manifest(root / "columnar", record.manifest, verified=verified)
    who = f"snapshot {record.tag!r}"
    report.damage += [f"{who}: {d}" for d in col.damage]
    report.warnings += [f"{who}: {w}" for w in col.warnings]
    own = record.file_names() - live
    own_data = sum(1 for f in record.manifest.files if f.name in own)
    report.snapshot_files += own_data
    report.bytes_checked += col.bytes_verified
    report.lines += [f"{who}: {ln}" for ln in col.lines if ln.split(":")[0].split("/")[-1] in own]
    state = "OK" if not col.damage else "DAMAGED"
    report.lines.append(
        f"{tags.SNAPSHOTS_DIR}/{record.tag}.json: {record.keys:,} keys, {record.entries:,} "
        f"entries, {len(record.manifest.files)} data files ({own_data} not in the manifest), "
        f"checksum OK, "
        f"{state}"
    )


def _check_config(root: Path, report: CheckReport) -> None:
    cfg = root / "config.json"
    try:
        DbConfig.from_json(read_bytes(cfg, max_size=1 << 20, what="config.json").decode())
    except FileNotFoundError:
        pass
    except UnicodeDecodeError:
        report.damage.append("config.json: not UTF-8 text")
    except SynaError as exc:
        report.damage.append(f"config.json: {exc.message}")


def _check_retention(root: Path, report: CheckReport) -> None:
    try:
        load_rules(root)
    except SynaError as exc:
        report.damage.append(f"{RETENTION_NAME}: {exc.message}")


def _check_root_names(root: Path, report: CheckReport) -> None:
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_symlink():
            report.damage.append(f"{entry.name}: a symbolic link; synarrow never writes one")


def _segments(root: Path, report: CheckReport) -> list[tuple[int, Path]]:
    log_dir = root / "log"
    try:
        st = os.lstat(log_dir)
    except FileNotFoundError:
        return []
    if not stat.S_ISDIR(st.st_mode):
        report.damage.append("log: a symbolic link or not a directory")
        return []
    out = []
    for entry in sorted(os.scandir(log_dir), key=lambda e: e.name):
        name = entry.name
        problem = entry_problem(entry)
        if problem is not None:
            report.damage.append(f"log/{name}: {problem}")
        else:
            kind = log_name_kind(name)  # the same name rules the database opens by
            if kind is None:
                report.damage.append(f"log/{name}: not a file synarrow writes")
            elif kind[0] == "segment" and kind[1] is not None:
                out.append((kind[1], log_dir / name))
    return out


def _check_segment(f: Path, report: CheckReport, *, last: bool) -> None:
    from synarrow.log.verify import verify_segment

    rel = f"log/{f.name}"
    seg = verify_segment(f)
    if seg.unreadable is not None:
        report.damage.append(f"{rel}: bytes 0..{seg.size}: {seg.unreadable}")
        return
    report.log_entries += seg.entries
    report.log_segments += 1
    report.bytes_checked += seg.size
    for a, b in seg.skipped:
        report.damage.append(
            f"{rel}: damaged bytes {a}..{b} ({b - a:,} bytes fail their checksum; "
            "the entries after them verify)"
        )
    if seg.torn_bytes:
        msg = (
            f"{rel}: {seg.torn_bytes:,} bytes after the last valid entry "
            f"(bytes {seg.valid_end}..{seg.size})"
        )
        if last:
            report.warnings.append(
                msg + ": a torn tail from an interrupted write, cut off on the next writable open"
            )
        else:
            report.damage.append(msg + " in a segment that is not the last")
    if seg.decode_error is not None:
        report.damage.append(f"{rel}: entries verify but do not decode: {seg.decode_error}")
    state = "OK" if seg.ok else "DAMAGED"
    how = "decoded" if seg.decode_error is None else "decoding FAILED"
    report.lines.append(f"{rel}: {seg.entries:,} entries, {human_bytes(seg.size)}, {how}, {state}")


def _tree_bytes(directory: Path) -> int:
    try:
        return sum(
            e.stat(follow_symlinks=False).st_size
            for e in os.scandir(directory)
            if e.is_file(follow_symlinks=False)
        )
    except FileNotFoundError:
        return 0


def _check_content_addressed(root: Path, report: CheckReport) -> None:
    """Model blobs (``blobs/``) and run artifacts (``artifacts/``) are named by the SHA-256
    of their bytes: recompute each, streaming, and report any file whose bytes changed."""
    from synarrow.blobs import BLOB_NAME

    for folder in ("blobs", "artifacts"):
        directory = root / folder
        try:
            st = os.lstat(directory)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            report.damage.append(f"{folder}: a symbolic link or not a directory")
            continue
        count = 0
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            rel = f"{folder}/{entry.name}"
            if entry.is_symlink():
                report.damage.append(f"{rel}: a symbolic link; synarrow never writes one")
                continue
            if not entry.is_file(follow_symlinks=False) or not BLOB_NAME.fullmatch(entry.name):
                if not entry.name.startswith((".", "tmp-")):  # left by interrupted writes
                    report.warnings.append(f"{rel}: not a blob synarrow writes (not verified)")
                continue
            digest = hashlib.sha256()
            try:
                fd = open_fd(directory / entry.name, what="blob")
            except (CorruptionError, OSError) as exc:
                report.damage.append(f"{rel}: {exc}")
                continue
            with os.fdopen(fd, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            count += 1
            report.bytes_checked += entry.stat(follow_symlinks=False).st_size
            if digest.hexdigest() != entry.name:
                report.damage.append(
                    f"{rel}: SHA-256 of the bytes is {digest.hexdigest()}, "
                    "not the name it was stored under"
                )
        if count:
            report.lines.append(f"{folder}/: {count} files, SHA-256 verified")
